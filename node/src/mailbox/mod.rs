//! The relay's mailbox: envelopes of the circles that use a relay, kept until their members
//! come online, on a sled database in the relay's home.
//!
//! The mailbox holds what a relay may hold and nothing more: each circle's signed membership
//! operations (from which it computes who is a member, exactly as nodes do) and the
//! envelopes as they travel, encrypted. It never holds an epoch key. Every envelope pushed goes
//! through the checks a relay can make without reading it ([`EnvelopeLog`] with no keys:
//! size, decoding, signature, a current member's device allowed to write that document in
//! that epoch, chain continuity); only then is it stored. Only the devices of a circle's
//! current members may push to it or pull from it ([`Local::shared_with`]).
//!
//! Each circle has quotas (bytes, envelopes, operations) and a retention: a circle with no
//! new envelope for [`MailboxLimits::retention`] is dropped (its members still sync with
//! each other). A push is stored and flushed to disk before it is acknowledged: the pushes
//! taken together (all the messages waiting when the relay gets to them) share one flush
//! ([`Mailbox::commit`], group commit).
//!
//! The operations carry the circle's epoch keys sealed to the members' devices, so they are
//! kept sealed with a key of their circle's own (`store::circle_keys`, in the file
//! `mailbox.keys` beside the database, itself sealed with a key derived from the relay's):
//! a circle closed by its coordinator (a `Close` operation taken in) has its envelopes and
//! operations deleted at once and its key forgotten, so that no copy left in the
//! database's files can give its epoch keys to anyone, a member's device included. Kept of
//! it: the `Close` operation (no key in it), its members' devices, and the [`Deletion`]
//! each of them is answered with, which the relay's exchange signs (a
//! [`DeletionReceipt`](crate::tombstone::DeletionReceipt)); a member's node that missed the
//! closing is told by it. That too goes after the retention.
//!
//! Layout, four sled trees, keyed as the node's store keys them ([`keys`]):
//! - `ops`: circle (32) ‖ op hash (32) → the operation's bytes, sealed;
//! - `envelopes`: circle (32) ‖ doc (1) ‖ device (32) ‖ seq (8, big-endian) → envelope bytes;
//! - `circles`: circle (32) → time of the last stored envelope (i64 µs, big-endian);
//! - `closed`: circle (32) → its [`Deletion`] (the `Close` operation's hash (32), then the
//!   time (ms), envelopes and bytes deleted (8 each, big-endian)), the `Close` operation
//!   (length (4), bytes) and its members' devices (32 each).

pub mod exchange;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use cercle_crdt::DocKind;

use crate::circle::membership::{
    CircleId, Membership, MembershipLog, OpBody, OpHash, Resolution, SignedOp,
};
use crate::crypto::StorageKey;
use crate::envelope::{CircleView, Envelope, EnvelopeLog, EnvelopeRef, EnvelopeRejection, LogId};
use crate::identity::DeviceId;
use crate::store::circle_keys::CircleKeys;
use crate::store::keys;
use crate::sync::{Local, MAX_MET_DEVICES, Received, Vector};

/// Why the mailbox cannot be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    #[error("cannot open the mailbox database at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("the mailbox database failed: {0}")]
    Db(#[from] sled::Error),
    #[error("the mailbox's circle keys: {0}")]
    Keys(#[from] crate::store::StoreError),
}

/// How much the mailbox may hold, in all and per circle, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Circles held at most.
    pub circles: usize,
    /// Envelope bytes of all circles together: below the disk's size, so that no one
    /// circle's members (nor a stranger's many circles) can fill the disk for everyone.
    pub total_bytes: u64,
    /// New circles one device may bring at once...
    pub new_circles_burst: u32,
    /// ...and one more each time this passes.
    pub new_circle_every: Duration,
    /// Envelope bytes per circle.
    pub bytes: u64,
    /// Envelopes per circle.
    pub envelopes: u64,
    /// Membership operations per circle (including those waiting for a parent).
    pub ops: usize,
    /// A circle with no new envelope for this long is dropped.
    pub retention: Duration,
    /// When set (to the relay's own device, the default of `cercle relay`), only the
    /// circles whose membership log names this relay (`cercle circle relays`) are kept: an
    /// operator serves the circles that chose its relay, not anyone's. `None` is an open
    /// mailbox (`cercle relay --open-mailbox`).
    pub named_only: Option<DeviceId>,
}

impl Default for MailboxLimits {
    fn default() -> MailboxLimits {
        MailboxLimits {
            circles: 10_000,
            total_bytes: 16 * 1024 * 1024 * 1024,
            new_circles_burst: 1_500,
            new_circle_every: Duration::from_secs(60),
            bytes: 256 * 1024 * 1024,
            envelopes: 200_000,
            ops: 10_000,
            retention: Duration::from_secs(90 * 24 * 3600),
            named_only: None,
        }
    }
}

/// Why something a peer sent was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("the device is not a current member of the circle")]
    NotMember,
    #[error("the operations do not start from the circle's genesis")]
    NoGenesis,
    #[error("the relay holds as many circles as it may")]
    CirclesFull,
    #[error("the circle's mailbox is full")]
    Quota,
    #[error("membership operation refused: {0}")]
    Op(String),
    #[error("envelope refused: {0}")]
    Envelope(EnvelopeRejection),
    #[error("the mailbox cannot store any more (a disk error); see the relay's log")]
    Unavailable,
    #[error("the circle does not name this relay among its relays")]
    NotNamed,
    #[error("the relay's mailbox is full (all circles together)")]
    Full,
    #[error("this device brought too many new circles lately; try again later")]
    TooManyNewCircles,
    #[error("the circle was closed: its envelopes were deleted here and no new one is kept")]
    Closed,
}

impl Refusal {
    /// A short, stable name of the reason, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::NotMember => "not_member",
            Refusal::NoGenesis => "no_genesis",
            Refusal::CirclesFull => "circles_full",
            Refusal::Quota => "quota",
            Refusal::Op(_) => "membership_op",
            Refusal::Envelope(r) => r.kind(),
            Refusal::Unavailable => "unavailable",
            Refusal::NotNamed => "not_named",
            Refusal::Full => "relay_full",
            Refusal::TooManyNewCircles => "new_circle_rate",
            Refusal::Closed => "closed",
        }
    }
}

/// What became of one push.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The envelopes stored, to pass on to connected members.
    pub accepted: Vec<EnvelopeRef>,
    /// Membership operations stored (a circle's membership changed here if any).
    pub ops: usize,
    pub envelopes: usize,
    pub bytes: u64,
    pub refused: Vec<Refusal>,
    /// The circle is closed and its envelopes deleted here: the pusher is answered with
    /// the receipt.
    pub deleted: Option<Deletion>,
}

/// What the mailbox deleted of a closed circle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub circle: CircleId,
    /// The `Close` operation taken.
    pub close: OpHash,
    /// When (milliseconds since the epoch).
    pub at: i64,
    pub envelopes: u64,
    pub bytes: u64,
}

/// What the mailbox keeps of a closed circle.
#[derive(Debug, Clone)]
struct Closed {
    deletion: Deletion,
    /// The `Close` operation's bytes.
    close: Vec<u8>,
    /// The devices of its members when it closed.
    devices: BTreeSet<DeviceId>,
}

impl Closed {
    fn encode(&self) -> Vec<u8> {
        let d = &self.deletion;
        let mut v = d.close.0.to_vec();
        v.extend_from_slice(&d.at.to_be_bytes());
        v.extend_from_slice(&d.envelopes.to_be_bytes());
        v.extend_from_slice(&d.bytes.to_be_bytes());
        v.extend_from_slice(&(self.close.len() as u32).to_le_bytes());
        v.extend_from_slice(&self.close);
        for device in &self.devices {
            v.extend_from_slice(&device.0);
        }
        v
    }

