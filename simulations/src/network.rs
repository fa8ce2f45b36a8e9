//! The `network` scenario: the real sync state machine (`cercle_node::sync::PeerSync`)
//! between many nodes over a simulated network in virtual time.
//!
//! `nodes` nodes form `circles` circles (each node a member of one, plus a few connections
//! to non-members, which must receive nothing). Connections carry messages with random
//! latency; a lost message breaks its connection (as a dead TCP/QUIC connection would), and
//! the two nodes reconnect later. Nodes go offline and come back (churn), the network is cut
//! in two halves for a while (partition), and members write concurrently. After the writes
//! stop, the run continues until every circle's members hold the same digest.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cercle_crdt::DocKind;
use cercle_node::circle::membership::CircleId;
use cercle_node::identity::DeviceId;
use cercle_node::sync::memory::Memory;
use cercle_node::sync::{Local, Message, PeerSync};
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
    pub envelopes_written: usize,
    pub converged: bool,
    /// Virtual milliseconds from the last write to convergence.
    pub convergence_ms: i64,
    pub messages: u64,
    pub bytes: u64,
    pub connections_broken: u64,
    /// Data bytes any node received for a circle it is not a member of (must be 0).
    pub non_member_data_bytes: u64,
}

const TICK_MS: i64 = 10;
const PARTITION_FROM_MS: i64 = 20_000;
const PARTITION_TO_MS: i64 = 40_000;

fn device(i: usize) -> DeviceId {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    DeviceId(d)
}

fn circle(i: usize) -> CircleId {
    CircleId([i as u8 + 1; 32])
}

/// A message on the wire.
#[derive(Debug)]
struct InFlight {
    at: i64,
    from: usize,
    to: usize,
    message: Message,
}

/// Puts `message` on the wire with a random latency of 1–40 ms.
fn send(
    wire: &mut VecDeque<InFlight>,
    rng: &mut ChaCha8Rng,
    now: i64,
    from: usize,
    to: usize,
    message: Message,
) {
    let at = now + rng.random_range(1..40);
    wire.push_back(InFlight {
        at,
        from,
        to,
        message,
    });
}

fn size(m: &Message) -> u64 {
    match m {
        Message::Hello { circles } => 8 + 64 * circles.len() as u64,
        Message::Have { ops, vectors, .. } => {
            40 + 32 * ops.len() as u64
                + vectors
                    .iter()
                    .map(|(_, v)| 8 + 40 * v.len() as u64)
                    .sum::<u64>()
        }
        Message::Data { ops, envelopes, .. } => {
            40 + ops
                .iter()
                .chain(envelopes)
                .map(|b| 4 + b.len() as u64)
                .sum::<u64>()
        }
        Message::Ack { .. } => 16,
        // Invites and document contents: their encoded size.
        other => cercle_node::sync::wire::encode(other).len() as u64,
    }
}

