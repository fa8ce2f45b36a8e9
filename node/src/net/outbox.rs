//! The outbox: where the core's messages for connected peers go, shared by nodes and relays.
//!
//! Each message is encoded here, on the core's thread, and each peer's stream writer takes
//! at most [`PEER_QUEUE_BYTES`] of frames (and [`PEER_QUEUE`] frames) ahead of the network.
//! A peer that does not read (its TCP window and stream buffers full) fills that queue: the
//! outbox then forgets the peer and tells the shell to disconnect it, so a peer that stops
//! reading costs a bounded amount of memory, never a growing one. The bound is in bytes so
//! that a peer busy for a moment (a catch-up answered with many small acknowledgements) is
//! not taken for one that does not read. Messages for a peer whose stream to us delivered
//! before ours to it opened (or whose stream broke) wait in a queue of [`MAX_EARLY`], and go
//! out on the new stream right after its first message: the round's `Summary` the core
//! sends on `Connected`, which opens the peer's frame decoder to frames over its early
//! limit (a waiting `Data` sent first would be refused).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::identity::DeviceId;
use crate::sync::{Message, wire};

/// Bytes of frames queued for one peer's stream writer, at most (above the largest frame,
/// `wire::MAX_FRAME`).
pub const PEER_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Frames queued for one peer's stream writer, at most.
pub const PEER_QUEUE: usize = 4096;
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

/// The sending side of a peer's stream writer: frames, and the bytes of those not written
/// yet.
#[derive(Debug, Clone)]
pub struct PeerWriter {
    frames: mpsc::Sender<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// The stream writer's side: the frames to write, in order.
#[derive(Debug)]
pub struct PeerQueue {
    frames: mpsc::Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

impl PeerQueue {
    /// The next frame to write; `None` once the core dropped the writer.
    pub(crate) async fn recv(&mut self) -> Option<Bytes> {
        self.frames.recv().await
    }

    /// A frame of `len` bytes left the queue for the network.
    pub(crate) fn written(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
    }

    /// Frames queued.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.frames.len()
    }
}

impl PeerWriter {
    /// Queues one frame: `Err(frame)` back if the peer has too much waiting already.
    fn queue(&self, frame: Bytes) -> Result<(), mpsc::error::TrySendError<Bytes>> {
        let len = frame.len();
        if self.queued.load(Ordering::Acquire) + len > PEER_QUEUE_BYTES {
            return Err(mpsc::error::TrySendError::Full(frame));
        }
        // Counted before the writer can take it (and count it written).
        self.queued.fetch_add(len, Ordering::AcqRel);
        self.frames.try_send(frame).inspect_err(|_| {
            self.queued.fetch_sub(len, Ordering::AcqRel);
        })
    }
}

/// Where messages for connected peers go: each peer's stream writer, and, for a peer whose
/// stream to us delivered before ours to it opened, what waits for that writer (bounded).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    writers: BTreeMap<DeviceId, PeerWriter>,
    early: BTreeMap<DeviceId, Vec<Bytes>>,
}

impl Outbox {
    /// A writer channel of the bounded size, for a peer's stream.
    pub(crate) fn channel() -> (PeerWriter, PeerQueue) {
        let (frames, rx) = mpsc::channel(PEER_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        (
            PeerWriter {
                frames,
                queued: queued.clone(),
            },
            PeerQueue { frames: rx, queued },
        )
    }

    /// Sends (or keeps until the stream opens) one message. A peer whose writer is full is
    /// forgotten here and returned, to be disconnected.
    pub(crate) fn send(&mut self, device: DeviceId, message: Message) -> Result<(), Undelivered> {
        let frame = Bytes::from(wire::encode(&message));
        match self.writers.get(&device) {
            Some(w) => match w.queue(frame) {
                Ok(()) => {
                    // The stream's first message went out: what waited follows it.
                    if let Some(waiting) = self.early.remove(&device) {
                        for f in waiting {
                            if w.queue(f).is_err() {
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
                    queue.push(frame);
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
    pub(crate) fn connected(&mut self, device: DeviceId, writer: PeerWriter) {
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

    /// A data message of about `bytes`.
    fn data(bytes: usize) -> Message {
        Message::Data {
            circle: crate::circle::membership::CircleId([1; 32]),
            ops: Vec::new(),
            envelopes: vec![vec![7; bytes]],
        }
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

    #[test]
    fn the_bound_is_in_bytes_and_a_peer_that_reads_again_is_not_let_go() {
        let mut outbox = Outbox::default();
        let (writer, mut reader) = Outbox::channel();
        outbox.connected(PEER, writer);
        let big = 1024 * 1024;
        let fit = PEER_QUEUE_BYTES / (big + 64);
        for _ in 0..fit {
            assert_eq!(outbox.send(PEER, data(big)), Ok(()));
        }
        // The writer writes one frame out: room for one more, not two.
        let frame = reader.frames.try_recv().unwrap();
        reader.written(frame.len());
        assert_eq!(outbox.send(PEER, data(big)), Ok(()));
        assert_eq!(
            outbox.send(PEER, data(big)),
            Err(Undelivered::Overflow(PEER))
        );
        assert_eq!(reader.len(), fit, "nothing beyond the bound is held");
        // Small messages on a fresh stream: many more than big ones fit.
        let (writer, _reader) = Outbox::channel();
        outbox.connected(PEER, writer);
        for _ in 0..4 * fit {
            assert_eq!(outbox.send(PEER, ack()), Ok(()));
        }
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
            reader.frames.try_recv().is_err(),
            "nothing before the first message"
        );
        let summary = Message::Summary { digest: [7; 32] };
        assert_eq!(outbox.send(PEER, summary.clone()), Ok(()));
        assert_eq!(outbox.send(PEER, Message::Ack { bytes: 4 }), Ok(()));
        let got: Vec<Message> = std::iter::from_fn(|| reader.frames.try_recv().ok())
            .map(|f| wire::decode(&f).unwrap())
            .collect();
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
