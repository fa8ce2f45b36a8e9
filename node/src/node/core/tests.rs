//! Node cores wired through the deterministic cluster (sans I/O): invites, and document
//! contents fetched between members and refused to strangers.

use cercle_crdt::Role;

use crate::node::cluster::{Cluster, WireConfig};
use crate::node::{Input, Now};
use crate::ops::circles::{CircleCreate, CircleList, CircleShow};
use crate::ops::documents::{DocAdd, DocGet};
use crate::ops::invite::InviteCreate;
use crate::ops::join::{Join, JoinStatus};
use crate::store::Store;
use crate::sync::Message;

const WAIT: i64 = 10_000;

fn cluster(names: &[&str]) -> Cluster {
    Cluster::new(7, names, WireConfig::default()).unwrap()
}

/// Node `a` creates a circle; its id.
fn new_circle(c: &mut Cluster, a: usize) -> String {
    c.create_circle(a, "Jeanne Durand", WAIT).unwrap()
}

/// Node `a` creates a circle and an invite code to it.
fn circle_and_code(c: &mut Cluster, a: usize) -> (String, String) {
    let circle = new_circle(c, a);
    let invite = InviteCreate {
        circle: circle.clone(),
        role: Role::Professional,
        expires_in: 3600,
    };
    (circle, c.ask(a, invite, WAIT).unwrap().code)
}

fn join(c: &mut Cluster, n: usize, code: &str) -> String {
    c.ask(n, Join { code: code.into() }, WAIT).unwrap().invite
}

fn state(c: &mut Cluster, n: usize, invite: &str) -> (String, Option<String>) {
    let status = JoinStatus {
        invite: invite.into(),
    };
    let v = c.ask(n, status, WAIT).unwrap();
    (v.state, v.reason)
}

#[test]
fn an_invite_admits_one_member_once() {
    let mut c = cluster(&["A", "B", "C"]);
    let (circle, code) = circle_and_code(&mut c, 0);
    let invite = join(&mut c, 1, &code);
    assert_eq!(state(&mut c, 1, &invite).0, "reaching");
    c.connect(0, 1);
    c.run_for(5_000);
    assert_eq!(state(&mut c, 1, &invite).0, "joined");
    let shown = c
        .ask(
            1,
            CircleShow {
                circle: circle.clone(),
            },
            WAIT,
        )
        .unwrap();
    assert_eq!(shown.members.len(), 2);
    // B never saw A's card: A's name comes from the profile A published in the circle.
    let mut names: Vec<_> = shown
        .members
        .iter()
        .filter_map(|m| m.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["A", "B"]);

    // The same code from another device: refused, nothing of the circle sent.
    let invite_c = join(&mut c, 2, &code);
    c.connect(0, 2);
    c.run_for(5_000);
    let (s, reason) = state(&mut c, 2, &invite_c);
    assert_eq!(s, "refused");
    assert!(reason.is_some_and(|r| r.contains("already used")));
    assert!(c.ask(2, CircleList {}, WAIT).unwrap().circles.is_empty());
}

/// The short code: the inviter found among connected peers by its fingerprint (the LAN
/// case), whether connected before or after the code is typed.
#[test]
fn a_short_code_finds_its_inviter_among_the_peers_and_joins() {
    let mut c = cluster(&["A", "B", "C", "D"]);
    let circle = new_circle(&mut c, 0);
    let invite = |c: &mut Cluster| {
        let create = InviteCreate {
            circle: circle.clone(),
            role: Role::Professional,
            expires_in: 3600,
        };
        c.ask(0, create, WAIT).unwrap().short
    };
    let short = invite(&mut c);
    assert_eq!(short.len(), 29, "{short}");
    // B is connected to C only, then to A.
    c.connect(1, 2);
    let id = join(&mut c, 1, &short.to_lowercase());
    c.run_for(6_000);
    assert_eq!(state(&mut c, 1, &id).0, "reaching");
    c.connect(0, 1);
    c.run_for(6_000);
    assert_eq!(state(&mut c, 1, &id).0, "joined");
    let view = c.ask(1, JoinStatus { invite: id }, WAIT).unwrap();
    assert_eq!(view.circle, circle);

    // D, already connected to A when it types its code.
    let second = invite(&mut c);
    c.connect(0, 3);
    c.run_for(1_000);
    let id = join(&mut c, 3, &second);
    c.run_for(6_000);
    assert_eq!(state(&mut c, 3, &id).0, "joined");
}

#[test]
fn a_forged_secret_is_refused() {
    let mut c = cluster(&["A", "B"]);
    let (_, code) = circle_and_code(&mut c, 0);
    let mut parsed = crate::invite::InviteCode::decode(&code).unwrap();
    parsed.secret[0] ^= 1;
    let invite = join(&mut c, 1, &parsed.encode());
    c.connect(0, 1);
    c.run_for(5_000);
    let (s, reason) = state(&mut c, 1, &invite);
    assert_eq!(s, "refused");
    // A forged secret names another invite id: the inviter does not know it.
    assert!(reason.is_some_and(|r| r.contains("does not know")), "{s}");
}

