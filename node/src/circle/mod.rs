//! Circles of care: the team around one patient, its signed membership log, and the three
//! documents it shares.
//!
//! A circle's id is the hash of its signed genesis operation (64 hex digits); people may type
//! any unambiguous prefix of it. Who belongs to it, with which role, is decided only by
//! [`membership`], from the signed operations kept in the store.
//!
//! A [`Circle`] never writes to the disk, reads the clock or the system's randomness: every
//! change it makes (a local write, a membership operation, what a peer sent) comes back as
//! a [`Staged`] batch for the node to make durable, with the envelopes to push once it is.
//! It reads the store only when opened and woken. Its jobs live one per file:
//!
//! - `load`: creating, opening at rest (record, membership, heads), waking (each document
//!   from its snapshot and the envelopes after it) and joining a circle;
//! - `keys`: the key schedule, a pure function of the membership log and this device;
//! - `members`: membership commands (add, remove, change a role, name relays);
//! - `write`: the one path of a local write (role check, Automerge change, seal, batch);
//! - `receive`: the receive pipeline (operations, envelope checks, document validation).

use std::collections::BTreeMap;

use cercle_crdt::{
    DocKind, Entry, LiaisonNotebook, MemberId, PatientFile, Replica, Thread, Timestamp, WriteError,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

mod keys;
mod load;
mod members;
pub mod membership;
mod receive;
mod write;

pub use keys::held_epoch_keys;
pub(crate) use receive::op_item;
pub use receive::{CHECK_AT_ONCE, MAX_DEFERRED_BYTES, Receipt};
pub use write::CircleDocument;

use crate::crypto::CryptoError;
use crate::envelope::{EnvelopeLog, EnvelopeRef, EnvelopeRejection};
use crate::identity::{DeviceId, Profile};
use crate::store::{Batch, Head, Store, StoreError};
use membership::{CircleId, Membership, OpError, Resolution};

/// A document is snapshotted once this many envelopes were applied after its last snapshot.
pub const SNAPSHOT_EVERY: usize = 1000;
/// On opening, a document with at least this many envelopes after its snapshot gets a new one.
pub const SNAPSHOT_ON_OPEN: usize = 64;

/// Why a circle operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CircleError {
    /// No circle matches what the user typed.
    #[error("no circle matches {query:?}; `cercle circle list` shows your circles")]
    Unknown { query: String },
    /// Several circles match a prefix.
    #[error("{query:?} matches {count} circles; type more characters of the id")]
    Ambiguous { query: String, count: usize },
    /// The document refused the write (empty note, bad date...).
    #[error("{0}")]
    Write(#[from] WriteError),
    /// A stored document or envelope could not be loaded.
    #[error("the stored {what} of circle {circle} is damaged ({reason}); run `cercle repair`")]
    Load {
        circle: String,
        what: String,
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored or received membership operation was refused.
    #[error("membership operation refused: {0}")]
    Op(#[from] OpError),
    /// The local member's role does not allow this.
    #[error("your role in this circle ({role}) does not allow {action}")]
    NotAllowed { role: String, action: &'static str },
    /// The member named is not in the circle.
    #[error("no member of this circle matches {query:?}; `cercle circle show` lists them")]
    UnknownMember { query: String },
    /// The name given fits several members.
    #[error("{query:?} fits {count} members of this circle: give more of the name")]
    AmbiguousMember { query: String, count: usize },
    /// Sealing or opening a key failed.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// A local change could not be sealed into an envelope.
    #[error("cannot seal the change: {0}")]
    Seal(#[from] EnvelopeRejection),
    /// This device holds no key of the circle's current epoch.
    #[error(
        "this device has no key for the circle's current epoch; ask a coordinator to add it again"
    )]
    NoEpochKey,
    /// Data of a circle this device is not a member of.
    #[error("this device is not a member of circle {circle}")]
    NotInvited { circle: String },
    /// The member to add is already in the circle.
    #[error("{name} is already a member of this circle")]
    AlreadyMember { name: String },
    /// More relays than a circle may name.
    #[error("a circle may use at most {max} relays")]
    TooManyRelays { max: usize },
    /// More on-call professionals than a circle may name.
    #[error("a circle may name at most {max} on-call professionals")]
    TooManyOnCall { max: usize },
    /// An emergency access asked by someone the circle's on-call list does not name.
    #[error(
        "{name} is not on this circle's on-call list; a coordinator adds them with `cercle circle on-call`"
    )]
    NotOnCall { name: String },
    /// The circle's documents were asked for while it rests (the node wakes a circle
    /// before reading it: this is a bug).
    #[error("circle {circle} was read while at rest; this is a bug, please report it")]
    AtRest { circle: String },
    /// The patient objected to sharing: the circle is read-only.
    #[error(
        "sharing is suspended in this circle: the patient objected ({reason}); it is read-only, and a coordinator may close it"
    )]
    Suspended { reason: String },
}

