//! The node's state machine without the network: the open circles, one [`PeerSync`] per
//! connected peer device, and the answers to users' [`Request`]s. The async shell
//! ([`super::Node`]) feeds it requests, peer messages and time, and carries out the
//! [`Output`]s it returns; the `cercle` command uses it directly when no node runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cercle_crdt::{DocKind, IdentityUpdate, NewEntry, Timestamp};

use crate::api::{Answer, CircleSummary, MemberRow, NodeEvent, PeerRow, Request, Status};
use crate::circle::membership::{CircleId, OpHash};
use crate::circle::{Circle, CircleError};
use crate::identity::{CardError, ContactCard, DeviceId, LocalIdentity};
use crate::invite::InviteError;
use crate::net::Spot;
use crate::store::{Batch, Store, StoreError, Ticket};

use super::care;

mod blobs;
mod invites;
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
    #[error(transparent)]
    Invite(#[from] InviteError),
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
    /// Invites this node is joining with, by invite id.
    joins: BTreeMap<String, invites::Joining>,
    /// Document contents being fetched from members.
    fetches: blobs::Fetches,
    /// The document whose parts are being sent.
    serving: blobs::Serving,
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
            joins: BTreeMap::new(),
            fetches: BTreeMap::new(),
            serving: None,
        })
    }

    /// Marks the core as driven by a running node (for `status`).
    pub fn set_running(&mut self) {
        self.running = true;
        // Envelopes written here reach peers through the first `Hello` exchange.
        let ids: Vec<CircleId> = self.circles.open.keys().copied().collect();
        for id in ids {
            drop(self.publish_profile(id, jiff::Timestamp::now().as_millisecond()));
        }
    }

    /// Publishes this member's profile in a circle's thread if it is missing or outdated,
    /// and pushes it once durable.
    fn publish_profile(&mut self, circle: CircleId, now: i64) -> Vec<Output> {
        let Some(c) = self.circles.open.get_mut(&circle) else {
            return Vec::new();
        };
        match c.publish_profile(&self.me, Timestamp(now)) {
            Ok(None) => return Vec::new(),
            // Rare (once per circle joined): the core waits for this one write.
            Ok(Some(p)) => {
                if let Err(e) = p.wait() {
                    tracing::error!(%circle, error = %e, "cannot publish this member's profile");
                    return Vec::new();
                }
            }
            Err(e) => {
                tracing::warn!(%circle, error = %e, "cannot publish this member's profile");
                return Vec::new();
            }
        }
        let sealed = c.take_sealed();
        self.pass_on(circle, None, sealed, false, now)
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
        outputs.extend(self.send_joins(&device));
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
        let message = match message {
            Message::Join {
                invite,
                secret,
                card,
            } => return self.join_asked(device, invite, &secret, &card, now),
            Message::JoinAnswer { invite, refused } => {
                self.join_answered(&device, &invite, refused);
                return Vec::new();
            }
            Message::BlobWant {
                circle,
                blob,
                offset,
            } => return self.blob_wanted(device, circle, &blob, offset),
            Message::BlobPart {
                circle,
                blob,
                offset,
                total,
                bytes,
            } => {
                let part = blobs::Part {
                    circle,
                    blob,
                    offset,
                    total,
                    bytes,
                };
                return self.blob_part(device, part, now);
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
        if joined {
            out.extend(self.publish_profile(circle, now));
        }
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
        out.extend(self.retry_joins(now));
        out.extend(self.retry_fetches(now));
        out
    }

    /// The node's status.
    pub fn status(&self) -> Status {
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
            Request::InviteCreate {
                circle,
                role,
                expires_in,
            } => self.invite(&circle, role, expires_in, now),
            Request::Join { code } => self.join(&code, now),
            Request::JoinStatus { invite } => self.join_status(&invite),
            Request::PatientShow { circle } => {
                let store = self.circles.store.clone();
                let c = self.circles.find(&circle)?;
                let view = care::patient(c, store.as_ref());
                Ok(Handled::now(Answer::Patient(Box::new(view))))
            }
            Request::PatientSet { circle, change } => self.write(&circle, now, |c, me, store| {
                let (_, ticket) = care::change_patient(c, me, *change, now)?.into_parts();
                Ok((
                    Answer::Patient(Box::new(care::patient(c, store))),
                    vec![ticket],
                ))
            }),
            Request::NoteAdd {
                circle,
                texts,
                kind,
                at,
            } => {
                let at = match at {
                    // A few minutes of clock difference between devices are tolerated.
                    Some(t) if t > now.millis() + 5 * 60_000 => {
                        return Err(NodeError::BadRequest(
                            "a note cannot be dated in the future".into(),
                        ));
                    }
                    Some(t) => Timestamp(t),
                    None => now,
                };
                self.add_notes(&circle, texts, kind, at, now)
            }
            Request::NoteList { circle } => {
                let c = self.circles.find(&circle)?;
                Ok(Handled::now(Answer::Notes {
                    notes: care::notes(c),
                }))
            }
            Request::NoteAmend { circle, note, text } => self.write(&circle, now, |c, me, _| {
                let id = care::pick_id("note", &note, c.notes().into_iter().map(|e| e.id))?;
                let author = me.member();
                let (_, ticket) = c
                    .edit_notebook(me, now, |nb| nb.amend(author, &id, &text, now))?
                    .into_parts();
                Ok((added(c, id), vec![ticket]))
            }),
            Request::NoteAck { circle, note } => self.write(&circle, now, |c, me, _| {
                let id = care::pick_id("note", &note, c.notes().into_iter().map(|e| e.id))?;
                let by = me.member();
                let (_, ticket) = c
                    .edit_notebook(me, now, |nb| nb.acknowledge(by, &id, now))?
                    .into_parts();
                Ok((added(c, id), vec![ticket]))
            }),
            Request::MsgSend {
                circle,
                text,
                attachments,
            } => self.write(&circle, now, |c, me, _| {
                if text.trim().is_empty() {
                    return Err(NodeError::BadRequest(
                        "the message is empty: give its text in quotes".into(),
                    ));
                }
                let author = me.member();
                let (id, ticket) = c
                    .edit_thread(me, now, |t| t.send(author, &text, &attachments, now))?
                    .into_parts();
                Ok((added(c, id), vec![ticket]))
            }),
            Request::MsgList { circle, mark_read } => self.write(&circle, now, |c, me, _| {
                let mut tickets = Vec::new();
                let by = me.member();
                let unread: Vec<String> = c
                    .thread
                    .messages()
                    .into_iter()
                    .filter(|m| m.author != by && m.read_by.iter().all(|r| r.by != by))
                    .map(|m| m.id)
                    .collect();
                if mark_read && !unread.is_empty() {
                    let (_, ticket) = c
                        .edit_thread(me, now, |t| {
                            unread
                                .iter()
                                .try_for_each(|id| t.mark_read(by, id, now).map(|_| ()))
                        })?
                        .into_parts();
                    tickets.push(ticket);
                }
                Ok((
                    Answer::Messages {
                        messages: care::messages(c),
                    },
                    tickets,
                ))
            }),
            Request::TaskAdd {
                circle,
                title,
                owner,
                due,
            } => self.write(&circle, now, |c, me, _| {
                let owner = owner.map(|o| c.find_member(&o)).transpose()?;
                let owner_hex = owner.map(|m| m.to_hex());
                let mut fields = vec![("title", title.as_str()), ("status", "open")];
                if let Some(o) = &owner_hex {
                    fields.push(("owner", o.as_str()));
                }
                if let Some(d) = &due {
                    fields.push(("due", d.as_str()));
                }
                let author = me.member();
                let (id, ticket) = c
                    .edit_patient_file(me, now, |pf| {
                        pf.add_item(author, cercle_crdt::ItemList::Tasks, &fields, now)
                    })?
                    .into_parts();
                Ok((added(c, id), vec![ticket]))
            }),
            Request::TaskList { circle } => {
                let c = self.circles.find(&circle)?;
                Ok(Handled::now(Answer::Tasks {
                    tasks: care::tasks(c),
                }))
            }
            Request::TaskDone { circle, task } => self.write(&circle, now, |c, me, _| {
                let id = care::pick_id("task", &task, care::tasks(c).into_iter().map(|t| t.id))?;
                let author = me.member();
                let (_, ticket) = c
                    .edit_patient_file(me, now, |pf| pf.complete_task(author, &id, now))?
                    .into_parts();
                Ok((
                    Answer::Tasks {
                        tasks: care::tasks(c),
                    },
                    vec![ticket],
                ))
            }),
            Request::DocAdd {
                circle,
                name,
                media_type,
                content,
            } => self.write(&circle, now, |c, me, store| {
                let bytes = hex::decode(&content).map_err(|_| {
                    NodeError::BadRequest("the document's content is not hex".into())
                })?;
                if bytes.len() > care::MAX_DOCUMENT_BYTES {
                    return Err(NodeError::BadRequest(format!(
                        "the document is {} bytes; at most {} are accepted",
                        bytes.len(),
                        care::MAX_DOCUMENT_BYTES
                    )));
                }
                let mut batch = Batch::new();
                let blob = hex::encode(batch.blob(&bytes));
                let stored = store.submit(batch);
                let size = bytes.len().to_string();
                let author = me.member();
                let (id, ticket) = c
                    .edit_patient_file(me, now, |pf| {
                        pf.add_item(
                            author,
                            cercle_crdt::ItemList::Documents,
                            &[
                                ("name", name.as_str()),
                                ("media_type", media_type.as_str()),
                                ("size", size.as_str()),
                                ("blob", blob.as_str()),
                            ],
                            now,
                        )
                    })?
                    .into_parts();
                Ok((added(c, id), vec![stored, ticket]))
            }),
            Request::DocList { circle } => {
                let store = self.circles.store.clone();
                let c = self.circles.find(&circle)?;
                Ok(Handled::now(Answer::Documents {
                    documents: care::documents(c, store.as_ref()),
                }))
            }
            Request::DocGet { circle, doc } => self.document(&circle, &doc, now.millis()),
            Request::Export { circle, format } => {
                let store = self.circles.store.clone();
                let c = self.circles.find(&circle)?;
                let files = care::export(c, store.as_ref(), format, now)?;
                Ok(Handled::now(Answer::Export { files }))
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

    /// A document's row, and its content if this node holds it; otherwise its fetch from
    /// the connected members starts (or goes on), and the answer says how far it got.
    fn document(&mut self, circle: &str, doc: &str, now: i64) -> Result<Handled, NodeError> {
        let store = self.circles.store.clone();
        let c = self.circles.find(circle)?;
        let id = c.id();
        let rows = care::documents(c, store.as_ref());
        let picked = care::pick_id("document", doc, rows.iter().map(|d| d.id.clone()))?;
        let Some(document) = rows.into_iter().find(|d| d.id == picked) else {
            return Err(NodeError::BadRequest(format!("no document {doc:?}")));
        };
        let hash = care::blob_hash(&document.blob).ok_or_else(|| {
            NodeError::BadRequest(format!("the document {:?} names no content", document.name))
        })?;
        if let Some(content) = store.blob(&hash)? {
            let received = content.len() as u64;
            return Ok(Handled::now(Answer::Document {
                document,
                content: Some(hex::encode(&content)),
                received,
            }));
        }
        if !self.running {
            return Err(NodeError::BadRequest(format!(
                "the content of {:?} is not on this node yet; start the node with `cercle up` to fetch it from the circle's members",
                document.name
            )));
        }
        let after = self.fetch_blob(id, hash, document.size, now);
        let received = self.fetch_progress(&hash).unwrap_or(0);
        Ok(Handled {
            answer: Answer::Document {
                document,
                content: None,
                received,
            },
            tickets: Vec::new(),
            after,
        })
    }

    /// Runs a write on one circle, then pushes what it sealed to the connected members
    /// once durable (and says `Hello` again if the write started a new key epoch).
    fn write(
        &mut self,
        circle: &str,
        now: Timestamp,
        f: impl FnOnce(
            &mut Circle,
            &LocalIdentity,
            &dyn Store,
        ) -> Result<(Answer, Vec<Ticket>), NodeError>,
    ) -> Result<Handled, NodeError> {
        let store = self.circles.store.clone();
        let c = self.circles.find(circle)?;
        let heads_before = c.membership().heads();
        let result = f(c, &self.me, store.as_ref());
        let id = c.id();
        // Changes made before an error are durable too, and pushed like the others.
        let sealed = c.take_sealed();
        let rotated = c.membership().heads() != heads_before;
        let after = self.pass_on(id, None, sealed, rotated, now.millis());
        let (answer, tickets) = result?;
        Ok(Handled {
            answer,
            tickets,
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
        let mut after = self.pass_on(id, None, Vec::new(), true, now.millis());
        after.extend(self.publish_profile(id, now.millis()));
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
        at: Timestamp,
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
        self.write(circle, now, |c, me, _| {
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
                let (written, ticket) = c.add_notes(me, entries, at)?.into_parts();
                ids.extend(written);
                tickets.push(ticket);
            }
            let answer = Answer::Added {
                circle: c.info().id.clone(),
                ids,
            };
            Ok((answer, tickets))
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
    let profiles = c.profiles();
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
                name: profiles.get(m).map(|p| p.name.clone()),
                profession: profiles.get(m).map(|p| p.profession.clone()),
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

/// The answer to a write that made one item.
fn added(c: &Circle, id: String) -> Answer {
    Answer::Added {
        circle: c.info().id.clone(),
        ids: vec![id],
    }
}

#[cfg(test)]
mod tests;
