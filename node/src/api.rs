//! The node's local API: the [`Request`]s a user (the `cercle` command, later the web UI) can
//! make of a node and their [`Answer`]s, and the HTTP server that carries them while the
//! node runs.
//!
//! The server listens on 127.0.0.1 only. Every call must carry the random token the node
//! writes into its home (`api.json`, mode 0600) as `Authorization: Bearer <token>`, and a
//! `Host` header naming 127.0.0.1 or localhost (so a web page cannot reach it through DNS
//! rebinding). `POST /api/v1/call` takes one JSON [`Request`] and returns its JSON
//! [`Answer`], or `{"error": "<one sentence>"}` with status 400. `GET /api/v1/events` streams
//! [`NodeEvent`]s as JSON lines.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cercle_crdt::{EntryKind, Role};
use serde::{Deserialize, Serialize};

use crate::circle::CircleInfo;

/// The file in the home where a running node records its API address and token.
pub const API_FILE: &str = "api.json";
/// The API token, kept across restarts (mode 0600) so the UI's links stay valid.
pub const TOKEN_FILE: &str = "api-token";
/// The API port chosen the first time, reused at the next start when free.
pub const PORT_FILE: &str = "api-port";

/// Something a user asks of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// The node's network identity, addresses and peers.
    Status,
    /// This member's contact card, with the node's addresses.
    Card,
    /// The circles held here.
    CircleList,
    /// A new circle around a patient ("Jeanne Marie Durand": the last word is the family name).
    CircleCreate {
        patient: String,
        birth_date: Option<String>,
    },
    /// A circle's members and key epoch.
    CircleShow { circle: String },
    /// Adds the member of a contact card (and dials the addresses it carries).
    MemberAdd {
        circle: String,
        card: String,
        role: Role,
    },
    /// Removes a member by id prefix or name.
    MemberRemove { circle: String, member: String },
    /// Changes a member's role.
    RoleChange {
        circle: String,
        member: String,
        role: Role,
    },
    /// Names the relays the circle uses (replacing the earlier list; empty for none).
    RelaysSet { circle: String, relays: Vec<String> },
    /// A one-time invite code to the circle, for the role given (coordinators only).
    InviteCreate {
        circle: String,
        role: Role,
        /// Seconds from now until the code expires.
        expires_in: u64,
    },
    /// Joins a circle with an invite code: reaches the inviter and proves the code's secret.
    /// Follow it with [`Request::JoinStatus`].
    Join { code: String },
    /// Where a join started with [`Request::Join`] stands.
    JoinStatus { invite: String },
    /// The patient file.
    PatientShow { circle: String },
    /// Changes to the patient file (fields left `None` are unchanged).
    PatientSet {
        circle: String,
        #[serde(default)]
        change: Box<PatientChange>,
    },
    /// Adds notes to the liaison notebook; answered once they are durable. `at` dates them
    /// (a visit written up afterwards); it may not be in the future.
    NoteAdd {
        circle: String,
        texts: Vec<String>,
        kind: EntryKind,
        #[serde(default)]
        at: Option<i64>,
    },
    /// The notebook's notes, oldest first.
    NoteList { circle: String },
    /// Corrects one of this member's notes (the original stays visible as amended).
    NoteAmend {
        circle: String,
        note: String,
        text: String,
    },
    /// Acknowledges an alert.
    NoteAck { circle: String, note: String },
    /// Sends a message to the circle.
    MsgSend {
        circle: String,
        text: String,
        #[serde(default)]
        attachments: Vec<String>,
    },
    /// The circle's messages, oldest first; `mark_read` records this member's read
    /// receipts for those not read yet.
    MsgList {
        circle: String,
        #[serde(default)]
        mark_read: bool,
    },
    /// Adds a task to the care plan.
    TaskAdd {
        circle: String,
        title: String,
        #[serde(default)]
        owner: Option<String>,
        #[serde(default)]
        due: Option<String>,
    },
    /// The care plan's tasks.
    TaskList { circle: String },
    /// Marks a task done.
    TaskDone { circle: String, task: String },
    /// Adds a document (a file) to the patient file.
    DocAdd {
        circle: String,
        name: String,
        media_type: String,
        /// The file's bytes, hex.
        content: String,
    },
    /// The patient file's documents.
    DocList { circle: String },
    /// A document's bytes; fetched from connected members if not held here yet.
    DocGet { circle: String, doc: String },
    /// The circle's documents in a portable form.
    Export {
        circle: String,
        format: ExportFormat,
    },
    /// Dials a peer's multiaddress.
    Connect { address: String },
}

