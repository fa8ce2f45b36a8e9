//! The node as a state machine: every decision of a running node, without sockets, disk
//! writes, clock or system randomness. [`NodeCore::handle`] takes one [`Input`] (a user's
//! request, a peer's message, a connection change, the outcome of a write, a tick) with the
//! current time, and returns the [`Effect`]s for the shell to carry out: writes to make
//! durable, messages to send, answers, events, dials.
//!
//! A write leaves as `Effect::Write(id, batch)`; only when the shell reports
//! `Input::Durable(id)` are its envelopes pushed to peers and the request it belongs to
//! answered, so a peer never holds an envelope this node could lose in a crash. Randomness
//! comes from the generator the core was opened with (the daemon seeds it from the system,
//! a test or a simulation from a seed), so the same inputs give the same effects.
//!
//! The same core runs in the daemon (`node::run`), in the command without a daemon
//! (`node::offline`), in the tests and in the simulations (`node::cluster`). Each user
//! request is carried out by its own module in [`crate::ops`]; this file holds the state,
//! the dispatch and the durability bookkeeping; peers, invites and document contents have
//! their own files.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cercle_crdt::{MemberId, Timestamp, WriteError};

use crate::api::NodeEvent;
use crate::circle::membership::{CircleId, MembershipLog};
use crate::circle::{Circle, CircleDocument, SNAPSHOT_EVERY, Staged};
use crate::crypto::SecureRng;
use crate::envelope::LogId;
use crate::identity::{DeviceId, LocalIdentity};
use crate::ops::{Answer, NodeError, Request};
use crate::store::{Batch, Store, StoreError};
use crate::sync::{Local, Message, Vector};

pub(crate) mod blobs;
pub(crate) mod closing;
pub(crate) mod devices;
pub(crate) mod emergency;
pub(crate) mod invitations;
pub(crate) mod invites;
mod peers;
mod reminders;
mod settling;
pub use crate::refusals::SET_ASIDE_FOR;
mod writes;

use writes::{After, Writes};

/// Circles kept awake at most: past this, the least recently used go to rest.
pub const AWAKE_MAX: usize = 64;
/// A circle unused for this long goes to rest (milliseconds).
pub const REST_AFTER_MS: i64 = 5 * 60_000;

/// Notes of one request written as one Automerge change (one envelope).
pub const NOTES_PER_CHANGE: usize = 64;

/// The time of an input: microseconds since the Unix epoch, read by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Now(pub i64);