    fn decode(circle: CircleId, v: &[u8]) -> Option<Closed> {
        let mut r = crate::reader::Reader::new(v, ());
        let close_hash = OpHash(r.array().ok()?);
        let at = i64::from_be_bytes(r.array().ok()?);
        let envelopes = u64::from_be_bytes(r.array().ok()?);
        let bytes = u64::from_be_bytes(r.array().ok()?);
        let n = r.len_u32().ok()?;
        let close = r.take(n).ok()?.to_vec();
        let mut devices = BTreeSet::new();
        while !r.is_done() {
            devices.insert(DeviceId(r.array().ok()?));
        }
        Some(Closed {
            deletion: Deletion {
                circle,
                close: close_hash,
                at,
                envelopes,
                bytes,
            },
            close,
            devices,
        })
    }
}

/// What the mailbox holds in all (for metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub circles: u64,
    pub ops: u64,
    pub envelopes: u64,
    pub bytes: u64,
    /// Circles closed or suspended whose deletion is kept (to answer with its receipt).
    pub closed: u64,
}

/// One circle's line in an operator's listing: sizes and timing, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CircleUsage {
    pub circle: String,
    pub members: usize,
    pub ops: usize,
    pub envelopes: u64,
    pub bytes: u64,
    /// Microseconds since the epoch of the last stored envelope.
    pub last_active: i64,
}

/// One circle as the relay holds it.
#[derive(Debug)]
struct Held {
    membership: Membership,
    envelopes: EnvelopeLog,
    vectors: BTreeMap<DocKind, Vector>,
    count: u64,
    bytes: u64,
    last_active: i64,
}

impl Held {
    fn new(membership: Membership, now: i64) -> Held {
        Held {
            membership,
            envelopes: EnvelopeLog::default(),
            vectors: BTreeMap::new(),
            count: 0,
            bytes: 0,
            last_active: now,
        }
    }

    fn resolution(&self) -> &Resolution {
        self.membership.resolution()
    }

    /// Operations, envelopes and envelope bytes held.
    fn size(&self) -> (u64, u64, u64) {
        (self.membership.log().len() as u64, self.count, self.bytes)
    }

    fn devices(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.resolution()
            .members
            .values()
            .flat_map(|m| m.devices.iter().map(|d| d.device))
    }
}

/// The mailbox: its database and, in memory, each circle's membership and log heads.
#[derive(Debug)]
pub struct Mailbox {
    db: sled::Db,
    ops: sled::Tree,
    envelopes: sled::Tree,
    circles_tree: sled::Tree,
    closed_tree: sled::Tree,
    circles: BTreeMap<CircleId, Held>,
    /// Circles closed: what is kept of them until the retention.
    closed: BTreeMap<CircleId, Closed>,
    /// Each circle's key for its operations at rest, and the key that seals those keys.
    keys: CircleKeys,
    storage: StorageKey,
    /// Which circles each current member device may push to and pull from.
    members: BTreeMap<DeviceId, BTreeSet<CircleId>>,
    limits: MailboxLimits,
    /// New circles per device, bounded by [`MailboxLimits::new_circles_burst`].
    new_circles: crate::bucket::DeviceBuckets,
    /// Set when a write failed: memory may then be ahead of the disk, so nothing more is
    /// accepted until the relay restarts (and reloads what the disk holds).
    failed: bool,
    /// Writes applied since the last [`Mailbox::commit`].
    unflushed: bool,
    totals: Totals,
    /// The time of the message being handled (milliseconds): a reader let in by an
    /// emergency access is served only until it ends.
    now: i64,
}

impl Mailbox {
    /// Opens (or creates) the mailbox at `path` and rebuilds each circle's state from it;
    /// its circles' keys are in `path` with the extension `keys`, sealed with `key`.
    pub fn open(
        path: &Path,
        limits: MailboxLimits,
        key: StorageKey,
    ) -> Result<Mailbox, MailboxError> {
        // A relay restarted in place finds sled's lock free; one reopened in the same
        // process may have to wait a moment for sled's threads to let it go.
        let db = crate::store::once_released(|| {
            sled::Config::new()
                .path(path)
                .open()
                .map_err(|e| e.to_string())
        })
        .map_err(|reason| MailboxError::Open {
            path: path.display().to_string(),
            reason,
        })?;
        let keys = CircleKeys::load_file(path.with_extension("keys"), &key)?;
        Mailbox::over(db, limits, keys, key)
    }

    /// An empty mailbox in a temporary database, deleted when dropped: a relay of the
    /// simulations (`crate::node::cluster`), with the same code over a real sled.
    pub fn temporary(limits: MailboxLimits) -> Result<Mailbox, MailboxError> {
        let db = sled::Config::new()
            .temporary(true)
            .flush_every_ms(None)
            .open()
            .map_err(|e| MailboxError::Open {
                path: "a temporary database".into(),
                reason: e.to_string(),
            })?;
        let key = StorageKey::derive(&[0; 32]);
        Mailbox::over(db, limits, CircleKeys::in_memory(), key)
    }

    fn over(
        db: sled::Db,
        limits: MailboxLimits,
        keys: CircleKeys,
        storage: StorageKey,
    ) -> Result<Mailbox, MailboxError> {
        let mut mailbox = Mailbox {
            ops: db.open_tree("ops")?,
            envelopes: db.open_tree("envelopes")?,
            circles_tree: db.open_tree("circles")?,
            closed_tree: db.open_tree("closed")?,
            db,
            circles: BTreeMap::new(),
            closed: BTreeMap::new(),
            keys,
            storage,
            members: BTreeMap::new(),
            limits,
            new_circles: crate::bucket::DeviceBuckets::default(),
            failed: false,
            unflushed: false,
            totals: Totals::default(),
            now: 0,
        };
        mailbox.load()?;
        Ok(mailbox)
    }

    fn load(&mut self) -> Result<(), MailboxError> {
        for item in self.closed_tree.iter() {
            let (k, v) = item?;
            let Some(circle) = k.get(..32).and_then(|c| c.try_into().ok()).map(CircleId) else {
                continue;
            };
            match Closed::decode(circle, &v) {
                Some(c) => {
                    self.closed.insert(circle, c);
                }
                None => tracing::error!(%circle, "a closed circle's record is damaged"),
            }
        }
        // A closing interrupted by a crash is finished.
        let unfinished: Vec<CircleId> = self.closed.keys().copied().collect();
        for circle in unfinished {
            self.delete_rows(&circle)?;
            self.keys.forget(&[circle], &self.storage)?;
        }
        // Operations, grouped by circle; the genesis is the one whose hash is the circle.
        let mut by_circle: BTreeMap<CircleId, Vec<SignedOp>> = BTreeMap::new();
        for item in self.ops.iter() {
            let (k, v) = item?;
            let Some(circle) = k.get(..32).and_then(|c| c.try_into().ok()).map(CircleId) else {
                continue;
            };
            let place = op_place(&k);
            let opened = self
                .keys
                .get(&circle)
                .and_then(|key| key.open(&place, &v).ok());
            // Kept unsealed before the circles had their own keys.
            let bytes: &[u8] = opened.as_deref().map_or(&v, |o| o.as_slice());
            match SignedOp::decode(bytes) {
                Ok(op) => by_circle.entry(circle).or_default().push(op),
                Err(e) => tracing::error!(%circle, error = %e, "a stored operation is damaged"),
            }
        }
        for (circle, ops) in by_circle {
            let (membership, left_out) = match Membership::load(ops) {
                Ok(loaded) if loaded.0.log().circle() == circle => loaded,
                Ok(_) => {
                    tracing::error!(%circle, "a stored circle's genesis is another's; skipped");
                    continue;
                }
                Err(e) => {
                    tracing::error!(%circle, error = %e, "a stored circle's log is damaged; skipped");
                    continue;
                }
            };
            if !left_out.is_empty() {
                tracing::warn!(%circle, left_out = left_out.len(), "stored operations without effect were left out");
            }
            let last_active = self
                .circles_tree
                .get(circle.0)?
                .and_then(|v| v.as_ref().try_into().ok())
                .map(i64::from_be_bytes)
                .unwrap_or(0);
            self.circles
                .insert(circle, Held::new(membership, last_active));
        }
        // Envelopes: sizes, and the last one of each log resumes the chain checks.
        let mut last: Option<(LogId, u64, sled::IVec)> = None;
        for item in self.envelopes.iter() {
            let (k, v) = item?;
            let Some((log, seq)) = keys::split_envelope(&k) else {
                continue;
            };
            if let Some(held) = self.circles.get_mut(&log.circle) {
                held.count += 1;
                held.bytes += v.len() as u64;
            }
            if let Some(prev) = last.take()
                && prev.0 != log
            {
                self.resume(prev);
            }
            last = Some((log, seq, v));
        }
        if let Some(prev) = last {
            self.resume(prev);
        }
        let circles: Vec<CircleId> = self.circles.keys().copied().collect();
        for c in circles {
            self.index(&c);
        }
        self.totals = self.count();
        tracing::info!(circles = self.circles.len(), "mailbox opened");
        Ok(())
    }