/// Changes to a patient file; `None` leaves a part as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PatientChange {
    pub family_name: Option<String>,
    pub given_names: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub ins: Option<String>,
    /// Marks the identity as checked against an identity document.
    pub verify: bool,
    pub consent: Option<String>,
    pub consent_scope: Option<String>,
    pub care_plan: Option<String>,
    pub problem: Option<String>,
    pub allergy: Option<String>,
    pub medication: Option<String>,
    pub contact: Option<String>,
}

/// The form of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Each document in Automerge's binary save format.
    Automerge,
    /// The circle's content as one JSON document.
    Json,
    /// The circle as one FHIR R4 `Bundle` (JSON) for other care systems.
    Fhir,
}

/// A node's answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Answer {
    Status(Status),
    Card {
        card: String,
    },
    Circles {
        circles: Vec<CircleInfo>,
    },
    Circle(CircleSummary),
    Added {
        circle: String,
        ids: Vec<String>,
    },
    Notes {
        notes: Vec<NoteRow>,
    },
    Invite(InviteView),
    Join(JoinView),
    Patient(Box<PatientView>),
    Messages {
        messages: Vec<MessageRow>,
    },
    Tasks {
        tasks: Vec<TaskRow>,
    },
    Documents {
        documents: Vec<DocumentRow>,
    },
    /// A document's bytes (hex), or `None` while it is being fetched.
    Document {
        document: DocumentRow,
        content: Option<String>,
        /// Bytes received so far while fetching.
        received: u64,
    },
    Export {
        files: Vec<ExportFile>,
    },
    Done,
}

/// A new invite.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteView {
    /// The code to hand over (single use).
    pub code: String,
    pub circle: String,
    pub role: Role,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
    /// Where the invitee's node will reach this one.
    pub addresses: Vec<String>,
}

/// Where a join stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinView {
    pub invite: String,
    pub circle: String,
    /// `reaching` (looking for the inviter), `accepted` (added, receiving the circle),
    /// `joined` (the circle is here) or `refused`.
    pub state: String,
    /// Why the inviter refused.
    pub reason: Option<String>,
}

/// The patient file, for people.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatientView {
    pub circle: String,
    pub family_name: Option<String>,
    pub given_names: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub ins: Option<String>,
    /// `provisional` or `verified`.
    pub identity_status: String,
    pub verified_by: Option<String>,
    /// `given`, `refused` or `withdrawn`; `None` if never recorded.
    pub consent: Option<String>,
    pub consent_scope: Option<String>,
    pub care_plan: String,
    pub problems: Vec<ItemRow>,
    pub allergies: Vec<ItemRow>,
    pub medications: Vec<ItemRow>,
    pub contacts: Vec<ItemRow>,
    pub tasks: Vec<TaskRow>,
    pub documents: Vec<DocumentRow>,
}

/// One item of a patient file list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemRow {
    pub id: String,
    pub fields: std::collections::BTreeMap<String, String>,
    pub added_by: String,
    pub added_at: String,
}

/// One task of the care plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRow {
    pub id: String,
    pub title: String,
    pub owner: Option<String>,
    pub owner_name: Option<String>,
    pub due: Option<String>,
    /// `open` or `done`.
    pub status: String,
    pub done_by: Option<String>,
    pub added_by: String,
}

/// One document of the patient file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentRow {
    pub id: String,
    pub name: String,
    pub media_type: String,
    pub size: u64,
    /// The content's BLAKE3 hash (hex).
    pub blob: String,
    /// Whether this node holds the content.
    pub here: bool,
    pub added_by: String,
    pub added_at: String,
}

/// One message of the circle's thread.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRow {
    pub id: String,
    pub author: String,
    pub author_name: Option<String>,
    pub text: String,
    pub at: String,
    pub at_millis: i64,
    pub attachments: Vec<String>,
    /// Who read it (member ids), and when.
    pub read_by: Vec<ReceiptRow>,
}

/// One read receipt or acknowledgement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptRow {
    pub by: String,
    pub by_name: Option<String>,
    pub at: String,
    pub at_millis: i64,
}

