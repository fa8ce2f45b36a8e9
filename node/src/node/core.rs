//! The node's state machine without the network: the open circles, one [`PeerSync`] per
//! connected peer device, and the answers to users' [`Request`]s. The async shell
//! ([`super::Node`]) feeds it requests, peer messages and time, and carries out the
//! [`Output`]s it returns; the `cercle` command uses it directly when no node runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cercle_crdt::{DocKind, IdentityUpdate, NewEntry, Timestamp};

use crate::api::{Answer, CircleSummary, MemberRow, NodeEvent, NoteRow, PeerRow, Request, Status};
use crate::circle::membership::{CircleId, OpHash};
use crate::circle::{Circle, CircleError};
use crate::identity::{CardError, ContactCard, DeviceId, LocalIdentity};
use crate::net::Spot;
use crate::store::{Store, StoreError, Ticket};
use crate::sync::{Local, Message, PeerSync, Received, SyncRejection, Vector};

/// Notes of one request written as one Automerge change (one envelope).
pub const NOTES_PER_CHANGE: usize = 64;
/// Most notes accepted in one request.
pub const MAX_NOTES_PER_REQUEST: usize = 10_000;

/// Why a request failed: one sentence for the user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error(transparent)]
    Circle(#[from] CircleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the contact card is not valid: {0}")]
    Card(#[from] CardError),
    #[error("{0}")]
    BadRequest(String),
    #[error("the node is not running; start it with `cercle up`")]
    NotRunning,
}

/// What the shell must do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send a message to a connected peer device.
    Send(DeviceId, Message),
    /// Tell live views.
    Event(NodeEvent),
    /// Dial a multiaddress.
    Dial(String),
    /// Where the circles' members meet at relays changed.
    Spots(Vec<Spot>),
    /// The relays named by the circles changed (the full list).
    Relays(Vec<String>),
}

/// A handled request: its answer, the tickets to wait for before giving it, and what to
/// do once they complete (push the new envelopes).
#[derive(Debug)]
pub struct Handled {
    pub answer: Answer,
    pub tickets: Vec<Ticket>,
    pub after: Vec<Output>,
}

impl Handled {
    fn now(answer: Answer) -> Handled {
        Handled {
            answer,
            tickets: Vec::new(),
            after: Vec::new(),
        }
    }

    /// Waits for durability (for callers without a node: the CLI's offline mode).
    pub fn wait(self) -> Result<Answer, NodeError> {
        for t in self.tickets {
            t.wait()?;
        }
        Ok(self.answer)
    }
}

/// The circles held by this node, as the sync protocol reads them.
#[derive(Debug)]
pub struct Circles {
    store: Arc<dyn Store>,
    open: BTreeMap<CircleId, Circle>,
    /// The relays this node was started with: each keeps a mailbox of every circle.
    relays: BTreeSet<DeviceId>,
}

impl Circles {
    /// Opens every circle in the store.
    pub fn open(store: Arc<dyn Store>, me: &LocalIdentity) -> Result<Circles, CircleError> {
        let mut open = BTreeMap::new();
        for info in Circle::list(store.as_ref())? {
            let c = Circle::open(store.clone(), me, &info.id)?;
            open.insert(c.id(), c);
        }
        Ok(Circles {
            store,
            open,
            relays: BTreeSet::new(),
        })
    }

    /// The open circle whose id starts with `query`: found among those in memory, without
    /// reading and opening every sealed record again.
    fn find(&mut self, query: &str) -> Result<&mut Circle, CircleError> {
        crate::circle::pick(query, self.open.values_mut(), |c| c.id())
    }
}

impl Local for Circles {
    fn shared_with(&self, device: &DeviceId) -> Vec<CircleId> {
        if self.relays.contains(device) {
            return self.open.keys().copied().collect();
        }
        self.open
            .values()
            .filter(|c| {
                let r = c.resolution();
                r.member_of(device).is_some() || crate::net::names_relay(&r.relays, device)
            })
            .map(Circle::id)
            .collect()
    }

    fn knows(&self, circle: &CircleId) -> bool {
        self.open.contains_key(circle)
    }

    fn op_hashes(&self, circle: &CircleId) -> BTreeSet<OpHash> {
        self.open
            .get(circle)
            .map(|c| c.membership().ops().map(|o| o.hash()).collect())
            .unwrap_or_default()
    }

