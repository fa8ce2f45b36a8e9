//! A circle closed and shredded, with three real nodes and a relay on loopback.
//!
//! The story: a GP, a nurse and a physiotherapist share a patient's circle through a relay;
//! notes and a document are written and reach everyone. The physiotherapist's node is off
//! when the GP closes the circle. The nurse's node and the relay learn of it at once: the
//! relay deletes the circle's envelopes and sends the GP's node a signed receipt, shown in
//! `circle list`. The physiotherapist's node, started again, is told of the closing and
//! shreds too. Then every home (and the relay's) is read byte by byte: neither the
//! patient's name, nor a note, nor the document's bytes, nor the membership operations that
//! carried the circle's keys are anywhere, and no key left on any device opens any of the
//! circle's envelopes still lying in a file (which, before the closing, the same check
//! shows it could).

use std::path::Path;

use cercle_node::crypto::EpochKey;
use cercle_node::envelope::Envelope;
use cercle_node::home::Home;
use cercle_node::store::{Store, Tree};
use cercle_tests::{Daemon, PASSPHRASE, Relay, TestHome, wait_until};

const PATIENT: &str = "Ginette Vasseur-Lemarchand";
const NOTES: [&str; 3] = [
    "Plaie talon droit détergée, pansement hydrocellulaire",
    "Kinésithérapie : marche avec déambulateur sur 20 mètres",
    "Glycémie capillaire 2,31 g/L à 11 h, médecin prévenu",
];
const DOCUMENT: &[u8] = b"%PDF-1.4 compte-rendu d'hospitalisation Vasseur-Lemarchand cardiologie";

/// What a home's store held of the circle before it closed.
struct Held {
    /// Its envelopes, as stored.
    envelopes: Vec<Vec<u8>>,
    /// Its membership operations (which carry its epoch keys, sealed to devices).
    ops: Vec<Vec<u8>>,
}

/// Opens `home`'s store (its node stopped) with its passphrase.
fn with_store<T>(
    home: &TestHome,
    f: impl FnOnce(&dyn Store, &cercle_node::identity::LocalIdentity) -> T,
) -> T {
    let h = Home::at(home.path());
    let me = h
        .unlock(PASSPHRASE)
        .unwrap_or_else(|e| panic!("cannot unlock {}: {e}", home.path().display()));
    let store = h
        .open_store(&me)
        .unwrap_or_else(|e| panic!("cannot open the store: {e}"));
    let out = f(&store, &me);
    store
        .close()
        .unwrap_or_else(|e| panic!("closing the store: {e}"));
    out
}

fn held(home: &TestHome, circle: &str) -> Held {
    let id = hex::decode(circle).unwrap_or_default();
    with_store(home, |store, _| Held {
        envelopes: store
            .scan(Tree::Envelopes, &id)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, v)| v.to_vec())
            .collect(),
        ops: store
            .scan(Tree::Ops, &id)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, v)| v.to_vec())
            .collect(),
    })
}

/// Every epoch key the device of `home` can open from what its store holds.
fn keys_left(home: &TestHome) -> Vec<EpochKey> {
    with_store(home, |store, me| {
        cercle_node::circle::held_epoch_keys(store, me)
            .unwrap_or_else(|e| panic!("reading the keys held: {e}"))
    })
}

/// Every file under `dir`, its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p.display().to_string(), bytes));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The envelopes of `held` found as they are in some file under `dir`.
fn lying_in(dir: &Path, envelopes: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let all = files(dir);
    envelopes
        .iter()
        .filter(|e| all.iter().any(|(_, bytes)| contains(bytes, e)))
        .cloned()
        .collect()
}

/// How many of `envelopes` one of `keys` opens.
fn opened(envelopes: &[Vec<u8>], keys: &[EpochKey]) -> usize {
    envelopes
        .iter()
        .filter(|bytes| {
            Envelope::decode(bytes).is_ok_and(|env| keys.iter().any(|k| env.open_raw(k).is_ok()))
        })
        .count()
}

fn state(home: &TestHome, circle: &str) -> String {
    let list = home.json(&["circle", "list"]);
    list.as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == circle))
        .map(|r| r["state"].as_str().unwrap_or("open").to_string())
        .unwrap_or_else(|| "absent".into())
}

