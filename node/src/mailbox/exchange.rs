//! The relay's side of the sync protocol, sans-I/O: the same [`PeerSync`] state machine
//! members' nodes run, over the [`Mailbox`] instead of a member's circles. Messages and time
//! in; messages out, with every refusal named so the shell can count it.
//!
//! A member's node treats a relay it uses as a peer sharing all its circles: it pushes every
//! new envelope there and, on connect, both sides exchange what the other lacks (the pull).
//! The relay answers only for the circles of which the peer's device is a current member,
//! and passes what it stores on to the other members connected to it.
//!
//! It also introduces members to each other: on each `Summary` or `Hello`, a device is told
//! which other devices of its circles' current members are connected here
//! ([`Message::Met`]) and those devices are told about it, each pair once while both stay
//! connected (a device's list starts afresh every [`RETELL_EVERY`]); on a `Changed`, the
//! same in the circles it names, both ways. Each may then reach the other through the
//! relay.
//! Who is a member comes from the circles' signed logs the mailbox holds, never from what a
//! device claims, so a stranger, a removed member or a device of a circle the relay does not
//! keep learns nobody.
//!
//! And it points an invitee holding a short invite code to the inviter: a member's device
//! announces the tags of its open invites ([`Message::InviteOpen`]), kept while it is
//! connected; whoever asks for one of those tags ([`Message::InviteSeek`]) is told which
//! device announced it ([`Message::InviteAt`]). A tag reveals neither the secret nor the
//! circle.

use std::collections::{BTreeMap, BTreeSet};

use crate::circle::membership::CircleId;
use crate::identity::DeviceId;
use crate::invite::MAX_OPEN_INVITES;
use crate::refusals::{Counted, Refusals};
use crate::sync::{Local, MAX_CHANGED, Message, PeerSync, SyncRejection};
use crate::tombstone::DeletionReceipt;
use ed25519_dalek::SigningKey;

use super::{Delivery, Mailbox};

/// Refusals of the relay's policy, which honest peers meet too (see [`Exchange::message`]).
/// `no_genesis`: a member's node pushes the first envelopes of a circle it just made, or
/// just named this relay in, before this relay has adopted it (the relay asks for the
/// circle in full when the node tells it of the change, and gets those envelopes then).
const POLICY: [&str; 9] = [
    "no_genesis",
    "not_member",
    "not_named",
    "circles_full",
    "quota",
    "relay_full",
    "new_circle_rate",
    "unavailable",
    "after_removal",
];

/// Retention is enforced this often (microseconds).
const SWEEP_EVERY: i64 = 3600 * 1_000_000;

/// A device is told again of every device it shares a circle with this often
/// (milliseconds), in case a dial through the relay failed.
pub const RETELL_EVERY: i64 = 10 * 60 * 1000;

/// The devices one connected device was told of, since when.
#[derive(Debug)]
struct Told {
    devices: BTreeSet<DeviceId>,
    since: i64,
}

impl Told {
    fn new(now_ms: i64) -> Told {
        Told {
            devices: BTreeSet::new(),
            since: now_ms,
        }
    }
}

/// Which way a refused request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A peer sent data.
    Push,
    /// A peer asked for data.
    Pull,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Push => "push",
            Direction::Pull => "pull",
        }
    }
}

