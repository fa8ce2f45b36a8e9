//! `cercle relay`: run a relay for the circles of a region or a hospital, in the foreground
//! (or under systemd: `deploy/cercle-relay.service`).

use std::time::Duration;

use anyhow::Context as _;
use cercle_node::mailbox::{Mailbox, MailboxLimits};
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
    /// An address members reach this relay at, if not its listen addresses (repeatable):
    /// behind a NAT or a load balancer, e.g. /dns4/relay.example.org/tcp/4001.
    #[arg(long, value_name = "MULTIADDR")]
    external: Vec<String>,
    /// Envelope bytes the mailbox keeps per circle, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    circle_quota_mib: u64,
    /// Envelopes the mailbox keeps per circle.
    #[arg(long, value_name = "COUNT", default_value_t = 200_000)]
    circle_quota_envelopes: u64,
    /// Keep a mailbox for any circle a current member pushes, not only for the circles that
    /// name this relay (`cercle circle relays`, the default).
    #[arg(long)]
    open_mailbox: bool,
    /// Envelope bytes the mailbox keeps for all circles together, in GiB: keep it below
    /// the free space of the relay's disk.
    #[arg(long, value_name = "GIB", default_value_t = 16)]
    mailbox_quota_gib: u64,
    /// New circles one member device may bring to the mailbox at once; then one a minute.
    #[arg(long, value_name = "COUNT", default_value_t = 1500)]
    new_circles_burst: u32,
    /// Days a circle's mailbox is kept after its last new envelope.
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    retention_days: u64,
    /// Print what the mailbox holds, per circle (sizes and timing only), and exit. The relay
    /// must be stopped.
    #[arg(long, conflicts_with = "dump")]
    inspect: bool,
    /// Print every record of the mailbox (hex, one JSON object per line) and exit. The relay
    /// must be stopped.
    #[arg(long)]
    dump: bool,
}

pub(crate) fn run(ctx: &Context, args: RelayArgs) -> anyhow::Result<()> {
    let limits = MailboxLimits {
        bytes: args.circle_quota_mib.saturating_mul(1024 * 1024),
        envelopes: args.circle_quota_envelopes,
        total_bytes: args.mailbox_quota_gib.saturating_mul(1024 * 1024 * 1024),
        new_circles_burst: args.new_circles_burst,
        retention: Duration::from_secs(args.retention_days.saturating_mul(24 * 3600)),
        ..MailboxLimits::default()
    };
    if args.inspect || args.dump {
        return inspect(ctx, limits, args.dump);
    }
    let config = RelayConfig {
        home: ctx.home.root().to_path_buf(),
        listen: parse_addresses("--listen", &args.listen)?,
        metrics: args.metrics,
        external: parse_addresses("--external", &args.external)?,
        limits,
        open_mailbox: args.open_mailbox,
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

/// `--inspect` and `--dump`: what a stopped relay's mailbox holds.
fn inspect(ctx: &Context, limits: MailboxLimits, dump: bool) -> anyhow::Result<()> {
    let path = ctx.home.root().join(relay::MAILBOX_DIR);
    if !path.exists() {
        anyhow::bail!(
            "no mailbox in {}; give the relay's home with --home",
            ctx.home.root().display()
        );
    }
    let key = relay::mailbox_key(ctx.home.root())?;
    let mailbox = Mailbox::open(&path, limits, key).with_context(|| {
        "cannot open the mailbox; if the relay is running, stop it first".to_string()
    })?;
    if dump {
        for record in mailbox.records() {
            let (tree, key, value) = record?;
            let line = serde_json::json!({
                "tree": tree,
                "key": hex::encode(key),
                "value": hex::encode(value),
            });
            println!("{line}");
        }
        return Ok(());
    }
    let usage = mailbox.usage();
    if ctx.json {
        println!("{}", serde_json::to_string(&usage)?);
    } else if usage.is_empty() {
        println!("the mailbox holds no circle");
    } else {
        for u in usage {
            println!(
                "{}  {} members  {} ops  {} envelopes  {} bytes  last active {}",
                u.circle,
                u.members,
                u.ops,
                u.envelopes,
                u.bytes,
                jiff::Timestamp::from_microsecond(u.last_active)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}
