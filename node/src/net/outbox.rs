//! The outbox: where the core's messages for connected peers go, shared by nodes and relays.
//!
//! Each peer's stream writer takes at most [`PEER_QUEUE`] messages ahead of the network. A
//! peer that does not read (its TCP window and stream buffers full) fills that queue: the
//! outbox then forgets the peer and tells the shell to disconnect it, so a peer that
//! stops reading costs a bounded amount of memory, never a growing one. Messages for a peer
//! whose stream to us delivered before ours to it opened (or whose stream broke) wait in a
//! queue of [`MAX_EARLY`], and go out on the new stream right after its first message: the
//! round's `Summary` the core sends on `Connected`, which opens the peer's frame decoder to
//! frames over its early limit (a waiting `Data` sent first would be refused).

use std::collections::BTreeMap;

use tokio::sync::mpsc;

use crate::identity::DeviceId;
use crate::sync::Message;

/// Messages queued for one peer's stream writer, at most.
pub const PEER_QUEUE: usize = 64;
/// Messages kept per peer until our stream to it opens, at most.
pub const MAX_EARLY: usize = 1024;

/// A message that did not reach a peer's stream writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undelivered {
    /// The writer was full: the peer does not read, and should be disconnected.
    Overflow(DeviceId),
    /// The stream had closed: the message is lost (a new stream follows if the peer is
    /// still connected), and the sync protocol must know to send it again.
    Lost(DeviceId),
}

/// Where messages for connected peers go: each peer's stream writer, and, for a peer whose
/// stream to us delivered before ours to it opened, what waits for that writer (bounded).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    writers: BTreeMap<DeviceId, mpsc::Sender<Message>>,
    early: BTreeMap<DeviceId, Vec<Message>>,
}

impl Outbox {
    /// A writer channel of the bounded size, for a peer's stream.
    pub(crate) fn channel() -> (mpsc::Sender<Message>, mpsc::Receiver<Message>) {
        mpsc::channel(PEER_QUEUE)
    }

    /// Sends (or keeps until the stream opens) one message. A peer whose writer is full is
    /// forgotten here and returned, to be disconnected.
    pub(crate) fn send(&mut self, device: DeviceId, message: Message) -> Result<(), Undelivered> {
        match self.writers.get(&device) {
            Some(w) => match w.try_send(message) {
                Ok(()) => {
                    // The stream's first message went out: what waited follows it.
                    if let Some(waiting) = self.early.remove(&device) {
                        for m in waiting {
                            if w.try_send(m).is_err() {
                                break;
                            }
                        }
                    }
                    Ok(())
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.disconnected(&device);
                    Err(Undelivered::Overflow(device))
                }
                // The stream closed; a new one (and a new `Connected`) follows if the peer
                // is still there. What follows waits for it.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.writers.remove(&device);
                    Err(Undelivered::Lost(device))
                }
            },
            None => {
                let queue = self.early.entry(device).or_default();
                if queue.len() < MAX_EARLY {
                    queue.push(message);
                } else {
                    tracing::warn!(%device, "dropped a message for a peer not yet reachable");
                }
                Ok(())
            }
        }
    }

    /// Our stream to `device` is open. What waited for it goes right after the first
    /// message sent on it (as much as the writer takes; the rest is lost like any message
    /// to a stream that breaks, and the sync protocol asks again).
    pub(crate) fn connected(&mut self, device: DeviceId, writer: mpsc::Sender<Message>) {
        self.writers.insert(device, writer);
    }

    pub(crate) fn disconnected(&mut self, device: &DeviceId) {
        self.writers.remove(device);
        self.early.remove(device);
    }

    /// Messages held here for peers not yet reachable, in all.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.early.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: DeviceId = DeviceId([5; 32]);

    fn ack() -> Message {
        Message::Ack { bytes: 1 }
    }

    #[test]
    fn a_peer_that_never_reads_is_let_go_at_the_bound_and_memory_stops_growing() {
        let mut outbox = Outbox::default();
        let (writer, reader) = Outbox::channel();
        outbox.connected(PEER, writer);
        // The stream writer never takes anything: the peer does not read.
        for _ in 0..PEER_QUEUE {
            assert_eq!(outbox.send(PEER, ack()), Ok(()));
        }
        assert_eq!(outbox.send(PEER, ack()), Err(Undelivered::Overflow(PEER)));
        assert_eq!(reader.len(), PEER_QUEUE, "nothing beyond the bound is held");
        // Forgotten: what follows waits (bounded) for a new stream, never for this one.
        for _ in 0..10 * MAX_EARLY {
            assert_eq!(outbox.send(PEER, ack()), Ok(()));
        }
        assert_eq!(reader.len(), PEER_QUEUE);
        assert_eq!(outbox.waiting(), MAX_EARLY);
    }

    /// What waited goes right after the stream's first message (the round's `Summary`),
    /// never before it: a large `Data` first would be over the peer's early frame limit.
    #[test]
    fn messages_before_the_stream_opens_wait_in_order_then_follow_its_first() {
        let mut outbox = Outbox::default();
        for bytes in 1..=3 {
            assert_eq!(outbox.send(PEER, Message::Ack { bytes }), Ok(()));
        }
        let (writer, mut reader) = Outbox::channel();
        outbox.connected(PEER, writer);
        assert!(
            reader.try_recv().is_err(),
            "nothing before the first message"
        );
        let summary = Message::Summary { digest: [7; 32] };
        assert_eq!(outbox.send(PEER, summary.clone()), Ok(()));
        assert_eq!(outbox.send(PEER, Message::Ack { bytes: 4 }), Ok(()));
        let got: Vec<Message> = std::iter::from_fn(|| reader.try_recv().ok()).collect();
        let mut want = vec![summary];
        want.extend((1..=4).map(|bytes| Message::Ack { bytes }));
        assert_eq!(got, want);
        assert_eq!(outbox.waiting(), 0);
    }

    #[test]
    fn a_closed_stream_is_reported_lost_and_what_follows_waits_for_the_next() {
        let mut outbox = Outbox::default();
        let (writer, reader) = Outbox::channel();
        outbox.connected(PEER, writer);
        drop(reader);
        assert_eq!(outbox.send(PEER, ack()), Err(Undelivered::Lost(PEER)));
        assert_eq!(outbox.send(PEER, ack()), Ok(()));
        assert_eq!(
            outbox.waiting(),
            1,
            "kept for the stream that will replace it"
        );
    }
}