/// What the shell must do after one input.
#[derive(Debug, Default)]
pub struct Step {
    /// Messages to send, in order, to connected devices.
    pub sends: Vec<(DeviceId, Message)>,
    /// Refusals, by direction and reason.
    pub refused: Vec<(Direction, &'static str)>,
    /// What was stored.
    pub stored: Delivery,
    /// [`Message::Met`] messages among [`Step::sends`].
    pub introductions: usize,
    /// The device went over its budget of refusals: disconnect it and read none of its
    /// streams for [`crate::refusals::SET_ASIDE_FOR`].
    pub set_aside: Option<DeviceId>,
    /// The message was dropped unread: its device is set aside.
    pub ignored: bool,
    /// Devices whose streams delivered nothing since the relay's opened
    /// ([`crate::sync::HALF_OPEN_MS`]): disconnect them, their next connection starts afresh.
    pub half_open: Vec<DeviceId>,
}

/// The mailbox and the protocol state of each connected device.
#[derive(Debug)]
pub struct Exchange {
    mailbox: Mailbox,
    peers: BTreeMap<DeviceId, PeerSync>,
    /// Introductions made: for each connected device, the devices it was told of, and
    /// when its list was last started afresh. A device is told of each other device once
    /// (in one circle they share), not once per circle and per round.
    told: BTreeMap<DeviceId, Told>,
    /// Each device's budget of logged refusals, and the devices set aside.
    refusals: Refusals,
    /// Open invites' tags, each with the connected member device that answers for it.
    invites: BTreeMap<[u8; 16], DeviceId>,
    /// The tags each connected device announced (at most [`MAX_OPEN_INVITES`]).
    announced: BTreeMap<DeviceId, Vec<[u8; 16]>>,
    last_sweep: Option<i64>,
    /// The relay's network key, which signs its deletion receipts (none in tests that do
    /// not look at them).
    signer: Option<SigningKey>,
}

impl Exchange {
    pub fn new(mailbox: Mailbox) -> Exchange {
        Exchange {
            mailbox,
            peers: BTreeMap::new(),
            told: BTreeMap::new(),
            refusals: Refusals::default(),
            invites: BTreeMap::new(),
            announced: BTreeMap::new(),
            last_sweep: None,
            signer: None,
        }
    }

    /// Signs the receipts of closed circles' deletions with `key` (the relay's network
    /// key, whose public half is its device).
    pub fn signing_with(mut self, key: SigningKey) -> Exchange {
        self.signer = Some(key);
        self
    }

    /// The mailbox, for metrics and listings.
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// Makes what the messages taken since the last commit stored durable (one flush).
    /// `false` if it could not: their steps' messages must not be sent (they acknowledge
    /// or pass on what is not on disk), and the mailbox takes nothing more.
    pub fn commit(&mut self) -> bool {
        self.mailbox.commit().is_ok()
    }

    /// A device's sync stream opened: the exchange starts with a `Summary`.
    pub fn connected(&mut self, device: DeviceId, now_ms: i64) -> Step {
        self.mailbox.set_now(now_ms);
        let messages = match self.peers.get_mut(&device) {
            // Its messages arrived before our stream to it opened: a `Summary` completes it.
            Some(sync) => sync.resync(&self.mailbox, now_ms),
            None => {
                let mut sync = PeerSync::new(device);
                let out = sync.connected(&self.mailbox, now_ms);
                self.peers.insert(device, sync);
                out
            }
        };
        Step {
            sends: messages.into_iter().map(|m| (device, m)).collect(),
            ..Step::default()
        }
    }

    /// A device's last connection closed.
    pub fn disconnected(&mut self, device: &DeviceId) {
        self.peers.remove(device);
        // Told again of it when it comes back.
        if self.told.remove(device).is_some() {
            for told in self.told.values_mut() {
                told.devices.remove(device);
            }
        }
        self.withdraw_invites(device);
    }

    /// Forgets the invites `device` announced.
    fn withdraw_invites(&mut self, device: &DeviceId) {
        for tag in self.announced.remove(device).unwrap_or_default() {
            if self.invites.get(&tag) == Some(device) {
                self.invites.remove(&tag);
            }
        }
    }

    /// A connected device announces the invites it answers for (the whole list, which
    /// replaces the last). Kept while it is connected, at most [`MAX_OPEN_INVITES`]; it is
    /// pointed to only while it is a current member's device of a circle kept here (its
    /// circle may arrive just after its announcement).
    fn invites_opened(&mut self, device: DeviceId, tags: Vec<[u8; 16]>, step: &mut Step) {
        if tags.len() > MAX_OPEN_INVITES {
            step.refused.push((Direction::Push, "protocol"));
            return;
        }
        self.withdraw_invites(&device);
        for tag in &tags {
            self.invites.insert(*tag, device);
        }
        self.announced.insert(device, tags);
    }

    /// Someone holding a short code asks who answers for its tag: the device, if one that
    /// announced it is connected (a stranger may ask: the tag is known only from the code).
    fn invite_sought(&self, device: DeviceId, tag: [u8; 16], step: &mut Step) {
        if let Some(inviter) = self.invites.get(&tag)
            && self.peers.contains_key(inviter)
            && *inviter != device
            && self.mailbox.keeps_member(inviter)
        {
            let at = Message::InviteAt {
                tag,
                device: *inviter,
            };
            step.sends.push((device, at));
        }
    }

