//! What each peer device may still make this program do: a token bucket per device of
//! `burst` tokens, refilled by one every `every_us`. The relay's mailbox counts the new
//! circles a device brings with it ([`MailboxLimits`](crate::mailbox::MailboxLimits)); a
//! node counts the refusals it records of a device (`refusals`). Time comes in
//! (microseconds); nothing here reads a clock. The buckets themselves are bounded: at most
//! [`MAX_TRACKED`] devices, and a full bucket is forgotten when room is needed, as it
//! holds nothing a fresh one would not.

use std::collections::HashMap;

use crate::identity::DeviceId;

/// Devices whose bucket is remembered, at most.
pub(crate) const MAX_TRACKED: usize = 65_536;

/// Each device's bucket.
#[derive(Debug, Default)]
pub(crate) struct DeviceBuckets {
    /// Device → (circles it may still bring, when that was counted, in µs).
    buckets: HashMap<DeviceId, (u32, i64)>,
}

impl DeviceBuckets {
    /// Whether `device` has a token left at `now` (without taking it).
    pub(crate) fn allows(&self, device: &DeviceId, now: i64, burst: u32, every_us: i64) -> bool {
        match self.buckets.get(device) {
            Some(bucket) => refill(*bucket, now, burst, every_us).0 > 0,
            None => burst > 0,
        }
    }

    /// Takes one token from `device`'s bucket at `now`; false if it is empty (or if no
    /// bucket can be kept for it).
    pub(crate) fn take(&mut self, device: &DeviceId, now: i64, burst: u32, every_us: i64) -> bool {
        if burst == 0 {
            return false;
        }
        if !self.buckets.contains_key(device) && self.buckets.len() >= MAX_TRACKED {
            self.buckets
                .retain(|_, bucket| refill(*bucket, now, burst, every_us).0 < burst);
            if self.buckets.len() >= MAX_TRACKED {
                return false;
            }
        }
        let bucket = self.buckets.entry(*device).or_insert((burst, now));
        *bucket = refill(*bucket, now, burst, every_us);
        if bucket.0 == 0 {
            return false;
        }
        bucket.0 -= 1;
        true
    }

    /// Devices with a bucket kept.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// The bucket `(tokens, at)` as it stands at `now`.
fn refill((tokens, at): (u32, i64), now: i64, burst: u32, every_us: i64) -> (u32, i64) {
    // No period: the bucket is always full.
    if tokens >= burst || every_us <= 0 {
        return (burst, now);
    }
    let gained = now.saturating_sub(at).max(0) / every_us;
    let gained = u32::try_from(gained).unwrap_or(u32::MAX);
    let tokens = tokens.saturating_add(gained).min(burst);
    if tokens == burst {
        (tokens, now)
    } else {
        (tokens, at + i64::from(gained) * every_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn device(n: u8) -> DeviceId {
        DeviceId([n; 32])
    }

    #[test]
    fn a_device_brings_its_burst_then_one_per_period() {
        let mut rate = DeviceBuckets::default();
        let d = device(1);
        for _ in 0..5 {
            assert!(rate.take(&d, 0, 5, MINUTE));
        }
        assert!(!rate.allows(&d, 0, 5, MINUTE));
        assert!(!rate.take(&d, 0, 5, MINUTE), "the burst is spent");
        assert!(!rate.take(&d, MINUTE - 1, 5, MINUTE));
        assert!(rate.take(&d, MINUTE, 5, MINUTE), "one more after a period");
        assert!(!rate.take(&d, MINUTE + 1, 5, MINUTE));
        // Another device has its own bucket.
        assert!(rate.take(&device(2), 0, 5, MINUTE));
        // A long pause refills up to the burst, never more.
        let later = 100 * MINUTE;
        for _ in 0..5 {
            assert!(rate.take(&d, later, 5, MINUTE));
        }
        assert!(!rate.take(&d, later, 5, MINUTE));
    }

    #[test]
    fn the_buckets_kept_are_bounded_and_full_ones_make_room() {
        let mut rate = DeviceBuckets::default();
        for i in 0..MAX_TRACKED {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            assert!(rate.take(&DeviceId(id), 0, 2, MINUTE));
        }
        assert_eq!(rate.tracked(), MAX_TRACKED);
        // Every bucket is still short of its burst: a newcomer waits.
        assert!(!rate.take(&device(0xFF), 0, 2, MINUTE));
        // Once they refilled, they are forgotten and the newcomer is counted.
        assert!(rate.take(&device(0xFF), MINUTE, 2, MINUTE));
        assert_eq!(rate.tracked(), 1);
    }
}
