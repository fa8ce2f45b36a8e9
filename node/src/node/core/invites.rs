//! The node core's side of invites: making a code (inviter), reaching the inviter and
//! following the answer (invitee), and admitting a member who proves a code's secret
//! (inviter). The code, the record and their checks are in [`crate::invite`].

use super::writes::After;
use super::{Effect, NodeCore};
use crate::circle::CircleError;
use crate::circle::membership::CircleId;
use crate::identity::{ContactCard, DeviceId};
use crate::invite::{InviteCode, InviteError, InviteRecord};
use crate::ops::NodeError;
use crate::store::Batch;
use crate::sync::Message;

/// How often an invitee tries the inviter again while no answer came (milliseconds).
const RETRY_EVERY: i64 = 5_000;

/// A join under way on the invitee's node.
#[derive(Debug)]
pub(crate) struct Joining {
    pub(crate) code: InviteCode,
    pub(crate) state: JoinState,
    pub(crate) last_try: i64,
}

/// Where a join stands on the invitee's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinState {
    /// Dialing the inviter, or waiting for its answer.
    Reaching,
    /// Added to the circle; its operations and documents are on their way.
    Accepted,
    Refused(String),
}

impl NodeCore {
    /// The `Join` messages for the inviter `device`, if it is connected.
    pub(crate) fn send_joins(&self, device: &DeviceId) -> Vec<Effect> {
        if !self.peers.contains_key(device) {
            return Vec::new();
        }
        let card = self.me.public().card(&self.status().addresses).encode();
        self.joins
            .iter()
            .filter(|(_, j)| j.code.inviter == *device && j.state == JoinState::Reaching)
            .map(|(id, j)| {
                Effect::Send(
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
    pub(crate) fn retry_joins(&mut self, now: i64) -> Vec<Effect> {
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
                out.extend(j.code.addresses.iter().cloned().map(Effect::Dial));
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
    pub(crate) fn join_answered(&mut self, from: &DeviceId, invite: &str, refused: Option<String>) {
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
    pub(crate) fn join_asked(&mut self, from: DeviceId, invite: String, secret: &[u8], card: &str) {
        match self.admit(from, &invite, secret, card) {
            Ok(circle) => {
                tracing::info!(%circle, peer = %from, "a member joined with an invite");
                // Answered once the member's addition is durable here.
                let answer = Message::JoinAnswer {
                    invite,
                    refused: None,
                };
                self.after_writes(vec![Effect::Send(from, answer)]);
            }
            Err(e) => {
                tracing::warn!(peer = %from, reason = %e, "refused a join");
                let answer = Message::JoinAnswer {
                    invite,
                    refused: Some(e.to_string()),
                };
                self.out.push(Effect::Send(from, answer));
            }
        }
    }

    fn admit(
        &mut self,
        from: DeviceId,
        invite: &str,
        secret: &[u8],
        card: &str,
    ) -> Result<CircleId, NodeError> {
        let now = self.now.millis();
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
            (None, _) => {
                let now = self.now.timestamp();
                match c.add_member(&self.me, &card, record.role, now, &mut self.rng) {
                    Ok(staged) => self.stage(record.circle, staged),
                    Err(CircleError::AlreadyMember { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if record.used_by.is_none() {
            record.used_by = Some(card.member);
            self.write_batch(record_batch(invite, &record)?, After::default());
        }
        Ok(record.circle)
    }
}

/// The batch that records an invite (the inviter's side).
pub(crate) fn record_batch(id: &str, record: &InviteRecord) -> Result<Batch, NodeError> {
    let bytes = serde_json::to_vec(record)
        .map_err(|e| NodeError::internal(format!("cannot record the invite: {e}")))?;
    let mut batch = Batch::new();
    batch.meta(&InviteRecord::key(id), &bytes);
    Ok(batch)
}