    fn op(&self, circle: &CircleId, hash: &OpHash) -> Option<Vec<u8>> {
        self.open.get(circle).and_then(|c| {
            c.membership()
                .ops()
                .find(|o| o.hash() == *hash)
                .map(|o| o.bytes().to_vec())
        })
    }

    fn vector(&self, circle: &CircleId, doc: DocKind) -> Vector {
        self.open
            .get(circle)
            .map(|c| c.vector(doc))
            .unwrap_or_default()
    }

    fn envelopes(
        &self,
        circle: &CircleId,
        doc: DocKind,
        device: &DeviceId,
        from: u64,
        limit: usize,
    ) -> Vec<Vec<u8>> {
        self.store
            .envelopes(circle, doc, device, from, limit)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read envelopes to send");
                Vec::new()
            })
    }
}

/// One connected peer device.
#[derive(Debug)]
struct Peer {
    sync: PeerSync,
    peer_id: String,
    last_seen: Option<i64>,
}

/// The node without its network.
#[derive(Debug)]
pub struct NodeCore {
    me: LocalIdentity,
    circles: Circles,
    peers: BTreeMap<DeviceId, Peer>,
    addresses: Vec<String>,
    peer_id: String,
    running: bool,
}

impl NodeCore {
    /// Opens every circle of the store for `me`. `peer_id` is the device's libp2p peer id.
    pub fn open(
        store: Arc<dyn Store>,
        me: LocalIdentity,
        peer_id: String,
    ) -> Result<NodeCore, NodeError> {
        let circles = Circles::open(store, &me)?;
        Ok(NodeCore {
            me,
            circles,
            peers: BTreeMap::new(),
            addresses: Vec::new(),
            peer_id,
            running: false,
        })
    }

    /// Marks the core as driven by a running node (for `status`).
    pub fn set_running(&mut self) {
        self.running = true;
    }

    /// The relays this node uses: they get every circle's envelopes (for their mailbox).
    pub fn set_relays(&mut self, relays: BTreeSet<DeviceId>) {
        self.circles.relays = relays;
    }

    /// Where each circle's members meet at relays: the namespace of its current epoch, and
    /// its members' devices.
    pub fn spots(&self) -> Vec<Spot> {
        self.circles
            .open
            .values()
            .filter_map(|c| {
                let namespace = c.rendezvous_namespace(&self.me)?;
                let members = c
                    .resolution()
                    .members
                    .values()
                    .flat_map(|m| m.devices.iter())
                    .filter_map(|d| crate::net::peer_of(&d.device))
                    .collect();
                Some(Spot { namespace, members })
            })
            .collect()
    }

    /// The relays the circles name, each once.
    pub fn circle_relays(&self) -> Vec<String> {
        let all: BTreeSet<&String> = self
            .circles
            .open
            .values()
            .flat_map(|c| c.resolution().relays.iter())
            .collect();
        all.into_iter().cloned().collect()
    }

    /// The node's listen addresses changed.
    pub fn set_addresses(&mut self, addresses: Vec<String>) {
        self.addresses = addresses;
    }

    /// The circles held here.
    pub fn circles(&self) -> &Circles {
        &self.circles
    }

    /// A peer device connected: the protocol starts with a `Hello`.
    pub fn peer_connected(&mut self, device: DeviceId, peer_id: String, now: i64) -> Vec<Output> {
        let out = match self.peers.get_mut(&device) {
            // Its messages arrived before our stream to it opened: the exchange is under
            // way, a Hello from this side completes it.
            Some(p) => {
                p.peer_id = peer_id.clone();
                p.sync.resync(&self.circles, now)
            }
            None => {
                let mut sync = PeerSync::new(device);
                let out = sync.connected(&self.circles, now);
                self.peers.insert(
                    device,
                    Peer {
                        sync,
                        peer_id: peer_id.clone(),
                        last_seen: Some(now),
                    },
                );
                out
            }
        };
        let mut outputs = sends(device, out);
        outputs.push(Output::Event(NodeEvent::Peer {
            peer_id,
            connected: true,
        }));
        outputs
    }

