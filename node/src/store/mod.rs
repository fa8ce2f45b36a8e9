//! The store: everything a node keeps on disk about its circles, behind one small trait.
//!
//! - **What it holds**: envelopes (as received or sealed here, already encrypted) indexed by
//!   circle, document, device and sequence number; the version vector of each document
//!   (last sequence number and hash per device); signed membership operations (which also
//!   carry the sealed epoch keys); circle records; encrypted document snapshots; blobs; node
//!   metadata; the log of rejected envelopes; fork evidence.
//! - **Durability**: [`Store::submit`] queues a [`Batch`] and returns a [`Ticket`] that
//!   completes once the batch is on disk. Batches that arrive together share one flush
//!   (group commit), so acknowledging every note durably does not cost a flush per note.
//! - **At rest**: circle records, snapshots and blobs are sealed with the device's
//!   [`StorageKey`](crate::crypto::StorageKey), bound to their place; envelopes are already
//!   encrypted with epoch keys. No plaintext care data reaches the disk.
//!
//! [`SledStore`] is the implementation a node runs: a `sled` database plus a checksummed
//! journal of every acknowledged batch, from which the database is rebuilt if its files are
//! damaged (see `ARCHITECTURE.md`). [`MemoryStore`] holds the same trees in memory, for the
//! deterministic cluster of cores the tests and the simulations run. Tests wrap the trait
//! to inject faults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use cercle_crdt::DocKind;
use zeroize::Zeroizing;

use crate::circle::membership::{CircleId, SignedOp};
use crate::envelope::{Envelope, LogId};
use crate::identity::DeviceId;
use crate::reader::Reader;

pub(crate) mod circle_keys;
pub mod journal;
mod memory;
pub(crate) mod run;
mod sled_store;

pub use memory::MemoryStore;
pub use sled_store::{OpenReport, SledStore, in_use};
pub(crate) use sled_store::{delete_prefix, once_released};

/// A value opened from a sealed tree; zeroed when dropped.
pub type Opened = Zeroizing<Vec<u8>>;

/// A range of keys of one tree, both ends included.
pub type Keys = std::ops::RangeInclusive<Vec<u8>>;

/// Keys and their opened values, in key order.
pub type KeyValues = Vec<(Vec<u8>, Opened)>;

/// The store's on-disk schema version (see `SledStore::migrate`).
pub const SCHEMA_VERSION: u32 = 4;

/// Why the store failed. Cloneable: one failed flush answers every write that shared it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the home's store.
    #[error(
        "a node is already running on this home ({path}); stop it first, or use another --home"
    )]
    Locked { path: PathBuf },
    /// The database cannot be read and no journal can rebuild it.
    #[error(
        "the store in {path} is damaged ({reason}) and cannot be rebuilt; restore the home from a backup"
    )]
    Damaged { path: PathBuf, reason: String },
    /// The store was written with another identity's key.
    #[error("the store in {path} belongs to another identity; use the home it was created with")]
    Foreign { path: PathBuf },
    /// The store was written by a newer version.
    #[error(
        "the store in {path} was written by a newer Cercle (store schema {found}, this one reads up to {supported}); install the newer version"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The disk is full; the write was not acknowledged.
    #[error(
        "the disk holding {path} is full: free some space and try again (the last write was not saved)"
    )]
    DiskFull { path: PathBuf },
    /// Any other input/output failure.
    #[error("cannot use the store in {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    /// An earlier write failed, so later ones are refused until the store is reopened.
    #[error("the store stopped after a failed write ({cause}); run the command again")]
    Stopped { cause: String },
    /// A value read back is not what was written.
    #[error("the store in {path} holds a damaged value ({what}); run `cercle repair`")]
    BadValue { path: PathBuf, what: String },
}

impl StoreError {
    /// Classifies an I/O error at `path`.
    pub(crate) fn io(path: &std::path::Path, e: &std::io::Error) -> StoreError {
        let full = matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ) || e.raw_os_error() == Some(28);
        if full {
            StoreError::DiskFull {
                path: path.to_path_buf(),
            }
        } else {
            StoreError::Io {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        }
    }
}

/// The store's trees. Each write names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tree {
    /// Node metadata (schema version, journal position, key check).
    Meta,
    /// Circle records (sealed): patient display name, members' profiles.
    Circles,
    /// Signed membership operations (sealed with the circle's key: they carry its epoch
    /// keys): circle ‖ op hash.
    Ops,
    /// Envelopes: circle ‖ doc ‖ device ‖ seq (big-endian) → the envelope, or a run of the
    /// device's envelopes from that one on (schema 4; see [`run`]).
    Envelopes,
    /// Version vectors: circle ‖ doc ‖ device → seq ‖ envelope hash.
    Heads,
    /// Document snapshots (sealed, not journaled: they are rebuilt from envelopes).
    Snapshots,
    /// Attachments (sealed): circle ‖ content hash (content hash alone before schema 3).
    Blobs,
    /// Rejected envelopes: circle ‖ slot (of `MAX_REJECTIONS_PER_CIRCLE`) → JSON record.
    Rejected,
    /// Fork evidence: circle ‖ device ‖ doc ‖ seq → both envelopes.
    Forks,
    /// When this node received each item another device created: circle ‖ item id →
    /// milliseconds (big-endian), beside the date its author gave it.
    Received,
    /// The health-professional directory imported here (public data, re-importable, so
    /// neither sealed nor journaled): `i` ‖ register ‖ number → the professional (JSON),
    /// and `n` ‖ folded last name ‖ 0 ‖ that key → the key, to search by name.
    Directory,
    /// What is kept of each circle closed here, with no care data (sealed with the device's
    /// storage key): circle → its [`Tombstone`](crate::tombstone::Tombstone), and circle ‖
    /// `a` → its audit trail without content; circle ‖ `r` → the relays' receipts for a
    /// circle whose sharing the patient suspended.
    Closed,
}

