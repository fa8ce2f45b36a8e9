//! A deterministic cluster of whole nodes: [`NodeCore`]s, each over a [`MemoryStore`],
//! joined by a simulated wire in virtual time. The same code the daemon runs (requests,
//! writes made durable, the sync protocol, invites, membership and keys), with the shell's
//! I/O replaced by events on one queue ordered by virtual time: a message arrives after a
//! link's latency (in order on each link), a write is durable after the disk's delay, every
//! node ticks each second. Everything random (identities, keys, latencies, losses) comes
//! from one seed, so two runs with the same seed give the same [`Cluster::trace`].
//!
//! The unit tests wire three cores through it; `cercle-simulations` runs hundreds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::{Rng as _, SeedableRng};

use super::{Effect, Input, NodeCore, Now, RequestId, WriteId};
use crate::crypto::SecureRng;
use crate::identity::{DeviceId, LocalIdentity, Profile};
use crate::ops::{Answer, NodeError, Operation};
use crate::store::{MemoryStore, Store};
use crate::sync::Message;

/// How the simulated network and disks behave.
#[derive(Debug, Clone, Copy)]
pub struct WireConfig {
    /// A message takes from `latency_us.0` to `latency_us.1` microseconds.
    pub latency_us: (i64, i64),
    /// A write is durable this many microseconds after it was asked for.
    pub durable_us: i64,
    /// The probability that a message is lost; a lost message breaks its connection (as a
    /// dead TCP connection would), and both ends see the peer leave.
    pub loss: f64,
}

impl Default for WireConfig {
    fn default() -> WireConfig {
        WireConfig {
            latency_us: (500, 5_000),
            durable_us: 1_000,
            loss: 0.0,
        }
    }
}

/// One node of the cluster.
#[derive(Debug)]
pub struct Member {
    pub core: NodeCore,
    pub store: Arc<MemoryStore>,
    pub device: DeviceId,
    answers: BTreeMap<RequestId, Result<Answer, NodeError>>,
    next_request: u64,
}

/// Something due at a virtual time.
#[derive(Debug)]
enum Due {
    Deliver {
        from: usize,
        to: usize,
        /// The connection it was sent on: a message of a connection that broke is lost
        /// with it, even if the two nodes connected again since.
        connection: u64,
        message: Message,
    },
    Durable {
        node: usize,
        write: WriteId,
    },
    Tick,
}

/// Statistics of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireStats {
    pub messages: u64,
    pub bytes: u64,
    pub lost: u64,
}

/// Nodes, links and the queue of what is due.
#[derive(Debug)]
pub struct Cluster {
    pub members: Vec<Member>,
    config: WireConfig,
    now: i64,
    seq: u64,
    queue: BTreeMap<(i64, u64), Due>,
    /// Connected pairs (smaller index first) and the number of their connection, and the
    /// last delivery time on each link and direction, so each link delivers in order.
    links: BTreeMap<(usize, usize), u64>,
    connections: u64,
    last_on_link: BTreeMap<(usize, usize), i64>,
    rng: SecureRng,
    trace: blake3::Hasher,
    lines: u64,
    pub stats: WireStats,
    /// Data bytes delivered per (receiving node, circle), for checks of who got what.
    pub data_to: BTreeMap<(usize, crate::circle::membership::CircleId), u64>,
}

/// Where the cluster's virtual clock starts (2026-01-01, in microseconds).
const EPOCH_US: i64 = 1_767_225_600_000_000;
/// Ticks every virtual second.
const TICK_US: i64 = 1_000_000;

