//! What a user can ask of a node, one module per operation: its typed request, its typed
//! answer, its input checks (made here once, for the CLI and the web UI alike) and its
//! effect on the [`NodeCore`]. The CLI, the web UI and the tests call them through a typed
//! client ([`Operation`]: `client.call(NoteAdd { .. }) -> Result<Added, NodeError>`), over
//! the local API ([`Request`], [`Answer`] as JSON) or on a core opened in process.
//!
//! # Layout
//!
//! - `status`: the node's status, this member's card, dialing a peer;
//! - `circles`: listing, creating and showing circles;
//! - `members`, `roles`, `relays`: membership operations of a coordinator;
//! - `invite`, `join`: one-time invite codes, and joining with one;
//! - `patient`, `notes`, `messages`, `tasks`, `documents`: the care documents;
//! - `export`: a circle in portable formats;
//! - `carried`: sync files carried by hand where no network reaches;
//! - `devices`: pairing a member's new device, listing and revoking them;
//! - `error`: [`NodeError`] and its [`ErrorKind`], what every operation fails with.
//!
//! # How to add an operation
//!
//! See `ARCHITECTURE.md`: a struct for the request and one for its answer in the module of
//! its kind, `impl Operation` with its checks and its effect, and one line in
//! [`operations!`] and, for a new answer type, in [`answers!`].

use std::collections::BTreeMap;

use cercle_crdt::{MemberId, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::circle::Circle;
use crate::node::NodeCore;

mod error;

pub mod audit;
pub mod carried;
pub mod circles;
pub mod closing;
pub mod devices;
pub mod directory;
pub mod documents;
pub mod emergency;
pub mod export;
pub mod invite;
pub mod join;
pub mod members;
pub mod messages;
pub mod notes;
pub mod patient;
pub mod relays;
pub mod roles;
pub mod status;
pub mod tasks;

pub use error::{ErrorKind, Invalid, NodeError};

/// One thing a user can ask of a node.
pub trait Operation:
    Serialize + DeserializeOwned + schemars::JsonSchema + Into<Request> + Send + 'static
{
    /// What the node answers.
    type Answer: Serialize
        + DeserializeOwned
        + schemars::JsonSchema
        + Into<Answer>
        + TryFrom<Answer, Error = Answer>;

    /// Checks the request and carries it out on the core. Writes it stages are made
    /// durable before the answer is given.
    fn run(self, core: &mut NodeCore) -> Result<Self::Answer, NodeError>;
}

/// The typed answer of `O` from the node's answer to it.
pub fn typed<O: Operation>(answer: Result<Answer, NodeError>) -> Result<O::Answer, NodeError> {
    O::Answer::try_from(answer?).map_err(|other| {
        NodeError::internal(format!(
            "the node gave an unexpected answer ({}); is it the same version as this command?",
            other.name()
        ))
    })
}

/// Every operation, by the name of its request type: the [`Request`] enum (its JSON tag is
/// the name in snake case), the conversions and the dispatch.
macro_rules! operations {
    ($($module:ident :: $op:ident),* $(,)?) => {
        /// A request to a node, as the local API carries it: `{"request": "note_add", ...}`.
        #[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(tag = "request", rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum Request {
            $(
                #[doc = concat!("See [`", stringify!($module), "::", stringify!($op), "`].")]
                $op($module::$op),
            )*
        }

        $(
            impl From<$module::$op> for Request {
                fn from(op: $module::$op) -> Request {
                    Request::$op(op)
                }
            }
        )*

        impl Request {
            /// Carries the request out on the core.
            pub(crate) fn run(self, core: &mut NodeCore) -> Result<Answer, NodeError> {
                match self {
                    $(Request::$op(op) => op.run(core).map(Into::into),)*
                }
            }

            /// The request's name in the API.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Request::$op(_) => stringify!($op),)*
                }
            }
        }
    };
}

operations! {
    status::Status,
    status::Card,
    status::Connect,
    circles::CircleList,
    circles::CircleCreate,
    circles::CircleShow,
    circles::CircleAccept,
    circles::CircleDecline,
    closing::CircleClose,
    closing::ConsentWithdraw,
    members::MemberAdd,
    members::MemberRemove,
    roles::RoleChange,
    relays::RelaysSet,
    relays::ReminderSet,
    invite::InviteCreate,
    join::Join,
    join::JoinStatus,
    patient::PatientShow,
    patient::PatientSet,
    patient::ItemAdd,
    patient::MedicationStop,
    patient::ItemChange,
    patient::ItemRemove,
    notes::NoteAdd,
    notes::NoteList,
    notes::NoteAmend,
    notes::NoteAck,
    messages::MsgSend,
    messages::MsgList,
    tasks::TaskAdd,
    tasks::TaskList,
    tasks::TaskDone,
    documents::DocAdd,
    documents::DocList,
    documents::DocGet,
    export::Export,
    carried::SyncExport,
    carried::SyncImport,
    devices::DevicePair,
    devices::PairWith,
    devices::PairStatus,
    devices::DeviceList,
    devices::DeviceRevoke,
    directory::DirectoryImport,
    directory::DirectorySearch,
    audit::Audit,
    emergency::OnCallSet,
    emergency::EmergencyCodeMake,
    emergency::BreakGlassAsk,
}

