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
//! [`SledStore`] is the implementation: a `sled` database plus a checksummed journal of
//! every acknowledged batch, from which the database is rebuilt if its files are damaged
//! (see `ARCHITECTURE.md`). Tests wrap the trait to inject faults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc;

use cercle_crdt::DocKind;
use zeroize::Zeroizing;

use crate::circle::membership::{CircleId, SignedOp};
use crate::envelope::Envelope;
use crate::identity::DeviceId;

pub mod journal;
mod sled_store;

pub use sled_store::{OpenReport, SledStore};

/// A value opened from a sealed tree; zeroed when dropped.
pub type Opened = Zeroizing<Vec<u8>>;

/// The store's on-disk schema version (see `SledStore::migrate`).
pub const SCHEMA_VERSION: u32 = 1;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tree {
    /// Node metadata (schema version, journal position, key check).
    Meta,
    /// Circle records (sealed): patient display name, members' profiles.
    Circles,
    /// Signed membership operations: circle ‖ op hash.
    Ops,
    /// Envelopes: circle ‖ doc ‖ device ‖ seq (big-endian).
    Envelopes,
    /// Version vectors: circle ‖ doc ‖ device → seq ‖ envelope hash.
    Heads,
    /// Document snapshots (sealed, not journaled: they are rebuilt from envelopes).
    Snapshots,
    /// Attachments (sealed): content hash.
    Blobs,
    /// Rejected envelopes: circle ‖ time ‖ hash prefix → JSON record.
    Rejected,
    /// Fork evidence: circle ‖ device ‖ doc ‖ seq → both envelopes.
    Forks,
}

impl Tree {
    /// Every tree.
    pub const ALL: [Tree; 9] = [
        Tree::Meta,
        Tree::Circles,
        Tree::Ops,
        Tree::Envelopes,
        Tree::Heads,
        Tree::Snapshots,
        Tree::Blobs,
        Tree::Rejected,
        Tree::Forks,
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
        }
    }

    /// Whether values are sealed with the storage key (they hold care data in clear
    /// otherwise).
    pub fn sealed(self) -> bool {
        matches!(self, Tree::Circles | Tree::Snapshots | Tree::Blobs)
    }

    /// Whether writes go through the journal (everything but what can be recomputed).
    pub fn journaled(self) -> bool {
        !matches!(self, Tree::Snapshots)
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
}

impl Write {
    fn tree(&self) -> Tree {
        match self {
            Write::Put { tree, .. } | Write::Delete { tree, .. } => *tree,
        }
    }
}

/// The last envelope of one device in one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash (what the next envelope's `prev` names).
    pub hash: [u8; 32],
}

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

/// Two envelopes signed by one device for one position, kept as proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkRecord {
    pub device: DeviceId,
    pub doc: DocKind,
    pub seq: u64,
    pub first: Vec<u8>,
    pub second: Vec<u8>,
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
        let n = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let mut at = 4usize;
        let mut covers = BTreeMap::new();
        for _ in 0..n {
            let d: [u8; 32] = bytes.get(at..at + 32)?.try_into().ok()?;
            let s = u64::from_le_bytes(bytes.get(at + 32..at + 40)?.try_into().ok()?);
            covers.insert(DeviceId(d), s);
            at += 40;
        }
        Some(Snapshot {
            covers,
            doc: bytes.get(at..)?.to_vec(),
        })
    }
}

pub(crate) fn doc_code(doc: DocKind) -> u8 {
    match doc {
        DocKind::PatientFile => 1,
        DocKind::LiaisonNotebook => 2,
        DocKind::Thread => 3,
    }
}

pub(crate) fn doc_of(code: u8) -> Option<DocKind> {
    DocKind::ALL.into_iter().find(|d| doc_code(*d) == code)
}

/// Key builders: fixed-width fields, big-endian numbers, so prefix scans and ranges work.
pub(crate) mod keys {
    use super::*;

    pub(crate) fn doc_prefix(circle: &CircleId, doc: DocKind) -> Vec<u8> {
        let mut k = Vec::with_capacity(33);
        k.extend_from_slice(&circle.0);
        k.push(doc_code(doc));
        k
    }