impl Now {
    /// At `millis` milliseconds since the Unix epoch.
    pub fn from_millis(millis: i64) -> Now {
        Now(millis.saturating_mul(1000))
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// As the documents date things.
    pub fn timestamp(self) -> Timestamp {
        Timestamp(self.millis())
    }
}

/// Names a user's request, so its answer can find its way back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Names a write the core asked for; the shell reports its outcome with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// What happens to the node.
#[derive(Debug)]
pub enum Input {
    /// A user asks something (the CLI, the web UI).
    Request(RequestId, Request),
    /// A peer device's sync stream is open (its key is proven by Noise), directly or
    /// through a relay's circuit.
    Connected {
        device: DeviceId,
        peer_id: String,
        relayed: bool,
    },
    /// A peer device's last connection closed.
    Disconnected { device: DeviceId },
    /// A message from a connected peer device.
    Message { device: DeviceId, message: Message },
    /// Messages from one peer device that waited together for the core, in order. The data
    /// of one circle held here among them is checked and applied as one batch: Automerge's
    /// cost per apply grows with the document, so a backlog taken in message by message
    /// would cost more per note the larger the document.
    Messages {
        device: DeviceId,
        messages: Vec<Message>,
    },
    /// Messages for `device` were dropped before reaching the network (its writer is gone
    /// or full): what was in flight to it will never be acknowledged.
    Undelivered { device: DeviceId },
    /// This node's listen addresses.
    Addresses(Vec<String>),
    /// A write is on disk (and every write asked for before it).
    Durable(WriteId),
    /// A write failed; the store refuses every later one until reopened.
    WriteFailed(WriteId, StoreError),
    /// Time passed: anti-entropy, retries.
    Tick,
    /// Nothing else is waiting: a slice of the background work, if
    /// [`NodeCore::has_work`] (circles settling).
    Idle,
}

/// What the shell must do, in order.
#[derive(Debug)]
pub enum Effect {
    /// Make `Batch` durable (in the order asked), then report `Durable` or `WriteFailed`.
    Write(WriteId, Batch),
    /// Send a message to a connected peer device.
    Send(DeviceId, Message),
    /// Answer a request (boxed: answers are large, sends are many).
    Answer(RequestId, Box<Result<Answer, NodeError>>),
    /// Tell live views.
    Event(NodeEvent),
    /// Dial a multiaddress.
    Dial(String),
    /// Reach `device` through the relay `via` (which introduced it as a member of a circle
    /// of ours), unless already connected or dialing.
    Meet { device: DeviceId, via: DeviceId },
    /// The relays named by the circles changed (the full list).
    Relays(Vec<String>),
    /// Set a peer device aside for what it sends: disconnect it and read none of its
    /// streams for [`SET_ASIDE_FOR`].
    SetAside(DeviceId),
    /// Disconnect a peer device whose stream to this node delivered nothing since this
    /// node's stream to it opened ([`crate::sync::HALF_OPEN_MS`]): the next connection
    /// starts afresh.
    Disconnect(DeviceId),
}

/// The circles held by this node, as the sync protocol reads them.
#[derive(Debug)]
pub struct Circles {
    pub(crate) store: Arc<dyn Store>,
    /// The circles in memory. Put in and taken out only with [`Circles::put_open`] and
    /// [`Circles::take_open`], which count the changes (the member's devices are cached
    /// against them).
    pub(crate) open: BTreeMap<CircleId, Circle>,
    /// Circles put in `open` or taken out of it so far.
    pub(crate) open_changes: u64,
    /// The circle put in `open` last, when that was the last change to it and it was new
    /// there.
    pub(crate) last_put: Option<CircleId>,
    /// Circles of the store that could not be opened, and why: shown as damaged, neither
    /// synced nor written, while every other circle works.
    pub(crate) damaged: BTreeMap<CircleId, String>,
    /// When each circle was last woken or used (milliseconds): idle ones go to rest.
    pub(crate) used: BTreeMap<CircleId, i64>,
    /// Circles this node was added to, waiting for its user's answer.
    pub(crate) invited: BTreeMap<CircleId, invitations::Invitation>,
    /// Circles its user declined: never offered again.
    pub(crate) declined: BTreeSet<CircleId>,
    /// Colleagues whose circles its user accepts always: joined without asking.
    pub(crate) trusted: BTreeSet<cercle_crdt::MemberId>,
    /// The relays this node was started with: each keeps a mailbox of every circle.
    pub(crate) relays: BTreeSet<DeviceId>,
    /// The devices of the relays the circles name (kept with [`NodeCore::relays_changed`]).
    pub(crate) named_relays: BTreeSet<DeviceId>,
    /// The envelopes made durable most recently, to push without reading them back.
    pub(crate) fresh: writes::Fresh,
    /// What is kept of the circles closed and shredded here.
    pub(crate) closed: BTreeMap<CircleId, crate::tombstone::Tombstone>,
    /// The time of the input being handled (milliseconds): an emergency access is shared
    /// with only until it expires.
    pub(crate) now: i64,
}

impl Circles {
    /// Puts `circle` in memory (in place of the one there, if any).
    pub(crate) fn put_open(&mut self, id: CircleId, circle: Circle) {
        self.open_changes += 1;
        let replaced = self.open.insert(id, circle);
        self.last_put = replaced.is_none().then_some(id);
    }

    /// Takes a circle out of memory.
    pub(crate) fn take_open(&mut self, id: &CircleId) -> Option<Circle> {
        self.open_changes += 1;
        self.last_put = None;
        self.open.remove(id)
    }