/// The trees whose keys start with a circle's id: what shredding a circle clears.
pub const CIRCLE_TREES: [Tree; 9] = [
    Tree::Circles,
    Tree::Ops,
    Tree::Envelopes,
    Tree::Heads,
    Tree::Snapshots,
    Tree::Blobs,
    Tree::Rejected,
    Tree::Forks,
    Tree::Received,
];

impl Tree {
    /// Every tree.
    pub const ALL: [Tree; 12] = [
        Tree::Meta,
        Tree::Circles,
        Tree::Ops,
        Tree::Envelopes,
        Tree::Heads,
        Tree::Snapshots,
        Tree::Blobs,
        Tree::Rejected,
        Tree::Forks,
        Tree::Received,
        Tree::Directory,
        Tree::Closed,
    ];

    /// Its code in journal records.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The tree with `code`.
    pub fn from_code(code: u8) -> Option<Tree> {
        Tree::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The sled tree's name.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::Circles => "circles",
            Tree::Ops => "ops",
            Tree::Envelopes => "envelopes",
            Tree::Heads => "heads",
            Tree::Snapshots => "snapshots",
            Tree::Blobs => "blobs",
            Tree::Rejected => "rejected",
            Tree::Forks => "forks",
            Tree::Received => "received",
            Tree::Directory => "directory",
            Tree::Closed => "closed",
        }
    }

    /// Whether values are sealed with the storage key (they hold care data in clear
    /// otherwise).
    pub fn sealed(self) -> bool {
        matches!(
            self,
            Tree::Circles | Tree::Snapshots | Tree::Blobs | Tree::Ops | Tree::Closed
        )
    }

    /// The circle whose own key seals the value under `key` of this tree (see
    /// `circle_keys`); `None` for a value sealed with the device's storage key, or not
    /// sealed.
    pub(crate) fn sealing_circle(self, key: &[u8]) -> Option<CircleId> {
        let id = || key.get(..32).and_then(|k| k.try_into().ok()).map(CircleId);
        match self {
            Tree::Circles | Tree::Snapshots | Tree::Ops => id(),
            // An attachment stored before schema 3 is under its hash alone.
            Tree::Blobs if key.len() == 64 => id(),
            _ => None,
        }
    }

    /// Whether writes go through the journal (everything but what can be recomputed).
    pub fn journaled(self) -> bool {
        !matches!(self, Tree::Snapshots | Tree::Directory)
    }
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Write {
    Put {
        tree: Tree,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        tree: Tree,
        key: Vec<u8>,
    },
    /// Every row of a circle in [`CIRCLE_TREES`] deleted, and the circle's own key
    /// forgotten: what is left of it anywhere cannot be opened.
    Shred {
        circle: CircleId,
    },
}

impl Write {
    /// Whether it goes through the journal.
    pub(crate) fn journaled(&self) -> bool {
        match self {
            Write::Put { tree, .. } | Write::Delete { tree, .. } => tree.journaled(),
            Write::Shred { .. } => true,
        }
    }

    /// The row it sets or deletes, whatever was there before: none for a shred, which
    /// deletes many, nor for the envelopes' rows, where a key names the first envelope
    /// of a run and deleting one envelope splits the run it is in ([`run`]).
    fn row(&self) -> Option<(Tree, &[u8])> {
        match self {
            Write::Put {
                tree: Tree::Envelopes,
                ..
            }
            | Write::Delete {
                tree: Tree::Envelopes,
                ..
            }
            | Write::Shred { .. } => None,
            Write::Put { tree, key, .. } | Write::Delete { tree, key } => Some((*tree, key)),
        }
    }

    /// The bytes it puts in the database.
    pub(crate) fn size(&self) -> usize {
        match self {
            Write::Put { key, value, .. } => key.len() + value.len(),
            Write::Delete { key, .. } => key.len(),
            Write::Shred { .. } => 32,
        }
    }
}

/// Drops every put or delete of a row that a later write of `writes` sets or deletes again:
/// applied in order, what is left ends the store in the same state, with less to seal,
/// journal and apply (a run of one device's envelopes moves its log's head once per
/// envelope; a circle's record is written once per message received). A shred deletes
/// rows and never hides an earlier write's row from a later one, so it is kept in place;
/// so are the envelopes' rows (each is written once, and runs make their keys no
/// statement about the envelopes a row holds).
/// Rows are hashed with foldhash, seeded per call: SipHash over every row of a catch-up's
/// batches was 8 % of the receiving core's time.
pub(crate) fn coalesce(writes: &mut Vec<Write>) {
    if writes.len() < 2 {
        return;
    }
    let keep: Vec<bool> = {
        let mut later = std::collections::HashSet::with_capacity_and_hasher(
            writes.len(),
            foldhash::quality::RandomState::default(),
        );
        writes
            .iter()
            .rev()
            .map(|w| w.row().is_none_or(|row| later.insert(row)))
            .collect()
    };
    if keep.iter().all(|k| *k) {
        return;
    }
    let mut kept = keep.into_iter().rev();
    writes.retain(|_| kept.next().unwrap_or(true));
}

