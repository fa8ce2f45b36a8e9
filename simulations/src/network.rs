//! The `network` scenario: whole nodes (the node core the daemon runs: requests, writes made
//! durable, envelopes sealed and checked, the sync protocol, membership and keys) between
//! many nodes over a simulated network in virtual time, through
//! `cercle_node::node::cluster`.
//!
//! `nodes` nodes form `circles` circles (each node a member of one, created by its first
//! member who adds the others by their contact cards, plus a few connections to
//! non-members, which must receive nothing). Messages travel with random latency; a lost
//! message breaks its connection (as a dead TCP/QUIC connection would), and the two nodes
//! reconnect later. Nodes go offline and come back (churn), the network is cut in two halves
//! for a while (partition), and members write notes concurrently. After the writes stop,
//! the run continues until every circle's members hold the same digest.

use std::collections::BTreeSet;

use cercle_crdt::{EntryKind, Role};
use cercle_node::circle::membership::CircleId;
use cercle_node::node::cluster::{Cluster, WireConfig};
use cercle_node::ops::notes::NoteAdd;
use cercle_node::sync::Local;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

/// The scenario's parameters.
#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: usize,
    pub circles: usize,
    /// Probability that a message is lost (and its connection with it).
    pub loss: f64,
    /// Probability per second that a node goes offline or comes back.
    pub churn: f64,
    /// Virtual milliseconds during which members write.
    pub write_ms: i64,
    /// Give up after this many virtual milliseconds.
    pub max_ms: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nodes: 50,
            circles: 5,
            loss: 0.10,
            churn: 0.05,
            write_ms: 60_000,
            max_ms: 600_000,
        }
    }
}

/// What the run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub circles: usize,
    /// Notes written (each one envelope, sealed and pushed by its writer's core).
    pub notes_written: usize,
    pub converged: bool,
    /// Virtual milliseconds from the last write to convergence.
    pub convergence_ms: i64,
    pub messages: u64,
    pub bytes: u64,
    pub connections_broken: u64,
    /// Data bytes any node received for a circle it is not a member of (must be 0).
    pub non_member_data_bytes: u64,
    /// A fingerprint of every message, write and answer of the run.
    pub trace: String,
}

/// The scenario's step, in virtual milliseconds.
const STEP_MS: i64 = 100;
const PARTITION_FROM_MS: i64 = 20_000;
const PARTITION_TO_MS: i64 = 40_000;
/// Setting a circle up (creation, members added) may take this long.
const SETUP_MS: i64 = 60_000;

