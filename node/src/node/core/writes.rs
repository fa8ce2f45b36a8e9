//! The core's side of durability: each write it asks the shell for has an id and what to do
//! once it is durable (push its envelopes, say `Hello` again, answer a request). The store
//! makes writes durable in the order asked, so a request that wrote several times is
//! answered after its last write. The envelopes of a small write are kept in memory once
//! durable ([`Fresh`]), so pushing them does not read them back from the store.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::{Effect, RequestId, WriteId};
use crate::circle::membership::CircleId;
use crate::envelope::EnvelopeRef;
use crate::envelope::LogId;
use crate::identity::DeviceId;
use crate::ops::{Answer, NodeError};
use crate::store::{Batch, Tree, Write, keys, run};

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
    /// The write's envelopes by store key, if small enough to keep ([`Fresh::staged`]).
    pub(crate) fresh: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Envelope bytes a write may carry to [`Fresh`], at most.
pub(crate) const FRESH_PER_WRITE: usize = 64 * 1024;
/// Durable envelopes kept in memory, at most (the oldest go first)...
pub(crate) const FRESH_MAX: usize = 256;
/// ... and their bytes, at most.
pub(crate) const FRESH_BYTES: usize = 4 * 1024 * 1024;

/// The envelopes made durable most recently, by store key: a push reads them here instead
/// of from the store, which then need not hold them yet (it holds them once the journal
/// does; its database follows). Only durable envelopes enter: nothing here is sent before
/// the disk holds it.
#[derive(Debug, Default)]
pub(crate) struct Fresh {
    order: VecDeque<Vec<u8>>,
    envelopes: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

impl Fresh {
    /// The envelopes of `batch` by store key, if they are few enough to keep; nothing
    /// otherwise (they are read from the store then).
    pub(crate) fn staged(batch: &Batch) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut size = 0;
        for w in &batch.writes {
            if let Write::Put {
                tree: Tree::Envelopes,
                key,
                value,
            } = w
            {
                size += value.len();
                if size > FRESH_PER_WRITE {
                    return Vec::new();
                }
                // A run's envelopes, each under its own key.
                let (Some((log, first)), Ok(held)) =
                    (keys::split_envelope(key), run::envelopes(value))
                else {
                    continue;
                };
                for (seq, envelope) in (first..).zip(held) {
                    out.push((keys::envelope(&log, seq), envelope.to_vec()));
                }
            }
        }
        out
    }

    /// Keeps the envelopes of a write that is now durable.
    pub(crate) fn durable(&mut self, envelopes: Vec<(Vec<u8>, Vec<u8>)>) {
        for (key, value) in envelopes {
            self.bytes += value.len();
            if let Some(old) = self.envelopes.insert(key.clone(), value) {
                self.bytes -= old.len();
            } else {
                self.order.push_back(key);
            }
        }
        while self.order.len() > FRESH_MAX || self.bytes > FRESH_BYTES {
            let Some(key) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.envelopes.remove(&key) {
                self.bytes -= old.len();
            }
        }
    }

    /// Envelopes `from..from + count` of `log`, if every one of them is here.
    pub(crate) fn range(&self, log: &LogId, from: u64, count: usize) -> Option<Vec<Vec<u8>>> {
        if count == 0 {
            return None;
        }
        (from..from.saturating_add(count as u64))
            .map(|seq| self.envelopes.get(&keys::envelope(log, seq)).cloned())
            .collect()
    }
}

/// The writes asked for and not yet reported.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    next: u64,
    pending: BTreeMap<WriteId, After>,
    /// Pending writes per circle whose envelopes they hold.
    circles: HashMap<CircleId, usize>,
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
        if let Some(circle) = after.circle {
            *self.circles.entry(circle).or_default() += 1;
        }
        self.pending.insert(id, after);
        id
    }

    /// Whether a write still pending holds envelopes of `circle`.
    pub(crate) fn touches(&self, circle: &CircleId) -> bool {
        self.circles.contains_key(circle)
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
        let after = self.pending.remove(&id)?;
        if let Some(circle) = &after.circle
            && let Some(count) = self.circles.get_mut(circle)
        {
            *count -= 1;
            if *count == 0 {
                self.circles.remove(circle);
            }
        }
        Some(after)
    }

    /// Writes waiting for their outcome.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cercle_crdt::DocKind;

    fn log() -> LogId {
        LogId {
            circle: CircleId([1; 32]),
            doc: DocKind::LiaisonNotebook,
            device: DeviceId([2; 32]),
        }
    }

    fn batch(seqs: std::ops::Range<u64>, size: usize) -> Batch {
        let mut b = Batch::new();
        for seq in seqs {
            b.put(
                Tree::Envelopes,
                keys::envelope(&log(), seq),
                vec![seq as u8; size],
            );
        }
        b.put(Tree::Meta, b"other".to_vec(), vec![0; 8]);
        b
    }

    #[test]
    fn durable_envelopes_are_served_whole_ranges_only() {
        let mut fresh = Fresh::default();
        let staged = Fresh::staged(&batch(1..4, 100));
        assert_eq!(staged.len(), 3, "the envelopes, not the other writes");
        assert_eq!(
            fresh.range(&log(), 1, 3),
            None,
            "nothing before it is durable"
        );
        fresh.durable(staged);
        let got = fresh.range(&log(), 1, 3).unwrap();
        assert_eq!(got, vec![vec![1; 100], vec![2; 100], vec![3; 100]]);
        assert_eq!(
            fresh.range(&log(), 2, 3),
            None,
            "seq 4 is not here: the store answers"
        );
        assert_eq!(fresh.range(&log(), 1, 0), None);
    }

    #[test]
    fn a_large_write_is_not_kept_and_the_memory_is_bounded() {
        assert!(Fresh::staged(&batch(1..3, FRESH_PER_WRITE)).is_empty());
        let mut fresh = Fresh::default();
        for seq in 1..=(FRESH_MAX as u64 + 10) {
            fresh.durable(Fresh::staged(&batch(seq..seq + 1, 1000)));
        }
        assert_eq!(fresh.envelopes.len(), FRESH_MAX);
        assert_eq!(fresh.range(&log(), 1, 1), None, "the oldest went first");
        assert!(fresh.range(&log(), FRESH_MAX as u64 + 10, 1).is_some());
        let mut fresh = Fresh::default();
        for seq in 1..=64u64 {
            fresh.durable(Fresh::staged(&batch(seq..seq + 1, 60 * 1024)));
        }
        assert!(fresh.bytes <= FRESH_BYTES);
        assert_eq!(
            fresh.bytes,
            fresh.envelopes.values().map(Vec::len).sum::<usize>()
        );
    }
}
