//! The core's peers: one [`PeerSync`] per connected device, what their messages do (sync,
//! invites and document contents have their own handlers), what the node pushes to them,
//! and the node's status as people read it.

use super::{Effect, NodeCore};
use crate::api::NodeEvent;
use crate::circle::Circle;
use crate::circle::membership::CircleId;
use crate::envelope::EnvelopeRef;
use crate::identity::DeviceId;
use crate::ops::status::{NodeStatus as Status, PeerPath, PeerRow};
use crate::refusals::Counted;
use crate::sync::{Local, MAX_MET_DEVICES, Message, PeerSync, Received};

/// What one delivery of data did, in entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) applied: usize,
    pub(crate) refused: usize,
    pub(crate) replayed: usize,
}

/// One connected peer device.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) sync: PeerSync,
    pub(crate) peer_id: String,
    pub(crate) last_seen: Option<i64>,
    /// The stream goes through a relay's circuit.
    pub(crate) relayed: bool,
}

impl NodeCore {
    /// Messages for `device`, in order.
    pub(crate) fn send_all(&mut self, device: DeviceId, messages: Vec<Message>) {
        self.out
            .extend(messages.into_iter().map(|m| Effect::Send(device, m)));
    }

    /// Counts a refusal of `reason` from `device`; true if it is to be recorded (logged, and
    /// kept where there is a record to keep). A device over its budget is set aside.
    pub(super) fn refused(&mut self, device: DeviceId, reason: &'static str) -> bool {
        match self.refusals.count(device, reason, self.now.0) {
            Counted::Record => true,
            Counted::SetAside => {
                self.out.push(Effect::SetAside(device));
                false
            }
            Counted::Quiet => false,
        }
    }

    /// A peer device's stream opened: the protocol starts with a `Hello`.
    #[tracing::instrument(skip_all, fields(peer = %device))]
    pub(super) fn peer_connected(&mut self, device: DeviceId, peer_id: String, relayed: bool) {
        let now = self.now.millis();
        // A new device being paired holds nothing yet: it only asks to be certified.
        if self.pairing.is_some() {
            self.peers.insert(
                device,
                Peer {
                    sync: PeerSync::new(device),
                    peer_id,
                    last_seen: Some(now),
                    relayed,
                },
            );
            let pair = self.send_pair(&device);
            self.out.extend(pair);
            return;
        }
        self.sibling_seen(&device, true);
        let hello = match self.peers.get_mut(&device) {
            // Its messages arrived before our stream to it opened: the exchange is under
            // way, a Hello from this side completes it.
            Some(p) => {
                p.peer_id = peer_id.clone();
                p.relayed = relayed;
                p.sync.resync(&self.circles, now)
            }
            None => {
                let mut sync = PeerSync::new(device);
                let hello = sync.connected(&self.circles, now);
                let peer = Peer {
                    sync,
                    peer_id: peer_id.clone(),
                    last_seen: Some(now),
                    relayed,
                };
                self.peers.insert(device, peer);
                hello
            }
        };
        self.send_all(device, hello);
        self.out.push(Effect::Event(NodeEvent::Peer {
            peer_id,
            connected: true,
        }));
        let joins = self.send_joins(&device);
        self.out.extend(joins);
        if self.is_relay(&device) {
            let seeks = self.seek_at(&device);
            self.out.extend(seeks);
            let open = self.open_invites(None);
            self.out.push(Effect::Send(device, open));
            self.ask_receipts(device);
        }
    }

    /// A peer device's last connection closed.
    pub(super) fn peer_disconnected(&mut self, device: &DeviceId) {
        self.sibling_seen(device, false);
        self.crowded.remove(device);
        if let Some(p) = self.peers.remove(device) {
            self.out.push(Effect::Event(NodeEvent::Peer {
                peer_id: p.peer_id,
                connected: false,
            }));
        }
    }

    /// Messages to `device` were dropped on the way to the network: its budget comes
    /// back and the exchange starts again.
    pub(super) fn undelivered(&mut self, device: DeviceId) {
        let now = self.now.millis();
        if let Some(p) = self.peers.get_mut(&device) {
            tracing::debug!(peer = %device, "messages to a peer were dropped; starting again");
            let hello = p.sync.lost(&self.circles, now);
            self.send_all(device, hello);
        }
    }