impl Cluster {
    /// A cluster of nodes named `names`, none connected, everything drawn from `seed`.
    pub fn new(seed: u64, names: &[&str], config: WireConfig) -> Result<Cluster, NodeError> {
        let mut rng = SecureRng::seed_from_u64(seed);
        let mut members = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let profile = Profile::new(name, "infirmier", None, None)
                .map_err(|e| NodeError::bad_input(e.to_string()))?;
            let me = LocalIdentity::generate_with(
                profile,
                cercle_crdt::Timestamp(EPOCH_US / 1000),
                &mut rng,
            );
            let device = me.device();
            let store = Arc::new(MemoryStore::new(&format!("node{i}")));
            let peer = crate::net::peer_of(&device)
                .map(|p| p.to_string())
                .unwrap_or_default();
            let core_rng = SecureRng::seed_from_u64(rng.next_u64());
            let core = NodeCore::open(store.clone(), me, peer, core_rng)?;
            members.push(Member {
                core,
                store,
                device,
                answers: BTreeMap::new(),
                next_request: 0,
            });
        }
        let mut cluster = Cluster {
            members,
            config,
            now: EPOCH_US,
            seq: 0,
            queue: BTreeMap::new(),
            links: BTreeMap::new(),
            connections: 0,
            last_on_link: BTreeMap::new(),
            rng,
            trace: blake3::Hasher::new(),
            lines: 0,
            stats: WireStats::default(),
            data_to: BTreeMap::new(),
        };
        for i in 0..cluster.members.len() {
            let started = cluster.members[i]
                .core
                .start(true, BTreeSet::new(), Now(EPOCH_US));
            for effect in started {
                cluster.effect(i, effect);
            }
            // Where invite codes say the node is (never dialed: links are the scenario's).
            let address = format!("/ip4/127.0.0.1/tcp/{}", 20_000 + i);
            cluster.input(i, Input::Addresses(vec![address]));
        }
        cluster.schedule(TICK_US, Due::Tick);
        Ok(cluster)
    }

    /// The virtual time, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.now / 1000
    }

    /// Milliseconds of virtual time since the cluster started.
    pub fn elapsed_ms(&self) -> i64 {
        (self.now - EPOCH_US) / 1000
    }

    /// A fingerprint of everything that happened: each message delivered (time, ends, kind,
    /// size), each write made durable and each answer.
    pub fn trace(&self) -> String {
        format!("{} lines, {}", self.lines, self.trace.finalize().to_hex())
    }

    fn note(&mut self, line: &str) {
        self.lines += 1;
        self.trace.update(line.as_bytes());
        self.trace.update(b"\n");
    }

    fn schedule(&mut self, after_us: i64, due: Due) {
        self.seq += 1;
        self.queue.insert((self.now + after_us, self.seq), due);
    }

    fn index_of(&self, device: &DeviceId) -> Option<usize> {
        self.members.iter().position(|m| m.device == *device)
    }

    /// Whether `a` and `b` are connected.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.links.contains_key(&(a.min(b), a.max(b)))
    }

    /// Restarts node `i` as `me` on the same store (a paired device's first start with
    /// its certificate: the same device keys, another identity). Its links are cut.
    pub fn restart_as(&mut self, i: usize, me: LocalIdentity) -> Result<(), NodeError> {
        for j in 0..self.members.len() {
            self.disconnect(i, j);
        }
        let store = self.members[i].store.clone();
        let device = me.device();
        let peer = crate::net::peer_of(&device)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let rng = SecureRng::seed_from_u64(self.rng.next_u64());
        self.members[i].core = NodeCore::open(store, me, peer, rng)?;
        self.members[i].device = device;
        let started = self.members[i]
            .core
            .start(true, BTreeSet::new(), Now(self.now));
        for effect in started {
            self.effect(i, effect);
        }
        let address = format!("/ip4/127.0.0.1/tcp/{}", 20_000 + i);
        self.input(i, Input::Addresses(vec![address]));
        Ok(())
    }

    /// Connects `a` and `b`: each side's core learns of the other.
    pub fn connect(&mut self, a: usize, b: usize) {
        if a == b || self.connected(a, b) || a >= self.members.len() || b >= self.members.len() {
            return;
        }
        self.connections += 1;
        self.links.insert((a.min(b), a.max(b)), self.connections);
        self.note(&format!("{} connect {a} {b}", self.now));
        for (x, y) in [(a, b), (b, a)] {
            let device = self.members[y].device;
            let peer_id = crate::net::peer_of(&device)
                .map(|p| p.to_string())
                .unwrap_or_default();
            self.input(
                x,
                Input::Connected {
                    device,
                    peer_id,
                    relayed: false,
                },
            );
        }
    }

    /// Cuts the link between `a` and `b`; messages on the way are lost.
    pub fn disconnect(&mut self, a: usize, b: usize) {
        if self.links.remove(&(a.min(b), a.max(b))).is_none() {
            return;
        }
        self.note(&format!("{} disconnect {a} {b}", self.now));
        for (x, y) in [(a, b), (b, a)] {
            let device = self.members[y].device;
            self.input(x, Input::Disconnected { device });
        }
    }

    /// Asks node `i` something and runs the cluster until it answers (at most
    /// `within_ms` of virtual time).
    pub fn ask<O: Operation>(
        &mut self,
        i: usize,
        op: O,
        within_ms: i64,
    ) -> Result<O::Answer, NodeError> {
        let id = self.request(i, op.into());
        let deadline = self.now + within_ms * 1000;
        while self.now <= deadline {
            if let Some(a) = self.members[i].answers.remove(&id) {
                return crate::ops::typed::<O>(a);
            }
            if !self.step() {
                break;
            }
        }
        match self.members[i].answers.remove(&id) {
            Some(a) => crate::ops::typed::<O>(a),
            None => Err(NodeError::unavailable("the node did not answer in time")),
        }
    }

    /// Has node `i` accept every invitation waiting, as its user would; returns how many
    /// it accepted.
    pub fn accept_invitations(&mut self, i: usize, within_ms: i64) -> usize {
        use crate::ops::circles::{CircleAccept, CircleList};
        let waiting: Vec<String> = match self.ask(i, CircleList {}, within_ms) {
            Ok(list) => list.invitations.into_iter().map(|v| v.circle).collect(),
            Err(_) => return 0,
        };
        waiting
            .into_iter()
            .filter(|circle| {
                let accept = CircleAccept {
                    circle: circle.clone(),
                };
                self.ask(i, accept, within_ms).is_ok()
            })
            .count()
    }

    /// Pairs node `new` as another device of node `first`'s member, as `cercle device
    /// pair` and `cercle init --pair` do (the two connected for it, then apart again), and
    /// restarts it as that device; its device key.
    pub fn pair(&mut self, first: usize, new: usize) -> Result<DeviceId, NodeError> {
        use crate::ops::devices::{DevicePair, PairStatus, PairWith};
        let code = self.ask(first, DevicePair {}, 10_000)?.code;
        self.ask(new, PairWith { code }, 10_000)?;
        self.connect(first, new);
        self.run_for(5_000);
        let paired = self.ask(new, PairStatus {}, 10_000)?;
        self.disconnect(first, new);
        let Some(identity) = paired.identity else {
            return Err(NodeError::unavailable(format!(
                "the pairing did not complete: {}",
                paired.state
            )));
        };
        let me = self.members[new].core.me();
        let keys = LocalIdentity::from_secrets(&me.secrets(), me.public())
            .map_err(|e| NodeError::internal(e.to_string()))?;
        let second = keys
            .paired(identity)
            .map_err(|e| NodeError::internal(e.to_string()))?;
        let device = second.device();
        self.restart_as(new, second)?;
        Ok(device)
    }

    /// Hands node `i` a request without waiting for its answer.
    pub fn request(&mut self, i: usize, request: crate::ops::Request) -> RequestId {
        let m = &mut self.members[i];
        let id = RequestId(m.next_request);
        m.next_request += 1;
        self.input(i, Input::Request(id, request));
        id
    }

    /// Runs until `ms` more milliseconds of virtual time have passed.
    pub fn run_for(&mut self, ms: i64) {
        let until = self.now + ms * 1000;
        while self
            .queue
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= until)
        {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Carries out the next thing due; `false` if nothing is.
    pub fn step(&mut self) -> bool {
        let Some(((at, _), due)) = self.queue.pop_first() else {
            return false;
        };
        self.now = self.now.max(at);
        match due {
            Due::Tick => {
                for i in 0..self.members.len() {
                    self.input(i, Input::Tick);
                }
                self.schedule(TICK_US, Due::Tick);
            }
            Due::Durable { node, write } => {
                self.note(&format!("{} durable {node} {}", self.now, write.0));
                self.input(node, Input::Durable(write));
            }
            Due::Deliver {
                from,
                to,
                connection,
                message,
            } => {
                if self.links.get(&(from.min(to), from.max(to))) != Some(&connection) {
                    return true;
                }
                let kind = message_kind(&message);
                let size = crate::sync::wire::encode(&message).len();
                self.note(&format!("{} deliver {from} {to} {kind} {size}", self.now));
                if let Message::Data { circle, .. } = &message {
                    *self.data_to.entry((to, *circle)).or_default() += size as u64;
                }
                let device = self.members[from].device;
                self.input(to, Input::Message { device, message });
            }
        }
        true
    }

    /// Gives node `i` an input and carries out its effects.
    fn input(&mut self, i: usize, input: Input) {
        let effects = self.members[i].core.handle(input, Now(self.now));
        for effect in effects {
            self.effect(i, effect);
        }
    }

    fn effect(&mut self, i: usize, effect: Effect) {
        match effect {
            Effect::Write(id, batch) => {
                // Applied now; reported durable after the disk's delay, in order.
                let _ = self.members[i].store.submit(batch).wait();
                let delay = self.config.durable_us;
                self.schedule(delay, Due::Durable { node: i, write: id });
            }
            Effect::Send(device, message) => {
                let Some(to) = self.index_of(&device) else {
                    return;
                };
                let Some(connection) = self.links.get(&(i.min(to), i.max(to))).copied() else {
                    return;
                };
                self.stats.messages += 1;
                self.stats.bytes += crate::sync::wire::encode(&message).len() as u64;
                if self.config.loss > 0.0
                    && rand::RngExt::random_bool(&mut self.rng, self.config.loss)
                {
                    self.stats.lost += 1;
                    self.disconnect(i, to);
                    return;
                }
                let (lo, hi) = self.config.latency_us;
                let latency = if hi > lo {
                    rand::RngExt::random_range(&mut self.rng, lo..=hi)
                } else {
                    lo
                };
                // Each link delivers in order: never before the last message on it.
                let last = self.last_on_link.get(&(i, to)).copied().unwrap_or(0);
                let at = (self.now + latency).max(last);
                self.last_on_link.insert((i, to), at);
                self.seq += 1;
                let due = Due::Deliver {
                    from: i,
                    to,
                    connection,
                    message,
                };
                self.queue.insert((at, self.seq), due);
            }
            Effect::Answer(id, answer) => {
                let ok = if answer.is_ok() { "ok" } else { "refused" };
                self.note(&format!("{} answer {i} {} {ok}", self.now, id.0));
                self.members[i].answers.insert(id, *answer);
            }
            // Links are the scenario's to make; events and introductions have no reader.
            Effect::Event(_)
            | Effect::Dial(_)
            | Effect::Meet { .. }
            | Effect::Relays(_)
            | Effect::SetAside(_) => {}
        }
    }
}

fn message_kind(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "hello",
        Message::Summary { .. } => "summary",
        Message::Changed { .. } => "changed",
        Message::Have { .. } => "have",
        Message::Data { .. } => "data",
        Message::Ack { .. } => "ack",
        Message::Join { .. } => "join",
        Message::JoinAnswer { .. } => "join_answer",
        Message::BlobWant { .. } => "blob_want",
        Message::BlobPart { .. } => "blob_part",
        Message::Met { .. } => "met",
        Message::InviteOpen { .. } => "invite_open",
        Message::InviteSeek { .. } => "invite_seek",
        Message::InviteAt { .. } => "invite_at",
        Message::Pair { .. } => "pair",
        Message::PairAnswer { .. } => "pair_answer",
    }
}

#[cfg(test)]
mod tests;