/// What a circle is, as recorded locally (sealed at rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CircleInfo {
    /// The circle's id (64 hex digits).
    pub id: String,
    /// The patient's display name (or the team's name, for a team circle).
    pub patient: String,
    /// The member who created the circle.
    #[schemars(with = "String")]
    pub created_by: MemberId,
    /// When it was created (milliseconds since the epoch).
    #[schemars(with = "i64")]
    pub created_at: Timestamp,
    /// The patient's birth date, as the patient file has it (in lists, not kept here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Other circles held here that are probably for the same patient: same INS, or same
    /// names and birth date (in lists, not kept here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probable_duplicates: Vec<String>,
    /// A team's own circle, with no patient (`patient` is then the team's name): messages
    /// and documents only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub team: bool,
}

/// What a new circle is about: a patient, or a team (no patient: messages and documents).
#[derive(Debug, Clone)]
pub enum About {
    Patient(cercle_crdt::IdentityUpdate),
    Team(String),
}

/// The local record of a circle: its metadata and the profiles of its members, as known
/// from their cards (never in the membership log, which relays see).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CircleRecord {
    info: CircleInfo,
    names: BTreeMap<MemberId, Profile>,
    /// Absent from records written before it was kept: such a circle is opened whole once.
    #[serde(default)]
    listing: Option<Listing>,
    #[serde(default)]
    waiting: Option<WaitingAlerts>,
    /// The digest of the membership operations this device checked ([`ops_digest`]): at
    /// the next opening, the same operations are not checked again.
    #[serde(default, with = "crate::identity::hex_bytes::option")]
    ops_checked: Option<[u8; 32]>,
    /// Envelopes held but not yet opened and checked against the documents' rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unchecked: Vec<UncheckedLog>,
}

/// Where a device's envelopes in one document are held but not yet checked (checks 6–8:
/// opening, the device's own changes, the document's rules) nor applied: taken in while
/// the circle rested, with the checks that need no key (as a relay takes them). Kept in
/// the circle's record, so that they are checked after a restart as well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Unchecked {
    /// The first sequence number not checked yet.
    pub(crate) from: u64,
    /// When the first of them arrived (the time of receipt kept for their items).
    pub(crate) at: i64,
    /// The peer it came from (for the record of a refusal).
    pub(crate) by: String,
}

/// An [`Unchecked`] with its log, as the record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UncheckedLog {
    doc: DocKind,
    device: DeviceId,
    #[serde(flatten)]
    unchecked: Unchecked,
}

/// A change of a circle, done in memory and waiting to be made durable: the batch to write,
/// and what to do once it is on disk.
#[must_use = "nothing is durable, nor pushed, until the node writes the batch"]
#[derive(Debug, Default)]
pub struct Staged {
    /// The writes.
    pub batch: Batch,
    /// Envelopes in the batch, in order, to push to peers once it is durable.
    pub envelopes: Vec<EnvelopeRef>,
    /// The membership log changed: who shares the circle (and its meeting spot) may have.
    pub membership_changed: bool,
}

impl Staged {
    /// Adds `other` after this one.
    pub fn extend(&mut self, other: Staged) {
        self.batch.extend(other.batch);
        self.envelopes.extend(other.envelopes);
        self.membership_changed |= other.membership_changed;
    }
}

/// A local write's result (a new note's id...) and its staged change.
#[must_use = "a write is acknowledged only once its batch is durable"]
#[derive(Debug)]
pub struct Written<T> {
    pub value: T,
    pub staged: Staged,
}

/// Per document: how far it got from each device (kept while the circle rests).
#[derive(Debug, Default)]
struct DocState {
    /// The last sequence number applied from each device (the version vector).
    applied: BTreeMap<DeviceId, u64>,
    /// This device's last envelope.
    own: Option<Head>,
    /// Envelopes applied since the last snapshot (counted while the documents are open).
    since_snapshot: usize,
}

