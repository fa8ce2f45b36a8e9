//! Property: over randomly grown documents, every generated violation of a rule is rejected
//! with that rule's reason, while the legitimate writes around them are accepted.
//!
//! Violations are written with raw Automerge operations on a copy of the victim's document
//! (what a malicious member's modified node would send), then judged by `validate_changes`.

// A test that unwraps fails with the error in its message.
#![allow(clippy::unwrap_used)]
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use cercle_crdt::document::item_id;
use cercle_crdt::{
    ActorId, Change, ChangeAuthor, DocKind, EntryKind, IdentityUpdate, ItemList, LiaisonNotebook,
    MemberId, NewEntry, PatientFile, Rejection, Replica, Role, Thread, Timestamp, validate_changes,
};
use proptest::prelude::*;

const HONEST: MemberId = MemberId::from_const([0x11; 32]);
const MALLORY: MemberId = MemberId::from_const([0x66; 32]);
const COLLEAGUE: MemberId = MemberId::from_const([0x22; 32]);
const T: Timestamp = Timestamp(1_790_000_000_000);

fn mallory_actor() -> ActorId {
    ActorId::from(&[0x66u8; 16][..])
}

/// A notebook with `n` entries by HONEST (every third one an alert), some amended, some
/// acknowledged.
fn notebook(n: usize) -> LiaisonNotebook {
    let mut nb = LiaisonNotebook::new(ActorId::from(&[0x11u8; 16][..]));
    for i in 0..n {
        let kind = if i % 3 == 0 {
            EntryKind::Alert
        } else {
            EntryKind::Observation
        };
        let entry = NewEntry {
            kind,
            text: format!("entrée {i}"),
            vitals: None,
        };
        if let Ok(id) = nb.add_entry(HONEST, entry, T) {
            if i % 4 == 1 {
                let _ = nb.amend(HONEST, &id, "corrigée", T);
            }
            if kind == EntryKind::Alert {
                let _ = nb.acknowledge(COLLEAGUE, &id, T);
            }
        }
    }
    nb
}

fn raw(replica: &Replica) -> AutoCommit {
    let mut doc = replica.doc().clone();
    doc.set_actor(mallory_actor());
    doc
}

fn object(doc: &AutoCommit, obj: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(obj, key) {
        Ok(Some((Value::Object(_), id))) => Some(id),
        _ => None,
    }
}

/// Items of a root collection: (id, object).
fn items(doc: &AutoCommit, root: &str) -> Vec<(String, ObjId)> {
    let Some(coll) = object(doc, &ROOT, root) else {
        return vec![];
    };
    doc.keys(&coll)
        .filter_map(|k| object(doc, &coll, &k).map(|o| (k, o)))
        .collect()
}

fn commit(mut doc: AutoCommit) -> Vec<Change> {
    doc.commit();
    doc.get_last_local_change().into_iter().collect()
}

fn judge(replica: &Replica, changes: &[Change], role: Role) -> Result<(), Rejection> {
    let author = ChangeAuthor {
        member: MALLORY,
        role,
    };
    validate_changes(replica.kind(), replica.doc(), changes, &author).map(|_| ())
}

