//! The circle's thread: instant messages between members, with read receipts, and the
//! members' profiles as each published their own.
//!
//! Append-only like the notebook: a message is never edited or deleted, only appended by its
//! author; a read receipt is written by the reader only; a profile is written by the member
//! it describes (a newer one replaces the older when read). Profiles live here, encrypted
//! like any care data, rather than in the membership log, which relays read.

use automerge::transaction::Transactable;
use automerge::{ActorId, ObjType};
use serde::Serialize;

use crate::document::{
    DocKind, RecordReader, WriteError, check_text, collection_item, collection_items, root_obj,
};
use crate::member::{MemberId, Timestamp};
use crate::replica::{LoadError, Replica};
use crate::schema::{DocSchema, Field, MAX_TEXT_BYTES, Root, Scalar, Shape, Writers};

/// At most this many attachments per message.
pub const MAX_ATTACHMENTS: usize = 16;

static MESSAGE: Shape = Shape::Record(&[
    Field::required("author", Shape::Scalar(Scalar::Author)),
    Field::required("at", Shape::Scalar(Scalar::Timestamp)),
    Field::required(
        "text",
        Shape::Scalar(Scalar::Text {
            max: MAX_TEXT_BYTES,
            non_empty: true,
        }),
    ),
    Field::optional("attachments", Shape::List(Scalar::Hash)),
]);

static RECEIPT: Shape = Shape::Record(&[
    Field::required("by", Shape::Scalar(Scalar::Author)),
    Field::required("at", Shape::Scalar(Scalar::Timestamp)),
    Field::required("message", Shape::Scalar(Scalar::Ref("messages"))),
]);

const LABEL: Scalar = Scalar::Text {
    max: crate::schema::MAX_LABEL_BYTES,
    non_empty: true,
};

static PROFILE: Shape = Shape::Record(&[
    Field::required("member", Shape::Scalar(Scalar::Author)),
    Field::required("at", Shape::Scalar(Scalar::Timestamp)),
    Field::required("name", Shape::Scalar(LABEL)),
    Field::required("profession", Shape::Scalar(LABEL)),
    Field::optional("rpps", Shape::Scalar(LABEL)),
    Field::optional("adeli", Shape::Scalar(LABEL)),
]);

pub(crate) static SCHEMA: DocSchema = DocSchema {
    roots: &[
        Root {
            name: "messages",
            shape: Shape::Collection(&MESSAGE),
            writers: Writers::Members,
        },
        Root {
            name: "receipts",
            shape: Shape::Collection(&RECEIPT),
            writers: Writers::Members,
        },
        Root {
            name: "profiles",
            shape: Shape::Collection(&PROFILE),
            writers: Writers::Members,
        },
    ],
    append_only: true,
};

/// A member's profile as they published it in the circle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedProfile {
    pub member: MemberId,
    pub at: Timestamp,
    pub name: String,
    pub profession: String,
    pub rpps: Option<String>,
    pub adeli: Option<String>,
}

/// A message with the receipts of those who read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub id: String,
    pub author: MemberId,
    pub at: Timestamp,
    pub text: String,
    /// Content hashes of attached blobs.
    pub attachments: Vec<String>,
    /// Who read it and when (first receipt per member), oldest first.
    pub read_by: Vec<ReadReceipt>,
}

/// A member's receipt for a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadReceipt {
    pub by: MemberId,
    pub at: Timestamp,
}

/// A thread replica.
#[derive(Debug, Clone)]
pub struct Thread {
    replica: Replica,
}

impl Thread {
    /// A new, empty thread replica for the device `actor`.
    pub fn new(actor: ActorId) -> Self {
        Self {
            replica: Replica::new(DocKind::Thread, actor),
        }
    }

    /// Loads a saved thread.
    pub fn load(bytes: &[u8], actor: ActorId) -> Result<Self, LoadError> {
        Ok(Self {
            replica: Replica::load(DocKind::Thread, bytes, actor)?,
        })
    }

    /// The replica, for save, sync and validated merges.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The replica, mutably.
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    /// Sends a message; returns its id. `attachments` are blob content hashes (64 hex digits).
    pub fn send(
        &mut self,
        author: MemberId,
        text: &str,
        attachments: &[String],
        at: Timestamp,
    ) -> Result<String, WriteError> {
        check_text("text", text, MAX_TEXT_BYTES)?;
        if attachments.len() > MAX_ATTACHMENTS {
            return Err(WriteError::InvalidValue {
                field: "attachments",
                reason: crate::schema::Fault::Other {
                    why: format!("at most {MAX_ATTACHMENTS} per message"),
                },
            });
        }
        if let Some(bad) = attachments
            .iter()
            .find(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(WriteError::InvalidValue {
                field: "attachments",
                reason: crate::schema::Fault::Other {
                    why: format!("{bad:?} is not a content hash"),
                },
            });
        }
        self.replica.write(at, |doc, ctx| {
            let messages =
                root_obj(doc, "messages").ok_or(WriteError::Automerge("no messages".into()))?;
            let id = ctx.next_item_id();
            let obj = doc.put_object(&messages, id.as_str(), ObjType::Map)?;
            doc.put(&obj, "author", author.to_hex())?;
            doc.put(&obj, "at", automerge::ScalarValue::Timestamp(at.millis()))?;
            doc.put(&obj, "text", text)?;
            if !attachments.is_empty() {
                let list = doc.put_object(&obj, "attachments", ObjType::List)?;
                for (i, h) in attachments.iter().enumerate() {
                    doc.insert(&list, i, h.as_str())?;
                }
            }
            Ok(id)
        })
    }