/// The three documents of a circle, in memory while the circle is awake; reachable for
/// writing only through [`Circle::write`].
#[derive(Debug)]
pub struct Docs {
    patient_file: PatientFile,
    notebook: LiaisonNotebook,
    thread: Thread,
}

impl Docs {
    fn new(actor: cercle_crdt::ActorId) -> Docs {
        Docs {
            patient_file: PatientFile::new(actor.clone()),
            notebook: LiaisonNotebook::new(actor.clone()),
            thread: Thread::new(actor),
        }
    }

    fn replica_mut(&mut self, kind: DocKind) -> &mut Replica {
        match kind {
            DocKind::PatientFile => self.patient_file.replica_mut(),
            DocKind::LiaisonNotebook => self.notebook.replica_mut(),
            DocKind::Thread => self.thread.replica_mut(),
        }
    }
}

/// The alerts of the notebook waiting for this node's member (id, written at, in
/// milliseconds), and what they were read from: the notebook's version vector and the
/// member's role. Kept in the record, so that recalling alerts wakes no circle at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingAlerts {
    pub notebook: BTreeMap<DeviceId, u64>,
    pub role: Option<cercle_crdt::Role>,
    pub alerts: Vec<(String, i64)>,
}

/// What the circles list shows of the patient, kept in the circle's sealed record so that
/// listing a GP's thousand circles opens none of their documents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Listing {
    birth_date: Option<String>,
    ins: Option<String>,
    family_name: Option<String>,
    given_names: Option<String>,
}

impl Listing {
    fn of(pf: &PatientFile) -> Listing {
        let id = pf.identity();
        Listing {
            birth_date: id.birth_date,
            ins: id.ins,
            family_name: id.family_name,
            given_names: id.given_names,
        }
    }
}

/// A circle held by this node: its record, membership, documents and receive state.
///
/// A circle is either **awake**, its documents in memory and its receive checks ready, or
/// **at rest**: only its record, membership, keys and version vectors, a few kilobytes.
/// A node opens every circle at rest and wakes one when something needs its documents (a
/// request, a peer's envelopes, a write); the node puts idle circles back to rest.
#[derive(Debug)]
pub struct Circle {
    info: CircleInfo,
    id: CircleId,
    membership: Membership,
    names: BTreeMap<MemberId, Profile>,
    listing: Listing,
    /// The alerts waiting for this node's member, as last read.
    waiting: Option<WaitingAlerts>,
    /// The digest of the stored operations checked when the circle was last opened.
    ops_checked: Option<[u8; 32]>,
    /// The documents, while awake.
    docs: Option<Box<Docs>>,
    /// Per document, what was applied from whom (kept at rest: sync reads it).
    progress: BTreeMap<DocKind, DocState>,
    keys: keys::KeySchedule,
    /// The receive side's checks: each device's last accepted envelope per document.
    log: EnvelopeLog,
    /// Whether `log` continues every device's log from its last envelope held, which a
    /// circle at rest needs to take envelopes in unchecked.
    log_ready: bool,
    /// Envelopes held but not checked yet, per document and device (kept in the record).
    unchecked: BTreeMap<(DocKind, DeviceId), Unchecked>,
    /// Envelopes that passed the checks but wait for another device's changes (bounded).
    deferred: Vec<Vec<crate::envelope::Accepted>>,
    /// The bound of `deferred`, in bytes: [`MAX_DEFERRED_BYTES`].
    defer_limit: usize,
}

impl Circle {
    /// The circle's metadata.
    pub fn info(&self) -> &CircleInfo {
        &self.info
    }

    /// The circle's id.
    pub fn id(&self) -> CircleId {
        self.id
    }

    /// Who is in the circle now.
    pub fn resolution(&self) -> &Resolution {
        self.membership.resolution()
    }

    /// The membership log.
    pub fn membership(&self) -> &membership::MembershipLog {
        self.membership.log()
    }

    /// Whether the documents are in memory.
    pub fn is_awake(&self) -> bool {
        self.docs.is_some()
    }

    /// The documents, which must be awake (the node wakes a circle before reading it).
    fn docs(&self) -> Result<&Docs, CircleError> {
        self.docs.as_deref().ok_or(CircleError::AtRest {
            circle: self.info.id.clone(),
        })
    }

    fn docs_mut(&mut self) -> Result<&mut Docs, CircleError> {
        self.docs.as_deref_mut().ok_or(CircleError::AtRest {
            circle: self.info.id.clone(),
        })
    }