    /// What the member's devices found in the circles depend on: the circles in memory and
    /// their membership logs, which only grow while a circle is in memory.
    pub(crate) fn membership_version(&self) -> (u64, usize) {
        let ops = self.open.values().map(|c| c.membership().len()).sum();
        (self.open_changes, ops)
    }

    /// Opens every circle in the store; documents needing a new snapshot give a batch. A
    /// circle that does not open is set aside as damaged: one bad circle never stops the
    /// node.
    fn open(store: Arc<dyn Store>, me: &LocalIdentity) -> Result<(Circles, Batch), NodeError> {
        let mut open = BTreeMap::new();
        let mut damaged = BTreeMap::new();
        let mut snapshots = Batch::new();
        for (id, _) in store.circles()? {
            match Circle::open(store.as_ref(), me, &id) {
                Ok((c, batch)) => {
                    snapshots.extend(batch);
                    open.insert(id, c);
                }
                Err(e) => {
                    tracing::error!(circle = %id, error = %e, "a circle could not be opened; it is set aside as damaged");
                    damaged.insert(id, e.to_string());
                }
            }
        }
        let declined = invitations::declined(store.as_ref());
        let trusted = invitations::trusted(store.as_ref());
        let closed = closing::tombstones(store.as_ref())?;
        let circles = Circles {
            store,
            open,
            open_changes: 0,
            last_put: None,
            damaged,
            used: BTreeMap::new(),
            invited: BTreeMap::new(),
            declined,
            trusted,
            relays: BTreeSet::new(),
            named_relays: BTreeSet::new(),
            fresh: writes::Fresh::default(),
            closed,
            now: 0,
        };
        Ok((circles, snapshots))
    }

    /// The id of the circle held here whose id starts with `query`.
    pub(crate) fn find(&self, query: &str) -> Result<CircleId, NodeError> {
        // A whole id (as the API and the pages send it) is looked up, not searched for:
        // a GP's thousand circles are not each written out for every request.
        if let Ok(id) = query.trim().parse::<CircleId>()
            && self.open.contains_key(&id)
        {
            return Ok(id);
        }
        match crate::circle::pick(query, self.open.keys().copied(), |id| *id) {
            Ok(id) => Ok(id),
            Err(e) => match crate::circle::pick(query, self.closed.iter(), |(id, _)| **id) {
                // A circle closed here: said so, rather than "no circle matches".
                Ok((id, _)) => {
                    let short = &id.to_string()[..12];
                    Err(NodeError::not_found(format!(
                        "circle {short} was closed by its coordinator and is shredded on this device; `cercle audit {short}` shows what is kept"
                    )))
                }
                Err(_) => Err(e.into()),
            },
        }
    }
}

impl Circles {
    /// The circles held here (open, at rest or awake).
    pub fn held(&self) -> impl Iterator<Item = &Circle> {
        self.open.values()
    }

    /// Whether `device` is a relay of this node: one it was started with or one a circle
    /// names.
    pub(crate) fn is_relay(&self, device: &DeviceId) -> bool {
        self.relays.contains(device) || self.named_relays.contains(device)
    }

    /// Whether `device` may have circle `c`'s data: a relay this node uses (it holds
    /// every circle), a relay the circle names, or a device of a current member (one let
    /// in by an emergency access only until it expires).
    fn circle_shared(&self, c: &Circle, device: &DeviceId) -> bool {
        let r = c.resolution();
        self.relays.contains(device)
            || r.names_relay(device)
            || r.reader_at(device, self.now).is_some()
    }
}

impl Local for Circles {
    fn shared_with(&self, device: &DeviceId) -> Vec<CircleId> {
        self.open
            .values()
            .filter(|c| self.circle_shared(c, device))
            .map(Circle::id)
            .collect()
    }

    fn shares(&self, device: &DeviceId, circle: &CircleId) -> bool {
        self.open
            .get(circle)
            .is_some_and(|c| self.circle_shared(c, device))
    }

    fn membership(&self, circle: &CircleId) -> Option<&MembershipLog> {
        self.open.get(circle).map(Circle::membership)
    }

