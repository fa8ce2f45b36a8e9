//! A Cercle node: everything a member's device runs, below the command line.
//!
//! Today a node keeps its member's identity and circles on disk and writes to their documents;
//! signed membership, envelopes, the store, sync, the network, the relay and the local API
//! are added module by module (see `ARCHITECTURE.md`).
//!
//! # Layout
//!
//! - [`identity`]: member and device keys, device certificates, contact cards, profiles.
//! - [`keyfile`]: the secret keys encrypted at rest (Argon2id + XChaCha20-Poly1305).
//! - [`home`]: the home directory and its crash-safe file writes.
//! - [`circle`]: circles of care, their signed membership log and three documents.
//! - [`crypto`]: epoch keys, HPKE sealing to devices, payload encryption.
//! - [`envelope`]: the signed, encrypted unit of replication and its receive checks.
//! - [`store`]: the durable, encrypted store (sled plus a journal) and its group commit.
//! - [`sync`]: the sans-I/O sync protocol between two nodes.
#![forbid(unsafe_code)]

pub mod circle;
pub mod crypto;
pub mod envelope;
pub mod home;
pub mod identity;
pub mod keyfile;
pub mod store;
pub mod sync;

pub use circle::{Circle, CircleError, CircleInfo};
pub use home::{Home, HomeError};
pub use identity::{
    CardError, ContactCard, DeviceCertificate, DeviceId, LocalIdentity, Profile, ProfileError,
    PublicIdentity,
};
pub use keyfile::{KdfParams, KeyFile, KeyFileError};