    /// How far a document got (kept awake or at rest).
    fn progress(&mut self, kind: DocKind) -> &mut DocState {
        self.progress.entry(kind).or_default()
    }

    /// The patient file.
    pub fn patient_file(&self) -> Result<&PatientFile, CircleError> {
        Ok(&self.docs()?.patient_file)
    }

    /// The liaison notebook.
    pub fn notebook(&self) -> Result<&LiaisonNotebook, CircleError> {
        Ok(&self.docs()?.notebook)
    }

    /// The messages.
    pub fn thread(&self) -> Result<&Thread, CircleError> {
        Ok(&self.docs()?.thread)
    }

    /// The notebook's entries, oldest first.
    pub fn notes(&self) -> Result<Vec<Entry>, CircleError> {
        Ok(self.notebook()?.entries())
    }

    /// Per document, the last sequence number held from each device (its version vector),
    /// checked or not.
    pub fn vector(&self, doc: DocKind) -> BTreeMap<DeviceId, u64> {
        self.progress
            .get(&doc)
            .map(|s| s.applied.clone())
            .unwrap_or_default()
    }

    /// Per document, the last sequence number applied to the document from each device:
    /// the version vector without the envelopes not checked yet.
    fn applied_vector(&self, doc: DocKind) -> BTreeMap<DeviceId, u64> {
        let mut vector = self.vector(doc);
        for ((d, device), u) in &self.unchecked {
            if *d != doc {
                continue;
            }
            match u.from {
                0 | 1 => vector.remove(device),
                from => vector.insert(*device, from - 1),
            };
        }
        vector
    }

    /// The last sequence number held from `device` in `doc`, checked or not (0: none).
    fn held_from(&self, doc: DocKind, device: &DeviceId) -> u64 {
        self.progress
            .get(&doc)
            .and_then(|s| s.applied.get(device))
            .copied()
            .unwrap_or(0)
    }

    /// The last sequence number applied to `doc` from `device` (0: none).
    fn applied_from(&self, doc: DocKind, device: &DeviceId) -> u64 {
        let held = self.held_from(doc, device);
        match self.unchecked.get(&(doc, *device)) {
            Some(u) => held.min(u.from.saturating_sub(1)),
            None => held,
        }
    }

    /// Envelopes held here, in all documents (the sum of the version vectors).
    pub fn held_envelopes(&self) -> u64 {
        self.progress
            .values()
            .flat_map(|s| s.applied.values())
            .sum()
    }

    /// Envelopes held here and not yet checked nor applied, in how many device logs.
    pub fn unchecked_logs(&self) -> usize {
        self.unchecked.len()
    }

    /// The patient's identity as the circles list shows it (birth date, INS, names), kept
    /// in the record: read without waking the circle.
    pub fn listed_identity(&self) -> (Option<&str>, Option<&str>, Option<(&str, &str)>) {
        let l = &self.listing;
        let names = l.family_name.as_deref().zip(l.given_names.as_deref());
        (l.birth_date.as_deref(), l.ins.as_deref(), names)
    }

    /// The alerts waiting for `me`, as last read, if the notebook and `me`'s role did not
    /// change since (readable at rest).
    pub fn waiting_alerts(&self, me: &MemberId) -> Option<&WaitingAlerts> {
        self.waiting.as_ref().filter(|w| {
            w.notebook == self.applied_vector(DocKind::LiaisonNotebook)
                && w.role == self.resolution().role(me)
        })
    }

    /// Reads the alerts waiting for `me` in the notebook again (awake only); the record
    /// to write when the reading changed.
    pub fn read_waiting_alerts(&mut self, me: &MemberId) -> Result<Batch, CircleError> {
        let role = self.resolution().role(me);
        let alerts = self.notebook()?.alerts_waiting_for(me, role);
        let read = WaitingAlerts {
            notebook: self.applied_vector(DocKind::LiaisonNotebook),
            role,
            alerts: alerts.into_iter().map(|(a, at)| (a, at.millis())).collect(),
        };
        let mut batch = Batch::new();
        if self.waiting.as_ref() != Some(&read) {
            self.waiting = Some(read);
            self.record_into(&mut batch)?;
        }
        Ok(batch)
    }

