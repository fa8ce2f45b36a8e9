//! The sync protocol between two nodes, sans-I/O: messages and time in, messages out. No
//! sockets, no tokio; the network shell (`net`) carries [`Message`]s and the node applies
//! what [`PeerSync`] hands back through the envelope checks.
//!
//! Per connection, symmetric:
//!
//! 1. On connect (and periodically, for anti-entropy) each side sends one
//!    [`Message::Summary`]: one digest over the digests of the circles it shares with the
//!    peer's device. Two nodes holding the same of every circle they share stop there: one
//!    small message each way, however many circles.
//! 2. Where the summaries differ, each side lists its shared circles in a
//!    [`Message::Hello`], a digest per circle it shares with the peer's device, and only
//!    those: a peer that is a member of nothing learns nothing. A side that receives a
//!    `Hello` without having listed its own circles in this round lists them too.
//! 3. For each circle both list with different digests, the receiver answers with
//!    [`Message::Have`]: the membership operations it holds and, per document, its version
//!    vector (last sequence number per device).
//! 4. The other side sends exactly what is missing, in [`Message::Data`] messages of at most
//!    [`MAX_DATA_BYTES`]: membership operations first (envelopes cannot be checked without
//!    them), then envelope ranges across documents. At most [`MAX_IN_FLIGHT`] bytes are
//!    unacknowledged at a time; each `Data` is answered by [`Message::Ack`].
//! 5. A new envelope, once durable here, is pushed at once ([`PeerSync::push`]) if the peer
//!    shares the circle, within the same budget.
//!
//! What waits to be sent is queued as references (a log and a range of sequence numbers),
//! read from the store only when a `Data` message is built, so a peer that stops
//! acknowledging costs at most [`MAX_QUEUED`] small entries. Past that, new work is
//! dropped and a `Summary` goes out once the queue drains: anti-entropy finds what was
//! dropped.
//!
//! Two nodes with the same state exchange one `Summary` each way and nothing else.
//!
//! A circle offered in a `Hello` and not held here is asked for in full, at most
//! [`MAX_UNKNOWN_ASKED`] at a time; the next are asked for as those arrive, from a list of
//! at most [`MAX_OFFERED`] kept per peer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cercle_crdt::DocKind;
use serde::{Deserialize, Serialize};

use crate::circle::membership::{CircleId, MembershipLog, OpHash, SignedOp};
use crate::envelope::{EnvelopeRef, LogId};
use crate::identity::DeviceId;

pub mod file;
pub mod memory;
pub mod wire;

/// The largest `Data` message, in bytes of operations and envelopes.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;
/// Unacknowledged `Data` bytes allowed per peer.
pub const MAX_IN_FLIGHT: usize = 4 * MAX_DATA_BYTES;
/// Late acknowledgements taken for data sent before the exchange started again, at most.
pub const MAX_OWED: usize = 2 * MAX_IN_FLIGHT;
/// At most this many circles in one `Hello`, operations in one `Have`, devices per vector.
pub const MAX_ITEMS: usize = 100_000;
/// At most this many circles in one `Changed` (a node names the one whose membership
/// changed; an answer, some of those).
pub const MAX_CHANGED: usize = 64;
/// At most this many circles unknown here are asked for at a time (with 16, a second
/// device taking 1 000 circles waited between asks; what they send is bounded by the
/// sender's [`MAX_IN_FLIGHT`] whatever the number asked).
pub const MAX_UNKNOWN_ASKED: usize = 64;
/// Circles offered by the peer, not held here and not asked for yet, kept at most (the
/// rest are offered again by the next `Hello`). Sized for a professional in 1 500 circles
/// meeting a new device of theirs.
pub const MAX_OFFERED: usize = 2_048;
/// Envelope ranges and operation lists queued for one peer, at most.
pub const MAX_QUEUED: usize = 4096;
/// A circle asked for in full and still not here is asked for again after this long (a
/// message lost when a connection was replaced would otherwise wait for the next
/// anti-entropy round).
pub const ASK_AGAIN_MS: i64 = 3_000;
/// At most this many devices in one [`Message::Met`].
pub const MAX_MET_DEVICES: usize = 256;
/// Anti-entropy: a new `Summary` this often (milliseconds) while connected.
pub const RESYNC_EVERY_MS: i64 = 60_000;

/// Each side's first message on its stream is a `Summary`: a peer whose stream to us has
/// delivered nothing this long (milliseconds) after ours to it opened is on a half-open
/// connection (its stream was dropped on the way, say), and is disconnected so that the
/// next connection starts afresh.
pub const HALF_OPEN_MS: i64 = 20_000;

/// A digest of what a node holds of one circle.
pub type Digest = [u8; 32];

/// One document's version vector: each device's last sequence number.
pub type Vector = BTreeMap<DeviceId, u64>;