fn any_scalar() -> impl Strategy<Value = ScalarValue> {
    prop_oneof![
        ".{0,20}".prop_map(|s| ScalarValue::Str(s.into())),
        any::<i64>().prop_map(ScalarValue::Int),
        any::<i64>().prop_map(ScalarValue::Timestamp),
        any::<bool>().prop_map(ScalarValue::Boolean),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Overwriting any field of any existing entry, amendment or acknowledgement.
    #[test]
    fn overwriting_existing_notebook_data_is_rejected(
        n in 1usize..12, root in 0usize..3, pick in any::<usize>(),
        field in prop_oneof![Just("author"), Just("text"), Just("kind"), Just("at"), Just("by"), Just("entry")],
        value in any_scalar(),
    ) {
        let nb = notebook(n);
        let mut doc = raw(nb.replica());
        let all = items(&doc, ["entries", "amendments", "acks"][root]);
        prop_assume!(!all.is_empty());
        let (_, obj) = &all[pick % all.len()];
        prop_assume!(doc.get(obj, field).ok().flatten().is_some());
        doc.put(obj, field, value).ok();
        let r = judge(nb.replica(), &commit(doc), Role::Professional);
        prop_assert!(matches!(r, Err(Rejection::ModifiesExisting { .. })), "{:?}", r);
    }

    /// Deleting any existing entry, or a field of one.
    #[test]
    fn deleting_notebook_data_is_rejected(n in 1usize..12, pick in any::<usize>(), whole in any::<bool>()) {
        let nb = notebook(n);
        let mut doc = raw(nb.replica());
        let all = items(&doc, "entries");
        let (id, obj) = &all[pick % all.len()];
        if whole {
            let coll = object(&doc, &ROOT, "entries").unwrap_or(ROOT);
            doc.delete(&coll, id.as_str()).ok();
        } else {
            doc.delete(obj, "text").ok();
        }
        let r = judge(nb.replica(), &commit(doc), Role::Professional);
        prop_assert!(matches!(r, Err(Rejection::Deletes { .. }) | Err(Rejection::ModifiesExisting { .. })), "{:?}", r);
    }

    /// A new entry or message whose author field names someone else.
    #[test]
    fn writing_in_someone_elses_name_is_rejected(n in 0usize..6, thread in any::<bool>(), victim in any::<[u8; 32]>()) {
        let victim = MemberId::from_bytes(victim);
        prop_assume!(victim != MALLORY);
        let (replica, changes) = if thread {
            let mut t = Thread::new(ActorId::from(&[0x11u8; 16][..]));
            for i in 0..n { let _ = t.send(HONEST, &format!("m{i}"), &[], T); }
            let base = t.replica().clone();
            let mut forged = Thread::load(&t.replica_mut().save(), mallory_actor()).unwrap_or_else(|_| Thread::new(mallory_actor()));
            let _ = forged.send(victim, "c'est moi", &[], T);
            (base, forged.replica_mut().last_local_change().into_iter().collect::<Vec<_>>())
        } else {
            let mut nb = notebook(n);
            let base = nb.replica().clone();
            let mut forged = LiaisonNotebook::load(&nb.replica_mut().save(), mallory_actor()).unwrap_or_else(|_| LiaisonNotebook::new(mallory_actor()));
            let _ = forged.add_entry(victim, NewEntry { kind: EntryKind::Care, text: "soin".into(), vitals: None }, T);
            (base, forged.replica_mut().last_local_change().into_iter().collect::<Vec<_>>())
        };
        prop_assert!(!changes.is_empty());
        let r = judge(&replica, &changes, Role::Professional);
        prop_assert!(matches!(r, Err(Rejection::NotTheAuthor { .. })), "{:?}", r);
    }

    /// A profile published in someone else's name is rejected; one's own is accepted.
    #[test]
    fn a_profile_is_published_only_by_its_member(n in 0usize..4, victim in any::<[u8; 32]>()) {
        let victim = MemberId::from_bytes(victim);
        prop_assume!(victim != MALLORY);
        let mut t = Thread::new(ActorId::from(&[0x11u8; 16][..]));
        for i in 0..n { let _ = t.send(HONEST, &format!("m{i}"), &[], T); }
        let base = t.replica().clone();
        let profile = |member| cercle_crdt::PublishedProfile {
            member,
            at: T,
            name: "Dr Usurpateur".into(),
            profession: "médecin".into(),
            rpps: None,
            adeli: None,
        };
        let mut forged = Thread::load(&t.replica_mut().save(), mallory_actor()).unwrap_or_else(|_| Thread::new(mallory_actor()));
        prop_assert!(forged.publish_profile(victim, &profile(victim), T).is_ok());
        let changes: Vec<_> = forged.replica_mut().last_local_change().into_iter().collect();
        let r = judge(&base, &changes, Role::Professional);
        prop_assert!(matches!(r, Err(Rejection::NotTheAuthor { .. })), "{:?}", r);

        let mut own = Thread::load(&t.replica_mut().save(), mallory_actor()).unwrap_or_else(|_| Thread::new(mallory_actor()));
        prop_assert!(own.publish_profile(MALLORY, &profile(MALLORY), T).is_ok());
        let changes: Vec<_> = own.replica_mut().last_local_change().into_iter().collect();
        prop_assert_eq!(judge(&base, &changes, Role::Caregiver), Ok(()));
        prop_assert_eq!(own.profiles().get(&MALLORY).map(|p| p.name.clone()), Some("Dr Usurpateur".to_string()));
    }

    /// Caregivers and observers writing the patient file, observers writing anything.
    #[test]
    fn roles_are_enforced_on_every_part(op in 0usize..4, caregiver in any::<bool>()) {
        let role = if caregiver { Role::Caregiver } else { Role::Observer };
        let mut pf = PatientFile::new(mallory_actor());
        let _ = match op {
            0 => pf.set_identity(MALLORY, &IdentityUpdate { family_name: Some("X".into()), ..Default::default() }, T),
            1 => pf.add_item(MALLORY, ItemList::Medications, &[("name", "Doliprane")], T).map(|_| ()),
            2 => pf.set_care_plan(MALLORY, "plan", T),
            _ => pf.record_consent(MALLORY, cercle_crdt::ConsentStatus::Given, "tout", T),
        };
        let changes = pf.replica_mut().changes_since(&[]);
        let fresh = PatientFile::new(ActorId::random());
        let r = judge(fresh.replica(), &changes, role);
        prop_assert!(matches!(r, Err(Rejection::RoleForbids { kind: DocKind::PatientFile, .. })), "{:?}", r);
        prop_assert_eq!(judge(fresh.replica(), &changes, Role::Professional), Ok(()));
        if !caregiver {
            let mut t = Thread::new(mallory_actor());
            let _ = t.send(MALLORY, "bonjour", &[], T);
            let r = judge(Thread::new(ActorId::random()).replica(), &t.replica_mut().changes_since(&[]), Role::Observer);
            prop_assert!(matches!(r, Err(Rejection::RoleForbids { .. })), "{:?}", r);
        }
    }

    /// Any key outside the schema, on a new item or at the root, of any document kind.
    #[test]
    fn data_outside_the_schema_is_rejected(kind in 0usize..3, key in "[a-z_]{1,12}", value in any_scalar(), at_root in any::<bool>()) {
        let replica = match kind {
            0 => PatientFile::new(ActorId::random()).replica().clone(),
            1 => LiaisonNotebook::new(ActorId::random()).replica().clone(),
            _ => Thread::new(ActorId::random()).replica().clone(),
        };
        let mut doc = raw(&replica);
        if at_root {
            doc.put(ROOT, key.as_str(), value).ok();
        } else {
            let root = ["contacts", "entries", "messages"][kind];
            let coll = object(&doc, &ROOT, root).unwrap_or(ROOT);
            let item = doc.put_object(&coll, item_id(&mallory_actor(), 1, 0).as_str(), ObjType::Map).unwrap_or(ROOT);
            let known: &[&str] = match kind {
                0 => &["name", "relation", "phone", "email", "added_by", "added_at"],
                1 => &["author", "at", "kind", "text", "vitals"],
                _ => &["author", "at", "text", "attachments"],
            };
            prop_assume!(!known.contains(&key.as_str()));
            doc.put(&item, key.as_str(), value).ok();
        }
        let r = judge(&replica, &commit(doc), Role::Professional);
        prop_assert!(matches!(r, Err(Rejection::OutsideSchema { .. })), "{:?}", r);
    }
}

/// An import writes many entries in one change; another replica accepts it whole, and the
/// same change written in someone else's name is refused whole.
#[test]
fn an_import_of_many_entries_is_one_valid_change() {
    let mut writer = LiaisonNotebook::new(ActorId::from(&[0x11u8; 16][..]));
    let entries = (0..50)
        .map(|i| NewEntry {
            kind: EntryKind::Care,
            text: format!("passage {i}"),
            vitals: None,
        })
        .collect();
    let ids = writer.add_entries(HONEST, entries, T).unwrap();
    assert_eq!(ids.len(), 50);
    let change = writer
        .replica_mut()
        .last_local_change()
        .unwrap_or_else(|| panic!("no change"));
    let mut reader = LiaisonNotebook::new(ActorId::from(&[0x22u8; 16][..]));
    let honest = ChangeAuthor {
        member: HONEST,
        role: Role::Professional,
    };
    reader
        .replica_mut()
        .apply_changes(vec![change.clone()], &honest)
        .unwrap();
    assert_eq!(reader.entries().len(), 50);
    let impostor = ChangeAuthor {
        member: MALLORY,
        role: Role::Professional,
    };
    let mut other = LiaisonNotebook::new(ActorId::from(&[0x33u8; 16][..]));
    assert!(
        other
            .replica_mut()
            .apply_changes(vec![change], &impostor)
            .is_err()
    );
    assert!(other.entries().is_empty());
    // One invalid entry refuses the whole import.
    let bad = vec![
        NewEntry {
            kind: EntryKind::Care,
            text: "ok".into(),
            vitals: None,
        },
        NewEntry {
            kind: EntryKind::Care,
            text: "   ".into(),
            vitals: None,
        },
    ];
    assert!(writer.add_entries(HONEST, bad, T).is_err());
    assert_eq!(writer.entries().len(), 50);
}

/// Stopping a medication is a change another replica takes from a professional, keeps the
/// line with its reason, and refuses from a caregiver or in someone else's name.
#[test]
fn a_stopped_medication_is_taken_from_a_professional_only_and_keeps_its_line() {
    let mut writer = PatientFile::new(ActorId::from(&[0x11u8; 16][..]));
    let id = writer
        .add_item(
            HONEST,
            ItemList::Medications,
            &[("name", "Furosémide 40 mg"), ("start", "2026-11-02")],
            T,
        )
        .unwrap();
    let added = writer.replica_mut().last_local_change().unwrap();
    writer
        .stop_medication(HONEST, &id, "Hypotension orthostatique", T)
        .unwrap();
    let stop = writer.replica_mut().last_local_change().unwrap();
    let author = |member, role| ChangeAuthor { member, role };
    let mut reader = PatientFile::new(ActorId::from(&[0x22u8; 16][..]));
    let r = reader.replica_mut();
    r.apply_changes(vec![added], &author(HONEST, Role::Professional))
        .unwrap();
    for (who, role) in [(HONEST, Role::Caregiver), (MALLORY, Role::Professional)] {
        let refused = validate_changes(
            r.kind(),
            r.doc(),
            std::slice::from_ref(&stop),
            &author(who, role),
        );
        assert!(refused.is_err(), "{who:?} as {role:?}");
    }
    r.apply_changes(vec![stop], &author(HONEST, Role::Professional))
        .unwrap();
    let meds = reader.items(ItemList::Medications);
    assert_eq!(meds.len(), 1);
    assert_eq!(meds[0].get("status"), Some("stopped"));
    assert_eq!(
        meds[0].get("stop_reason"),
        Some("Hypotension orthostatique")
    );
    assert_eq!(meds[0].get("start"), Some("2026-11-02"));
}

/// Changing and removing an item are changes another replica takes from a professional,
/// and refuses from a caregiver or in someone else's name; the removed item stays.
#[test]
fn a_changed_or_removed_item_is_taken_from_a_professional_only_and_stays_in_the_record() {
    let mut writer = PatientFile::new(ActorId::from(&[0x11u8; 16][..]));
    let id = writer
        .add_item(
            HONEST,
            ItemList::Allergies,
            &[("substance", "Latex"), ("reaction", "urticaire")],
            T,
        )
        .unwrap();
    let added = writer.replica_mut().last_local_change().unwrap();
    writer
        .change_item(
            HONEST,
            ItemList::Allergies,
            &id,
            &[("criticality", "high")],
            T,
        )
        .unwrap();
    let changed = writer.replica_mut().last_local_change().unwrap();
    writer
        .retire_item(HONEST, ItemList::Allergies, &id, "saisie erronée", T)
        .unwrap();
    let removed = writer.replica_mut().last_local_change().unwrap();
    let author = |member, role| ChangeAuthor { member, role };
    let mut reader = PatientFile::new(ActorId::from(&[0x22u8; 16][..]));
    let r = reader.replica_mut();
    r.apply_changes(vec![added], &author(HONEST, Role::Professional))
        .unwrap();
    for change in [&changed, &removed] {
        for (who, role) in [(HONEST, Role::Caregiver), (MALLORY, Role::Professional)] {
            let refused = validate_changes(
                r.kind(),
                r.doc(),
                std::slice::from_ref(change),
                &author(who, role),
            );
            assert!(refused.is_err(), "{who:?} as {role:?}");
        }
    }
    r.apply_changes(vec![changed, removed], &author(HONEST, Role::Professional))
        .unwrap();
    let items = reader.items(ItemList::Allergies);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].get("criticality"), Some("high"));
    assert_eq!(items[0].get("removed_reason"), Some("saisie erronée"));
    assert!(items[0].is_removed());
}
