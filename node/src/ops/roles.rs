//! Changing a member's role (coordinator, professional, caregiver, observer): a
//! coordinator's signed operation, enforced by every node on receipt.

use cercle_crdt::Role;
use serde::{Deserialize, Serialize};

use super::circles::CircleSummary;
use super::members::change;
use super::{NodeError, Operation};
use crate::node::NodeCore;

/// Changes a member's role.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RoleChange {
    pub circle: String,
    /// The member's id prefix or name.
    pub member: String,
    pub role: Role,
}

impl Operation for RoleChange {
    type Answer = CircleSummary;

    fn run(self, core: &mut NodeCore) -> Result<CircleSummary, NodeError> {
        change(core, &self.circle, Vec::new(), |c, a| {
            let member = c.find_member(&self.member)?;
            c.change_role(a.me, &member, self.role, a.now)
        })
    }
}
