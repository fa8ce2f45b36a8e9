//! What an operation fails with: one sentence for the user and a kind that says whose move
//! it is (the API maps it to an HTTP status, the web UI to a heading in the page's language,
//! the CLI to its message). The modules' own errors (circle, store, invite, card) are
//! turned into it here, each variant to the kind that fits it.

use serde::{Deserialize, Serialize};

use crate::circle::CircleError;
use crate::identity::CardError;
use crate::invite::InviteError;
use crate::store::StoreError;

/// Whose move it is after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is wrong (an empty note, a bad date): fix it and ask again.
    BadInput,
    /// This member's role, or the circle's rules, do not allow it.
    NotAllowed,
    /// What the request names does not exist here.
    NotFound,
    /// It contradicts what is already there (a member added twice, a used invite).
    Conflict,
    /// The node cannot now (the disk is full, it is stopping, it needs the network).
    Unavailable,
    /// Something is wrong with this node (damaged data, a bug).
    Internal,
}

impl ErrorKind {
    /// The HTTP status the local API answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadInput => 400,
            ErrorKind::NotAllowed => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The kind of an HTTP status (for a client reading the API's answer).
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            400 => ErrorKind::BadInput,
            401 | 403 => ErrorKind::NotAllowed,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            503 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

/// Why a request failed: its kind and one sentence that says what to do.
#[derive(
    Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, schemars::JsonSchema,
)]
#[error("{message}")]
pub struct NodeError {
    pub kind: ErrorKind,
    #[serde(rename = "error")]
    pub message: String,
    /// When a value was refused: which field and why, for a client to word in its own
    /// language (the web UI does, in the page's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<Box<Invalid>>,
    /// When this member's role does not allow the request: that role (`caregiver`…), for
    /// a client to say so in its own language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// When an invite code or a join was refused: why, by its stable name (`used`,
    /// `expired`…; see `InviteError::code`), for a client to word in its own language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
}

/// A refused value: the field (as the documents name it) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Invalid {
    pub field: String,
    #[serde(flatten)]
    pub fault: cercle_crdt::schema::Fault,
}

impl NodeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> NodeError {
        NodeError {
            kind,
            message: message.into(),
            invalid: None,
            role: None,
            invite: None,
        }
    }

    pub fn bad_input(message: impl Into<String>) -> NodeError {
        NodeError::new(ErrorKind::BadInput, message)
    }

    pub fn not_allowed(message: impl Into<String>) -> NodeError {
        NodeError::new(ErrorKind::NotAllowed, message)
    }

    pub fn not_found(message: impl Into<String>) -> NodeError {
        NodeError::new(ErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> NodeError {
        NodeError::new(ErrorKind::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> NodeError {
        NodeError::new(ErrorKind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> NodeError {
        NodeError::new(ErrorKind::Internal, message)
    }

    /// The node is not running (a command without `cercle up` asked for the network).
    pub fn not_running(what: &str) -> NodeError {
        NodeError::unavailable(format!(
            "{what} needs the network: start the node with `cercle up`, then try again"
        ))
    }
}

impl From<CircleError> for NodeError {
    fn from(e: CircleError) -> NodeError {
        let kind = match &e {
            CircleError::Unknown { .. } | CircleError::UnknownMember { .. } => ErrorKind::NotFound,
            CircleError::Ambiguous { .. }
            | CircleError::AmbiguousMember { .. }
            | CircleError::Write(_)
            | CircleError::Op(_)
            | CircleError::TooManyRelays { .. }
            | CircleError::TooManyOnCall { .. } => ErrorKind::BadInput,
            CircleError::NotAllowed { .. }
            | CircleError::Suspended { .. }
            | CircleError::NoEpochKey
            | CircleError::NotOnCall { .. }
            | CircleError::NotInvited { .. } => ErrorKind::NotAllowed,
            CircleError::AlreadyMember { .. } => ErrorKind::Conflict,
            CircleError::Store(s) => return NodeError::from(s.clone()),
            CircleError::Load { .. }
            | CircleError::Crypto(_)
            | CircleError::Seal(_)
            | CircleError::AtRest { .. } => ErrorKind::Internal,
        };
        let mut error = NodeError::new(kind, e.to_string());
        match e {
            CircleError::Write(cercle_crdt::WriteError::InvalidValue { field, reason }) => {
                error.invalid = Some(Box::new(Invalid {
                    field: field.to_string(),
                    fault: reason,
                }));
            }
            CircleError::NotAllowed { role, .. } => error.role = Some(role),
            _ => {}
        }
        error
    }
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> NodeError {
        let kind = match &e {
            StoreError::Locked { .. }
            | StoreError::DiskFull { .. }
            | StoreError::Stopped { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        NodeError::new(kind, e.to_string())
    }
}

impl From<CardError> for NodeError {
    fn from(e: CardError) -> NodeError {
        NodeError::bad_input(format!("the contact card is not valid: {e}"))
    }
}

impl From<InviteError> for NodeError {
    fn from(e: InviteError) -> NodeError {
        let kind = match &e {
            InviteError::Used => ErrorKind::Conflict,
            InviteError::Unknown => ErrorKind::NotFound,
            InviteError::WrongSecret | InviteError::WrongDevice => ErrorKind::NotAllowed,
            _ => ErrorKind::BadInput,
        };
        let mut error = NodeError::new(kind, e.to_string());
        error.invite = Some(e.code().to_string());
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_status_and_back() {
        for kind in [
            ErrorKind::BadInput,
            ErrorKind::NotAllowed,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ] {
            assert_eq!(ErrorKind::from_status(kind.status()), kind);
        }
    }

    #[test]
    fn a_role_refusal_is_not_allowed_and_an_unknown_circle_not_found() {
        let e: NodeError = CircleError::NotAllowed {
            role: "caregiver".into(),
            action: "writing",
        }
        .into();
        assert_eq!(e.kind, ErrorKind::NotAllowed);
        assert_eq!(e.role.as_deref(), Some("caregiver"));
        let e: NodeError = CircleError::Unknown { query: "ab".into() }.into();
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e: NodeError = StoreError::DiskFull { path: "/h".into() }.into();
        assert_eq!(e.kind, ErrorKind::Unavailable);
    }

    #[test]
    fn a_refused_value_travels_with_its_field_and_fault_through_the_api() {
        use cercle_crdt::schema::Fault;
        let faults = [
            Fault::Empty,
            Fault::TooLong { len: 9, max: 8 },
            Fault::Required,
            Fault::InFuture,
            Fault::NothingToChange,
            Fault::UnknownField {
                name: "colour".into(),
                list: "problems".into(),
            },
            Fault::NotANumber { value: "x".into() },
            Fault::OutOfRange {
                min: "0".into(),
                max: "10".into(),
            },
            Fault::NotOneOf {
                allowed: vec!["low".into(), "high".into()],
            },
            Fault::BadDate { why: "no".into() },
            Fault::BadIns { why: "key".into() },
            Fault::NotTheAuthor {
                claimed: "ab".into(),
            },
            Fault::Other { why: "else".into() },
        ];
        for fault in faults {
            let e: NodeError = CircleError::Write(cercle_crdt::WriteError::InvalidValue {
                field: "ins",
                reason: fault.clone(),
            })
            .into();
            assert_eq!(e.kind, ErrorKind::BadInput);
            assert_eq!(e.message, format!("ins: {fault}"));
            let wire = serde_json::to_string(&e).unwrap_or_default();
            let back: Result<NodeError, _> = serde_json::from_str(&wire);
            assert_eq!(back.ok(), Some(e), "{wire}");
        }
    }
}