    fn resume(&mut self, (log, seq, bytes): (LogId, u64, sled::IVec)) {
        let Some(held) = self.circles.get_mut(&log.circle) else {
            return;
        };
        match Envelope::decode(&bytes) {
            Ok(env) => {
                held.envelopes.resume(&env);
                held.vectors
                    .entry(log.doc)
                    .or_default()
                    .insert(log.device, seq);
            }
            Err(e) => {
                tracing::error!(circle = %log.circle, error = %e, "a stored envelope is damaged")
            }
        }
    }

    /// Rebuilds the member index of one circle.
    fn index(&mut self, circle: &CircleId) {
        for set in self.members.values_mut() {
            set.remove(circle);
        }
        self.members.retain(|_, s| !s.is_empty());
        if let Some(held) = self.circles.get(circle) {
            for device in held.devices() {
                self.members.entry(device).or_default().insert(*circle);
            }
        }
    }

    /// The circles held, in all.
    pub fn totals(&self) -> Totals {
        Totals {
            closed: self.closed.len() as u64,
            ..self.totals
        }
    }

    /// Walks every circle to count what is held (on opening; then kept up to date).
    fn count(&self) -> Totals {
        let mut t = Totals {
            circles: self.circles.len() as u64,
            ..Totals::default()
        };
        for held in self.circles.values() {
            let (ops, envelopes, bytes) = held.size();
            t.ops += ops;
            t.envelopes += envelopes;
            t.bytes += bytes;
        }
        t
    }

    /// Replaces one circle's share of the totals: `before` by what it holds now.
    fn recount(&mut self, circle: &CircleId, before: (u64, u64, u64)) {
        let now = self.circles.get(circle).map_or((0, 0, 0), Held::size);
        let t = &mut self.totals;
        t.ops = t.ops.saturating_sub(before.0) + now.0;
        t.envelopes = t.envelopes.saturating_sub(before.1) + now.1;
        t.bytes = t.bytes.saturating_sub(before.2) + now.2;
        t.circles = self.circles.len() as u64;
    }

    /// Each circle's sizes and last activity, for the operator.
    pub fn usage(&self) -> Vec<CircleUsage> {
        self.circles
            .iter()
            .map(|(id, h)| CircleUsage {
                circle: id.to_string(),
                members: h.resolution().members.len(),
                ops: h.membership.log().len(),
                envelopes: h.count,
                bytes: h.bytes,
                last_active: h.last_active,
            })
            .collect()
    }

    /// Whether a write failed (the mailbox then takes nothing more until restarted).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Makes every push taken since the last commit durable, with one flush for all of
    /// them (group commit): nothing is acknowledged before this returns `Ok`. A failed
    /// flush fails the mailbox (memory is ahead of the disk; a restart reloads the disk).
    pub fn commit(&mut self) -> Result<(), MailboxError> {
        if !self.unflushed {
            return Ok(());
        }
        match self.db.flush() {
            Ok(_) => {
                self.unflushed = false;
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot flush the mailbox; refusing pushes until restarted");
                self.failed = true;
                Err(e.into())
            }
        }
    }

