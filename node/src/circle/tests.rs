//! A circle's jobs, over the store's trees in memory (a circle never writes itself: what it
//! stages is kept here as the node's shell would): a note survives reopening, the role
//! check, removed members keep what they had and read nothing after, newcomers get the
//! history's keys, refusals are recorded, and snapshots cover what they say.

use std::sync::Arc;

use cercle_crdt::{EntryKind, IdentityUpdate, LiaisonNotebook, NewEntry, Role, Timestamp};
use rand::SeedableRng;

use super::*;
use crate::crypto::SecureRng;
use crate::identity::{LocalIdentity, Profile};
use crate::store::{MemoryStore, Store};

fn rng() -> SecureRng {
    SecureRng::seed_from_u64(11)
}

fn person(name: &str) -> LocalIdentity {
    let p = Profile::new(name, "infirmière", None, None).unwrap();
    LocalIdentity::generate(p, Timestamp(1)).unwrap()
}

fn setup() -> ((), Arc<dyn Store>, LocalIdentity) {
    (
        (),
        Arc::new(MemoryStore::new("circle")),
        person("Dr Martin"),
    )
}

/// Opens circle `id` of the store at rest for `me`, keeping what the opening writes.
fn reopen(store: &dyn Store, me: &LocalIdentity, id: &CircleId) -> Circle {
    let (c, batch) = Circle::open(store, me, id).unwrap();
    keep_batch(store, batch);
    c
}

/// Keeps a staged change in the store, as the node's shell does.
fn keep(store: &dyn Store, staged: Staged) {
    keep_batch(store, staged.batch);
}

fn keep_batch(store: &dyn Store, batch: Batch) {
    // The memory store holds a batch as soon as it is submitted.
    drop(store.submit(batch));
}

/// `by` adds `who` with `role` at `at`, kept as the shell would.
fn add(
    store: &dyn Store,
    c: &mut Circle,
    by: &LocalIdentity,
    who: &LocalIdentity,
    role: Role,
    at: i64,
) {
    let card = who.public().card(&[]);
    let staged = c
        .add_member(by, &card, role, Timestamp(at), &mut rng())
        .unwrap();
    keep(store, staged);
}

fn create(store: &dyn Store, me: &LocalIdentity, update: &IdentityUpdate) -> Circle {
    let (c, staged) = Circle::create(me, update, Timestamp(1), &mut rng()).unwrap();
    keep(store, staged);
    c
}

fn note(text: &str) -> NewEntry {
    NewEntry {
        kind: EntryKind::Observation,
        text: text.into(),
        vitals: None,
    }
}

/// Adds one note through the one write path and makes it durable.
fn add_note(store: &dyn Store, c: &mut Circle, me: &LocalIdentity, text: &str, at: i64) -> String {
    let w = c.write::<LiaisonNotebook, _>(me, Timestamp(at), &mut rng(), |nb| {
        nb.add_entry(me.member(), note(text), Timestamp(at))
    });
    keep(store, w.staged);
    w.value.unwrap()
}

/// Opens a circle as a node does (at rest), then wakes it as reading it does.
fn open(store: &dyn Store, me: &LocalIdentity, id: &CircleId) -> Circle {
    let (mut c, snapshots) = Circle::open(store, me, id).unwrap();
    keep_batch(store, snapshots);
    let snapshots = c.wake(store, me).unwrap();
    keep_batch(store, snapshots);
    c
}

#[test]
fn a_note_survives_reopening_the_circle() {
    let (_dir, home, me) = setup();
    let update = IdentityUpdate {
        family_name: Some("Durand".into()),
        given_names: Some("Jeanne".into()),
        ..Default::default()
    };
    let c = create(home.as_ref(), &me, &update);
    let id = c.id();
    let found = find(home.as_ref(), &id.to_string()[..6]).unwrap();
    assert_eq!(found.id, id.to_string());
    let mut c = open(home.as_ref(), &me, &id);
    let note = add_note(home.as_ref(), &mut c, &me, "Tension 13/8", 2);
    let c = open(home.as_ref(), &me, &id);
    assert_eq!(
        c.notes()
            .unwrap()
            .iter()
            .map(|n| n.id.clone())
            .collect::<Vec<_>>(),
        vec![note]
    );
    assert_eq!(c.info().patient, "Jeanne Durand");
}