/// The last envelope of one device in one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash (what the next envelope's `prev` names).
    pub hash: [u8; 32],
}

/// Rejection records kept per circle, at most (each a few hundred bytes).
pub const MAX_REJECTIONS_PER_CIRCLE: u16 = 4096;

/// A rejected envelope, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectionRecord {
    /// When (milliseconds since the epoch).
    pub at: i64,
    /// The peer or path it came from, as far as known.
    pub from: String,
    /// The sending device, when the envelope decoded.
    pub device: Option<String>,
    /// The reason (machine-readable, from `EnvelopeRejection`).
    pub reason: serde_json::Value,
    /// The reason in words.
    pub message: String,
    /// BLAKE3 of the refused bytes.
    pub hash: String,
}

/// When this node received an item another device created, and from which device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemReceipt {
    pub at: cercle_crdt::Timestamp,
    /// The writing device (absent in records of earlier versions).
    pub device: Option<crate::identity::DeviceId>,
}

/// Two envelopes signed by one device for one position, kept as proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkRecord {
    pub device: DeviceId,
    pub doc: DocKind,
    pub seq: u64,
    pub first: Vec<u8>,
    pub second: Vec<u8>,
}

impl ForkRecord {
    fn key(&self, circle: &CircleId) -> Vec<u8> {
        let mut k = circle.0.to_vec();
        k.extend_from_slice(&self.device.0);
        k.push(self.doc.code());
        k.extend_from_slice(&self.seq.to_be_bytes());
        k
    }

    fn value(&self) -> Vec<u8> {
        let mut v = (self.first.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(&self.first);
        v.extend_from_slice(&self.second);
        v
    }

    fn decode(key: &[u8], value: &[u8]) -> Option<ForkRecord> {
        let mut k = Reader::new(key, ());
        let _circle: [u8; 32] = k.array().ok()?;
        let device = DeviceId(k.array().ok()?);
        let doc = DocKind::from_code(k.byte().ok()?)?;
        let seq = u64::from_be_bytes(k.array().ok()?);
        let mut v = Reader::new(value, ());
        let n = v.len_u32().ok()?;
        let first = v.take(n).ok()?.to_vec();
        let second = v.rest().to_vec();
        Some(ForkRecord {
            device,
            doc,
            seq,
            first,
            second,
        })
    }
}

/// A saved document and the envelopes it already contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// For each device, the last sequence number included.
    pub covers: BTreeMap<DeviceId, u64>,
    /// The document in Automerge's save format.
    pub doc: Vec<u8>,
}

impl Snapshot {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            4 + 40 * self.covers.len() + self.doc.len(),
        ));
        out.extend_from_slice(&(self.covers.len() as u32).to_le_bytes());
        for (d, seq) in &self.covers {
            out.extend_from_slice(&d.0);
            out.extend_from_slice(&seq.to_le_bytes());
        }
        out.extend_from_slice(&self.doc);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Snapshot> {
        let mut r = Reader::new(bytes, ());
        let n = r.len_u32().ok()?;
        let mut covers = BTreeMap::new();
        for _ in 0..n {
            let device = DeviceId(r.array().ok()?);
            covers.insert(device, r.u64().ok()?);
        }
        Some(Snapshot {
            covers,
            doc: r.rest().to_vec(),
        })
    }
}

/// Key builders: fixed-width fields, big-endian numbers, so prefix scans and ranges work.
pub(crate) mod keys {
    use super::*;

    pub(crate) fn doc_prefix(circle: &CircleId, doc: DocKind) -> Vec<u8> {
        let mut k = Vec::with_capacity(33);
        k.extend_from_slice(&circle.0);
        k.push(doc.code());
        k
    }

    pub(crate) fn head(log: &LogId) -> Vec<u8> {
        let mut k = doc_prefix(&log.circle, log.doc);
        k.extend_from_slice(&log.device.0);
        k
    }

    pub(crate) fn envelope(log: &LogId, seq: u64) -> Vec<u8> {
        let mut k = head(log);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// The parts of a key made by [`envelope`]; `None` if it is not one.
    pub(crate) fn split_envelope(k: &[u8]) -> Option<(LogId, u64)> {
        if k.len() != 73 {
            return None;
        }
        let log = LogId {
            circle: CircleId(k[..32].try_into().ok()?),
            doc: DocKind::from_code(k[32])?,
            device: DeviceId(k[33..65].try_into().ok()?),
        };
        let seq = u64::from_be_bytes(k[65..].try_into().ok()?);
        Some((log, seq))
    }

    pub(crate) fn received(circle: &CircleId, item: &str) -> Vec<u8> {
        let mut k = circle.0.to_vec();
        k.extend_from_slice(item.as_bytes());
        k
    }

    pub(crate) fn op(circle: &CircleId, hash: &[u8; 32]) -> Vec<u8> {
        let mut k = circle.0.to_vec();
        k.extend_from_slice(hash);
        k
    }

    pub(crate) fn blob(circle: &CircleId, hash: &[u8; 32]) -> Vec<u8> {
        let mut k = circle.0.to_vec();
        k.extend_from_slice(hash);
        k
    }

    pub(crate) fn closed_audit(circle: &CircleId) -> Vec<u8> {
        let mut k = circle.0.to_vec();
        k.push(b'a');
        k
    }

    pub(crate) fn deletion_receipts(circle: &CircleId) -> Vec<u8> {
        let mut k = circle.0.to_vec();
        k.push(b'r');
        k
    }
}

/// Writes that become durable together.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub(crate) writes: Vec<Write>,
}