    /// A message from a device. Stored data is written when this returns, and durable
    /// after [`Exchange::commit`]: the shell commits before it sends any [`Step::sends`]
    /// (one commit for all the messages it took together).
    ///
    /// Each refusal is counted (in [`Step::refused`], for the metrics). Those honest
    /// software never causes are also logged within each device's [`crate::refusals`]
    /// budget, and a device past it is set aside; the relay's own policy (a circle that
    /// does not name it, a quota, a member removed from a circle it still offers) refuses
    /// honest peers too, so it is only counted.
    pub fn message(&mut self, device: DeviceId, message: Message, now_ms: i64) -> Step {
        self.mailbox.set_now(now_ms);
        let now_us = now_ms.saturating_mul(1000);
        if self.refusals.ignores(&device, now_us) {
            return Step {
                ignored: true,
                ..Step::default()
            };
        }
        if let Some(sync) = self.peers.get_mut(&device) {
            sync.heard();
        }
        let mut step = self.take(device, message, now_ms);
        for (direction, reason) in &step.refused {
            if POLICY.contains(reason) {
                continue;
            }
            match self.refusals.count(device, reason, now_us) {
                Counted::Record => {
                    tracing::info!(%device, direction = direction.as_str(), reason, "refused a mailbox request");
                }
                Counted::SetAside => step.set_aside = Some(device),
                Counted::Quiet => {}
            }
        }
        if step.set_aside.is_some() {
            self.disconnected(&device);
        }
        step
    }

    /// What one message does, its refusals named.
    fn take(&mut self, device: DeviceId, message: Message, now_ms: i64) -> Step {
        let mut step = Step::default();
        let message = match message {
            Message::InviteOpen { tags } => {
                self.invites_opened(device, tags, &mut step);
                return step;
            }
            Message::InviteSeek { tag } => {
                self.invite_sought(device, tag, &mut step);
                return step;
            }
            m => m,
        };
        if let Message::Hello { circles } = &message {
            let ids: Vec<_> = circles.iter().map(|(c, _)| *c).collect();
            for _ in 0..self.mailbox.refused_pulls(&device, &ids) {
                step.refused.push((Direction::Pull, "not_member"));
            }
        }
        let direction = match message {
            Message::Data { .. } => Direction::Push,
            _ => Direction::Pull,
        };
        self.peers
            .entry(device)
            .or_insert_with(|| PeerSync::new(device));
        match &message {
            Message::Hello { .. } | Message::Summary { .. } => {
                self.introduce(device, None, now_ms, &mut step);
            }
            // Its membership changed in these circles (it joined one, say): introduced
            // there, both ways, even to devices it was told of in other circles (it may
            // not have held this one then).
            Message::Changed { circles, .. } if circles.len() <= MAX_CHANGED => {
                let only: BTreeSet<CircleId> = circles.iter().map(|(c, _)| *c).collect();
                self.introduce(device, Some(&only), now_ms, &mut step);
            }
            _ => {}
        }
        let Some(sync) = self.peers.get_mut(&device) else {
            return step;
        };
        let (replies, received) = match sync.receive(&self.mailbox, message, now_ms) {
            Ok(r) => r,
            Err(e) => {
                let kind = match e {
                    SyncRejection::NotShared => "not_member",
                    SyncRejection::TooLarge(_) => "oversized",
                    _ => "protocol",
                };
                step.refused.push((direction, kind));
                return step;
            }
        };
        let Some(data) = received else {
            step.sends.extend(replies.into_iter().map(|m| (device, m)));
            return step;
        };
        let circle = data.circle;
        let mut delivery = self.mailbox.receive(&device, data, now_ms * 1000);
        let accepted = std::mem::take(&mut delivery.accepted);
        for r in &delivery.refused {
            step.refused.push((Direction::Push, r.kind()));
        }
        step.sends.extend(replies.into_iter().map(|m| (device, m)));
        if let Some(deleted) = &delivery.deleted {
            self.closed(device, deleted, delivery.ops > 0, now_ms, &mut step);
            step.stored = delivery;
            return step;
        }
        let membership_changed = delivery.ops > 0;
        // Pass on to the other members connected here.
        for (other, sync) in &mut self.peers {
            if membership_changed {
                step.sends.extend(
                    sync.changed(&self.mailbox, &[circle])
                        .into_iter()
                        .map(|m| (*other, m)),
                );
            }
            if *other == device || accepted.is_empty() {
                continue;
            }
            step.sends.extend(
                sync.push(&self.mailbox, &accepted, now_ms)
                    .into_iter()
                    .map(|m| (*other, m)),
            );
        }
        step.stored = delivery;
        step
    }