#[test]
fn the_documents_are_written_only_through_the_role_check() {
    let (_dir, home, gp) = setup();
    let mut c = create(home.as_ref(), &gp, &IdentityUpdate::default());
    let carer = person("Marie");
    add(home.as_ref(), &mut c, &gp, &carer, Role::Caregiver, 2);
    let w = c.write::<LiaisonNotebook, _>(&carer, Timestamp(3), &mut rng(), |nb| {
        nb.add_entry(carer.member(), note("x"), Timestamp(3))
    });
    assert!(
        matches!(w.value, Err(CircleError::NotAllowed { .. })),
        "{:?}",
        w.value
    );
    assert!(w.staged.batch.is_empty(), "a refused write stages nothing");
}

#[test]
fn a_removed_member_reads_what_came_before_and_nothing_after() {
    let (_dir, home, gp) = setup();
    let nurse = person("Paul");
    let mut c = create(home.as_ref(), &gp, &IdentityUpdate::default());
    add(home.as_ref(), &mut c, &gp, &nurse, Role::Professional, 2);
    let e0 = c.resolution().epoch.unwrap();
    let k0 = c.epoch_keys(&gp).remove(&e0).unwrap();
    let before = k0.encrypt(&mut rng(), b"h", b"avant").unwrap();
    let staged = c
        .remove_member(&gp, &nurse.member(), Timestamp(4), &mut rng())
        .unwrap();
    assert!(staged.membership_changed);
    keep(home.as_ref(), staged);
    let e1 = c.resolution().epoch.unwrap();
    assert_ne!(e0, e1, "the removal started a new epoch");
    let k1 = c.epoch_keys(&gp).remove(&e1).unwrap();
    let after = k1.encrypt(&mut rng(), b"h", b"apres").unwrap();

    // The nurse's keys, computed from the whole log (which relays and members see) and
    // the nurse's own X25519 secret.
    let nurse_keys = c.epoch_keys(&nurse);
    assert_eq!(nurse_keys.keys().copied().collect::<Vec<_>>(), vec![e0]);
    let read = nurse_keys
        .get(&e0)
        .map(|k| k.decrypt(b"h", &before).map(|p| p.to_vec()));
    assert_eq!(read, Some(Ok(b"avant".to_vec())));
    for k in nurse_keys.values() {
        assert!(k.decrypt(b"h", &after).is_err());
    }
    // The coordinator still reads both.
    assert_eq!(c.epoch_keys(&gp).len(), 2);
}