/// One exported file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportFile {
    pub name: String,
    /// The file's bytes, hex.
    pub content: String,
}

/// The node's network state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// The libp2p peer id (derived from the device key).
    pub peer_id: String,
    /// The device id.
    pub device: String,
    /// The member this node belongs to.
    pub member: String,
    /// Listen addresses, each ending in `/p2p/<peer_id>`.
    pub addresses: Vec<String>,
    /// Connected peers.
    pub peers: Vec<PeerRow>,
    /// Whether the node is running (false when the command opened the store itself).
    pub running: bool,
}

/// One connected peer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerRow {
    pub peer_id: String,
    pub device: String,
    /// The circles this node shares with the peer's device (ids).
    pub circles: Vec<String>,
    /// Envelope ranges and envelopes queued for the peer.
    pub pending: usize,
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Bytes of operations and envelopes sent to and received from the peer.
    pub data_bytes_sent: u64,
    pub data_bytes_received: u64,
    /// Milliseconds since the epoch of the last message from the peer.
    pub last_seen: Option<i64>,
}

/// A circle, its members and key epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CircleSummary {
    pub id: String,
    pub patient: String,
    pub epoch: Option<String>,
    pub closed: bool,
    pub members: Vec<MemberRow>,
    pub removed: Vec<String>,
    /// The relays the circle uses.
    pub relays: Vec<String>,
    pub void_operations: usize,
    pub waiting_operations: usize,
    pub refused: usize,
}

/// One member of a circle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRow {
    pub member: String,
    pub name: Option<String>,
    pub profession: Option<String>,
    pub role: Role,
    pub devices: Vec<String>,
}

/// One note of the liaison notebook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoteRow {
    pub id: String,
    pub author: String,
    /// The author's name, when their card was seen here.
    pub author_name: Option<String>,
    pub kind: String,
    pub text: String,
    pub at: String,
    pub at_millis: i64,
    pub amended: bool,
    /// For alerts: who acknowledged it.
    pub acks: Vec<ReceiptRow>,
}

/// Something that happened in the node, for live views.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeEvent {
    /// Envelopes from a peer were applied.
    Applied {
        circle: String,
        doc: String,
        count: usize,
        at_micros: i64,
    },
    /// A peer connected or left.
    Peer { peer_id: String, connected: bool },
}

/// Where a running node's API is, as written in the home.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiFile {
    pub address: SocketAddr,
    pub token: String,
    pub pid: u32,
}

/// Why the API file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
}

impl ApiFile {
    /// Writes the file readable by its owner only.
    pub fn write(&self, home: &Path) -> Result<(), ApiError> {
        let path = home.join(API_FILE);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ApiError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        crate::home::write_private(&path, &bytes).map_err(|e| ApiError::Write {
            path,
            reason: e.to_string(),
        })
    }

    /// Reads the file, if a node wrote one.
    pub fn read(home: &Path) -> Result<Option<ApiFile>, ApiError> {
        let path = home.join(API_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ApiError::Read {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ApiError::Read {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// Removes the file (on a clean stop).
    pub fn remove(home: &Path) {
        let _ = std::fs::remove_file(home.join(API_FILE));
    }
}

/// The home's API token: the one kept in [`TOKEN_FILE`], or a new one written there.
pub fn home_token(home: &Path) -> Result<String, ApiError> {
    let path = home.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() == 64 && t.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Ok(t.trim().to_string());
        }
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the API token file is damaged; a new token is made")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ApiError::Read {
                path,
                reason: e.to_string(),
            });
        }
    }
    let token = server::new_token().map_err(|reason| ApiError::Write {
        path: path.clone(),
        reason,
    })?;
    crate::home::write_private(&path, token.as_bytes()).map_err(|e| ApiError::Write {
        path,
        reason: e.to_string(),
    })?;
    Ok(token)
}

/// The API port recorded in the home by an earlier start, if any.
pub fn recorded_port(home: &Path) -> Option<u16> {
    std::fs::read_to_string(home.join(PORT_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p != 0)
}

/// Records the API port for the next start.
pub fn record_port(home: &Path, port: u16) -> Result<(), ApiError> {
    let path = home.join(PORT_FILE);
    crate::home::write_atomic(&path, port.to_string().as_bytes()).map_err(|e| ApiError::Write {
        path,
        reason: e.to_string(),
    })
}

pub mod openapi;
pub mod server;
mod ui;
mod web;
