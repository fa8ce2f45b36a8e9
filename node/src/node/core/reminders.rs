//! Reminders of alerts left unacknowledged: once a minute the core looks, in every circle,
//! for the alerts waiting for this node's member longer than the circle's reminder delay,
//! and tells live views and the notification service once per delay elapsed ("one alert
//! has waited 4 h", then again at 8 h…) until someone acknowledges it. What was recalled
//! is kept in memory only: after a restart, an alert still waiting is recalled once more.
//! A circle's waiting alerts are read again only when its notebook or the member's role
//! changed since the last look: a GP's thousand quiet circles cost a map comparison each.

use std::collections::BTreeMap;

use crate::api::NodeEvent;
use crate::circle::membership::CircleId;

use super::{Effect, NodeCore};

/// How often the core looks for alerts to recall (milliseconds).
const LOOK_EVERY_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// Notebooks read again per look, at most: the rest wait for the next tick, so a GP's
/// thousand circles never hold the core for long (about 0.5 ms per notebook of 100
/// entries measured here).
const READS_PER_LOOK: usize = 64;

/// What was recalled: per circle and alert, how many delays had elapsed; and per circle,
/// the alerts waiting for the member as of the notebook's state last read.
#[derive(Debug, Default)]
pub(crate) struct Reminders {
    next_look: i64,
    recalled: BTreeMap<(CircleId, String), i64>,
    read: BTreeMap<CircleId, Waiting>,
}

/// The alerts waiting for the member in one circle (id, written at), and what they were
/// read from: the notebook's applied envelopes per device, and the member's role.
#[derive(Debug)]
struct Waiting {
    notebook: crate::sync::Vector,
    role: Option<cercle_crdt::Role>,
    alerts: Vec<(String, i64)>,
}

impl NodeCore {
    /// Looks again at the next tick: an alert arrived, perhaps written long ago offline.
    pub(super) fn remind_soon(&mut self) {
        self.reminders.next_look = self.now.millis();
    }

    /// Recalls the alerts waiting longer than their circle's delay (at most once a minute).
    pub(super) fn remind(&mut self) {
        let now = self.now.millis();
        if now < self.reminders.next_look {
            return;
        }
        self.reminders.next_look = now + LOOK_EVERY_MS;
        let me = self.me.member();
        let mut kept = BTreeMap::new();
        let mut read = BTreeMap::new();
        let mut reads = 0;
        for (id, c) in &self.circles.open {
            let delay = i64::from(c.resolution().reminder_after()) * HOUR_MS;
            if delay == 0 || c.resolution().closed {
                continue;
            }
            let role = c.resolution().role(&me);
            let notebook = c.vector(cercle_crdt::DocKind::LiaisonNotebook);
            let known = self.reminders.read.remove(id);
            let waiting = match known {
                Some(w) if w.notebook == notebook && w.role == role => w,
                // Read at a later tick; what was known stays meanwhile.
                Some(w) if reads >= READS_PER_LOOK => {
                    self.reminders.next_look = now;
                    w
                }
                None if reads >= READS_PER_LOOK => {
                    self.reminders.next_look = now;
                    continue;
                }
                _ => {
                    reads += 1;
                    let alerts = c.notebook().alerts_waiting_for(&me, role);
                    Waiting {
                        alerts: alerts.into_iter().map(|(a, at)| (a, at.millis())).collect(),
                        notebook,
                        role,
                    }
                }
            };
            let mut due = 0;
            for (alert, at) in &waiting.alerts {
                let rounds = (now - at) / delay;
                if rounds < 1 {
                    continue;
                }
                let key = (*id, alert.clone());
                if self.reminders.recalled.get(&key) != Some(&rounds) {
                    due += 1;
                }
                kept.insert(key, rounds);
            }
            let open = waiting.alerts.len();
            read.insert(*id, waiting);
            if due > 0 {
                tracing::info!(circle = %id, due, open, "alerts waiting past the circle's delay are recalled");
                self.out.push(Effect::Event(NodeEvent::Reminder {
                    circle: id.to_string(),
                    open,
                }));
            }
        }
        self.reminders.read = read;
        // Alerts acknowledged since are forgotten.
        self.reminders.recalled = kept;
    }
}