    /// A damaged circle is held too, and a circle invited to or declined is known: offers
    /// of them are not asked for again.
    fn knows(&self, circle: &CircleId) -> bool {
        self.open.contains_key(circle)
            || self.closed.contains_key(circle)
            || self.damaged.contains_key(circle)
            || self.invited.contains_key(circle)
            || self.declined.contains(circle)
    }

    fn closed(&self, circle: &CircleId, device: &DeviceId) -> Option<Vec<u8>> {
        let t = self.closed.get(circle)?;
        let told = t.devices.contains(device) || self.is_relay(device);
        told.then(|| t.close_op())
    }

    fn vector(&self, circle: &CircleId, doc: cercle_crdt::DocKind) -> Vector {
        self.open
            .get(circle)
            .map(|c| c.vector(doc))
            .unwrap_or_default()
    }

    fn envelopes(&self, log: &LogId, from: u64, limit: usize) -> Vec<Vec<u8>> {
        // The patient objected to sharing: nothing of the circle is sent any more.
        if self
            .open
            .get(&log.circle)
            .is_some_and(|c| c.resolution().suspended.is_some())
        {
            return Vec::new();
        }
        if let Some(fresh) = self.fresh.range(log, from, limit) {
            return fresh;
        }
        self.store.envelopes(log, from, limit).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read envelopes to send");
            Vec::new()
        })
    }
}

/// What a write to a circle needs beside the circle: who writes, when, and the generator.
#[derive(Debug)]
pub(crate) struct Author<'a> {
    pub(crate) me: &'a LocalIdentity,
    pub(crate) now: Timestamp,
    pub(crate) rng: &'a mut SecureRng,
}

/// The node without its network, disk writes and clock.
#[derive(Debug)]
pub struct NodeCore {
    pub(crate) me: LocalIdentity,
    pub(crate) circles: Circles,
    pub(crate) peers: BTreeMap<DeviceId, peers::Peer>,
    pub(crate) addresses: Vec<String>,
    pub(crate) peer_id: String,
    pub(crate) running: bool,
    /// Invites this node is joining with, by invite id.
    pub(crate) joins: BTreeMap<String, invites::Joining>,
    /// Peers whose offered circles were dropped at the bounds of pending invitations:
    /// asked for a new round once one of theirs is answered.
    crowded: BTreeSet<DeviceId>,
    /// Document contents being fetched from members.
    pub(crate) fetches: blobs::Fetches,
    /// The document whose parts are being sent.
    pub(crate) serving: blobs::Serving,
    rng: SecureRng,
    /// The time of the input being handled.
    now: Now,
    /// What peers sent that was refused: counts, and each peer's budget of records.
    refusals: crate::refusals::Refusals,
    /// Envelopes received again since the node started (already held, not applied twice).
    replayed: u64,
    /// The effects of the input being handled.
    out: Vec<Effect>,
    writes: Writes,
    /// The alerts recalled to this member, and when to look again.
    reminders: reminders::Reminders,
    /// A pairing under way on a new device (`cercle init --pair`).
    pub(crate) pairing: Option<devices::Pairing>,
    /// The member's other devices, as kept here.
    pub(crate) devices: BTreeMap<DeviceId, crate::pairing::DeviceRecord>,
    /// When the member's other devices were last dialed.
    siblings_dialed: i64,
    /// The member's devices and revoked devices as last reconciled.
    siblings_seen: (Vec<DeviceId>, Vec<DeviceId>),
    /// Device records kept so far (see `keep_record`).
    records_kept: u64,
    /// The member's devices as last gathered, and what they were gathered from: each
    /// circle joined asked twice, and gathering them again over every circle made a
    /// catch-up of 1 000 circles quadratic (10 % of its receiving core's time).
    siblings_cache: std::cell::RefCell<Option<(devices::SiblingsVersion, devices::Siblings)>>,
    /// Reads under an emergency access: told to the team, and kept of the readers'.
    pub(crate) reads: emergency::Reads,
    /// Circles holding envelopes not checked yet, or just joined: they settle when the
    /// node is idle ([`Input::Idle`]).
    settling: BTreeSet<CircleId>,
    /// A slice of that work is due whatever else the node is doing (one a tick).
    slice_owed: bool,
    /// How fast envelopes are being taken in unchecked.
    intake: settling::Intake,
    /// The circles' relays as last told to the shell.
    told_relays: Option<Vec<String>>,
}