/// Every kind of answer, by variant and type: the [`Answer`] enum (its JSON tag is the
/// variant in snake case) and the conversions a typed client uses.
macro_rules! answers {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A node's answer, as the local API carries it: `{"answer": "added", ...}`.
        #[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(tag = "answer", rename_all = "snake_case")]
        #[non_exhaustive]
        #[allow(clippy::large_enum_variant)]
        pub enum Answer {
            $($variant($ty),)*
        }

        $(
            impl From<$ty> for Answer {
                fn from(a: $ty) -> Answer {
                    Answer::$variant(a)
                }
            }

            impl TryFrom<Answer> for $ty {
                type Error = Answer;
                fn try_from(a: Answer) -> Result<$ty, Answer> {
                    match a {
                        Answer::$variant(a) => Ok(a),
                        #[allow(unreachable_patterns)]
                        other => Err(other),
                    }
                }
            }
        )*

        impl Answer {
            /// The answer's kind.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Answer::$variant(_) => stringify!($variant),)*
                }
            }
        }
    };
}

answers! {
    Status(status::NodeStatus),
    Card(status::CardText),
    Circles(circles::Circles),
    Declined(circles::Declined),
    Closed(closing::ClosedRow),
    Circle(circles::CircleSummary),
    Added(Added),
    Notes(notes::Notes),
    Invite(invite::InviteView),
    Join(join::JoinView),
    EmergencyCode(emergency::EmergencyCodeView),
    Patient(patient::PatientView),
    Messages(messages::Messages),
    Tasks(tasks::Tasks),
    Documents(documents::Documents),
    Document(documents::Document),
    Export(export::Exported),
    SyncParts(carried::SyncParts),
    SyncTaken(carried::SyncTaken),
    PairingCode(devices::PairingCode),
    Pair(devices::PairView),
    Devices(devices::Devices),
    DeviceRevoked(devices::DeviceRevoked),
    DirectoryImported(directory::Imported),
    DirectoryFound(directory::Found),
    Audit(audit::AuditTrail),
    Done(Done),
}

/// Items a write made (notes, a message, a task...), by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Added {
    pub circle: String,
    pub ids: Vec<String>,
}

impl Added {
    pub(crate) fn one(c: &Circle, id: String) -> Added {
        Added {
            circle: c.info().id.clone(),
            ids: vec![id],
        }
    }
}

/// The request was carried out; nothing to say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Done {}

/// One read receipt or acknowledgement.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReceiptRow {
    pub by: String,
    pub by_name: Option<String>,
    pub at: String,
    pub at_millis: i64,
}

/// Members' names, read once per answer.
pub(crate) struct Names(BTreeMap<MemberId, String>);

impl Names {
    pub(crate) fn of(c: &Circle) -> Names {
        Names(c.profiles().into_iter().map(|(m, p)| (m, p.name)).collect())
    }

    pub(crate) fn get(&self, member: &MemberId) -> Option<String> {
        self.0.get(member).cloned()
    }

    /// With the names of the circle's on-call list that `me` can open, for those without
    /// a profile here (one let in by an emergency access publishes none).
    pub(crate) fn with_on_call(mut self, c: &Circle, me: &crate::identity::LocalIdentity) -> Names {
        for o in c.on_call_list(me) {
            self.0.entry(o.member).or_insert(o.name);
        }
        self
    }

    pub(crate) fn receipt(&self, by: &MemberId, at: Timestamp) -> ReceiptRow {
        ReceiptRow {
            by: by.to_hex(),
            by_name: self.get(by),
            at: at.to_rfc3339(),
            at_millis: at.millis(),
        }
    }
}

/// The one id among `ids` equal to or starting with `query` (at least 4 characters).
/// Refuses, in a team's own circle (no patient), what only a patient's circle holds.
pub(crate) fn about_a_patient(c: &crate::circle::Circle, what: &str) -> Result<(), NodeError> {
    if c.info().team {
        return Err(NodeError::bad_input(format!(
            "{:?} is a team's circle, with no patient: it has no {what}; send a message or add a document instead",
            c.info().patient
        )));
    }
    Ok(())
}

pub(crate) fn pick_id(
    what: &str,
    query: &str,
    ids: impl IntoIterator<Item = String>,
) -> Result<String, NodeError> {
    let q = query.trim().to_ascii_lowercase();
    if q.len() < 4 {
        return Err(NodeError::bad_input(format!(
            "give at least 4 characters of the {what}'s id"
        )));
    }
    let mut found: Vec<String> = ids.into_iter().filter(|id| id.starts_with(&q)).collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(NodeError::not_found(format!(
            "no {what} of this circle has an id starting with {query:?}; list them to see their ids"
        ))),
        n => Err(NodeError::bad_input(format!(
            "{n} {what}s have an id starting with {query:?}; give more characters"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_snake_case_names_on_the_wire() {
        let r: Request = notes::NoteList {
            circle: "abcd".into(),
        }
        .into();
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(json["request"], "note_list");
        assert_eq!(json["circle"], "abcd");
        let back: Request = serde_json::from_value(json).unwrap();
        assert_eq!(back.name(), "NoteList");
    }

    #[test]
    fn a_typed_call_refuses_an_answer_of_another_kind() {
        let wrong = Ok(Answer::Done(Done {}));
        let e = typed::<notes::NoteList>(wrong).err();
        assert_eq!(e.map(|e| e.kind), Some(ErrorKind::Internal));
        let right = Ok(Answer::Notes(notes::Notes { notes: vec![] }));
        assert!(typed::<notes::NoteList>(right).is_ok());
    }
}
