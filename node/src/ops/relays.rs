//! The circle's settings a coordinator chooses for every member: the relays it uses (every
//! member's node then keeps a mailbox of the circle there and meets the other members
//! through it) and after how long an unacknowledged alert is recalled.

use serde::{Deserialize, Serialize};

use super::circles::CircleSummary;
use super::members::change;
use super::{NodeError, Operation};
use crate::node::NodeCore;

/// Names the relays the circle uses (replacing the earlier list; empty for none).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RelaysSet {
    pub circle: String,
    /// Each a multiaddress ending with `/p2p/<relay peer id>`.
    pub relays: Vec<String>,
}

impl Operation for RelaysSet {
    type Answer = CircleSummary;

    fn run(self, core: &mut NodeCore) -> Result<CircleSummary, NodeError> {
        for r in &self.relays {
            crate::net::relay_device(r).map_err(|e| NodeError::bad_input(e.to_string()))?;
        }
        change(core, &self.circle, Vec::new(), |c, a| {
            c.set_relays(a.me, self.relays, a.now)
        })
    }
}

/// Sets after how many hours an unacknowledged alert is recalled to its addressees, then
/// again every as many hours (0: never).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReminderSet {
    pub circle: String,
    pub hours: u16,
}

impl Operation for ReminderSet {
    type Answer = CircleSummary;

    fn run(self, core: &mut NodeCore) -> Result<CircleSummary, NodeError> {
        use crate::circle::membership::MAX_REMINDER_HOURS;
        if self.hours > MAX_REMINDER_HOURS {
            return Err(NodeError::bad_input(format!(
                "a reminder waits at most {MAX_REMINDER_HOURS} hours (30 days); 0 turns reminders off"
            )));
        }
        change(core, &self.circle, Vec::new(), |c, a| {
            c.set_reminder(a.me, self.hours, a.now)
        })
    }
}