impl NodeCore {
    /// Opens every circle of the store for `me`. `peer_id` is the device's libp2p peer id;
    /// `rng` is the core's only source of randomness. Snapshots due on opening are the
    /// first effects [`NodeCore::start`] returns.
    pub fn open(
        store: Arc<dyn Store>,
        me: LocalIdentity,
        peer_id: String,
        rng: SecureRng,
    ) -> Result<NodeCore, NodeError> {
        let (circles, snapshots) = Circles::open(store, &me)?;
        let devices = devices::load_records(circles.store.as_ref());
        // Envelopes held unchecked when the node stopped are checked now.
        let settling = circles
            .open
            .iter()
            .filter(|(_, c)| c.unchecked_logs() > 0)
            .map(|(id, _)| *id)
            .collect();
        let mut core = NodeCore {
            me,
            circles,
            peers: BTreeMap::new(),
            addresses: Vec::new(),
            peer_id,
            running: false,
            joins: BTreeMap::new(),
            crowded: BTreeSet::new(),
            reads: emergency::Reads::default(),
            fetches: BTreeMap::new(),
            serving: None,
            rng,
            now: Now(0),
            refusals: crate::refusals::Refusals::default(),
            replayed: 0,
            out: Vec::new(),
            writes: Writes::default(),
            reminders: reminders::Reminders::default(),
            pairing: None,
            devices,
            siblings_dialed: 0,
            siblings_seen: Default::default(),
            records_kept: 0,
            siblings_cache: std::cell::RefCell::new(None),
            settling,
            slice_owed: false,
            intake: settling::Intake::default(),
            told_relays: None,
        };
        if !snapshots.is_empty() {
            core.write_batch(snapshots, After::default());
        }
        Ok(core)
    }

    /// Starts the node: `running` for a node with a network (invites, fetches, profiles
    /// published where missing), and the relays it was started with. The effects include
    /// any writes due since opening.
    pub fn start(&mut self, running: bool, relays: BTreeSet<DeviceId>, now: Now) -> Vec<Effect> {
        self.now = now;
        self.circles.now = now.millis();
        self.running = running;
        self.circles.relays = relays;
        if running {
            // Envelopes written here reach peers through the first `Hello` exchange. A
            // circle at rest publishes when it wakes.
            let ids: Vec<CircleId> = self.circles.open.keys().copied().collect();
            for id in ids {
                self.publish_profile(id);
            }
            self.relays_changed();
            self.reconcile_all_devices();
            self.dial_siblings();
        }
        std::mem::take(&mut self.out)
    }

    /// Handles one input at time `now`; returns what the shell must do, in order.
    pub fn handle(&mut self, input: Input, now: Now) -> Vec<Effect> {
        self.now = now;
        self.circles.now = now.millis();
        match input {
            Input::Request(id, request) => self.request(id, request),
            Input::Connected {
                device,
                peer_id,
                relayed,
            } => self.peer_connected(device, peer_id, relayed),
            Input::Disconnected { device } => self.peer_disconnected(&device),
            Input::Message { device, message } => self.peer_message(device, message),
            Input::Messages { device, messages } => self.peer_messages(device, messages),
            Input::Undelivered { device } => self.undelivered(device),
            Input::Addresses(a) => self.addresses = a,
            Input::Durable(id) => self.durable(id),
            Input::WriteFailed(id, e) => self.write_failed(id, e),
            Input::Tick => {
                self.end_emergencies();
                self.tick();
                self.tick_devices();
                self.remind();
                self.rest_idle();
                self.slice_owed = !self.settling.is_empty();
            }
            Input::Idle => self.settle(),
        }
        std::mem::take(&mut self.out)
    }

    /// The circles held here.
    pub fn circles(&self) -> &Circles {
        &self.circles
    }

    /// This node's member and device.
    pub fn me(&self) -> &LocalIdentity {
        &self.me
    }