#[test]
fn a_removal_cuts_each_device_off_after_its_last_change_seen_here() {
    let (_dir, home, gp) = setup();
    let physio = person("Physio");
    let mut c = create(home.as_ref(), &gp, &IdentityUpdate::default());
    let role = Role::Professional;
    add(home.as_ref(), &mut c, &gp, &physio, role, 2);
    // The physiotherapist's two notes reach this node as a peer's envelopes.
    let mut theirs = LiaisonNotebook::new(physio.actor());
    let mut ids = Vec::new();
    for text in ["Séance 1", "Séance 2"] {
        ids.push(
            theirs
                .add_entry(physio.member(), note(text), Timestamp(3))
                .unwrap(),
        );
    }
    let changes = theirs.replica_mut().take_local_changes();
    let epoch = c.resolution().epoch.unwrap();
    let key = c.epoch_keys(&physio).remove(&epoch).unwrap();
    let slot = crate::envelope::Slot {
        circle: c.id(),
        doc: cercle_crdt::DocKind::LiaisonNotebook,
        seq: 1,
        prev: [0; 32],
    };
    let env = crate::envelope::Envelope::seal(&physio, slot, (epoch, &key), &changes, &mut rng())
        .unwrap();
    let receipt = c.receive(&gp, "physio", &[], &[env.bytes().to_vec()], Timestamp(9));
    assert_eq!(
        receipt.applied.values().sum::<usize>(),
        1,
        "{:?}",
        receipt.rejected
    );
    keep(home.as_ref(), receipt.staged);
    // When this node received each of the two notes is kept beside them.
    let received = home.received(&c.id()).unwrap();
    let expected = ids.into_iter().map(|id| (id, Timestamp(9))).collect();
    assert_eq!(received, expected);
    let staged = c
        .remove_member(&gp, &physio.member(), Timestamp(4), &mut rng())
        .unwrap();
    keep(home.as_ref(), staged);
    let removed = c
        .resolution()
        .removed
        .get(&physio.member())
        .cloned()
        .unwrap();
    // One envelope (of two changes) held in the notebook, none in the other documents: the
    // cut-off is counted in envelopes of each log, as envelopes are checked.
    assert_eq!(
        removed.cutoff(&physio.device(), cercle_crdt::DocKind::LiaisonNotebook),
        1
    );
    assert_eq!(
        removed.cutoff(&physio.device(), cercle_crdt::DocKind::Thread),
        0
    );
    assert_eq!(removed.role, role);
}

#[test]
fn a_newcomer_receives_the_history_keys() {
    let (_dir, home, gp) = setup();
    let mut c = create(home.as_ref(), &gp, &IdentityUpdate::default());
    let old = person("Old");
    let role = Role::Professional;
    let staged = c
        .add_member(&gp, &old.public().card(&[]), role, Timestamp(2), &mut rng())
        .unwrap();
    keep(home.as_ref(), staged);
    let staged = c
        .remove_member(&gp, &old.member(), Timestamp(3), &mut rng())
        .unwrap();
    keep(home.as_ref(), staged);
    let newcomer = person("New");
    add(home.as_ref(), &mut c, &gp, &newcomer, Role::Caregiver, 4);
    assert_eq!(
        c.epoch_keys(&newcomer).len(),
        2,
        "both epochs, including before they joined"
    );
    // Reopened from disk, the log gives the same keys.
    let again = open(home.as_ref(), &gp, &c.id());
    assert_eq!(again.epoch_keys(&newcomer).len(), 2);
}

#[test]
fn a_rejected_peer_envelope_is_recorded_and_not_applied() {
    let (_dir, home, gp) = setup();
    let mut c = create(home.as_ref(), &gp, &IdentityUpdate::default());
    let mut forged = c
        .write::<LiaisonNotebook, _>(&gp, Timestamp(2), &mut rng(), |nb| {
            nb.add_entry(gp.member(), note("vrai"), Timestamp(2))
        })
        .staged;
    let mut bytes = forged.batch.envelope_bytes().remove(0);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    forged.batch = Batch::new();
    let receipt = c.receive(&gp, "mallory", &[], &[bytes], Timestamp(3));
    assert_eq!(receipt.rejected.len(), 1);
    assert_eq!(receipt.rejected[0].0, "bad_signature");
    assert_eq!(receipt.rejected[0].1.reason["reason"], "bad_signature");
    assert!(receipt.applied.is_empty());
    let mut staged = receipt.staged;
    staged.batch.rejection(&c.id(), &receipt.rejected[0].1);
    keep(home.as_ref(), staged);
    assert_eq!(
        home.rejections(&c.id()).unwrap().len(),
        1,
        "recorded in the store"
    );
}

