//! The core's side of durability: each write it asks the shell for has an id and what to do
//! once it is durable (push its envelopes, say `Hello` again, answer a request). The store
//! makes writes durable in the order asked, so a request that wrote several times is
//! answered after its last write.

use std::collections::BTreeMap;

use super::{Effect, RequestId, WriteId};
use crate::circle::membership::CircleId;
use crate::envelope::EnvelopeRef;
use crate::identity::DeviceId;
use crate::ops::{Answer, NodeError};

/// Writes waiting for their outcome past which a warning is logged: the shell's bounded
/// queues hold the core back before this many, unless the disk stalled.
pub(crate) const WARN_PENDING_WRITES: usize = 4096;

/// What to do once a write is durable.
#[derive(Debug, Default)]
pub(crate) struct After {
    /// The circle whose envelopes the write holds.
    pub(crate) circle: Option<CircleId>,
    /// Envelopes to push to peers sharing the circle.
    pub(crate) envelopes: Vec<EnvelopeRef>,
    /// The peer they came from, which needs them not.
    pub(crate) except: Option<DeviceId>,
    /// The membership changed: relays and a `Hello` to every peer.
    pub(crate) membership_changed: bool,
    /// More effects (dials to a new member's addresses).
    pub(crate) effects: Vec<Effect>,
    /// The request to answer.
    pub(crate) answer: Option<(RequestId, Result<Answer, NodeError>)>,
}

/// The writes asked for and not yet reported.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    next: u64,
    pending: BTreeMap<WriteId, After>,
}

impl Writes {
    /// The id the next write will get.
    pub(crate) fn next_id(&self) -> WriteId {
        WriteId(self.next)
    }

    /// Registers a write.
    pub(crate) fn add(&mut self, after: After) -> WriteId {
        let id = WriteId(self.next);
        self.next += 1;
        if self.pending.len() == WARN_PENDING_WRITES {
            tracing::warn!(
                pending = WARN_PENDING_WRITES,
                "many writes wait for the disk"
            );
        }
        self.pending.insert(id, after);
        id
    }

    /// Whether a write still pending holds envelopes of `circle`.
    pub(crate) fn touches(&self, circle: &CircleId) -> bool {
        self.pending
            .values()
            .any(|a| a.circle.as_ref() == Some(circle))
    }

    /// The last write asked for since `first` and still pending.
    pub(crate) fn last_since(&self, first: WriteId) -> Option<WriteId> {
        self.pending.range(first..).next_back().map(|(id, _)| *id)
    }

    /// Answers `request` once `write` is durable.
    pub(crate) fn answer_after(
        &mut self,
        write: WriteId,
        request: RequestId,
        answer: Result<Answer, NodeError>,
    ) {
        if let Some(after) = self.pending.get_mut(&write) {
            after.answer = Some((request, answer));
        }
    }

    /// Carries out `effects` once `write` is durable.
    pub(crate) fn effects_after(&mut self, write: WriteId, effects: Vec<Effect>) {
        if let Some(after) = self.pending.get_mut(&write) {
            after.effects.extend(effects);
        }
    }

    /// A write's outcome came: what was to follow it.
    pub(crate) fn done(&mut self, id: WriteId) -> Option<After> {
        self.pending.remove(&id)
    }

    /// Writes waiting for their outcome.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}
