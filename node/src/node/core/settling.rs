//! Circles settling: envelopes a circle took in at rest, with the checks that need no key,
//! are opened, checked against the documents' rules and applied here, a bounded slice at
//! a time, whenever the node has nothing else to do ([`Input::Idle`](super::Input::Idle));
//! a circle just joined publishes its member's profile once it has settled.
//!
//! This is what lets a member joined to a thousand circles hold them all at once: each
//! arriving envelope is authenticated and stored (a relay's work), and the heavier work
//! (decryption, the schema and role checks, Automerge) follows here, while the node
//! stays responsive. An alert in such an envelope is told of when it is applied.

use super::NodeCore;
use crate::circle::CHECK_AT_ONCE;
use crate::circle::membership::CircleId;

/// Envelopes taken in unchecked within [`POURING_MS`] past which they count as pouring in.
pub(crate) const POURING: usize = 256;
/// How long after envelopes last poured in the node waits to check them (but for one
/// slice a tick).
pub(crate) const POURING_MS: i64 = 100;

/// How fast envelopes are being taken in unchecked.
#[derive(Debug, Default)]
pub(crate) struct Intake {
    /// The window being counted: its start and the envelopes in it.
    since: i64,
    count: usize,
    /// Until when envelopes count as pouring in.
    busy_until: i64,
}

impl Intake {
    fn took(&mut self, now: i64, count: usize) {
        if now - self.since >= POURING_MS {
            (self.since, self.count) = (now, 0);
        }
        self.count += count;
        if self.count >= POURING {
            self.busy_until = now + POURING_MS;
        }
    }
}

impl NodeCore {
    /// Whether a circle can settle now: one with envelopes to check (or a profile to
    /// publish), none of whose writes is on its way to the disk (the store holds what it
    /// took in). While envelopes pour in (a catch-up), taking them in comes first, with
    /// one slice of this work a tick so that an alert among them is not held back long.
    pub fn has_work(&self) -> bool {
        let pouring = self.now.millis() < self.intake.busy_until;
        (!pouring || self.slice_owed) && self.next_to_settle().is_some()
    }

    /// The first circle that can settle now: none of its writes on the way to the disk.
    fn next_to_settle(&self) -> Option<CircleId> {
        self.settling
            .iter()
            .find(|id| !self.writes.touches(id))
            .copied()
    }

    /// `count` envelopes were just taken in unchecked into circle `id`.
    pub(crate) fn took_unchecked(&mut self, id: CircleId, count: usize) {
        self.settling.insert(id);
        self.intake.took(self.now.millis(), count);
    }

    /// Circle `id` took envelopes in unchecked, or was just joined: it settles when the
    /// node is idle.
    pub(crate) fn settle_later(&mut self, id: CircleId) {
        self.settling.insert(id);
    }

    /// Makes circle `id` ready to take envelopes: its receive checks continue each
    /// device's log (an awake circle's are). A circle that cannot be read is set aside as
    /// damaged.
    pub(crate) fn ready_to_take(&mut self, id: CircleId) -> bool {
        let Some(c) = self.circles.open.get_mut(&id) else {
            return false;
        };
        match c.ready_log(self.circles.store.as_ref()) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(circle = %id, error = %e, "a circle's logs could not be read; it is set aside as damaged");
                self.circles.take_open(&id);
                self.circles.used.remove(&id);
                self.settling.remove(&id);
                self.circles.damaged.insert(id, e.to_string());
                false
            }
        }
    }

    /// One slice of the work: the first circle that can settle checks and applies up to
    /// [`CHECK_AT_ONCE`] envelopes (it stays awake until it has settled).
    pub(super) fn settle(&mut self) {
        self.slice_owed = false;
        let Some(id) = self.next_to_settle() else {
            return;
        };
        if !self.circles.open.contains_key(&id) {
            self.settling.remove(&id);
            return;
        }
        // Used now: a circle receiving stays awake (the least recently used beyond the
        // bound rest after each slice).
        if self.wake(id).is_err() {
            self.settling.remove(&id);
            return;
        }
        let Some(c) = self.circles.open.get_mut(&id) else {
            return;
        };
        let receipt = match c.check_unchecked(self.circles.store.as_ref(), &self.me, CHECK_AT_ONCE)
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(circle = %id, error = %e, "the envelopes held to check could not be read");
                self.settling.remove(&id);
                return;
            }
        };
        let progress = !receipt.applied.is_empty() || !receipt.rejected.is_empty();
        let left = receipt.unchecked;
        tracing::debug!(circle = %id, applied = receipt.applied.values().sum::<usize>(), refused = receipt.rejected.len(), logs_left = left, "checked envelopes held");
        self.took(id, None, receipt);
        if left == 0 {
            self.settling.remove(&id);
            self.publish_profile(id);
        } else if !progress {
            // What is left waits for other devices' changes: it is tried again when more
            // comes for this circle.
            tracing::debug!(circle = %id, logs = left, "envelopes held wait for others");
            self.settling.remove(&id);
        }
        self.rest_idle();
    }

    /// Circles still to settle: envelopes held but not checked yet, or just joined.
    pub fn settling(&self) -> usize {
        self.settling.len()
    }
}