    /// A peer device's last connection closed.
    pub fn peer_disconnected(&mut self, device: &DeviceId) -> Vec<Output> {
        match self.peers.remove(device) {
            Some(p) => vec![Output::Event(NodeEvent::Peer {
                peer_id: p.peer_id,
                connected: false,
            })],
            None => Vec::new(),
        }
    }

    /// A message from a connected peer device.
    pub fn from_peer(&mut self, device: DeviceId, message: Message, now: i64) -> Vec<Output> {
        // The peer's stream may deliver before ours to it is open: its state starts here.
        let peer = self.peers.entry(device).or_insert_with(|| Peer {
            sync: PeerSync::new(device),
            peer_id: crate::net::peer_of(&device)
                .map(|p| p.to_string())
                .unwrap_or_default(),
            last_seen: None,
        });
        peer.last_seen = Some(now);
        let (replies, received) = match peer.sync.receive(&self.circles, message) {
            Ok(r) => r,
            Err(e) => {
                self.refused(&device, &e);
                return Vec::new();
            }
        };
        let mut out = sends(device, replies);
        if let Some(r) = received {
            out.extend(self.apply(device, r, now));
        }
        out
    }

    fn refused(&self, device: &DeviceId, e: &SyncRejection) {
        tracing::warn!(%device, reason = %e, "refused a sync message");
    }

    /// Applies received data: joins the circle if new, checks and stores, then passes
    /// what was accepted on to the other connected members.
    fn apply(&mut self, from: DeviceId, r: Received, now: i64) -> Vec<Output> {
        let Received {
            circle,
            ops,
            envelopes,
        } = r;
        let joined = !self.circles.open.contains_key(&circle);
        if joined {
            match Circle::join(self.circles.store.clone(), &self.me, circle, &ops) {
                Ok(c) => {
                    self.circles.open.insert(circle, c);
                }
                Err(e) => {
                    tracing::warn!(%circle, peer = %from, reason = %e, "refused an unknown circle");
                    return Vec::new();
                }
            }
        }
        let Some(c) = self.circles.open.get_mut(&circle) else {
            return Vec::new();
        };
        let receipt = c.receive(
            &self.me,
            &from.to_string(),
            &ops,
            &envelopes,
            Timestamp(now),
        );
        // Received data is not acknowledged to anyone: the sender keeps it until the next
        // anti-entropy round finds it here.
        drop(receipt.ticket);
        let mut out = Vec::new();
        let at_micros = jiff::Timestamp::now().as_microsecond();
        for (doc, count) in &receipt.applied {
            out.push(Output::Event(NodeEvent::Applied {
                circle: circle.to_string(),
                doc: doc.as_str().to_string(),
                count: *count,
                at_micros,
            }));
        }
        out.extend(self.pass_on(
            circle,
            Some(from),
            receipt.accepted,
            joined || !receipt.new_ops.is_empty(),
            now,
        ));
        out
    }

    /// Pushes envelopes to every connected member but `except`; after a membership change,
    /// a new `Hello` to every peer (who may now share, or no longer share, the circle).
    fn pass_on(
        &mut self,
        circle: CircleId,
        except: Option<DeviceId>,
        envelopes: Vec<Vec<u8>>,
        membership_changed: bool,
        now: i64,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if membership_changed {
            out.push(Output::Relays(self.circle_relays()));
            out.push(Output::Spots(self.spots()));
        }
        for (device, peer) in &mut self.peers {
            if membership_changed {
                out.extend(sends(*device, peer.sync.resync(&self.circles, now)));
            }
            if Some(*device) == except {
                continue;
            }
            out.extend(sends(
                *device,
                peer.sync.push(&self.circles, circle, envelopes.clone()),
            ));
        }
        out
    }

    /// Periodic work: anti-entropy.
    pub fn tick(&mut self, now: i64) -> Vec<Output> {
        let mut out = Vec::new();
        for (device, peer) in &mut self.peers {
            out.extend(sends(*device, peer.sync.tick(&self.circles, now)));
        }
        out
    }

    /// The node's status.
    pub fn status(&self) -> Status {
        let suffix = format!("/p2p/{}", self.peer_id);
        Status {
            peer_id: self.peer_id.clone(),
            device: self.me.device().to_string(),
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
                .map(|(device, p)| PeerRow {
                    peer_id: p.peer_id.clone(),
                    device: device.to_string(),
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
                })
                .collect(),
            running: self.running,
        }
    }

