//! Three whole node cores through the cluster: what a care team does (write, sync, remove a
//! member, rotate the key), the same from the same seed every time.

use cercle_crdt::{EntryKind, Role};

use super::{Cluster, WireConfig};
use crate::ops::circles::{CircleList, CircleShow};
use crate::ops::members::MemberRemove;
use crate::ops::notes::{NoteAdd, NoteList};

const WAIT: i64 = 10_000;

fn note(circle: &str, text: &str) -> NoteAdd {
    NoteAdd {
        circle: circle.into(),
        texts: vec![text.into()],
        kind: EntryKind::Observation,
        at: None,
        vitals: None,
        to: None,
    }
}

fn texts(c: &mut Cluster, n: usize, circle: &str) -> Vec<String> {
    let list = NoteList {
        circle: circle.into(),
    };
    let mut t: Vec<String> = c
        .ask(n, list, WAIT)
        .map(|n| n.notes.into_iter().map(|n| n.text).collect())
        .unwrap_or_default();
    t.sort();
    t
}

/// A GP, a nurse and a physiotherapist: a circle, notes from each, the physiotherapist
/// removed (a new key epoch), then notes the physiotherapist must not get. Returns the
/// trace and what each node holds at the end. With `windows`, the cluster runs in windows
/// on that many threads.
fn care_team(seed: u64, windows: Option<usize>) -> (String, [Vec<String>; 3], String) {
    let mut c = Cluster::new(
        seed,
        &["Dr Martin", "Julien", "Sophie"],
        WireConfig::default(),
    )
    .unwrap();
    if let Some(threads) = windows {
        c.run_in_windows(threads);
    }
    let circle = c.create_circle(0, "Jeanne Durand", WAIT).unwrap();
    for who in [1, 2] {
        c.add_member(0, &circle, who, Role::Professional, WAIT)
            .unwrap();
    }
    c.connect(0, 1);
    c.connect(0, 2);
    c.connect(1, 2);
    c.run_for(3_000);
    // Added by the GP, each waits for its user's answer, then joins.
    for who in [1, 2] {
        assert!(c.ask(who, CircleList {}, WAIT).unwrap().circles.is_empty());
        assert_eq!(c.accept_invitations(who, WAIT), 1);
    }
    c.run_for(3_000);
    for (who, text) in [
        (0, "Première visite"),
        (1, "Pansement refait"),
        (2, "Séance 1"),
    ] {
        c.ask(who, note(&circle, text), WAIT).unwrap();
    }
    c.run_for(3_000);
    let physio = c.members[2].core.me().member().to_hex();
    let remove = MemberRemove {
        circle: circle.clone(),
        member: physio,
    };
    let shown = c.ask(0, remove, WAIT).unwrap();
    assert_eq!(shown.members.len(), 2);
    c.run_for(3_000);
    for (who, text) in [(0, "Après le départ"), (1, "Tension 13/8")] {
        c.ask(who, note(&circle, text), WAIT).unwrap();
    }
    c.run_for(5_000);
    let epoch = c
        .ask(
            1,
            CircleShow {
                circle: circle.clone(),
            },
            WAIT,
        )
        .unwrap()
        .epoch
        .unwrap_or_default();
    let held = [
        texts(&mut c, 0, &circle),
        texts(&mut c, 1, &circle),
        texts(&mut c, 2, &circle),
    ];
    (c.trace(), held, epoch)
}

#[test]
fn three_cores_write_sync_remove_a_member_and_rekey_the_same_way_from_the_same_seed() {
    let (trace, held, epoch) = care_team(42, None);
    // Everyone who stayed holds everything; the removed member nothing written after.
    let all = [
        "Après le départ",
        "Pansement refait",
        "Première visite",
        "Séance 1",
        "Tension 13/8",
    ];
    assert_eq!(held[0], all);
    assert_eq!(held[1], all);
    assert_eq!(held[2], ["Pansement refait", "Première visite", "Séance 1"]);
    assert!(!epoch.is_empty());
    // Same seed, same story, to the byte.
    let (again, held_again, epoch_again) = care_team(42, None);
    assert_eq!(trace, again);
    assert_eq!(held, held_again);
    assert_eq!(epoch, epoch_again);
    // Another seed: other keys and latencies, the same outcome.
    let (other, held_other, _) = care_team(43, None);
    assert_ne!(trace, other);
    assert_eq!(held, held_other);
}