/// Why a journal record does not decode as a batch (a damaged or foreign journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("journal record does not decode: {0}")]
pub struct BatchDecodeError(&'static str);

const BATCH_VERSION: u8 = 1;

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Whether it holds no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// The envelopes this batch writes, in order (for tests and fuzzing harnesses that
    /// look inside).
    pub fn envelope_bytes(&self) -> Vec<Vec<u8>> {
        self.writes
            .iter()
            .filter_map(|w| match w {
                Write::Put {
                    tree: Tree::Envelopes,
                    value,
                    ..
                } => Some(run::envelopes(value).unwrap_or_default()),
                _ => None,
            })
            .flatten()
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Keeps only the last write of each row (see [`coalesce`]).
    pub fn coalesce(&mut self) {
        coalesce(&mut self.writes);
    }

    /// Moves `other`'s writes after this batch's.
    pub fn extend(&mut self, other: Batch) {
        self.writes.extend(other.writes);
    }

    pub(crate) fn put(&mut self, tree: Tree, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push(Write::Put { tree, key, value });
    }

    /// An envelope accepted or sealed here, which becomes its device's head in its document.
    /// The envelope after the one this batch has just stored for the same log extends that
    /// row into a run ([`run`]), and that head's write takes the new head.
    pub fn envelope(&mut self, env: &Envelope) {
        let h = &env.header;
        let log = h.log();
        let mut head = Vec::with_capacity(40);
        head.extend_from_slice(&h.seq.to_be_bytes());
        head.extend_from_slice(&env.hash());
        if let Some((row, at)) = self.open_run(&log, h.seq, env.bytes().len()) {
            if let Some(Write::Put { value, .. }) = self.writes.get_mut(row) {
                run::append(value, env.bytes());
            }
            if let Some(Write::Put { value, .. }) = self.writes.get_mut(at) {
                *value = head;
            }
            return;
        }
        self.put(
            Tree::Envelopes,
            keys::envelope(&log, h.seq),
            env.bytes().to_vec(),
        );
        self.put(Tree::Heads, keys::head(&log), head);
    }

    /// Where this batch's last write of an envelopes' row and its last write of a head are,
    /// if they are `log`'s, its row ends just before `seq` and has room for `size` more
    /// bytes: nothing written after them touches those trees, so extending the one and
    /// replacing the other leaves the store as writing the envelope and its head anew
    /// would. Only the last few writes are looked at.
    fn open_run(&self, log: &LogId, seq: u64, size: usize) -> Option<(usize, usize)> {
        const LOOK_BACK: usize = 8;
        let (mut row, mut head) = (None, None);
        for (i, w) in self.writes.iter().enumerate().rev().take(LOOK_BACK) {
            match w {
                Write::Put {
                    tree: Tree::Envelopes,
                    key,
                    value,
                } if row.is_none() => row = Some((i, key, value)),
                Write::Put {
                    tree: Tree::Heads,
                    key,
                    ..
                } if head.is_none() => head = Some((i, key)),
                Write::Put {
                    tree: Tree::Envelopes | Tree::Heads,
                    ..
                }
                | Write::Delete {
                    tree: Tree::Envelopes | Tree::Heads,
                    ..
                }
                | Write::Shred { .. } => break,
                _ => {}
            }
            if row.is_some() && head.is_some() {
                break;
            }
        }
        let ((row, key, value), (at, head_key)) = (row?, head?);
        let (of, first) = keys::split_envelope(key)?;
        let next = first.checked_add(run::count(value).ok()?)?;
        let fits = value.len() + 4 + size <= run::MAX_RUN_BYTES;
        (of == *log && next == seq && fits && head_key.as_slice() == &key[..key.len() - 8])
            .then_some((row, at))
    }

    /// Forgets a held envelope refused when it was checked after its arrival: its changes
    /// were never applied, and must never be. Its log's head stays (its position and
    /// hash), so that the device's next envelopes still chain on it.
    pub fn forget_envelope(&mut self, log: &LogId, seq: u64) {
        self.writes.push(Write::Delete {
            tree: Tree::Envelopes,
            key: keys::envelope(log, seq),
        });
    }

    /// A document's snapshot (sealed by the store; not journaled, since the envelopes it
    /// covers rebuild it).
    pub fn snapshot(&mut self, circle: &CircleId, doc: DocKind, snapshot: &Snapshot) {
        self.put(
            Tree::Snapshots,
            keys::doc_prefix(circle, doc),
            snapshot.encode().to_vec(),
        );
    }

    /// A signed membership operation of `circle`.
    pub fn op(&mut self, circle: &CircleId, op: &SignedOp) {
        self.put(
            Tree::Ops,
            keys::op(circle, &op.hash().0),
            op.bytes().to_vec(),
        );
    }

    /// The circle's local record (sealed by the store).
    pub fn circle(&mut self, circle: &CircleId, record: &[u8]) {
        self.put(Tree::Circles, circle.0.to_vec(), record.to_vec());
    }

    /// An attachment of `circle` (sealed by the store with the circle's key), under its
    /// BLAKE3 hash.
    pub fn blob(&mut self, circle: &CircleId, bytes: &[u8]) -> [u8; 32] {
        let hash = *blake3::hash(bytes).as_bytes();
        self.put(Tree::Blobs, keys::blob(circle, &hash), bytes.to_vec());
        hash
    }

    /// An attachment stored before schema 3 (under its hash alone), deleted.
    pub fn forget_blob(&mut self, hash: &[u8; 32]) {
        self.writes.push(Write::Delete {
            tree: Tree::Blobs,
            key: hash.to_vec(),
        });
    }

    /// The relays' deletion receipts of a circle whose sharing the patient suspended
    /// (JSON; sealed with the device's storage key).
    pub fn deletion_receipts(&mut self, circle: &CircleId, receipts: &[u8]) {
        self.put(
            Tree::Closed,
            keys::deletion_receipts(circle),
            receipts.to_vec(),
        );
    }

    /// Every row of `circle` deleted and its key forgotten (see [`Write::Shred`]).
    pub fn shred(&mut self, circle: &CircleId) {
        self.writes.push(Write::Shred { circle: *circle });
    }

    /// What is kept of a circle closed here: its tombstone and its audit trail without
    /// content (both sealed with the device's storage key).
    pub fn tombstone(&mut self, circle: &CircleId, tombstone: &[u8], audit: Option<&[u8]>) {
        self.put(Tree::Closed, circle.0.to_vec(), tombstone.to_vec());
        if let Some(audit) = audit {
            self.put(Tree::Closed, keys::closed_audit(circle), audit.to_vec());
        }
    }

    /// A node metadata value.
    pub fn meta(&mut self, key: &str, value: &[u8]) {
        self.put(Tree::Meta, key.as_bytes().to_vec(), value.to_vec());
    }

    /// A rejected envelope of `circle`, in one of the circle's
    /// [`MAX_REJECTIONS_PER_CIRCLE`] slots: once they are all taken, a new record replaces
    /// an earlier one (the slot is drawn from the record's hash and time), so the records
    /// of a circle never take more than a few megabytes whatever peers send.
    pub fn rejection(&mut self, circle: &CircleId, record: &RejectionRecord) {
        let mut h = blake3::Hasher::new();
        h.update(record.hash.as_bytes());
        h.update(&record.at.to_be_bytes());
        let draw = h.finalize();
        let slot = u16::from_be_bytes([draw.as_bytes()[0], draw.as_bytes()[1]])
            % MAX_REJECTIONS_PER_CIRCLE;
        let mut k = circle.0.to_vec();
        k.extend_from_slice(&slot.to_be_bytes());
        let v = serde_json::to_vec(record).unwrap_or_default();
        self.put(Tree::Rejected, k, v);
    }

    /// When this node received `item` of `circle` (first time only: a later copy of the
    /// same item is not new, so this is written once).
    pub fn received(
        &mut self,
        circle: &CircleId,
        item: &str,
        at: cercle_crdt::Timestamp,
        device: Option<&crate::identity::DeviceId>,
    ) {
        let mut value = at.0.to_be_bytes().to_vec();
        if let Some(d) = device {
            value.extend_from_slice(&d.0);
        }
        self.put(Tree::Received, keys::received(circle, item), value);
    }

    /// A professional of the directory, under their number and in the index by name.
    pub fn professional(&mut self, p: &crate::directory::Professional) {
        let key = crate::directory::Professional::key(p.register, &p.number);
        self.put(Tree::Directory, p.name_key(), key.clone());
        self.put(
            Tree::Directory,
            key,
            serde_json::to_vec(p).unwrap_or_default(),
        );
    }

    /// Proof that a device forked its log.
    pub fn fork(&mut self, circle: &CircleId, fork: &ForkRecord) {
        self.put(Tree::Forks, fork.key(circle), fork.value());
    }

    /// The journal record of the journaled writes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let writes: Vec<&Write> = self.writes.iter().filter(|w| w.journaled()).collect();
        // Sized once: a group's record is up to a few megabytes, grown it was copied again
        // and again.
        let size = 5 + writes.iter().map(|w| 10 + w.size()).sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.push(BATCH_VERSION);
        out.extend_from_slice(&(writes.len() as u32).to_le_bytes());
        for w in writes {
            match w {
                Write::Put { tree, key, value } => {
                    out.push(0);
                    out.push(tree.code());
                    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                    out.extend_from_slice(key);
                    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                    out.extend_from_slice(value);
                }
                Write::Delete { tree, key } => {
                    out.push(1);
                    out.push(tree.code());
                    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                    out.extend_from_slice(key);
                }
                Write::Shred { circle } => {
                    out.push(2);
                    out.extend_from_slice(&circle.0);
                }
            }
        }
        out
    }

    /// Reads a journal record back.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Batch, BatchDecodeError> {
        let mut r = Reader::new(bytes, BatchDecodeError("truncated"));
        if r.byte()? != BATCH_VERSION {
            return Err(BatchDecodeError("unknown batch version"));
        }
        let n = r.len_u32()?;
        let mut writes = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let op = r.byte()?;
            if op == 2 {
                writes.push(Write::Shred {
                    circle: CircleId(r.array()?),
                });
                continue;
            }
            let tree = Tree::from_code(r.byte()?).ok_or(BatchDecodeError("unknown tree"))?;
            let klen = r.len_u32()?;
            let key = r.take(klen)?.to_vec();
            match op {
                0 => {
                    let vlen = r.len_u32()?;
                    let value = r.take(vlen)?.to_vec();
                    writes.push(Write::Put { tree, key, value });
                }
                1 => writes.push(Write::Delete { tree, key }),
                _ => return Err(BatchDecodeError("unknown write kind")),
            }
        }
        if !r.is_done() {
            return Err(BatchDecodeError("trailing bytes"));
        }
        Ok(Batch { writes })
    }
}

