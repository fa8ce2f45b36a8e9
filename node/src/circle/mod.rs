//! Circles of care: the team around one patient, its signed membership log, and the three
//! documents it shares.
//!
//! A circle's id is the hash of its signed genesis operation (64 hex digits); people may type
//! any unambiguous prefix of it. Who belongs to it, with which role, is decided only by
//! [`membership`], from the signed operations kept in the store.
//!
//! A [`Circle`] never touches the disk, the clock or the system's randomness: every change
//! it makes (a local write, a membership operation, what a peer sent) comes back as a
//! [`Staged`] batch for the node to make durable, with the envelopes to push once it is.
//! Its jobs live one per file:
//!
//! - `load`: creating, opening (snapshot + envelopes after it) and joining a circle;
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

pub use receive::{MAX_DEFERRED_BYTES, Receipt};
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

/// Per document: its replica and how far it got from each device.
#[derive(Debug)]
struct DocState {
    /// The last sequence number applied from each device (the version vector).
    applied: BTreeMap<DeviceId, u64>,
    /// This device's last envelope.
    own: Option<Head>,
    /// Envelopes applied since the last snapshot.
    since_snapshot: usize,
}

/// The three documents of a circle; reachable for writing only through [`Circle::write`].
#[derive(Debug)]
pub struct Docs {
    patient_file: PatientFile,
    notebook: LiaisonNotebook,
    thread: Thread,
    state: BTreeMap<DocKind, DocState>,
}

impl Docs {
    fn new(actor: cercle_crdt::ActorId) -> Docs {
        Docs {
            patient_file: PatientFile::new(actor.clone()),
            notebook: LiaisonNotebook::new(actor.clone()),
            thread: Thread::new(actor),
            state: DocKind::ALL
                .into_iter()
                .map(|k| {
                    let s = DocState {
                        applied: BTreeMap::new(),
                        own: None,
                        since_snapshot: 0,
                    };
                    (k, s)
                })
                .collect(),
        }
    }

    fn replica_mut(&mut self, kind: DocKind) -> &mut Replica {
        match kind {
            DocKind::PatientFile => self.patient_file.replica_mut(),
            DocKind::LiaisonNotebook => self.notebook.replica_mut(),
            DocKind::Thread => self.thread.replica_mut(),
        }
    }

    fn state(&mut self, kind: DocKind) -> &mut DocState {
        self.state.entry(kind).or_insert_with(|| DocState {
            applied: BTreeMap::new(),
            own: None,
            since_snapshot: 0,
        })
    }
}

/// A circle held by this node: its record, membership, documents and receive state.
#[derive(Debug)]
pub struct Circle {
    info: CircleInfo,
    id: CircleId,
    membership: Membership,
    names: BTreeMap<MemberId, Profile>,
    docs: Docs,
    keys: keys::KeySchedule,
    /// The receive side's checks: each device's last accepted envelope per document.
    log: EnvelopeLog,
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

    /// The patient file.
    pub fn patient_file(&self) -> &PatientFile {
        &self.docs.patient_file
    }

    /// The liaison notebook.
    pub fn notebook(&self) -> &LiaisonNotebook {
        &self.docs.notebook
    }

    /// The messages.
    pub fn thread(&self) -> &Thread {
        &self.docs.thread
    }

    /// The notebook's entries, oldest first.
    pub fn notes(&self) -> Vec<Entry> {
        self.docs.notebook.entries()
    }

    /// Per document, the last sequence number held from each device (its version vector).
    pub fn vector(&self, doc: DocKind) -> BTreeMap<DeviceId, u64> {
        self.docs
            .state
            .get(&doc)
            .map(|s| s.applied.clone())
            .unwrap_or_default()
    }

    /// Every member's profile known here: from the cards this node saw, else as each
    /// member published it in the thread.
    pub fn profiles(&self) -> BTreeMap<MemberId, Profile> {
        let mut all: BTreeMap<MemberId, Profile> = self
            .docs
            .thread
            .profiles()
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
    pub fn save(&mut self, kind: DocKind) -> Vec<u8> {
        self.docs.replica_mut(kind).save()
    }

    /// Saves each document with at least `threshold` envelopes applied since its last
    /// snapshot, as a batch for the store (not journaled: the envelopes cover it).
    pub fn snapshots(&mut self, threshold: usize) -> Batch {
        let mut batch = Batch::new();
        for kind in DocKind::ALL {
            let state = self.docs.state(kind);
            if state.since_snapshot < threshold.max(1) {
                continue;
            }
            state.since_snapshot = 0;
            let covers = state.applied.clone();
            let snapshot = crate::store::Snapshot {
                covers,
                doc: self.docs.replica_mut(kind).save(),
            };
            batch.snapshot(&self.id, kind, &snapshot);
        }
        batch
    }

    /// Adds the circle's local record (metadata, members' profiles) to `batch`.
    fn record_into(&self, batch: &mut Batch) -> Result<(), CircleError> {
        let record = CircleRecord {
            info: self.info.clone(),
            names: self.names.clone(),
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
            .filter(|t| id(t).to_string().starts_with(&q))
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

fn decode_record(id: &CircleId, bytes: &[u8]) -> Result<CircleRecord, CircleError> {
    serde_json::from_slice(bytes).map_err(|e| CircleError::Load {
        circle: id.to_string(),
        what: "record".into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
