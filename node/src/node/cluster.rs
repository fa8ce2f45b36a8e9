//! A deterministic cluster of whole nodes: [`NodeCore`]s, each over a [`MemoryStore`],
//! joined by a simulated wire in virtual time. The same code the daemon runs (requests,
//! writes made durable, the sync protocol, invites, membership and keys), with the shell's
//! I/O replaced by events on one queue ordered by virtual time: a message arrives after a
//! link's latency (in order on each link), a write is durable after the disk's delay, every
//! node ticks each second. Everything random (identities, keys, latencies, losses) comes
//! from one seed, so two runs with the same seed give the same [`Cluster::trace`].
//!
//! Relays ([`Cluster::add_relay`]) run the relay's [`Exchange`] over a real mailbox in a
//! temporary database. A node dials the relays its circles name when the scenario says it
//! is online ([`Cluster::wanted_relays`]); when a relay introduces two members, their
//! nodes meet through its circuit, which breaks when either leaves the relay.
//!
//! [`Cluster::run_in_windows`] runs it a window of virtual time at a time, each window's
//! nodes side by side on several threads, with an outcome that depends on the seed alone
//! (`windows`).
//!
//! The unit tests wire three cores through it; `cercle-simulations` runs hundreds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::{Rng as _, SeedableRng};

use super::{Effect, Input, NodeCore, Now, RequestId, WriteId};
use crate::crypto::SecureRng;
use crate::identity::{DeviceId, LocalIdentity, Profile};
use crate::mailbox::exchange::{Exchange, Step};
use crate::mailbox::{Mailbox, MailboxLimits, Totals};
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
    /// Invitations the node announced ([`crate::api::NodeEvent::Invited`]) since its
    /// user last looked.
    invited: usize,
    /// Alerts the node told its user of ([`crate::api::NodeEvent::Alert`]).
    pub alerts: usize,
}

/// A relay of the cluster: the relay's exchange over its mailbox.
#[derive(Debug)]
pub struct Relay {
    exchange: Exchange,
    pub device: DeviceId,
    /// Its address, as a circle names it (`cercle circle relays`).
    pub address: String,
}

/// Something due at a virtual time.
#[derive(Debug)]
enum Due {
    Deliver(Delivery),
    Durable {
        node: usize,
        write: WriteId,
    },
    /// A request its user made ([`Cluster::submit`]).
    Request {
        node: usize,
        id: RequestId,
        request: Box<crate::ops::Request>,
    },
    Tick,
}

/// A message on its way along a link.
#[derive(Debug)]
struct Delivery {
    from: usize,
    to: usize,
    /// The connection it was sent on: a message of a connection that broke is lost with
    /// it, even if the two nodes connected again since.
    connection: u64,
    /// Its encoded size.
    size: usize,
    message: Message,
}

/// Statistics of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireStats {
    pub messages: u64,
    pub bytes: u64,
    pub lost: u64,
    /// [`Message::Met`] introductions the relays sent.
    pub introductions: u64,
}