    /// A message from a connected peer device.
    #[tracing::instrument(skip_all, fields(peer = %device))]
    pub(super) fn peer_message(&mut self, device: DeviceId, message: Message) {
        if let Some(r) = self.read_message(device, message) {
            self.apply(device, r, false);
        }
    }

    /// Messages from `device` that waited together: each is read in order, and the data of
    /// consecutive messages for one circle held here is applied as one batch (one pass of
    /// the checks and one Automerge apply per run of an author's envelopes, instead of one
    /// per message). Data of a circle not held yet is applied on its own, as it comes (it
    /// may be a join).
    pub(super) fn peer_messages(&mut self, device: DeviceId, messages: Vec<Message>) {
        let mut gathered: Option<Received> = None;
        for message in messages {
            // Anything else is read after the data before it is applied.
            if message.data_size().is_none()
                && let Some(g) = gathered.take()
            {
                self.apply(device, g, false);
            }
            let Some(r) = self.read_message(device, message) else {
                continue;
            };
            match &mut gathered {
                Some(g) if g.circle == r.circle => {
                    g.ops.extend(r.ops);
                    g.envelopes.extend(r.envelopes);
                }
                _ if !self.circles.open.contains_key(&r.circle) => {
                    if let Some(g) = gathered.take() {
                        self.apply(device, g, false);
                    }
                    self.apply(device, r, false);
                }
                _ => {
                    if let Some(g) = gathered.replace(r) {
                        self.apply(device, g, false);
                    }
                }
            }
        }
        if let Some(g) = gathered {
            self.apply(device, g, false);
        }
    }

    /// Reads one message from `device`: answers it, and returns the circle data it carries
    /// for the caller to apply.
    fn read_message(&mut self, device: DeviceId, message: Message) -> Option<Received> {
        // A device set aside for sending refused data is not read meanwhile.
        if self.refusals.ignores(&device, self.now.0) {
            return None;
        }
        if let Some(p) = self.peers.get_mut(&device) {
            p.sync.heard();
        }
        let now = self.now.millis();
        if self.pairing.is_some() {
            if let Message::PairAnswer {
                refused,
                identity,
                devices,
                ..
            } = message
            {
                self.pair_answered(device, refused, identity, devices);
            }
            return None;
        }
        let message = match message {
            Message::Pair {
                pairing,
                secret,
                x25519,
            } => {
                self.pair_asked(device, pairing, &secret, x25519);
                return None;
            }
            Message::PairAnswer { .. } => {
                tracing::debug!(peer = %device, "a pairing answer while no pairing is under way");
                return None;
            }
            Message::Join {
                invite,
                secret,
                card,
            } => {
                self.join_asked(device, invite, &secret, &card);
                return None;
            }
            Message::BreakGlass {
                request,
                circle,
                reason,
                minutes,
                card,
            } => {
                self.break_glass_asked(device, request, circle, &reason, minutes, &card);
                return None;
            }
            Message::Consulted { circle, what, at } => {
                self.consulted_by(device, circle, &what, at);
                return None;
            }
            Message::JoinAnswer {
                invite,
                refused,
                circle,
                proof,
                code,
            } => {
                let answer = super::invites::Answer {
                    invite,
                    refused,
                    circle,
                    proof,
                    code,
                };
                self.join_answered(&device, answer);
                return None;
            }
            Message::InviteAt { tag, device: at } => {
                self.invite_at(device, tag, at);
                return None;
            }
            // A relay's business: a node answers for no one.
            Message::InviteOpen { .. } | Message::InviteSeek { .. } => {
                tracing::debug!(peer = %device, "an invite announcement for a relay, sent to a node");
                return None;
            }
            Message::BlobWant {
                circle,
                blob,
                offset,
            } => {
                self.blob_wanted(device, circle, &blob, offset);
                return None;
            }
            Message::BlobPart {
                circle,
                blob,
                offset,
                total,
                bytes,
            } => {
                let part = super::blobs::Part {
                    circle,
                    blob,
                    offset,
                    total,
                    bytes,
                };
                self.blob_part(device, part);
                return None;
            }
            Message::Met { circle, devices } => {
                self.met(device, circle, devices);
                return None;
            }
            Message::Deleted { receipt } => {
                self.deletion_receipt(device, *receipt);
                return None;
            }
            m => m,
        };
        // The peer's stream may deliver before ours to it is open: its state starts here.
        let peer = self.peers.entry(device).or_insert_with(|| Peer {
            sync: PeerSync::new(device),
            peer_id: crate::net::peer_of(&device)
                .map(|p| p.to_string())
                .unwrap_or_default(),
            last_seen: None,
            // Known when this side's stream opens.
            relayed: false,
        });
        peer.last_seen = Some(now);
        let (replies, received) = match peer.sync.receive(&self.circles, message, now) {
            Ok(r) => r,
            Err(e) => {
                if self.refused(device, e.kind()) {
                    tracing::warn!(peer = %device, reason = %e, "refused a sync message");
                }
                return None;
            }
        };
        self.send_all(device, replies);
        received
    }

