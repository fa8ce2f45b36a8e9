//! The node core's side of break-glass on a member's node: an on-call professional's
//! request checked against the circle's on-call list and granted (an observer until the
//! access expires, the circle's epoch keys sealed to their devices), and, once it expires,
//! their removal, which starts an epoch without them. What the on-call professional reads
//! is told to the team's connected devices (`Message::Consulted`, once a minute per kind of
//! read) and kept in the circle's audit trail there and on the reader's node. The code and the request's checks
//! are in [`crate::emergency`]; the on-call node follows its request as a join
//! (`invites.rs`).

use std::collections::BTreeMap;

use cercle_crdt::{MemberId, Role};
use serde::{Deserialize, Serialize};

use super::NodeCore;
use crate::circle::membership::CircleId;
use crate::emergency::check_request;
use crate::identity::{ContactCard, DeviceId};
use crate::ops::NodeError;
use crate::sync::Message;

/// One kind of read of one circle is told to the team at most this often (milliseconds).
const READ_EVERY: i64 = 60_000;
/// Reads kept per circle, at most (beyond, they are counted in the log only).
pub(crate) const MAX_READS: usize = 2_000;
/// Where reads are kept in the store's meta tree: this, the circle's hex, `:`, the time.
pub(crate) const READ_PREFIX: &str = "emergency-read:";
/// What may be read: the three documents, a document's contents, an export.
const READ_KINDS: [&str; 5] = [
    "patient_file",
    "liaison_notebook",
    "thread",
    "document",
    "export",
];

/// A read under an emergency access, as kept in the audit trail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReadRow {
    pub(crate) member: MemberId,
    pub(crate) device: DeviceId,
    pub(crate) what: String,
    /// The reader's time, and when this node learnt of it (milliseconds).
    pub(crate) at: i64,
    pub(crate) received: i64,
}

/// Reads told and kept, per circle (bounded by the circles held times the kinds).
#[derive(Debug, Default)]
pub(crate) struct Reads {
    told: BTreeMap<(CircleId, &'static str), i64>,
    kept: BTreeMap<CircleId, usize>,
}

/// How long after an access expired a member other than the one who granted it ends it
/// (milliseconds): the granting node does at once, if it runs.
pub(crate) const END_GRACE: i64 = 10 * 60_000;

impl NodeCore {
    /// An on-call professional asks for read access to `circle`: granted if the circle's
    /// on-call list names them, answered once the grant is durable; refused with the reason
    /// otherwise (and counted against the peer: a stranger cannot make this node check
    /// cards without end).
    pub(crate) fn break_glass_asked(
        &mut self,
        from: DeviceId,
        request: String,
        circle: CircleId,
        reason: &str,
        minutes: u32,
        card: &str,
    ) {
        let answer = |refused: Option<String>| Message::JoinAnswer {
            invite: request.clone(),
            refused,
            circle: Some(circle),
            proof: None,
            code: None,
        };
        match self.grant_emergency(from, circle, reason, minutes, card) {
            Ok(()) => self.after_writes(vec![super::Effect::Send(from, answer(None))]),
            Err(e) => {
                if self.refused(from, "break_glass_refused") {
                    tracing::warn!(peer = %from, %circle, reason = %e, "refused an emergency access");
                }
                self.out
                    .push(super::Effect::Send(from, answer(Some(e.to_string()))));
            }
        }
    }

    fn grant_emergency(
        &mut self,
        from: DeviceId,
        circle: CircleId,
        reason: &str,
        minutes: u32,
        card: &str,
    ) -> Result<(), NodeError> {
        if reason_malformed(reason) {
            return Err(NodeError::bad_input("the reason is not valid text"));
        }
        check_request(reason, minutes).map_err(|e| NodeError::bad_input(e.to_string()))?;
        if !self.circles.open.contains_key(&circle) {
            return Err(NodeError::not_found("this device holds no such circle"));
        }
        let card = ContactCard::decode(card)?;
        if !card.devices.iter().any(|d| d.device == from) {
            return Err(NodeError::not_allowed(
                "the card given is not the asking device's",
            ));
        }
        let until = self.now.millis() + i64::from(minutes) * 60_000;
        let (c, a) = self.circle_mut(&circle.to_string())?;
        // Granted before and the answer lost: answered again.
        if c.resolution()
            .emergency
            .get(&card.member)
            .is_some_and(|e| e.until > a.now.millis())
        {
            return Ok(());
        }
        let staged = c.break_glass(a.me, &card, reason, until, a.now, a.rng)?;
        tracing::info!(%circle, peer = %from, "granted an emergency access");
        self.stage(circle, staged);
        Ok(())
    }