/// What travels between two nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The circles shared with the peer and a digest of each.
    Hello { circles: Vec<(CircleId, Digest)> },
    /// One digest over the digests of every circle shared with the peer ([`summary`]):
    /// equal on both sides, nothing more is said.
    Summary { digest: Digest },
    /// The membership of these circles changed on the sender (a member or device added or
    /// removed, a circle joined), and their digests there now: each is treated as in a
    /// `Hello`, and unless this is the `answer`, the receiver answers with its own digests
    /// of those that differ. Costs what changed, not a list of every circle.
    Changed {
        circles: Vec<(CircleId, Digest)>,
        answer: bool,
    },
    /// What this side holds of a circle whose digest differed.
    Have {
        circle: CircleId,
        ops: Vec<OpHash>,
        vectors: Vec<(DocKind, Vector)>,
    },
    /// Operations and envelopes the peer lacks.
    Data {
        circle: CircleId,
        #[serde(with = "wire::byte_strings")]
        ops: Vec<Vec<u8>>,
        #[serde(with = "wire::byte_strings")]
        envelopes: Vec<Vec<u8>>,
    },
    /// A `Data` message of `bytes` was received.
    Ack { bytes: u64 },
    /// An invitee proves an invite's secret and gives its contact card (sent to the
    /// inviter only; handled by the node, not by this protocol).
    Join {
        invite: String,
        #[serde(with = "serde_bytes")]
        secret: Vec<u8>,
        card: String,
    },
    /// An on-call professional asks a member's node for emergency read access to a circle
    /// (from its emergency code), with why and their contact card (handled by the node,
    /// see [`crate::emergency`]); answered with a `JoinAnswer` for `request`.
    BreakGlass {
        request: String,
        circle: CircleId,
        reason: String,
        /// How long, at most 24 hours.
        minutes: u32,
        card: String,
    },
    /// A member let in by an emergency access read `what` (a document kind, or `export`)
    /// of `circle` at `at`: told to the team's connected devices, which keep it in the
    /// circle's audit trail (handled by the node).
    Consulted {
        circle: CircleId,
        what: String,
        at: i64,
    },
    /// The inviter's answer to a `Join`: no reason if the member was added. To a `Join`
    /// made from a short code, the accepted answer names the circle and proves the
    /// inviter holds the invite ([`crate::invite::answer_proof`]).
    JoinAnswer {
        invite: String,
        refused: Option<String>,
        #[serde(default)]
        circle: Option<CircleId>,
        #[serde(default)]
        proof: Option<[u8; 32]>,
        /// Why, by its stable name (see `InviteError::code`), when refused.
        #[serde(default)]
        code: Option<String>,
    },
    /// Sent to a relay by an inviter: the tags of its open invites (the whole list, at
    /// most [`crate::invite::MAX_OPEN_INVITES`]), so that an invitee holding a short
    /// code can find it there (handled by the relay).
    InviteOpen { tags: Vec<[u8; 16]> },
    /// Sent to a relay by an invitee holding a short code: who answers for this tag?
    InviteSeek { tag: [u8; 16] },
    /// The relay's answer to an `InviteSeek`: the device connected to it that announced
    /// the tag (the invitee checks it against the code's fingerprint and then the proof).
    InviteAt { tag: [u8; 16], device: DeviceId },
    /// A new device proves a pairing code's secret and gives its X25519 key, to the
    /// member's device that made the code (handled by the node, see [`crate::pairing`]).
    Pair {
        pairing: String,
        #[serde(with = "serde_bytes")]
        secret: Vec<u8>,
        x25519: [u8; 32],
    },
    /// The answer to a `Pair`: the new device's identity (its certificate, the member's
    /// profile and its signature) and the member's other devices; or why not.
    PairAnswer {
        pairing: String,
        refused: Option<String>,
        identity: Option<Box<crate::identity::PublicIdentity>>,
        devices: Vec<crate::identity::DeviceCertificate>,
    },
    /// Asks a member for a document's content from `offset` on (handled by the node).
    BlobWant {
        circle: CircleId,
        #[serde(with = "serde_bytes")]
        blob: Vec<u8>,
        offset: u64,
    },
    /// One part of a document's content, answering a `BlobWant`.
    BlobPart {
        circle: CircleId,
        #[serde(with = "serde_bytes")]
        blob: Vec<u8>,
        offset: u64,
        total: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Sent by a relay: devices of the circle's current members connected to it now, which
    /// the node may reach through it (at most [`MAX_MET_DEVICES`]; handled by the node,
    /// which checks them against its own view of the circle).
    Met {
        circle: CircleId,
        devices: Vec<DeviceId>,
    },
    /// Sent by a relay to a member's device that brought or asked about a circle's
    /// closing: the relay's signed receipt of the envelopes it deleted (handled by the
    /// node, which keeps it with the circle's tombstone).
    Deleted {
        receipt: Box<crate::tombstone::DeletionReceipt>,
    },
}

/// Why a message from the peer was refused (recorded; the connection may go on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncRejection {
    #[error("the peer sent data for a circle it does not share with this node")]
    NotShared,
    #[error("the message lists more than {MAX_ITEMS} items")]
    TooMany,
    #[error("a data message of {0} bytes is larger than {MAX_DATA_BYTES}")]
    TooLarge(usize),
    #[error("the peer acknowledged more than was sent")]
    BadAck,
}

impl Message {
    /// The bytes of operations and envelopes a `Data` message carries; `None` for any other
    /// message.
    pub fn data_size(&self) -> Option<usize> {
        match self {
            Message::Data { ops, envelopes, .. } => Some(data_bytes(ops, envelopes)),
            _ => None,
        }
    }
}

impl SyncRejection {
    /// A short, stable name of the reason (for counts and records).
    pub fn kind(&self) -> &'static str {
        match self {
            SyncRejection::NotShared => "not_shared",
            SyncRejection::TooMany => "too_many_items",
            SyncRejection::TooLarge(_) => "oversized_message",
            SyncRejection::BadAck => "bad_ack",
        }
    }
}

/// What the node holds, as the protocol needs to read it. Implemented over the store by the
/// node, over memory by tests and the simulations.
pub trait Local {
    /// The circles of which `device` belongs to a current member.
    fn shared_with(&self, device: &DeviceId) -> Vec<CircleId>;
    /// Whether `device` belongs to a current member of `circle` (one circle's question,
    /// asked for each message: a node in a thousand circles answers it without listing
    /// them).
    fn shares(&self, device: &DeviceId, circle: &CircleId) -> bool {
        self.shared_with(device).contains(circle)
    }
    /// The circle's membership log, if this node holds the circle.
    fn membership(&self, circle: &CircleId) -> Option<&MembershipLog>;
    /// Whether this node holds `circle` at all. A peer may offer a circle this node does not
    /// hold yet (it was just added to it): this node then asks for everything, and the node
    /// checks on receipt that the operations make it a member.
    fn knows(&self, circle: &CircleId) -> bool {
        self.membership(circle).is_some()
    }
    /// The hashes of the circle's membership operations, parents first (the order to
    /// send them in, so the peer never waits for a parent).
    fn op_hashes(&self, circle: &CircleId) -> Vec<OpHash> {
        let log = self.membership(circle).into_iter();
        log.flat_map(|l| l.ops().map(SignedOp::hash)).collect()
    }
    /// One operation's bytes.
    fn op(&self, circle: &CircleId, hash: &OpHash) -> Option<Vec<u8>> {
        Some(self.membership(circle)?.get(hash)?.bytes().to_vec())
    }
    /// The operation that ended a circle's sharing here (its `Close`, at a relay also a
    /// patient's objection), for `device` if it was a member's device of the circle (or a
    /// relay of it): a peer that still holds the circle is sent it instead of being asked
    /// for the circle; anyone else learns nothing.
    fn closed(&self, _circle: &CircleId, _device: &DeviceId) -> Option<Vec<u8>> {
        None
    }
    /// The version vector of one document.
    fn vector(&self, circle: &CircleId, doc: DocKind) -> Vector;
    /// Envelopes of one log from sequence number `from` on, at most `limit`.
    fn envelopes(&self, log: &LogId, from: u64, limit: usize) -> Vec<Vec<u8>>;

    /// The digest of a circle: its operations and every document's version vector.
    fn digest(&self, circle: &CircleId) -> Digest {
        let mut h = blake3::Hasher::new();
        match self.membership(circle) {
            // Kept by the log: the same set gives the same digest whatever the order.
            Some(log) => {
                h.update(&log.digest());
            }
            None => {
                let ops: BTreeSet<OpHash> = self.op_hashes(circle).into_iter().collect();
                let mut set = blake3::Hasher::new();
                for op in ops {
                    set.update(&op.0);
                }
                h.update(set.finalize().as_bytes());
            }
        }
        for doc in DocKind::ALL {
            h.update(doc.as_str().as_bytes());
            for (device, seq) in self.vector(circle, doc) {
                h.update(&device.0);
                h.update(&seq.to_le_bytes());
            }
        }
        *h.finalize().as_bytes()
    }
}

/// What the node must do with a message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub circle: CircleId,
    /// Membership operations, to insert first.
    pub ops: Vec<Vec<u8>>,
    /// Envelopes, for the receive checks.
    pub envelopes: Vec<Vec<u8>>,
}

/// Something still to send to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Queued {
    /// Operations to send, parents first.
    Ops {
        circle: CircleId,
        hashes: std::collections::VecDeque<OpHash>,
    },
    Range {
        log: LogId,
        from: u64,
        to: u64,
    },
}