#[test]
fn many_notes_reopen_from_a_snapshot_and_the_envelopes_after_it() {
    let (_dir, home, me) = setup();
    let c = create(home.as_ref(), &me, &IdentityUpdate::default());
    let id = c.id();
    let mut c = c;
    let add = |c: &mut Circle, n: std::ops::Range<i64>| {
        for i in n {
            add_note(home.as_ref(), c, &me, &format!("Passage {i}"), i);
        }
    };
    add(&mut c, 10..(10 + SNAPSHOT_ON_OPEN as i64));
    drop(c);
    let doc = cercle_crdt::DocKind::LiaisonNotebook;
    assert!(home.snapshot(&id, doc).unwrap().is_none());
    // Opening applies the envelopes and, there being enough, snapshots.
    let mut c = open(home.as_ref(), &me, &id);
    assert_eq!(c.notes().unwrap().len(), SNAPSHOT_ON_OPEN);
    add(&mut c, 1000..1003);
    drop(c);
    let snap = home.snapshot(&id, doc).unwrap().unwrap();
    assert_eq!(
        snap.covers.get(&me.device()),
        Some(&(SNAPSHOT_ON_OPEN as u64))
    );
    let c = open(home.as_ref(), &me, &id);
    let texts: Vec<String> = c
        .notes()
        .unwrap()
        .iter()
        .map(|n| n.current_text().to_string())
        .collect();
    assert_eq!(texts.len(), SNAPSHOT_ON_OPEN + 3);
    assert_eq!(texts.last().map(String::as_str), Some("Passage 1002"));
}

#[test]
fn unknown_and_empty_circle_queries_are_errors() {
    let (_dir, home, _me) = setup();
    assert!(matches!(
        find(home.as_ref(), "abc"),
        Err(CircleError::Unknown { .. })
    ));
    assert!(matches!(
        find(home.as_ref(), ""),
        Err(CircleError::Unknown { .. })
    ));
}

#[test]
fn envelopes_waiting_for_another_devices_change_wait_within_a_bound_and_are_never_refused() {
    let (_dir, home, gp) = setup();
    let (nurse, physio) = (person("Julien"), person("Sophie"));
    let mut c = create(home.as_ref(), &gp, &IdentityUpdate::default());
    for who in [&nurse, &physio] {
        let card = who.public().card(&[]);
        let staged = c
            .add_member(&gp, &card, Role::Professional, Timestamp(2), &mut rng())
            .unwrap();
        keep(home.as_ref(), staged);
    }
    let epoch = c.resolution().epoch.unwrap();
    let seal = |who: &LocalIdentity, seq: u64, prev: [u8; 32], changes: &[cercle_crdt::Change]| {
        let key = c.epoch_keys(who).remove(&epoch).unwrap();
        let slot = crate::envelope::Slot {
            circle: c.id(),
            doc: cercle_crdt::DocKind::LiaisonNotebook,
            seq,
            prev,
        };
        crate::envelope::Envelope::seal(who, slot, (epoch, &key), changes, &mut rng()).unwrap()
    };
    // The physiotherapist writes; the nurse reads it and writes five notes after it.
    let mut theirs = LiaisonNotebook::new(physio.actor());
    theirs
        .add_entry(physio.member(), note("Séance 1"), Timestamp(3))
        .unwrap();
    let from_physio = seal(
        &physio,
        1,
        [0; 32],
        &theirs.replica_mut().take_local_changes(),
    );
    let mut nurses = LiaisonNotebook::new(nurse.actor());
    let author = cercle_crdt::ChangeAuthor {
        member: physio.member(),
        role: Role::Professional,
    };
    let physio_changes = from_physio.open(&c.epoch_keys(&nurse)[&epoch]).unwrap();
    nurses
        .replica_mut()
        .apply_changes(physio_changes, &author)
        .unwrap();
    let mut from_nurse = Vec::new();
    let mut prev = [0; 32];
    for i in 1..=5u64 {
        nurses
            .add_entry(nurse.member(), note(&format!("Passage {i}")), Timestamp(4))
            .unwrap();
        let env = seal(&nurse, i, prev, &nurses.replica_mut().take_local_changes());
        prev = env.hash();
        from_nurse.push(env.bytes().to_vec());
    }
    // Room for three of the nurse's envelopes while the physiotherapist's is missing.
    let one = from_nurse[0].len();
    c.set_defer_limit(3 * one + one / 2);
    let receipt = c.receive(&gp, "nurse", &[], &from_nurse, Timestamp(5));
    assert!(
        receipt.rejected.is_empty(),
        "waiting is not refused: {:?}",
        receipt.rejected
    );
    assert!(receipt.applied.is_empty());
    assert!(
        receipt.incomplete,
        "the sender is asked for what is missing"
    );
    assert!(c.deferred_bytes() <= 3 * one + one / 2);
    assert_eq!(
        c.deferred_bytes() / one,
        3,
        "the oldest wait, the newest are dropped"
    );
    keep(home.as_ref(), receipt.staged);
    // The missing change arrives: it and the three that waited apply at once.
    let receipt = c.receive(
        &gp,
        "physio",
        &[],
        &[from_physio.bytes().to_vec()],
        Timestamp(6),
    );
    assert_eq!(receipt.applied.values().sum::<usize>(), 4);
    keep(home.as_ref(), receipt.staged);
    // The two dropped were not confirmed: sent again, they apply, and nothing is lost.
    let receipt = c.receive(&gp, "nurse", &[], &from_nurse, Timestamp(7));
    assert_eq!(receipt.applied.values().sum::<usize>(), 2);
    assert!(!receipt.incomplete);
    assert_eq!(c.notes().unwrap().len(), 6);
}

