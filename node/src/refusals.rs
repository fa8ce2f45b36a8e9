//! What this node (or relay) refused from its peers, and how much of it is written down.
//!
//! Every refusal (a sync message, a frame, a membership operation, an envelope) is counted
//! by reason; the counts are in the node's status (a relay's metrics) for the operator and
//! the tests. Each
//! refused envelope or operation is also *recorded* (a rejection record in the store, a
//! `WARN` line in the log) as evidence, but a member can send a refusal for every byte: so
//! each peer device has a budget of [`RECORD_BURST`] records, refilled by one every
//! [`RECORD_EVERY`]. Past it, refusals are still counted, never applied, and not written:
//! one line says the peer went over its budget. With the store's own cap of records per
//! circle (`store::MAX_REJECTIONS_PER_CIRCLE`), what a hostile member can make a node
//! write is bounded in rate and in total.
//!
//! A device over its budget is also **set aside** for [`SET_ASIDE_FOR`]: disconnected, and
//! whatever it sends meanwhile is dropped unread, so that a peer sending refused data
//! without pause does not hold up everyone else's messages behind its own (the node's
//! inbound queue is shared). An honest peer refused that often sends nothing usable anyway.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::bucket::DeviceBuckets;
use crate::identity::DeviceId;

/// Refusals a device may have recorded at once.
pub(crate) const RECORD_BURST: u32 = 32;
/// One more recorded refusal per device, every...
pub(crate) const RECORD_EVERY: Duration = Duration::from_secs(30);

/// How long a device over its budget is set aside.
pub const SET_ASIDE_FOR: Duration = Duration::from_secs(60);

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// Record it (and log it).
    Record,
    /// Counted only: the device is over its budget and already set aside.
    Quiet,
    /// Counted only, and the device is set aside from now on: disconnect it.
    SetAside,
}

/// The counts and each device's budget of records.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// Refusals by reason, since the node started. Reasons are this program's own codes,
    /// so the map stays small whatever peers send.
    counts: BTreeMap<&'static str, u64>,
    /// Refusals counted but not recorded (the device was over its budget).
    unrecorded: u64,
    budget: DeviceBuckets,
    /// Devices set aside, until when (µs).
    aside: BTreeMap<DeviceId, i64>,
    /// Messages dropped unread from devices set aside.
    ignored: u64,
}

impl Refusals {
    /// Counts one refusal of `reason` from `device` at `now_us`, and says whether to record
    /// it or to set the device aside.
    pub(crate) fn count(&mut self, device: DeviceId, reason: &'static str, now_us: i64) -> Counted {
        *self.counts.entry(reason).or_default() += 1;
        let every = i64::try_from(RECORD_EVERY.as_micros()).unwrap_or(i64::MAX);
        if self.budget.take(&device, now_us, RECORD_BURST, every) {
            return Counted::Record;
        }
        self.unrecorded += 1;
        if self.is_aside(&device, now_us) {
            return Counted::Quiet;
        }
        self.aside.retain(|_, until| *until > now_us);
        if self.aside.len() >= crate::bucket::MAX_TRACKED {
            return Counted::Quiet;
        }
        let span = i64::try_from(SET_ASIDE_FOR.as_micros()).unwrap_or(i64::MAX);
        self.aside.insert(device, now_us.saturating_add(span));
        tracing::warn!(
            peer = %device,
            "a peer sends more refused data than is recorded; it is disconnected and ignored for {SET_ASIDE_FOR:?}"
        );
        Counted::SetAside
    }

    /// Whether `device` is set aside at `now_us`.
    pub(crate) fn is_aside(&self, device: &DeviceId, now_us: i64) -> bool {
        self.aside.get(device).is_some_and(|until| *until > now_us)
    }

    /// Whether a message from `device` is to be dropped unread (it is set aside); counts it.
    pub(crate) fn ignores(&mut self, device: &DeviceId, now_us: i64) -> bool {
        let aside = self.is_aside(device, now_us);
        self.ignored += u64::from(aside);
        aside
    }

    /// Messages dropped unread from devices set aside.
    pub(crate) fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Refusals by reason.
    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect()
    }

    /// Refusals counted but not recorded.
    pub(crate) fn unrecorded(&self) -> u64 {
        self.unrecorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_device_is_counted_but_recorded_only_within_its_budget_then_set_aside() {
        let mut r = Refusals::default();
        let mallory = DeviceId([7; 32]);
        let honest = DeviceId([8; 32]);
        let verdicts: Vec<Counted> = (0..10_000)
            .map(|_| r.count(mallory, "malformed", 0))
            .collect();
        let recorded = verdicts.iter().filter(|v| **v == Counted::Record).count();
        assert_eq!(recorded, RECORD_BURST as usize);
        assert_eq!(
            verdicts.iter().filter(|v| **v == Counted::SetAside).count(),
            1
        );
        assert_eq!(r.counts()["malformed"], 10_000);
        assert_eq!(r.unrecorded(), 10_000 - u64::from(RECORD_BURST));
        assert!(r.is_aside(&mallory, 0));
        // Another device keeps its own budget and is not set aside.
        assert_eq!(r.count(honest, "replay", 0), Counted::Record);
        assert!(!r.is_aside(&honest, 0));
        // Once the time is over and the budget refilled, the device is heard again.
        let later = i64::try_from(SET_ASIDE_FOR.as_micros()).unwrap_or(i64::MAX);
        assert!(!r.is_aside(&mallory, later));
        assert_eq!(r.count(mallory, "malformed", later), Counted::Record);
    }
}
