//! Adding and removing members: a coordinator's signed operations. Adding seals the
//! circle's keys to the newcomer's devices and dials the addresses on their card; removing
//! starts a key epoch the removed member cannot open.

use cercle_crdt::Role;
use serde::{Deserialize, Serialize};

use super::circles::{CircleSummary, summary};
use super::{NodeError, Operation};
use crate::circle::{Circle, CircleError, Staged};
use crate::identity::ContactCard;
use crate::node::core::Author;
use crate::node::{Effect, NodeCore};

/// Adds the member of a contact card (and dials the addresses it carries).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberAdd {
    pub circle: String,
    /// The new member's contact card (`cercle whoami` prints it).
    pub card: String,
    pub role: Role,
}

impl Operation for MemberAdd {
    type Answer = CircleSummary;

    fn run(self, core: &mut NodeCore) -> Result<CircleSummary, NodeError> {
        let card = ContactCard::decode(&self.card)?;
        // The new member's node is dialed at the addresses on its card.
        let dial = card.addresses.iter().cloned().map(Effect::Dial).collect();
        change(core, &self.circle, dial, |c, a| {
            c.add_member(a.me, &card, self.role, a.now, a.rng)
        })
    }
}

/// Removes a member by id prefix or name.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberRemove {
    pub circle: String,
    pub member: String,
}

impl Operation for MemberRemove {
    type Answer = CircleSummary;

    fn run(self, core: &mut NodeCore) -> Result<CircleSummary, NodeError> {
        change(core, &self.circle, Vec::new(), |c, a| {
            let member = c.find_member(&self.member)?;
            c.remove_member(a.me, &member, a.now, a.rng)
        })
    }
}

/// Runs a membership change on a circle; once durable, `then` is carried out, every peer
/// gets a `Hello` (who shares the circle may have changed), and the circle as it now is
/// answers.
pub(crate) fn change(
    core: &mut NodeCore,
    circle: &str,
    then: Vec<Effect>,
    f: impl FnOnce(&mut Circle, Author<'_>) -> Result<Staged, CircleError>,
) -> Result<CircleSummary, NodeError> {
    let (c, author) = core.circle_mut(circle)?;
    let staged = f(c, author)?;
    let id = c.id();
    let refused = core.circles.store.rejections(&id).map_or(0, |r| r.len());
    let store = core.circles.store.clone();
    let (c, a) = core.circle_mut(circle)?;
    let answer = summary(c, a.me, refused, store.as_ref());
    core.stage(id, staged);
    core.after_writes(then);
    Ok(answer)
}
