//! One module per command, each with its arguments next to its handler.

pub(crate) mod audit;
pub(crate) mod carry;
pub(crate) mod circle;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod device;
pub(crate) mod directory;
pub(crate) mod doc;
pub(crate) mod emergency;
pub(crate) mod export;
pub(crate) mod init;
pub(crate) mod invite;
pub(crate) mod msg;
pub(crate) mod note;
pub(crate) mod pair;
pub(crate) mod patient;
pub(crate) mod relay;
pub(crate) mod repair;
pub(crate) mod task;
pub(crate) mod up;