    /// Every member's profile known here: from the cards this node saw, else as each
    /// member published it in the thread (while the circle is awake).
    pub fn profiles(&self) -> BTreeMap<MemberId, Profile> {
        let mut all: BTreeMap<MemberId, Profile> = self
            .docs
            .as_deref()
            .map(|d| d.thread.profiles())
            .unwrap_or_default()
            .into_iter()
            .map(|(m, p)| {
                (
                    m,
                    Profile {
                        name: p.name,
                        profession: p.profession,
                        rpps: p.rpps,
                        adeli: p.adeli,
                    },
                )
            })
            .collect();
        all.extend(self.names.iter().map(|(m, p)| (*m, p.clone())));
        all
    }

    /// Every device ever certified in the circle's log (by the genesis, an addition of a
    /// member or of a device), with its member: current, removed or revoked alike, so
    /// that whatever a device wrote or forked is put to a member.
    pub fn certified_devices(&self) -> BTreeMap<DeviceId, MemberId> {
        let mut devices = BTreeMap::new();
        for op in self.membership().ops() {
            let certificates = match &op.content().body {
                membership::OpBody::Genesis { creator, .. } => creator.devices.iter().collect(),
                membership::OpBody::AddDevice { certificate, .. } => vec![certificate],
                body => body
                    .grant()
                    .map(|g| g.devices.iter().collect())
                    .unwrap_or_default(),
            };
            for cert in certificates {
                devices.insert(cert.device, cert.member);
            }
        }
        devices
    }

    /// Finds a current member by member id prefix or (case-insensitive) name.
    pub fn find_member(&self, query: &str) -> Result<MemberId, CircleError> {
        let q = query.trim().to_lowercase();
        let profiles = self.profiles();
        let members: Vec<MemberId> = self.resolution().members.keys().copied().collect();
        // A whole name, else the start of a word of one ("julien" for Julien Moreau), else
        // at least 4 hex digits of the member id.
        let name = |m: &MemberId| profiles.get(m).map(|p| p.name.to_lowercase());
        let by = |test: &dyn Fn(&MemberId) -> bool| -> Vec<MemberId> {
            members.iter().filter(|m| test(m)).copied().collect()
        };
        let mut matches = by(&|m| name(m).is_some_and(|n| n == q));
        if matches.is_empty() && q.chars().count() >= 2 {
            matches =
                by(&|m| name(m).is_some_and(|n| n.split_whitespace().any(|w| w.starts_with(&q))));
        }
        if matches.is_empty() && q.len() >= 4 {
            matches = by(&|m| m.to_hex().starts_with(&q));
        }
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(CircleError::UnknownMember {
                query: query.to_string(),
            }),
            several => Err(CircleError::AmbiguousMember {
                query: query.to_string(),
                count: several.len(),
            }),
        }
    }

    /// A document in Automerge's standard save format.
    pub fn save(&mut self, kind: DocKind) -> Result<Vec<u8>, CircleError> {
        Ok(self.docs_mut()?.replica_mut(kind).save())
    }

    /// Saves each document with at least `threshold` envelopes applied since its last
    /// snapshot, as a batch for the store (not journaled: the envelopes cover it). Nothing
    /// while the circle rests (its documents were saved before it went to rest).
    pub fn snapshots(&mut self, threshold: usize) -> Batch {
        let mut batch = Batch::new();
        // What each document holds: not the envelopes still to check.
        let mut covers: BTreeMap<DocKind, _> = DocKind::ALL
            .into_iter()
            .map(|kind| (kind, self.applied_vector(kind)))
            .collect();
        let Some(docs) = self.docs.as_deref_mut() else {
            return batch;
        };
        for kind in DocKind::ALL {
            let covers = covers.remove(&kind).unwrap_or_default();
            let state = self.progress.entry(kind).or_default();
            if state.since_snapshot < threshold.max(1) {
                continue;
            }
            state.since_snapshot = 0;
            let snapshot = crate::store::Snapshot {
                covers,
                doc: docs.replica_mut(kind).save(),
            };
            batch.snapshot(&self.id, kind, &snapshot);
        }
        batch
    }

    /// Whether the circle may go to rest: awake, and nothing held in memory only (envelopes
    /// waiting for others, or for their predecessors).
    pub fn may_rest(&self) -> bool {
        self.docs.is_some() && self.deferred.is_empty() && self.log.waiting() == 0
    }

    /// Puts the circle to rest: its documents and receive checks leave memory, after a
    /// snapshot of each document with many envelopes since its last one (the batch). The
    /// node rests only a circle none of whose writes is still on its way to the disk.
    pub fn rest(&mut self) -> Batch {
        if !self.may_rest() {
            return Batch::new();
        }
        let batch = self.snapshots(SNAPSHOT_ON_OPEN);
        self.docs = None;
        self.log = EnvelopeLog::default();
        self.log_ready = false;
        batch
    }

    /// After a change of the patient file: the title and the listing kept in the record
    /// follow it (the record is staged when they changed).
    fn relist(&mut self, staged: &mut Staged) {
        let Some(docs) = self.docs.as_deref() else {
            return;
        };
        let pf = &docs.patient_file;
        let (patient, team, listing) = (pf.title(), pf.team().is_some(), Listing::of(pf));
        if (&patient, team, &listing) == (&self.info.patient, self.info.team, &self.listing) {
            return;
        }
        (self.info.patient, self.info.team, self.listing) = (patient, team, listing);
        if let Err(e) = self.record_into(&mut staged.batch) {
            tracing::error!(circle = %self.id, error = %e, "cannot record the circle's listing");
        }
    }

    /// Adds the circle's local record (metadata, members' profiles) to `batch`.
    fn record_into(&self, batch: &mut Batch) -> Result<(), CircleError> {
        let record = CircleRecord {
            info: self.info.clone(),
            names: self.names.clone(),
            listing: Some(self.listing.clone()),
            waiting: self.waiting.clone(),
            ops_checked: self.ops_checked,
            unchecked: self
                .unchecked
                .iter()
                .map(|((doc, device), u)| UncheckedLog {
                    doc: *doc,
                    device: *device,
                    unchecked: u.clone(),
                })
                .collect(),
        };
        let bytes = Zeroizing::new(serde_json::to_vec(&record).map_err(|e| CircleError::Load {
            circle: self.info.id.clone(),
            what: "record".into(),
            reason: e.to_string(),
        })?);
        batch.circle(&self.id, &bytes);
        Ok(())
    }
}

