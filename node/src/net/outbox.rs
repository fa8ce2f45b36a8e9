//! The outbox: where the core's messages for connected peers go, shared by nodes and relays.

use std::collections::BTreeMap;

use tokio::sync::mpsc;

use crate::identity::DeviceId;
use crate::sync::Message;

/// Messages kept per peer until our stream to it opens, at most.
const MAX_EARLY: usize = 1024;

/// Where messages for connected peers go: each peer's stream writer, and, for a peer whose
/// stream to us delivered before ours to it opened, what waits for that writer (bounded).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    writers: BTreeMap<DeviceId, mpsc::UnboundedSender<Message>>,
    early: BTreeMap<DeviceId, Vec<Message>>,
}

impl Outbox {
    /// Sends (or keeps until the stream opens) one message.
    pub(crate) fn send(&mut self, device: DeviceId, message: Message) {
        match self.writers.get(&device) {
            Some(w) => {
                if w.send(message).is_err() {
                    self.writers.remove(&device);
                }
            }
            None => {
                let queue = self.early.entry(device).or_default();
                if queue.len() < MAX_EARLY {
                    queue.push(message);
                } else {
                    tracing::warn!(%device, "dropped a message for a peer not yet reachable");
                }
            }
        }
    }

    /// Our stream to `device` is open: what waited for it goes first.
    pub(crate) fn connected(&mut self, device: DeviceId, writer: mpsc::UnboundedSender<Message>) {
        for message in self.early.remove(&device).unwrap_or_default() {
            let _ = writer.send(message);
        }
        self.writers.insert(device, writer);
    }

    pub(crate) fn disconnected(&mut self, device: &DeviceId) {
        self.writers.remove(device);
        self.early.remove(device);
    }
}
