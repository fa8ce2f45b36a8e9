//! `cercle relay`: run a relay for the circles of a region or a hospital, in the foreground
//! (or under systemd: `deploy/cercle-relay.service`).

use cercle_node::relay::{self, RelayConfig, RelayReady};

use crate::Context;
use crate::cmd::up::{parse_addresses, shutdown_signal};

#[derive(Debug, clap::Args)]
pub(crate) struct RelayArgs {
    /// Listen on this multiaddress (repeatable). Default: TCP and QUIC on port 4001 of every
    /// interface.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Serve Prometheus metrics (/metrics) and a health check (/health) on this address,
    /// e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
}

pub(crate) fn run(ctx: &Context, args: RelayArgs) -> anyhow::Result<()> {
    let config = RelayConfig {
        home: ctx.home.root().to_path_buf(),
        listen: parse_addresses("--listen", &args.listen)?,
        metrics: args.metrics,
    };
    let json = ctx.json;
    let ready = move |r: RelayReady| {
        if json {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
        } else {
            println!("relay {}", r.peer_id);
            for a in &r.addresses {
                println!("  {a}");
            }
            if let Some(m) = r.metrics {
                println!("metrics http://{m}/metrics");
            }
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(relay::run(config, ready, shutdown_signal()))?;
    Ok(())
}
