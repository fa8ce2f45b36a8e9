//! Zero configuration on a LAN: two nodes in two network namespaces joined by a veth pair
//! (a private two-machine LAN that reaches nothing else) find each other by mDNS, with no
//! address given, and sync a note.
//!
//! Creating namespaces needs root and `ip`; without them the test says it was skipped and
//! why. CI runs as root.

// Saying why the test was skipped is its output.
#![allow(clippy::print_stderr)]

use cercle_tests::{Daemon, Netns, TestHome, is_root, wait_until};

/// Two namespaces and the veth pair between them.
fn lan() -> Result<Netns, String> {
    let mut lan = Netns::create(&["a", "b"])?;
    lan.link(0, "10.77.0.1", Some(1), "10.77.0.2")?;
    Ok(lan)
}

#[test]
fn two_nodes_on_a_lan_find_each_other_by_mdns_and_sync() {
    if !is_root() {
        eprintln!("SKIPPED: creating network namespaces needs root (CI runs as root)");
        return;
    }
    let lan = match lan() {
        Ok(lan) => lan,
        Err(e) => {
            eprintln!("SKIPPED: cannot create the two-namespace LAN: {e}");
            return;
        }
    };
    let a = TestHome::new();
    let b = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    b.init("Julien Petit", "infirmier");
    let circle = a.create_circle("Jeanne Durand");
    a.add_member(&circle, &b.card(), "professional");

    // No --peer: each node listens on its LAN and finds the other by mDNS.
    let listen = ["--listen", "/ip4/0.0.0.0/tcp/0"];
    let _node_a = Daemon::start(&a, &lan.exec(0), &listen);
    let _node_b = Daemon::start(&b, &lan.exec(1), &listen);
    let in_a = |args: &[&str]| a.through(&lan.exec(0), args);
    let in_b = |args: &[&str]| b.through(&lan.exec(1), args);

    cercle_tests::accept_with(in_b, &circle);
    in_a(&["note", "add", &circle, "Vu au cabinet, tension 13/8"]).ok();
    let synced = wait_until(60, || {
        let run = in_b(&["--json", "note", "list", &circle]);
        run.code == Some(0)
            && run
                .json()
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n["text"] == "Vu au cabinet, tension 13/8"))
    });
    let peers = in_b(&["--json", "peers"]);
    assert!(
        synced,
        "B never got A's note over the LAN; B's peers: {}",
        peers.stdout
    );
    let addresses = in_b(&["--json", "peers"]).json();
    assert_eq!(addresses.as_array().map(Vec::len), Some(1), "{addresses}");
}
