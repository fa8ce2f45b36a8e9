//! The node core's side of invites: making a code (inviter), reaching the inviter and
//! following the answer (invitee), and admitting a member who proves a code's secret
//! (inviter). The code, the record and their checks are in [`crate::invite`].

use std::collections::BTreeSet;

use super::writes::After;
use super::{Effect, NodeCore};
use crate::circle::CircleError;
use crate::circle::membership::CircleId;
use crate::emergency::EmergencyCode;
use crate::identity::{ContactCard, DeviceId};
use crate::invite::{
    AnyCode, InviteError, InviteRecord, MAX_OPEN_INVITES, RECORD_PREFIX, SECRET_BYTES, ShortCode,
    answer_proof, join_proof,
};
use crate::ops::NodeError;
use crate::store::Batch;
use crate::sync::Message;

/// How often an invitee tries the inviter again while no answer came (milliseconds).
const RETRY_EVERY: i64 = 5_000;

/// A join under way on the invitee's node.
#[derive(Debug)]
pub(crate) struct Joining {
    pub(crate) secret: [u8; SECRET_BYTES],
    /// The inviter's device: named by a full code; for a short code, the first connected
    /// device with the code's fingerprint (checked again by the proof of its answer).
    pub(crate) inviter: Option<DeviceId>,
    /// What the invitee was given.
    pub(crate) from: Given,
    pub(crate) state: JoinState,
    pub(crate) last_try: i64,
}

/// The code a join started from.
#[derive(Debug)]
pub(crate) enum Given {
    /// A full code: the circle and the inviter's addresses are known.
    Full {
        circle: CircleId,
        addresses: Vec<String>,
    },
    /// A short code: the inviter is found by its fingerprint; the circle is named by its
    /// answer, once proven.
    Short {
        code: ShortCode,
        circle: Option<CircleId>,
    },
    /// A patient's emergency code: any device it names may grant read access; the request
    /// carries why and for how long.
    Emergency {
        code: Box<EmergencyCode>,
        reason: String,
        minutes: u32,
        /// The devices that refused: one whose copy of the on-call list is older, or whose
        /// member cannot grant, may refuse where another grants.
        refused_by: BTreeSet<DeviceId>,
    },
}

impl Joining {
    /// A join from either kind of code.
    pub(crate) fn new(code: AnyCode, now: i64) -> Joining {
        let (secret, inviter, from) = match code {
            AnyCode::Full(c) => (
                c.secret,
                Some(c.inviter),
                Given::Full {
                    circle: c.circle,
                    addresses: c.addresses,
                },
            ),
            AnyCode::Short(code) => (code.secret, None, Given::Short { code, circle: None }),
        };
        Joining {
            secret,
            inviter,
            from,
            state: JoinState::Reaching,
            last_try: now,
        }
    }

    /// An emergency access asked with `code`.
    pub(crate) fn emergency(
        code: EmergencyCode,
        reason: String,
        minutes: u32,
        now: i64,
    ) -> Joining {
        Joining {
            secret: [0; SECRET_BYTES],
            inviter: None,
            from: Given::Emergency {
                code: Box::new(code),
                reason,
                minutes,
                refused_by: BTreeSet::new(),
            },
            state: JoinState::Reaching,
            last_try: now,
        }
    }

    /// The circle joined, once known.
    pub(crate) fn circle(&self) -> Option<CircleId> {
        match &self.from {
            Given::Full { circle, .. } => Some(*circle),
            Given::Short { circle, .. } => *circle,
            Given::Emergency { code, .. } => Some(code.circle),
        }
    }

    /// The message asking `device` to let this one in.
    fn ask(&self, id: &str, me: &DeviceId, device: &DeviceId, card: &str) -> Message {
        match &self.from {
            Given::Emergency {
                code,
                reason,
                minutes,
                ..
            } => Message::BreakGlass {
                request: id.to_string(),
                circle: code.circle,
                reason: reason.clone(),
                minutes: *minutes,
                card: card.to_string(),
            },
            _ => Message::Join {
                invite: id.to_string(),
                secret: self.proof_for(me, device),
                card: card.to_string(),
            },
        }
    }