    /// Every stored record as (tree, key, value), for an operator's dump.
    pub fn records(
        &self,
    ) -> impl Iterator<Item = Result<(&'static str, Vec<u8>, Vec<u8>), MailboxError>> + '_ {
        [
            ("ops", &self.ops),
            ("envelopes", &self.envelopes),
            ("circles", &self.circles_tree),
        ]
        .into_iter()
        .flat_map(|(name, tree)| {
            tree.iter().map(move |item| {
                item.map(|(k, v)| (name, k.to_vec(), v.to_vec()))
                    .map_err(MailboxError::from)
            })
        })
    }

    /// Whether `device` is a current member's device of a circle kept here.
    pub fn keeps_member(&self, device: &DeviceId) -> bool {
        self.members.get(device).is_some_and(|m| !m.is_empty())
    }

    /// The circles among `offered` that this mailbox holds but `device` may not pull.
    pub fn refused_pulls(&self, device: &DeviceId, offered: &[CircleId]) -> usize {
        let mine = self.members.get(device);
        offered
            .iter()
            .filter(|c| self.circles.contains_key(c) && !mine.is_some_and(|m| m.contains(c)))
            .count()
    }

    /// For each circle held here of which `device` is a current member's device, the other
    /// current member devices for which `present` holds (at most [`MAX_MET_DEVICES`] each);
    /// circles with none are left out.
    pub fn companions(
        &self,
        device: &DeviceId,
        present: impl Fn(&DeviceId) -> bool,
    ) -> Vec<(CircleId, Vec<DeviceId>)> {
        let Some(circles) = self.members.get(device) else {
            return Vec::new();
        };
        circles
            .iter()
            .filter_map(|c| {
                let held = self.circles.get(c)?;
                let others: Vec<DeviceId> = held
                    .devices()
                    .filter(|d| d != device && present(d))
                    .take(MAX_MET_DEVICES)
                    .collect();
                (!others.is_empty()).then_some((*c, others))
            })
            .collect()
    }

    /// Takes what `from` pushed: operations, then envelopes, each checked; what passes is
    /// written, and durable once [`Mailbox::commit`] has returned (which the shell calls
    /// before any acknowledgement goes out).
    pub fn receive(&mut self, from: &DeviceId, data: Received, now: i64) -> Delivery {
        let mut delivery = Delivery::default();
        if self.failed {
            delivery.refused.push(Refusal::Unavailable);
            return delivery;
        }
        let circle = data.circle;
        // A closed circle: a member's node is answered with what was deleted, nothing is
        // taken.
        if let Some(closed) = self.closed.get(&circle) {
            if closed.devices.contains(from) {
                delivery.deleted = Some(closed.deletion.clone());
            } else {
                delivery.refused.push(Refusal::NotMember);
            }
            if !data.envelopes.is_empty() {
                delivery.refused.push(Refusal::Closed);
            }
            return delivery;
        }
        let before = self.circles.get(&circle).map_or((0, 0, 0), Held::size);
        let adopted = !self.circles.contains_key(&circle);
        if adopted {
            match self.adopt(from, circle, &data.ops, now) {
                Ok(()) => {}
                Err(r) => {
                    tracing::debug!(%circle, device = %from, reason = %r, "refused a new circle");
                    delivery.refused.push(r);
                    return delivery;
                }
            }
        } else if !self.members.get(from).is_some_and(|s| s.contains(&circle)) {
            delivery.refused.push(Refusal::NotMember);
            return delivery;
        }
        let limits = self.limits;
        let Some(held) = self.circles.get_mut(&circle) else {
            return delivery;
        };

        // The same two steps as a member's circle, without keys: operations, then the
        // envelope checks a relay can make (size, decoding, signature, writer, chain).
        let room = limits
            .ops
            .saturating_sub(held.membership.log().len() + held.membership.log().waiting());
        if data.ops.len() > room {
            delivery.refused.push(Refusal::Quota);
        }
        let intake = held
            .membership
            .take_in(&data.ops[..data.ops.len().min(room)]);
        let mut new_ops: Vec<&SignedOp> = intake.new.iter().collect();
        // The genesis of a circle just adopted is already in its log, not yet on disk.
        if adopted && let Some(genesis) = held.membership.log().genesis() {
            new_ops.push(genesis);
            delivery.ops += 1;
        }
        let ops_batch = match sealed_ops(&mut self.keys, &self.storage, &circle, &new_ops) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(%circle, error = %e, "cannot seal a circle's operations; refusing pushes until restarted");
                self.failed = true;
                delivery.refused.push(Refusal::Unavailable);
                return delivery;
            }
        };
        delivery.ops += intake.new.len();
        delivery.refused.extend(
            intake
                .refused
                .into_iter()
                .map(|(_, e)| Refusal::Op(e.to_string())),
        );
        let changed = !intake.new.is_empty();
        // Closed, or the patient objected to sharing: the relay keeps nothing more of it.
        if held.resolution().closed || held.resolution().suspended.is_some() {
            match self.close(&circle, now) {
                Ok(d) => delivery.deleted = d,
                Err(e) => {
                    tracing::error!(%circle, error = %e, "cannot delete a closed circle's envelopes; refusing pushes until restarted");
                    self.failed = true;
                    delivery.refused.push(Refusal::Unavailable);
                }
            }
            self.unflushed = true;
            if !data.envelopes.is_empty() {
                delivery.refused.push(Refusal::Closed);
            }
            self.index(&circle);
            self.recount(&circle, before);
            return delivery;
        }
        // A circle that stopped naming this relay gets no new envelopes here.
        let served = serves(&limits, held.resolution());
        if !served && !data.envelopes.is_empty() {
            delivery.refused.push(Refusal::NotNamed);
        }
        let offered: &[Vec<u8>] = if served { &data.envelopes } else { &[] };
        // Quotas are checked before any work: what does not fit is refused unread.
        let (mut count, mut bytes) = (held.count, held.bytes);
        let mut total = self.totals.bytes;
        let mut full = false;
        let fit = offered
            .iter()
            .take_while(|b| {
                count += 1;
                bytes += b.len() as u64;
                total += b.len() as u64;
                full = total > limits.total_bytes;
                count <= limits.envelopes && bytes <= limits.bytes && !full
            })
            .count();
        if fit < offered.len() {
            delivery
                .refused
                .push(if full { Refusal::Full } else { Refusal::Quota });
        }
        let view = CircleView {
            circle,
            resolution: held.membership.resolution(),
            holders: held.membership.holders(),
            keys: None,
        };
        let checked = held.envelopes.check(&offered[..fit], &view);
        delivery.refused.extend(
            checked
                .rejected
                .into_iter()
                .map(|r| Refusal::Envelope(r.reason)),
        );
        let mut env_batch = sled::Batch::default();
        for a in checked.accepted {
            held.envelopes.confirm(&a.envelope);
            let b = a.envelope.bytes();
            let log = a.envelope.header.log();
            env_batch.insert(keys::envelope(&log, a.seq), b);
            held.vectors
                .entry(a.doc)
                .or_default()
                .insert(a.device, a.seq);
            held.count += 1;
            held.bytes += b.len() as u64;
            delivery.envelopes += 1;
            delivery.bytes += b.len() as u64;
            delivery.accepted.push(EnvelopeRef { log, seq: a.seq });
        }
        if delivery.envelopes > 0 {
            held.last_active = now;
        }
        let last_active = held.last_active;
        let stored = self
            .ops
            .apply_batch(ops_batch)
            .and_then(|()| self.envelopes.apply_batch(env_batch))
            .and_then(|()| {
                self.circles_tree
                    .insert(circle.0, &last_active.to_be_bytes())
                    .map(|_| ())
            });
        self.unflushed = true;
        if let Err(e) = stored {
            // Nothing of this push is held; memory is now ahead of the disk, so the mailbox
            // takes nothing more until a restart reloads it.
            tracing::error!(%circle, error = %e, "cannot store in the mailbox; refusing pushes until restarted");
            self.failed = true;
            delivery = Delivery {
                refused: vec![Refusal::Unavailable],
                ..Delivery::default()
            };
        }
        if changed || adopted {
            self.index(&circle);
        }
        self.recount(&circle, before);
        delivery
    }

    /// A circle not held yet, offered by `from`: its operations must start from the genesis
    /// named by the circle id and make `from` a current member.
    fn adopt(
        &mut self,
        from: &DeviceId,
        circle: CircleId,
        ops: &[Vec<u8>],
        now: i64,
    ) -> Result<(), Refusal> {
        // The cheap refusals first, before any operation is decoded or resolved.
        if self.circles.len() >= self.limits.circles {
            return Err(Refusal::CirclesFull);
        }
        if self.totals.bytes >= self.limits.total_bytes {
            return Err(Refusal::Full);
        }
        let every = i64::try_from(self.limits.new_circle_every.as_micros()).unwrap_or(i64::MAX);
        let burst = self.limits.new_circles_burst;
        if !self.new_circles.allows(from, now, burst, every) {
            return Err(Refusal::TooManyNewCircles);
        }
        // The genesis is the operation whose hash is the circle: found by hashing, and
        // only it decoded and checked here (the others are checked once, by `take_in`).
        let genesis = ops
            .iter()
            .find(|b| blake3::hash(b).as_bytes() == &circle.0)
            .and_then(|b| SignedOp::decode(b).ok())
            .filter(|o| matches!(o.content().body, OpBody::Genesis { .. }))
            .ok_or(Refusal::NoGenesis)?;
        let mut log = Membership::genesis(genesis).map_err(|e| Refusal::Op(e.to_string()))?;
        let _ = log.take_in(&ops[..ops.len().min(self.limits.ops)]);
        if log.resolution().member_of(from).is_none() {
            return Err(Refusal::NotMember);
        }
        if !serves(&self.limits, log.resolution()) {
            return Err(Refusal::NotNamed);
        }
        if !self.new_circles.take(from, now, burst, every) {
            return Err(Refusal::TooManyNewCircles);
        }
        // The operations themselves are stored by `receive`, with the rest of the push.
        let genesis_only =
            Membership::genesis(log.log().genesis().cloned().ok_or(Refusal::NoGenesis)?)
                .map_err(|e| Refusal::Op(e.to_string()))?;
        self.circles.insert(circle, Held::new(genesis_only, now));
        tracing::info!(%circle, "a new circle uses this mailbox");
        Ok(())
    }

    /// The devices of `circle`'s members (when it closed, for a closed circle).
    pub fn devices_of(&self, circle: &CircleId) -> BTreeSet<DeviceId> {
        if let Some(c) = self.closed.get(circle) {
            return c.devices.clone();
        }
        self.circles
            .get(circle)
            .map(|h| h.devices().collect())
            .unwrap_or_default()
    }

    /// `circle` just closed, or its sharing was suspended: its record first (a crash after
    /// it finishes the rest at the next opening), then its envelopes and operations deleted
    /// and its key forgotten.
    fn close(&mut self, circle: &CircleId, now: i64) -> Result<Option<Deletion>, MailboxError> {
        let Some(held) = self.circles.get(circle) else {
            return Ok(None);
        };
        // The operation that ended the sharing: the closing, or the patient's objection.
        let log = held.membership.log();
        let ending = log
            .ops()
            .find(|op| matches!(op.content().body, OpBody::Close))
            .or_else(|| {
                let w = held.resolution().suspended.as_ref()?;
                log.get(&w.op)
            })
            .cloned();
        let Some(close) = ending else {
            return Ok(None);
        };
        let closed = Closed {
            deletion: Deletion {
                circle: *circle,
                close: close.hash(),
                at: now / 1000,
                envelopes: held.count,
                bytes: held.bytes,
            },
            close: close.bytes().to_vec(),
            devices: held.devices().collect(),
        };
        self.closed_tree.insert(circle.0, closed.encode())?;
        self.db.flush()?;
        self.delete_rows(circle)?;
        self.keys.forget(&[*circle], &self.storage)?;
        self.circles.remove(circle);
        self.index(circle);
        let deletion = closed.deletion.clone();
        tracing::info!(%circle, envelopes = deletion.envelopes, bytes = deletion.bytes, "a circle was closed: its envelopes and operations are deleted");
        self.closed.insert(*circle, closed);
        Ok(Some(deletion))
    }

    /// Deletes every row of `circle` but its closing's record.
    fn delete_rows(&self, circle: &CircleId) -> Result<(), MailboxError> {
        for tree in [&self.ops, &self.envelopes, &self.circles_tree] {
            crate::store::delete_prefix(tree, &circle.0)?;
        }
        Ok(())
    }

    /// Drops the circles with no new envelope within the retention; returns how many.
    pub fn sweep(&mut self, now: i64) -> Result<usize, MailboxError> {
        let horizon = now - i64::try_from(self.limits.retention.as_micros()).unwrap_or(i64::MAX);
        let old: Vec<CircleId> = self
            .circles
            .iter()
            .filter(|(_, h)| h.last_active < horizon)
            .map(|(c, _)| *c)
            .collect();
        for circle in &old {
            self.delete_rows(circle)?;
            self.keys.forget(&[*circle], &self.storage)?;
            let before = self.circles.get(circle).map_or((0, 0, 0), Held::size);
            self.circles.remove(circle);
            self.index(circle);
            self.recount(circle, before);
            tracing::info!(%circle, "dropped a circle past its retention");
        }
        let expired: Vec<CircleId> = self
            .closed
            .iter()
            .filter(|(_, c)| c.deletion.at.saturating_mul(1000) < horizon)
            .map(|(c, _)| *c)
            .collect();
        for circle in &expired {
            self.closed_tree.remove(circle.0)?;
            self.closed.remove(circle);
        }
        if !old.is_empty() || !expired.is_empty() {
            self.db.flush()?;
        }
        Ok(old.len())
    }
}

