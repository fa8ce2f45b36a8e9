//! What this node refused from its peers, and how much of it is written down.
//!
//! Every refusal (a sync message, a frame, a membership operation, an envelope) is counted
//! by reason; the counts are in the node's status for the operator and the tests. Each
//! refused envelope or operation is also *recorded* (a rejection record in the store, a
//! `WARN` line in the log) as evidence, but a member can send a refusal for every byte: so
//! each peer device has a budget of [`RECORD_BURST`] records, refilled by one every
//! [`RECORD_EVERY`]. Past it, refusals are still counted, never applied, and not written:
//! one line says the peer went over its budget. With the store's own cap of records per
//! circle (`store::MAX_REJECTIONS_PER_CIRCLE`), what a hostile member can make a node
//! write is bounded in rate and in total.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::bucket::DeviceBuckets;
use crate::identity::DeviceId;

/// Refusals a device may have recorded at once.
pub(crate) const RECORD_BURST: u32 = 32;
/// One more recorded refusal per device, every...
pub(crate) const RECORD_EVERY: Duration = Duration::from_secs(30);

/// The counts and each device's budget of records.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// Refusals by reason, since the node started. Reasons are this program's own codes,
    /// so the map stays small whatever peers send.
    counts: BTreeMap<&'static str, u64>,
    /// Refusals counted but not recorded (the device was over its budget).
    unrecorded: u64,
    budget: DeviceBuckets,
    /// Devices already told in the log to be over their budget, until it refills.
    silenced: BTreeMap<DeviceId, ()>,
}

impl Refusals {
    /// Counts one refusal of `reason` from `device` at `now_us`; true if it is to be
    /// recorded (and logged) too.
    pub(crate) fn count(&mut self, device: DeviceId, reason: &'static str, now_us: i64) -> bool {
        *self.counts.entry(reason).or_default() += 1;
        let every = i64::try_from(RECORD_EVERY.as_micros()).unwrap_or(i64::MAX);
        if self.budget.take(&device, now_us, RECORD_BURST, every) {
            self.silenced.remove(&device);
            return true;
        }
        self.unrecorded += 1;
        if self.silenced.len() < crate::bucket::MAX_TRACKED
            && self.silenced.insert(device, ()).is_none()
        {
            tracing::warn!(
                peer = %device,
                "a peer sends more refused data than is recorded; further refusals are counted only"
            );
        }
        false
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
    fn a_flooding_device_is_counted_but_recorded_only_within_its_budget() {
        let mut r = Refusals::default();
        let mallory = DeviceId([7; 32]);
        let honest = DeviceId([8; 32]);
        let recorded = (0..10_000)
            .filter(|_| r.count(mallory, "malformed", 0))
            .count();
        assert_eq!(recorded, RECORD_BURST as usize);
        assert_eq!(r.counts()["malformed"], 10_000);
        assert_eq!(r.unrecorded(), 10_000 - u64::from(RECORD_BURST));
        // Another device keeps its own budget.
        assert!(r.count(honest, "replay", 0));
        // One more record per period.
        let period = i64::try_from(RECORD_EVERY.as_micros()).unwrap_or(i64::MAX);
        assert!(r.count(mallory, "malformed", period));
        assert!(!r.count(mallory, "malformed", period));
    }
}