    /// A relay introduced devices of `circle`'s members connected to it: each this node also
    /// counts as a current member's device, and is not connected to yet, is reached through
    /// that relay (by the side with the lower device key). An introduction from a peer that is
    /// not a relay of this node (given at start or named by a circle) is refused; one for a
    /// circle not held here is let go first.
    fn met(&mut self, relay: DeviceId, circle: CircleId, devices: Vec<DeviceId>) {
        // A circle not held here yet (an invitation not answered, a circle an emergency
        // access is bringing, whose relay this node does not count as its own yet): let
        // go, from anyone, at no cost.
        if !self.circles.open.contains_key(&circle) {
            tracing::debug!(peer = %relay, %circle, "an introduction for a circle not held here");
            return;
        }
        // The circle's own list (in memory at once) or a relay this node uses: the set of
        // relays the circles name is brought up to date only once a change is durable.
        let names = self
            .circles
            .open
            .get(&circle)
            .is_some_and(|c| c.resolution().names_relay(&relay));
        let refusal = if !names && !self.is_relay(&relay) {
            Some("not_a_relay")
        } else if devices.len() > MAX_MET_DEVICES {
            Some("too_many_items")
        } else {
            None
        };
        if let Some(reason) = refusal {
            if self.refused(relay, reason) {
                tracing::warn!(peer = %relay, %circle, reason, "refused an introduction");
            }
            return;
        }
        let Some(c) = self.circles.open.get(&circle) else {
            return;
        };
        // Both sides are introduced; the one with the lower device key dials, so the two
        // make one relayed connection, not two.
        let me = self.me.device();
        for device in devices {
            let member = c.resolution().member_of(&device).is_some();
            if member && me < device && !self.peers.contains_key(&device) {
                tracing::debug!(peer = %device, %relay, "a relay introduced a member");
                self.out.push(Effect::Meet { device, via: relay });
            }
        }
    }

    /// Applies received data: a circle not held here is joined if this node followed an
    /// invite to it, and becomes an invitation otherwise; then checks and stages; once
    /// durable, what was accepted goes on to the other connected members. `chosen`: this
    /// node's user chose to take this data in (a sync file), which counts as following an
    /// invite.
    #[tracing::instrument(skip_all, fields(circle = %r.circle))]
    fn apply(&mut self, from: DeviceId, r: Received, chosen: bool) -> Taken {
        // A circle closed here takes nothing more (the peer was told by the sync).
        if self.circles.closed.contains_key(&r.circle) {
            return Taken::default();
        }
        let joined = !self.circles.open.contains_key(&r.circle);
        if joined {
            // A circle from another of this member's devices, or one such a device added
            // this device to, is the member's own.
            if !chosen && !self.followed_invite(&r.circle) && !self.members_own(&from, &r.ops) {
                self.offered(from, r);
                return Taken::default();
            }
            if !self.join_from(from, r.circle, &r.ops) {
                return Taken::default();
            }
        }
        // What the user chose to take in is checked at once, to tell them what was taken
        // and what refused (unless the circle still holds envelopes to check first).
        if chosen
            && self
                .circles
                .open
                .get(&r.circle)
                .is_some_and(|c| c.unchecked_logs() == 0)
            && self.wake(r.circle).is_err()
        {
            return Taken::default();
        }
        self.take_data(from, r, joined)
    }