/// `ops` of `circle` sealed with the circle's key, made first if it has none and made
/// durable before anything sealed with it reaches sled (which flushes on its own schedule
/// too).
fn sealed_ops(
    keys: &mut CircleKeys,
    storage: &StorageKey,
    circle: &CircleId,
    ops: &[&SignedOp],
) -> Result<sled::Batch, String> {
    let mut batch = sled::Batch::default();
    if ops.is_empty() {
        return Ok(batch);
    }
    keys.get_or_make(circle, storage)
        .map_err(|e| e.to_string())?;
    keys.sync().map_err(|e| e.to_string())?;
    let key = keys
        .get(circle)
        .ok_or_else(|| "the circle's key was just made".to_string())?;
    for op in ops {
        let k = keys::op(circle, &op.hash().0);
        let sealed = key
            .seal(&op_place(&k), op.bytes())
            .map_err(|e| e.to_string())?;
        batch.insert(k, sealed);
    }
    Ok(batch)
}

/// The place an operation is sealed to: its key in the `ops` tree.
fn op_place(key: &[u8]) -> Vec<u8> {
    let mut p = b"mailbox op".to_vec();
    p.extend_from_slice(key);
    p
}

/// Whether the policy lets the mailbox keep a circle resolved as `resolution`.
fn serves(limits: &MailboxLimits, resolution: &Resolution) -> bool {
    match &limits.named_only {
        None => true,
        Some(me) => resolution.names_relay(me),
    }
}

impl Mailbox {
    /// The time of the message being handled (milliseconds).
    pub(crate) fn set_now(&mut self, now_ms: i64) {
        self.now = now_ms;
    }

    /// Whether `device`, a member's, is served `circle` now: not once an emergency access
    /// it holds has ended (its removal may not have arrived yet).
    fn serves_now(&self, circle: &CircleId, device: &DeviceId) -> bool {
        self.circles.get(circle).is_none_or(|h| {
            let r = h.membership.resolution();
            r.emergency.is_empty() || r.reader_at(device, self.now).is_some()
        })
    }
}