#[test]
fn a_circle_opens_at_rest_and_is_listed_from_its_record() {
    let (_dir, home, me) = setup();
    let update = IdentityUpdate {
        family_name: Some("Durand".into()),
        given_names: Some("Jeanne".into()),
        birth_date: Some("1941-03-02".into()),
        ..Default::default()
    };
    let mut c = create(home.as_ref(), &me, &update);
    let id = c.id();
    add_note(home.as_ref(), &mut c, &me, "Tension 13/8", 2);
    let vector = c.vector(cercle_crdt::DocKind::LiaisonNotebook);
    drop(c);

    // The first opening records the operations it checked; the record it writes keeps
    // the listing.
    let (_, batch) = Circle::open(home.as_ref(), &me, &id).unwrap();
    keep_batch(home.as_ref(), batch);
    let (mut c, batch) = Circle::open(home.as_ref(), &me, &id).unwrap();
    assert!(batch.is_empty());
    assert!(!c.is_awake());
    assert_eq!(c.info().patient, "Jeanne Durand");
    let (birth, _, names) = c.listed_identity();
    assert_eq!(
        (birth, names),
        (Some("1941-03-02"), Some(("Durand", "Jeanne")))
    );
    // Sync reads how far each document got without its contents.
    assert_eq!(c.vector(cercle_crdt::DocKind::LiaisonNotebook), vector);
    assert!(matches!(c.notes(), Err(CircleError::AtRest { .. })));
    let w = c.write::<LiaisonNotebook, _>(&me, Timestamp(3), &mut rng(), |nb| {
        nb.add_entry(me.member(), note("refusé au repos"), Timestamp(3))
    });
    assert!(matches!(w.value, Err(CircleError::AtRest { .. })));
    assert!(w.staged.batch.is_empty());

    keep_batch(home.as_ref(), c.wake(home.as_ref(), &me).unwrap());
    assert_eq!(c.notes().unwrap().len(), 1);
    add_note(home.as_ref(), &mut c, &me, "Pansement refait", 4);
    keep_batch(home.as_ref(), c.rest());
    assert!(!c.is_awake());
    keep_batch(home.as_ref(), c.wake(home.as_ref(), &me).unwrap());
    assert_eq!(c.notes().unwrap().len(), 2);
}

