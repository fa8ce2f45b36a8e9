//! The relay an operator runs: it says who it is and where it listens (one JSON object with
//! `--json`), keeps its identity across a SIGKILL, serves Prometheus metrics and a health
//! check, counts the nodes connected to it, and its systemd unit passes
//! `systemd-analyze verify`.

// A test that unwraps fails with the error in its message.
#![allow(clippy::unwrap_used)]
// Saying why a part was skipped is this test's output.
#![allow(clippy::print_stderr)]

use std::process::Command;

use cercle_tests::{Daemon, Relay, TestHome, cercle_bin, wait_until};

const LOOPBACK: [&str; 4] = [
    "--listen",
    "/ip4/127.0.0.1/tcp/0",
    "--metrics",
    "127.0.0.1:0",
];

#[test]
fn a_relay_says_who_it_is_keeps_its_identity_and_exposes_metrics() {
    let home = TestHome::new();
    let relay = Relay::start(&home, &[], &LOOPBACK);
    let peer_id = relay.peer_id();
    assert!(peer_id.starts_with("12D3KooW"), "{}", relay.ready);
    let addresses = relay.addresses();
    assert!(!addresses.is_empty(), "{}", relay.ready);
    assert!(
        addresses
            .iter()
            .all(|a| a.ends_with(&format!("/p2p/{peer_id}")))
    );

    assert_eq!(relay.get("/health"), (200, "ok\n".to_string()));
    let (status, text) = relay.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE cercle_relay_connections gauge"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(
        relay.metrics().value("cercle_relay_connections", &[]),
        0.0,
        "{text}"
    );

    // A member's node that dials the relay is counted.
    let nurse = TestHome::new();
    nurse.init("Julien Petit", "infirmier");
    let _node = Daemon::start(
        &nurse,
        &[],
        &[
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--peer",
            &addresses[0],
        ],
    );
    assert!(
        wait_until(20, || relay
            .metrics()
            .value("cercle_relay_connections", &[])
            >= 1.0),
        "the relay did not count the node's connection: {}",
        relay.get("/metrics").1
    );

    // Killed without warning, it comes back as the same peer.
    relay.kill();
    let again = Relay::start(&home, &[], &LOOPBACK);
    assert_eq!(again.peer_id(), peer_id);
}

/// The relays a coordinator names in a circle are used by every member's node, with no
/// `--relay` flag: A writes with only the circle's relay as a path and goes offline; B,
/// given the relay once to join, gets the note from the mailbox, and, started again without
/// the flag, still connects to the relay.
#[test]
fn members_use_the_relays_their_circle_names() {
    // Every part bound: the relay's home lives as long as the test.
    let Scene {
        _relay_home,
        relay,
        relay_address,
        a,
        b,
        circle,
    } = Scene::new();
    a.add_member(&circle, &b.card(), "professional");

    let no_relay = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
    let mut node_a = Daemon::start(&a, &[], &no_relay);
    a.cercle(&["note", "add", &circle, "Plaie propre, pansement refait"])
        .ok();
    assert!(
        wait_until(30, || relay
            .metrics()
            .value("cercle_relay_mailbox_stored_total", &[])
            >= 1.0),
        "A's node never used the circle's relay: {}",
        relay.metrics().text
    );
    node_a.stop();

    let mut with_relay = no_relay.to_vec();
    with_relay.extend(["--relay", &relay_address]);
    let mut node_b = Daemon::start(&b, &[], &with_relay);
    // Added while it was away, B's node finds the circle at the relay, as an invitation.
    b.accept(&circle);
    assert!(
        wait_until(30, || b
            .note_texts(&circle)
            .contains(&"Plaie propre, pansement refait".to_string())),
        "B did not get the note from the circle's relay"
    );
    assert_eq!(
        b.json(&["circle", "show", &circle])["relays"][0],
        relay_address.as_str()
    );
    node_b.stop();
    let _node_b = Daemon::start(&b, &[], &no_relay);
    assert!(
        wait_until(30, || b
            .cercle(&["peers"])
            .stdout
            .contains(&relay.peer_id())),
        "B, started without --relay, did not connect to the circle's relay"
    );
}

/// A short code read out on the phone: the invitee's node knows only the relay (no address
/// of the inviter, no circle id); it finds the inviter there by the code's tag, reaches it
/// through the relay, joins, and gets the inviter's note. A code with one character
/// misheard is caught before anything is sent.
#[test]
fn a_short_code_read_out_finds_the_inviter_through_the_relay() {
    let Scene {
        _relay_home,
        relay,
        relay_address: _,
        a,
        b,
        circle,
    } = Scene::new();
    let _node_a = up_with(&a, &relay);
    a.cercle(&["note", "add", &circle, "Plaie propre, pansement refait"])
        .ok();
    let invite = a.json(&["invite", "create", &circle, "--role", "professional"]);
    let short = invite["short"].as_str().unwrap_or_default().to_string();
    assert_eq!(short.len(), 29, "{invite}");
    let _node_b = up_with(&b, &relay);

    let mut misheard: Vec<char> = short.chars().collect();
    misheard[0] = if misheard[0] == 'A' { 'B' } else { 'A' };
    let misheard: String = misheard.into_iter().collect();
    let run = b.cercle(&["join", &misheard]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("damaged"), "{}", run.stderr);

    // Read out in groups, typed as words, in lowercase.
    let lower = short.to_lowercase();
    let mut args = vec!["join"];
    args.extend(lower.split('-'));
    args.extend(["--timeout", "60"]);
    let joined = b.json(&args);
    assert_eq!(joined["state"], "joined", "{joined}");
    assert_eq!(joined["circle"], circle.as_str(), "{joined}");
    assert!(
        wait_until(30, || b
            .note_texts(&circle)
            .contains(&"Plaie propre, pansement refait".to_string())),
        "B did not get A's note after joining"
    );
    // B is a professional of the circle, as invited.
    let b_member = b.json(&["whoami"])["member"].clone();
    let shown = a.json(&["circle", "show", &circle]);
    assert!(
        shown["members"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["member"] == b_member && m["role"] == "professional"),
        "{shown}"
    );
}