    /// Writes waiting for their outcome.
    pub fn writes_pending(&self) -> usize {
        self.writes.pending()
    }

    #[tracing::instrument(skip_all, fields(request = request.name(), id = id.0))]
    fn request(&mut self, id: RequestId, request: Request) {
        let first = self.writes.next_id();
        let result = request.run(self);
        if let Err(e) = &result {
            tracing::debug!(kind = ?e.kind, error = %e, "request refused");
        }
        // A request that wrote is answered once all its writes are durable: the last one
        // is, since the store makes them durable in order.
        match self.writes.last_since(first) {
            Some(last) => self.writes.answer_after(last, id, result),
            None => self.out.push(Effect::Answer(id, Box::new(result))),
        }
    }

    /// The time of the input being handled.
    pub(crate) fn now(&self) -> Timestamp {
        self.now.timestamp()
    }

    /// Adds an effect of the input being handled.
    pub(crate) fn emit(&mut self, effect: Effect) {
        self.out.push(effect);
    }

    /// The circle `query` names, awake, with what writing to it needs.
    pub(crate) fn circle_mut(
        &mut self,
        query: &str,
    ) -> Result<(&mut Circle, Author<'_>), NodeError> {
        let id = self.circles.find(query)?;
        self.wake(id)?;
        let c = self
            .circles
            .open
            .get_mut(&id)
            .ok_or_else(|| NodeError::internal("a circle found is held"))?;
        let author = Author {
            me: &self.me,
            now: self.now.timestamp(),
            rng: &mut self.rng,
        };
        Ok((c, author))
    }