#[test]
fn a_record_written_before_the_listing_opens_the_circle_once_to_write_it() {
    let (_dir, home, me) = setup();
    let update = IdentityUpdate {
        family_name: Some("Durand".into()),
        given_names: Some("Jeanne".into()),
        ins: Some("241037512345613".into()),
        ..Default::default()
    };
    let c = create(home.as_ref(), &me, &update);
    let id = c.id();
    let older = CircleRecord {
        info: c.info().clone(),
        names: BTreeMap::new(),
        listing: None,
        waiting: None,
        ops_checked: None,
        unchecked: Vec::new(),
    };
    drop(c);
    let mut batch = Batch::new();
    batch.circle(&id, &serde_json::to_vec(&older).unwrap());
    keep_batch(home.as_ref(), batch);

    let (c, batch) = Circle::open(home.as_ref(), &me, &id).unwrap();
    assert!(c.is_awake());
    assert!(!batch.is_empty());
    keep_batch(home.as_ref(), batch);
    let (c, _) = Circle::open(home.as_ref(), &me, &id).unwrap();
    assert!(!c.is_awake());
    assert_eq!(c.listed_identity().1, Some("241037512345613"));
}

#[test]
fn the_record_vouches_only_for_the_operations_checked_before() {
    let (_dir, home, me) = setup();
    let c = create(home.as_ref(), &me, &IdentityUpdate::default());
    let id = c.id();
    drop(c);
    // The first opening checks every signature and records the log it checked.
    let (_, batch) = Circle::open(home.as_ref(), &me, &id).unwrap();
    assert!(!batch.is_empty());
    keep_batch(home.as_ref(), batch);
    let (_, batch) = Circle::open(home.as_ref(), &me, &id).unwrap();
    assert!(batch.is_empty(), "the same log is vouched for");

    // An operation put in the store behind the node's back (its signature broken) is not
    // vouched for: the log is checked again and the forgery refused.
    let genesis = home.ops(&id).unwrap().remove(0);
    let mut forged = genesis.clone();
    let last = forged.len() - 2;
    forged[last] ^= 1;
    forged[3] ^= 1;
    let mut batch = Batch::new();
    let hash = *blake3::hash(&forged).as_bytes();
    batch.put(
        crate::store::Tree::Ops,
        crate::store::keys::op(&id, &hash),
        forged,
    );
    keep_batch(home.as_ref(), batch);
    assert!(matches!(
        Circle::open(home.as_ref(), &me, &id),
        Err(CircleError::Load { .. })
    ));
}

proptest::proptest! {
    /// An id typed in part finds the circles whose written-out id starts with it, as
    /// reading the written-out id would.
    #[test]
    fn a_prefix_matches_as_the_written_id_does(id in proptest::prelude::any::<[u8; 32]>(), cut in 0usize..70, noise in "[0-9a-gA-F]{0,3}") {
        let id = CircleId(id);
        let written = id.to_string();
        let mut prefix: String = written.chars().take(cut).collect();
        proptest::prop_assert!(starts_with_hex(&id, &prefix));
        prefix.push_str(&noise);
        proptest::prop_assert_eq!(starts_with_hex(&id, &prefix), written.starts_with(&prefix));
    }
}