/// All circles in the store, by creation time.
pub fn list(store: &dyn Store) -> Result<Vec<CircleInfo>, CircleError> {
    let mut out: Vec<CircleInfo> = records(store)?.into_iter().map(|(_, r)| r.info).collect();
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(out)
}

/// Finds one circle by its id or an unambiguous prefix of it.
pub fn find(store: &dyn Store, query: &str) -> Result<CircleInfo, CircleError> {
    Ok(find_record(store, query)?.1.info)
}

/// Every circle's id and opened record.
fn records(store: &dyn Store) -> Result<Vec<(CircleId, CircleRecord)>, CircleError> {
    store
        .circles()?
        .into_iter()
        .map(|(id, bytes)| Ok((id, decode_record(&id, &bytes)?)))
        .collect()
}

/// The one circle whose id starts with `query`.
fn find_record(store: &dyn Store, query: &str) -> Result<(CircleId, CircleRecord), CircleError> {
    pick(query, records(store)?, |(id, _)| *id)
}

/// The one item whose circle id starts with `query` (the rule people type ids by).
pub(crate) fn pick<T>(
    query: &str,
    items: impl IntoIterator<Item = T>,
    id: impl Fn(&T) -> CircleId,
) -> Result<T, CircleError> {
    let q = query.trim().to_ascii_lowercase();
    let mut matches: Vec<T> = if q.is_empty() {
        Vec::new()
    } else {
        items
            .into_iter()
            .filter(|t| starts_with_hex(&id(t), &q))
            .collect()
    };
    match matches.len() {
        1 => matches.pop().ok_or(CircleError::Unknown {
            query: query.to_string(),
        }),
        0 => Err(CircleError::Unknown {
            query: query.to_string(),
        }),
        count => Err(CircleError::Ambiguous {
            query: query.to_string(),
            count,
        }),
    }
}

/// Whether `id` written in lowercase hexadecimal starts with `prefix` (without writing
/// it out).
fn starts_with_hex(id: &CircleId, prefix: &str) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    prefix.len() <= 64
        && prefix.bytes().enumerate().all(|(i, c)| {
            let byte = id.0[i / 2];
            let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
            DIGITS[usize::from(nibble)] == c
        })
}

fn decode_record(id: &CircleId, bytes: &[u8]) -> Result<CircleRecord, CircleError> {
    serde_json::from_slice(bytes).map_err(|e| CircleError::Load {
        circle: id.to_string(),
        what: "record".into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