/// A member's second computer on another network: the pairing code is cut down to the
/// address through the circle's relay, so the new device reaches the first one only
/// through it; started with no address, no relay and no mDNS, it reaches the first device
/// through the relay again and receives the circle with its note.
#[test]
fn a_new_device_pairs_and_syncs_with_the_first_through_the_circles_relay() {
    let Scene {
        _relay_home,
        relay,
        relay_address,
        a,
        b: _,
        circle,
    } = Scene::new();
    let no_relay = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
    let _node_a = Daemon::start(&a, &[], &no_relay);
    a.cercle(&["note", "add", &circle, "Plaie propre, pansement refait"])
        .ok();
    assert!(
        wait_until(30, || relay
            .metrics()
            .value("cercle_relay_connections", &[])
            >= 1.0),
        "A's node never reached the circle's relay"
    );
    let code = a.json(&["device", "pair"])["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut parsed = cercle_node::pairing::PairCode::decode(&code).unwrap();
    parsed
        .addresses
        .retain(|x| x.starts_with(&relay_address) && x.contains("/p2p-circuit"));
    assert_eq!(parsed.addresses.len(), 1, "{:?}", parsed.addresses);
    let through_relay = parsed.encode();

    let desktop = TestHome::new();
    let paired = desktop.json(&["init", "--pair", &through_relay]);
    assert_eq!(paired["member"], a.json(&["whoami"])["member"]);
    let _node_desktop = Daemon::start(&desktop, &[], &no_relay);
    assert!(
        wait_until(60, || desktop
            .note_texts(&circle)
            .contains(&"Plaie propre, pansement refait".to_string())),
        "the new device never received the circle through the relay"
    );
    let devices = desktop.json(&["device", "list"]);
    assert!(
        devices["devices"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d["this"] == false && d["connected"] == true)),
        "{devices}"
    );
}

/// A relay (keeping only the circles that name it, the default), A's circle naming it, and
/// B, who is not a member yet.
struct Scene {
    _relay_home: TestHome,
    relay: Relay,
    relay_address: String,
    a: TestHome,
    b: TestHome,
    circle: String,
}

impl Scene {
    fn new() -> Scene {
        let relay_home = TestHome::new();
        let relay = Relay::start(&relay_home, &[], &LOOPBACK);
        let relay_address = relay.addresses()[0].clone();
        let (a, b) = (TestHome::new(), TestHome::new());
        a.init("Dr Claire Martin", "médecin généraliste");
        b.init("Julien Petit", "infirmier");
        let circle = a.create_circle("Jeanne Durand");
        let shown = a.json(&["circle", "relays", &circle, &relay_address]);
        assert_eq!(shown["relays"][0], relay_address.as_str(), "{shown}");
        Scene {
            _relay_home: relay_home,
            relay,
            relay_address,
            a,
            b,
            circle,
        }
    }
}

/// `home`'s node on loopback, given `relay` with `--relay` (and no mDNS).
fn up_with(home: &TestHome, relay: &Relay) -> Daemon {
    let relay_address = relay.addresses()[0].clone();
    let args = [
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--relay",
        &relay_address,
    ];
    Daemon::start(home, &[], &args)
}

/// A member who gives the relay with `--relay` but whose circle does not name it: the relay
/// refuses to keep that circle (and counts why); its mailbox stays empty.
#[test]
fn a_relay_keeps_no_circle_that_does_not_name_it() {
    let relay_home = TestHome::new();
    let relay = Relay::start(&relay_home, &[], &LOOPBACK);
    let a = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    let circle = a.create_circle("Jeanne Durand");
    let _node = up_with(&a, &relay);
    a.cercle(&["note", "add", &circle, "Plaie propre, pansement refait"])
        .ok();
    let refused = |m: &cercle_tests::Metrics| {
        m.value(
            "cercle_relay_mailbox_refusals_total",
            &[("direction", "push"), ("reason", "not_named")],
        )
    };
    assert!(
        wait_until(30, || refused(&relay.metrics()) >= 1.0),
        "the relay never refused the circle that does not name it: {}",
        relay.metrics().text
    );
    let m = relay.metrics();
    assert_eq!(
        m.value("cercle_relay_mailbox_circles", &[]),
        0.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.value("cercle_relay_mailbox_stored_total", &[]),
        0.0,
        "{}",
        m.text
    );
}

#[test]
fn the_relay_unit_file_passes_systemd_analyze_verify() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze is not installed here");
        return;
    };
    if !out.status.success() {
        eprintln!("SKIPPED: systemd-analyze does not run here");
        return;
    }
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cercle-relay.service"),
    )
    .unwrap();
    // Verified against the binary just built, where the unit expects the installed one.
    let unit = unit.replace("/usr/local/bin/cercle", &cercle_bin().display().to_string());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cercle-relay.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