    /// Who writes, when, and the generator, for a write that is not to an open circle.
    pub(crate) fn author(&mut self) -> Author<'_> {
        Author {
            me: &self.me,
            now: self.now.timestamp(),
            rng: &mut self.rng,
        }
    }

    /// The circle `query` names, awake, to read.
    pub(crate) fn circle(&mut self, query: &str) -> Result<&Circle, NodeError> {
        Ok(&*self.circle_mut(query)?.0)
    }

    /// Wakes circle `id` if it rests (its documents read from the store; snapshots due are
    /// written) and marks it used now. A circle that cannot be woken is set aside as
    /// damaged, as one that cannot be opened is.
    pub(crate) fn wake(&mut self, id: CircleId) -> Result<(), NodeError> {
        let now = self.now.millis();
        let Some(c) = self.circles.open.get_mut(&id) else {
            return Ok(());
        };
        self.circles.used.insert(id, now);
        if c.is_awake() {
            return Ok(());
        }
        match c.wake(self.circles.store.as_ref(), &self.me) {
            Ok(snapshots) => {
                if !snapshots.is_empty() {
                    self.write_batch(snapshots, After::default());
                }
                self.publish_profile(id);
                Ok(())
            }
            Err(e) => {
                tracing::error!(circle = %id, error = %e, "a circle could not be woken; it is set aside as damaged");
                self.circles.take_open(&id);
                self.circles.used.remove(&id);
                self.circles.damaged.insert(id, e.to_string());
                Err(e.into())
            }
        }
    }

    /// The node is stopping: the alerts waiting in each awake circle are kept in its
    /// record (read again if changed), so that the next start wakes none to recall them.
    pub fn stopping(&mut self, now: Now) -> Vec<Effect> {
        self.now = now;
        let awake: Vec<CircleId> = self
            .circles
            .open
            .iter()
            .filter(|(_, c)| c.is_awake())
            .map(|(id, _)| *id)
            .collect();
        for id in awake {
            self.read_waiting_alerts(id);
        }
        std::mem::take(&mut self.out)
    }

    /// Puts to rest the circles idle for [`REST_AFTER_MS`], and the least recently used
    /// beyond [`AWAKE_MAX`]; never one with a write still on its way to the disk.
    fn rest_idle(&mut self) {
        let now = self.now.millis();
        let used = &mut self.circles.used;
        // A circle created or joined here is awake from the start: used now.
        let mut awake: Vec<(i64, CircleId)> = self
            .circles
            .open
            .iter()
            .filter(|(_, c)| c.is_awake())
            .map(|(id, _)| (*used.entry(*id).or_insert(now), *id))
            .collect();
        awake.sort_unstable();
        let mut over = awake.len().saturating_sub(AWAKE_MAX);
        for (at, id) in awake {
            if over == 0 && now - at < REST_AFTER_MS {
                break;
            }
            // A circle settling stays awake until it has settled.
            if self.writes.touches(&id) || self.settling.contains(&id) {
                continue;
            }
            let Some(c) = self.circles.open.get_mut(&id) else {
                self.circles.used.remove(&id);
                continue;
            };
            if !c.may_rest() {
                continue;
            }
            self.read_waiting_alerts(id);
            let Some(c) = self.circles.open.get_mut(&id) else {
                continue;
            };
            let snapshots = c.rest();
            self.circles.used.remove(&id);
            over = over.saturating_sub(1);
            tracing::debug!(circle = %id, "put to rest");
            if !snapshots.is_empty() {
                self.write_batch(snapshots, After::default());
            }
        }
    }

    /// The random generator.
    pub(crate) fn rng(&mut self) -> &mut SecureRng {
        &mut self.rng
    }

    /// Writes document `D` of the circle `query` names with `f` (given this member and the
    /// time); stages what it changed, even before an error.
    pub(crate) fn write<D: CircleDocument, T>(
        &mut self,
        query: &str,
        f: impl FnOnce(&mut D, MemberId, Timestamp) -> Result<T, WriteError>,
    ) -> Result<T, NodeError> {
        let (c, a) = self.circle_mut(query)?;
        let id = c.id();
        let (member, now) = (a.me.member(), a.now);
        let written = c.write::<D, T>(a.me, a.now, a.rng, |d| f(d, member, now));
        self.stage(id, written.staged);
        Ok(written.value?)
    }

    /// Asks the shell to make a circle's staged change durable; once it is, its envelopes
    /// go to every connected peer sharing the circle (but `from`, which sent them) and,
    /// if the membership changed, every peer sharing the circle is told (`Changed`).
    pub(crate) fn stage_from(&mut self, circle: CircleId, staged: Staged, from: Option<DeviceId>) {
        if staged.batch.is_empty() {
            return;
        }
        let envelopes = staged.envelopes.len();
        // Kept in memory to push only if a peer is there to take them (one connecting
        // meanwhile has them read from the store).
        let pushed = envelopes > 0
            && self
                .peers
                .keys()
                .any(|d| Some(*d) != from && self.circles.shares(d, &circle));
        let after = After {
            circle: Some(circle),
            envelopes: staged.envelopes,
            except: from,
            membership_changed: staged.membership_changed,
            fresh: if pushed {
                writes::Fresh::staged(&staged.batch)
            } else {
                Vec::new()
            },
            ..After::default()
        };
        let write = self.write_batch(staged.batch, after);
        tracing::debug!(%circle, write = write.0, envelopes, "staged; waiting for the disk");
        if let Some(c) = self.circles.open.get_mut(&circle) {
            let snapshots = c.snapshots(SNAPSHOT_EVERY);
            if !snapshots.is_empty() {
                self.write_batch(snapshots, After::default());
            }
        }
    }

    /// [`NodeCore::stage_from`] for a change made here.
    pub(crate) fn stage(&mut self, circle: CircleId, staged: Staged) {
        self.stage_from(circle, staged, None);
    }

    /// Asks the shell to make `batch` durable, with what to do once it is.
    pub(crate) fn write_batch(&mut self, batch: Batch, after: After) -> WriteId {
        let id = self.writes.add(after);
        self.out.push(Effect::Write(id, batch));
        id
    }

    /// Effects to carry out once the writes staged so far are durable (or at once if
    /// nothing waits).
    pub(crate) fn after_writes(&mut self, effects: Vec<Effect>) {
        match self.writes.last_since(WriteId(0)) {
            Some(last) => self.writes.effects_after(last, effects),
            None => self.out.extend(effects),
        }
    }

    #[tracing::instrument(skip_all, fields(write = id.0))]
    fn durable(&mut self, id: WriteId) {
        let Some(mut after) = self.writes.done(id) else {
            return;
        };
        self.circles.fresh.durable(std::mem::take(&mut after.fresh));
        if !after.envelopes.is_empty() {
            tracing::debug!(
                envelopes = after.envelopes.len(),
                "durable; pushing to peers"
            );
        }
        // A circle shredded meanwhile: nothing of it goes out any more.
        if after
            .circle
            .is_some_and(|c| self.circles.closed.contains_key(&c))
        {
            after.membership_changed = false;
            after.envelopes.clear();
        }
        if after.membership_changed
            && let Some(circle) = after.circle
            && self
                .circles
                .open
                .get(&circle)
                .is_some_and(|c| c.resolution().suspended.is_some())
        {
            self.suspended(circle);
        }
        if after.membership_changed {
            self.relays_changed();
            if let Some(circle) = after.circle {
                self.membership_changed(circle);
                // A device of this member added or revoked in one circle is in all of them.
                self.devices_changed(circle);
            }
        }
        if let Some(circle) = after.circle
            && !after.envelopes.is_empty()
        {
            self.push(circle, &after.envelopes, after.except);
        }
        self.out.extend(after.effects);
        if let Some((request, answer)) = after.answer {
            tracing::debug!(request = request.0, "answered once durable");
            self.out.push(Effect::Answer(request, Box::new(answer)));
        }
    }

    fn write_failed(&mut self, id: WriteId, e: StoreError) {
        tracing::error!(write = id.0, error = %e, "a write failed; nothing of it is sent");
        if let Some(after) = self.writes.done(id)
            && let Some((request, _)) = after.answer
        {
            self.out
                .push(Effect::Answer(request, Box::new(Err(e.into()))));
        }
    }

    /// Publishes this member's profile in a circle's thread if it is missing or outdated.
    pub(crate) fn publish_profile(&mut self, circle: CircleId) {
        // Not before its envelopes held are applied: the profile may be among them.
        let Some(c) = self
            .circles
            .open
            .get_mut(&circle)
            .filter(|c| c.is_awake() && c.unchecked_logs() == 0)
        else {
            return;
        };
        let written = c.publish_profile(&self.me, self.now.timestamp(), &mut self.rng);
        if let Err(e) = written.value {
            tracing::warn!(%circle, error = %e, "cannot publish this member's profile");
        }
        self.stage(circle, written.staged);
    }

    /// The circles' relays may have changed: the shell is told the full list, and the core
    /// keeps their devices (whose introductions it takes).
    fn relays_changed(&mut self) {
        let named = self.circle_relays();
        self.circles.named_relays = self
            .circles
            .open
            .values()
            .flat_map(|c| c.resolution().relay_devices.iter().copied())
            .collect();
        // Told only when the list changed: a member joining a thousand circles of the same
        // relays tells the shell once.
        if self.told_relays.as_ref() != Some(&named) {
            self.told_relays = Some(named.clone());
            self.out.push(Effect::Relays(named));
        }
    }

    /// The relays the circles name, each once.
    pub fn circle_relays(&self) -> Vec<String> {
        let all: BTreeSet<&String> = self
            .circles
            .open
            .values()
            .flat_map(|c| c.resolution().relays.iter())
            .collect();
        all.into_iter().cloned().collect()
    }
}

/// Where this node can be reached, as a code carries it: through `relays` first (they work
/// across networks, even before a reservation shows in the addresses), then direct TCP,
/// then QUIC.
pub(crate) fn reachable_addresses(
    status: &crate::ops::status::NodeStatus,
    relays: &[String],
) -> Vec<String> {
    let mut addresses: Vec<String> = status.addresses.clone();
    addresses.sort_by_key(|a| {
        (
            !a.contains("/p2p-circuit"),
            !a.contains("/tcp/"),
            a.starts_with("/ip6/"),
        )
    });
    for relay in relays {
        let via = format!("{relay}/p2p-circuit/p2p/{}", status.peer_id);
        if !addresses.contains(&via) {
            addresses.insert(0, via);
        }
    }
    addresses
}

#[cfg(test)]
mod tests;