/// Completes when a submitted batch is durable (or failed).
#[must_use = "a write is not acknowledged until its ticket is waited on"]
#[derive(Debug)]
pub struct Ticket(TicketInner);

#[derive(Debug)]
enum TicketInner {
    Ready(Result<(), StoreError>),
    Pending {
        rx: mpsc::Receiver<Result<(), StoreError>>,
        path: PathBuf,
    },
}

impl Ticket {
    /// A ticket already completed with `result`.
    pub fn ready(result: Result<(), StoreError>) -> Ticket {
        Ticket(TicketInner::Ready(result))
    }

    pub(crate) fn pending(rx: mpsc::Receiver<Result<(), StoreError>>, path: PathBuf) -> Ticket {
        Ticket(TicketInner::Pending { rx, path })
    }

    /// Blocks until the batch is on disk.
    pub fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            TicketInner::Ready(r) => r,
            TicketInner::Pending { rx, path } => rx.recv().unwrap_or(Err(StoreError::Io {
                path,
                reason: "the store's writer stopped".into(),
            })),
        }
    }
}

/// What a node needs from its storage: writes as batches made durable in order, and reads
/// of its trees. Each implementation gives the raw reads (values of sealed trees opened);
/// what the values mean is read here, once for all of them.
pub trait Store: Send + Sync + fmt::Debug {
    /// Queues `batch`; the ticket completes once it is durable. Batches are applied in the
    /// order submitted.
    fn submit(&self, batch: Batch) -> Ticket;

