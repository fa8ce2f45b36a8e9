//! The circle's messages: sending one, and reading them (recording this member's read
//! receipts for those not read yet, when asked).

use cercle_crdt::Thread;
use serde::{Deserialize, Serialize};

use super::{Added, Names, NodeError, Operation, ReceiptRow};
use crate::circle::Circle;
use crate::node::NodeCore;

/// Sends a message to the circle.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MsgSend {
    pub circle: String,
    pub text: String,
    /// Ids of documents of the patient file the message refers to.
    #[serde(default)]
    pub attachments: Vec<String>,
}

impl Operation for MsgSend {
    type Answer = Added;

    fn run(self, core: &mut NodeCore) -> Result<Added, NodeError> {
        if self.text.trim().is_empty() {
            return Err(NodeError::bad_input(
                "the message is empty: give its text in quotes",
            ));
        }
        let id = core.write::<Thread, _>(&self.circle, |t, author, now| {
            t.send(author, &self.text, &self.attachments, now)
        })?;
        Ok(Added::one(core.circle(&self.circle)?, id))
    }
}

/// The circle's messages, oldest first; `mark_read` records this member's read receipts
/// for those not read yet.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MsgList {
    pub circle: String,
    #[serde(default)]
    pub mark_read: bool,
}

/// The circle's messages, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Messages {
    pub messages: Vec<MessageRow>,
}

/// One message of the circle's thread.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageRow {
    pub id: String,
    pub author: String,
    pub author_name: Option<String>,
    pub text: String,
    pub at: String,
    pub at_millis: i64,
    pub attachments: Vec<String>,
    /// Who read it (member ids), and when.
    pub read_by: Vec<ReceiptRow>,
}

impl Operation for MsgList {
    type Answer = Messages;

    fn run(self, core: &mut NodeCore) -> Result<Messages, NodeError> {
        let by = core.me().member();
        // A circle whose patient objected to sharing is read-only: reading it writes no
        // receipt.
        let c = core.circle(&self.circle)?;
        let (id, suspended) = (c.id(), c.resolution().suspended.is_some());
        core.consulted(id, "thread");
        let unread: Vec<String> = core
            .circle(&self.circle)?
            .thread()?
            .messages()
            .into_iter()
            .filter(|m| m.author != by && m.read_by.iter().all(|r| r.by != by))
            .map(|m| m.id)
            .collect();
        if self.mark_read && !suspended && !unread.is_empty() {
            core.write::<Thread, _>(&self.circle, |t, by, now| {
                unread
                    .iter()
                    .try_for_each(|id| t.mark_read(by, id, now).map(|_| ()))
            })?;
        }
        Ok(Messages {
            messages: messages(core.circle(&self.circle)?)?,
        })
    }
}

/// The thread's messages, oldest first.
pub(crate) fn messages(c: &Circle) -> Result<Vec<MessageRow>, NodeError> {
    let names = Names::of(c);
    Ok(c.thread()?
        .messages()
        .into_iter()
        .map(|m| MessageRow {
            author: m.author.to_hex(),
            author_name: names.get(&m.author),
            at: m.at.to_rfc3339(),
            at_millis: m.at.millis(),
            read_by: m
                .read_by
                .iter()
                .map(|r| names.receipt(&r.by, r.at))
                .collect(),
            text: m.text,
            attachments: m.attachments,
            id: m.id,
        })
        .collect())
}