/// Runs the scenario.
pub fn run(config: &Config, seed: u64) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = config.nodes.max(2);
    let k = config.circles.clamp(1, n);
    let member_of: Vec<usize> = (0..n).map(|i| i % k).collect();
    let mut nodes: Vec<Memory> = (0..n).map(|_| Memory::default()).collect();
    for node in &mut nodes {
        for c in 0..k {
            node.share(circle(c), (0..n).filter(|j| member_of[*j] == c).map(device));
        }
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        // Each circle starts with its genesis operation on every member.
        node.add_op(circle(member_of[i]), member_of[i] as u8);
    }
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
    let mut online = vec![true; n];
    let mut connections: BTreeMap<(usize, usize), (PeerSync, PeerSync)> = BTreeMap::new();
    let mut wire: VecDeque<InFlight> = VecDeque::new();
    let mut report = Report {
        seed,
        nodes: n,
        circles: k,
        envelopes_written: 0,
        converged: false,
        convergence_ms: 0,
        messages: 0,
        bytes: 0,
        connections_broken: 0,
        non_member_data_bytes: 0,
    };
    let cut = |a: usize, b: usize, now: i64| {
        (PARTITION_FROM_MS..PARTITION_TO_MS).contains(&now) && (a < n / 2) != (b < n / 2)
    };
    let mut now = 0;
    while now <= config.max_ms {
        // Churn.
        let p = config.churn * TICK_MS as f64 / 1000.0;
        for up in online.iter_mut() {
            if rng.random_bool(p.clamp(0.0, 1.0)) {
                *up = !*up;
            }
        }
        if now >= config.write_ms {
            online.iter_mut().for_each(|u| *u = true);
        }
        // Writes: about ten per second across the network.
        if now < config.write_ms && rng.random_bool(0.1) {
            let w = rng.random_range(0..n);
            let doc = DocKind::ALL[rng.random_range(0..3usize)];
            let len = rng.random_range(100..2000usize);
            nodes[w].write(circle(member_of[w]), doc, device(w), len);
            report.envelopes_written += 1;
            let c = circle(member_of[w]);
            let bytes = nodes[w]
                .envelopes(&c, doc, &device(w), 0, usize::MAX)
                .pop()
                .unwrap_or_default();
            for ((a, b), (pa, pb)) in connections.iter_mut() {
                let (me, other, ps) = if *a == w {
                    (*a, *b, pa)
                } else if *b == w {
                    (*b, *a, pb)
                } else {
                    continue;
                };
                for message in ps.push(&nodes[me], c, vec![bytes.clone()]) {
                    send(&mut wire, &mut rng, now, me, other, message);
                }
            }
        }
        // Connections break when an end is offline or cut off; others (re)connect.
        let down: Vec<(usize, usize)> = connections
            .keys()
            .filter(|(a, b)| !online[*a] || !online[*b] || cut(*a, *b, now))
            .copied()
            .collect();
        for key in down {
            connections.remove(&key);
            report.connections_broken += 1;
        }
        if now % 1000 == 0 {
            for &(a, b) in &links {
                if online[a] && online[b] && !cut(a, b, now) && !connections.contains_key(&(a, b)) {
                    let mut pa = PeerSync::new(device(b));
                    let mut pb = PeerSync::new(device(a));
                    for message in pa.connected(&nodes[a], now) {
                        send(&mut wire, &mut rng, now, a, b, message);
                    }
                    for message in pb.connected(&nodes[b], now) {
                        send(&mut wire, &mut rng, now, b, a, message);
                    }
                    connections.insert((a, b), (pa, pb));
                }
            }
        }
        // Deliver what is due.
        let mut later = VecDeque::new();
        while let Some(m) = wire.pop_front() {
            if m.at > now {
                later.push_back(m);
                continue;
            }
            let key = (m.from.min(m.to), m.from.max(m.to));
            let Some((pa, pb)) = connections.get_mut(&key) else {
                continue; // the connection died with the message
            };
            report.messages += 1;
            report.bytes += size(&m.message);
            if rng.random_bool(config.loss.clamp(0.0, 1.0)) {
                connections.remove(&key);
                report.connections_broken += 1;
                continue;
            }
            let receiver = if m.to == key.0 { pa } else { pb };
            if let Message::Data {
                circle: c,
                ops,
                envelopes,
            } = &m.message
                && *c != circle(member_of[m.to])
            {
                report.non_member_data_bytes += ops
                    .iter()
                    .chain(envelopes)
                    .map(|b| b.len() as u64)
                    .sum::<u64>();
            }
            match receiver.receive(&nodes[m.to], m.message) {
                Ok((replies, received)) => {
                    if let Some(r) = received {
                        nodes[m.to].apply(r);
                    }
                    for message in replies {
                        send(&mut later, &mut rng, now, m.to, m.from, message);
                    }
                }
                Err(_) => {
                    connections.remove(&key);
                    report.connections_broken += 1;
                }
            }
        }
        wire = later;
        // Anti-entropy.
        for ((a, b), (pa, pb)) in connections.iter_mut() {
            for message in pa.tick(&nodes[*a], now) {
                send(&mut wire, &mut rng, now, *a, *b, message);
            }
            for message in pb.tick(&nodes[*b], now) {
                send(&mut wire, &mut rng, now, *b, *a, message);
            }
        }
        if now >= config.write_ms && converged(&nodes, &member_of, k) {
            report.converged = true;
            report.convergence_ms = now - config.write_ms;
            break;
        }
        now += TICK_MS;
    }
    report
}

fn converged(nodes: &[Memory], member_of: &[usize], k: usize) -> bool {
    (0..k).all(|c| {
        let digests: BTreeSet<[u8; 32]> = (0..nodes.len())
            .filter(|i| member_of[*i] == c)
            .map(|i| nodes[i].digest(&circle(c)))
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
        assert!(report.envelopes_written > 0);
        assert_eq!(run(&config, 3), report, "one seed, one report");
    }
}
