//! Joining a circle with an invite code (the invitee's side): the node dials the inviter
//! (or, from a short code, finds it among its peers and at its relays), proves the code's
//! secret inside Noise, and receives the circle once added. The protocol's messages are
//! handled in `node::core::invites`.

use serde::{Deserialize, Serialize};

use super::{NodeError, Operation};
use crate::invite::{AnyCode, InviteError, MAX_JOINS};
use crate::node::core::invites::{JoinState, Joining};
use crate::node::{Effect, NodeCore};

/// Joins a circle with an invite code: reaches the inviter and proves the code's secret.
/// Follow it with [`JoinStatus`].
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Join {
    pub code: String,
}

/// Where a join stands.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JoinView {
    pub invite: String,
    /// The circle's id; empty while a short code's inviter has not answered.
    pub circle: String,
    /// `reaching` (looking for the inviter), `accepted` (added, receiving the circle),
    /// `joined` (the circle is here) or `refused`.
    pub state: String,
    /// Why the inviter refused.
    pub reason: Option<String>,
    /// The refusal's stable name (`used`, `expired`…), when the inviter gave one.
    #[serde(default)]
    pub refusal: Option<String>,
}

impl Operation for Join {
    type Answer = JoinView;

    fn run(self, core: &mut NodeCore) -> Result<JoinView, NodeError> {
        let now = core.now().millis();
        let code = AnyCode::parse(&self.code)?;
        if !core.running {
            return Err(NodeError::not_running("joining"));
        }
        if let AnyCode::Full(code) = &code {
            code.check_expiry(now)?;
            if core.circles.open.contains_key(&code.circle) {
                return Err(NodeError::conflict(
                    "you are already a member of this circle",
                ));
            }
            if code.addresses.is_empty() {
                return Err(InviteError::NoAddress.into());
            }
            for address in &code.addresses {
                core.emit(Effect::Dial(address.clone()));
            }
        }
        let id = code.id();
        make_room(core, &id)?;
        core.joins.insert(id.clone(), Joining::new(code, now));
        // The inviter may be connected already (a full code's, or on the LAN); a short code
        // is also looked for at the relays.
        let connected: Vec<_> = core.peers.keys().copied().collect();
        for device in connected {
            for e in core.send_joins(&device) {
                core.emit(e);
            }
            if core.is_relay(&device) {
                for e in core.seek_at(&device) {
                    core.emit(e);
                }
            }
        }
        view(core, &id)
    }
}

/// Room for one more join under `id`: the oldest finished join makes room; with none
/// finished, the request is refused (to be asked again).
pub(crate) fn make_room(core: &mut NodeCore, id: &str) -> Result<(), NodeError> {
    if core.joins.len() < MAX_JOINS || core.joins.contains_key(id) {
        return Ok(());
    }
    let done = core
        .joins
        .iter()
        .find(|(_, j)| j.state != JoinState::Reaching)
        .map(|(k, _)| k.clone());
    match done {
        Some(k) => {
            core.joins.remove(&k);
            Ok(())
        }
        None => Err(NodeError::unavailable(format!(
            "{MAX_JOINS} joins are under way; wait for one to finish"
        ))),
    }
}

/// Where a join started with [`Join`] stands.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JoinStatus {
    pub invite: String,
}

impl Operation for JoinStatus {
    type Answer = JoinView;

    fn run(self, core: &mut NodeCore) -> Result<JoinView, NodeError> {
        view(core, &self.invite)
    }
}

pub(crate) fn view(core: &NodeCore, id: &str) -> Result<JoinView, NodeError> {
    let j = core.joins.get(id).ok_or_else(|| {
        NodeError::not_found(format!("no join with invite {id:?} is under way here"))
    })?;
    let circle = j.circle();
    let held = circle.is_some_and(|c| core.circles.open.contains_key(&c));
    let (state, reason, refusal) = match &j.state {
        JoinState::Refused(r, code) => ("refused", Some(r.clone()), code.clone()),
        _ if held => ("joined", None, None),
        JoinState::Accepted => ("accepted", None, None),
        JoinState::Reaching => ("reaching", None, None),
    };
    Ok(JoinView {
        invite: id.to_string(),
        circle: circle.map(|c| c.to_string()).unwrap_or_default(),
        state: state.into(),
        reason,
        refusal,
    })
}