#[test]
fn a_document_reaches_a_member_on_demand_and_never_a_stranger() {
    let mut c = cluster(&["A", "B", "S"]);
    let (circle, code) = circle_and_code(&mut c, 0);
    join(&mut c, 1, &code);
    c.connect(0, 1);
    c.run_for(5_000);
    // Three parts' worth.
    let content: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let blob = *blake3::hash(&content).as_bytes();
    let add = DocAdd {
        circle: circle.clone(),
        name: "radio.png".into(),
        media_type: "image/png".into(),
        content: hex::encode(&content),
    };
    let ids = c.ask(0, add, WAIT).unwrap().ids;
    c.run_for(2_000);
    let get = DocGet {
        circle: circle.clone(),
        doc: ids[0].clone(),
    };
    let first = c.ask(1, get.clone(), WAIT).unwrap();
    assert!(first.content.is_none(), "not here yet: fetched on demand");
    c.run_for(2_000);
    let got = c.ask(1, get, WAIT).unwrap();
    assert_eq!(got.content.and_then(|h| hex::decode(h).ok()), Some(content));

    // A device that is not a member asks for it: no answer.
    let id = c.members[0]
        .core
        .circles()
        .open
        .keys()
        .next()
        .copied()
        .unwrap();
    let stranger = c.members[2].device;
    let want = Message::BlobWant {
        circle: id,
        blob: blob.to_vec(),
        offset: 0,
    };
    let now = Now::from_millis(c.now_ms());
    let out = c.members[0].core.handle(
        Input::Message {
            device: stranger,
            message: want,
        },
        now,
    );
    assert!(out.is_empty(), "{out:?}");
}

/// A store whose writes start failing (a disk that fills up) once `ok` batches were taken.
#[derive(Debug)]
struct FillingDisk {
    inner: std::sync::Arc<crate::store::MemoryStore>,
    ok: std::sync::atomic::AtomicUsize,
}

impl crate::store::Store for FillingDisk {
    fn submit(&self, batch: crate::store::Batch) -> crate::store::Ticket {
        use std::sync::atomic::Ordering;
        if self.ok.load(Ordering::SeqCst) == 0 {
            let full = crate::store::StoreError::DiskFull {
                path: "/full".into(),
            };
            return crate::store::Ticket::ready(Err(full));
        }
        self.ok.fetch_sub(1, Ordering::SeqCst);
        self.inner.submit(batch)
    }
    fn location(&self) -> &std::path::Path {
        self.inner.location()
    }
    fn get(
        &self,
        tree: crate::store::Tree,
        key: &[u8],
    ) -> Result<Option<crate::store::Opened>, crate::store::StoreError> {
        self.inner.get(tree, key)
    }
    fn contains(
        &self,
        tree: crate::store::Tree,
        key: &[u8],
    ) -> Result<bool, crate::store::StoreError> {
        self.inner.contains(tree, key)
    }
    fn scan(
        &self,
        tree: crate::store::Tree,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, crate::store::Opened)>, crate::store::StoreError> {
        self.inner.scan(tree, prefix)
    }
    fn range(
        &self,
        tree: crate::store::Tree,
        keys: crate::store::Keys,
        limit: usize,
    ) -> Result<crate::store::KeyValues, crate::store::StoreError> {
        self.inner.range(tree, keys, limit)
    }
    fn last(
        &self,
        tree: crate::store::Tree,
        keys: crate::store::Keys,
    ) -> Result<Option<(Vec<u8>, crate::store::Opened)>, crate::store::StoreError> {
        self.inner.last(tree, keys)
    }
}

#[test]
fn a_write_the_store_refuses_is_not_acknowledged_and_what_was_acknowledged_survives() {
    use crate::node::offline::OfflineNode;
    use crate::ops::ErrorKind;
    use crate::ops::notes::{NoteAdd, NoteList};
    let inner = std::sync::Arc::new(crate::store::MemoryStore::new("disk"));
    let disk = std::sync::Arc::new(FillingDisk {
        inner: inner.clone(),
        ok: 1000.into(),
    });
    let profile = crate::identity::Profile::new("Dr Martin", "médecin", None, None).unwrap();
    let me = crate::identity::LocalIdentity::generate(profile, cercle_crdt::Timestamp(1)).unwrap();
    let secrets = me.secrets();
    let public = me.public();
    let mut node = OfflineNode::open(disk.clone(), me, "p".into()).unwrap();
    let create = CircleCreate::for_patient("Jeanne Durand");
    let circle = node.ask(create).unwrap().circles[0].id.clone();
    let add = |text: &str| NoteAdd {
        circle: circle.clone(),
        texts: vec![text.into()],
        kind: cercle_crdt::EntryKind::Observation,
        at: None,
        vitals: None,
        to: None,
    };
    disk.ok.store(2, std::sync::atomic::Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for text in ["un", "deux", "trois"] {
        match node.ask(add(text)) {
            Ok(added) => acknowledged.extend(added.ids),
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
                assert!(e.message.contains("full"), "{e}");
            }
        }
    }
    assert_eq!(acknowledged.len(), 2, "the third write was refused");
    drop(node);
    // Opened again on what reached the disk: exactly what was acknowledged.
    let me = crate::identity::LocalIdentity::from_secrets(&secrets, public).unwrap();
    let mut node = OfflineNode::open(inner, me, "p".into()).unwrap();
    let list = NoteList { circle };
    let mut held: Vec<String> = node
        .ask(list)
        .unwrap()
        .notes
        .into_iter()
        .map(|n| n.id)
        .collect();
    // Notes of the same millisecond are listed by id.
    held.sort();
    acknowledged.sort();
    assert_eq!(held, acknowledged);
}