    /// Handles a user's request. Writes are done in memory and queued to the store; the
    /// answer must be given only once the returned tickets complete.
    pub fn handle(&mut self, request: Request, now: Timestamp) -> Result<Handled, NodeError> {
        match request {
            Request::Status => Ok(Handled::now(Answer::Status(self.status()))),
            Request::Card => Ok(Handled::now(Answer::Card {
                card: self.me.public().card(&self.status().addresses).encode(),
            })),
            Request::CircleList => Ok(Handled::now(Answer::Circles {
                circles: Circle::list(self.circles.store.as_ref())?,
            })),
            Request::CircleCreate {
                patient,
                birth_date,
            } => self.create(&patient, birth_date, now),
            Request::CircleShow { circle } => {
                let c = self.circles.find(&circle)?;
                Ok(Handled::now(Answer::Circle(summary(c))))
            }
            Request::MemberAdd { circle, card, role } => {
                let card = ContactCard::decode(&card)?;
                // The new member's node is dialed at the addresses on its card.
                let dial = card.addresses.clone();
                self.change_membership(&circle, dial, now, |c, me| {
                    c.add_member(me, &card, role, now)
                })
            }
            Request::MemberRemove { circle, member } => {
                self.change_membership(&circle, Vec::new(), now, |c, me| {
                    let member = c.find_member(&member)?;
                    c.remove_member(me, &member, now)
                })
            }
            Request::RoleChange {
                circle,
                member,
                role,
            } => self.change_membership(&circle, Vec::new(), now, |c, me| {
                let member = c.find_member(&member)?;
                c.change_role(me, &member, role, now)
            }),
            Request::RelaysSet { circle, relays } => {
                for r in &relays {
                    crate::net::relay_device(r)
                        .map_err(|e| NodeError::BadRequest(e.to_string()))?;
                }
                self.change_membership(&circle, Vec::new(), now, |c, me| {
                    c.set_relays(me, relays, now)
                })
            }
            Request::NoteAdd {
                circle,
                texts,
                kind,
            } => self.add_notes(&circle, texts, kind, now),
            Request::NoteList { circle } => {
                let c = self.circles.find(&circle)?;
                Ok(Handled::now(Answer::Notes { notes: notes(c) }))
            }
            Request::Connect { address } => {
                if !self.running {
                    return Err(NodeError::NotRunning);
                }
                Ok(Handled {
                    answer: Answer::Done,
                    tickets: Vec::new(),
                    after: vec![Output::Dial(address)],
                })
            }
        }
    }

    /// Runs a membership change (durable when it returns), then says `Hello` again to every
    /// peer: who shares the circle may have changed.
    fn change_membership(
        &mut self,
        circle: &str,
        dial: Vec<String>,
        now: Timestamp,
        change: impl FnOnce(&mut Circle, &LocalIdentity) -> Result<(), CircleError>,
    ) -> Result<Handled, NodeError> {
        let c = self.circles.find(circle)?;
        change(c, &self.me)?;
        let answer = Answer::Circle(summary(c));
        let id = c.id();
        let mut after: Vec<Output> = dial.into_iter().map(Output::Dial).collect();
        after.extend(self.pass_on(id, None, Vec::new(), true, now.millis()));
        Ok(Handled {
            answer,
            tickets: Vec::new(),
            after,
        })
    }

