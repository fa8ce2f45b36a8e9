//! Break-glass, as users ask for it: a coordinator names the on-call professionals
//! (`OnCallSet`), a member prints the patient's emergency code (`EmergencyCodeMake`), and an
//! on-call professional asks for read access with it (`BreakGlassAsk`, followed with
//! `JoinStatus`). The member's side is in `node::core::emergency`.

use serde::{Deserialize, Serialize};

use super::circles::{CircleSummary, OnCallRow};
use super::join::JoinView;
use super::{NodeError, Operation};
use crate::circle::membership::{MAX_ON_CALL, OnCall};
use crate::emergency::{EmergencyCode, MAX_CODE_ADDRESSES, MAX_CODE_DEVICES, check_request};
use crate::identity::ContactCard;
use crate::node::core::invites::Joining;
use crate::node::{Effect, NodeCore};

/// Adds the professional of `add` (a contact card) to the circle's on-call list, or removes
/// the one `remove` names (id prefix or name); coordinators only.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OnCallSet {
    pub circle: String,
    #[serde(default)]
    pub add: Option<String>,
    #[serde(default)]
    pub remove: Option<String>,
}

impl Operation for OnCallSet {
    type Answer = CircleSummary;

    fn run(self, core: &mut NodeCore) -> Result<CircleSummary, NodeError> {
        let (c, a) = core.circle_mut(&self.circle)?;
        let mut list = c.on_call_list(a.me);
        match (&self.add, &self.remove) {
            (Some(card), None) => {
                let card = ContactCard::decode(card)?;
                if list.iter().any(|o| o.member == card.member) {
                    return Err(NodeError::conflict(format!(
                        "{} is already on this circle's on-call list",
                        card.profile.name
                    )));
                }
                if list.len() >= MAX_ON_CALL {
                    return Err(NodeError::bad_input(format!(
                        "a circle names at most {MAX_ON_CALL} on-call professionals; remove one first"
                    )));
                }
                list.push(OnCall {
                    member: card.member,
                    name: card.profile.name,
                    profession: card.profile.profession,
                });
            }
            (None, Some(query)) => {
                let q = query.trim().to_lowercase();
                let found: Vec<usize> = list
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| {
                        (q.len() >= 4 && o.member.to_hex().starts_with(&q))
                            || o.name.to_lowercase().contains(&q)
                    })
                    .map(|(i, _)| i)
                    .collect();
                match found.as_slice() {
                    [i] => {
                        list.remove(*i);
                    }
                    [] => {
                        return Err(NodeError::not_found(format!(
                            "no one on this circle's on-call list matches {query:?}"
                        )));
                    }
                    _ => {
                        return Err(NodeError::bad_input(format!(
                            "{query:?} fits several on-call professionals: give more of the name"
                        )));
                    }
                }
            }
            _ => {
                return Err(NodeError::bad_input(
                    "give either a contact card to add or a name to remove",
                ));
            }
        }
        super::members::change(core, &self.circle, Vec::new(), |c, a| {
            c.set_on_call(a.me, list, a.now, a.rng)
        })
    }
}

/// The patient's emergency code of a circle, to print and leave in the patient's home.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EmergencyCodeMake {
    pub circle: String,
}

/// An emergency code, with who may use it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EmergencyCodeView {
    pub circle: String,
    pub patient: String,
    pub code: String,
    pub on_call: Vec<OnCallRow>,
}

impl Operation for EmergencyCodeMake {
    type Answer = EmergencyCodeView;

    fn run(self, core: &mut NodeCore) -> Result<EmergencyCodeView, NodeError> {
        let mut addresses = core.status().addresses;
        addresses.truncate(MAX_CODE_ADDRESSES);
        let me = core.me().device();
        let (c, a) = core.circle_mut(&self.circle)?;
        super::about_a_patient(c, "emergency code")?;
        let r = c.resolution();
        if r.closed || r.suspended.is_some() {
            return Err(NodeError::not_allowed(
                "this circle no longer shares anything: it has no emergency code",
            ));
        }
        // The other devices most likely to answer at night: the members' who write.
        let devices = r
            .members
            .values()
            .filter(|m| m.role.writes_anything())
            .flat_map(|m| m.devices.iter().map(|d| d.device))
            .filter(|d| *d != me)
            .take(MAX_CODE_DEVICES)
            .collect();
        let code = EmergencyCode {
            circle: c.id(),
            device: me,
            addresses,
            devices,
            relays: r.relays.clone(),
        };
        let on_call = c
            .on_call_list(a.me)
            .into_iter()
            .map(OnCallRow::of)
            .collect();
        Ok(EmergencyCodeView {
            circle: c.info().id.clone(),
            patient: c.info().patient.clone(),
            code: code.encode(),
            on_call,
        })
    }
}

/// Asks, with a patient's emergency code, for read access to their circle: any member's
/// node the code names checks this professional is on the circle's on-call list and grants
/// `minutes` (24 hours at most). Follow it with [`super::join::JoinStatus`].
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BreakGlassAsk {
    pub code: String,
    pub reason: String,
    #[serde(default = "a_day")]
    pub minutes: u32,
}

fn a_day() -> u32 {
    crate::emergency::MAX_MINUTES
}

impl Operation for BreakGlassAsk {
    type Answer = JoinView;

    fn run(self, core: &mut NodeCore) -> Result<JoinView, NodeError> {
        let code =
            EmergencyCode::decode(&self.code).map_err(|e| NodeError::bad_input(e.to_string()))?;
        check_request(&self.reason, self.minutes)
            .map_err(|e| NodeError::bad_input(e.to_string()))?;
        if !core.running {
            return Err(NodeError::not_running("an emergency access"));
        }
        if core.circles.open.contains_key(&code.circle) {
            return Err(NodeError::conflict(
                "this device already holds the patient's circle: open it with `cercle circle list`",
            ));
        }
        let id = code.request_id();
        let now = core.now().millis();
        super::join::make_room(core, &id)?;
        for address in code.dials() {
            core.emit(Effect::Dial(address));
        }
        let reason = self.reason.trim().to_string();
        core.joins.insert(
            id.clone(),
            Joining::emergency(code, reason, self.minutes, now),
        );
        let connected: Vec<_> = core.peers.keys().copied().collect();
        for device in connected {
            for e in core.send_joins(&device) {
                core.emit(e);
            }
        }
        super::join::view(core, &id)
    }
}
