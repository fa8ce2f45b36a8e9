//! The relay an operator runs: it says who it is and where it listens (one JSON object with
//! `--json`), keeps its identity across a SIGKILL, serves Prometheus metrics and a health
//! check, counts the nodes connected to it, and its systemd unit passes
//! `systemd-analyze verify`.

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
    .unwrap_or_else(|e| panic!("{e}"));
    // Verified against the binary just built, where the unit expects the installed one.
    let unit = unit.replace("/usr/local/bin/cercle", &cercle_bin().display().to_string());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("cercle-relay.service");
    std::fs::write(&path, unit).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