    pub(crate) fn head(circle: &CircleId, doc: DocKind, device: &DeviceId) -> Vec<u8> {
        let mut k = doc_prefix(circle, doc);
        k.extend_from_slice(&device.0);
        k
    }

    pub(crate) fn envelope(
        circle: &CircleId,
        doc: DocKind,
        device: &DeviceId,
        seq: u64,
    ) -> Vec<u8> {
        let mut k = head(circle, doc, device);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// The parts of a key made by [`envelope`]; `None` if it is not one.
    pub(crate) fn split_envelope(k: &[u8]) -> Option<(CircleId, DocKind, DeviceId, u64)> {
        if k.len() != 73 {
            return None;
        }
        let circle = CircleId(k[..32].try_into().ok()?);
        let doc = doc_of(k[32])?;
        let device = DeviceId(k[33..65].try_into().ok()?);
        let seq = u64::from_be_bytes(k[65..].try_into().ok()?);
        Some((circle, doc, device, seq))
    }

    pub(crate) fn op(circle: &CircleId, hash: &[u8; 32]) -> Vec<u8> {
        let mut k = circle.0.to_vec();
        k.extend_from_slice(hash);
        k
    }
}

/// Writes that become durable together.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub(crate) writes: Vec<Write>,
}

/// Why a journal record does not decode as a batch (a damaged or foreign journal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

    /// Moves `other`'s writes after this batch's.
    pub fn extend(&mut self, other: Batch) {
        self.writes.extend(other.writes);
    }

    pub(crate) fn put(&mut self, tree: Tree, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push(Write::Put { tree, key, value });
    }

    /// An envelope accepted or sealed here, which becomes its device's head in its document.
    pub fn envelope(&mut self, env: &Envelope) {
        let h = &env.header;
        self.put(
            Tree::Envelopes,
            keys::envelope(&h.circle, h.doc, &h.device, h.seq),
            env.bytes().to_vec(),
        );
        let mut head = h.seq.to_be_bytes().to_vec();
        head.extend_from_slice(&env.hash());
        self.put(Tree::Heads, keys::head(&h.circle, h.doc, &h.device), head);
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

    /// An attachment (sealed by the store), under its BLAKE3 hash.
    pub fn blob(&mut self, bytes: &[u8]) -> [u8; 32] {
        let hash = *blake3::hash(bytes).as_bytes();
        self.put(Tree::Blobs, hash.to_vec(), bytes.to_vec());
        hash
    }

    /// A node metadata value.
    pub fn meta(&mut self, key: &str, value: &[u8]) {
        self.put(Tree::Meta, key.as_bytes().to_vec(), value.to_vec());
    }

    /// A rejected envelope of `circle`.
    pub fn rejection(&mut self, circle: &CircleId, record: &RejectionRecord) {
        let mut k = circle.0.to_vec();
        k.extend_from_slice(&record.at.to_be_bytes());
        k.extend_from_slice(&record.hash.as_bytes()[..record.hash.len().min(16)]);
        let v = serde_json::to_vec(record).unwrap_or_default();
        self.put(Tree::Rejected, k, v);
    }

    /// Proof that a device forked its log.
    pub fn fork(&mut self, circle: &CircleId, fork: &ForkRecord) {
        let mut k = circle.0.to_vec();
        k.extend_from_slice(&fork.device.0);
        k.push(doc_code(fork.doc));
        k.extend_from_slice(&fork.seq.to_be_bytes());
        let mut v = (fork.first.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(&fork.first);
        v.extend_from_slice(&fork.second);
        self.put(Tree::Forks, k, v);
    }

    /// The journal record of the journaled writes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let writes: Vec<&Write> = self
            .writes
            .iter()
            .filter(|w| w.tree().journaled())
            .collect();
        let mut out = vec![BATCH_VERSION];
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
            }
        }
        out
    }

    /// Reads a journal record back.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Batch, BatchDecodeError> {
        let mut r = ByteReader { bytes, at: 0 };
        if r.take(1)? != [BATCH_VERSION] {
            return Err(BatchDecodeError("unknown batch version"));
        }
        let n = r.u32()? as usize;
        let mut writes = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let op = r.take(1)?[0];
            let tree = Tree::from_code(r.take(1)?[0]).ok_or(BatchDecodeError("unknown tree"))?;
            let klen = r.u32()? as usize;
            let key = r.take(klen)?.to_vec();
            match op {
                0 => {
                    let vlen = r.u32()? as usize;
                    let value = r.take(vlen)?.to_vec();
                    writes.push(Write::Put { tree, key, value });
                }
                1 => writes.push(Write::Delete { tree, key }),
                _ => return Err(BatchDecodeError("unknown write kind")),
            }
        }
        if r.at != bytes.len() {
            return Err(BatchDecodeError("trailing bytes"));
        }
        Ok(Batch { writes })
    }
}

