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
    /// Adds notes to the liaison notebook; answered once they are durable.
    NoteAdd {
        circle: String,
        texts: Vec<String>,
        kind: EntryKind,
    },
    /// The notebook's notes, oldest first.
    NoteList { circle: String },
    /// Dials a peer's multiaddress.
    Connect { address: String },
}

/// A node's answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Answer {
    Status(Status),
    Card { card: String },
    Circles { circles: Vec<CircleInfo> },
    Circle(CircleSummary),
    Added { circle: String, ids: Vec<String> },
    Notes { notes: Vec<NoteRow> },
    Done,
}

/// The node's network state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// The libp2p peer id (derived from the device key).
    pub peer_id: String,
    /// The device id.
    pub device: String,
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

pub mod server;