    fn create(
        &mut self,
        patient: &str,
        birth_date: Option<String>,
        now: Timestamp,
    ) -> Result<Handled, NodeError> {
        let patient = patient.trim();
        if patient.is_empty() {
            return Err(NodeError::BadRequest(
                "the patient's name is empty: pass it as --patient \"Jeanne Durand\"".into(),
            ));
        }
        if let Some(d) = &birth_date {
            cercle_crdt::schema::parse_date(d).map_err(|_| {
                NodeError::BadRequest(format!(
                    "--birth-date {d:?} is not a valid date: use YYYY-MM-DD, e.g. 1941-05-12"
                ))
            })?;
        }
        // "Jeanne Marie Durand": the last word is the family name, the rest the given names.
        let (given, family) = match patient.rsplit_once(char::is_whitespace) {
            Some((g, f)) => (Some(g.trim().to_string()), f.to_string()),
            None => (None, patient.to_string()),
        };
        let update = IdentityUpdate {
            family_name: Some(family),
            given_names: given,
            birth_date,
            ..Default::default()
        };
        let mut c = Circle::create(self.circles.store.clone(), &self.me, &update, now)?;
        // Durable already (create commits). No member shares it yet; relays get all of it
        // from the `Hello` below.
        c.take_sealed();
        let info = c.info().clone();
        let id = c.id();
        self.circles.open.insert(id, c);
        // Relays keep a mailbox of it from now on.
        let after = self.pass_on(id, None, Vec::new(), true, now.millis());
        Ok(Handled {
            answer: Answer::Circles {
                circles: vec![info],
            },
            tickets: Vec::new(),
            after,
        })
    }

    fn add_notes(
        &mut self,
        circle: &str,
        texts: Vec<String>,
        kind: cercle_crdt::EntryKind,
        now: Timestamp,
    ) -> Result<Handled, NodeError> {
        if texts.len() > MAX_NOTES_PER_REQUEST {
            return Err(NodeError::BadRequest(format!(
                "at most {MAX_NOTES_PER_REQUEST} notes per request"
            )));
        }
        if texts.iter().any(|t| t.trim().is_empty()) {
            return Err(NodeError::BadRequest(
                "a note is empty: give its text in quotes, e.g. \"Pansement refait\"".into(),
            ));
        }
        let c = self.circles.find(circle)?;
        let heads_before = c.membership().heads();
        let mut ids = Vec::with_capacity(texts.len());
        let mut tickets = Vec::new();
        // Notes sent together (an import) are written NOTES_PER_CHANGE to a change.
        let mut texts = texts.into_iter().peekable();
        while texts.peek().is_some() {
            let entries: Vec<NewEntry> = texts
                .by_ref()
                .take(NOTES_PER_CHANGE)
                .map(|text| NewEntry {
                    kind,
                    text,
                    vitals: None,
                })
                .collect();
            let (written, ticket) = c.add_notes(&self.me, entries, now)?.into_parts();
            ids.extend(written);
            tickets.push(ticket);
        }
        let id = c.id();
        let sealed = c.take_sealed();
        // A write may have started a new key epoch first (after concurrent changes).
        let rotated = c.membership().heads() != heads_before;
        let answer = Answer::Added {
            circle: id.to_string(),
            ids,
        };
        let after = self.pass_on(id, None, sealed, rotated, now.millis());
        Ok(Handled {
            answer,
            tickets,
            after,
        })
    }
}

fn sends(device: DeviceId, messages: Vec<Message>) -> Vec<Output> {
    messages
        .into_iter()
        .map(|m| Output::Send(device, m))
        .collect()
}

/// A circle's members and epoch, for people.
fn summary(c: &Circle) -> CircleSummary {
    let r = c.resolution();
    CircleSummary {
        id: c.info().id.clone(),
        patient: c.info().patient.clone(),
        epoch: r.epoch.map(|e| e.to_string()),
        closed: r.closed,
        members: r
            .members
            .iter()
            .map(|(m, s)| MemberRow {
                member: m.to_hex(),
                name: c.profile_of(m).map(|p| p.name.clone()),
                profession: c.profile_of(m).map(|p| p.profession.clone()),
                role: s.role,
                devices: s.devices.iter().map(|d| d.device.to_string()).collect(),
            })
            .collect(),
        removed: r.removed.keys().map(|m| m.to_hex()).collect(),
        relays: r.relays.clone(),
        void_operations: r.void.len(),
        waiting_operations: c.membership().waiting(),
        refused: c.refused_count(),
    }
}

/// The notebook's notes, for people.
fn notes(c: &Circle) -> Vec<NoteRow> {
    c.notes()
        .into_iter()
        .map(|e| NoteRow {
            author: e.author.to_hex(),
            author_name: c.profile_of(&e.author).map(|p| p.name.clone()),
            kind: e.kind.to_string(),
            text: e.current_text().to_string(),
            at: e.at.to_rfc3339(),
            at_millis: e.at.millis(),
            amended: !e.amendments.is_empty(),
            id: e.id,
        })
        .collect()
}
