//! The named scenarios of care at scale, `rural-week`, `msp-lan` and `region`: whole nodes
//! (`cercle_node::node::cluster`, the node core the daemon runs) and relays (the relay's
//! exchange over a real mailbox) in virtual time.
//!
//! A territory is served by one relay; its professionals' nodes are started with it (as a
//! regional agency configures them). Each circle has a patient in one territory and 3 to 7
//! members from there, sometimes one from a neighbouring territory too (a hospital's
//! specialist), in which case the circle names both territories' relays. The creator adds
//! the members by their cards and names the relays while offline, and its node sends it all
//! when it connects; each member accepts the invitation when its node announces it. Then
//! members write notes while their nodes come and go (each node is online a share of the
//! time drawn from the scenario's range), messages are lost (breaking their connection), a
//! relay goes down and a territory loses its internet access for a while.
//! After the writes, every node comes back and the run goes on until every circle's
//! members hold the same documents.
//!
//! Each note is followed until every member of its circle holds it (its staleness). The
//! report gives the distribution of staleness, the convergence time, messages and bytes per
//! note, what the relays store and what each node stores. The same seed gives the same
//! report, byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use cercle_crdt::{DocKind, EntryKind, Role};
use cercle_node::circle::membership::CircleId;
use cercle_node::identity::DeviceId;
use cercle_node::node::RequestId;
use cercle_node::node::cluster::{Cluster, WireConfig};
use cercle_node::ops::Operation;
use cercle_node::ops::circles::{CircleAccept, CircleCreate, CircleList};
use cercle_node::ops::members::MemberAdd;
use cercle_node::ops::notes::NoteAdd;
use cercle_node::ops::relays::RelaysSet;
use cercle_node::sync::Local;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

/// A time window during the writes when part of the network is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Relay `relay` is down (its mailbox kept).
    Relay {
        relay: usize,
        from_ms: i64,
        to_ms: i64,
    },
    /// The nodes of territory `territory` reach no relay and no node outside it.
    Territory {
        territory: usize,
        from_ms: i64,
        to_ms: i64,
    },
}

/// A scenario's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub name: &'static str,
    pub nodes: usize,
    pub circles: usize,
    /// Relays, one per territory; 0 for a LAN where every node reaches every other
    /// directly (a health centre's network with its internet access down).
    pub relays: usize,
    /// Members per circle, from and to (inclusive).
    pub members: (usize, usize),
    /// The probability that a circle has a member from a neighbouring territory too.
    pub outsiders: f64,
    /// Each node is online this share of the time, drawn per node in this range.
    pub uptime: (f64, f64),
    /// The mean length of one online and one offline period together (milliseconds).
    pub cycle_ms: i64,
    pub latency_us: (i64, i64),
    /// The probability that a message is lost (and its connection with it).
    pub loss: f64,
    /// Notes written per virtual second, over all the nodes.
    pub notes_per_s: f64,
    /// Virtual milliseconds during which members write.
    pub write_ms: i64,
    /// Give up this many virtual milliseconds after the writes.
    pub settle_ms: i64,
    /// The scenario's step (milliseconds): churn, writes and checks happen once a step.
    pub step_ms: i64,
    pub outages: Vec<Outage>,
}

impl Config {
    /// A rural circle of 8 over a week: each member's node online 5 to 40 % of the time,
    /// one relay, slow links.
    pub fn rural_week() -> Config {
        Config {
            name: "rural-week",
            nodes: 8,
            circles: 1,
            relays: 1,
            members: (8, 8),
            outsiders: 0.0,
            uptime: (0.05, 0.40),
            cycle_ms: 4 * 3600 * 1000,
            latency_us: (20_000, 300_000),
            loss: 0.02,
            notes_per_s: 40.0 / 86_400.0,
            write_ms: 7 * 86_400 * 1000,
            settle_ms: 86_400 * 1000,
            step_ms: 1000,
            outages: Vec::new(),
        }
    }

    /// A health centre: 40 professionals, 150 patients, on its LAN with the internet down;
    /// laptops come and go.
    pub fn msp_lan() -> Config {
        Config {
            name: "msp-lan",
            nodes: 40,
            circles: 150,
            relays: 0,
            members: (3, 8),
            outsiders: 0.0,
            uptime: (0.7, 1.0),
            cycle_ms: 3600 * 1000,
            latency_us: (200, 2_000),
            loss: 0.001,
            notes_per_s: 2.0,
            write_ms: 10 * 60 * 1000,
            settle_ms: 10 * 60 * 1000,
            step_ms: 100,
            outages: Vec::new(),
        }
    }