    /// Where the store is, for errors.
    fn location(&self) -> &Path;

    /// One value.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Opened>, StoreError>;

    /// Whether a key is held, without opening its value.
    fn contains(&self, tree: Tree, key: &[u8]) -> Result<bool, StoreError>;

    /// Every key and value under `prefix`, in key order.
    fn scan(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Opened)>, StoreError>;

    /// The keys and values in `keys`, in order, at most `limit`.
    fn range(&self, tree: Tree, keys: Keys, limit: usize) -> Result<KeyValues, StoreError>;

    /// The last key in `keys` and its value.
    fn last(&self, tree: Tree, keys: Keys) -> Result<Option<(Vec<u8>, Opened)>, StoreError>;

    /// Submits `batch` and waits until it is durable.
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.submit(batch).wait()
    }

    /// Every circle's id and opened record.
    fn circles(&self) -> Result<Vec<(CircleId, Opened)>, StoreError> {
        self.scan(Tree::Circles, b"")?
            .into_iter()
            .map(|(k, v)| {
                let id: [u8; 32] = k
                    .as_slice()
                    .try_into()
                    .map_err(|_| self.bad("a circle key"))?;
                Ok((CircleId(id), v))
            })
            .collect()
    }

    /// When this node received each item of `circle` that another device created.
    fn received(
        &self,
        circle: &CircleId,
    ) -> Result<BTreeMap<String, cercle_crdt::Timestamp>, StoreError> {
        Ok(self
            .receipts(circle)?
            .into_iter()
            .map(|(item, r)| (item, r.at))
            .collect())
    }

    /// When this node received each item of `circle` that another device created, and
    /// from which device when one device wrote everything applied with it.
    fn receipts(&self, circle: &CircleId) -> Result<BTreeMap<String, ItemReceipt>, StoreError> {
        self.scan(Tree::Received, &circle.0)?
            .into_iter()
            .map(|(k, v)| {
                let item = std::str::from_utf8(&k[32..]).map_err(|_| self.bad("an item id"))?;
                let at: [u8; 8] = v
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| self.bad("a time of receipt"))?;
                let device = v
                    .get(8..40)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(crate::identity::DeviceId);
                let at = cercle_crdt::Timestamp(i64::from_be_bytes(at));
                Ok((item.to_string(), ItemReceipt { at, device }))
            })
            .collect()
    }

    /// One circle's opened record.
    fn circle(&self, circle: &CircleId) -> Result<Option<Opened>, StoreError> {
        self.get(Tree::Circles, &circle.0)
    }

    /// A circle's signed membership operations (and the sealed keys they carry).
    fn ops(&self, circle: &CircleId) -> Result<Vec<Vec<u8>>, StoreError> {
        let ops = self.scan(Tree::Ops, &circle.0)?;
        Ok(ops.into_iter().map(|(_, v)| v.to_vec()).collect())
    }

    /// Envelopes of one log from sequence number `from` on, at most `limit`. A row holds
    /// one envelope or a run of them ([`run`]): unless a row starts at `from`, the row
    /// before may hold it; the rows after are read a few at a time, as each may hold many.
    fn envelopes(&self, log: &LogId, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let unreadable = |e: run::RunDecodeError| self.bad(&e.to_string());
        if limit == 0 {
            return Ok(out);
        }
        let end = keys::envelope(log, u64::MAX);
        let start = keys::envelope(log, from);
        let mut rows = limit.min(16);
        let mut found = self.range(Tree::Envelopes, start.clone()..=end.clone(), rows)?;
        // The rows of a log do not overlap: one starting at `from` leaves none before it
        // holding `from` (a log stored one envelope a row is read without looking back).
        if found.first().is_none_or(|(key, _)| *key != start)
            && let Some(before) = from.checked_sub(1)
        {
            let keys = keys::envelope(log, 0)..=keys::envelope(log, before);
            if let Some((key, row)) = self.last(Tree::Envelopes, keys)? {
                let (_, first) =
                    keys::split_envelope(&key).ok_or_else(|| self.bad("an envelope's key"))?;
                let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
                let held = run::envelopes(&row).map_err(unreadable)?;
                out.extend(held.into_iter().skip(skip).take(limit).map(<[u8]>::to_vec));
            }
        }
        loop {
            let more = found.len() == rows;
            // The next key after the last row's.
            let next = found.last().map(|(key, _)| {
                let mut next = key.clone();
                next.push(0);
                next
            });
            for (_, row) in found {
                let room = limit - out.len().min(limit);
                run::take_into(row, room, &mut out).map_err(unreadable)?;
            }
            match next {
                Some(next) if more && out.len() < limit => {
                    rows = rows.saturating_mul(4).min(limit);
                    found = self.range(Tree::Envelopes, next..=end.clone(), rows)?;
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// The version vector of a document: each device's last envelope.
    fn heads(
        &self,
        circle: &CircleId,
        doc: DocKind,
    ) -> Result<BTreeMap<DeviceId, Head>, StoreError> {
        let prefix = keys::doc_prefix(circle, doc);
        let mut out = BTreeMap::new();
        for (k, v) in self.scan(Tree::Heads, &prefix)? {
            let device: [u8; 32] = k
                .get(prefix.len()..)
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| self.bad("a head's key"))?;
            let mut r = Reader::new(&v, ());
            let head = (|| {
                let seq = u64::from_be_bytes(r.array().ok()?);
                let hash = r.array().ok()?;
                r.is_done().then_some(Head { seq, hash })
            })()
            .ok_or_else(|| self.bad("a head"))?;
            out.insert(DeviceId(device), head);
        }
        Ok(out)
    }

    /// The latest snapshot of a document, opened.
    fn snapshot(&self, circle: &CircleId, doc: DocKind) -> Result<Option<Snapshot>, StoreError> {
        match self.get(Tree::Snapshots, &keys::doc_prefix(circle, doc))? {
            None => Ok(None),
            Some(v) => Snapshot::decode(&v)
                .map(Some)
                .ok_or_else(|| self.bad("a snapshot")),
        }
    }

    /// An attachment of `circle`, opened (one stored before schema 3 is under its hash
    /// alone).
    fn blob(&self, circle: &CircleId, hash: &[u8; 32]) -> Result<Option<Opened>, StoreError> {
        match self.get(Tree::Blobs, &keys::blob(circle, hash))? {
            Some(v) => Ok(Some(v)),
            None => self.get(Tree::Blobs, hash),
        }
    }

    /// Whether an attachment of `circle` is held, without opening it.
    fn has_blob(&self, circle: &CircleId, hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.contains(Tree::Blobs, &keys::blob(circle, hash))?
            || self.contains(Tree::Blobs, hash)?)
    }

    /// What is kept of each circle closed here, opened.
    fn tombstones(&self) -> Result<Vec<(CircleId, Opened)>, StoreError> {
        Ok(self
            .scan(Tree::Closed, b"")?
            .into_iter()
            .filter_map(|(k, v)| Some((CircleId(k.as_slice().try_into().ok()?), v)))
            .collect())
    }

    /// The relays' deletion receipts kept for a circle whose sharing was suspended.
    fn deletion_receipts(&self, circle: &CircleId) -> Result<Option<Opened>, StoreError> {
        self.get(Tree::Closed, &keys::deletion_receipts(circle))
    }

    /// The audit trail without content kept of a circle closed here.
    fn closed_audit(&self, circle: &CircleId) -> Result<Option<Opened>, StoreError> {
        self.get(Tree::Closed, &keys::closed_audit(circle))
    }

    /// A node metadata value.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(Tree::Meta, key.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Every node metadata value whose key starts with `prefix`, in key order.
    fn metas(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .scan(Tree::Meta, prefix.as_bytes())?
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            .collect())
    }

    /// The rejected envelopes of a circle, oldest first.
    fn rejections(&self, circle: &CircleId) -> Result<Vec<RejectionRecord>, StoreError> {
        let mut records = self
            .scan(Tree::Rejected, &circle.0)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(|_| self.bad("a rejection record")))
            .collect::<Result<Vec<RejectionRecord>, _>>()?;
        records.sort_by_key(|r: &RejectionRecord| r.at);
        Ok(records)
    }

    /// The directory's professional with this number, if imported.
    fn professional(
        &self,
        register: crate::directory::Register,
        number: &str,
    ) -> Result<Option<crate::directory::Professional>, StoreError> {
        let key = crate::directory::Professional::key(register, number);
        match self.get(Tree::Directory, &key)? {
            Some(v) => Ok(serde_json::from_slice(&v).ok()),
            None => Ok(None),
        }
    }

    /// Up to `limit` professionals of the directory whose last name starts with `name`'s
    /// words, in the order of the name index.
    fn professionals_named(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<crate::directory::Professional>, StoreError> {
        let from = crate::directory::name_prefix(name);
        let mut to = from.clone();
        to.extend_from_slice(&[0xff; 4]);
        let keys = self.range(Tree::Directory, from..=to, limit)?;
        let mut found = Vec::with_capacity(keys.len());
        for (_, key) in keys {
            if let Some(v) = self.get(Tree::Directory, &key)? {
                found.extend(serde_json::from_slice(&v).ok());
            }
        }
        Ok(found)
    }

    /// The fork evidence recorded for a circle.
    fn forks(&self, circle: &CircleId) -> Result<Vec<ForkRecord>, StoreError> {
        let mut out = Vec::new();
        for (k, v) in self.scan(Tree::Forks, &circle.0)? {
            out.push(ForkRecord::decode(&k, &v).ok_or_else(|| self.bad("fork evidence"))?);
        }
        Ok(out)
    }

    /// The error for a value that is not what was written.
    #[doc(hidden)]
    fn bad(&self, what: &str) -> StoreError {
        StoreError::BadValue {
            path: self.location().to_path_buf(),
            what: what.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tree() -> impl Strategy<Value = Tree> {
        prop::sample::select(Tree::ALL.to_vec()).prop_filter("journaled", |t| t.journaled())
    }

    fn write() -> impl Strategy<Value = Write> {
        let bytes = || prop::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            (tree(), bytes(), bytes()).prop_map(|(tree, key, value)| Write::Put {
                tree,
                key,
                value
            }),
            (tree(), bytes()).prop_map(|(tree, key)| Write::Delete { tree, key }),
            any::<[u8; 32]>().prop_map(|c| Write::Shred {
                circle: CircleId(c)
            }),
        ]
    }

    /// Writes over a few rows of two circles, so that they overwrite and shred each other.
    fn row_write() -> impl Strategy<Value = Write> {
        let tree = prop::sample::select(vec![
            Tree::Meta,
            Tree::Circles,
            Tree::Heads,
            Tree::Envelopes,
        ]);
        let key = (0u8..2, 0u8..3).prop_map(|(c, k)| {
            let mut key = vec![c; 32];
            key.push(k);
            key
        });
        prop_oneof![
            4 => (tree.clone(), key.clone(), prop::collection::vec(any::<u8>(), 0..4))
                .prop_map(|(tree, key, value)| Write::Put { tree, key, value }),
            2 => (tree, key).prop_map(|(tree, key)| Write::Delete { tree, key }),
            1 => (0u8..2).prop_map(|c| Write::Shred { circle: CircleId([c; 32]) }),
        ]
    }

    /// The rows `writes` leave, applied in order.
    fn applied(writes: &[Write]) -> BTreeMap<(Tree, Vec<u8>), Vec<u8>> {
        let mut rows = BTreeMap::new();
        for w in writes {
            match w {
                Write::Put { tree, key, value } => {
                    rows.insert((*tree, key.clone()), value.clone());
                }
                Write::Delete { tree, key } => {
                    rows.remove(&(*tree, key.clone()));
                }
                Write::Shred { circle } => {
                    rows.retain(|(t, k), _| {
                        !(CIRCLE_TREES.contains(t) && k.starts_with(&circle.0))
                    });
                }
            }
        }
        rows
    }

    proptest! {
        #[test]
        fn envelope_keys_split_back_into_their_parts(circle in any::<[u8; 32]>(), doc in 0usize..3, device in any::<[u8; 32]>(), seq in any::<u64>(), noise in prop::collection::vec(any::<u8>(), 0..100)) {
            let log = LogId { circle: CircleId(circle), doc: DocKind::ALL[doc], device: DeviceId(device) };
            let k = keys::envelope(&log, seq);
            prop_assert_eq!(keys::split_envelope(&k), Some((log, seq)));
            // Any other bytes give a key's parts or nothing, never a panic.
            let _ = keys::split_envelope(&noise);
        }

        #[test]
        fn batches_round_trip_through_their_journal_record(writes in prop::collection::vec(write(), 0..12)) {
            let batch = Batch { writes };
            prop_assert_eq!(Batch::decode(&batch.encode()), Ok(batch));
        }

        #[test]
        fn coalesced_writes_end_the_store_as_all_of_them_do(writes in prop::collection::vec(row_write(), 0..40)) {
            let mut coalesced = writes.clone();
            coalesce(&mut coalesced);
            prop_assert_eq!(applied(&coalesced), applied(&writes));
            // No row is written twice any more.
            let mut rows: Vec<_> = coalesced.iter().filter_map(Write::row).collect();
            let n = rows.len();
            rows.sort();
            rows.dedup();
            prop_assert_eq!(rows.len(), n);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Batch::decode(&bytes);
        }

        #[test]
        fn snapshots_round_trip(covers in prop::collection::btree_map(any::<[u8; 32]>(), any::<u64>(), 0..5), doc in prop::collection::vec(any::<u8>(), 0..100)) {
            let s = Snapshot { covers: covers.into_iter().map(|(d, s)| (DeviceId(d), s)).collect(), doc };
            prop_assert_eq!(Snapshot::decode(&s.encode()), Some(s));
        }

        #[test]
        fn decoding_an_arbitrary_snapshot_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Snapshot::decode(&bytes);
        }
    }

    #[test]
    fn snapshots_are_not_journaled() {
        let mut b = Batch::new();
        b.put(Tree::Snapshots, vec![1], vec![2]);
        b.meta("k", b"v");
        let back = Batch::decode(&b.encode()).unwrap_or_default();
        assert_eq!(back.len(), 1);
    }

    #[test]
    fn a_full_disk_is_named_as_such() {
        let e = std::io::Error::from_raw_os_error(28);
        assert!(matches!(
            StoreError::io(std::path::Path::new("/h"), &e),
            StoreError::DiskFull { .. }
        ));
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(matches!(
            StoreError::io(std::path::Path::new("/h"), &e),
            StoreError::Io { .. }
        ));
    }
}