    /// What proves the invite to `inviter`: the secret itself to the device a full code
    /// names; a proof bound to both devices to one found by a short code's fingerprint.
    fn proof_for(&self, me: &DeviceId, inviter: &DeviceId) -> Vec<u8> {
        match self.from {
            Given::Full { .. } => self.secret.to_vec(),
            Given::Short { .. } => {
                join_proof(blake3::hash(&self.secret).as_bytes(), me, inviter).to_vec()
            }
            Given::Emergency { .. } => Vec::new(),
        }
    }

    /// A short code still looking for its inviter.
    fn seeking(&self) -> Option<&ShortCode> {
        match &self.from {
            Given::Short { code, .. }
                if self.inviter.is_none() && self.state == JoinState::Reaching =>
            {
                Some(code)
            }
            _ => None,
        }
    }
}

/// Where a join stands on the invitee's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinState {
    /// Dialing the inviter, or waiting for its answer.
    Reaching,
    /// Added to the circle; its operations and documents are on their way.
    Accepted,
    /// Refused by the inviter: why, and the refusal's stable name when it gave one.
    Refused(String, Option<String>),
}

impl NodeCore {
    /// The `Join` messages for the inviter `device`, if it is connected. A short code
    /// without its inviter yet takes `device` if it has the code's fingerprint.
    pub(crate) fn send_joins(&mut self, device: &DeviceId) -> Vec<Effect> {
        if !self.peers.contains_key(device) {
            return Vec::new();
        }
        for j in self.joins.values_mut() {
            if j.seeking().is_some_and(|code| code.names(device)) {
                tracing::info!(peer = %device, "found the inviter of a short code");
                j.inviter = Some(*device);
            }
            // An emergency code: the first device it names that is connected is asked (one
            // that refused already is not asked again).
            if let Given::Emergency {
                code, refused_by, ..
            } = &j.from
                && j.inviter.is_none()
                && j.state == JoinState::Reaching
                && code.names(device)
                && !refused_by.contains(device)
            {
                tracing::info!(peer = %device, "asking a member's device for emergency access");
                j.inviter = Some(*device);
            }
        }
        let wanted = |j: &Joining| j.inviter == Some(*device) && j.state == JoinState::Reaching;
        if !self.joins.values().any(wanted) {
            return Vec::new();
        }
        let me = self.me.device();
        let card = self.me.public().card(&self.status().addresses).encode();
        self.joins
            .iter()
            .filter(|(_, j)| wanted(j))
            .map(|(id, j)| Effect::Send(*device, j.ask(id, &me, device, &card)))
            .collect()
    }

    /// Asks `relay` who answers for the short codes still looking for their inviter.
    pub(crate) fn seek_at(&self, relay: &DeviceId) -> Vec<Effect> {
        self.joins
            .values()
            .filter_map(Joining::seeking)
            .map(|code| Effect::Send(*relay, Message::InviteSeek { tag: code.tag() }))
            .collect()
    }

    /// This node's relays connected now.
    fn connected_relays(&self) -> Vec<DeviceId> {
        self.peers
            .keys()
            .filter(|d| self.is_relay(d))
            .copied()
            .collect()
    }

    /// Whether `device` is one of this node's relays (given at start or named by a circle).
    pub(crate) fn is_relay(&self, device: &DeviceId) -> bool {
        self.circles.is_relay(device)
    }