impl Queued {
    fn circle(&self) -> CircleId {
        match self {
            Queued::Ops { circle, .. } => *circle,
            Queued::Range { log, .. } => log.circle,
        }
    }
}

/// The protocol's state for one connected peer device.
#[derive(Debug)]
pub struct PeerSync {
    peer: DeviceId,
    queue: VecDeque<Queued>,
    in_flight: usize,
    /// Bytes in flight when the exchange last started again: the peer may still
    /// acknowledge them (it received them before the stream was replaced). At most
    /// [`MAX_OWED`].
    owed: usize,
    last_round: Option<i64>,
    /// Work was dropped at [`MAX_QUEUED`]: a `Summary` goes out once the queue drains.
    behind: bool,
    /// Circles with gaps the peer was asked to fill, and when.
    gaps_asked: BTreeMap<CircleId, i64>,
    /// Circles the peer offered that are not held here, and when they were asked for.
    asked: Vec<(CircleId, Option<i64>)>,
    /// Circles the peer offered that are not held here and not asked for yet (at most
    /// [`MAX_OFFERED`]; asked for in the order of their ids).
    offered: BTreeSet<CircleId>,
    /// This side listed its circles (a `Hello`) since its last `Summary`.
    listed: bool,
    /// When this side's stream to the peer first opened.
    opened_at: Option<i64>,
    /// The peer's stream has delivered a message, of any kind.
    heard: bool,
    /// Messages sent and received, and data bytes, for status and tests.
    pub stats: SyncStats,
}

/// Counters of one peer's sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub sent: u64,
    pub received: u64,
    pub data_bytes_sent: u64,
    pub data_bytes_received: u64,
}

impl PeerSync {
    /// The state for a newly connected `peer`.
    pub fn new(peer: DeviceId) -> PeerSync {
        PeerSync {
            peer,
            queue: VecDeque::new(),
            in_flight: 0,
            owed: 0,
            last_round: None,
            behind: false,
            gaps_asked: BTreeMap::new(),
            asked: Vec::new(),
            offered: BTreeSet::new(),
            listed: false,
            opened_at: None,
            heard: false,
            stats: SyncStats::default(),
        }
    }

    /// The peer device.
    pub fn peer(&self) -> DeviceId {
        self.peer
    }

    /// Envelopes and ranges queued for the peer (for `status`).
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Unacknowledged `Data` bytes.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The first messages of a connection.
    pub fn connected(&mut self, local: &dyn Local, now: i64) -> Vec<Message> {
        self.opened_at.get_or_insert(now);
        self.queue.clear();
        self.owed = self.owed.saturating_add(self.in_flight).min(MAX_OWED);
        self.in_flight = 0;
        self.behind = false;
        vec![self.start_round(local, now)]
    }

    /// Messages to the peer were lost before reaching the network (its stream was replaced
    /// or could not keep up): nothing in flight will be acknowledged, so the budget is
    /// returned and the exchange starts again.
    pub fn lost(&mut self, local: &dyn Local, now: i64) -> Vec<Message> {
        self.connected(local, now)
    }

    /// A new round now (a `Summary`): the peer lists its circles if anything differs, and
    /// each side answers with what it lacks or has.
    pub fn resync(&mut self, local: &dyn Local, now: i64) -> Vec<Message> {
        vec![self.start_round(local, now)]
    }

    /// The peer's stream delivered a message, of any kind (a pairing device's, say, which
    /// the sync does not read): the connection is not half-open.
    pub fn heard(&mut self) {
        self.heard = true;
    }

    /// Whether the connection is half-open: this side's stream opened [`HALF_OPEN_MS`] ago
    /// or more and the peer's has delivered nothing. True once; the wait starts again.
    pub fn half_open(&mut self, now: i64) -> bool {
        if self.heard {
            return false;
        }
        match self.opened_at {
            Some(at) if now - at >= HALF_OPEN_MS => {
                self.opened_at = Some(now);
                true
            }
            _ => false,
        }
    }

    /// The membership of `circles` changed here, which the digests do not follow by pushes:
    /// a `Changed` with those the peer shares, so each side sends what the other lacks of
    /// them, and the peer asks for one it was just added to.
    pub fn changed(&mut self, local: &dyn Local, circles: &[CircleId]) -> Vec<Message> {
        let circles: Vec<(CircleId, Digest)> = circles
            .iter()
            .filter(|c| local.shares(&self.peer, c))
            .map(|c| (*c, local.digest(c)))
            .collect();
        if circles.is_empty() {
            return Vec::new();
        }
        self.stats.sent += 1;
        vec![Message::Changed {
            circles,
            answer: false,
        }]
    }

    /// Anti-entropy: a `Summary` when the last one is older than [`RESYNC_EVERY_MS`]; and
    /// circles offered, asked for and still not here are asked for again.
    pub fn tick(&mut self, local: &dyn Local, now: i64) -> Vec<Message> {
        let mut out = self.ask_offered(local);
        for (circle, at) in &mut self.asked {
            match at {
                // Asked during a `receive`, which has no clock: the wait starts now.
                None => *at = Some(now),
                Some(t) if now - *t < ASK_AGAIN_MS => {}
                Some(_) => {
                    *at = Some(now);
                    self.stats.sent += 1;
                    out.push(Message::Have {
                        circle: *circle,
                        ops: Vec::new(),
                        vectors: Vec::new(),
                    });
                }
            }
        }
        match self.last_round {
            Some(at) if now - at < RESYNC_EVERY_MS => {}
            _ => out.push(self.start_round(local, now)),
        }
        out.extend(self.fill(local, now));
        out
    }

    /// The round's first message: one digest for every shared circle.
    fn start_round(&mut self, local: &dyn Local, now: i64) -> Message {
        self.last_round = Some(now);
        self.listed = false;
        self.stats.sent += 1;
        Message::Summary {
            digest: summary(&self.digests(local)),
        }
    }

    /// The digests of the circles shared with the peer, by circle.
    fn digests(&self, local: &dyn Local) -> Vec<(CircleId, Digest)> {
        let mut circles: Vec<(CircleId, Digest)> = local
            .shared_with(&self.peer)
            .into_iter()
            .map(|c| (c, local.digest(&c)))
            .collect();
        circles.sort_unstable();
        circles.dedup_by_key(|(c, _)| *c);
        circles
    }

    /// The shared circles listed, a digest each.
    fn list(&mut self, local: &dyn Local) -> Message {
        self.listed = true;
        self.stats.sent += 1;
        Message::Hello {
            circles: self.digests(local),
        }
    }

    /// The peer offers `circle`, not shared with it here: if this node does not hold it,
    /// it is asked for in full in its turn (the node checks on receipt that its operations
    /// make it a member).
    fn offer(&mut self, local: &dyn Local, circle: CircleId) {
        if self.offered.len() < MAX_OFFERED
            && !local.knows(&circle)
            && !self.asked.iter().any(|(c, _)| *c == circle)
        {
            self.offered.insert(circle);
        }
    }

