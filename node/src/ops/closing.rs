//! Closing a circle for good (coordinator), and what is shown of the circles closed here:
//! when and by whom, and each relay's signed deletion receipt, checked again on every read.

use serde::{Deserialize, Serialize};

use super::{NodeError, Operation};
use crate::circle::membership::CircleId;
use crate::node::NodeCore;
use crate::tombstone::{DeletionReceipt, Tombstone};

/// Closes a circle: every member's node destroys its keys and all its content, keeping only
/// the audit rows without content; the relays delete it and send a signed receipt.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CircleClose {
    pub circle: String,
}

/// A circle closed and shredded here.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClosedRow {
    pub circle: String,
    /// The closing coordinator's time, and who (hex, and name when known).
    pub closed_at: i64,
    pub closed_by: String,
    pub closed_by_name: Option<String>,
    /// When this node shredded it (milliseconds).
    pub shredded_at: i64,
    /// The relays' deletion receipts.
    pub receipts: Vec<ReceiptRow>,
    /// The peer ids of the relays that kept a copy and have not given their receipt yet
    /// (none, and no receipt: no relay kept the circle).
    #[serde(default)]
    pub awaited: Vec<String>,
}

/// A relay's deletion receipt, as shown.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReceiptRow {
    /// The relay's device (its network key) and its peer id.
    pub relay: String,
    pub peer_id: String,
    /// When it deleted (milliseconds, the relay's clock), how many envelopes and bytes.
    pub at: i64,
    pub envelopes: u64,
    pub bytes: u64,
    /// Whether the signature verifies (checked again on this read).
    pub verified: bool,
    pub signature: String,
}

impl ReceiptRow {
    pub(crate) fn of(r: &DeletionReceipt) -> ReceiptRow {
        ReceiptRow {
            relay: r.relay.to_string(),
            peer_id: crate::net::peer_of(&r.relay)
                .map(|p| p.to_string())
                .unwrap_or_default(),
            at: r.at,
            envelopes: r.envelopes,
            bytes: r.bytes,
            verified: r.verify().is_ok(),
            signature: r.signature.clone(),
        }
    }
}

impl ClosedRow {
    pub(crate) fn of(circle: &CircleId, t: &Tombstone) -> ClosedRow {
        ClosedRow {
            circle: circle.to_string(),
            closed_at: t.closed_at,
            closed_by: t.closed_by.to_hex(),
            closed_by_name: t.closed_by_name.clone(),
            shredded_at: t.shredded_at,
            receipts: t.receipts.iter().map(ReceiptRow::of).collect(),
            awaited: t
                .awaited()
                .iter()
                .filter_map(crate::net::peer_of)
                .map(|p| p.to_string())
                .collect(),
        }
    }
}

/// Records the patient's objection to sharing (coordinator or professional): every
/// member's node stops sending and taking the circle's data and keeps what it holds,
/// read-only; the relays delete their copy and sign a receipt.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConsentWithdraw {
    pub circle: String,
    /// Why, as the patient said it (kept in the membership log: no care data).
    pub reason: String,
}

impl Operation for ConsentWithdraw {
    type Answer = super::circles::CircleSummary;

    fn run(self, core: &mut NodeCore) -> Result<super::circles::CircleSummary, NodeError> {
        super::members::change(core, &self.circle, Vec::new(), |c, a| {
            c.withdraw_consent(a.me, &self.reason, a.now, a.rng)
        })
    }
}

impl Operation for CircleClose {
    type Answer = ClosedRow;

    fn run(self, core: &mut NodeCore) -> Result<ClosedRow, NodeError> {
        let (c, a) = core.circle_mut(&self.circle)?;
        let id = c.id();
        let staged = c.close(a.me, a.now)?;
        core.stage(id, staged);
        core.shred_closed(id, None);
        let t = core
            .circles
            .closed
            .get(&id)
            .ok_or_else(|| NodeError::internal("the circle closed was not shredded"))?;
        Ok(ClosedRow::of(&id, t))
    }
}

/// The id of the circle closed here whose id starts with `query`, if any.
pub(crate) fn find_closed(core: &NodeCore, query: &str) -> Option<CircleId> {
    crate::circle::pick(query, core.circles.closed.keys().copied(), |id| *id).ok()
}