struct ByteReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchDecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(BatchDecodeError("truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, BatchDecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
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

/// What a node needs from its storage.
pub trait Store: Send + Sync + fmt::Debug {
    /// Queues `batch`; the ticket completes once it is durable. Batches are applied in the
    /// order submitted.
    fn submit(&self, batch: Batch) -> Ticket;

    /// Submits `batch` and waits until it is durable.
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.submit(batch).wait()
    }

    /// Stores a snapshot in the background (not journaled: envelopes can rebuild it).
    fn save_snapshot(&self, circle: &CircleId, doc: DocKind, snapshot: &Snapshot) -> Ticket;

    /// Every circle's id and opened record.
    fn circles(&self) -> Result<Vec<(CircleId, Opened)>, StoreError>;

    /// One circle's opened record.
    fn circle(&self, circle: &CircleId) -> Result<Option<Opened>, StoreError>;

    /// A circle's signed membership operations (and the sealed keys they carry).
    fn ops(&self, circle: &CircleId) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Envelopes of `device` in `doc` from sequence number `from` on, at most `limit`.
    fn envelopes(
        &self,
        circle: &CircleId,
        doc: DocKind,
        device: &DeviceId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError>;

    /// The version vector of a document: each device's last envelope.
    fn heads(
        &self,
        circle: &CircleId,
        doc: DocKind,
    ) -> Result<BTreeMap<DeviceId, Head>, StoreError>;

    /// The latest snapshot of a document, opened.
    fn snapshot(&self, circle: &CircleId, doc: DocKind) -> Result<Option<Snapshot>, StoreError>;

    /// An attachment, opened.
    fn blob(&self, hash: &[u8; 32]) -> Result<Option<Opened>, StoreError>;

    /// Whether an attachment is held, without opening it.
    fn has_blob(&self, hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.blob(hash)?.is_some())
    }

    /// A node metadata value.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The rejected envelopes of a circle, oldest first.
    fn rejections(&self, circle: &CircleId) -> Result<Vec<RejectionRecord>, StoreError>;

    /// The fork evidence recorded for a circle.
    fn forks(&self, circle: &CircleId) -> Result<Vec<ForkRecord>, StoreError>;
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
        ]
    }

    proptest! {
        #[test]
        fn envelope_keys_split_back_into_their_parts(circle in any::<[u8; 32]>(), doc in 0usize..3, device in any::<[u8; 32]>(), seq in any::<u64>(), noise in prop::collection::vec(any::<u8>(), 0..100)) {
            let doc = DocKind::ALL[doc];
            let k = keys::envelope(&CircleId(circle), doc, &DeviceId(device), seq);
            prop_assert_eq!(keys::split_envelope(&k), Some((CircleId(circle), doc, DeviceId(device), seq)));
            // Any other bytes give a key's parts or nothing, never a panic.
            let _ = keys::split_envelope(&noise);
        }

        #[test]
        fn batches_round_trip_through_their_journal_record(writes in prop::collection::vec(write(), 0..12)) {
            let batch = Batch { writes };
            prop_assert_eq!(Batch::decode(&batch.encode()), Ok(batch));
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