/// Nodes, links and the queue of what is due.
#[derive(Debug)]
pub struct Cluster {
    pub members: Vec<Member>,
    /// The relays; relay `k` is end `members.len() + k` of links and messages.
    pub relays: Vec<Relay>,
    /// The relays each node's circles name, and those it was started with (ends).
    wanted: Vec<BTreeSet<usize>>,
    home: Vec<BTreeSet<usize>>,
    /// Links through a relay's circuit, by that relay's end.
    circuits: BTreeMap<usize, BTreeSet<(usize, usize)>>,
    /// Each device's end.
    ends: BTreeMap<DeviceId, usize>,
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
    /// When set, each time a node applied a peer's envelopes: (node, circle, virtual
    /// milliseconds since the start), taken with [`Cluster::take_applied`].
    pub record_applied: bool,
    applied: Vec<(usize, String, i64)>,
    /// Messages and bytes sent, by kind of message.
    pub kinds: BTreeMap<&'static str, (u64, u64)>,
    /// Data bytes delivered per (receiving node, circle), for checks of who got what.
    pub data_to: BTreeMap<(usize, crate::circle::membership::CircleId), u64>,
    /// Nodes whose messages wait (as behind a busy core), with what waits for each.
    held: BTreeMap<usize, Vec<(DeviceId, Message)>>,
    /// Whether [`Cluster::run_for`] runs in windows, and the threads that share out each
    /// window's ends ([`Cluster::run_in_windows`]).
    windows: bool,
    pool: Option<rayon::ThreadPool>,
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
                invited: 0,
                alerts: 0,
            });
        }
        let ends = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.device, i))
            .collect();
        let mut cluster = Cluster {
            ends,
            wanted: vec![BTreeSet::new(); members.len()],
            home: vec![BTreeSet::new(); members.len()],
            members,
            relays: Vec::new(),
            circuits: BTreeMap::new(),
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
            kinds: BTreeMap::new(),
            record_applied: false,
            applied: Vec::new(),
            data_to: BTreeMap::new(),
            held: BTreeMap::new(),
            windows: false,
            pool: None,
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
        self.schedule_at(self.now + after_us, due);
    }

    fn schedule_at(&mut self, at: i64, due: Due) {
        self.seq += 1;
        self.queue.insert((at, self.seq), due);
    }

    fn index_of(&self, device: &DeviceId) -> Option<usize> {
        self.ends.get(device).copied()
    }

    /// The device at end `i` (a node, or a relay after the nodes).
    fn device_at(&self, i: usize) -> DeviceId {
        match self.relay_of(i) {
            Some(r) => self.relays[r].device,
            None => self.members[i].device,
        }
    }

    /// Which relay end `i` is, if it is one.
    fn relay_of(&self, i: usize) -> Option<usize> {
        i.checked_sub(self.members.len())
            .filter(|r| *r < self.relays.len())
    }

    /// Adds a relay (an open mailbox in a temporary database); its end for
    /// [`Cluster::connect`].
    pub fn add_relay(&mut self) -> Result<usize, NodeError> {
        let profile = Profile::new("Relais", "relais", None, None)
            .map_err(|e| NodeError::bad_input(e.to_string()))?;
        let keys = LocalIdentity::generate_with(
            profile,
            cercle_crdt::Timestamp(self.now / 1000),
            &mut self.rng,
        );
        let device = keys.device();
        let peer = crate::net::peer_of(&device)
            .ok_or_else(|| NodeError::internal("a relay key without a peer id"))?;
        let end = self.members.len() + self.relays.len();
        let mailbox = Mailbox::temporary(MailboxLimits::default())
            .map_err(|e| NodeError::internal(e.to_string()))?;
        self.ends.insert(device, end);
        self.relays.push(Relay {
            exchange: Exchange::new(mailbox).signing_with(keys.device_signing_key()),
            device,
            address: format!("/ip4/10.0.{}.{}/tcp/4001/p2p/{peer}", end / 256, end % 256),
        });
        Ok(end)
    }

    /// What relay `k`'s mailbox holds.
    pub fn relay_totals(&self, k: usize) -> Totals {
        self.relays[k].exchange.mailbox().totals()
    }

    /// The relays (their ends) node `i`'s shell dials: those it was started with and
    /// those its circles name.
    pub fn wanted_relays(&self, i: usize) -> BTreeSet<usize> {
        self.home[i].union(&self.wanted[i]).copied().collect()
    }

    /// Whether `a` and `b` are connected.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.links.contains_key(&(a.min(b), a.max(b)))
    }

    /// The connected pairs of ends (smaller first).
    pub fn links(&self) -> Vec<(usize, usize)> {
        self.links.keys().copied().collect()
    }

    /// Restarts node `i` as `me` on the same store (a paired device's first start with
    /// its certificate: the same device keys, another identity). Its links are cut.
    pub fn restart_as(&mut self, i: usize, me: LocalIdentity) -> Result<(), NodeError> {
        self.restart(i, me)
    }

    /// Restarts node `i` as its shell does when told to use the relays at ends `relays`
    /// (`cercle up --relay`): each keeps a mailbox of all its circles, and the node
    /// dials them ([`Cluster::wanted_relays`]). Its links are cut.
    pub fn set_home_relays(&mut self, i: usize, relays: BTreeSet<usize>) -> Result<(), NodeError> {
        let me = self.members[i].core.me();
        let same = LocalIdentity::from_secrets(&me.secrets(), me.public())
            .map_err(|e| NodeError::internal(e.to_string()))?;
        self.home[i] = relays;
        self.restart(i, same)
    }

    fn restart(&mut self, i: usize, me: LocalIdentity) -> Result<(), NodeError> {
        let linked: Vec<(usize, usize)> = self
            .links
            .keys()
            .filter(|(a, b)| *a == i || *b == i)
            .copied()
            .collect();
        for (a, b) in linked {
            self.disconnect(a, b);
        }
        let store = self.members[i].store.clone();
        let device = me.device();
        let peer = crate::net::peer_of(&device)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let rng = SecureRng::seed_from_u64(self.rng.next_u64());
        self.members[i].core = NodeCore::open(store, me, peer, rng)?;
        self.ends.remove(&self.members[i].device);
        self.ends.insert(device, i);
        self.members[i].device = device;
        let home = self.home[i]
            .iter()
            .map(|end| self.device_at(*end))
            .collect();
        let started = self.members[i].core.start(true, home, Now(self.now));
        for effect in started {
            self.effect(i, effect);
        }
        let address = format!("/ip4/127.0.0.1/tcp/{}", 20_000 + i);
        self.input(i, Input::Addresses(vec![address]));
        Ok(())
    }

    /// Connects `a` and `b` directly: each side learns of the other.
    pub fn connect(&mut self, a: usize, b: usize) {
        self.link(a, b, None);
    }

    /// Connects `a` and `b` (through relay end `via`'s circuit if given).
    fn link(&mut self, a: usize, b: usize, via: Option<usize>) {
        let ends = self.members.len() + self.relays.len();
        if a == b || self.connected(a, b) || a >= ends || b >= ends {
            return;
        }
        self.connections += 1;
        self.links.insert((a.min(b), a.max(b)), self.connections);
        if let Some(r) = via {
            self.circuits
                .entry(r)
                .or_default()
                .insert((a.min(b), a.max(b)));
        }
        self.note(&format!("{} connect {a} {b}", self.now));
        for (x, y) in [(a, b), (b, a)] {
            let device = self.device_at(y);
            match self.relay_of(x) {
                Some(r) => {
                    let step = self.relays[r].exchange.connected(device, self.now / 1000);
                    self.relay_step(x, step);
                }
                None => {
                    let peer_id = crate::net::peer_of(&device)
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    let relayed = via.is_some();
                    self.input(
                        x,
                        Input::Connected {
                            device,
                            peer_id,
                            relayed,
                        },
                    );
                }
            }
        }
    }

    /// Cuts the link between `a` and `b`; messages on the way are lost, and so are the
    /// circuits through either end if it is a relay.
    pub fn disconnect(&mut self, a: usize, b: usize) {
        let key = (a.min(b), a.max(b));
        if self.links.remove(&key).is_none() {
            return;
        }
        for through in self.circuits.values_mut() {
            through.remove(&key);
        }
        self.note(&format!("{} disconnect {a} {b}", self.now));
        for (x, y) in [(a, b), (b, a)] {
            let device = self.device_at(y);
            match self.relay_of(x) {
                Some(r) => self.relays[r].exchange.disconnected(&device),
                None => self.input(x, Input::Disconnected { device }),
            }
        }
        for (relay, end) in [(a, b), (b, a)] {
            if self.relay_of(relay).is_none() {
                continue;
            }
            let broken: Vec<(usize, usize)> = self
                .circuits
                .get(&relay)
                .into_iter()
                .flatten()
                .filter(|(p, q)| *p == end || *q == end)
                .copied()
                .collect();
            for (p, q) in broken {
                self.disconnect(p, q);
            }
        }
    }

    /// Whether relay end `r` has room for one more circuit between `ends`, within the
    /// limits the relay's libp2p behaviour sets ([`crate::relay::MAX_CIRCUITS`] in all,
    /// [`crate::relay::MAX_CIRCUITS_PER_PEER`] per peer).
    fn circuit_room(&self, r: usize, ends: &[usize]) -> bool {
        let Some(through) = self.circuits.get(&r) else {
            return true;
        };
        through.len() < crate::relay::MAX_CIRCUITS
            && ends.iter().all(|e| {
                through.iter().filter(|(p, q)| p == e || q == e).count()
                    < crate::relay::MAX_CIRCUITS_PER_PEER
            })
    }

    /// Carries out what a relay's exchange asks: its stored data made durable (one
    /// commit), then its messages sent.
    fn relay_step(&mut self, end: usize, step: Step) {
        let Some(r) = self.relay_of(end) else {
            return;
        };
        if !self.relays[r].exchange.commit() {
            return;
        }
        self.relay_committed(end, step, self.now, &[]);
    }

    /// Carries out a relay's step once its mailbox committed: the messages it sends, from
    /// virtual time `at` (their encoded `sizes`, where known), and the peer it sets aside.
    fn relay_committed(&mut self, end: usize, step: Step, at: i64, sizes: &[usize]) {
        self.stats.introductions += step.introductions as u64;
        for (k, (device, message)) in step.sends.into_iter().enumerate() {
            self.send_from(end, device, message, at, sizes.get(k).copied());
        }
        if let Some(device) = step.set_aside
            && let Some(other) = self.index_of(&device)
        {
            self.disconnect(end, other);
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

    /// Node `i` creates a circle for `patient` (as `cercle circle create`); its id.
    pub fn create_circle(
        &mut self,
        i: usize,
        patient: &str,
        within_ms: i64,
    ) -> Result<String, NodeError> {
        let create = crate::ops::circles::CircleCreate::for_patient(patient);
        let list = self.ask(i, create, within_ms)?;
        list.circles
            .first()
            .map(|c| c.id.clone())
            .ok_or_else(|| NodeError::internal("the new circle is not listed"))
    }

    /// Node `by` adds node `member`'s member to `circle` by its contact card, as `role`.
    pub fn add_member(
        &mut self,
        by: usize,
        circle: &str,
        member: usize,
        role: cercle_crdt::Role,
        within_ms: i64,
    ) -> Result<(), NodeError> {
        let card = self.members[member].core.me().public().card(&[]).encode();
        let add = crate::ops::members::MemberAdd {
            circle: circle.into(),
            card,
            role,
        };
        self.ask(by, add, within_ms).map(|_| ())
    }

    /// What nodes applied since the last call (see [`Cluster::record_applied`]).
    pub fn take_applied(&mut self) -> Vec<(usize, String, i64)> {
        std::mem::take(&mut self.applied)
    }

    /// Whether node `i` announced an invitation since its user last looked.
    pub fn invited(&self, i: usize) -> bool {
        self.members[i].invited > 0
    }

    /// Has node `i` accept every invitation waiting, as its user would; returns how many
    /// it accepted.
    pub fn accept_invitations(&mut self, i: usize, within_ms: i64) -> usize {
        use crate::ops::circles::{CircleAccept, CircleList};
        self.saw_invitations(i);
        let waiting: Vec<String> = match self.ask(i, CircleList {}, within_ms) {
            Ok(list) => list.invitations.into_iter().map(|v| v.circle).collect(),
            Err(_) => return 0,
        };
        waiting
            .into_iter()
            .filter(|circle| {
                let accept = CircleAccept {
                    circle: circle.clone(),
                    always: false,
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
        let id = self.next_request(i);
        self.input(i, Input::Request(id, request));
        id
    }

    /// The id of node `i`'s next request.
    fn next_request(&mut self, i: usize) -> RequestId {
        let m = &mut self.members[i];
        m.next_request += 1;
        RequestId(m.next_request - 1)
    }

    /// Hands node `i` a request at the current virtual time, to be taken with what else is
    /// due then (in a window of [`Cluster::run_in_windows`], beside the other nodes); its
    /// answer comes with [`Cluster::answer`].
    pub fn submit(&mut self, i: usize, request: crate::ops::Request) -> RequestId {
        let id = self.next_request(i);
        let request = Box::new(request);
        self.schedule(
            0,
            Due::Request {
                node: i,
                id,
                request,
            },
        );
        id
    }

    /// Node `i`'s answer to request `id`, once it gave it.
    pub fn answer<O: Operation>(
        &mut self,
        i: usize,
        id: RequestId,
    ) -> Option<Result<O::Answer, NodeError>> {
        let answer = self.members[i].answers.remove(&id)?;
        Some(crate::ops::typed::<O>(answer))
    }

    /// Marks node `i`'s invitations as seen by its user ([`Cluster::invited`]).
    pub fn saw_invitations(&mut self, i: usize) {
        self.members[i].invited = 0;
    }

    /// Node `i`'s messages wait from now on, as they do in a running node's queue while its
    /// core is busy, until [`Cluster::release`].
    pub fn hold(&mut self, i: usize) {
        self.held.entry(i).or_default();
    }

    /// Gives node `i` the messages that waited, each run from one peer together (as the
    /// running node's shell does), and delivers its messages again as they come.
    pub fn release(&mut self, i: usize) {
        let mut waiting = self
            .held
            .remove(&i)
            .unwrap_or_default()
            .into_iter()
            .peekable();
        while let Some((device, message)) = waiting.next() {
            let mut messages = vec![message];
            while let Some((_, m)) = waiting.next_if(|(d, _)| *d == device) {
                messages.push(m);
            }
            self.input(i, Input::Messages { device, messages });
        }
    }

    /// Runs until `ms` more milliseconds of virtual time have passed.
    pub fn run_for(&mut self, ms: i64) {
        let until = self.now + ms * 1000;
        if self.windows {
            self.run_windows(until);
        } else {
            while self
                .queue
                .first_key_value()
                .is_some_and(|((at, _), _)| *at <= until)
            {
                self.step();
            }
        }
        self.now = self.now.max(until);
    }

    /// Carries out the next thing due; `false` if nothing is. A node with background work
    /// ([`NodeCore::has_work`]) does a slice of it whenever nothing is due at the instant,
    /// as a node's thread does when its queue is empty.
    pub fn step(&mut self) -> bool {
        let now = self.now;
        if self
            .queue
            .first_key_value()
            .is_none_or(|((at, _), _)| *at > now)
            && self.idle_work()
        {
            return true;
        }
        let Some(((at, _), due)) = self.queue.pop_first() else {
            return false;
        };
        self.now = self.now.max(at);
        match due {
            Due::Tick => {
                for i in 0..self.members.len() {
                    self.input(i, Input::Tick);
                }
                for r in 0..self.relays.len() {
                    let step = self.relays[r].exchange.tick(self.now / 1000);
                    self.relay_step(self.members.len() + r, step);
                }
                self.schedule(TICK_US, Due::Tick);
            }
            Due::Durable { node, write } => {
                self.note(&format!("{} durable {node} {}", self.now, write.0));
                self.input(node, Input::Durable(write));
            }
            Due::Request { node, id, request } => self.input(node, Input::Request(id, *request)),
            Due::Deliver(delivery) => {
                let to = delivery.to;
                let Some((device, message)) = self.arriving(self.now, delivery) else {
                    return true;
                };
                match self.relay_of(to) {
                    Some(r) => {
                        let step =
                            self.relays[r]
                                .exchange
                                .message(device, message, self.now / 1000);
                        self.relay_step(to, step);
                    }
                    None => match self.held.get_mut(&to) {
                        Some(waiting) => waiting.push((device, message)),
                        None => self.input(to, Input::Message { device, message }),
                    },
                }
            }
        }
        true
    }

    /// A slice of background work for each node that has some and is not held; whether
    /// any had.
    fn idle_work(&mut self) -> bool {
        let mut worked = false;
        for i in 0..self.members.len() {
            if !self.held.contains_key(&i) && self.members[i].core.has_work() {
                self.input(i, Input::Idle);
                worked = true;
            }
        }
        worked
    }

    /// A message arriving at virtual time `at`: lost if its connection broke, else noted,
    /// counted, and given with the device that sent it.
    fn arriving(&mut self, at: i64, delivery: Delivery) -> Option<(DeviceId, Message)> {
        let Delivery {
            from,
            to,
            connection,
            size,
            message,
        } = delivery;
        if self.links.get(&(from.min(to), from.max(to))) != Some(&connection) {
            return None;
        }
        let kind = message_kind(&message);
        self.note(&format!("{at} deliver {from} {to} {kind} {size}"));
        if let Message::Data { circle, .. } = &message
            && to < self.members.len()
        {
            *self.data_to.entry((to, *circle)).or_default() += size as u64;
        }
        Some((self.device_at(from), message))
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
            Effect::Send(device, message) => self.send(i, device, message),
            Effect::Answer(id, answer) => {
                let ok = if answer.is_ok() { "ok" } else { "refused" };
                self.note(&format!("{} answer {i} {} {ok}", self.now, id.0));
                self.members[i].answers.insert(id, *answer);
            }
            Effect::Relays(addresses) => {
                let wanted = addresses
                    .iter()
                    .filter_map(|a| self.relays.iter().position(|r| r.address == *a))
                    .map(|r| self.members.len() + r)
                    .collect();
                self.wanted[i] = wanted;
            }
            // A relay introduced a member: meet it through the relay's circuit, if both
            // are still connected to it.
            Effect::Meet { device, via } => {
                if let (Some(j), Some(r)) = (self.index_of(&device), self.index_of(&via))
                    && self.relay_of(r).is_some()
                    && self.relay_of(j).is_none()
                    && self.connected(i, r)
                    && self.connected(j, r)
                    && !self.connected(i, j)
                    && self.circuit_room(r, &[i, j])
                {
                    self.link(i, j, Some(r));
                }
            }
            Effect::Event(crate::api::NodeEvent::Invited { .. }) => self.members[i].invited += 1,
            Effect::Event(crate::api::NodeEvent::Alert { .. }) => self.members[i].alerts += 1,
            Effect::Event(crate::api::NodeEvent::Applied { circle, .. }) if self.record_applied => {
                let at = self.elapsed_ms();
                self.applied.push((i, circle, at));
            }
            // Links are the scenario's to make; other events have no reader.
            Effect::Event(_) | Effect::Dial(_) | Effect::SetAside(_) | Effect::Disconnect(_) => {}
        }
    }

    /// Sends `message` from end `i` to `device` if they are connected: it arrives after
    /// the link's latency, in order, or is lost with its connection.
    fn send(&mut self, i: usize, device: DeviceId, message: Message) {
        self.send_from(i, device, message, self.now, None);
    }

    /// [`Cluster::send`] of a message end `i` sent at virtual time `at`, its encoded
    /// `size` given if known.
    fn send_from(
        &mut self,
        i: usize,
        device: DeviceId,
        message: Message,
        at: i64,
        size: Option<usize>,
    ) {
        let Some(to) = self.index_of(&device) else {
            return;
        };
        let Some(connection) = self.links.get(&(i.min(to), i.max(to))).copied() else {
            return;
        };
        let size = size.unwrap_or_else(|| crate::sync::wire::encode(&message).len());
        self.stats.messages += 1;
        self.stats.bytes += size as u64;
        let kind = self.kinds.entry(message_kind(&message)).or_default();
        kind.0 += 1;
        kind.1 += size as u64;
        if self.config.loss > 0.0 && rand::RngExt::random_bool(&mut self.rng, self.config.loss) {
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
        let at = (at + latency).max(last);
        self.last_on_link.insert((i, to), at);
        self.seq += 1;
        let due = Due::Deliver(Delivery {
            from: i,
            to,
            connection,
            size,
            message,
        });
        self.queue.insert((at, self.seq), due);
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
        Message::BreakGlass { .. } => "break_glass",
        Message::Consulted { .. } => "consulted",
        Message::BlobWant { .. } => "blob_want",
        Message::BlobPart { .. } => "blob_part",
        Message::Met { .. } => "met",
        Message::Deleted { .. } => "deleted",
        Message::InviteOpen { .. } => "invite_open",
        Message::InviteSeek { .. } => "invite_seek",
        Message::InviteAt { .. } => "invite_at",
        Message::Pair { .. } => "pair",
        Message::PairAnswer { .. } => "pair_answer",
    }
}

#[cfg(test)]
mod tests;
mod windows;