/// Node `by` creates a circle for `patient` and adds node `who` by its card.
fn circle_adding(c: &mut Cluster, by: usize, who: usize, patient: &str) -> String {
    let circle = c.create_circle(by, patient, WAIT).unwrap();
    c.add_member(by, &circle, who, Role::Caregiver, WAIT)
        .unwrap();
    circle
}

#[test]
fn a_circle_a_member_added_this_node_to_waits_for_its_users_answer() {
    let mut c = cluster(&["Dr Martin", "Julien", "Mallory"]);
    let circle = circle_adding(&mut c, 0, 1, "Jeanne Durand");
    c.connect(0, 1);
    c.run_for(5_000);
    // Not held, not written anywhere: shown as an invitation, with who and for whom.
    let list = c.ask(1, CircleList {}, WAIT).unwrap();
    assert!(list.circles.is_empty());
    let [invitation] = list.invitations.as_slice() else {
        panic!("one invitation expected: {list:?}");
    };
    assert_eq!(invitation.circle, circle);
    assert_eq!(invitation.patient, "Jeanne Durand");
    assert_eq!(invitation.added_by_name.as_deref(), Some("Dr Martin"));
    assert_eq!(invitation.role, Some(Role::Caregiver));
    let id: crate::circle::membership::CircleId = circle.parse().unwrap();
    assert!(c.members[1].store.circle(&id).unwrap().is_none());
    assert!(c.members[1].store.ops(&id).unwrap().is_empty());

    // Accepted: joined, and the rest follows.
    let accept = crate::ops::circles::CircleAccept {
        circle: circle[..10].to_string(),
        always: false,
    };
    assert_eq!(c.ask(1, accept, WAIT).unwrap().circles[0].id, circle);
    c.run_for(5_000);
    assert_eq!(c.ask(1, CircleList {}, WAIT).unwrap().circles.len(), 1);
    assert!(c.members[1].store.circle(&id).unwrap().is_some());

    // A stranger holding the card adds this node to circles of its own: four wait at
    // most, a declined one never comes back.
    let strange: Vec<String> = (0..6)
        .map(|i| circle_adding(&mut c, 2, 1, &format!("Patient {i}")))
        .collect();
    c.connect(2, 1);
    c.run_for(10_000);
    let list = c.ask(1, CircleList {}, WAIT).unwrap();
    assert_eq!(list.circles.len(), 1, "nothing joined without an answer");
    assert_eq!(list.invitations.len(), super::invitations::MAX_PER_PEER);
    let first = list.invitations[0].circle.clone();
    let decline = crate::ops::circles::CircleDecline {
        circle: first.clone(),
    };
    c.ask(1, decline, WAIT).unwrap();
    c.disconnect(2, 1);
    c.connect(2, 1);
    c.run_for(10_000);
    let list = c.ask(1, CircleList {}, WAIT).unwrap();
    assert!(list.invitations.iter().all(|i| i.circle != first));
    assert!(strange.contains(&first));
    let unknown = crate::ops::circles::CircleAccept {
        circle: "ffff".into(),
        always: false,
    };
    assert_eq!(
        c.ask(1, unknown, WAIT).unwrap_err().kind,
        crate::ops::ErrorKind::NotFound
    );
}

