//! One device's replica of one care document: load and save, local writes as single
//! Automerge changes, and received changes applied only after validation.
//!
//! The typed documents ([`crate::PatientFile`], [`crate::LiaisonNotebook`],
//! [`crate::Thread`]) wrap a `Replica` and add their own reads and writes.

use automerge::transaction::CommitOptions;
use automerge::{ActorId, AutoCommit, Change, ChangeHash, ROOT, ReadDoc, ScalarValue, Value};

use crate::document::{self, DocKind, SCHEMA_VERSION, WriteError, item_id};
use crate::member::Timestamp;
use crate::validation::{ChangeAuthor, Rejection, validate_changes};

/// Why saved bytes could not be loaded as a document of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The bytes are not an Automerge document.
    #[error("not an Automerge document: {0}")]
    NotAutomerge(String),
    /// An Automerge document of another kind.
    #[error("expected a {expected} document, found {found}")]
    WrongKind { expected: DocKind, found: String },
    /// A schema version this program does not know.
    #[error("schema version {0} is not supported (this program knows version {SCHEMA_VERSION})")]
    UnknownSchema(i64),
}

/// A device's replica of one document.
#[derive(Debug, Clone)]
pub struct Replica {
    kind: DocKind,
    doc: AutoCommit,
    next_seq: u64,
    /// Local changes written since the last [`Replica::take_local_changes`], oldest first.
    unsent: Vec<ChangeHash>,
}

/// Context of a local write: gives the ids of the items the change creates.
#[derive(Debug)]
pub(crate) struct WriteCtx {
    actor: ActorId,
    seq: u64,
    next_index: u32,
}

impl WriteCtx {
    /// The id of the next item this change creates.
    pub(crate) fn next_item_id(&mut self) -> String {
        let id = item_id(&self.actor, self.seq, self.next_index);
        self.next_index += 1;
        id
    }
}

impl Replica {
    /// A new, empty replica for the device whose Automerge actor is `actor`.
    pub fn new(kind: DocKind, actor: ActorId) -> Self {
        Self {
            kind,
            doc: document::new_replica(kind, actor),
            next_seq: 1,
            unsent: Vec::new(),
        }
    }

    /// Loads a replica saved with [`Replica::save`] (or any Automerge save of this kind).
    pub fn load(kind: DocKind, bytes: &[u8], actor: ActorId) -> Result<Self, LoadError> {
        // automerge 0.12 panics on some corrupted inputs (an actor index past the actor
        // table, found by this crate's decoder property test) instead of returning an error.
        // A damaged file must give an error, so loading runs behind an unwind boundary.
        let mut doc = std::panic::catch_unwind(|| AutoCommit::load(bytes))
            .map_err(|_| LoadError::NotAutomerge("corrupted document".into()))?
            .map_err(|e| LoadError::NotAutomerge(e.to_string()))?;
        let found = match doc.get(ROOT, "kind") {
            Ok(Some((Value::Scalar(s), _))) => s.as_str().unwrap_or("?").to_string(),
            _ => "nothing".to_string(),
        };
        if found != kind.as_str() {
            return Err(LoadError::WrongKind {
                expected: kind,
                found,
            });
        }
        match doc.get(ROOT, "schema") {
            Ok(Some((Value::Scalar(s), _))) if matches!(*s, ScalarValue::Int(SCHEMA_VERSION)) => {}
            Ok(Some((Value::Scalar(s), _))) => {
                return Err(LoadError::UnknownSchema(s.as_i64().unwrap_or(-1)));
            }
            _ => return Err(LoadError::UnknownSchema(-1)),
        }
        doc.set_actor(actor);
        let next_seq = document::next_local_seq(&mut doc);
        Ok(Self {
            kind,
            doc,
            next_seq,
            unsent: Vec::new(),
        })
    }

    /// The whole document in Automerge's standard compressed save format.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// The kind of this document.
    pub fn kind(&self) -> DocKind {
        self.kind
    }

    /// The underlying Automerge document, for reads and for sync.
    pub fn doc(&self) -> &AutoCommit {
        &self.doc
    }

    /// The current heads.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Changes not reachable from `heads` (all changes if `heads` is empty), in causal order.
    pub fn changes_since(&mut self, heads: &[ChangeHash]) -> Vec<Change> {
        self.doc.get_changes(heads)
    }

    /// Whether the change `hash` has been applied to this replica.
    pub fn has_change(&self, hash: &ChangeHash) -> bool {
        document::has_change(&self.doc, hash)
    }

    /// The highest sequence number of `actor`'s changes in this replica (0 if none).
    pub fn last_seq_of(&mut self, actor: &ActorId) -> u64 {
        self.doc
            .get_changes_meta(&[])
            .iter()
            .filter(|c| *c.actor == *actor)
            .map(|c| c.seq)
            .max()
            .unwrap_or(0)
    }

    /// The last change written by this replica's device.
    pub fn last_local_change(&mut self) -> Option<Change> {
        self.doc.get_last_local_change()
    }

    /// The local changes written since the last call, oldest first: what the device has
    /// to seal and send. Looked up by hash, so the cost follows the new changes, not the
    /// document's history.
    pub fn take_local_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.unsent)
            .iter()
            .filter_map(|h| self.doc.get_change_by_hash(h))
            .collect()
    }

    /// Validates `changes` as written by `author`, then applies them; returns the ids of the
    /// items they created. Nothing is applied if any change is rejected.
    pub fn apply_changes(
        &mut self,
        changes: Vec<Change>,
        author: &ChangeAuthor,
    ) -> Result<Vec<String>, Rejection> {
        let created = validate_changes(self.kind, &self.doc, &changes, author)?;
        self.doc
            .apply_changes(changes)
            .map_err(|e| Rejection::OutsideSchema {
                path: "/".into(),
                reason: format!("Automerge refused the change: {e}"),
            })?;
        Ok(created)
    }

    /// Applies changes that were validated when they entered this node's store (checked on
    /// receipt, or written here), when a replica is rebuilt from its snapshot and envelopes.
    /// Changes from the network go through [`Replica::apply_changes`] instead.
    pub fn apply_stored(&mut self, changes: Vec<Change>) -> Result<(), LoadError> {
        self.doc
            .apply_changes(changes)
            .map_err(|e| LoadError::NotAutomerge(e.to_string()))?;
        // Automerge resolves "our" actor when it is set; set it again now that our own
        // changes may have arrived, so the next local sequence number follows them.
        let actor = self.doc.get_actor().clone();
        self.doc.set_actor(actor);
        self.next_seq = document::next_local_seq(&mut self.doc);
        Ok(())
    }

    /// Runs one local write as one Automerge change at time `at`. On error nothing is kept.
    pub(crate) fn write<T>(
        &mut self,
        at: Timestamp,
        f: impl FnOnce(&mut AutoCommit, &mut WriteCtx) -> Result<T, WriteError>,
    ) -> Result<T, WriteError> {
        let mut ctx = WriteCtx {
            actor: self.doc.get_actor().clone(),
            seq: self.next_seq,
            next_index: 0,
        };
        match f(&mut self.doc, &mut ctx) {
            Ok(v) => {
                if let Some(hash) = self
                    .doc
                    .commit_with(CommitOptions::default().with_time(at.seconds()))
                {
                    self.next_seq += 1;
                    self.unsent.push(hash);
                }
                Ok(v)
            }
            Err(e) => {
                self.doc.rollback();
                Err(e)
            }
        }
    }
}
