//! One module per command, each with its arguments next to its handler.

pub(crate) mod circle;
pub(crate) mod demo;
pub(crate) mod init;
pub(crate) mod note;
pub(crate) mod relay;
pub(crate) mod repair;
pub(crate) mod up;