impl Local for Mailbox {
    fn shared_with(&self, device: &DeviceId) -> Vec<CircleId> {
        self.members
            .get(device)
            .map(|s| {
                s.iter()
                    .filter(|c| self.serves_now(c, device))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn shares(&self, device: &DeviceId, circle: &CircleId) -> bool {
        self.members.get(device).is_some_and(|s| s.contains(circle))
            && self.serves_now(circle, device)
    }

    fn membership(&self, circle: &CircleId) -> Option<&MembershipLog> {
        self.circles.get(circle).map(|h| h.membership.log())
    }

    fn closed(&self, circle: &CircleId, device: &DeviceId) -> Option<Vec<u8>> {
        let c = self.closed.get(circle)?;
        c.devices.contains(device).then(|| c.close.clone())
    }

    fn vector(&self, circle: &CircleId, doc: DocKind) -> Vector {
        self.circles
            .get(circle)
            .and_then(|h| h.vectors.get(&doc).cloned())
            .unwrap_or_default()
    }

    fn envelopes(&self, log: &LogId, from: u64, limit: usize) -> Vec<Vec<u8>> {
        let range = keys::envelope(log, from)..=keys::envelope(log, u64::MAX);
        let read = self.envelopes.range(range).take(limit);
        read.filter_map(|item| match item {
            Ok((_, v)) => Some(v.to_vec()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the mailbox");
                None
            }
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use cercle_crdt::{EntryKind, IdentityUpdate, NewEntry, Role, Timestamp};

    use super::*;
    use crate::circle::Circle;
    use crate::crypto::SecureRng;
    use crate::identity::{LocalIdentity, Profile};

    fn person(name: &str) -> LocalIdentity {
        let p = Profile::new(name, "infirmière", None, None).unwrap();
        LocalIdentity::generate(p, Timestamp(1)).unwrap()
    }

    fn rng() -> SecureRng {
        rand::SeedableRng::seed_from_u64(5)
    }

    /// A coordinator's circle with a nurse.
    struct Scene {
        gp: LocalIdentity,
        nurse: LocalIdentity,
        circle: Circle,
    }

    impl Scene {
        fn new() -> Scene {
            let gp = person("Dr Martin");
            let nurse = person("Julien");
            let (mut circle, _) =
                Circle::create(&gp, &IdentityUpdate::default(), Timestamp(1), &mut rng()).unwrap();
            let card = nurse.public().card(&[]);
            let _ = circle
                .add_member(&gp, &card, Role::Professional, Timestamp(2), &mut rng())
                .unwrap();
            Scene { gp, nurse, circle }
        }

        /// The envelopes of one new note by the coordinator.
        fn note(&mut self, text: &str) -> Vec<Vec<u8>> {
            let entry = NewEntry {
                kind: EntryKind::Observation,
                text: text.into(),
                vitals: None,
            };
            let member = self.gp.member();
            let w = self.circle.write::<cercle_crdt::LiaisonNotebook, _>(
                &self.gp,
                Timestamp(3),
                &mut rng(),
                |nb| nb.add_entry(member, entry, Timestamp(3)),
            );
            w.value.unwrap();
            w.staged.batch.envelope_bytes()
        }

        fn push(&self, envelopes: Vec<Vec<u8>>) -> Received {
            Received {
                circle: self.circle.id(),
                ops: self
                    .circle
                    .membership()
                    .ops()
                    .map(|o| o.bytes().to_vec())
                    .collect(),
                envelopes,
            }
        }
    }

    fn open(dir: &Path, limits: MailboxLimits) -> Mailbox {
        Mailbox::open(dir, limits, StorageKey::derive(&[5; 32])).unwrap()
    }

    #[test]
    fn a_members_push_is_kept_across_reopening_and_its_log_goes_on() {
        let mut scene = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let first = scene.note("un");
        let mut mailbox = open(dir.path(), MailboxLimits::default());
        let d = mailbox.receive(&scene.gp.device(), scene.push(first.clone()), 10);
        assert_eq!((d.envelopes, d.refused.clone()), (first.len(), Vec::new()));
        let id = scene.circle.id();
        // Both members may pull it; the relay serves exactly what it stored.
        assert_eq!(mailbox.shared_with(&scene.nurse.device()), vec![id]);
        assert!(mailbox.shares(&scene.nurse.device(), &id));
        assert!(!mailbox.shares(&scene.nurse.device(), &CircleId([9; 32])));
        let vector = mailbox.vector(&id, DocKind::LiaisonNotebook);
        assert_eq!(vector, scene.circle.vector(DocKind::LiaisonNotebook));
        let log = LogId {
            circle: id,
            doc: DocKind::LiaisonNotebook,
            device: scene.gp.device(),
        };
        let stored = mailbox.envelopes(&log, 1, 10);
        assert_eq!(stored, first);
        let totals = mailbox.totals();
        // Durable once committed (the relay commits before acknowledging); nothing more
        // to flush the second time.
        mailbox.commit().unwrap();
        assert!(!mailbox.unflushed);
        mailbox.commit().unwrap();
        drop(mailbox);

        let mut mailbox = open(dir.path(), MailboxLimits::default());
        assert_eq!(mailbox.totals(), totals);
        assert_eq!(mailbox.vector(&id, DocKind::LiaisonNotebook), vector);
        // The chain resumes where it stopped: the next envelope follows, a replay is quiet.
        let second = scene.note("deux");
        let d = mailbox.receive(&scene.gp.device(), scene.push(second), 20);
        assert_eq!((d.envelopes, d.refused), (1, Vec::new()));
        let d = mailbox.receive(&scene.gp.device(), scene.push(first), 30);
        assert_eq!((d.envelopes, d.refused), (0, Vec::new()));
        // The totals kept up to date match a full count.
        assert_eq!(mailbox.totals(), mailbox.count());
        assert_eq!(mailbox.totals().envelopes, 2);
    }

    #[test]
    fn a_stranger_can_neither_bring_a_circle_nor_pull_one() {
        let mut scene = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = open(dir.path(), MailboxLimits::default());
        let stranger = person("Inconnu");
        let envelopes = scene.note("un");
        let d = mailbox.receive(&stranger.device(), scene.push(envelopes.clone()), 10);
        assert_eq!(d.refused, vec![Refusal::NotMember]);
        assert_eq!(mailbox.totals(), Totals::default());

        mailbox.receive(&scene.gp.device(), scene.push(envelopes.clone()), 10);
        let id = scene.circle.id();
        assert!(mailbox.shared_with(&stranger.device()).is_empty());
        assert!(!mailbox.shares(&stranger.device(), &id));
        assert_eq!(mailbox.refused_pulls(&stranger.device(), &[id]), 1);
        assert_eq!(mailbox.refused_pulls(&scene.nurse.device(), &[id]), 0);
        let d = mailbox.receive(&stranger.device(), scene.push(envelopes), 10);
        assert_eq!(d.refused, vec![Refusal::NotMember]);
    }

    #[test]
    fn a_closed_circle_is_deleted_its_key_forgotten_and_only_its_members_told() {
        let mut scene = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = open(dir.path(), MailboxLimits::default());
        let first = scene.note("un");
        mailbox.receive(&scene.gp.device(), scene.push(first), 10);
        assert_eq!(mailbox.totals().envelopes, 1);
        let id = scene.circle.id();
        let _ = scene.circle.close(&scene.gp, Timestamp(5)).unwrap();
        let d = mailbox.receive(&scene.gp.device(), scene.push(Vec::new()), 20_000);
        let deleted = d
            .deleted
            .expect("the closing is answered with the deletion");
        assert_eq!((deleted.envelopes, deleted.at), (1, 20));
        assert_eq!(mailbox.totals().envelopes, 0);
        assert_eq!(mailbox.totals().closed, 1);
        // Nothing of it is shared, pulled or taken any more; a member asking again gets
        // the same deletion, a stranger nothing.
        assert!(mailbox.shared_with(&scene.nurse.device()).is_empty());
        let late = scene.note("deux");
        let d = mailbox.receive(&scene.nurse.device(), scene.push(late), 30_000);
        assert_eq!(d.deleted.map(|x| x.close), Some(deleted.close));
        assert_eq!(d.refused, vec![Refusal::Closed]);
        let stranger = person("Inconnu");
        let d = mailbox.receive(&stranger.device(), scene.push(Vec::new()), 30_000);
        assert!(d.deleted.is_none());
        assert!(mailbox.closed(&id, &scene.nurse.device()).is_some());
        assert!(mailbox.closed(&id, &stranger.device()).is_none());
        // Reopened: still closed, its operations gone and its key forgotten.
        drop(mailbox);
        let mailbox = open(dir.path(), MailboxLimits::default());
        assert_eq!(mailbox.totals().closed, 1);
        assert!(mailbox.membership(&id).is_none());
        assert!(mailbox.keys.get(&id).is_none());
        assert_eq!(mailbox.records().count(), 0, "no op nor envelope left");
    }

    #[test]
    fn a_circle_comes_only_with_its_own_genesis() {
        let mut scene = Scene::new();
        let other = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = open(dir.path(), MailboxLimits::default());
        let envelopes = scene.note("un");
        // Its operations without the genesis, or with another circle's: refused.
        let mut push = scene.push(envelopes.clone());
        push.ops
            .retain(|b| blake3::hash(b).as_bytes() != &scene.circle.id().0);
        let d = mailbox.receive(&scene.gp.device(), push, 10);
        assert_eq!(d.refused, vec![Refusal::NoGenesis]);
        let mut push = scene.push(envelopes.clone());
        push.ops = other.push(Vec::new()).ops;
        let d = mailbox.receive(&scene.gp.device(), push, 10);
        assert_eq!(d.refused, vec![Refusal::NoGenesis]);
        assert_eq!(mailbox.totals(), Totals::default());
        let d = mailbox.receive(&scene.gp.device(), scene.push(envelopes.clone()), 10);
        assert_eq!(d.envelopes, envelopes.len());
    }

    #[test]
    fn all_circles_together_stay_under_the_global_quota() {
        let mut first = Scene::new();
        let mut second = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let one = first.note("un");
        let size: u64 = one.iter().map(|e| e.len() as u64).sum();
        let limits = MailboxLimits {
            total_bytes: size + size / 2,
            ..MailboxLimits::default()
        };
        let mut mailbox = open(dir.path(), limits);
        let d = mailbox.receive(&first.gp.device(), first.push(one), 10);
        assert_eq!(d.refused, vec![]);
        // Another circle's note would pass the total: refused, and nothing of it stored.
        let other = second.note("deux");
        let d = mailbox.receive(&second.gp.device(), second.push(other), 20);
        assert_eq!(d.refused, vec![Refusal::Full]);
        assert_eq!(d.envelopes, 0);
        assert_eq!(mailbox.totals().bytes, size);
        // At the quota, not even a new circle's membership is taken.
        let limits = MailboxLimits {
            total_bytes: size,
            ..MailboxLimits::default()
        };
        drop(mailbox);
        let mut mailbox = open(dir.path(), limits);
        let circles = mailbox.totals().circles;
        let mut third = Scene::new();
        let env = third.note("trois");
        let d = mailbox.receive(&third.gp.device(), third.push(env), 30);
        assert_eq!(d.refused, vec![Refusal::Full]);
        assert_eq!(mailbox.totals().circles, circles);
        assert_eq!(mailbox.totals().bytes, size);
    }

    #[test]
    fn a_device_brings_new_circles_at_a_bounded_rate() {
        let dir = tempfile::tempdir().unwrap();
        let limits = MailboxLimits {
            new_circles_burst: 2,
            new_circle_every: Duration::from_secs(60),
            ..MailboxLimits::default()
        };
        let mut mailbox = open(dir.path(), limits);
        let gp = person("Dr Martin");
        let circle = |n: i64| {
            let (mut c, _) =
                Circle::create(&gp, &IdentityUpdate::default(), Timestamp(n), &mut rng()).unwrap();
            let entry = NewEntry {
                kind: EntryKind::Observation,
                text: "note".into(),
                vitals: None,
            };
            let member = gp.member();
            let w =
                c.write::<cercle_crdt::LiaisonNotebook, _>(&gp, Timestamp(n), &mut rng(), |nb| {
                    nb.add_entry(member, entry, Timestamp(n))
                });
            let envelopes = w.staged.batch.envelope_bytes();
            Received {
                circle: c.id(),
                ops: c.membership().ops().map(|o| o.bytes().to_vec()).collect(),
                envelopes,
            }
        };
        let minute = 60_000_000;
        assert_eq!(mailbox.receive(&gp.device(), circle(1), 0).refused, vec![]);
        assert_eq!(mailbox.receive(&gp.device(), circle(2), 0).refused, vec![]);
        let third = circle(3);
        let d = mailbox.receive(&gp.device(), third.clone(), minute / 2);
        assert_eq!(d.refused, vec![Refusal::TooManyNewCircles]);
        assert_eq!(mailbox.totals().circles, 2);
        // A circle already held is not new: its members push on.
        let again = circle(1);
        assert_eq!(
            mailbox.receive(&gp.device(), again, minute / 2).refused,
            vec![]
        );
        // A minute later, one more.
        assert_eq!(mailbox.receive(&gp.device(), third, minute).refused, vec![]);
        assert_eq!(mailbox.totals().circles, 3);
    }

    #[test]
    fn a_forged_envelope_is_refused_and_not_stored() {
        let mut scene = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = open(dir.path(), MailboxLimits::default());
        let mut forged = scene.note("un");
        if let Some(byte) = forged[0].last_mut() {
            *byte ^= 1;
        }
        let d = mailbox.receive(&scene.gp.device(), scene.push(forged), 10);
        assert_eq!(d.envelopes, 0);
        assert_eq!(
            d.refused.iter().map(Refusal::kind).collect::<Vec<_>>(),
            vec!["bad_signature"]
        );
        assert_eq!(mailbox.totals().envelopes, 0);
    }

    #[test]
    fn a_full_mailbox_refuses_and_an_idle_one_is_dropped() {
        let mut scene = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let limits = MailboxLimits {
            envelopes: 1,
            retention: Duration::from_secs(60),
            ..MailboxLimits::default()
        };
        let mut mailbox = open(dir.path(), limits);
        let mut both = scene.note("un");
        both.extend(scene.note("deux"));
        let d = mailbox.receive(&scene.gp.device(), scene.push(both), 0);
        assert_eq!((d.envelopes, d.refused), (1, vec![Refusal::Quota]));

        assert_eq!(mailbox.sweep(59_000_000).unwrap(), 0);
        assert_eq!(mailbox.sweep(61_000_000).unwrap(), 1);
        assert_eq!(mailbox.totals(), Totals::default());
        drop(mailbox);
        assert_eq!(open(dir.path(), limits).totals(), Totals::default());
    }

    #[test]
    fn the_exchange_acknowledges_passes_on_to_members_and_names_refusals() {
        use crate::sync::Message;
        use exchange::{Direction, Exchange};

        let mut scene = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let mut ex = Exchange::new(open(dir.path(), MailboxLimits::default()));
        let stranger = person("Inconnu");
        let (gp, nurse) = (scene.gp.device(), scene.nurse.device());
        for d in [gp, nurse, stranger.device()] {
            ex.connected(d, 0);
        }
        let envelopes = scene.note("un");
        let push = scene.push(envelopes);
        let data = Message::Data {
            circle: push.circle,
            ops: push.ops,
            envelopes: push.envelopes,
        };
        let step = ex.message(gp, data, 1);
        assert_eq!(step.stored.envelopes, 1);
        assert!(step.refused.is_empty(), "{:?}", step.refused);
        let to = |d: DeviceId| step.sends.iter().filter(move |(t, _)| *t == d);
        assert!(to(gp).any(|(_, m)| matches!(m, Message::Ack { .. })));
        assert!(to(nurse).any(|(_, m)| matches!(m, Message::Data { .. })));
        assert!(!to(stranger.device()).any(|(_, m)| matches!(m, Message::Data { .. })));

        // The stranger asks for the circle: nothing, and the refusal is named.
        let hello = Message::Hello {
            circles: vec![(scene.circle.id(), [0; 32])],
        };
        let step = ex.message(stranger.device(), hello, 2);
        // At most the relay's own list of what it shares with the stranger: nothing.
        assert!(
            step.sends
                .iter()
                .all(|(_, m)| matches!(m, Message::Hello { circles } if circles.is_empty())),
            "{:?}",
            step.sends
        );
        assert_eq!(step.refused, vec![(Direction::Pull, "not_member")]);
    }

    #[test]
    fn a_relay_for_named_circles_keeps_only_the_circles_that_name_it() {
        let mut scene = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let relay = person("Relais");
        let limits = MailboxLimits {
            named_only: Some(relay.device()),
            ..MailboxLimits::default()
        };
        let mut mailbox = open(dir.path(), limits);
        let first = scene.note("un");
        let d = mailbox.receive(&scene.gp.device(), scene.push(first.clone()), 10);
        assert_eq!(d.refused, vec![Refusal::NotNamed]);
        assert_eq!(mailbox.totals(), Totals::default());

        let peer = crate::net::peer_of(&relay.device()).unwrap_or_else(|| panic!("peer id"));
        let _ = scene
            .circle
            .set_relays(
                &scene.gp,
                vec![format!("/ip4/192.0.2.1/tcp/4001/p2p/{peer}")],
                Timestamp(4),
            )
            .unwrap();
        let d = mailbox.receive(&scene.gp.device(), scene.push(first), 20);
        assert_eq!((d.envelopes, d.refused), (1, Vec::new()));
    }

    /// The relay introduces the members of a circle it keeps to each other, from the signed
    /// log it holds: never a stranger who names the circle, never to one.
    #[test]
    fn the_exchange_introduces_members_to_each_other_and_nobody_else() {
        use crate::sync::Message;
        use exchange::Exchange;

        let mut scene = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = open(dir.path(), MailboxLimits::default());
        let stranger = person("Inconnu");
        let (gp, nurse, id) = (scene.gp.device(), scene.nurse.device(), scene.circle.id());
        let note = scene.note("un");
        let push = scene.push(note);
        mailbox.receive(&gp, push, 0);
        let mut ex = Exchange::new(mailbox);
        let hello = || Message::Hello {
            circles: vec![(id, [0; 32])],
        };
        let met = |step: &exchange::Step, to: DeviceId| -> Vec<Vec<DeviceId>> {
            step.sends
                .iter()
                .filter_map(|(t, m)| match m {
                    Message::Met { circle, devices } if *t == to && *circle == id => {
                        Some(devices.clone())
                    }
                    _ => None,
                })
                .collect()
        };
        for d in [gp, nurse, stranger.device()] {
            ex.connected(d, 0);
        }
        // The nurse's first Hello: she learns of the GP, the GP of her.
        let step = ex.message(nurse, hello(), 1);
        assert_eq!(met(&step, nurse), vec![vec![gp]]);
        assert_eq!(met(&step, gp), vec![vec![nurse]]);
        assert_eq!(step.introductions, 2);
        // Her next Hello: nothing changed, nobody is told again...
        let step = ex.message(nurse, hello(), 2);
        assert_eq!(step.introductions, 0);
        // ...until her list starts afresh (a dial through the relay may have failed): she
        // alone is told again.
        let later = exchange::RETELL_EVERY + 2;
        let step = ex.message(nurse, hello(), later);
        assert_eq!(
            (met(&step, nurse), met(&step, gp).len()),
            (vec![vec![gp]], 0)
        );
        // A stranger naming the circle learns nobody, and nobody learns of it.
        let step = ex.message(stranger.device(), hello(), later + 1);
        assert_eq!(step.introductions, 0);
        assert!(
            !step
                .sends
                .iter()
                .any(|(_, m)| matches!(m, Message::Met { .. }))
        );
        // Gone: no longer introduced.
        ex.disconnected(&gp);
        let step = ex.message(nurse, hello(), later + 2);
        assert_eq!(step.introductions, 0);
        // Back: both are told of each other again.
        ex.connected(gp, later + 3);
        let step = ex.message(gp, hello(), later + 3);
        assert_eq!(
            (met(&step, nurse), met(&step, gp)),
            (vec![vec![gp]], vec![vec![nurse]])
        );
    }

    /// A member's open invites are pointed to for whoever holds a tag, while the member is
    /// connected; a stranger's are not, and too long a list is refused whole.
    #[test]
    fn the_exchange_points_a_short_codes_holder_to_the_inviter_it_announced() {
        use crate::sync::Message;
        use exchange::Exchange;

        let mut scene = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = open(dir.path(), MailboxLimits::default());
        let (stranger, other) = (person("Inconnu").device(), person("Autre").device());
        let gp = scene.gp.device();
        let note = scene.note("un");
        let push = scene.push(note);
        mailbox.receive(&gp, push, 0);
        let mut ex = Exchange::new(mailbox);
        for d in [gp, stranger, other] {
            ex.connected(d, 0);
        }
        let at = |step: &exchange::Step| -> Vec<(DeviceId, DeviceId)> {
            step.sends
                .iter()
                .filter_map(|(to, m)| match m {
                    Message::InviteAt { tag, device } if *tag == [1; 16] => Some((*to, *device)),
                    _ => None,
                })
                .collect()
        };
        let seek = Message::InviteSeek { tag: [1; 16] };
        assert!(at(&ex.message(stranger, seek.clone(), 1)).is_empty());
        // A stranger's announcement points nobody to it.
        ex.message(
            other,
            Message::InviteOpen {
                tags: vec![[1; 16]],
            },
            2,
        );
        assert!(at(&ex.message(stranger, seek.clone(), 2)).is_empty());
        let step = ex.message(
            gp,
            Message::InviteOpen {
                tags: vec![[1; 16], [2; 16]],
            },
            3,
        );
        assert!(step.refused.is_empty());
        assert_eq!(
            at(&ex.message(stranger, seek.clone(), 4)),
            vec![(stranger, gp)]
        );
        // A new list replaces the last one.
        ex.message(
            gp,
            Message::InviteOpen {
                tags: vec![[2; 16]],
            },
            5,
        );
        assert!(at(&ex.message(stranger, seek.clone(), 6)).is_empty());
        let too_many = vec![[3; 16]; crate::invite::MAX_OPEN_INVITES + 1];
        let step = ex.message(gp, Message::InviteOpen { tags: too_many }, 7);
        assert_eq!(step.refused, vec![(exchange::Direction::Push, "protocol")]);
        // Gone: nobody is pointed to it.
        ex.message(
            gp,
            Message::InviteOpen {
                tags: vec![[1; 16]],
            },
            8,
        );
        ex.disconnected(&gp);
        assert!(at(&ex.message(stranger, seek, 9)).is_empty());
    }

    /// A GP with a whole practice at one relay, 1 500 circles (the rendezvous this replaced
    /// registered 32 per peer): every co-member connected there is told of the GP, and the
    /// GP of each, once; a round where nothing changed introduces nobody.
    #[test]
    fn a_professional_in_1500_circles_is_introduced_to_every_co_member_once() {
        use crate::sync::Message;
        use exchange::Exchange;

        const CIRCLES: usize = 1_500;
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = open(dir.path(), MailboxLimits::default());
        let gp = person("Dr Martin");
        // A nurse in every circle, and in each a relative of that patient only.
        let nurse = person("Julien");
        let relatives: Vec<LocalIdentity> =
            (0..CIRCLES).map(|n| person(&format!("R{n}"))).collect();
        let mut rng = rng();
        for (n, relative) in relatives.iter().enumerate() {
            let t = Timestamp(n as i64 + 1);
            let (mut c, _) = Circle::create(&gp, &IdentityUpdate::default(), t, &mut rng).unwrap();
            for who in [&nurse, relative] {
                let card = who.public().card(&[]);
                let _ = c
                    .add_member(&gp, &card, Role::Professional, t, &mut rng)
                    .unwrap();
            }
            let ops = c.membership().ops().map(|o| o.bytes().to_vec()).collect();
            let push = Received {
                circle: c.id(),
                ops,
                envelopes: Vec::new(),
            };
            let d = mailbox.receive(&gp.device(), push, 0);
            assert_eq!(d.refused, vec![], "circle {n}");
        }
        let mut ex = Exchange::new(mailbox);
        let summary = || Message::Summary { digest: [0; 32] };
        // Who was told of whom, from a step's sends.
        let told = |step: &exchange::Step| -> Vec<(DeviceId, DeviceId)> {
            step.sends
                .iter()
                .filter_map(|(to, m)| match m {
                    Message::Met { devices, .. } => Some(devices.iter().map(|d| (*to, *d))),
                    _ => None,
                })
                .flatten()
                .collect()
        };
        let gp = gp.device();
        ex.connected(gp, 0);
        ex.message(gp, summary(), 1);
        // Everyone else comes, and says what a node says first.
        let mut heard: BTreeSet<(DeviceId, DeviceId)> = BTreeSet::new();
        let mut introductions = 0;
        for who in std::iter::once(&nurse).chain(&relatives) {
            ex.connected(who.device(), 2);
            let step = ex.message(who.device(), summary(), 2);
            introductions += step.introductions;
            heard.extend(told(&step));
        }
        for who in std::iter::once(&nurse).chain(&relatives) {
            assert!(heard.contains(&(who.device(), gp)), "not told of the GP");
            assert!(heard.contains(&(gp, who.device())), "the GP not told of it");
        }
        // The nurse: one Met to her naming the GP, one to the GP naming her. Each relative:
        // one to it naming the GP and the nurse, one to each of them naming it.
        assert_eq!(introductions, 2 + 3 * CIRCLES);
        assert_eq!(heard.len(), 2 + 4 * CIRCLES);
        // The GP's next round, nothing changed: nobody is introduced.
        let step = ex.message(gp, summary(), 3);
        assert_eq!(step.introductions, 0);
        // Ten minutes on, the GP is told again of everyone (in one Met per circle shared
        // with someone not named yet), and nobody of the GP.
        let step = ex.message(gp, summary(), exchange::RETELL_EVERY + 4);
        assert_eq!(step.introductions, CIRCLES);
        let again: BTreeSet<DeviceId> = told(&step)
            .into_iter()
            .inspect(|(to, _)| assert_eq!(*to, gp))
            .map(|(_, about)| about)
            .collect();
        assert_eq!(again.len(), CIRCLES + 1);
    }

    /// A device sending refused data without pause is set aside once over its budget, and
    /// its messages are then dropped unread; refusals of the relay's policy, which honest
    /// peers meet too, never set one aside.
    #[test]
    fn the_exchange_sets_aside_a_device_over_its_budget_but_not_for_policy() {
        use crate::sync::Message;
        use exchange::Exchange;

        let scene = Scene::new();
        let dir = tempfile::tempdir().unwrap();
        let relay = person("Relais");
        let limits = MailboxLimits {
            named_only: Some(relay.device()),
            ..MailboxLimits::default()
        };
        let mut ex = Exchange::new(open(dir.path(), limits));
        let (gp, nurse) = (scene.gp.device(), scene.nurse.device());
        ex.connected(gp, 0);
        ex.connected(nurse, 0);
        // The circle does not name this relay: every push refused, none sets the GP aside.
        for t in 0..200 {
            let push = scene.push(Vec::new());
            let data = Message::Data {
                circle: push.circle,
                ops: push.ops,
                envelopes: push.envelopes,
            };
            let step = ex.message(gp, data, t);
            assert_eq!(step.refused.len(), 1);
            assert_eq!(step.set_aside, None);
        }
        // Garbage, at a relay that keeps the circle: set aside past the budget, then not
        // read.
        let dir = tempfile::tempdir().unwrap();
        let mut mailbox = open(dir.path(), MailboxLimits::default());
        let d = mailbox.receive(&gp, scene.push(Vec::new()), 0);
        assert_eq!(d.refused, vec![]);
        let mut ex = Exchange::new(mailbox);
        ex.connected(nurse, 0);
        let garbage = || Message::Data {
            circle: scene.circle.id(),
            ops: Vec::new(),
            envelopes: vec![vec![0x42; 8]; 16],
        };
        let mut aside_at = None;
        for t in 0..10 {
            let step = ex.message(nurse, garbage(), 1_000 + t);
            if step.set_aside.is_some() {
                aside_at = Some(t);
                break;
            }
        }
        let refusals = crate::refusals::RECORD_BURST as i64;
        assert_eq!(aside_at, Some(refusals / 16), "16 refusals a message");
        let step = ex.message(nurse, garbage(), 2_000);
        assert!(step.ignored && step.refused.is_empty());
        // A minute later, read again.
        let later = 2_000 + crate::refusals::SET_ASIDE_FOR.as_millis() as i64;
        assert!(!ex.message(nurse, garbage(), later).ignored);
    }
}
