//! `cercle init --pair CODE`: makes this home a new device of a member. The new device's
//! keys are made here; a node runs just long enough to reach the first device, prove the
//! code and receive the certificate (see `cercle_node::pairing`); then the home keeps the
//! device keys and that certificate, never the member key.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cercle_node::net::NetConfig;
use cercle_node::node::{self, NodeConfig, NodeHandle};
use cercle_node::ops::devices::{PairStatus, PairWith};
use cercle_node::pairing::PairCode;
use cercle_node::{KdfParams, LocalIdentity, Profile, PublicIdentity};

use crate::Context;
use crate::output::{now, progress_spinner};

/// Pairs this (new) home with the first device that made `code`; returns the identity kept.
pub(crate) fn pair(
    ctx: &Context,
    code: &str,
    timeout: u64,
    insecure: bool,
) -> anyhow::Result<PublicIdentity> {
    let parsed = PairCode::decode(code)?;
    parsed.check_expiry(now().millis())?;
    let root = ctx.home.root().to_path_buf();
    if ctx.home.identity().is_ok() {
        anyhow::bail!(
            "{} already holds an identity; pair a new home (`--home DIR`)",
            root.display()
        );
    }
    let fresh = !root.exists();
    // The passphrase is chosen first, while the person is at the keyboard.
    let pass = if insecure {
        None
    } else {
        Some(crate::passphrase::choose()?)
    };
    let result = pair_in(ctx, code, timeout);
    let identity = match result {
        Ok(identity) => identity,
        Err(e) => {
            // Nothing of a failed pairing is kept: the home was made for it.
            if fresh {
                let _ = std::fs::remove_dir_all(&root);
            } else {
                let _ = std::fs::remove_dir_all(ctx.home.store_dir());
            }
            return Err(e);
        }
    };
    let public = identity.public();
    match pass {
        Some(p) => ctx.home.init(&identity, Some(&p), KdfParams::DEFAULT)?,
        None => ctx.home.init(&identity, None, KdfParams::FAST_INSECURE)?,
    }
    Ok(public)
}

/// Runs a node with the new device's keys until the first device answered.
fn pair_in(ctx: &Context, code: &str, timeout: u64) -> anyhow::Result<LocalIdentity> {
    // The device keys; the member key drawn with them is a placeholder, dropped once the
    // first device's certificate arrives.
    let placeholder = Profile::new("new device", "pairing", None, None)?;
    let keys = LocalIdentity::generate(placeholder, now())?;
    let (secrets, public) = (keys.secrets(), keys.public());
    let store = Arc::new(
        ctx.home
            .open_store(&keys)
            .context("opening the new device's store")?,
    );
    let config = NodeConfig {
        // The new device only dials out, to the addresses in the code.
        net: NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            peers: Vec::new(),
            mdns: false,
            relays: Vec::new(),
        },
        api: None,
        home: ctx.home.root().to_path_buf(),
        webhook: None,
        ui_listen: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let handle: Arc<Mutex<Option<NodeHandle>>> = Arc::default();
    let slot = handle.clone();
    let ready = move |_: &cercle_node::api::ApiFile, h: &NodeHandle| {
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(h.clone());
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let code = code.to_string();
    let outcome = runtime.block_on(async move {
        let follow = async {
            let h = loop {
                if let Some(h) = handle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
                {
                    break h;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let outcome = follow(&h, code, timeout).await;
            let _ = stop.send(());
            outcome
        };
        let run = node::run(store, keys, config, ready, async {
            let _ = stopped.await;
        });
        let (ran, followed) = tokio::join!(run, follow);
        ran?;
        followed
    });
    let identity = outcome?;
    Ok(LocalIdentity::from_secrets(&secrets, public)?.paired(identity)?)
}

/// Follows the pairing until the first device answers or `timeout` seconds pass.
async fn follow(h: &NodeHandle, code: String, timeout: u64) -> anyhow::Result<PublicIdentity> {
    let spinner = progress_spinner("reaching your first device");
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut view = h.ask(PairWith { code }).await?;
    while view.state == "reaching" {
        if Instant::now() > deadline {
            spinner.finish_and_clear();
            anyhow::bail!(
                "your first device could not be reached within {timeout} s: its node must be running (`cercle up`), on this network or through a relay it uses; try again"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        view = h.ask(PairStatus {}).await?;
    }
    spinner.finish_and_clear();
    match view.identity {
        Some(identity) if view.state == "paired" => Ok(identity),
        _ => anyhow::bail!(
            "your first device refused: {}",
            view.reason.unwrap_or_else(|| "no reason given".into())
        ),
    }
}