    /// Records that `by` read `message`. Does nothing (and returns `None`) if `by` already
    /// has a receipt for it, or wrote it.
    pub fn mark_read(
        &mut self,
        by: MemberId,
        message: &str,
        at: Timestamp,
    ) -> Result<Option<String>, WriteError> {
        let doc = self.replica.doc();
        let exists = root_obj(doc, "messages")
            .and_then(|m| collection_item(doc, &m, message))
            .map(|obj| RecordReader { doc, obj }.member("author"));
        match exists {
            None => {
                return Err(WriteError::NotFound {
                    what: "message",
                    id: message.to_string(),
                });
            }
            Some(author) if author == Some(by) => return Ok(None),
            Some(_) => {}
        }
        if self
            .messages()
            .iter()
            .any(|m| m.id == message && m.read_by.iter().any(|r| r.by == by))
        {
            return Ok(None);
        }
        self.replica
            .write(at, |doc, ctx| {
                let receipts =
                    root_obj(doc, "receipts").ok_or(WriteError::Automerge("no receipts".into()))?;
                let id = ctx.next_item_id();
                let obj = doc.put_object(&receipts, id.as_str(), ObjType::Map)?;
                doc.put(&obj, "by", by.to_hex())?;
                doc.put(&obj, "at", automerge::ScalarValue::Timestamp(at.millis()))?;
                doc.put(&obj, "message", message)?;
                Ok(id)
            })
            .map(Some)
    }

    /// Publishes `profile` as `member`'s own (only its author may write it).
    pub fn publish_profile(
        &mut self,
        member: MemberId,
        profile: &PublishedProfile,
        at: Timestamp,
    ) -> Result<String, WriteError> {
        for (field, value) in [("name", &profile.name), ("profession", &profile.profession)] {
            check_text(field, value, crate::schema::MAX_LABEL_BYTES)?;
            if value.trim().is_empty() {
                return Err(WriteError::InvalidValue {
                    field,
                    reason: crate::schema::Fault::Empty,
                });
            }
        }
        self.replica.write(at, |doc, ctx| {
            let profiles =
                root_obj(doc, "profiles").ok_or(WriteError::Automerge("no profiles".into()))?;
            let id = ctx.next_item_id();
            let obj = doc.put_object(&profiles, id.as_str(), ObjType::Map)?;
            doc.put(&obj, "member", member.to_hex())?;
            doc.put(&obj, "at", automerge::ScalarValue::Timestamp(at.millis()))?;
            doc.put(&obj, "name", profile.name.as_str())?;
            doc.put(&obj, "profession", profile.profession.as_str())?;
            if let Some(r) = &profile.rpps {
                doc.put(&obj, "rpps", r.as_str())?;
            }
            if let Some(a) = &profile.adeli {
                doc.put(&obj, "adeli", a.as_str())?;
            }
            Ok(id)
        })
    }

    /// Each member's latest published profile.
    pub fn profiles(&self) -> std::collections::BTreeMap<MemberId, PublishedProfile> {
        let doc = self.replica.doc();
        let mut out: std::collections::BTreeMap<MemberId, PublishedProfile> =
            std::collections::BTreeMap::new();
        let Some(coll) = root_obj(doc, "profiles") else {
            return out;
        };
        for (_, obj) in collection_items(doc, &coll) {
            let r = RecordReader { doc, obj };
            let (Some(member), Some(at), Some(name), Some(profession)) = (
                r.member("member"),
                r.timestamp("at"),
                r.str("name"),
                r.str("profession"),
            ) else {
                continue;
            };
            let p = PublishedProfile {
                member,
                at,
                name,
                profession,
                rpps: r.str("rpps"),
                adeli: r.str("adeli"),
            };
            match out.get(&member) {
                Some(old) if (old.at, &old.name) >= (p.at, &p.name) => {}
                _ => {
                    out.insert(member, p);
                }
            }
        }
        out
    }

    /// All messages, oldest first, with their read receipts.
    pub fn messages(&self) -> Vec<Message> {
        let doc = self.replica.doc();
        let mut messages = Vec::new();
        let mut index = std::collections::HashMap::new();
        if let Some(coll) = root_obj(doc, "messages") {
            for (id, obj) in collection_items(doc, &coll) {
                let r = RecordReader { doc, obj };
                let (Some(author), Some(at), Some(text)) =
                    (r.member("author"), r.timestamp("at"), r.str("text"))
                else {
                    continue;
                };
                index.insert(id.clone(), messages.len());
                messages.push(Message {
                    id,
                    author,
                    at,
                    text,
                    attachments: r.str_list("attachments"),
                    read_by: Vec::new(),
                });
            }
        }
        if let Some(coll) = root_obj(doc, "receipts") {
            let mut receipts: Vec<(String, ReadReceipt)> = collection_items(doc, &coll)
                .into_iter()
                .filter_map(|(_, obj)| {
                    let r = RecordReader { doc, obj };
                    Some((
                        r.str("message")?,
                        ReadReceipt {
                            by: r.member("by")?,
                            at: r.timestamp("at")?,
                        },
                    ))
                })
                .collect();
            receipts.sort_by_key(|(_, r)| (r.at, r.by));
            for (message, receipt) in receipts {
                if let Some(&i) = index.get(&message) {
                    let m: &mut Message = &mut messages[i];
                    if !m.read_by.iter().any(|r| r.by == receipt.by) {
                        m.read_by.push(receipt);
                    }
                }
            }
        }
        messages.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        messages
    }
}
