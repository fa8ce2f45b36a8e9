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

use super::writes::After;
use super::{Effect, NodeCore};

/// How often the core looks for alerts to recall (milliseconds).
const LOOK_EVERY_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// Notebooks read again per look, at most: the rest wait for the next tick, so a GP's
/// thousand circles never hold the core for long (about 0.5 ms per notebook of 100
/// entries measured here).
const READS_PER_LOOK: usize = 64;

/// What was recalled: per circle and alert, how many delays had elapsed. The alerts
/// waiting in each circle, as last read, are kept by the circle
/// ([`crate::circle::Circle::waiting_alerts`]).
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

    /// Reads the alerts waiting in awake circle `id` again if its notebook or the member's
    /// role changed since the last reading, and keeps the reading in the circle's record:
    /// after a restart, no circle at rest is woken to recall its alerts.
    pub(super) fn read_waiting_alerts(&mut self, id: CircleId) {
        let me = self.me.member();
        let Some(c) = self.circles.open.get_mut(&id) else {
            return;
        };
        if !c.is_awake() || c.waiting_alerts(&me).is_some() {
            return;
        }
        match c.read_waiting_alerts(&me) {
            Ok(record) if !record.is_empty() => {
                self.write_batch(record, After::default());
            }
            Ok(_) => {}
            Err(e) => tracing::error!(circle = %id, error = %e, "cannot read the alerts waiting"),
        }
    }

    /// Recalls the alerts waiting longer than their circle's delay (at most once a minute).
    pub(super) fn remind(&mut self) {
        let now = self.now.millis();
        if now < self.reminders.next_look {
            return;
        }
        self.reminders.next_look = now + LOOK_EVERY_MS;
        let me = self.me.member();
        // The circles whose waiting alerts must be read again (the notebook or the
        // member's role changed), at most READS_PER_LOOK a look: woken and read first.
        let to_read: Vec<CircleId> = self
            .circles
            .open
            .iter()
            .filter(|(_, c)| c.resolution().reminder_after() > 0 && !c.resolution().closed)
            .filter(|(_, c)| c.waiting_alerts(&me).is_none())
            .map(|(id, _)| *id)
            .collect();
        if to_read.len() > READS_PER_LOOK {
            // The others at the next tick; what was recalled in them stays recalled.
            self.reminders.next_look = now;
        }
        for id in to_read.into_iter().take(READS_PER_LOOK) {
            // One that cannot be woken is set aside as damaged, and logged there.
            if self.wake(id).is_ok() {
                self.read_waiting_alerts(id);
            }
        }
        let mut kept = BTreeMap::new();
        for (id, c) in &self.circles.open {
            let delay = i64::from(c.resolution().reminder_after()) * HOUR_MS;
            if delay == 0 || c.resolution().closed {
                continue;
            }
            let Some(waiting) = c.waiting_alerts(&me) else {
                // Not read yet: what was recalled in it stays recalled.
                let recalled = self.reminders.recalled.range((*id, String::new())..);
                kept.extend(
                    recalled
                        .take_while(|((c, _), _)| c == id)
                        .map(|(k, v)| (k.clone(), *v)),
                );
                continue;
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