    /// A region: 1 000 nodes, 5 000 circles, 20 relays; churn, losses, a relay down for a
    /// minute and a territory cut off for a minute and a half.
    pub fn region() -> Config {
        Config {
            name: "region",
            nodes: 1_000,
            circles: 5_000,
            relays: 20,
            members: (3, 7),
            outsiders: 0.1,
            uptime: (0.8, 1.0),
            cycle_ms: 20 * 60 * 1000,
            latency_us: (2_000, 60_000),
            loss: 0.002,
            notes_per_s: 10.0,
            write_ms: 5 * 60 * 1000,
            settle_ms: 20 * 60 * 1000,
            step_ms: 100,
            outages: vec![
                Outage::Relay {
                    relay: 0,
                    from_ms: 60_000,
                    to_ms: 120_000,
                },
                Outage::Territory {
                    territory: 1,
                    from_ms: 90_000,
                    to_ms: 180_000,
                },
            ],
        }
    }

    /// The scenario called `name`.
    pub fn named(name: &str) -> Option<Config> {
        match name {
            "rural-week" => Some(Config::rural_week()),
            "msp-lan" => Some(Config::msp_lan()),
            "region" => Some(Config::region()),
            _ => None,
        }
    }

    /// The scenario at most this size (quick runs, CI): outages of relays no longer there
    /// are dropped.
    pub fn at_most(mut self, nodes: usize, circles: usize, relays: usize, write_ms: i64) -> Config {
        self.nodes = self.nodes.min(nodes).max(2);
        self.circles = self.circles.min(circles).max(1);
        self.relays = self.relays.min(relays).min(self.nodes);
        self.write_ms = self.write_ms.min(write_ms).max(1);
        let relays = self.relays;
        self.outages.retain(|o| match *o {
            Outage::Relay { relay, .. } => relay < relays,
            Outage::Territory { territory, .. } => territory < relays,
        });
        self
    }

    fn territories(&self) -> usize {
        self.relays.max(1)
    }

    fn territory_of(&self, node: usize) -> usize {
        node % self.territories()
    }
}

/// Percentiles of a distribution (milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Spread {
    pub p50: i64,
    pub p90: i64,
    pub p99: i64,
    pub max: i64,
}

