//! A circle with a long membership history, through the real `cercle up` processes: the
//! coordinator names the circle's relays 1 300 times (more operations than a peer may keep
//! waiting for a parent), then both the coordinator's node and a member's node restart,
//! list the circle, and agree on its relays; the member's node received the whole history
//! from the coordinator's. A node with one unreadable circle starts and lists it as
//! damaged beside the others.

// A test that unwraps fails with the error in its message.
#![allow(clippy::unwrap_used)]

use cercle_tests::{Daemon, TestHome, api_call, wait_until};

const LOOPBACK: [&str; 3] = ["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
const CHANGES: usize = 1_300;

fn member(name: &str, profession: &str) -> TestHome {
    let h = TestHome::new();
    h.init(name, profession);
    h
}

fn relays_of(home: &TestHome, circle: &str) -> serde_json::Value {
    home.json(&["circle", "show", circle])["relays"].clone()
}

#[test]
fn a_long_membership_history_keeps_every_node_starting_and_in_agreement() {
    let a = member("Dr Claire Martin", "médecin généraliste");
    let b = member("Julien Moreau", "infirmier");
    let mut da = Daemon::start(&a, &[], &LOOPBACK);
    let mut db = Daemon::start(&b, &[], &LOOPBACK);
    let circle = a.create_circle("Jeanne Durand");
    let code = a.json(&["invite", "create", &circle, "--role", "professional"])["code"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(b.json(&["join", &code])["state"], "joined");

    // Relays on loopback ports nothing listens on: the nodes dial them and fail at once.
    let relay_peer = db.peer_id.clone();
    let last = format!("/ip4/127.0.0.1/tcp/{}/p2p/{relay_peer}", 20_000 + CHANGES);
    for i in 1..=CHANGES {
        let address = format!("/ip4/127.0.0.1/tcp/{}/p2p/{relay_peer}", 20_000 + i);
        let (code, body) = api_call(
            &a,
            &serde_json::json!({ "request": "relays_set", "circle": circle, "relays": [address] }),
        );
        assert_eq!(code, 200, "change {i}: {body}");
    }
    assert_eq!(relays_of(&a, &circle), serde_json::json!([last]));
    // The member's node gets the whole history, parents first.
    assert!(
        wait_until(60, || relays_of(&b, &circle) == serde_json::json!([last])),
        "B never got the last relays: {}",
        relays_of(&b, &circle)
    );

    // Both nodes restart, and list and show the circle.
    da.stop();
    db.stop();
    let _da = Daemon::start(&a, &[], &LOOPBACK);
    let _db = Daemon::start(&b, &[], &LOOPBACK);
    for home in [&a, &b] {
        let list = home.json(&["circle", "list"]);
        assert_eq!(list[0]["id"], circle.as_str(), "{list}");
        assert_eq!(relays_of(home, &circle), serde_json::json!([last]));
    }
    // The same list again changes nothing, and is said so.
    let (code, body) = api_call(
        &a,
        &serde_json::json!({ "request": "relays_set", "circle": circle, "relays": [last] }),
    );
    assert!(
        code >= 400 && body.contains("changes nothing"),
        "{code} {body}"
    );
}

#[test]
fn a_node_with_an_unreadable_circle_starts_and_lists_it_as_damaged() {
    let a = member("Dr Claire Martin", "médecin généraliste");
    let good = a.create_circle("Jeanne Durand");
    let bad = a.create_circle("Paul Lefèvre");
    // The second circle's membership log loses its genesis (a disk fault, a bad copy).
    let store = a.path().join("store");
    let db = sled::open(store.join("db")).unwrap();
    let ops = db.open_tree("ops").unwrap();
    let bad_bytes = hex::decode(&bad).unwrap();
    let mut key = bad_bytes.clone();
    key.extend_from_slice(&bad_bytes);
    assert!(ops.remove(key).unwrap().is_some(), "no genesis at the key");
    db.flush().unwrap();
    drop(ops);
    drop(db);

    let _d = Daemon::start(&a, &[], &LOOPBACK);
    let list = a.json(&["circle", "list"]);
    let rows = list.as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["id"] == good.as_str() && r["patient"] == "Jeanne Durand"),
        "{list}"
    );
    assert!(
        rows.iter()
            .any(|r| r["id"] == bad.as_str() && r["state"] == "damaged"),
        "{list}"
    );
    // The good circle still works.
    a.json(&["note", "add", &good, "Visite du soir, RAS."]);
    assert!(a.note_texts(&good).iter().any(|t| t.contains("RAS")));
}
