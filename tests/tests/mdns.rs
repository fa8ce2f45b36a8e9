//! Zero configuration on a LAN: two nodes in two network namespaces joined by a veth pair
//! (a private two-machine LAN that reaches nothing else) find each other by mDNS, with no
//! address given, and sync a note.
//!
//! Creating namespaces needs root and `ip`; without them the test says it was skipped and
//! why. CI runs as root.

// Saying why the test was skipped is its output.
#![allow(clippy::print_stderr)]

use std::process::Command;

use cercle_tests::{Daemon, TestHome, wait_until};

/// Two namespaces and the veth pair between them; removed on drop.
struct Lan {
    names: [String; 2],
}

impl Lan {
    fn create() -> Result<Lan, String> {
        let tag = std::process::id() % 100_000;
        let names = [format!("cercle-a{tag}"), format!("cercle-b{tag}")];
        let lan = Lan { names };
        let [a, b] = &lan.names;
        let (va, vb) = (format!("va{tag}"), format!("vb{tag}"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", a],
            vec!["netns", "add", b],
            vec![
                "link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b,
            ],
            vec!["-n", a, "addr", "add", "10.77.0.1/24", "dev", &va],
            vec!["-n", b, "addr", "add", "10.77.0.2/24", "dev", &vb],
            vec!["-n", a, "link", "set", "lo", "up"],
            vec!["-n", b, "link", "set", "lo", "up"],
            vec!["-n", a, "link", "set", &va, "up", "multicast", "on"],
            vec!["-n", b, "link", "set", &vb, "up", "multicast", "on"],
        ];
        for step in steps {
            let out = Command::new("ip")
                .args(&step)
                .output()
                .map_err(|e| format!("cannot run ip: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip {} failed: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(lan)
    }

    fn exec(&self, i: usize) -> [&str; 4] {
        ["ip", "netns", "exec", &self.names[i]]
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "delete", n]).status();
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn two_nodes_on_a_lan_find_each_other_by_mdns_and_sync() {
    if !is_root() {
        eprintln!("SKIPPED: creating network namespaces needs root (CI runs as root)");
        return;
    }
    let lan = match Lan::create() {
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
