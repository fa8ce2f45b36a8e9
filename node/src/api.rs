//! The node's local API: the HTTP server that carries users' [`Request`]s (the `cercle`
//! command, the web UI) to the running node, its files in the home, and the live
//! [`NodeEvent`]s.
//!
//! The server listens on 127.0.0.1 only. Every call must carry the random token the node
//! keeps in its home (`api-token` and `api.json`, mode 0600; see [`token`]) as
//! `Authorization: Bearer <token>`, and a `Host` header naming 127.0.0.1 or localhost (so a
//! web page cannot reach it through DNS rebinding); a client first checks, with
//! `GET /api/v1/hello`, that the listener knows the token before sending it. `POST /api/v1/call` takes one JSON [`Request`] and returns its JSON
//! [`Answer`], or `{"kind": "...", "error": "<one sentence>"}` with the status of its
//! [`ErrorKind`](crate::ops::ErrorKind). `GET /api/v1/events` streams [`NodeEvent`]s as JSON
//! lines.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::ops::status::{NodeStatus, PeerRow};
pub use crate::ops::{Answer, ErrorKind, NodeError, Request};

/// The file in the home where a running node records its API address and token.
pub const API_FILE: &str = "api.json";
/// The API token, kept across restarts (mode 0600) so the UI's links stay valid.
pub const TOKEN_FILE: &str = "api-token";
/// The API port chosen the first time, reused at the next start when free.
pub const PORT_FILE: &str = "api-port";

/// Something that happened in the node, for live views.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeEvent {
    /// Envelopes from a peer were applied.
    Applied {
        circle: String,
        doc: String,
        count: usize,
        /// When the node published it (microseconds since the epoch): once the envelopes
        /// were checked and applied.
        at_micros: i64,
    },
    /// A peer connected or left.
    Peer { peer_id: String, connected: bool },
    /// A member added this node to a circle: it waits for the user's answer.
    Invited { circle: String },
    /// An alert from another member, addressed to this node's member, arrived: `open`
    /// alerts wait for them in the circle.
    Alert { circle: String, open: usize },
    /// Alerts addressed to this node's member waited unacknowledged longer than the
    /// circle's reminder delay: `open` alerts wait for them in the circle.
    Reminder { circle: String, open: usize },
    /// A circle's sharing ended here (closed and shredded, or suspended by the patient's
    /// objection), or a relay's deletion receipt for it came.
    Closed { circle: String },
}

impl NodeEvent {
    /// Dates the event at its publication: the core decides at the time of its input, the
    /// shell publishes once the core is done with it.
    pub fn published(mut self, micros: i64) -> NodeEvent {
        if let NodeEvent::Applied { at_micros, .. } = &mut self {
            *at_micros = micros;
        }
        self
    }
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

pub mod lan;
pub mod openapi;
pub mod phones;
pub mod server;
mod session;
pub mod token;
mod ui;
mod web;

pub use token::ApiToken;