    /// Circles offered and now held (joined, or waiting as invitations) are forgotten;
    /// the next offered ones are asked for, up to [`MAX_UNKNOWN_ASKED`] at a time.
    fn ask_offered(&mut self, local: &dyn Local) -> Vec<Message> {
        self.asked.retain(|(c, _)| !local.knows(c));
        let mut out = Vec::new();
        while self.asked.len() < MAX_UNKNOWN_ASKED {
            let Some(circle) = self.offered.pop_first() else {
                break;
            };
            if local.knows(&circle) || self.asked.iter().any(|(c, _)| *c == circle) {
                continue;
            }
            // The time is set on the next tick (`receive` has no clock of its own here).
            self.asked.push((circle, None));
            self.stats.sent += 1;
            out.push(Message::Have {
                circle,
                ops: Vec::new(),
                vectors: Vec::new(),
            });
        }
        out
    }

    /// Asks the peer for what it holds of `circle` (a `Have`), when what it sent left gaps
    /// here: it answers with what is missing. At most once per [`ASK_AGAIN_MS`] per circle.
    pub fn ask_missing(&mut self, local: &dyn Local, circle: CircleId, now: i64) -> Vec<Message> {
        if !local.shares(&self.peer, &circle) {
            return Vec::new();
        }
        if self
            .gaps_asked
            .get(&circle)
            .is_some_and(|at| now - at < ASK_AGAIN_MS)
        {
            return Vec::new();
        }
        if self.gaps_asked.len() >= MAX_UNKNOWN_ASKED {
            self.gaps_asked.retain(|_, at| now - *at < ASK_AGAIN_MS);
        }
        self.gaps_asked.insert(circle, now);
        vec![self.have(local, circle)]
    }

    /// New envelopes, durable here: sent at once (those of circles the peer shares), in as
    /// few `Data` messages as their size allows.
    pub fn push(&mut self, local: &dyn Local, envelopes: &[EnvelopeRef], now: i64) -> Vec<Message> {
        if envelopes.is_empty() {
            return Vec::new();
        }
        let peer = self.peer;
        let mut shared: BTreeMap<CircleId, bool> = BTreeMap::new();
        let mut shares = |circle: CircleId| {
            *shared
                .entry(circle)
                .or_insert_with(|| local.shares(&peer, &circle))
        };
        for e in envelopes.iter().filter(|e| shares(e.log.circle)) {
            // Consecutive envelopes of one log (a burst of notes) are one range.
            if let Some(Queued::Range { log, to, .. }) = self.queue.back_mut()
                && *log == e.log
                && *to + 1 == e.seq
            {
                *to = e.seq;
                continue;
            }
            if !self.enqueue(Queued::Range {
                log: e.log,
                from: e.seq,
                to: e.seq,
            }) {
                break;
            }
        }
        self.fill(local, now)
    }

    /// Queues `item` if there is room; otherwise remembers to say `Summary` once drained.
    fn enqueue(&mut self, item: Queued) -> bool {
        if self.queue.len() >= MAX_QUEUED {
            if !self.behind {
                tracing::debug!(peer = %self.peer, "sync queue full; anti-entropy will catch up");
            }
            self.behind = true;
            return false;
        }
        self.queue.push_back(item);
        true
    }

    /// Handles one message from the peer: the replies, and what to apply.
    pub fn receive(
        &mut self,
        local: &dyn Local,
        message: Message,
        now: i64,
    ) -> Result<(Vec<Message>, Option<Received>), SyncRejection> {
        self.stats.received += 1;
        self.heard();
        // The whole list only for the messages that list circles.
        let shared =
            || -> BTreeSet<CircleId> { local.shared_with(&self.peer).into_iter().collect() };
        match message {
            Message::Summary { digest } => {
                if summary(&self.digests(local)) == digest {
                    return Ok((Vec::new(), None));
                }
                Ok((vec![self.list(local)], None))
            }
            Message::Changed { circles, answer } => {
                if circles.len() > MAX_CHANGED {
                    return Err(SyncRejection::TooMany);
                }
                // A few circles: each looked up, not every circle listed.
                let mut out = Vec::new();
                let mut ours = Vec::new();
                for (circle, digest) in circles {
                    if local.shares(&self.peer, &circle) {
                        let mine = local.digest(&circle);
                        if mine != digest {
                            out.push(self.have(local, circle));
                            ours.push((circle, mine));
                        }
                    } else if let Some(close) = local.closed(&circle, &self.peer) {
                        out.push(self.tell_closed(circle, close));
                    } else {
                        self.offer(local, circle);
                    }
                }
                if !answer && !ours.is_empty() {
                    self.stats.sent += 1;
                    out.push(Message::Changed {
                        circles: ours,
                        answer: true,
                    });
                }
                out.extend(self.ask_offered(local));
                Ok((out, None))
            }
            Message::Hello { circles } => {
                if circles.len() > MAX_ITEMS {
                    return Err(SyncRejection::TooMany);
                }
                let shared = shared();
                let mut out = Vec::new();
                if !self.listed {
                    out.push(self.list(local));
                }
                // The peer's whole list: what it offered before and did not list again is
                // no longer offered.
                self.offered.clear();
                for (circle, digest) in circles {
                    if shared.contains(&circle) {
                        if local.digest(&circle) != digest {
                            out.push(self.have(local, circle));
                        }
                    } else if let Some(close) = local.closed(&circle, &self.peer) {
                        out.push(self.tell_closed(circle, close));
                    } else {
                        self.offer(local, circle);
                    }
                }
                out.extend(self.ask_offered(local));
                Ok((out, None))
            }
            Message::Have {
                circle,
                ops,
                vectors,
            } => {
                if !local.shares(&self.peer, &circle) {
                    return Err(SyncRejection::NotShared);
                }
                if ops.len() > MAX_ITEMS || vectors.iter().any(|(_, v)| v.len() > MAX_ITEMS) {
                    return Err(SyncRejection::TooMany);
                }
                self.plan(local, circle, &ops, &vectors);
                Ok((self.fill(local, now), None))
            }
            Message::Data {
                circle,
                ops,
                envelopes,
            } => {
                let bytes = data_bytes(&ops, &envelopes);
                if bytes > MAX_DATA_BYTES {
                    return Err(SyncRejection::TooLarge(bytes));
                }
                // Data of a circle not held here is passed on: the node joins it only if
                // its operations make this device a member. A circle closed here is passed
                // on too (the node takes nothing of it; a relay answers with its receipt).
                let closed = local.closed(&circle, &self.peer);
                if closed.is_none() && local.knows(&circle) && !local.shares(&self.peer, &circle) {
                    return Err(SyncRejection::NotShared);
                }
                self.stats.data_bytes_received += bytes as u64;
                self.stats.sent += 1;
                let ack = Message::Ack {
                    bytes: bytes as u64,
                };
                // An asked circle's data came: it is no longer waited for, whether the
                // node takes it or refuses it (a refused circle would otherwise hold its
                // place among the asked for good), and the next offered circle is asked
                // for. The data is applied after this returns.
                self.asked.retain(|(c, _)| *c != circle);
                let mut out = vec![ack];
                out.extend(self.ask_offered(local));
                // A circle closed here: a peer that did not send the closing is told.
                if let Some(close) = closed
                    && !ops.contains(&close)
                {
                    out.push(self.tell_closed(circle, close));
                }
                Ok((
                    out,
                    Some(Received {
                        circle,
                        ops,
                        envelopes,
                    }),
                ))
            }
            Message::Ack { bytes } => {
                let bytes = usize::try_from(bytes).map_err(|_| SyncRejection::BadAck)?;
                // Beyond what is in flight, an ack may be a late one for data sent before
                // the exchange started again; beyond that too, it is false.
                let late = bytes.saturating_sub(self.in_flight);
                if late > self.owed {
                    return Err(SyncRejection::BadAck);
                }
                self.owed -= late;
                self.in_flight -= bytes - late;
                Ok((self.fill(local, now), None))
            }
            // Invites, document contents and introductions are the node's business, not
            // this protocol's.
            Message::Join { .. }
            | Message::JoinAnswer { .. }
            | Message::BreakGlass { .. }
            | Message::Consulted { .. }
            | Message::BlobWant { .. }
            | Message::BlobPart { .. }
            | Message::Met { .. }
            | Message::InviteOpen { .. }
            | Message::InviteSeek { .. }
            | Message::InviteAt { .. }
            | Message::Pair { .. }
            | Message::PairAnswer { .. }
            | Message::Deleted { .. } => Ok((Vec::new(), None)),
        }
    }

