//! Naming the relays a circle uses: every member's node then keeps a mailbox of the circle
//! there and meets the other members through it.

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