/// Run in windows, on one thread or two, the cores end up holding the same as one event
/// at a time, and the trace depends on the seed alone, not on the threads.
#[test]
fn windows_on_one_thread_or_two_give_the_same_trace_and_the_same_outcome() {
    let (_, held, _) = care_team(42, None);
    let (one, held_one, _) = care_team(42, Some(1));
    let (two, held_two, _) = care_team(42, Some(2));
    assert_eq!(one, two);
    assert_eq!(held_one, held);
    assert_eq!(held_two, held);
}

/// Two members who never reach each other directly: the circle names a relay, each node
/// dials it, the invitation and the notes go through its mailbox, and once it introduced
/// them they meet through its circuit, which breaks when one of them leaves the relay.
#[test]
fn members_reach_each_other_only_through_a_relay() {
    use crate::ops::relays::RelaysSet;
    let mut c = Cluster::new(5, &["Dr Martin", "Julien"], WireConfig::default()).unwrap();
    let relay = c.add_relay().unwrap();
    let circle = c.create_circle(0, "Jeanne Durand", WAIT).unwrap();
    c.add_member(0, &circle, 1, Role::Professional, WAIT)
        .unwrap();
    let set = RelaysSet {
        circle: circle.clone(),
        relays: vec![c.relays[0].address.clone()],
    };
    c.ask(0, set, WAIT).unwrap();
    assert_eq!(c.wanted_relays(0), [relay].into());
    // The nurse's node was started with the relay (as its agency configures it).
    c.set_home_relays(1, [relay].into()).unwrap();
    c.connect(0, relay);
    c.run_for(2_000);
    assert!(
        c.relay_totals(0).envelopes > 0,
        "the relay holds the circle"
    );
    c.disconnect(0, relay);
    c.connect(1, relay);
    c.run_for(2_000);
    assert_eq!(
        c.accept_invitations(1, WAIT),
        1,
        "the invitation came from the mailbox"
    );
    c.ask(1, note(&circle, "Pansement refait."), WAIT).unwrap();
    c.run_for(2_000);
    c.connect(0, relay);
    c.run_for(3_000);
    assert_eq!(texts(&mut c, 0, &circle), ["Pansement refait."]);
    assert!(c.stats.introductions > 0);
    assert!(
        c.connected(0, 1),
        "introduced, they meet through the relay's circuit"
    );
    c.disconnect(1, relay);
    assert!(
        !c.connected(0, 1),
        "the circuit broke with the nurse's link to the relay"
    );
}

/// A professional's node connected to a relay makes circles one after the other and names
/// the relay in each right after making it: the relay comes to hold every one of them
/// (before, the relay refused the first envelopes of each as pushed without the circle's
/// genesis, counted that against the node, and disconnected it after 32 circles).
#[test]
fn circles_named_to_a_relay_after_their_making_all_reach_it() {
    use crate::ops::relays::RelaysSet;
    const CIRCLES: usize = 40;
    let mut c = Cluster::new(5, &["Dr Martin", "Julien"], WireConfig::default()).unwrap();
    let relay = c.add_relay().unwrap();
    c.set_home_relays(0, [relay].into()).unwrap();
    c.connect(0, relay);
    c.run_for(2_000);
    for i in 0..CIRCLES {
        let circle = c
            .create_circle(0, &format!("Patient{i} Durand"), WAIT)
            .unwrap();
        let set = RelaysSet {
            circle: circle.clone(),
            relays: vec![c.relays[0].address.clone()],
        };
        c.ask(0, set, WAIT).unwrap();
        c.add_member(0, &circle, 1, Role::Professional, WAIT)
            .unwrap();
    }
    c.run_for(5_000);
    assert_eq!(c.relay_totals(0).circles, CIRCLES as u64);
    // Its first envelopes of each circle came before the relay took the circle: not held
    // against the node, which stays connected.
    assert!(c.connected(0, relay));
}