#[test]
fn the_patients_objection_is_sealed_in_the_log_and_opened_by_the_members() {
    const REASON: &str = "ne souhaite plus que son dossier soit partagé";
    let (_dir, home, gp) = setup();
    let mut c = create(home.as_ref(), &gp, &IdentityUpdate::default());
    let nurse = person("Paul");
    add(home.as_ref(), &mut c, &gp, &nurse, Role::Professional, 2);
    let staged = c
        .withdraw_consent(&gp, &format!("  {REASON} "), Timestamp(3), &mut rng())
        .unwrap();
    keep(home.as_ref(), staged);
    // Every operation as it travels and as a relay keeps it: no word of the reason.
    for op in c.membership().ops() {
        let bytes = op.bytes();
        assert!(
            !bytes.windows(REASON.len()).any(|w| w == REASON.as_bytes()),
            "the reason is in the clear in the log"
        );
    }
    let (suspension, reason) = c.suspension(&gp).unwrap();
    assert_eq!(reason.as_deref(), Some(REASON));
    assert_eq!(suspension.by, gp.device());
    // The nurse's node, which holds the keys of the epochs she was given, reads it too.
    let theirs = open(home.as_ref(), &nurse, &c.id());
    assert_eq!(
        theirs.suspension(&nurse).unwrap().1.as_deref(),
        Some(REASON)
    );
    // An empty reason is the writer's mistake, refused before anything is signed.
    let mut other = create(home.as_ref(), &gp, &IdentityUpdate::default());
    assert!(matches!(
        other.withdraw_consent(&gp, "  ", Timestamp(4), &mut rng()),
        Err(CircleError::Write(_))
    ));
}

#[test]
fn envelopes_taken_in_at_rest_are_held_then_checked_and_a_bad_one_never_reaches_the_notebook() {
    let (_dir, home, gp) = setup();
    let nurse = person("Julien");
    let mut c = create(home.as_ref(), &gp, &IdentityUpdate::default());
    add(home.as_ref(), &mut c, &gp, &nurse, Role::Professional, 2);
    add_note(home.as_ref(), &mut c, &gp, "Tension 13/8", 3);
    let id = c.id();
    let epoch = c.resolution().epoch.unwrap();
    let key = c.epoch_keys(&nurse).remove(&epoch).unwrap();
    // The nurse writes a note, then one that claims to be the GP's: validly signed, and
    // against the notebook's rules.
    let mut theirs = LiaisonNotebook::new(nurse.actor());
    let mut envelopes = Vec::new();
    let mut prev = [0; 32];
    for (seq, author) in [(1, nurse.member()), (2, gp.member())] {
        theirs
            .add_entry(author, note(&format!("Passage {seq}")), Timestamp(4))
            .unwrap();
        let slot = crate::envelope::Slot {
            circle: id,
            doc: DocKind::LiaisonNotebook,
            seq,
            prev,
        };
        let changes = theirs.replica_mut().take_local_changes();
        let env =
            crate::envelope::Envelope::seal(&nurse, slot, (epoch, &key), &changes, &mut rng())
                .unwrap();
        prev = env.hash();
        envelopes.push(env.bytes().to_vec());
    }
    drop(c);

    // At rest, they are taken in with the checks that need no key, and held.
    let mut c = reopen(home.as_ref(), &gp, &id);
    c.ready_log(home.as_ref()).unwrap();
    let receipt = c.receive(&gp, "nurse", &[], &envelopes, Timestamp(5));
    assert_eq!(receipt.unchecked, 2);
    assert!(receipt.applied.is_empty() && receipt.rejected.is_empty());
    assert_eq!(receipt.staged.envelopes.len(), 2, "passed on once durable");
    keep(home.as_ref(), receipt.staged);
    let held = c.vector(DocKind::LiaisonNotebook);
    assert_eq!(
        held.get(&nurse.device()),
        Some(&2),
        "peers are not sent them again"
    );
    // A copy is a replay, taken in at rest too.
    let again = c.receive(&gp, "relay", &[], &envelopes, Timestamp(6));
    assert_eq!((again.replays, again.unchecked), (2, 0));
    drop(c);

    // Held across a restart; woken, the notebook has only what was checked, and a
    // snapshot taken now does not cover them.
    let mut c = reopen(home.as_ref(), &gp, &id);
    assert_eq!(c.unchecked_logs(), 1);
    keep_batch(home.as_ref(), c.wake(home.as_ref(), &gp).unwrap());
    assert_eq!(c.notes().unwrap().len(), 1);
    keep_batch(home.as_ref(), c.snapshots(1));
    let snapshot = home
        .snapshot(&id, DocKind::LiaisonNotebook)
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.covers.get(&nurse.device()), None);

    // Checked: the first applies, dated from its arrival; the second is refused and
    // forgotten.
    let receipt = c
        .check_unchecked(home.as_ref(), &gp, CHECK_AT_ONCE)
        .unwrap();
    assert_eq!(receipt.applied.get(&DocKind::LiaisonNotebook), Some(&1));
    assert_eq!(receipt.rejected.len(), 1, "{:?}", receipt.rejected);
    assert_eq!(receipt.rejected[0].0, "schema");
    assert_eq!(receipt.rejected[0].1.from, "nurse");
    assert_eq!(receipt.unchecked, 0);
    assert!(receipt.staged.envelopes.is_empty(), "not pushed twice");
    keep(home.as_ref(), receipt.staged);
    let texts: Vec<String> = c.notes().unwrap().into_iter().map(|n| n.text).collect();
    assert_eq!(texts, ["Tension 13/8", "Passage 1"]);
    let log = crate::envelope::LogId {
        circle: id,
        doc: DocKind::LiaisonNotebook,
        device: nurse.device(),
    };
    assert!(home.envelopes(&log, 2, 1).unwrap().is_empty());
    drop(c);

    // Opened again, nothing is left to check and the refused note never comes back; the
    // nurse's log still continues after it.
    let mut c = reopen(home.as_ref(), &gp, &id);
    assert_eq!(c.unchecked_logs(), 0);
    keep_batch(home.as_ref(), c.wake(home.as_ref(), &gp).unwrap());
    assert_eq!(c.notes().unwrap().len(), 2);
    let receipt = c.receive(&gp, "nurse", &[], &envelopes[1..], Timestamp(7));
    assert_eq!((receipt.replays, receipt.forks), (1, 0));
}

