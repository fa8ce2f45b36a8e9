//! The relay an operator runs: it says who it is and where it listens (one JSON object with
//! `--json`), keeps its identity across a SIGKILL, serves Prometheus metrics and a health
//! check, counts the nodes connected to it, and its systemd unit passes
//! `systemd-analyze verify`.

// Saying why a part was skipped is this test's output.
#![allow(clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use cercle_tests::{Daemon, TestHome, cercle_bin, wait_until};

struct Relay {
    child: Child,
    ready: serde_json::Value,
}

impl Relay {
    fn start(home: &TestHome) -> Relay {
        let mut child = Command::new(cercle_bin())
            .arg("--home")
            .arg(home.path())
            .args([
                "--json",
                "relay",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--metrics",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start cercle relay: {e}"));
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let ready = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the relay's first line is not JSON ({e}): {line:?}"));
        Relay { child, ready }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let url = format!(
            "http://{}{path}",
            self.ready["metrics"].as_str().unwrap_or_default()
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        runtime.block_on(async {
            let r = reqwest::get(&url)
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of an unlabelled sample in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn a_relay_says_who_it_is_keeps_its_identity_and_exposes_metrics() {
    let home = TestHome::new();
    let relay = Relay::start(&home);
    let peer_id = relay.ready["peer_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(peer_id.starts_with("12D3KooW"), "{}", relay.ready);
    let addresses: Vec<String> = relay.ready["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
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
        sample(&text, "cercle_relay_connections"),
        Some(0.0),
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
        wait_until(20, || sample(
            &relay.get("/metrics").1,
            "cercle_relay_connections"
        ) >= Some(1.0)),
        "the relay did not count the node's connection: {}",
        relay.get("/metrics").1
    );

    // Killed without warning, it comes back as the same peer.
    drop(relay);
    let again = Relay::start(&home);
    assert_eq!(again.ready["peer_id"], peer_id.as_str());
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
