//! The node core's side of invites: making a code (inviter), reaching the inviter and
//! following the answer (invitee), and admitting a member who proves a code's secret
//! (inviter). The code, the record and their checks are in [`crate::invite`].

use cercle_crdt::{Role, Timestamp};

use super::{Handled, NodeCore, NodeError, Output};
use crate::api::{Answer, InviteView, JoinView};
use crate::circle::CircleError;
use crate::circle::membership::CircleId;
use crate::identity::{ContactCard, DeviceId};
use crate::invite::{
    InviteCode, InviteError, InviteRecord, MAX_CODE_ADDRESSES, MAX_JOINS, MAX_VALIDITY_MS,
};
use crate::store::Batch;
use crate::sync::Message;

/// How often an invitee tries the inviter again while no answer came (milliseconds).
const RETRY_EVERY: i64 = 5_000;

/// A join under way on the invitee's node.
#[derive(Debug)]
pub(super) struct Joining {
    code: InviteCode,
    state: JoinState,
    last_try: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum JoinState {
    /// Dialing the inviter, or waiting for its answer.
    Reaching,
    /// Added to the circle; its operations and documents are on their way.
    Accepted,
    Refused(String),
}

impl NodeCore {
    /// Makes a one-time invite to `circle` for `role`, valid `expires_in` seconds.
    pub(super) fn invite(
        &mut self,
        circle: &str,
        role: Role,
        expires_in: u64,
        now: Timestamp,
    ) -> Result<Handled, NodeError> {
        let validity = i64::try_from(expires_in.saturating_mul(1000)).unwrap_or(i64::MAX);
        if validity <= 0 || validity > MAX_VALIDITY_MS {
            return Err(NodeError::BadRequest(
                "an invite is valid from one minute up to 30 days".into(),
            ));
        }
        let status = self.status();
        let me = self.me.member();
        let c = self.circles.find(circle)?;
        if c.resolution().role(&me) != Some(Role::Coordinator) {
            return Err(NodeError::BadRequest(
                "only a coordinator of the circle can invite; ask one of them".into(),
            ));
        }
        // Relayed addresses first (they work across networks), then direct TCP, then QUIC.
        let mut addresses: Vec<String> = status.addresses.clone();
        addresses.sort_by_key(|a| {
            (
                !a.contains("/p2p-circuit"),
                !a.contains("/tcp/"),
                a.starts_with("/ip6/"),
            )
        });
        // The circle's relays reach this node even before a reservation shows in its
        // addresses.
        for relay in &c.resolution().relays {
            let via = format!("{relay}/p2p-circuit/p2p/{}", status.peer_id);
            if !addresses.contains(&via) {
                addresses.insert(0, via);
            }
        }
        addresses.truncate(MAX_CODE_ADDRESSES);
        if addresses.is_empty() {
            return Err(NodeError::BadRequest(format!(
                "{}; start the node with `cercle up` first",
                InviteError::NoAddress
            )));
        }
        let secret = crate::invite::new_secret().map_err(NodeError::BadRequest)?;
        let expires_at = now.millis().saturating_add(validity);
        let code = InviteCode {
            circle: c.id(),
            inviter: self.me.device(),
            secret,
            expires_at,
            addresses: addresses.clone(),
        };
        let record = InviteRecord::new(c.id(), role, &secret, now.millis(), expires_at);
        save(self, &code.id(), &record)?;
        tracing::info!(circle = %code.circle, invite = %code.id(), "invite created");
        Ok(Handled::now(Answer::Invite(InviteView {
            code: code.encode(),
            circle: code.circle.to_string(),
            role,
            expires_at,
            addresses,
        })))
    }

    /// Starts joining with an invite code: dials the inviter; the `Join` goes out once
    /// connected.
    pub(super) fn join(&mut self, code: &str, now: Timestamp) -> Result<Handled, NodeError> {
        let code = InviteCode::decode(code)?;
        code.check_expiry(now.millis())?;
        if !self.running {
            return Err(NodeError::BadRequest(
                "joining needs the network: start the node with `cercle up`, then join again"
                    .into(),
            ));
        }
        if self.circles.open.contains_key(&code.circle) {
            return Err(NodeError::BadRequest(
                "you are already a member of this circle".into(),
            ));
        }
        if code.addresses.is_empty() {
            return Err(InviteError::NoAddress.into());
        }
        let id = code.id();
        if self.joins.len() >= MAX_JOINS && !self.joins.contains_key(&id) {
            // The oldest finished join makes room; with none finished, the request waits.
            let done = self
                .joins
                .iter()
                .find(|(_, j)| j.state != JoinState::Reaching)
                .map(|(k, _)| k.clone());
            match done {
                Some(k) => {
                    self.joins.remove(&k);
                }
                None => {
                    return Err(NodeError::BadRequest(format!(
                        "{MAX_JOINS} joins are under way; wait for one to finish"
                    )));
                }
            }
        }
        let mut after: Vec<Output> = code.addresses.iter().cloned().map(Output::Dial).collect();
        let inviter = code.inviter;
        self.joins.insert(
            id.clone(),
            Joining {
                code,
                state: JoinState::Reaching,
                last_try: now.millis(),
            },
        );
        after.extend(self.send_joins(&inviter));
        let answer = self.join_status(&id)?.answer;
        Ok(Handled {
            answer,
            tickets: Vec::new(),
            after,
        })
    }

