//! What the three document kinds share: their deterministic genesis, item ids bound to the
//! change that creates them, and typed reads of Automerge values.
//!
//! **Genesis.** Every replica of a document kind starts from the same genesis change, made by
//! a fixed actor at time 0, so the root collections have the same object ids everywhere.
//! Without this, two members creating `entries` concurrently would each get their own map and
//! one of them would hide the other's notes.
//!
//! **Item ids.** The k-th item created by change `seq` of actor `a` has the id
//! `blake3(a, seq, k)` (truncated). The validator recomputes it, so nobody can create an item
//! under an id that someone else's concurrent change could also use.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};

use crate::member::{MemberId, Timestamp};
use crate::schema::{DocSchema, Field, ScalarFault, Shape, check_scalar};

/// Length of an item id in hex digits (96 bits).
pub const ITEM_ID_HEX_LEN: usize = 24;

/// The three kinds of care documents a circle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    /// Identity, consent, problems, medications, care plan, tasks, document index.
    PatientFile,
    /// The append-only liaison notebook.
    LiaisonNotebook,
    /// The circle's messages.
    Thread,
}

impl DocKind {
    /// All kinds, in the order a circle lists them.
    pub const ALL: [DocKind; 3] = [
        DocKind::PatientFile,
        DocKind::LiaisonNotebook,
        DocKind::Thread,
    ];

    /// Stable name used in files, JSON and envelopes.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::PatientFile => "patient_file",
            DocKind::LiaisonNotebook => "liaison_notebook",
            DocKind::Thread => "thread",
        }
    }

    /// Its one-byte code in binary formats (envelope headers, store keys).
    pub fn code(self) -> u8 {
        match self {
            DocKind::PatientFile => 1,
            DocKind::LiaisonNotebook => 2,
            DocKind::Thread => 3,
        }
    }

    /// The kind whose [`DocKind::code`] is `code`.
    pub fn from_code(code: u8) -> Option<DocKind> {
        DocKind::ALL.into_iter().find(|d| d.code() == code)
    }

    /// The fixed actor of this kind's genesis change. No device may use it.
    pub fn genesis_actor(self) -> ActorId {
        let mut bytes = *b"cercle-genesis-0";
        bytes[15] = match self {
            DocKind::PatientFile => b'p',
            DocKind::LiaisonNotebook => b'n',
            DocKind::Thread => b't',
        };
        ActorId::from(&bytes[..])
    }

    pub(crate) fn schema(self) -> &'static DocSchema {
        match self {
            DocKind::PatientFile => &crate::patient_file::SCHEMA,
            DocKind::LiaisonNotebook => &crate::notebook::SCHEMA,
            DocKind::Thread => &crate::thread::SCHEMA,
        }
    }
}

impl std::fmt::Display for DocKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Version of the document schema written by genesis.
pub const SCHEMA_VERSION: i64 = 1;

/// Builds the genesis document of `kind`: `kind`, `schema` and one empty map per root field.
/// Deterministic: the same bytes on every replica.
pub(crate) fn genesis(kind: DocKind) -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(kind.genesis_actor());
    // The genesis writes only constants into a fresh document: these cannot fail.
    let _ = doc.put(ROOT, "kind", kind.as_str());
    let _ = doc.put(ROOT, "schema", SCHEMA_VERSION);
    for root in kind.schema().roots {
        let _ = doc.put_object(ROOT, root.name, ObjType::Map);
    }
    doc.commit_with(CommitOptions::default().with_time(0));
    doc
}

/// A new replica of `kind` for the device `actor`.
pub(crate) fn new_replica(kind: DocKind, actor: ActorId) -> AutoCommit {
    let mut doc = genesis(kind);
    doc.set_actor(actor);
    doc
}

/// The object id of a root field created by genesis.
pub(crate) fn root_obj(doc: &AutoCommit, name: &str) -> Option<ObjId> {
    match doc.get(ROOT, name) {
        Ok(Some((Value::Object(ObjType::Map), id))) => Some(id),
        _ => None,
    }
}

/// The id of the `index`-th item created by change `seq` of `actor`.
pub fn item_id(actor: &ActorId, seq: u64, index: u32) -> String {
    let mut h = blake3::Hasher::new_derive_key("cercle 2026 item id v1");
    h.update(&(actor.to_bytes().len() as u64).to_le_bytes());
    h.update(actor.to_bytes());
    h.update(&seq.to_le_bytes());
    h.update(&index.to_le_bytes());
    hex::encode(&h.finalize().as_bytes()[..ITEM_ID_HEX_LEN / 2])
}

/// Whether the change `hash` has been applied to `doc`.
pub(crate) fn has_change(doc: &AutoCommit, hash: &automerge::ChangeHash) -> bool {
    ReadDoc::get_missing_deps(doc, &[*hash]).is_empty()
}

/// The sequence number the next local change of `doc`'s actor will get.
pub(crate) fn next_local_seq(doc: &mut AutoCommit) -> u64 {
    doc.get_last_local_change().map_or(1, |c| c.seq() + 1)
}

/// Why a typed write was refused before touching the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A value does not fit the schema (empty text, text too long, bad date...).
    #[error("{field}: {reason}")]
    InvalidValue {
        field: &'static str,
        reason: crate::schema::Fault,
    },
    /// The item referred to does not exist.
    #[error("no {what} with id {id}")]
    NotFound { what: &'static str, id: String },
    /// The write is not allowed by the document's rules.
    #[error("{0}")]
    NotAllowed(String),
    /// Automerge refused an operation (a bug: the typed API only writes valid operations).
    #[error("document error: {0}")]
    Automerge(String),
}