    /// The `Close` operation of a circle closed here, for a peer that still holds it
    /// (counted in flight like any data: the peer acknowledges it).
    pub fn tell_closed(&mut self, circle: CircleId, close: Vec<u8>) -> Message {
        self.in_flight += close.len();
        self.stats.sent += 1;
        self.stats.data_bytes_sent += close.len() as u64;
        Message::Data {
            circle,
            ops: vec![close],
            envelopes: Vec::new(),
        }
    }

    fn have(&mut self, local: &dyn Local, circle: CircleId) -> Message {
        self.stats.sent += 1;
        Message::Have {
            circle,
            ops: local.op_hashes(&circle).into_iter().collect(),
            vectors: DocKind::ALL
                .into_iter()
                .map(|d| (d, local.vector(&circle, d)))
                .collect(),
        }
    }

    /// Queues what the peer lacks: operations first, then envelope ranges.
    fn plan(
        &mut self,
        local: &dyn Local,
        circle: CircleId,
        their_ops: &[OpHash],
        their_vectors: &[(DocKind, Vector)],
    ) {
        let theirs: BTreeSet<OpHash> = their_ops.iter().copied().collect();
        let missing: Vec<OpHash> = local
            .op_hashes(&circle)
            .into_iter()
            .filter(|h| !theirs.contains(h))
            .collect();
        // Replace anything still queued for this circle: the peer just said what it has.
        self.queue.retain(|p| p.circle() != circle);
        let mut plan = Vec::new();
        if !missing.is_empty() {
            plan.push(Queued::Ops {
                circle,
                hashes: missing.into(),
            });
        }
        for doc in DocKind::ALL {
            let theirs = their_vectors
                .iter()
                .find(|(d, _)| *d == doc)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            for (device, seq) in local.vector(&circle, doc) {
                let have = theirs.get(&device).copied().unwrap_or(0);
                if seq > have {
                    let log = LogId {
                        circle,
                        doc,
                        device,
                    };
                    plan.push(Queued::Range {
                        log,
                        from: have + 1,
                        to: seq,
                    });
                }
            }
        }
        let room = MAX_QUEUED.saturating_sub(self.queue.len());
        if plan.len() > room {
            // What does not fit now is found again: once the queue drains, a new round offers
            // the circle and the peer says what it still lacks.
            plan.truncate(room);
            self.behind = true;
        }
        // Missing history goes before new pushes already queued.
        let pushes = std::mem::take(&mut self.queue);
        self.queue = plan.into_iter().chain(pushes).collect();
    }

    /// Turns queued work into `Data` messages while the in-flight budget allows; once the
    /// queue is empty after work was dropped, a `Summary` to find it again.
    fn fill(&mut self, local: &dyn Local, now: i64) -> Vec<Message> {
        let mut out = Vec::new();
        while self.in_flight < MAX_IN_FLIGHT {
            let Some(circle) = self.queue.front().map(Queued::circle) else {
                break;
            };
            let mut ops = Vec::new();
            let mut envelopes = Vec::new();
            let mut size = 0usize;
            // One message per circle, filled up to the size limit.
            let mut full = false;
            while let Some(p) = self.queue.front_mut() {
                if p.circle() != circle || full {
                    break;
                }
                let fits = |size: usize, len: usize| size == 0 || size + len <= MAX_DATA_BYTES;
                match p {
                    Queued::Ops { hashes, .. } => {
                        while let Some(h) = hashes.front().copied() {
                            let bytes = local.op(&circle, &h).unwrap_or_default();
                            if !fits(size, bytes.len()) {
                                full = true;
                                break;
                            }
                            size += bytes.len();
                            hashes.pop_front();
                            if !bytes.is_empty() {
                                ops.push(bytes);
                            }
                        }
                        if hashes.is_empty() {
                            self.queue.pop_front();
                        }
                    }
                    Queued::Range { log, from, to } => {
                        let wanted = usize::try_from(*to - *from + 1).unwrap_or(64).min(64);
                        let batch = local.envelopes(log, *from, wanted);
                        let mut taken = 0u64;
                        for bytes in batch {
                            if !fits(size, bytes.len()) {
                                full = true;
                                break;
                            }
                            size += bytes.len();
                            envelopes.push(bytes);
                            taken += 1;
                        }
                        *from += taken;
                        if !full && (taken == 0 || *from > *to) {
                            // Done, or the store holds no more of this range.
                            self.queue.pop_front();
                        }
                    }
                }
            }
            if ops.is_empty() && envelopes.is_empty() {
                continue;
            }
            self.in_flight += size;
            self.stats.sent += 1;
            self.stats.data_bytes_sent += size as u64;
            out.push(Message::Data {
                circle,
                ops,
                envelopes,
            });
        }
        if self.queue.is_empty() && self.behind {
            self.behind = false;
            out.push(self.start_round(local, now));
        }
        out
    }
}

/// One digest over circles' digests (sorted by circle, as [`PeerSync`] lists them): equal
/// on two nodes exactly when they hold the same of the same circles.
pub fn summary(circles: &[(CircleId, Digest)]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"cercle summary v1");
    h.update(&(circles.len() as u64).to_le_bytes());
    for (circle, digest) in circles {
        h.update(&circle.0);
        h.update(digest);
    }
    *h.finalize().as_bytes()
}

fn data_bytes(ops: &[Vec<u8>], envelopes: &[Vec<u8>]) -> usize {
    ops.iter().chain(envelopes).map(Vec::len).sum()
}

#[cfg(test)]
mod tests {
    use super::memory::{Memory, envelope};
    use super::*;
    use proptest::prelude::*;

    const A: DeviceId = DeviceId([1; 32]);
    const B: DeviceId = DeviceId([2; 32]);
    const C: DeviceId = DeviceId([3; 32]);
    const CIRCLE: CircleId = CircleId([9; 32]);