    /// Joins without an answer yet: dial the inviter again, or ask again if connected; a
    /// short code still unmatched asks the connected relays again.
    pub(crate) fn retry_joins(&mut self, now: i64) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut ask = Vec::new();
        let mut seek = false;
        for j in self.joins.values_mut() {
            if j.state != JoinState::Reaching || now - j.last_try < RETRY_EVERY {
                continue;
            }
            j.last_try = now;
            match (j.inviter, &j.from) {
                (Some(inviter), _) if self.peers.contains_key(&inviter) => ask.push(inviter),
                (_, Given::Full { addresses, .. }) => {
                    out.extend(addresses.iter().cloned().map(Effect::Dial));
                }
                // Gone or not found yet: any device the code names, connected or dialed.
                (_, Given::Emergency { code, .. }) => {
                    j.inviter = None;
                    out.extend(code.dials().into_iter().map(Effect::Dial));
                    ask.extend(self.peers.keys().copied().filter(|d| code.names(d)));
                }
                // Found once and gone: looked for again.
                (Some(_), Given::Short { .. }) => {
                    j.inviter = None;
                    seek = true;
                }
                (None, Given::Short { .. }) => seek = true,
            }
        }
        if seek {
            for relay in self.connected_relays() {
                out.extend(self.seek_at(&relay));
            }
            ask.extend(self.peers.keys().copied());
        }
        ask.sort();
        ask.dedup();
        for device in ask {
            out.extend(self.send_joins(&device));
        }
        out
    }

    /// A relay says which device announced a short code's tag: reached through that relay
    /// if it has the code's fingerprint.
    pub(crate) fn invite_at(&mut self, relay: DeviceId, tag: [u8; 16], device: DeviceId) {
        if !self.is_relay(&relay) {
            if self.refused(relay, "not_a_relay") {
                tracing::warn!(peer = %relay, "an invite's whereabouts from a peer that is not a relay");
            }
            return;
        }
        let wanted = self
            .joins
            .values()
            .filter_map(Joining::seeking)
            .any(|code| code.tag() == tag && code.names(&device));
        if !wanted || device == self.me.device() {
            tracing::debug!(peer = %relay, "an invite's whereabouts that no short code here wants");
            return;
        }
        if self.peers.contains_key(&device) {
            let joins = self.send_joins(&device);
            self.out.extend(joins);
        } else {
            tracing::info!(peer = %device, %relay, "reaching the inviter of a short code through the relay");
            self.out.push(Effect::Meet { device, via: relay });
        }
    }

    /// The tags of this node's newest open invites, for its relays; `written` is a record
    /// whose write may not be readable yet (it replaces the stored one).
    pub(crate) fn open_invites(&self, written: Option<&InviteRecord>) -> Message {
        let now = self.now.millis();
        let mut records: Vec<InviteRecord> = match self.circles.store.metas(RECORD_PREFIX) {
            Ok(records) => records
                .iter()
                .filter_map(|(_, v)| serde_json::from_slice::<InviteRecord>(v).ok())
                .filter(|r| written.is_none_or(|w| w.secret_hash != r.secret_hash))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the open invites");
                Vec::new()
            }
        };
        records.extend(written.cloned());
        let mut open: Vec<(i64, [u8; 16])> = records
            .iter()
            .filter(|r| r.used_by.is_none() && r.expires_at >= now)
            .map(|r| (r.created_at, r.tag()))
            .collect();
        open.sort_by_key(|o| std::cmp::Reverse(o.0));
        Message::InviteOpen {
            tags: open
                .into_iter()
                .take(MAX_OPEN_INVITES)
                .map(|(_, t)| t)
                .collect(),
        }
    }

    /// Tells every connected relay which invites this node answers for, `written` just
    /// recorded.
    pub(crate) fn announce_invites(&mut self, written: Option<&InviteRecord>) {
        let relays = self.connected_relays();
        if relays.is_empty() {
            return;
        }
        let message = self.open_invites(written);
        for relay in relays {
            self.out.push(Effect::Send(relay, message.clone()));
        }
    }

    /// The inviter's answer arrived. One to a short code counts only with its proof; it
    /// names the circle.
    pub(crate) fn join_answered(&mut self, from: &DeviceId, answer: Answer) {
        let me = self.me.device();
        let Some(j) = self.joins.get_mut(&answer.invite) else {
            return;
        };
        if j.inviter != Some(*from) {
            tracing::warn!(peer = %from, "a join answer from a peer that is not the inviter");
            return;
        }
        if let Given::Short { circle, .. } = &mut j.from
            && answer.refused.is_none()
        {
            let hash = blake3::hash(&j.secret);
            let expected = blake3::Hash::from_bytes(answer_proof(hash.as_bytes(), &me, from));
            let proven = answer
                .proof
                .is_some_and(|p| blake3::Hash::from_bytes(p) == expected);
            match (proven, answer.circle) {
                (true, Some(c)) => *circle = Some(c),
                _ => {
                    tracing::warn!(peer = %from, "a join answer without the proof of the invite");
                    j.inviter = None;
                    return;
                }
            }
        }
        // An emergency access refused by one device: another the code names, connected
        // and not asked yet, is asked (at most the code's devices, each once).
        let mut next = None;
        if let Given::Emergency {
            code, refused_by, ..
        } = &mut j.from
            && answer.refused.is_some()
        {
            refused_by.insert(*from);
            next = self
                .peers
                .keys()
                .find(|d| code.names(d) && !refused_by.contains(d))
                .copied();
        }
        if let Some(next) = next {
            tracing::info!(peer = %from, next = %next, "an emergency access refused by one member's device; asking another");
            j.inviter = None;
            let asks = self.send_joins(&next);
            self.out.extend(asks);
            return;
        }
        let named = match &j.from {
            Given::Short { circle, .. } => *circle,
            Given::Emergency { code, .. } => Some(code.circle),
            Given::Full { .. } => None,
        };
        j.state = match answer.refused {
            None => JoinState::Accepted,
            Some(reason) => {
                let reason: String = reason.chars().take(300).collect();
                tracing::info!(invite = answer.invite, %reason, "the inviter refused the join");
                // Only a name this version knows is kept (it is worded by the page).
                let code = answer
                    .code
                    .filter(|c| crate::invite::KNOWN_CODES.contains(&c.as_str()));
                JoinState::Refused(reason, code)
            }
        };
        // The inviter's offer of the circle may have come before its answer named it: kept
        // as an invitation then, it is what this user followed.
        if let Some(circle) = named
            && j.state == JoinState::Accepted
            && self.circles.invited.contains_key(&circle)
            && let Err(e) = self.accept_invitation(circle)
        {
            tracing::warn!(%circle, error = %e, "cannot join the circle a short code named");
        }
    }

    /// A peer asks to join with an invite this node made: admit it or say why not.
    pub(crate) fn join_asked(&mut self, from: DeviceId, invite: String, secret: &[u8], card: &str) {
        match self.admit(from, &invite, secret, card) {
            Ok(record) => {
                let circle = record.circle;
                tracing::info!(%circle, peer = %from, "a member joined with an invite");
                let proof = answer_proof(&record.secret_hash, &from, &self.me.device());
                // Answered once the member's addition is durable here.
                let answer = Message::JoinAnswer {
                    invite,
                    refused: None,
                    circle: Some(circle),
                    proof: Some(proof),
                    code: None,
                };
                self.after_writes(vec![Effect::Send(from, answer)]);
                // The invite is spent: the relays stop pointing to it.
                self.announce_invites(Some(&record));
            }
            Err(e) => {
                tracing::warn!(peer = %from, reason = %e, "refused a join");
                let answer = Message::JoinAnswer {
                    invite,
                    refused: Some(e.to_string()),
                    circle: None,
                    proof: None,
                    code: e.invite.clone(),
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
    ) -> Result<InviteRecord, NodeError> {
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
        record.admit(secret, &card.member, (&from, &self.me.device()), now)?;
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
        Ok(record)
    }
}

/// A `JoinAnswer`'s fields.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) invite: String,
    pub(crate) refused: Option<String>,
    pub(crate) circle: Option<CircleId>,
    pub(crate) proof: Option<[u8; 32]>,
    pub(crate) code: Option<String>,
}

/// The batch that records an invite (the inviter's side).
pub(crate) fn record_batch(id: &str, record: &InviteRecord) -> Result<Batch, NodeError> {
    let bytes = serde_json::to_vec(record)
        .map_err(|e| NodeError::internal(format!("cannot record the invite: {e}")))?;
    let mut batch = Batch::new();
    batch.meta(&InviteRecord::key(id), &bytes);
    Ok(batch)
}
