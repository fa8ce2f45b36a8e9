//! Reminders of alerts left unacknowledged: once a minute the core looks, in every circle,
//! for the alerts waiting for this node's member longer than the circle's reminder delay,
//! and tells live views and the notification service once per delay elapsed ("one alert
//! has waited 4 h", then again at 8 h…) until someone acknowledges it. What was recalled
//! is kept in memory only: after a restart, an alert still waiting is recalled once more.

use std::collections::BTreeMap;

use crate::api::NodeEvent;
use crate::circle::membership::CircleId;

use super::{Effect, NodeCore};

/// How often the core looks for alerts to recall (milliseconds).
const LOOK_EVERY_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// What was recalled: per circle and alert, how many delays had elapsed.
#[derive(Debug, Default)]
pub(crate) struct Reminders {
    next_look: i64,
    recalled: BTreeMap<(CircleId, String), i64>,
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
        for (id, c) in &self.circles.open {
            let delay = i64::from(c.resolution().reminder_after()) * HOUR_MS;
            if delay == 0 || c.resolution().closed {
                continue;
            }
            let role = c.resolution().role(&me);
            let mut due = 0;
            let mut open = 0;
            for alert in c
                .notebook()
                .entries()
                .iter()
                .filter(|e| e.waits_for(&me, role))
            {
                open += 1;
                let rounds = (now - alert.at.millis()) / delay;
                if rounds < 1 {
                    continue;
                }
                let key = (*id, alert.id.clone());
                if self.reminders.recalled.get(&key) != Some(&rounds) {
                    due += 1;
                }
                kept.insert(key, rounds);
            }
            if due > 0 {
                tracing::info!(circle = %id, due, open, "alerts waiting past the circle's delay are recalled");
                self.out.push(Effect::Event(NodeEvent::Reminder {
                    circle: id.to_string(),
                    open,
                }));
            }
        }
        // Alerts acknowledged since are forgotten.
        self.reminders.recalled = kept;
    }
}