    /// Runs a connection between `a` (device A) and `b` (device B) until it is quiet;
    /// returns the messages each side sent and the largest in-flight amount seen.
    fn converse(
        a: &mut Memory,
        b: &mut Memory,
        ia: DeviceId,
        ib: DeviceId,
    ) -> (usize, usize, usize) {
        let mut pa = PeerSync::new(ib);
        let mut pb = PeerSync::new(ia);
        let to_b = pa.connected(a, 0);
        let to_a = pb.connected(b, 0);
        go_on(a, b, (&mut pa, &mut pb), to_b, to_a)
    }

    /// Carries `to_b` and `to_a` and every reply between `a` and `b` until quiet; returns
    /// the messages each side sent and the largest in-flight amount seen.
    fn go_on(
        a: &mut Memory,
        b: &mut Memory,
        (pa, pb): (&mut PeerSync, &mut PeerSync),
        to_b: Vec<Message>,
        to_a: Vec<Message>,
    ) -> (usize, usize, usize) {
        let (mut to_b, mut to_a): (VecDeque<Message>, VecDeque<Message>) =
            (to_b.into(), to_a.into());
        let (mut sent_a, mut sent_b, mut max_flight) = (to_b.len(), to_a.len(), 0);
        for _ in 0..100_000 {
            if let Some(m) = to_b.pop_front() {
                let (replies, received) = pb.receive(b, m, 0).unwrap();
                if let Some(r) = received {
                    b.apply(r);
                }
                sent_b += replies.len();
                to_a.extend(replies);
            } else if let Some(m) = to_a.pop_front() {
                let (replies, received) = pa.receive(a, m, 0).unwrap();
                if let Some(r) = received {
                    a.apply(r);
                }
                sent_a += replies.len();
                to_b.extend(replies);
            } else {
                break;
            }
            max_flight = max_flight.max(pa.in_flight()).max(pb.in_flight());
        }
        (sent_a, sent_b, max_flight)
    }

    fn pair() -> (Memory, Memory) {
        let mut a = Memory::default();
        a.share(CIRCLE, [A, B]);
        a.add_op(CIRCLE, 1);
        let b = a.clone();
        (a, b)
    }

    #[test]
    fn an_empty_member_catches_up_with_everything_within_the_in_flight_budget() {
        let (mut a, mut b) = pair();
        a.add_op(CIRCLE, 2);
        for _ in 0..3000 {
            a.write(CIRCLE, DocKind::LiaisonNotebook, A, 2000);
        }
        a.write(CIRCLE, DocKind::PatientFile, A, 300);
        let (_, _, max_flight) = converse(&mut a, &mut b, A, B);
        assert_eq!(b.digest(&CIRCLE), a.digest(&CIRCLE));
        assert!(max_flight <= MAX_IN_FLIGHT + MAX_DATA_BYTES, "{max_flight}");
    }

    #[test]
    fn an_unchanged_circle_costs_one_summary_each_way() {
        let (mut a, mut b) = pair();
        a.write(CIRCLE, DocKind::Thread, A, 10);
        b.write(CIRCLE, DocKind::Thread, A, 10);
        let (sa, sb, _) = converse(&mut a, &mut b, A, B);
        assert_eq!((sa, sb), (1, 1));
    }

    /// A GP's node and a colleague's sharing a thousand circles, nothing changed: one
    /// message each way, a few dozen bytes, not a list of the thousand.
    #[test]
    fn a_thousand_unchanged_circles_cost_one_small_message_each_way() {
        let mut a = Memory::default();
        for i in 0..1000u32 {
            let circle = CircleId(*blake3::hash(&i.to_le_bytes()).as_bytes());
            a.share(circle, [A, B]);
            a.add_op(circle, 1);
            a.write(circle, DocKind::LiaisonNotebook, A, 200);
        }
        let mut b = a.clone();
        let hello = PeerSync::new(B).connected(&a, 0);
        assert!(matches!(hello[..], [Message::Summary { .. }]), "{hello:?}");
        assert!(
            wire::frame(&hello[0]).len() <= 128,
            "{}",
            wire::frame(&hello[0]).len()
        );
        let (sa, sb, _) = converse(&mut a, &mut b, A, B);
        assert_eq!((sa, sb), (1, 1));
        // One note written on one side: the lists go, then only that circle's data.
        let changed = CircleId(*blake3::hash(&7u32.to_le_bytes()).as_bytes());
        a.write(changed, DocKind::LiaisonNotebook, A, 200);
        converse(&mut a, &mut b, A, B);
        assert_eq!(a.digest(&changed), b.digest(&changed));
    }