    /// Where the join with invite `id` stands.
    pub(super) fn join_status(&self, id: &str) -> Result<Handled, NodeError> {
        let j = self.joins.get(id).ok_or_else(|| {
            NodeError::BadRequest(format!("no join with invite {id:?} is under way here"))
        })?;
        let held = self.circles.open.contains_key(&j.code.circle);
        let (state, reason) = match &j.state {
            JoinState::Refused(r) => ("refused", Some(r.clone())),
            _ if held => ("joined", None),
            JoinState::Accepted => ("accepted", None),
            JoinState::Reaching => ("reaching", None),
        };
        Ok(Handled::now(Answer::Join(JoinView {
            invite: id.to_string(),
            circle: j.code.circle.to_string(),
            state: state.into(),
            reason,
        })))
    }

    /// The `Join` messages for the inviter `device`, if it is connected.
    pub(super) fn send_joins(&self, device: &DeviceId) -> Vec<Output> {
        if !self.peers.contains_key(device) {
            return Vec::new();
        }
        let card = self.me.public().card(&self.status().addresses).encode();
        self.joins
            .iter()
            .filter(|(_, j)| j.code.inviter == *device && j.state == JoinState::Reaching)
            .map(|(id, j)| {
                Output::Send(
                    *device,
                    Message::Join {
                        invite: id.clone(),
                        secret: j.code.secret.to_vec(),
                        card: card.clone(),
                    },
                )
            })
            .collect()
    }

    /// Joins without an answer yet: dial the inviter again, or ask again if connected.
    pub(super) fn retry_joins(&mut self, now: i64) -> Vec<Output> {
        let mut out = Vec::new();
        let mut ask = Vec::new();
        for j in self.joins.values_mut() {
            if j.state != JoinState::Reaching || now - j.last_try < RETRY_EVERY {
                continue;
            }
            j.last_try = now;
            if self.peers.contains_key(&j.code.inviter) {
                ask.push(j.code.inviter);
            } else {
                out.extend(j.code.addresses.iter().cloned().map(Output::Dial));
            }
        }
        ask.sort();
        ask.dedup();
        for device in ask {
            out.extend(self.send_joins(&device));
        }
        out
    }

    /// The inviter's answer arrived.
    pub(super) fn join_answered(&mut self, from: &DeviceId, invite: &str, refused: Option<String>) {
        let Some(j) = self.joins.get_mut(invite) else {
            return;
        };
        if j.code.inviter != *from {
            tracing::warn!(peer = %from, "a join answer from a peer that is not the inviter");
            return;
        }
        j.state = match refused {
            None => JoinState::Accepted,
            Some(reason) => {
                let reason: String = reason.chars().take(300).collect();
                tracing::info!(invite, %reason, "the inviter refused the join");
                JoinState::Refused(reason)
            }
        };
    }

    /// A peer asks to join with an invite this node made: admit it or say why not.
    pub(super) fn join_asked(
        &mut self,
        from: DeviceId,
        invite: String,
        secret: &[u8],
        card: &str,
        now: i64,
    ) -> Vec<Output> {
        match self.admit(from, &invite, secret, card, now) {
            Ok(circle) => {
                tracing::info!(%circle, peer = %from, "a member joined with an invite");
                let mut out = vec![Output::Send(
                    from,
                    Message::JoinAnswer {
                        invite,
                        refused: None,
                    },
                )];
                out.extend(self.pass_on(circle, None, Vec::new(), true, now));
                out
            }
            Err(e) => {
                tracing::warn!(peer = %from, reason = %e, "refused a join");
                vec![Output::Send(
                    from,
                    Message::JoinAnswer {
                        invite,
                        refused: Some(e.to_string()),
                    },
                )]
            }
        }
    }

    fn admit(
        &mut self,
        from: DeviceId,
        invite: &str,
        secret: &[u8],
        card: &str,
        now: i64,
    ) -> Result<CircleId, NodeError> {
        if invite.len() != 16 || !invite.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InviteError::Unknown.into());
        }
        let card = ContactCard::decode(card)?;
        if !card.devices.iter().any(|d| d.device == from) {
            return Err(InviteError::WrongDevice.into());
        }
        let key = InviteRecord::key(invite);
        let mut record: InviteRecord = match self.circles.store.meta(&key)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| InviteError::Unknown)?,
            None => return Err(InviteError::Unknown.into()),
        };
        record.admit(secret, &card.member, now)?;
        let c = self
            .circles
            .open
            .get_mut(&record.circle)
            .ok_or(InviteError::Unknown)?;
        let member_now = c.resolution().members.contains_key(&card.member);
        match (record.used_by, member_now) {
            // Admitted before, the answer was lost: admitted again.
            (Some(_), true) => {}
            // Admitted before and removed since: the code is spent.
            (Some(_), false) => return Err(InviteError::Used.into()),
            (None, _) => match c.add_member(&self.me, &card, record.role, Timestamp(now)) {
                Ok(()) | Err(CircleError::AlreadyMember { .. }) => {}
                Err(e) => return Err(e.into()),
            },
        }
        if record.used_by.is_none() {
            record.used_by = Some(card.member);
            save(self, invite, &record)?;
        }
        Ok(record.circle)
    }
}

/// Writes an invite record, durably.
fn save(core: &NodeCore, id: &str, record: &InviteRecord) -> Result<(), NodeError> {
    let bytes = serde_json::to_vec(record)
        .map_err(|e| NodeError::BadRequest(format!("cannot record the invite: {e}")))?;
    let mut batch = Batch::new();
    batch.meta(&InviteRecord::key(id), &bytes);
    Ok(core.circles.store.commit(batch)?)
}