fn node(home: &TestHome, relay: &Relay, peers: &[&Daemon]) -> Daemon {
    cercle_tests::up_with_relay(home, relay, peers)
}

/// A relay on loopback, and its home.
fn relay_on_loopback() -> (TestHome, Relay) {
    let home = TestHome::new();
    let relay = Relay::start(
        &home,
        &[],
        &[
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    (home, relay)
}

/// A GP (coordinator), a nurse and a physiotherapist in the patient's circle, which names
/// `relay`; their nodes not started yet.
fn team(relay: &Relay) -> (TestHome, TestHome, TestHome, String) {
    let (a, b, c) = (TestHome::new(), TestHome::new(), TestHome::new());
    a.init("Dr Hélène Brissac", "médecin généraliste");
    b.init("Karim Benali", "infirmier");
    c.init("Sophie Marchetti", "masseur-kinésithérapeute");
    let circle = a.create_circle(PATIENT);
    a.json(&["circle", "relays", &circle, &relay.address_on("127.0.0.1")]);
    a.add_member(&circle, &b.card(), "professional");
    a.add_member(&circle, &c.card(), "professional");
    (a, b, c, circle)
}

#[test]
fn a_closed_circle_is_shredded_on_every_members_node_and_at_the_relay_which_signs_a_receipt() {
    let (relay_home, relay) = relay_on_loopback();
    let (a, b, c, circle) = team(&relay);

    let mut node_a = node(&a, &relay, &[]);
    let mut node_b = node(&b, &relay, &[&node_a]);
    let mut node_c = node(&c, &relay, &[&node_a]);
    b.accept(&circle);
    c.accept(&circle);
    a.json(&["note", "add", &circle, NOTES[0]]);
    c.json(&["note", "add", &circle, NOTES[1]]);
    b.json(&["note", "add", &circle, NOTES[2]]);
    // The scanned document, from outside the homes.
    let outside = TestHome::new();
    let file = outside.path().join("compte-rendu.pdf");
    std::fs::write(&file, DOCUMENT).unwrap_or_else(|e| panic!("{e}"));
    let doc = a.json(&["doc", "add", &circle, &file.display().to_string()]);
    let doc_id = doc["id"].as_str().unwrap_or_default().to_string();
    for home in [&a, &b, &c] {
        assert!(
            wait_until(60, || home.note_texts(&circle).len() == NOTES.len()),
            "a member's node never got every note: {:?}",
            home.note_texts(&circle)
        );
    }
    // B opens the document: its node fetches and keeps it.
    let copy = b.path().join("copie.pdf");
    b.json(&[
        "doc",
        "get",
        &circle,
        &doc_id[..8],
        "--out",
        &copy.display().to_string(),
    ]);
    std::fs::remove_file(&copy).unwrap_or_else(|e| panic!("{e}"));
    drop(outside);

    // Before the closing, what B's device holds opens the circle's envelopes lying in its
    // files: the check below can tell.
    node_b.stop();
    let before = held(&b, &circle);
    assert!(!before.envelopes.is_empty() && !before.ops.is_empty());
    let lying = lying_in(b.path(), &before.envelopes);
    assert!(!lying.is_empty(), "the envelopes are in B's files");
    assert!(
        opened(&lying, &keys_left(&b)) > 0,
        "before the closing, B's keys open the envelopes in its files"
    );
    // The circle's own key at rest is in B's file of circle keys, under the circle's id.
    let id = hex::decode(&circle).unwrap_or_default();
    let vault = b.path().join("store").join("circle-keys");
    assert!(contains(&std::fs::read(&vault).unwrap_or_default(), &id));
    let mut node_b = node(&b, &relay, &[&node_a]);
    // C's node is off when the circle closes.
    node_c.stop();
    let c_held = held(&c, &circle);

    // A coordinator's closing: a script says --yes; without it, it is refused.
    let refused = a.cercle(&["circle", "close", &circle]);
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    // A professional may not close the circle.
    let not_allowed = b.cercle(&["circle", "close", &circle, "--yes"]);
    assert_ne!(not_allowed.code, Some(0));
    let closed = a.json(&["circle", "close", &circle, "--yes"]);
    assert_eq!(closed["circle"], circle.as_str());
    assert_eq!(state(&a, &circle), "closed");
    assert!(
        wait_until(60, || state(&b, &circle) == "closed"),
        "B's node never learnt of the closing: {}",
        b.cercle(&["circle", "list"]).stdout
    );
    // The relay deleted its copy and the GP's node holds its signed receipt.
    let receipt = || {
        let list = a.json(&["circle", "list"]);
        list.as_array()
            .and_then(|rows| rows.iter().find(|r| r["id"] == circle.as_str()))
            .and_then(|r| r["receipts"].as_array().and_then(|rs| rs.first().cloned()))
    };
    assert!(
        wait_until(60, || receipt().is_some()),
        "no deletion receipt from the relay: {}",
        a.cercle(&["circle", "list"]).stdout
    );
    let receipt = receipt().unwrap_or_default();
    assert_eq!(receipt["verified"], true, "{receipt}");
    assert_eq!(receipt["peer_id"], relay.peer_id().as_str());
    assert!(receipt["envelopes"].as_u64().unwrap_or(0) > 0, "{receipt}");
    // The one relay that kept it gave its receipt: none is awaited.
    let row = a.json(&["circle", "list"]);
    let row = row
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == circle.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(row["awaited"], serde_json::json!([]), "{row}");
    assert!(
        a.cercle(&["circle", "list"])
            .stdout
            .contains("signature verified")
    );
    let metrics = relay.metrics();
    assert_eq!(
        metrics.value("cercle_relay_mailbox_closed_circles", &[]),
        1.0
    );
    assert_eq!(metrics.value("cercle_relay_mailbox_envelopes", &[]), 0.0);
    // What is kept: the trail without content, still shown.
    let trail = a.json(&["audit", &circle]);
    let writes = trail["writes"].as_array().cloned().unwrap_or_default();
    assert!(writes.iter().any(|w| w["action"] == "note_written"));
    assert!(writes.iter().any(|w| w["action"] == "circle_closed"));
    assert!(!trail.to_string().contains(NOTES[0]));
    // Nothing more is written to it.
    let late = a.cercle(&["note", "add", &circle, "trop tard"]);
    assert_ne!(late.code, Some(0));
    assert!(late.stderr.contains("was closed"), "{}", late.stderr);

    // C's node, back, is told of the closing and shreds too.
    let mut node_c = node(&c, &relay, &[&node_a, &node_b]);
    assert!(
        wait_until(60, || state(&c, &circle) == "closed"),
        "C's node never learnt of the closing: {}",
        c.cercle(&["circle", "list"]).stdout
    );
    node_a.stop();
    node_b.stop();
    node_c.stop();
    drop(relay);

    // Every home, byte by byte, and the relay's.
    let mut envelopes = before.envelopes.clone();
    envelopes.extend(c_held.envelopes.iter().cloned());
    let mut ops = before.ops.clone();
    ops.extend(c_held.ops.iter().cloned());
    let mut all_keys = Vec::new();
    for home in [&a, &b, &c] {
        all_keys.extend(keys_left(home));
    }
    // The circle's key at rest is forgotten on every member's device.
    for home in [&a, &b, &c] {
        let vault = home.path().join("store").join("circle-keys");
        assert!(!contains(&std::fs::read(&vault).unwrap_or_default(), &id));
    }
    for dir in [a.path(), b.path(), c.path(), relay_home.path()] {
        for (path, bytes) in files(dir) {
            for needle in [PATIENT.as_bytes(), "Vasseur".as_bytes(), DOCUMENT]
                .into_iter()
                .chain(NOTES.iter().map(|n| n.as_bytes()))
            {
                assert!(
                    !contains(&bytes, needle),
                    "{path} holds {:?}",
                    String::from_utf8_lossy(needle)
                );
            }
            for op in &ops {
                assert!(
                    !contains(&bytes, op),
                    "{path} holds a membership operation of the closed circle in clear"
                );
            }
        }
        let lying = lying_in(dir, &envelopes);
        assert_eq!(
            opened(&lying, &all_keys),
            0,
            "a key left opens an envelope kept in {}",
            dir.display()
        );
    }
}

/// The patient objects to sharing: recorded by the nurse, every member's node stops sending
/// and taking the circle's data and keeps what it held, read-only; the relay deletes its
/// copy and each member's node gets its signed receipt; a note the physiotherapist wrote
/// offline afterwards reaches no one.
#[test]
fn a_patients_objection_stops_sharing_and_the_relay_signs_its_deletion() {
    const LATE: &str = "Séance de kinésithérapie du soir, écrite hors ligne";
    const REASON: &str = "Le patient ne souhaite plus que son dossier soit partagé";
    let (_relay_home, relay) = relay_on_loopback();
    let (a, b, c, circle) = team(&relay);
    let node_a = node(&a, &relay, &[]);
    let node_b = node(&b, &relay, &[&node_a]);
    let mut node_c = node(&c, &relay, &[&node_a]);
    b.accept(&circle);
    c.accept(&circle);
    a.json(&["note", "add", &circle, NOTES[0]]);
    b.json(&["msg", "send", &circle, "Je passe demain à 9 h"]);
    for home in [&b, &c] {
        assert!(
            wait_until(60, || home.note_texts(&circle)
                == vec![NOTES[0].to_string()]),
            "a member's node never got the note"
        );
    }
    let messages = |home: &TestHome| {
        home.json(&["msg", "list", &circle, "--no-mark-read"])
            .as_array()
            .map_or(0, Vec::len)
    };
    assert!(
        wait_until(60, || messages(&a) == 1),
        "the message never came"
    );
    node_c.stop();

    // The nurse records the patient's objection.
    let shown = b.json(&[
        "patient",
        "consent",
        &circle,
        "--withdraw",
        "--reason",
        REASON,
    ]);
    assert_eq!(shown["suspended"]["reason"], REASON, "{shown}");
    let suspended = |home: &TestHome| home.json(&["circle", "show", &circle])["suspended"].clone();
    assert!(
        wait_until(60, || !suspended(&a).is_null()),
        "the coordinator's node never learnt of the objection"
    );
    // What each held stays, read-only; reading an unread message writes no receipt.
    assert_eq!(a.note_texts(&circle), vec![NOTES[0].to_string()]);
    let listed = a.json(&["msg", "list", &circle]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    for home in [&a, &b] {
        let refused = home.cercle(&["note", "add", &circle, "une note de trop"]);
        assert_ne!(refused.code, Some(0));
        assert!(refused.stderr.contains("suspended"), "{}", refused.stderr);
    }
    // The relay deleted its copy; the coordinator's node holds its signed receipt.
    let receipt = || {
        suspended(&a)["receipts"]
            .as_array()
            .and_then(|r| r.first().cloned())
    };
    assert!(
        wait_until(60, || receipt().is_some()),
        "no receipt from the relay: {}",
        a.cercle(&["circle", "show", &circle]).stdout
    );
    let receipt = receipt().unwrap_or_default();
    assert_eq!(receipt["verified"], true, "{receipt}");
    assert_eq!(receipt["peer_id"], relay.peer_id().as_str());
    assert!(
        a.cercle(&["circle", "show", &circle])
            .stdout
            .contains("SHARING SUSPENDED")
    );
    let trail = a.json(&["audit", &circle]);
    assert!(
        trail["writes"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w["action"] == "consent_withdrawn" && w["about"] == REASON)),
        "{trail}"
    );
    // Handed over as FHIR, the record says the patient opted out, and why.
    let bundle = a.fhir_export(&circle);
    cercle_tests::checkers::validate_fhir(&a.path().join("c.fhir.json"));
    let consent = cercle_tests::fhir_resources(&bundle, "Consent")
        .pop()
        .unwrap_or_default();
    assert_eq!(
        consent["policyRule"]["coding"][0]["code"], "OPTOUT",
        "{consent}"
    );
    assert_eq!(consent["policyRule"]["text"], REASON, "{consent}");
    assert_eq!(consent["provision"]["type"], "deny", "{consent}");

    // The physiotherapist, offline, writes a note before learning of it; back online,
    // her node learns of the objection and the note reaches no one.
    c.json(&["note", "add", &circle, LATE]);
    let _node_c = node(&c, &relay, &[&node_a, &node_b]);
    assert!(
        wait_until(60, || !suspended(&c).is_null()),
        "C's node never learnt of the objection"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    for home in [&a, &b] {
        assert!(
            !home.note_texts(&circle).contains(&LATE.to_string()),
            "a note written after the objection was taken"
        );
    }
    assert!(c.note_texts(&circle).contains(&LATE.to_string()));
    let refused = c.cercle(&["note", "add", &circle, "encore une"]);
    assert_ne!(refused.code, Some(0));
}