    /// A part of a sync file, its signature checked: taken in as the data of the device
    /// that wrote it. The user chose to import the file, so a circle whose operations make
    /// this device a member is joined at once, as with an invite code it followed.
    pub(crate) fn carried(&mut self, part: crate::sync::file::Part) -> Taken {
        tracing::info!(circle = %part.circle, from = %part.device, "a sync file part taken in");
        let r = Received {
            circle: part.circle,
            ops: part.ops,
            envelopes: part.envelopes,
        };
        self.apply(part.device, r, true)
    }

    /// Joins `circle` from a member's operations; `false` if they do not make this device
    /// a member.
    pub(super) fn join_from(&mut self, from: DeviceId, circle: CircleId, ops: &[Vec<u8>]) -> bool {
        // At rest: what comes next is taken in at once, and checked when the node is idle.
        match Circle::join_resting(&self.me, circle, ops) {
            Ok((c, staged)) => {
                tracing::info!(%circle, "joined a circle");
                self.circles.put_open(circle, c);
                self.settle_later(circle);
                self.stage_from(circle, staged, Some(from));
                true
            }
            Err(e) => {
                tracing::warn!(reason = %e, "refused an unknown circle");
                false
            }
        }
    }

    /// Checks and stages data of a circle held here (`joined`: just now). An awake circle
    /// checks envelopes in full and applies them; one at rest takes them in unchecked, to
    /// settle when the node is idle ([`NodeCore::settle`]).
    pub(super) fn take_data(&mut self, from: DeviceId, r: Received, joined: bool) -> Taken {
        let Received {
            circle,
            ops,
            envelopes,
        } = r;
        if !envelopes.is_empty() {
            let checks_all = self
                .circles
                .open
                .get(&circle)
                .is_some_and(|c| c.is_awake() && c.unchecked_logs() == 0);
            let ready = if checks_all {
                self.wake(circle).is_ok()
            } else {
                self.ready_to_take(circle)
            };
            if !ready {
                return Taken::default();
            }
        }
        let Some(c) = self.circles.open.get_mut(&circle) else {
            return Taken::default();
        };
        let receipt = c.receive(
            &self.me,
            &from.to_string(),
            &ops,
            &envelopes,
            self.now.timestamp(),
        );
        if receipt.unchecked > 0 {
            self.took_unchecked(circle, receipt.unchecked);
        }
        let incomplete = receipt.incomplete;
        let taken = self.took(circle, Some(from), receipt);
        let closed = self
            .circles
            .open
            .get(&circle)
            .is_some_and(|c| c.resolution().closed);
        if closed {
            self.shred_closed(circle, Some(from));
            return taken;
        }
        if incomplete && let Some(peer) = self.peers.get_mut(&from) {
            let ask = peer
                .sync
                .ask_missing(&self.circles, circle, self.now.millis());
            self.send_all(from, ask);
        }
        if joined {
            self.publish_profile(circle);
        }
        taken
    }

    /// What receiving (or checking held envelopes) did in `circle`: shown at once (the
    /// documents hold it), alerts told of, refusals recorded within the budget of the peer
    /// they came `from` (of their writing device for held envelopes), and staged; passed
    /// on to others once durable here.
    pub(super) fn took(
        &mut self,
        circle: CircleId,
        from: Option<DeviceId>,
        receipt: crate::circle::Receipt,
    ) -> Taken {
        for (doc, count) in &receipt.applied {
            tracing::debug!(%doc, count, "applied envelopes");
            self.out.push(Effect::Event(NodeEvent::Applied {
                circle: circle.to_string(),
                doc: doc.as_str().to_string(),
                count: *count,
                at_micros: self.now.0,
            }));
        }
        if receipt.new_alerts > 0
            && let Some(c) = self.circles.open.get(&circle)
        {
            let me = self.me.member();
            let role = c.resolution().role(&me);
            let open = c.notebook().map_or(0, |nb| nb.open_alerts_for(&me, role));
            tracing::info!(%circle, open, "an alert from another member arrived");
            self.out.push(Effect::Event(NodeEvent::Alert {
                circle: circle.to_string(),
                open,
            }));
            self.remind_soon();
        }
        let taken = Taken {
            applied: receipt.applied.values().sum(),
            refused: receipt.rejected.len(),
            replayed: receipt.replays,
        };
        self.replayed += receipt.replays as u64;
        let mut staged = receipt.staged;
        for (code, record) in &receipt.rejected {
            let counted = from.or_else(|| {
                record
                    .device
                    .clone()
                    .and_then(|d| DeviceId::try_from(d).ok())
            });
            let record_it = match counted {
                Some(device) => self.refused(device, code),
                None => true,
            };
            if record_it {
                tracing::warn!(peer = ?counted, %circle, reason = %record.message, "refused data");
                staged.batch.rejection(&circle, record);
            }
        }
        self.stage_from(circle, staged, from);
        taken
    }