    /// `circle` is closed and its envelopes deleted here: `device` gets the relay's signed
    /// receipt, and when the closing just arrived, the other members' devices connected
    /// here get the `Close` operation.
    fn closed(
        &mut self,
        device: DeviceId,
        deleted: &super::Deletion,
        fresh: bool,
        now_ms: i64,
        step: &mut Step,
    ) {
        if let Some(key) = &self.signer {
            let receipt = DeletionReceipt::sign(
                key,
                deleted.circle,
                deleted.close,
                deleted.at,
                deleted.envelopes,
                deleted.bytes,
            );
            step.sends.push((
                device,
                Message::Deleted {
                    receipt: Box::new(receipt),
                },
            ));
        }
        if !fresh {
            return;
        }
        let Some(close) = self.mailbox.closed(&deleted.circle, &device) else {
            return;
        };
        let members = self.mailbox.devices_of(&deleted.circle);
        for (other, sync) in &mut self.peers {
            if *other != device && members.contains(other) {
                step.sends
                    .push((*other, sync.tell_closed(deleted.circle, close.clone())));
            }
        }
        let _ = now_ms;
    }

    /// Tells `device` which devices of its circles' members are connected here, and tells
    /// them about it: each device it was not told of yet, in the first circle found that
    /// they share (of `only` those circles, if given, and then whether told or not).
    /// A device's list starts afresh every [`RETELL_EVERY`], so that a dial that failed is
    /// tried again.
    fn introduce(
        &mut self,
        device: DeviceId,
        only: Option<&BTreeSet<CircleId>>,
        now_ms: i64,
        step: &mut Step,
    ) {
        let peers = &self.peers;
        let met = self.mailbox.companions(&device, |d| peers.contains_key(d));
        let mine = self.told.entry(device).or_insert_with(|| Told::new(now_ms));
        if now_ms - mine.since >= RETELL_EVERY {
            *mine = Told::new(now_ms);
        }
        for (circle, devices) in met {
            if only.is_some_and(|o| !o.contains(&circle)) {
                continue;
            }
            let fresh: Vec<DeviceId> = match only {
                Some(_) => devices,
                None => devices
                    .into_iter()
                    .filter(|d| {
                        !self
                            .told
                            .get(&device)
                            .is_some_and(|t| t.devices.contains(d))
                    })
                    .collect(),
            };
            if fresh.is_empty() {
                continue;
            }
            for other in &fresh {
                let theirs = self.told.entry(*other).or_insert_with(|| Told::new(now_ms));
                if theirs.devices.insert(device) || only.is_some() {
                    let about = Message::Met {
                        circle,
                        devices: vec![device],
                    };
                    step.sends.push((*other, about));
                    step.introductions += 1;
                }
            }
            if let Some(mine) = self.told.get_mut(&device) {
                mine.devices.extend(fresh.iter().copied());
            }
            step.sends.push((
                device,
                Message::Met {
                    circle,
                    devices: fresh,
                },
            ));
            step.introductions += 1;
        }
    }

    /// Periodic work: anti-entropy with each device, and the retention sweep.
    pub fn tick(&mut self, now_ms: i64) -> Step {
        self.mailbox.set_now(now_ms);
        let mut step = Step::default();
        for (device, sync) in &mut self.peers {
            if sync.half_open(now_ms) {
                step.half_open.push(*device);
                continue;
            }
            step.sends.extend(
                sync.tick(&self.mailbox, now_ms)
                    .into_iter()
                    .map(|m| (*device, m)),
            );
        }
        let now = now_ms * 1000;
        if self.last_sweep.is_none_or(|at| now - at >= SWEEP_EVERY) {
            self.last_sweep = Some(now);
            if let Err(e) = self.mailbox.sweep(now) {
                tracing::error!(error = %e, "the retention sweep failed");
            }
        }
        step
    }
}