impl Spread {
    fn of(values: &[i64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_unstable();
        let at = |q: usize| -> i64 {
            if v.is_empty() {
                return 0;
            }
            v[((v.len() - 1) * q).div_ceil(100)]
        };
        Spread {
            p50: at(50),
            p90: at(90),
            p99: at(99),
            max: v.last().copied().unwrap_or(0),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub nodes: usize,
    pub circles: usize,
    pub relays: usize,
    /// Memberships (a node in a circle), in all.
    pub memberships: usize,
    /// Virtual milliseconds until every member had accepted every circle.
    pub setup_ms: i64,
    pub notes_written: usize,
    /// Notes every member of their circle came to hold.
    pub notes_everywhere: usize,
    pub converged: bool,
    /// Virtual milliseconds from the end of the writes until every circle's members held
    /// the same documents.
    pub convergence_ms: i64,
    /// Time from a note's writing until every member of its circle held it.
    pub staleness_ms: Spread,
    /// Messages and bytes from the first note to convergence, per note written
    /// (anti-entropy and introductions included).
    pub messages_per_note: u64,
    pub bytes_per_note: u64,
    pub messages: u64,
    pub bytes: u64,
    pub connections_broken: u64,
    pub introductions: u64,
    /// Messages and bytes of the whole run (set-up included), by kind of message.
    pub by_kind: BTreeMap<String, [u64; 2]>,
    /// Envelope bytes and envelopes held by the relays.
    pub relay_bytes_max: u64,
    pub relay_bytes_total: u64,
    pub relay_envelopes_total: u64,
    /// Bytes each node's store holds (documents, envelopes, membership, keys).
    pub node_store_bytes_p50: u64,
    pub node_store_bytes_max: u64,
    /// Data bytes any node received for a circle it is not a member of (must be 0).
    pub non_member_data_bytes: u64,
    /// A fingerprint of every message, write and answer of the run.
    pub trace: String,
}

/// What a run saw over time, for the plots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Each note's staleness (milliseconds), in writing order.
    pub staleness_ms: Vec<i64>,
    /// Per virtual second from the first note: messages, bytes, and notes not yet held by
    /// every member.
    pub seconds: Vec<Second>,
    /// Envelope bytes each relay holds at the end.
    pub relay_bytes: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    pub messages: u64,
    pub bytes: u64,
    pub waiting: usize,
}

/// A note on its way to its circle's members.
#[derive(Debug)]
struct Note {
    circle: usize,
    writer: DeviceId,
    /// The note's place in its writer's notebook log.
    seq: u64,
    written_ms: i64,
    /// Members not yet holding it.
    missing: Vec<usize>,
    /// When the last member to get it so far got it (milliseconds since the start).
    reached_ms: i64,
}

/// One circle of the scenario.
#[derive(Debug)]
struct Plan {
    members: Vec<usize>,
    /// Territories whose relays the circle names.
    territories: BTreeSet<usize>,
}

/// Runs `config` from `seed`, the nodes of each window of virtual time shared out among
/// `threads` threads (`Cluster::run_in_windows`); the report does not depend on `threads`.
pub fn run(config: &Config, seed: u64, threads: usize) -> (Report, Series) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = config.nodes.max(2);
    let names: Vec<String> = (0..n).map(|i| format!("Soignant {i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let wire = WireConfig {
        latency_us: config.latency_us,
        durable_us: 1_000,
        loss: config.loss.clamp(0.0, 0.5),
    };
    let plans = plan(config, n, &mut rng);
    let mut report = Report {
        scenario: config.name.to_string(),
        seed,
        nodes: n,
        circles: plans.len(),
        relays: config.relays,
        memberships: plans.iter().map(|p| p.members.len()).sum(),
        setup_ms: 0,
        notes_written: 0,
        notes_everywhere: 0,
        converged: false,
        convergence_ms: 0,
        staleness_ms: Spread::default(),
        messages_per_note: 0,
        bytes_per_note: 0,
        messages: 0,
        bytes: 0,
        connections_broken: 0,
        introductions: 0,
        by_kind: BTreeMap::new(),
        relay_bytes_max: 0,
        relay_bytes_total: 0,
        relay_envelopes_total: 0,
        node_store_bytes_p50: 0,
        node_store_bytes_max: 0,
        non_member_data_bytes: 0,
        trace: String::new(),
    };
    let mut series = Series::default();
    let Ok(mut cluster) = Cluster::new(seed, &names, wire) else {
        return (report, series);
    };
    cluster.run_in_windows(threads);
    let mut world = World::new(config, n, &plans, &mut rng);
    for _ in 0..config.relays {
        if cluster.add_relay().is_err() {
            return (report, series);
        }
    }
    for i in 0..n {
        if config.relays > 0 {
            let home = BTreeSet::from([n + config.territory_of(i)]);
            if cluster.set_home_relays(i, home).is_err() {
                return (report, series);
            }
        }
    }
    // Set-up: each circle created, its members added and its relays named while its
    // creator's node is offline (sent in one go when it connects); then everyone online,
    // and every member accepts its invitations as they arrive.
    let Some(circles) = set_up(&mut cluster, config, &plans) else {
        return (report, series);
    };
    let setup_from = cluster.elapsed_ms();
    let mut joined: Vec<usize> = vec![0; n];
    for p in &plans {
        joined[p.members[0]] += 1;
    }
    let expected: Vec<usize> = (0..n)
        .map(|i| plans.iter().filter(|p| p.members.contains(&i)).count())
        .collect();
    let setup_limit = cluster.elapsed_ms() + config.settle_ms.max(600_000);
    // Each user told of invitations lists them and accepts each, every node at the same
    // time (their requests run with the rest of the cluster, not one node after another).
    // An acceptance refused (the invitation changed meanwhile) is tried again from a new
    // list, as its user would.
    let mut listing: Vec<(usize, RequestId)> = Vec::new();
    let mut accepting: Vec<(usize, String, RequestId)> = Vec::new();
    let mut accepted: BTreeSet<(usize, String)> = BTreeSet::new();
    let mut again: BTreeSet<usize> = BTreeSet::new();
    while joined != expected && cluster.elapsed_ms() < setup_limit {
        world.links(&mut cluster, config, i64::MIN);
        for (i, circle, id) in std::mem::take(&mut accepting) {
            match cluster.answer::<CircleAccept>(i, id) {
                Some(Ok(_)) => joined[i] += 1,
                Some(Err(_)) => {
                    accepted.remove(&(i, circle));
                    again.insert(i);
                }
                None => accepting.push((i, circle, id)),
            }
        }
        for (i, id) in std::mem::take(&mut listing) {
            let Some(list) = cluster.answer::<CircleList>(i, id) else {
                listing.push((i, id));
                continue;
            };
            for circle in list
                .into_iter()
                .flat_map(|l| l.invitations)
                .map(|v| v.circle)
            {
                if accepted.insert((i, circle.clone())) {
                    let accept = CircleAccept {
                        circle: circle.clone(),
                        always: false,
                    };
                    accepting.push((i, circle, cluster.submit(i, accept.into())));
                }
            }
        }
        for i in 0..n {
            let told = cluster.invited(i) || again.remove(&i);
            if joined[i] < expected[i] && told && !listing.iter().any(|l| l.0 == i) {
                cluster.saw_invitations(i);
                listing.push((i, cluster.submit(i, CircleList {}.into())));
            }
        }
        cluster.run_for(1000);
    }
    if joined != expected {
        return (report, series);
    }
    report.setup_ms = cluster.elapsed_ms() - setup_from;

    // Writes, with churn, losses and outages; then everyone back until convergence.
    let before = cluster.stats;
    cluster.record_applied = true;
    let mut notes: Vec<Note> = Vec::new();
    let mut waiting: Vec<usize> = Vec::new();
    let mut staleness: Vec<i64> = Vec::new();
    let mut owed = 0.0;
    let mut last_second = cluster.stats;
    let mut t = 0;
    let end = config.write_ms + config.settle_ms;
    while t <= end {
        let writing = t < config.write_ms;
        world.churn(config, writing, &mut rng);
        if t % 1000 == 0 || !writing {
            world.links(&mut cluster, config, if writing { t } else { i64::MIN });
        }
        world.cut(&mut cluster, config, if writing { t } else { i64::MIN });
        if writing {
            owed += config.notes_per_s * config.step_ms as f64 / 1000.0;
            while owed >= 1.0 {
                owed -= 1.0;
                if let Some(note) = write(&mut cluster, &world, &plans, &circles, &mut rng) {
                    waiting.push(notes.len());
                    notes.push(note);
                }
            }
        }
        cluster.run_for(config.step_ms);
        // Which notes every member now holds, and since when: the time a member applied
        // envelopes of the note's circle during the step (the last such time, so never
        // earlier than the note arrived), else the step's end.
        let now = cluster.elapsed_ms();
        let mut arrivals: BTreeMap<(usize, String), i64> = BTreeMap::new();
        for (node, circle, at) in cluster.take_applied() {
            arrivals.insert((node, circle), at);
        }
        waiting.retain(|&k| {
            let note = &mut notes[k];
            let id = &circles[note.circle];
            let text = id.to_string();
            note.missing.retain(|&m| {
                let held = cluster.members[m]
                    .core
                    .circles()
                    .vector(id, DocKind::LiaisonNotebook)
                    .get(&note.writer)
                    .copied()
                    .unwrap_or(0);
                if held < note.seq {
                    return true;
                }
                let at = arrivals.get(&(m, text.clone())).copied().unwrap_or(now);
                note.reached_ms = note.reached_ms.max(at);
                false
            });
            if note.missing.is_empty() {
                staleness.push(note.reached_ms - note.written_ms);
                false
            } else {
                true
            }
        });
        if (t + config.step_ms) % 1000 == 0 {
            let s = cluster.stats;
            series.seconds.push(Second {
                messages: s.messages - last_second.messages,
                bytes: s.bytes - last_second.bytes,
                waiting: waiting.len(),
            });
            last_second = s;
        }
        if !writing && waiting.is_empty() && converged(&cluster, &circles, &plans) {
            report.converged = true;
            report.convergence_ms = t - config.write_ms;
            break;
        }
        t += config.step_ms;
    }
    report.notes_written = notes.len();
    report.notes_everywhere = staleness.len();
    report.staleness_ms = Spread::of(&staleness);
    let s = cluster.stats;
    let written = notes.len().max(1) as u64;
    report.messages_per_note = (s.messages - before.messages) / written;
    report.bytes_per_note = (s.bytes - before.bytes) / written;
    report.messages = s.messages;
    report.bytes = s.bytes;
    report.connections_broken = world.broken + s.lost;
    report.introductions = s.introductions;
    report.by_kind = cluster
        .kinds
        .iter()
        .map(|(k, (m, b))| (k.to_string(), [*m, *b]))
        .collect();
    series.relay_bytes = (0..config.relays)
        .map(|k| cluster.relay_totals(k).bytes)
        .collect();
    report.relay_bytes_max = series.relay_bytes.iter().copied().max().unwrap_or(0);
    report.relay_bytes_total = series.relay_bytes.iter().sum();
    report.relay_envelopes_total = (0..config.relays)
        .map(|k| cluster.relay_totals(k).envelopes)
        .sum();
    let mut stores: Vec<u64> = cluster
        .members
        .iter()
        .map(|m| m.store.bytes() as u64)
        .collect();
    stores.sort_unstable();
    report.node_store_bytes_p50 = stores.get(stores.len() / 2).copied().unwrap_or(0);
    report.node_store_bytes_max = stores.last().copied().unwrap_or(0);
    let member_of: BTreeSet<(usize, CircleId)> = plans
        .iter()
        .zip(&circles)
        .flat_map(|(p, id)| p.members.iter().map(move |m| (*m, *id)))
        .collect();
    report.non_member_data_bytes = cluster
        .data_to
        .iter()
        .filter(|(key, _)| !member_of.contains(key))
        .map(|(_, bytes)| *bytes)
        .sum();
    report.trace = cluster.trace();
    series.staleness_ms = staleness;
    (report, series)
}

/// Draws each circle's members and the relays it names.
fn plan(config: &Config, n: usize, rng: &mut ChaCha8Rng) -> Vec<Plan> {
    let territories = config.territories();
    let nodes_of: Vec<Vec<usize>> = (0..territories)
        .map(|t| (0..n).filter(|i| config.territory_of(*i) == t).collect())
        .collect();
    (0..config.circles)
        .map(|c| {
            let t = c % territories;
            let pool = &nodes_of[t];
            let (lo, hi) = config.members;
            let size = rng
                .random_range(lo.max(1)..=hi.max(lo).max(1))
                .min(pool.len());
            let mut members: Vec<usize> = Vec::with_capacity(size + 1);
            // The creator first: circles spread over the territory's nodes.
            members.push(pool[(c / territories) % pool.len()]);
            while members.len() < size {
                let m = pool[rng.random_range(0..pool.len())];
                if !members.contains(&m) {
                    members.push(m);
                }
            }
            let mut named = BTreeSet::from([t]);
            if territories > 1 && rng.random_bool(config.outsiders.clamp(0.0, 1.0)) {
                let other = (t + 1) % territories;
                let m = nodes_of[other][rng.random_range(0..nodes_of[other].len())];
                members.push(m);
                named.insert(other);
            }
            Plan {
                members,
                territories: named,
            }
        })
        .collect()
}

/// Who is online and what is cut off.
#[derive(Debug)]
struct World {
    online: Vec<bool>,
    uptime: Vec<f64>,
    /// Pairs of nodes sharing a circle (linked directly on a LAN).
    pairs: BTreeSet<(usize, usize)>,
    /// The circles of each node.
    circles_of: Vec<Vec<usize>>,
    broken: u64,
}

impl World {
    fn new(config: &Config, n: usize, plans: &[Plan], rng: &mut ChaCha8Rng) -> World {
        let (lo, hi) = config.uptime;
        let uptime = (0..n)
            .map(|_| {
                if hi > lo {
                    rng.random_range(lo..hi)
                } else {
                    lo
                }
            })
            .collect();
        let mut pairs = BTreeSet::new();
        let mut circles_of = vec![Vec::new(); n];
        for (c, p) in plans.iter().enumerate() {
            for (k, a) in p.members.iter().enumerate() {
                circles_of[*a].push(c);
                for b in &p.members[k + 1..] {
                    pairs.insert((*a.min(b), *a.max(b)));
                }
            }
        }
        World {
            online: vec![true; n],
            uptime,
            pairs,
            circles_of,
            broken: 0,
        }
    }

    /// Nodes go offline and come back: a node online a share `u` of the time stays online
    /// `u` of a cycle on average, and offline the rest. After the writes, all are online.
    fn churn(&mut self, config: &Config, writing: bool, rng: &mut ChaCha8Rng) {
        for (up, u) in self.online.iter_mut().zip(&self.uptime) {
            if !writing {
                *up = true;
                continue;
            }
            let mean_ms = if *up {
                *u * config.cycle_ms as f64
            } else {
                (1.0 - *u) * config.cycle_ms as f64
            };
            if mean_ms <= 0.0 {
                *up = !*up;
                continue;
            }
            let p = (config.step_ms as f64 / mean_ms).clamp(0.0, 1.0);
            if *u < 1.0 && rng.random_bool(p) {
                *up = !*up;
            }
        }
    }

    /// Whether node end `a` can reach end `b` at `t` (milliseconds into the writes;
    /// `i64::MIN` outside them).
    fn reachable(&self, config: &Config, a: usize, b: usize, t: i64) -> bool {
        let n = self.online.len();
        let up = |x: usize| x >= n || self.online[x];
        if !up(a) || !up(b) {
            return false;
        }
        config.outages.iter().all(|o| match *o {
            Outage::Relay {
                relay,
                from_ms,
                to_ms,
            } => !((from_ms..to_ms).contains(&t) && (a == n + relay || b == n + relay)),
            Outage::Territory {
                territory,
                from_ms,
                to_ms,
            } => {
                let inside = |x: usize| x < n && config.territory_of(x) == territory;
                !((from_ms..to_ms).contains(&t) && inside(a) != inside(b))
            }
        })
    }

    /// Connections come back between ends that can reach each other: each node to the
    /// relays it dials, and on a LAN to every node it shares a circle with.
    fn links(&mut self, cluster: &mut Cluster, config: &Config, t: i64) {
        let n = self.online.len();
        for i in 0..n {
            for r in cluster.wanted_relays(i) {
                if self.reachable(config, i, r, t) {
                    cluster.connect(i, r);
                }
            }
        }
        if config.relays == 0 {
            for &(a, b) in &self.pairs {
                if self.reachable(config, a, b, t) {
                    cluster.connect(a, b);
                }
            }
        }
    }

    /// Connections that can no longer be are cut.
    fn cut(&mut self, cluster: &mut Cluster, config: &Config, t: i64) {
        for (a, b) in cluster.links() {
            if cluster.connected(a, b) && !self.reachable(config, a, b, t) {
                cluster.disconnect(a, b);
                self.broken += 1;
            }
        }
    }
}

/// Each circle's first member creates it, adds the others by their cards and names its
/// territories' relays.
fn set_up(cluster: &mut Cluster, config: &Config, plans: &[Plan]) -> Option<Vec<CircleId>> {
    const WITHIN_MS: i64 = 60_000;
    // Every creator makes its circles at once (a node takes its requests in order), then
    // adds their members and names their relays.
    let mut creates = Vec::with_capacity(plans.len());
    for (c, p) in plans.iter().enumerate() {
        let create = CircleCreate::for_patient(format!("Patient {c}"));
        creates.push((p.members[0], cluster.submit(p.members[0], create.into())));
    }
    let made = answers::<CircleCreate>(cluster, &creates, WITHIN_MS)?;
    let ids: Vec<String> = made
        .into_iter()
        .map(|list| list.circles.first().map(|c| c.id.clone()))
        .collect::<Option<_>>()?;
    let mut adds = Vec::new();
    let mut sets = Vec::new();
    for (p, id) in plans.iter().zip(&ids) {
        let creator = p.members[0];
        for &m in &p.members[1..] {
            let add = MemberAdd {
                circle: id.clone(),
                card: cluster.members[m].core.me().public().card(&[]).encode(),
                role: Role::Professional,
            };
            adds.push((creator, cluster.submit(creator, add.into())));
        }
        if config.relays > 0 {
            let relays = p
                .territories
                .iter()
                .map(|t| cluster.relays[*t].address.clone())
                .collect();
            let set = RelaysSet {
                circle: id.clone(),
                relays,
            };
            sets.push((creator, cluster.submit(creator, set.into())));
        }
    }
    answers::<MemberAdd>(cluster, &adds, WITHIN_MS)?;
    answers::<RelaysSet>(cluster, &sets, WITHIN_MS)?;
    ids.iter().map(|id| id.parse().ok()).collect()
}

/// Runs the cluster until every request `asked` (node, request) was answered, at most
/// `within_ms` of virtual time; the answers in order, if every one succeeded.
fn answers<O: Operation>(
    cluster: &mut Cluster,
    asked: &[(usize, RequestId)],
    within_ms: i64,
) -> Option<Vec<O::Answer>> {
    let deadline = cluster.elapsed_ms() + within_ms;
    let mut answers = Vec::with_capacity(asked.len());
    for &(i, id) in asked {
        loop {
            match cluster.answer::<O>(i, id) {
                Some(answer) => {
                    answers.push(answer.ok()?);
                    break;
                }
                None if cluster.elapsed_ms() < deadline => cluster.run_for(10),
                None => return None,
            }
        }
    }
    Some(answers)
}

/// A note by a member in one of its circles.
fn write(
    cluster: &mut Cluster,
    world: &World,
    plans: &[Plan],
    circles: &[CircleId],
    rng: &mut ChaCha8Rng,
) -> Option<Note> {
    // Online or not: a professional writes at the patient's home, and the note leaves
    // when the node next reaches anyone.
    let n = world.online.len();
    let writers: Vec<usize> = (0..n)
        .filter(|i| !world.circles_of[*i].is_empty())
        .collect();
    if writers.is_empty() {
        return None;
    }
    let w = writers[rng.random_range(0..writers.len())];
    let mine = &world.circles_of[w];
    let c = mine[rng.random_range(0..mine.len())];
    let id = circles[c];
    let writer = cluster.members[w].device;
    let before = seq_of(cluster, w, &id, &writer);
    let add = NoteAdd {
        circle: id.to_string(),
        texts: vec![format!(
            "Passage à {} : pansement refait, plaie propre.",
            cluster.elapsed_ms() / 1000
        )],
        kind: EntryKind::Care,
        at: None,
        vitals: None,
        to: None,
    };
    cluster.request(w, add.into());
    let seq = seq_of(cluster, w, &id, &writer);
    if seq <= before {
        return None;
    }
    Some(Note {
        circle: c,
        writer,
        seq,
        written_ms: cluster.elapsed_ms(),
        reached_ms: cluster.elapsed_ms(),
        missing: plans[c]
            .members
            .iter()
            .copied()
            .filter(|m| *m != w)
            .collect(),
    })
}

fn seq_of(cluster: &Cluster, node: usize, circle: &CircleId, device: &DeviceId) -> u64 {
    cluster.members[node]
        .core
        .circles()
        .vector(circle, DocKind::LiaisonNotebook)
        .get(device)
        .copied()
        .unwrap_or(0)
}

/// Whether every circle's members hold the same documents.
fn converged(cluster: &Cluster, circles: &[CircleId], plans: &[Plan]) -> bool {
    circles.iter().zip(plans).all(|(id, p)| {
        let digests: BTreeSet<[u8; 32]> = p
            .members
            .iter()
            .map(|m| cluster.members[*m].core.circles().digest(id))
            .collect();
        digests.len() == 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(config: Config) -> Config {
        config.at_most(24, 30, 3, 30_000)
    }

    #[test]
    fn a_small_region_converges_every_note_reaches_every_member_and_strangers_get_nothing() {
        let mut config = small(Config::region());
        config.notes_per_s = 2.0;
        let (report, series) = run(&config, 7, 2);
        assert!(report.converged, "{report:?}");
        assert!(report.notes_written > 20, "{report:?}");
        assert_eq!(report.notes_everywhere, report.notes_written, "{report:?}");
        assert_eq!(series.staleness_ms.len(), report.notes_written);
        assert_eq!(report.non_member_data_bytes, 0);
        assert!(
            report.relay_bytes_total > 0,
            "the relays held nothing: {report:?}"
        );
        assert!(report.introductions > 0, "{report:?}");
        assert_eq!(
            run(&config, 7, 1).0,
            report,
            "one seed, one report, any threads"
        );
    }

    #[test]
    fn a_health_centre_on_its_lan_converges_without_relays() {
        let mut config = small(Config::msp_lan());
        config.notes_per_s = 1.0;
        let (report, _) = run(&config, 3, 2);
        assert!(report.converged, "{report:?}");
        assert_eq!(report.relay_bytes_total, 0);
        assert_eq!(report.notes_everywhere, report.notes_written, "{report:?}");
    }

    #[test]
    fn percentiles_take_the_value_at_or_above_the_rank() {
        let s = Spread::of(&[5, 1, 4, 2, 3]);
        assert_eq!((s.p50, s.p90, s.p99, s.max), (3, 5, 5, 5));
        assert_eq!(Spread::of(&[]), Spread::default());
    }
}