    /// A member added in one of a thousand shared circles: the change costs messages about
    /// that circle, not lists of the thousand; a circle the peer was just added to is
    /// asked for and comes whole.
    #[test]
    fn a_membership_change_in_one_of_many_circles_costs_messages_about_that_circle() {
        let mut a = Memory::default();
        let circles: Vec<CircleId> = (0..1000u32)
            .map(|i| CircleId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
            .collect();
        for c in &circles {
            a.share(*c, [A, B]);
            a.add_op(*c, 1);
        }
        let mut b = a.clone();
        let (mut pa, mut pb) = (PeerSync::new(B), PeerSync::new(A));
        let (x, fresh) = (circles[500], CircleId([77; 32]));
        a.add_op(x, 2);
        a.share(fresh, [A, B]);
        a.add_op(fresh, 1);
        a.write(fresh, DocKind::LiaisonNotebook, A, 300);
        let told = pa.changed(&a, &[x, fresh]);
        let size = |m: &[Message]| m.iter().map(|m| wire::frame(m).len()).sum::<usize>();
        assert!(size(&told) < 512, "{}", size(&told));
        let (sa, sb, _) = go_on(&mut a, &mut b, (&mut pa, &mut pb), told, Vec::new());
        assert!(sa + sb <= 12, "{sa} + {sb} messages");
        assert_eq!(a.digest(&x), b.digest(&x));
        // B joins `fresh` as the node would, and holds what A holds.
        b.share(fresh, [A, B]);
        let (sa, sb, _) = converse(&mut a, &mut b, A, B);
        assert_eq!((sa, sb), (1, 1), "after joining, nothing differs");
        assert_eq!(b.envelope_count(&fresh), 1);
        // A peer naming more circles than a change concerns is refused before any lookup.
        let flood = Message::Changed {
            circles: circles[..=MAX_CHANGED]
                .iter()
                .map(|c| (*c, [0; 32]))
                .collect(),
            answer: false,
        };
        assert_eq!(pb.receive(&b, flood, 0), Err(SyncRejection::TooMany));
    }

    /// A new device of a member in many circles: offered all of them, it asks for a few
    /// at a time and the next as each arrives, with no tick in between.
    #[test]
    fn many_circles_offered_to_a_new_device_are_all_asked_for_as_they_arrive() {
        let circles: Vec<CircleId> = (0..300u32)
            .map(|i| CircleId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
            .collect();
        let mut a = Memory::default();
        for c in &circles {
            a.share(*c, [A, B]);
            a.add_op(*c, 1);
            a.write(*c, DocKind::LiaisonNotebook, A, 200);
        }
        let mut b = Memory::default();
        let (mut pa, mut pb) = (PeerSync::new(B), PeerSync::new(A));
        let mut to_b: VecDeque<Message> = pa.connected(&a, 0).into();
        let mut to_a: VecDeque<Message> = pb.connected(&b, 0).into();
        let mut most_asked = 0;
        for _ in 0..100_000 {
            if let Some(m) = to_b.pop_front() {
                let (replies, received) = pb.receive(&b, m, 0).unwrap();
                if let Some(r) = received {
                    // The node joins: the operations make B a member.
                    b.share(r.circle, [A, B]);
                    b.apply(r);
                }
                most_asked = most_asked.max(pb.asked.len());
                to_a.extend(replies);
            } else if let Some(m) = to_a.pop_front() {
                let (replies, received) = pa.receive(&a, m, 0).unwrap();
                assert!(received.is_none());
                to_b.extend(replies);
            } else {
                break;
            }
        }
        assert!(most_asked <= MAX_UNKNOWN_ASKED, "{most_asked}");
        // The last few arrive without a message after them: the next tick sees them held.
        let late = pb.tick(&b, 1_000);
        assert!(late.iter().all(|m| matches!(m, Message::Have { .. })));
        assert!(pb.asked.is_empty() && pb.offered.is_empty());
        for c in &circles {
            assert_eq!(b.digest(c), a.digest(c));
        }
    }

    #[test]
    fn both_sides_get_what_the_other_wrote_while_apart() {
        let (mut a, mut b) = pair();
        for _ in 0..5 {
            a.write(CIRCLE, DocKind::LiaisonNotebook, A, 50);
            b.write(CIRCLE, DocKind::LiaisonNotebook, B, 50);
        }
        b.add_op(CIRCLE, 3);
        converse(&mut a, &mut b, A, B);
        assert_eq!(a.digest(&CIRCLE), b.digest(&CIRCLE));
        assert_eq!(a.vector(&CIRCLE, DocKind::LiaisonNotebook).len(), 2);
    }

    #[test]
    fn a_device_of_no_member_learns_nothing() {
        let (mut a, _) = pair();
        a.write(CIRCLE, DocKind::LiaisonNotebook, A, 50);
        let mut c = Memory::default();
        let mut pa = PeerSync::new(C);
        let hello = pa.connected(&a, 0);
        assert_eq!(
            hello,
            vec![Message::Summary {
                digest: summary(&[])
            }]
        );
        // Even asking directly gets a refusal, not data.
        let ask = Message::Have {
            circle: CIRCLE,
            ops: vec![],
            vectors: vec![],
        };
        assert_eq!(pa.receive(&a, ask, 0), Err(SyncRejection::NotShared));
        assert_eq!(pa.stats.data_bytes_sent, 0);
        converse(&mut a, &mut c, A, C);
        assert_eq!(c.envelope_count(&CIRCLE), 0);
        assert!(c.op_hashes(&CIRCLE).is_empty());
    }

    fn at(seq: u64) -> EnvelopeRef {
        EnvelopeRef {
            log: LogId {
                circle: CIRCLE,
                doc: DocKind::LiaisonNotebook,
                device: A,
            },
            seq,
        }
    }

    #[test]
    fn a_new_envelope_is_pushed_at_once_to_members_only() {
        let (mut a, _) = pair();
        a.write(CIRCLE, DocKind::LiaisonNotebook, A, 50);
        let bytes = envelope(DocKind::LiaisonNotebook, A, 1, 50);
        let mut to_b = PeerSync::new(B);
        let sent = to_b.push(&a, &[at(1)], 0);
        assert_eq!(
            sent,
            vec![Message::Data {
                circle: CIRCLE,
                ops: vec![],
                envelopes: vec![bytes],
            }]
        );
        let mut to_c = PeerSync::new(C);
        assert!(to_c.push(&a, &[at(1)], 0).is_empty());
    }

    #[test]
    fn envelopes_written_together_travel_in_one_message() {
        let (mut a, _) = pair();
        for _ in 1..=300 {
            a.write(CIRCLE, DocKind::LiaisonNotebook, A, 300);
        }
        let batch: Vec<EnvelopeRef> = (1..=300).map(at).collect();
        let mut to_b = PeerSync::new(B);
        let sent = to_b.push(&a, &batch, 0);
        assert_eq!(sent.len(), 1, "one Data message for 300 small envelopes");
        assert_eq!(to_b.pending(), 0);
    }

    #[test]
    fn a_peer_that_stops_acknowledging_costs_a_bounded_queue_and_is_caught_up_by_anti_entropy() {
        let (mut a, mut b) = pair();
        // Envelopes of many logs (so they cannot merge into one range), 2 KiB each.
        let logs = MAX_QUEUED + 500;
        let mut refs = Vec::new();
        for i in 0..logs {
            let device = DeviceId(*blake3::hash(&i.to_le_bytes()).as_bytes());
            a.write(CIRCLE, DocKind::Thread, device, 2048);
            refs.push(EnvelopeRef {
                log: LogId {
                    circle: CIRCLE,
                    doc: DocKind::Thread,
                    device,
                },
                seq: 1,
            });
        }
        let mut to_b = PeerSync::new(B);
        let mut sent = to_b.connected(&a, 0);
        // B never acknowledges: the in-flight budget stops the sending...
        sent.extend(to_b.push(&a, &refs, 0));
        let data: usize = sent
            .iter()
            .filter(|m| matches!(m, Message::Data { .. }))
            .count();
        assert!(to_b.in_flight() <= MAX_IN_FLIGHT + MAX_DATA_BYTES);
        assert!(data > 0);
        // ...and what waits is references, at most MAX_QUEUED of them; the rest was dropped.
        assert!(to_b.pending() > 0 && to_b.pending() <= MAX_QUEUED);
        assert!(to_b.behind);
        // Once B acknowledges everything, the queue drains and a new round starts (a
        // Summary), so nothing that was dropped is lost.
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let flight = to_b.in_flight();
            if flight == 0 {
                break;
            }
            let (more, _) = to_b
                .receive(
                    &a,
                    Message::Ack {
                        bytes: flight as u64,
                    },
                    1,
                )
                .unwrap();
            out.extend(more);
        }
        assert_eq!(to_b.pending(), 0);
        assert!(out.iter().any(|m| matches!(m, Message::Summary { .. })));
        converse(&mut a, &mut b, A, B);
        assert_eq!(a.digest(&CIRCLE), b.digest(&CIRCLE));
    }

    #[test]
    fn oversized_and_unshared_data_and_false_acks_are_refused() {
        let (mut a, _) = pair();
        a.share(CircleId([8; 32]), [C]);
        let mut p = PeerSync::new(B);
        let big = Message::Data {
            circle: CIRCLE,
            ops: vec![],
            envelopes: vec![vec![0; MAX_DATA_BYTES + 1]],
        };
        assert!(matches!(
            p.receive(&a, big, 0),
            Err(SyncRejection::TooLarge(_))
        ));
        let other = Message::Data {
            circle: CircleId([8; 32]),
            ops: vec![],
            envelopes: vec![vec![1]],
        };
        assert_eq!(p.receive(&a, other, 0), Err(SyncRejection::NotShared));
        assert_eq!(
            p.receive(&a, Message::Ack { bytes: 1 }, 0),
            Err(SyncRejection::BadAck)
        );
    }

    #[test]
    fn a_late_ack_of_data_sent_before_a_new_start_is_taken_and_no_more() {
        let (mut a, _) = pair();
        a.write(CIRCLE, DocKind::LiaisonNotebook, A, 500);
        let mut p = PeerSync::new(B);
        let have = Message::Have {
            circle: CIRCLE,
            ops: vec![],
            vectors: vec![],
        };
        let (sent, _) = p.receive(&a, have, 0).unwrap();
        assert!(sent.iter().any(|m| matches!(m, Message::Data { .. })));
        let before = p.in_flight();
        assert!(before > 0);
        // The stream was replaced: the exchange starts again with nothing in flight, and
        // the peer's ack of what it received before arrives now.
        let _ = p.lost(&a, 1);
        assert_eq!(p.in_flight(), 0);
        let ack = Message::Ack {
            bytes: before as u64,
        };
        assert!(p.receive(&a, ack, 2).is_ok());
        // Acknowledging it twice is false.
        let again = Message::Ack {
            bytes: before as u64,
        };
        assert_eq!(p.receive(&a, again, 3), Err(SyncRejection::BadAck));
    }

    #[test]
    fn a_peer_silent_since_our_stream_opened_is_half_open_once_per_wait() {
        let (a, b) = pair();
        // Our stream opened at 0; the peer's says nothing.
        let mut silent = PeerSync::new(B);
        let _ = silent.connected(&a, 0);
        assert!(!silent.half_open(HALF_OPEN_MS - 1));
        assert!(silent.half_open(HALF_OPEN_MS));
        // Told once; the wait starts again.
        assert!(!silent.half_open(HALF_OPEN_MS + 1));
        assert!(silent.half_open(2 * HALF_OPEN_MS));
        // A peer whose Summary arrived is never half-open, however long it stays quiet.
        let mut heard = PeerSync::new(B);
        let summary = heard.connected(&a, 0);
        let mut other = PeerSync::new(A);
        let first = other.connected(&b, 0);
        assert_eq!(summary.len(), 1);
        for m in first {
            assert!(heard.receive(&a, m, 5).is_ok());
        }
        assert!(!heard.half_open(10 * HALF_OPEN_MS));
        // Nor a peer whose messages came before our stream opened.
        let mut early = PeerSync::new(B);
        let hello = Message::Hello { circles: vec![] };
        assert!(early.receive(&a, hello, 0).is_ok());
        let _ = early.resync(&a, 1);
        assert!(!early.half_open(10 * HALF_OPEN_MS));
        // Nor one whose first message is not the sync's (a device being paired).
        let mut pairing = PeerSync::new(B);
        let _ = pairing.connected(&a, 0);
        pairing.heard();
        assert!(!pairing.half_open(10 * HALF_OPEN_MS));
    }

    #[test]
    fn a_circle_offered_but_not_held_is_asked_for_and_its_data_passed_on() {
        let (a, _) = pair();
        let unknown = CircleId([10; 32]);
        let mut p = PeerSync::new(B);
        let (replies, _) = p
            .receive(
                &a,
                Message::Hello {
                    circles: vec![(unknown, [0; 32])],
                },
                0,
            )
            .unwrap();
        // Its own list (it had not listed its circles this round), then the ask.
        assert!(matches!(&replies[0], Message::Hello { circles } if circles.len() == 1));
        assert_eq!(
            replies[1..],
            [Message::Have {
                circle: unknown,
                ops: vec![],
                vectors: vec![]
            }]
        );
        // The node decides on receipt whether the operations make it a member.
        let data = Message::Data {
            circle: unknown,
            ops: vec![vec![1, 2, 3]],
            envelopes: vec![],
        };
        let (_, received) = p.receive(&a, data, 0).unwrap();
        assert_eq!(received.map(|r| r.circle), Some(unknown));
        // Its data came: it is no longer waited for, taken in or not (a circle the node
        // refused would otherwise keep its place among the asked for good).
        assert!(p.asked.is_empty());
        // A flood of unknown circles is asked for only up to a bound at a time, the rest
        // kept in order.
        let many = (100..200u8).map(|i| (CircleId([i; 32]), [0; 32])).collect();
        let (replies, _) = p.receive(&a, Message::Hello { circles: many }, 0).unwrap();
        assert_eq!(replies.len(), MAX_UNKNOWN_ASKED);
        assert_eq!(p.offered.len(), 100 - MAX_UNKNOWN_ASKED);
        // A flood beyond what is kept is cut at the bound.
        let flood = (0..MAX_OFFERED as u32 + 500)
            .map(|i| {
                (
                    CircleId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
                    [0; 32],
                )
            })
            .collect();
        p.receive(&a, Message::Hello { circles: flood }, 0).unwrap();
        assert!(p.offered.len() <= MAX_OFFERED);
    }

    #[test]
    fn a_circle_asked_for_and_lost_on_the_way_is_asked_for_again() {
        let (a, _) = pair();
        let unknown = CircleId([10; 32]);
        let mut p = PeerSync::new(B);
        assert_eq!(p.connected(&a, 0).len(), 1);
        let hello = Message::Hello {
            circles: vec![(unknown, [0; 32])],
        };
        let (replies, _) = p.receive(&a, hello, 0).unwrap();
        let asked = replies.iter().filter(|m| matches!(m, Message::Have { .. }));
        assert_eq!(asked.count(), 1);
        // The answer never comes: the wait starts at the next tick, then the ask repeats.
        assert!(p.tick(&a, 1_000).is_empty());
        assert!(p.tick(&a, 1_000 + ASK_AGAIN_MS - 1).is_empty());
        let again = p.tick(&a, 1_000 + ASK_AGAIN_MS);
        assert_eq!(
            again,
            vec![Message::Have {
                circle: unknown,
                ops: vec![],
                vectors: vec![]
            }]
        );
    }

    #[test]
    fn anti_entropy_says_hello_again_only_after_the_interval() {
        let (a, _) = pair();
        let mut p = PeerSync::new(B);
        assert_eq!(p.connected(&a, 0).len(), 1);
        assert!(p.tick(&a, RESYNC_EVERY_MS - 1).is_empty());
        assert_eq!(p.tick(&a, RESYNC_EVERY_MS).len(), 1);
    }

    proptest! {
        /// Whatever each side wrote while apart, one connection makes them equal.
        #[test]
        fn any_two_states_of_a_circle_converge_in_one_connection(
            writes in prop::collection::vec((any::<bool>(), 0..3usize, 1..3000usize), 0..60),
            ops in prop::collection::vec((any::<bool>(), any::<u8>()), 0..6),
        ) {
            let (mut a, mut b) = pair();
            for (on_a, doc, len) in writes {
                let doc = DocKind::ALL[doc];
                if on_a { a.write(CIRCLE, doc, A, len) } else { b.write(CIRCLE, doc, B, len) }
            }
            for (on_a, n) in ops {
                if on_a { a.add_op(CIRCLE, n) } else { b.add_op(CIRCLE, n) }
            }
            converse(&mut a, &mut b, A, B);
            prop_assert_eq!(a.digest(&CIRCLE), b.digest(&CIRCLE));
        }
    }
}