/// A relay's introductions: taken only from a relay of this node, for a circle held here,
/// and only for devices this node counts as current members; the lower device key dials.
#[test]
fn a_relay_introduces_only_members_and_only_a_relay_introduces() {
    use super::Effect;
    let mut c = cluster(&["Dr Martin", "Julien", "Relais", "Mallory"]);
    let circle = circle_adding(&mut c, 0, 1, "Jeanne Durand");
    let id: crate::circle::membership::CircleId = circle.parse().unwrap();
    let [gp, nurse, relay, stranger] = [0, 1, 2, 3].map(|i| c.members[i].device);
    let now = Now(c.now_ms());
    let met = |c: &mut Cluster, from, devices: Vec<_>| {
        let message = Message::Met {
            circle: id,
            devices,
        };
        let effects = c.members[0].core.handle(
            Input::Message {
                device: from,
                message,
            },
            now,
        );
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Meet { device, via } => Some((device, via)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // Not a relay of this node: refused, counted.
    assert!(met(&mut c, relay, vec![nurse]).is_empty());
    let refused = c.members[0].core.refusals.counts();
    assert_eq!(refused.get("not_a_relay"), Some(&1), "{refused:?}");

    c.members[0].core.circles.relays.insert(relay);
    let dialed = met(&mut c, relay, vec![nurse, stranger, gp]);
    // The stranger and this node itself are never dialed; the nurse is, by the lower key.
    // (The cluster's seed gives the coordinator the lower key: this node dials.)
    assert!(gp < nurse);
    assert_eq!(dialed, vec![(nurse, relay)]);
    // Already connected: not dialed again.
    c.connect(0, 1);
    c.run_for(1_000);
    assert!(met(&mut c, relay, vec![nurse]).is_empty());
    // More devices than one introduction may name: refused whole.
    let many = vec![nurse; crate::sync::MAX_MET_DEVICES + 1];
    assert!(met(&mut c, relay, many).is_empty());
    let refused = c.members[0].core.refusals.counts();
    assert_eq!(refused.get("too_many_items"), Some(&1), "{refused:?}");
}

/// Node `i`'s view of `circle`: its members' devices, by member.
fn devices_of(c: &mut Cluster, i: usize, circle: &str) -> Vec<usize> {
    let shown = c
        .ask(
            i,
            CircleShow {
                circle: circle.into(),
            },
            WAIT,
        )
        .unwrap();
    shown.members.iter().map(|m| m.devices.len()).collect()
}

/// A GP's second computer meets the first, which holds 200 circles: it holds them all
/// within seconds of (virtual) time, asking a few at a time and the next as each arrives,
/// not one batch per anti-entropy round; and once both hold the same, reconnecting costs
/// one small message each way, not a list of the circles.
#[test]
fn a_second_device_takes_in_all_its_members_circles_and_an_idle_reconnection_costs_a_summary() {
    const CIRCLES: usize = 200;
    let mut c = cluster(&["Dr Martin", "second computer"]);
    for _ in 0..CIRCLES {
        new_circle(&mut c, 0);
    }
    c.pair(0, 1).unwrap();
    let start = c.now_ms();
    c.connect(0, 1);
    let mut held = 0;
    while c.now_ms() - start < 60_000 {
        c.run_for(250);
        held = c.ask(1, CircleList {}, WAIT).unwrap().circles.len();
        if held == CIRCLES {
            break;
        }
    }
    assert_eq!(held, CIRCLES);
    let took = c.now_ms() - start;
    assert!(
        took <= 10_000,
        "all circles held after {took} ms of virtual time"
    );

    c.run_for(5_000);
    c.disconnect(0, 1);
    c.run_for(1_000);
    let before = c.stats;
    c.connect(0, 1);
    c.run_for(5_000);
    let (messages, bytes) = (
        c.stats.messages - before.messages,
        c.stats.bytes - before.bytes,
    );
    assert_eq!(messages, 2, "{messages} messages, {bytes} bytes");
    assert!(bytes <= 4096, "{bytes} bytes");
}

#[test]
fn a_paired_device_joins_its_members_circles_and_only_its_members_revocations_spread() {
    use crate::ops::devices::{DevicePair, DeviceRevoke, PairStatus, PairWith};
    use crate::ops::members::MemberAdd;
    use crate::ops::status::Card;
    // 0: the member's first device; 1: a new machine; 2: a coordinator with two circles.
    let mut c = cluster(&["Dr Martin", "new machine", "Coordinator"]);
    let (k1, k2) = (new_circle(&mut c, 2), new_circle(&mut c, 2));
    let card = c.ask(0, Card {}, WAIT).unwrap().card;
    for k in [&k1, &k2] {
        let add = MemberAdd {
            circle: k.clone(),
            card: card.clone(),
            role: Role::Professional,
        };
        c.ask(2, add, WAIT).unwrap();
    }
    c.connect(0, 2);
    c.run_for(5_000);
    assert_eq!(c.accept_invitations(0, WAIT), 2);

    // A wrong code is refused by the first device; the right one certifies the new one.
    let code = c.ask(0, DevicePair {}, WAIT).unwrap().code;
    let mut forged = crate::pairing::PairCode::decode(&code).unwrap();
    forged.secret[0] ^= 1;
    c.ask(
        1,
        PairWith {
            code: forged.encode(),
        },
        WAIT,
    )
    .unwrap();
    c.connect(0, 1);
    c.run_for(5_000);
    let refused = c.ask(1, PairStatus {}, WAIT).unwrap();
    assert_eq!(refused.state, "refused", "{refused:?}");
    c.disconnect(0, 1);
    c.ask(1, PairWith { code }, WAIT).unwrap();
    c.connect(0, 1);
    c.run_for(5_000);
    let paired = c.ask(1, PairStatus {}, WAIT).unwrap();
    assert_eq!(paired.state, "paired", "{paired:?}");
    siblings_as_gathered(&c);
    let identity = paired.identity.unwrap();
    let me = c.members[1].core.me();
    let keys = crate::identity::LocalIdentity::from_secrets(&me.secrets(), me.public()).unwrap();
    let second = keys.paired(identity).unwrap();
    let (member, second_device) = (second.member(), second.device());
    assert_eq!(member, c.members[0].core.me().member());
    assert!(!second.holds_member_key());

    // Restarted with its certificate, it receives both circles from the first device,
    // without an invitation; everyone counts two devices for the member.
    c.restart_as(1, second).unwrap();
    c.connect(0, 1);
    c.connect(1, 2);
    c.run_for(20_000);
    let held = c.ask(1, CircleList {}, WAIT).unwrap();
    assert_eq!(held.circles.len(), 2, "{held:?}");
    assert!(held.invitations.is_empty());
    for k in [&k1, &k2] {
        let mut counts = devices_of(&mut c, 2, k);
        counts.sort_unstable();
        assert_eq!(counts, vec![1, 2], "circle {k}");
    }
    siblings_as_gathered(&c);

    // The coordinator (not the member) revokes the new device in the first circle only:
    // the member's devices do not spread that to the other circle.
    let id: crate::circle::membership::CircleId = k1.parse().unwrap();
    let coordinator = &mut c.members[2].core;
    let now = coordinator.now();
    let circle = coordinator.circles.open.get_mut(&id).unwrap();
    let staged = circle
        .revoke_device(
            &coordinator.me,
            &member,
            &second_device,
            now,
            &mut coordinator.rng,
        )
        .unwrap();
    coordinator.stage(id, staged);
    c.run_for(20_000);
    // The member's first device restarts (and so looks at every circle again).
    let me = c.members[0].core.me();
    let again = crate::identity::LocalIdentity::from_secrets(&me.secrets(), me.public()).unwrap();
    c.restart_as(0, again).unwrap();
    c.connect(0, 1);
    c.connect(0, 2);
    c.run_for(20_000);
    let mut in_k1 = devices_of(&mut c, 0, &k1);
    in_k1.sort_unstable();
    assert_eq!(
        in_k1,
        vec![1, 1],
        "the coordinator's revocation reached the member"
    );
    let mut in_k2 = devices_of(&mut c, 2, &k2);
    in_k2.sort_unstable();
    assert_eq!(
        in_k2,
        vec![1, 2],
        "a coordinator's revocation spread to another circle"
    );
    siblings_as_gathered(&c);

    // The member revokes it from the first device: gone from every circle.
    let revoked = DeviceRevoke {
        device: second_device.to_string(),
    };
    c.ask(0, revoked, WAIT).unwrap();
    c.run_for(20_000);
    for k in [&k1, &k2] {
        let mut counts = devices_of(&mut c, 2, k);
        counts.sort_unstable();
        assert_eq!(counts, vec![1, 1], "circle {k}");
    }
    siblings_as_gathered(&c);
}

/// Every node's member's devices, as cached, are those gathered afresh over its records
/// and circles (each node asked for them as the circles changed).
fn siblings_as_gathered(c: &Cluster) {
    for (i, m) in c.members.iter().enumerate() {
        assert_eq!(m.core.siblings(), m.core.gather_siblings(), "node {i}");
    }
}

/// How many of node `i`'s circles are awake.
fn awake(c: &Cluster, i: usize) -> usize {
    let circles = c.members[i].core.circles();
    circles.open.values().filter(|x| x.is_awake()).count()
}

fn note(c: &mut Cluster, i: usize, circle: &str, text: &str) {
    let add = crate::ops::notes::NoteAdd {
        circle: circle.into(),
        texts: vec![text.into()],
        kind: cercle_crdt::EntryKind::Care,
        at: None,
        vitals: None,
        to: None,
    };
    c.ask(i, add, WAIT).unwrap();
}

fn texts(c: &mut Cluster, i: usize, circle: &str) -> Vec<String> {
    let list = crate::ops::notes::NoteList {
        circle: circle.into(),
    };
    let notes = c.ask(i, list, WAIT).unwrap().notes;
    notes.into_iter().map(|n| n.text).collect()
}

#[test]
fn circles_rest_until_needed_and_lose_nothing_in_between() {
    use crate::node::core::{AWAKE_MAX, REST_AFTER_MS};
    let mut c = cluster(&["GP", "Nurse"]);
    let first = new_circle(&mut c, 0);
    c.add_member(0, &first, 1, Role::Professional, WAIT)
        .unwrap();
    note(&mut c, 0, &first, "avant le redémarrage");
    let more = AWAKE_MAX + 6;
    for i in 1..more {
        c.create_circle(0, &format!("Patient{i} Durand"), WAIT)
            .unwrap();
    }
    assert_eq!(awake(&c, 0), more, "a circle created here is awake");
    // The node reads the alerts waiting in each (for its reminders) within a minute.
    c.run_for(61_000);

    // Restarted, the GP's node holds every circle at rest, and listing them wakes none.
    c.set_home_relays(0, Default::default()).unwrap();
    assert_eq!(awake(&c, 0), 0);
    let listed = c.ask(0, CircleList {}, WAIT).unwrap().circles;
    assert_eq!(listed.len(), more);
    assert!(listed.iter().any(|l| l.patient == "Jeanne Durand"));
    assert_eq!(awake(&c, 0), 0);

    // The nurse's note wakes the one circle it is for.
    c.connect(0, 1);
    c.run_for(2_000);
    assert_eq!(c.accept_invitations(1, WAIT), 1);
    c.run_for(2_000);
    note(&mut c, 1, &first, "pansement refait");
    c.run_for(2_000);
    assert_eq!(awake(&c, 0), 1);

    // Idle (its alerts read for the reminders within the minute), it rests again; read,
    // it wakes with both notes.
    c.run_for(REST_AFTER_MS + 62_000);
    assert_eq!(awake(&c, 0), 0);
    assert_eq!(
        texts(&mut c, 0, &first),
        ["avant le redémarrage", "pansement refait"]
    );
    assert_eq!(awake(&c, 0), 1);

    // Reading every circle wakes each, and the least recently used go back to rest.
    for l in &listed {
        texts(&mut c, 0, &l.id);
    }
    assert!(awake(&c, 0) > AWAKE_MAX);
    c.run_for(2_000);
    assert_eq!(awake(&c, 0), AWAKE_MAX);
    // A note written while the circle rests (offline, by the nurse) reaches it as well.
    c.disconnect(0, 1);
    c.run_for(REST_AFTER_MS + 62_000);
    assert_eq!(awake(&c, 0), 0);
    note(&mut c, 1, &first, "hors ligne");
    c.connect(0, 1);
    c.run_for(5_000);
    assert_eq!(
        texts(&mut c, 0, &first),
        ["avant le redémarrage", "pansement refait", "hors ligne"]
    );
}

#[test]
fn a_backlog_of_a_peers_data_is_applied_in_one_batch_and_in_order() {
    let mut c = cluster(&["GP", "Nurse"]);
    let circle = new_circle(&mut c, 0);
    c.add_member(0, &circle, 1, Role::Professional, WAIT)
        .unwrap();
    c.connect(0, 1);
    c.run_for(2_000);
    assert_eq!(c.accept_invitations(1, WAIT), 1);
    c.run_for(2_000);
    c.record_applied = true;
    c.take_applied();

    // The nurse's node is busy: the GP's notes wait in its queue, one message each.
    c.hold(1);
    let written = ["lundi", "mardi", "mercredi", "jeudi", "vendredi"];
    for text in written {
        note(&mut c, 0, &circle, text);
    }
    c.run_for(1_000);
    assert!(c.take_applied().is_empty(), "nothing reached the busy node");
    c.release(1);
    let applied = c.take_applied();
    assert_eq!(applied.len(), 1, "the five notes in one batch: {applied:?}");
    assert_eq!(texts(&mut c, 1, &circle), written);
}

/// A practice's nurse accepts her GP's circles always: his pending invitations are joined,
/// and every later circle he adds her to (far past the bound of pending invitations) is
/// joined at once, after a restart too; a circle from anyone else still waits as an
/// invitation.
#[test]
fn a_colleague_whose_circles_are_accepted_always_brings_them_all_without_asking() {
    use crate::ops::circles::CircleAccept;
    const MORE: usize = 40;
    let mut c = cluster(&["GP", "Nurse", "Other"]);
    let first = circle_adding(&mut c, 0, 1, "Jeanne Durand");
    let second = circle_adding(&mut c, 0, 1, "Paul Martin");
    c.connect(0, 1);
    c.run_for(3_000);
    let waiting = c.ask(1, CircleList {}, WAIT).unwrap().invitations;
    assert_eq!(waiting.len(), 2);
    let accept = CircleAccept {
        circle: first.clone(),
        always: true,
    };
    let joined = c.ask(1, accept, WAIT).unwrap().circles;
    let mut ids: Vec<String> = joined.into_iter().map(|i| i.id).collect();
    ids.sort();
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    assert_eq!(ids, both, "his other pending invitation is joined too");

    for i in 0..MORE {
        circle_adding(&mut c, 0, 1, &format!("Patient{i} Durand"));
    }
    c.run_for(5_000);
    let list = c.ask(1, CircleList {}, WAIT).unwrap();
    assert_eq!(list.circles.len(), 2 + MORE);
    assert!(list.invitations.is_empty());

    // Remembered across a restart.
    c.set_home_relays(1, Default::default()).unwrap();
    c.connect(0, 1);
    circle_adding(&mut c, 0, 1, "Après Redémarrage");
    c.run_for(3_000);
    assert_eq!(
        c.ask(1, CircleList {}, WAIT).unwrap().circles.len(),
        3 + MORE
    );

    // Someone else's circle waits for the nurse's answer.
    circle_adding(&mut c, 2, 1, "Louise Petit");
    c.connect(2, 1);
    c.run_for(3_000);
    let list = c.ask(1, CircleList {}, WAIT).unwrap();
    assert_eq!(list.circles.len(), 3 + MORE);
    assert_eq!(list.invitations.len(), 1);
}

/// Through a relay, the one peer that brings every circle: with as many strangers'
/// invitations pending from it as one peer may have, the trusted colleague's new circle
/// still comes in from its mailbox while the colleague is away.
#[test]
fn a_trusted_colleagues_circles_pass_a_relay_full_of_strangers_invitations() {
    use crate::ops::circles::CircleAccept;
    use crate::ops::relays::RelaysSet;
    let mut c = cluster(&["GP", "Nurse", "Other"]);
    let relay = c.add_relay().unwrap();
    let address = c.relays[0].address.clone();
    let via_relay = |c: &mut Cluster, by: usize, patient: &str| {
        let circle = circle_adding(c, by, 1, patient);
        let set = RelaysSet {
            circle: circle.clone(),
            relays: vec![address.clone()],
        };
        c.ask(by, set, WAIT).unwrap();
        circle
    };
    for i in [0, 1, 2] {
        c.set_home_relays(i, [relay].into()).unwrap();
        c.connect(i, relay);
    }
    let first = via_relay(&mut c, 0, "Jeanne Durand");
    c.run_for(3_000);
    let accept = CircleAccept {
        circle: first,
        always: true,
    };
    c.ask(1, accept, WAIT).unwrap();
    for i in 0..super::invitations::MAX_PER_PEER {
        via_relay(&mut c, 2, &format!("Inconnu{i} Martin"));
    }
    c.run_for(3_000);
    let list = c.ask(1, CircleList {}, WAIT).unwrap();
    assert_eq!(list.invitations.len(), super::invitations::MAX_PER_PEER);
    // The GP adds the nurse to a new circle while she is away, and leaves: the circle
    // reaches her from the relay's mailbox alone.
    c.disconnect(1, relay);
    via_relay(&mut c, 0, "Paul Martin");
    c.run_for(3_000);
    c.disconnect(0, relay);
    c.connect(1, relay);
    c.run_for(3_000);
    let list = c.ask(1, CircleList {}, WAIT).unwrap();
    assert_eq!(list.circles.len(), 2);
    assert_eq!(list.invitations.len(), super::invitations::MAX_PER_PEER);
}

/// A colleague's circles accepted always come from their current devices only: a laptop
/// of theirs that they revoked (stolen, say) still holds its keys and can make circles,
/// but the circle it adds the nurse to waits as an invitation.
#[test]
fn a_trusted_colleagues_revoked_device_brings_only_invitations() {
    use crate::ops::circles::CircleAccept;
    use crate::ops::devices::DeviceRevoke;
    let mut c = cluster(&["GP", "Nurse", "GP's laptop"]);
    let laptop = c.pair(0, 2).unwrap();
    let first = circle_adding(&mut c, 0, 1, "Jeanne Durand");
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        c.connect(a, b);
    }
    c.run_for(5_000);
    let accept = CircleAccept {
        circle: first,
        always: true,
    };
    c.ask(1, accept, WAIT).unwrap();
    c.run_for(5_000);
    // From the laptop while it is the GP's: joined at once.
    circle_adding(&mut c, 2, 1, "Paul Martin");
    c.run_for(5_000);
    let list = c.ask(1, CircleList {}, WAIT).unwrap();
    assert_eq!((list.circles.len(), list.invitations.len()), (2, 0));

    let revoke = DeviceRevoke {
        device: laptop.to_string(),
    };
    c.ask(0, revoke, WAIT).unwrap();
    c.run_for(10_000);
    circle_adding(&mut c, 2, 1, "Louise Petit");
    c.run_for(5_000);
    let list = c.ask(1, CircleList {}, WAIT).unwrap();
    assert_eq!((list.circles.len(), list.invitations.len()), (2, 1));
}

/// More circles from one colleague than may wait as invitations: once the user answers,
/// the next ones come within seconds, not at the next anti-entropy round.
#[test]
fn invitations_dropped_at_the_bound_come_again_once_some_are_answered() {
    use super::invitations::MAX_PER_PEER;
    let mut c = cluster(&["GP", "Nurse"]);
    for i in 0..MAX_PER_PEER + 2 {
        circle_adding(&mut c, 0, 1, &format!("Patient{i} Durand"));
    }
    c.connect(0, 1);
    c.run_for(3_000);
    let waiting = c.ask(1, CircleList {}, WAIT).unwrap().invitations.len();
    assert_eq!(waiting, MAX_PER_PEER);
    assert_eq!(c.accept_invitations(1, WAIT), MAX_PER_PEER);
    c.run_for(3_000);
    let waiting = c.ask(1, CircleList {}, WAIT).unwrap().invitations.len();
    assert_eq!(waiting, 2);
}

/// Whether an offered circle is the member's own is read from its operations before they
/// are checked, but the one operation that says a sibling device added this one must
/// carry that sibling's signature: a copy with its signature altered is not the member's.
#[test]
fn a_circle_is_the_members_own_only_by_a_sibling_s_valid_signature() {
    use crate::circle::membership::OpBody;
    let mut c = cluster(&["GP", "GP's laptop", "Mallory"]);
    let circle = new_circle(&mut c, 0);
    let laptop = c.pair(0, 1).unwrap();
    c.connect(0, 1);
    c.run_for(5_000);
    c.disconnect(0, 1);
    let id: crate::circle::membership::CircleId = circle.parse().unwrap();
    let added: Vec<u8> = c.members[0].core.circles.open[&id]
        .membership()
        .ops()
        .find(|o| matches!(&o.content().body, OpBody::AddDevice { certificate, .. } if certificate.device == laptop))
        .unwrap()
        .bytes()
        .to_vec();
    let mallory = c.members[2].device;
    let core = &c.members[1].core;
    assert!(core.members_own(&mallory, std::slice::from_ref(&added)));
    let mut forged = added;
    forged[0] ^= 1;
    assert!(!core.members_own(&mallory, &[forged]));
}

#[test]
fn one_circle_is_shared_exactly_when_the_list_of_shared_circles_holds_it() {
    use crate::circle::membership::CircleId;
    use crate::sync::Local;
    let mut c = cluster(&["A", "B", "C"]);
    let (_, code) = circle_and_code(&mut c, 0);
    new_circle(&mut c, 0);
    join(&mut c, 1, &code);
    c.connect(0, 1);
    c.run_for(5_000);
    let circles = c.members[0].core.circles();
    let mut ids: Vec<CircleId> = circles.open.keys().copied().collect();
    ids.push(CircleId([9; 32]));
    let devices: Vec<_> = c.members.iter().map(|m| m.device).collect();
    let mut shared = 0;
    for device in &devices {
        let list = circles.shared_with(device);
        for id in &ids {
            assert_eq!(circles.shares(device, id), list.contains(id));
            shared += usize::from(circles.shares(device, id));
        }
    }
    // A holds both circles, B joined one, C none.
    assert_eq!(shared, 3);
}

/// A member's device whose copy of the on-call list is older refuses an emergency access:
/// the on-call doctor's node asks another device the patient's code names, which grants it.
#[test]
fn an_emergency_access_one_device_refuses_is_asked_of_another_the_code_names() {
    use crate::ops::emergency::{BreakGlassAsk, EmergencyCodeMake, OnCallSet};
    let mut c = cluster(&["Dr Martin", "Julien", "Dr Astreinte"]);
    let (circle, code) = circle_and_code(&mut c, 0);
    c.connect(0, 1);
    let invite = join(&mut c, 1, &code);
    c.run_for(5_000);
    assert_eq!(state(&mut c, 1, &invite).0, "joined");
    // The GP names the on-call doctor while the nurse's node is away: hers does not know.
    c.disconnect(0, 1);
    let card = c.members[2].core.me.public().card(&[]).encode();
    let on_call = OnCallSet {
        circle: circle.clone(),
        add: Some(card),
        remove: None,
    };
    c.ask(0, on_call, WAIT).unwrap();
    let made = c
        .ask(
            0,
            EmergencyCodeMake {
                circle: circle.clone(),
            },
            WAIT,
        )
        .unwrap();
    let ask = BreakGlassAsk {
        code: made.code,
        reason: "Chute à domicile, appel du 15".into(),
        minutes: 60,
    };
    let request = c.ask(2, ask, WAIT).unwrap().invite;
    // The nurse's device is met first and asked; the GP's is connected when she refuses.
    c.connect(2, 1);
    c.connect(2, 0);
    c.run_for(5_000);
    let refused = c.members[1].core.refusals.counts();
    assert_eq!(refused.get("break_glass_refused"), Some(&1), "{refused:?}");
    let (answer, reason) = state(&mut c, 2, &request);
    assert_eq!(answer, "joined", "{reason:?}");
    let list = c.ask(2, CircleList {}, WAIT).unwrap();
    assert_eq!(list.circles.len(), 1);
}

#[test]
fn a_second_device_holds_its_members_circles_at_once_then_checks_each_and_tells_of_alerts() {
    const CIRCLES: usize = 40;
    const NOTES: usize = 5;
    let mut c = cluster(&["Dr Martin", "second computer", "Julien"]);
    let circles: Vec<String> = (0..CIRCLES).map(|_| new_circle(&mut c, 0)).collect();
    for circle in &circles {
        for n in 0..NOTES {
            note(&mut c, 0, circle, &format!("passage {n}"));
        }
    }
    // A nurse in the first circle raises an alert for its coordinators.
    c.add_member(0, &circles[0], 2, Role::Professional, WAIT)
        .unwrap();
    c.connect(0, 2);
    c.run_for(2_000);
    assert_eq!(c.accept_invitations(2, WAIT), 1);
    c.run_for(2_000);
    let alert = crate::ops::notes::NoteAdd {
        circle: circles[0].clone(),
        texts: vec!["chute ce matin".into()],
        kind: cercle_crdt::EntryKind::Alert,
        at: None,
        vitals: None,
        to: None,
    };
    c.ask(2, alert, WAIT).unwrap();
    c.run_for(2_000);
    assert_eq!(c.members[0].alerts, 1);

    // The second computer takes every circle in unchecked (stored, signatures and chains
    // checked), then checks and applies each while idle, and tells of the alert then.
    c.pair(0, 1).unwrap();
    c.connect(0, 1);
    c.run_for(10_000);
    let second = &c.members[1].core;
    assert_eq!(second.circles().held().count(), CIRCLES);
    assert_eq!(second.settling(), 0, "every circle checked");
    assert!(
        second.circles().held().all(|x| x.unchecked_logs() == 0),
        "nothing left unchecked"
    );
    assert_eq!(c.members[1].alerts, 1, "the alert is told of once checked");
    let mut first = texts(&mut c, 1, &circles[0]);
    first.sort();
    assert_eq!(first.len(), NOTES + 1);
    assert!(first.contains(&"chute ce matin".to_string()));
    for circle in &circles[1..] {
        assert_eq!(texts(&mut c, 1, circle).len(), NOTES);
    }
}

#[test]
fn a_sibling_lost_in_a_catch_up_is_dialed_again_at_the_next_tick() {
    use crate::node::core::{Effect, Input, Now};
    let mut c = cluster(&["Dr Martin", "second computer"]);
    c.pair(0, 1).unwrap();
    c.connect(0, 1);
    c.run_for(2_000);
    let first = c.members[0].device;
    let dials = |effects: Vec<Effect>| {
        effects
            .into_iter()
            .filter(|e| matches!(e, Effect::Dial(_)))
            .count()
    };
    let at = c.now_ms();
    let second = &mut c.members[1].core;
    let lost = second.handle(Input::Disconnected { device: first }, Now::from_millis(at));
    assert_eq!(dials(lost), 0);
    // Within the minute of the last dial, the next tick dials the first device again.
    let tick = second.handle(Input::Tick, Now::from_millis(at + 1_000));
    assert!(dials(tick) > 0, "the first device is dialed again");
    let later = second.handle(Input::Tick, Now::from_millis(at + 2_000));
    assert_eq!(dials(later), 0, "then once a minute");
}

#[test]
fn the_members_devices_follow_a_device_added_in_a_circle_after_they_were_gathered() {
    let mut c = cluster(&["Dr Martin"]);
    let k = new_circle(&mut c, 0);
    let id: crate::circle::membership::CircleId = k.parse().unwrap();
    let core = &mut c.members[0].core;
    assert!(core.siblings().certificates.is_empty());
    // Another device of the member, added in this circle only (no record kept of it).
    let now = core.now();
    let other = core.me.new_device(now, &mut core.rng).unwrap();
    let certificate = other.certificate.clone();
    let circle = core.circles.open.get_mut(&id).unwrap();
    let staged = circle
        .add_device(&core.me, &certificate, now, &mut core.rng)
        .unwrap();
    core.stage(id, staged);
    let siblings = core.siblings();
    assert!(
        siblings.certificates.contains_key(&other.device()),
        "{siblings:?}"
    );
    assert_eq!(siblings, core.gather_siblings());
    // Taken out of memory, the circle no longer counts; put back, it does again.
    let taken = core.circles.take_open(&id).unwrap();
    assert!(core.siblings().certificates.is_empty());
    core.circles.put_open(id, taken);
    assert!(core.siblings().certificates.contains_key(&other.device()));
    // A new circle that holds no other device of the member leaves them as they were.
    new_circle(&mut c, 0);
    let core = &c.members[0].core;
    assert_eq!(core.circles.open.len(), 2);
    assert_eq!(core.siblings(), core.gather_siblings());
    assert!(core.siblings().certificates.contains_key(&other.device()));
}