#[test]
fn a_circle_woken_while_what_it_took_in_at_rest_is_on_its_way_to_the_disk_loses_none_of_it() {
    let (_dir, home, gp) = setup();
    let nurse = person("Julien");
    let mut c = create(home.as_ref(), &gp, &IdentityUpdate::default());
    add(home.as_ref(), &mut c, &gp, &nurse, Role::Professional, 2);
    let id = c.id();
    let epoch = c.resolution().epoch.unwrap();
    let key = c.epoch_keys(&nurse).remove(&epoch).unwrap();
    let mut theirs = LiaisonNotebook::new(nurse.actor());
    theirs
        .add_entry(nurse.member(), note("Passage du soir"), Timestamp(4))
        .unwrap();
    let slot = crate::envelope::Slot {
        circle: id,
        doc: DocKind::LiaisonNotebook,
        seq: 1,
        prev: [0; 32],
    };
    let changes = theirs.replica_mut().take_local_changes();
    let env =
        crate::envelope::Envelope::seal(&nurse, slot, (epoch, &key), &changes, &mut rng()).unwrap();
    drop(c);
    let mut c = reopen(home.as_ref(), &gp, &id);
    c.ready_log(home.as_ref()).unwrap();
    let receipt = c.receive(&gp, "nurse", &[], &[env.bytes().to_vec()], Timestamp(5));
    assert_eq!(receipt.unchecked, 1);
    // Someone reads the circle before the store holds what it took in.
    keep_batch(home.as_ref(), c.wake(home.as_ref(), &gp).unwrap());
    assert_eq!(
        c.vector(DocKind::LiaisonNotebook).get(&nurse.device()),
        Some(&1),
        "still held: a peer is not asked for it again, nor is it left unchecked"
    );
    keep(home.as_ref(), receipt.staged);
    let checked = c
        .check_unchecked(home.as_ref(), &gp, CHECK_AT_ONCE)
        .unwrap();
    assert_eq!(checked.applied.get(&DocKind::LiaisonNotebook), Some(&1));
    let texts: Vec<String> = c.notes().unwrap().into_iter().map(|n| n.text).collect();
    assert_eq!(texts, ["Passage du soir"]);
}