    /// Pushes durable envelopes of `circle` to every connected peer but `except`.
    pub(super) fn push(
        &mut self,
        circle: CircleId,
        envelopes: &[EnvelopeRef],
        except: Option<DeviceId>,
    ) {
        let now = self.now.millis();
        let mut out = Vec::new();
        for (device, peer) in &mut self.peers {
            if Some(*device) == except {
                continue;
            }
            let sent = peer.sync.push(&self.circles, envelopes, now);
            out.extend(sent.into_iter().map(|m| Effect::Send(*device, m)));
        }
        tracing::debug!(%circle, messages = out.len(), "pushed to peers");
        self.out.extend(out);
    }

    /// The membership of `circle` changed here: every peer sharing it now is told, and
    /// each side sends what the other lacks of it (a peer just added asks for all of it).
    pub(super) fn membership_changed(&mut self, circle: CircleId) {
        let mut out = Vec::new();
        for (device, peer) in &mut self.peers {
            let sent = peer.sync.changed(&self.circles, &[circle]);
            out.extend(sent.into_iter().map(|m| Effect::Send(*device, m)));
        }
        self.out.extend(out);
    }

    /// Periodic work: anti-entropy, retries of joins and fetches.
    pub(super) fn tick(&mut self) {
        let now = self.now.millis();
        let mut out = Vec::new();
        for (device, peer) in &mut self.peers {
            if peer.sync.half_open(now) {
                tracing::info!(peer = %device, "a peer's stream delivered nothing since ours opened; reconnecting");
                out.push(Effect::Disconnect(*device));
                continue;
            }
            let sent = peer.sync.tick(&self.circles, now);
            out.extend(sent.into_iter().map(|m| Effect::Send(*device, m)));
        }
        self.out.extend(out);
        let joins = self.retry_joins(now);
        self.out.extend(joins);
        let fetches = self.retry_fetches(now);
        self.out.extend(fetches);
    }

    /// The node's status.
    pub(crate) fn status(&self) -> Status {
        let suffix = format!("/p2p/{}", self.peer_id);
        Status {
            peer_id: self.peer_id.clone(),
            device: self.me.device().to_string(),
            member: self.me.member().to_hex(),
            addresses: self
                .addresses
                .iter()
                .map(|a| {
                    if a.ends_with(&suffix) {
                        a.clone()
                    } else {
                        format!("{a}{suffix}")
                    }
                })
                .collect(),
            peers: self
                .peers
                .iter()
                .map(|(device, p)| {
                    let member = self
                        .circles
                        .open
                        .values()
                        .find_map(|c| Some((c, *c.resolution().member_of(device)?.0)));
                    PeerRow {
                        peer_id: p.peer_id.clone(),
                        device: device.to_string(),
                        member: member.map(|(_, m)| m.to_hex()),
                        relay: self.circles.relays.contains(device)
                            || self.circles.named_relays.contains(device),
                        name: member.and_then(|(c, m)| Some(c.profiles().remove(&m)?.name)),
                        circles: self
                            .circles
                            .shared_with(device)
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                        pending: p.sync.pending(),
                        messages_sent: p.sync.stats.sent,
                        messages_received: p.sync.stats.received,
                        data_bytes_sent: p.sync.stats.data_bytes_sent,
                        data_bytes_received: p.sync.stats.data_bytes_received,
                        last_seen: p.last_seen,
                        path: if p.relayed {
                            PeerPath::Relayed
                        } else {
                            PeerPath::Direct
                        },
                    }
                })
                .collect(),
            running: self.running,
            refused: self.refusals.counts(),
            refused_unrecorded: self.refusals.unrecorded(),
            ignored_messages: self.refusals.ignored(),
            replayed_envelopes: self.replayed,
            held_envelopes: self.circles.open.values().map(Circle::held_envelopes).sum(),
            settling: self.settling(),
        }
    }
}