impl From<automerge::AutomergeError> for WriteError {
    fn from(e: automerge::AutomergeError) -> Self {
        WriteError::Automerge(e.to_string())
    }
}

/// Typed reads of a record's fields. Missing or ill-typed values read as `None`: reads never
/// fail, because only validated changes are ever applied.
pub(crate) struct RecordReader<'a, D: ReadDoc> {
    pub(crate) doc: &'a D,
    pub(crate) obj: ObjId,
}

impl<D: ReadDoc> RecordReader<'_, D> {
    pub(crate) fn scalar(&self, key: &str) -> Option<ScalarValue> {
        match self.doc.get(&self.obj, key) {
            Ok(Some((Value::Scalar(s), _))) => Some(s.into_owned()),
            _ => None,
        }
    }

    pub(crate) fn str(&self, key: &str) -> Option<String> {
        match self.scalar(key)? {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        }
    }

    pub(crate) fn member(&self, key: &str) -> Option<MemberId> {
        self.str(key)?.parse().ok()
    }

    pub(crate) fn timestamp(&self, key: &str) -> Option<Timestamp> {
        match self.scalar(key)? {
            ScalarValue::Timestamp(t) => Some(Timestamp(t)),
            _ => None,
        }
    }

    pub(crate) fn int(&self, key: &str) -> Option<i64> {
        match self.scalar(key)? {
            ScalarValue::Int(i) => Some(i),
            ScalarValue::Uint(u) => i64::try_from(u).ok(),
            _ => None,
        }
    }

    pub(crate) fn real(&self, key: &str) -> Option<f64> {
        match self.scalar(key)? {
            ScalarValue::F64(f) => Some(f),
            ScalarValue::Int(i) => Some(i as f64),
            _ => None,
        }
    }

    pub(crate) fn object(&self, key: &str) -> Option<ObjId> {
        match self.doc.get(&self.obj, key) {
            Ok(Some((Value::Object(_), id))) => Some(id),
            _ => None,
        }
    }

    pub(crate) fn str_list(&self, key: &str) -> Vec<String> {
        let Some(list) = self.object(key) else {
            return Vec::new();
        };
        let len = self.doc.length(&list);
        (0..len)
            .filter_map(|i| match self.doc.get(&list, i) {
                Ok(Some((Value::Scalar(s), _))) => s.as_str().map(str::to_string),
                _ => None,
            })
            .collect()
    }
}

/// The items of a collection map: `(id, object id)` pairs in id order.
pub(crate) fn collection_items<D: ReadDoc>(doc: &D, collection: &ObjId) -> Vec<(String, ObjId)> {
    doc.map_range(collection, ..)
        .filter_map(|item| match item.value {
            automerge::ValueRef::Object(ObjType::Map) => Some((item.key.to_string(), item.id())),
            _ => None,
        })
        .collect()
}

/// One item's object id in a collection, if present.
pub(crate) fn collection_item<D: ReadDoc>(doc: &D, collection: &ObjId, id: &str) -> Option<ObjId> {
    match doc.get(collection, id) {
        Ok(Some((Value::Object(ObjType::Map), obj))) => Some(obj),
        _ => None,
    }
}

/// Checks a value a typed writer is about to put in field `name` of a record declared by
/// `fields`, with the validator's own rules (so nothing written locally is refused by the
/// other members). `author` is who writes it.
pub(crate) fn check_write(
    fields: &[Field],
    name: &'static str,
    value: &ScalarValue,
    author: &MemberId,
) -> Result<(), WriteError> {
    let Some(Field {
        shape: Shape::Scalar(scalar),
        ..
    }) = fields.iter().find(|f| f.name == name)
    else {
        return Ok(());
    };
    check_scalar(*scalar, value, author).map_err(|fault| WriteError::InvalidValue {
        field: name,
        reason: match fault {
            ScalarFault::Invalid(reason) => reason,
            ScalarFault::NotTheAuthor { claimed } => crate::schema::Fault::NotTheAuthor { claimed },
        },
    })
}

/// Checks a text input against a schema limit before writing it.
pub(crate) fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), WriteError> {
    if text.trim().is_empty() {
        return Err(WriteError::InvalidValue {
            field,
            reason: crate::schema::Fault::Empty,
        });
    }
    if text.len() > max {
        return Err(WriteError::InvalidValue {
            field,
            reason: crate::schema::Fault::TooLong {
                len: text.len(),
                max,
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_is_identical_on_every_replica() {
        for kind in DocKind::ALL {
            let mut a = new_replica(kind, ActorId::from(&[1u8; 16][..]));
            let mut b = new_replica(kind, ActorId::from(&[2u8; 16][..]));
            assert_eq!(a.get_heads(), b.get_heads(), "{kind}");
        }
        let mut n = genesis(DocKind::LiaisonNotebook);
        let mut t = genesis(DocKind::Thread);
        assert_ne!(n.get_heads(), t.get_heads(), "kinds have distinct genesis");
    }

    #[test]
    fn item_ids_depend_on_actor_seq_and_index() {
        let a = ActorId::from(&[1u8; 16][..]);
        let b = ActorId::from(&[2u8; 16][..]);
        let id = item_id(&a, 1, 0);
        assert_eq!(id.len(), ITEM_ID_HEX_LEN);
        assert_ne!(id, item_id(&b, 1, 0));
        assert_ne!(id, item_id(&a, 2, 0));
        assert_ne!(id, item_id(&a, 1, 1));
        assert_eq!(id, item_id(&a, 1, 0));
    }
}
