//! One command's access to the node: the unlocked identity and the home's open store.
//!
//! Opening the store takes the home's lock, so two commands (or a command and a running
//! node) never write the same store at once. A store rebuilt from its journal is reported
//! on stderr, since it means the disk or the machine had a problem.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cercle_node::LocalIdentity;
use cercle_node::store::{SledStore, Store, StoreError};

use crate::Context;
use crate::passphrase::unlock;

/// An unlocked identity and its open store.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) me: LocalIdentity,
    pub(crate) store: Arc<SledStore>,
}

impl Session {
    /// Unlocks the home's identity and opens its store.
    pub(crate) fn open(ctx: &Context) -> anyhow::Result<Session> {
        Session::open_waiting(ctx, Duration::ZERO)
    }

    /// Like [`Session::open`], waiting up to `patience` for another command to release the
    /// store (a node starting while a command still reads the store waits for it).
    pub(crate) fn open_waiting(ctx: &Context, patience: Duration) -> anyhow::Result<Session> {
        let me = unlock(&ctx.home)?;
        let deadline = Instant::now() + patience;
        let store = loop {
            match ctx.home.open_store(&me) {
                Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => break other?,
            }
        };
        let report = store.report();
        if report.rebuilt {
            let aside = report
                .moved_aside
                .as_ref()
                .map(|p| format!(" (the damaged files are kept in {})", p.display()))
                .unwrap_or_default();
            eprintln!(
                "warning: the store's database could not be opened and was rebuilt from its journal ({} batches){aside}.",
                report.replayed
            );
        }
        Ok(Session {
            me,
            store: Arc::new(store),
        })
    }

    /// The store, as the node library takes it.
    pub(crate) fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}
