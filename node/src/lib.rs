//! A Cercle node: everything a member's device runs, below the command line.
//!
//! A node keeps its member's identity and circles on disk, writes to their documents, and
//! replicates them with the other members' nodes over libp2p (see `ARCHITECTURE.md`).
//!
//! # Layout
//!
//! - [`identity`]: member and device keys, device certificates, contact cards, profiles.
//! - [`directory`]: the health-professional directory's public extract, and members'
//!   signed profiles checked against it.
//! - [`keyfile`]: the secret keys encrypted at rest (Argon2id + XChaCha20-Poly1305).
//! - [`home`]: the home directory and its crash-safe file writes.
//! - [`circle`]: circles of care, their signed membership log and three documents.
//! - [`crypto`]: epoch keys, HPKE sealing to devices, payload encryption.
//! - [`textcode`]: the checksummed text form of contact cards and invite codes.
//! - `reader`: the bounds-checked cursor the binary formats are read with.
//! - [`invite`]: invite codes and the inviter's check of a join.
//! - [`envelope`]: the signed, encrypted unit of replication and its receive checks.
//! - [`store`]: the durable, encrypted store (sled plus a journal) and its group commit.
//! - [`sync`]: the sans-I/O sync protocol between two nodes, and its wire format.
//! - [`net`]: the libp2p swarm and the sync stream protocol.
//! - [`node`]: the running node: its core (circles and peers) and the async shell around it.
//! - [`ops`]: what a user can ask of a node, one module per operation, and [`ops::NodeError`].
//! - [`api`]: the local HTTP API and web UI that carry those requests.
//! - [`mailbox`]: the relay's store of envelopes for offline members, checked without keys.
//! - `bucket`: token buckets per peer device, for what a peer may make this program do.
//! - `refusals`: what a node or a relay refused from each peer device, how much of it is
//!   written down, and which devices are set aside.
//! - [`relay`]: the relay node for operators (circuit relay, AutoNAT, mailbox, introductions, metrics).
#![forbid(unsafe_code)]

pub mod api;
mod bucket;
pub mod circle;
pub mod crypto;
pub mod directory;
pub mod emergency;
pub mod envelope;
pub mod home;
pub mod identity;
pub mod invite;
pub mod keyfile;
pub mod mailbox;
pub mod net;
pub mod node;
pub mod notify;
pub mod ops;
pub mod pairing;
mod reader;
mod refusals;
pub mod relay;
pub mod store;
pub mod sync;
pub mod textcode;
pub mod tombstone;

pub use circle::{Circle, CircleError, CircleInfo};
pub use home::{Home, HomeError};
pub use identity::{
    CardError, ContactCard, DeviceCertificate, DeviceId, LocalIdentity, Profile, ProfileError,
    PublicIdentity,
};
pub use keyfile::{KdfParams, KeyFile, KeyFileError};