/// Runs the scenario.
pub fn run(config: &Config, seed: u64) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = config.nodes.max(2);
    let k = config.circles.clamp(1, n);
    let member_of: Vec<usize> = (0..n).map(|i| i % k).collect();
    let names: Vec<String> = (0..n).map(|i| format!("Soignant {i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let wire = WireConfig {
        latency_us: (1_000, 40_000),
        durable_us: 1_000,
        loss: config.loss.clamp(0.0, 0.9),
    };
    let mut report = Report {
        seed,
        nodes: n,
        circles: k,
        notes_written: 0,
        converged: false,
        convergence_ms: 0,
        messages: 0,
        bytes: 0,
        connections_broken: 0,
        non_member_data_bytes: 0,
        trace: String::new(),
    };
    let Ok(mut cluster) = Cluster::new(seed, &names, wire) else {
        return report;
    };
    let Some(circles) = set_up(&mut cluster, &member_of, k) else {
        return report;
    };
    // Who may connect: members of the same circle, and a few strangers.
    let mut links: BTreeSet<(usize, usize)> = BTreeSet::new();
    for a in 0..n {
        for b in a + 1..n {
            if member_of[a] == member_of[b] {
                links.insert((a, b));
            }
        }
        for _ in 0..2 {
            let b = rng.random_range(0..n);
            if b != a {
                links.insert((a.min(b), a.max(b)));
            }
        }
    }
    let cut = |a: usize, b: usize, t: i64| {
        (PARTITION_FROM_MS..PARTITION_TO_MS).contains(&t) && (a < n / 2) != (b < n / 2)
    };
    let mut online = vec![true; n];
    // Whether each node accepted its circle (its creator holds it from the start).
    let mut joined: Vec<bool> = (0..n).map(|i| i < k).collect();
    let mut t = 0;
    while t <= config.max_ms {
        // Churn: a node going offline loses its connections.
        let p = (config.churn * STEP_MS as f64 / 1000.0).clamp(0.0, 1.0);
        for (i, up) in online.iter_mut().enumerate() {
            if t < config.write_ms && rng.random_bool(p) {
                *up = !*up;
            } else if t >= config.write_ms {
                *up = true;
            }
            if !*up {
                for j in 0..n {
                    if cluster.connected(i, j) {
                        cluster.disconnect(i, j);
                        report.connections_broken += 1;
                    }
                }
            }
        }
        for &(a, b) in &links {
            if cut(a, b, t) && cluster.connected(a, b) {
                cluster.disconnect(a, b);
                report.connections_broken += 1;
            }
        }
        // Writes: one note per step (ten per second) across the network.
        if t < config.write_ms {
            let w = rng.random_range(0..n);
            if online[w] {
                let add = NoteAdd {
                    circle: circles[member_of[w]].to_string(),
                    texts: vec![format!("Passage {t}: pansement refait, plaie propre.")],
                    kind: EntryKind::Care,
                    at: None,
                    vitals: None,
                    to: None,
                };
                cluster.request(w, add.into());
                report.notes_written += 1;
            }
        }
        // Links come back every second between nodes that are up and not cut apart; a
        // user who was added to a circle accepts it within the second.
        if t % 1000 == 0 {
            for &(a, b) in &links {
                if online[a] && online[b] && !cut(a, b, t) {
                    cluster.connect(a, b);
                }
            }
            for (i, up) in online.iter().enumerate() {
                if *up && !joined[i] && cluster.accept_invitations(i, SETUP_MS) > 0 {
                    joined[i] = true;
                }
            }
        }
        cluster.run_for(STEP_MS);
        if t >= config.write_ms && converged(&cluster, &circles, &member_of) {
            report.converged = true;
            report.convergence_ms = t - config.write_ms;
            break;
        }
        t += STEP_MS;
    }
    report.messages = cluster.stats.messages;
    report.bytes = cluster.stats.bytes;
    report.connections_broken += cluster.stats.lost;
    report.non_member_data_bytes = cluster
        .data_to
        .iter()
        .filter(|((node, circle), _)| circles[member_of[*node]] != *circle)
        .map(|(_, bytes)| *bytes)
        .sum();
    report.trace = cluster.trace();
    report
}

/// Each circle's first member creates it and adds the others by their contact cards.
fn set_up(cluster: &mut Cluster, member_of: &[usize], k: usize) -> Option<Vec<CircleId>> {
    let mut circles = Vec::with_capacity(k);
    for c in 0..k {
        let id = cluster
            .create_circle(c, &format!("Patient {c}"), SETUP_MS)
            .ok()?;
        for (i, _) in member_of
            .iter()
            .enumerate()
            .filter(|(i, m)| **m == c && *i != c)
        {
            cluster
                .add_member(c, &id, i, Role::Professional, SETUP_MS)
                .ok()?;
        }
        circles.push(id.parse().ok()?);
    }
    Some(circles)
}

fn converged(cluster: &Cluster, circles: &[CircleId], member_of: &[usize]) -> bool {
    circles.iter().enumerate().all(|(c, id)| {
        let digests: BTreeSet<[u8; 32]> = (0..cluster.members.len())
            .filter(|i| member_of[*i] == c)
            .map(|i| cluster.members[i].core.circles().digest(id))
            .collect();
        digests.len() == 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_network_converges_and_strangers_get_nothing() {
        let config = Config {
            nodes: 12,
            circles: 3,
            write_ms: 20_000,
            max_ms: 300_000,
            ..Config::default()
        };
        let report = run(&config, 3);
        assert!(report.converged, "{report:?}");
        assert_eq!(report.non_member_data_bytes, 0);
        assert!(report.notes_written > 0);
        assert_eq!(run(&config, 3), report, "one seed, one report");
    }
}
