//! The care data model of Cercle on Automerge: the documents a circle of care shares, their
//! typed reads and writes, and the validation every received change passes before it is
//! applied.
//!
//! This crate is pure: no I/O, no async, no clock (times are inputs), no keys. Who wrote a
//! change and with which role is established by the caller (the node, from signed envelopes
//! and the circle's membership log); this crate decides whether that author may write it.
//!
//! # Layout
//!
//! - [`member`]: member ids, roles, timestamps.
//! - [`schema`]: the schema of every document kind, as data, and value checks (dates, INS).
//! - [`document`]: what the kinds share: deterministic genesis, item ids, typed field reads.
//! - [`replica`]: a device's replica of one document: load, save, local writes, validated
//!   merges.
//! - [`patient_file`], [`notebook`], [`thread`]: the three document kinds.
//! - [`validation`]: the change validator and its [`Rejection`] reasons.
//! - [`fhir`]: a circle's documents as one FHIR R4 bundle, for other care systems.
#![forbid(unsafe_code)]

pub mod document;
pub mod fhir;
pub mod member;
pub mod notebook;
pub mod patient_file;
pub mod replica;
pub mod schema;
pub mod thread;
pub mod validation;
pub mod vitals;

pub use automerge::{ActorId, Change, ChangeHash};
pub use document::{DocKind, WriteError};
pub use member::{MemberId, Role, Timestamp};
pub use notebook::{
    Acknowledgement, Addressee, Amendment, Entry, EntryKind, LiaisonNotebook, NewEntry, Vitals,
};
pub use patient_file::{
    CONTACT_ROLES, Consent, ConsentStatus, ITEM_HISTORY, Identity, IdentityDocument,
    IdentityStatus, IdentityUpdate, Item, ItemList, PatientFile,
};
pub use replica::{LoadError, Replica};
pub use thread::{Message, PublishedProfile, ReadReceipt, Thread};
pub use validation::{ChangeAuthor, Rejection, validate_changes};
pub use vitals::{Sign, TypedVitalsError, parse_typed};
