//! Torture: five members' real `cercle up` nodes write to one circle while the test kills
//! them with SIGKILL and restarts them, and cuts and heals the links between them (a TCP
//! proxy on loopback per direction, see `cercle_tests::link`). A note is acknowledged when
//! `cercle note add` returned its id (the node was up, or the command wrote offline). At the
//! end every link is healed and every node up: every acknowledged note must be on every
//! node, once.
//!
//! The CI runs `TORTURE_ROUNDS` rounds (default 12); the long run is
//! `CERCLE_TORTURE_ROUNDS=1000 cargo test --release -p cercle-tests --test torture -- --nocapture`,
//! whose figures (printed as one JSON line) are in `BENCHMARKS.md`. `CERCLE_TORTURE_SEED`
//! replays a run.

// The run's figures are printed for the benchmark table.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use cercle_tests::link::Link;
use cercle_tests::{Daemon, TestHome, loopback_args, wait_until};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt as _, SeedableRng as _};

const NODES: usize = 5;
const TORTURE_ROUNDS: usize = 12;

fn socket_of(daemon: &Daemon) -> SocketAddr {
    let address = daemon.tcp_address();
    let port = address
        .split('/')
        .skip_while(|p| *p != "tcp")
        .nth(1)
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no TCP port in {address}"));
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The five members, their links (`links[(from, to)]` carries `from`'s dials to `to`),
/// and their running nodes.
struct Team {
    homes: Vec<TestHome>,
    peer_ids: Vec<String>,
    links: BTreeMap<(usize, usize), Link>,
    nodes: Vec<Option<Daemon>>,
}

impl Team {
    /// Starts node `i`, dialing every other node through its links, and points the links
    /// to it at its new port.
    fn start(&mut self, i: usize) {
        let mut args = loopback_args(&[]);
        for j in (0..NODES).filter(|j| *j != i) {
            let link = &self.links[&(i, j)];
            args.push("--peer".into());
            args.push(format!(
                "/ip4/127.0.0.1/tcp/{}/p2p/{}",
                link.port(),
                self.peer_ids[j]
            ));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = Daemon::start(&self.homes[i], &[], &args);
        let at = socket_of(&daemon);
        for j in (0..NODES).filter(|j| *j != i) {
            self.links[&(j, i)].retarget(at);
        }
        self.nodes[i] = Some(daemon);
    }

    fn cut_between(&self, a: usize, b: usize) {
        self.links[&(a, b)].cut();
        self.links[&(b, a)].cut();
    }
}

#[test]
fn every_acknowledged_note_survives_kills_and_partitions_on_every_node() {
    let rounds: usize = std::env::var("CERCLE_TORTURE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(TORTURE_ROUNDS);
    let seed: u64 = std::env::var("CERCLE_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let names = [
        ("Dr Claire Martin", "médecin généraliste"),
        ("Julien Petit", "infirmier"),
        ("Anne Leroy", "kinésithérapeute"),
        ("Sophie Bernard", "pharmacienne"),
        ("Paul Durand", "aide-soignant"),
    ];
    let homes: Vec<TestHome> = names
        .iter()
        .map(|(n, p)| {
            let h = TestHome::new();
            h.init(n, p);
            h
        })
        .collect();
    let circle = homes[0].create_circle("Jeanne Durand");
    for h in &homes[1..] {
        homes[0].add_member(&circle, &h.card(), "professional");
    }
    let peer_ids: Vec<String> = homes
        .iter()
        .map(|h| {
            h.json(&["status"])["peer_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no peer id"))
                .to_string()
        })
        .collect();
    let nowhere = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut links = BTreeMap::new();
    for i in 0..NODES {
        for j in (0..NODES).filter(|j| *j != i) {
            links.insert((i, j), Link::new(nowhere));
        }
    }
    let mut team = Team {
        homes,
        peer_ids,
        links,
        nodes: (0..NODES).map(|_| None).collect(),
    };
    for i in 0..NODES {
        team.start(i);
    }
    for h in &team.homes[1..] {
        h.accept(&circle);
    }

    let started = Instant::now();
    let mut acknowledged: Vec<String> = Vec::new();
    let (mut kills, mut partitions) = (0, 0);
    for round in 0..rounds {
        // Everyone writes (a node that is down writes offline).
        for i in 0..NODES {
            for _ in 0..rng.random_range(0..3) {
                let text = format!("r{round} n{i} #{}", acknowledged.len());
                let run = team.homes[i].cercle(&["note", "add", &circle, &text]);
                if run.code == Some(0) {
                    acknowledged.push(text);
                }
            }
        }
        match rng.random_range(0..4) {
            // SIGKILL one node; it comes back now or at a later round.
            0 | 1 => {
                let i = rng.random_range(0..NODES);
                if team.nodes[i].take().is_some() {
                    kills += 1;
                }
                if rng.random_bool(0.5) {
                    team.start(i);
                }
            }
            // Split the team in two.
            2 => {
                let side: Vec<bool> = (0..NODES).map(|_| rng.random_bool(0.5)).collect();
                for a in 0..NODES {
                    for b in (a + 1)..NODES {
                        if side[a] != side[b] {
                            team.cut_between(a, b);
                        }
                    }
                }
                partitions += 1;
            }
            // Heal every link, restart every node that is down.
            _ => {
                for link in team.links.values() {
                    link.heal();
                }
                for i in 0..NODES {
                    if team.nodes[i].is_none() {
                        team.start(i);
                    }
                }
            }
        }
    }

    // Heal: every link up, every node running; then everyone must hold everything.
    for link in team.links.values() {
        link.heal();
    }
    for i in 0..NODES {
        if team.nodes[i].is_none() {
            team.start(i);
        }
    }
    let healed = Instant::now();
    let mut missing = Vec::new();
    let converged = wait_until(180, || {
        missing.clear();
        for (i, h) in team.homes.iter().enumerate() {
            let held = h.note_texts(&circle);
            let lacking = acknowledged.iter().filter(|t| !held.contains(t)).count();
            let twice = held.len() - held.iter().collect::<std::collections::BTreeSet<_>>().len();
            if lacking > 0 || twice > 0 {
                missing.push((i, lacking, twice));
            }
        }
        missing.is_empty()
    });
    let report = serde_json::json!({
        "seed": seed,
        "rounds": rounds,
        "nodes": NODES,
        "acknowledged_notes": acknowledged.len(),
        "kills": kills,
        "partitions": partitions,
        "run_s": healed.duration_since(started).as_secs_f64(),
        "converged_after_heal_s": healed.elapsed().as_secs_f64(),
    });
    eprintln!("torture: {report}");
    assert!(
        converged,
        "not every acknowledged note is on every node (node, missing, duplicated): {missing:?}; {report}"
    );
}