    /// Emergency accesses that expired are ended by a member who writes: the one who
    /// granted it at once, any other after [`END_GRACE`] (should the granting node be off).
    pub(crate) fn end_emergencies(&mut self) {
        let now = self.now.millis();
        let me = self.me.member();
        let device = self.me.device();
        let due: Vec<(CircleId, MemberId)> = self
            .circles
            .open
            .iter()
            .filter(|(_, c)| !c.resolution().emergency.is_empty())
            .flat_map(|(id, c)| {
                let r = c.resolution();
                let mine = r.role(&me).is_some_and(Role::writes_anything)
                    && !r.emergency.contains_key(&me)
                    && !r.closed
                    && r.suspended.is_none();
                r.emergency
                    .iter()
                    .filter(move |(_, e)| {
                        let grace = if e.by == device { 0 } else { END_GRACE };
                        mine && now >= e.until.saturating_add(grace)
                    })
                    .map(|(m, _)| (*id, *m))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (circle, member) in due {
            let ended = self
                .circle_mut(&circle.to_string())
                .and_then(|(c, a)| Ok(c.remove_member(a.me, &member, a.now, a.rng)?));
            match ended {
                Ok(staged) => {
                    tracing::info!(%circle, "an emergency access expired: ended, new key epoch");
                    self.stage(circle, staged);
                }
                Err(e) => {
                    tracing::warn!(%circle, error = %e, "an expired emergency access could not be ended")
                }
            }
        }
    }
}

impl NodeCore {
    /// This node's member read `what` of `circle` (a document kind's name, `document` or
    /// `export`): under an emergency access, it is kept here and told to the connected
    /// devices of the team, once a minute per kind.
    pub(crate) fn consulted(&mut self, id: CircleId, what: &'static str) {
        let now = self.now.millis();
        let me = self.me.member();
        let Some(c) = self.circles.open.get(&id) else {
            return;
        };
        let r = c.resolution();
        let Some(access) = r.emergency.get(&me) else {
            return;
        };
        // Once it ended, the team takes no more reads from her devices: kept here only.
        let ended = access.until <= now;
        if self
            .reads
            .told
            .get(&(id, what))
            .is_some_and(|t| now - t < READ_EVERY)
        {
            return;
        }
        self.reads.told.insert((id, what), now);
        let team: Vec<DeviceId> = if ended {
            Vec::new()
        } else {
            self.peers
                .keys()
                .filter(|d| {
                    r.reader_at(d, now)
                        .is_some_and(|m| !r.emergency.contains_key(m))
                })
                .copied()
                .collect()
        };
        let message = Message::Consulted {
            circle: id,
            what: what.to_string(),
            at: now,
        };
        for device in team {
            self.out.push(super::Effect::Send(device, message.clone()));
        }
        let row = ReadRow {
            member: me,
            device: self.me.device(),
            what: what.to_string(),
            at: now,
            received: now,
        };
        self.keep_read(id, &row);
    }

    /// A device tells what its member read under an emergency access: kept if that member
    /// holds one in the circle now.
    pub(crate) fn consulted_by(&mut self, from: DeviceId, circle: CircleId, what: &str, at: i64) {
        let now = self.now.millis();
        let reader = self.circles.open.get(&circle).and_then(|c| {
            let r = c.resolution();
            r.reader_at(&from, now)
                .filter(|m| r.emergency.contains_key(*m))
                .copied()
        });
        let kind = READ_KINDS.iter().find(|k| **k == what);
        let (Some(member), Some(kind)) = (reader, kind) else {
            if self.refused(from, "not_an_emergency_read") {
                tracing::warn!(peer = %from, %circle, "a read told by a device without an emergency access, or of an unknown kind");
            }
            return;
        };
        let row = ReadRow {
            member,
            device: from,
            what: (*kind).to_string(),
            at,
            received: now,
        };
        self.keep_read(circle, &row);
    }

    fn keep_read(&mut self, circle: CircleId, row: &ReadRow) {
        let prefix = format!("{READ_PREFIX}{circle}:");
        let store = self.circles.store.clone();
        let kept = *self
            .reads
            .kept
            .entry(circle)
            .or_insert_with(|| store.metas(&prefix).map_or(0, |rows| rows.len()));
        if kept >= MAX_READS {
            tracing::warn!(%circle, "the emergency reads kept for this circle are at their bound; this one is not kept");
            return;
        }
        let Ok(bytes) = serde_json::to_vec(row) else {
            return;
        };
        let mut batch = crate::store::Batch::new();
        batch.meta(
            &format!("{prefix}{:016x}:{}", row.received, row.device.short()),
            &bytes,
        );
        self.reads.kept.insert(circle, kept + 1);
        self.write_batch(batch, super::writes::After::default());
    }
}

/// The reads kept for `circle`, oldest first.
pub(crate) fn reads(store: &dyn crate::store::Store, circle: &CircleId) -> Vec<ReadRow> {
    store
        .metas(&format!("{READ_PREFIX}{circle}:"))
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice(v).ok())
        .collect()
}

/// A reason with control characters other than line breaks is refused.
fn reason_malformed(reason: &str) -> bool {
    reason
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
}
