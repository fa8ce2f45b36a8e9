//! `cercle up`, `cercle status`, `cercle peers`: run the node in the foreground, and see
//! what it is connected to.

use cercle_node::api::NodeStatus as Status;
use cercle_node::net::NetConfig;
use cercle_node::node::{self, NodeConfig};

use crate::Context;
use crate::backend::Client;
use crate::output::answer;
use crate::session::Session;

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Listen on this multiaddress (repeatable), e.g. /ip4/0.0.0.0/tcp/4001. Default: every
    /// interface, a free TCP port and a free QUIC port.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Connect to this peer (repeatable), e.g. /ip4/192.168.1.20/tcp/4001/p2p/12D3Koo...;
    /// dialed again whenever the connection drops.
    #[arg(long, value_name = "MULTIADDR")]
    peer: Vec<String>,
    /// Use this relay (repeatable): reachable through it, introduced there to the other
    /// members of the circles that name it, envelopes kept in its mailbox for members who
    /// are offline. The address ends with the
    /// relay's peer id, as `cercle relay` prints it.
    #[arg(long, value_name = "MULTIADDR")]
    relay: Vec<String>,
    /// Do not look for peers on the local network (mDNS).
    #[arg(long)]
    no_mdns: bool,
    /// Serve the local API and web UI on this address (default: the port of the last start,
    /// or a free port, on 127.0.0.1).
    #[arg(long, value_name = "127.0.0.1:PORT")]
    api: Option<std::net::SocketAddr>,
    /// Also serve the web UI over TLS on this LAN address of this computer, for your
    /// phones paired from the "My devices" page (e.g. 192.168.1.20:8443).
    #[arg(long, value_name = "ADDRESS:PORT")]
    ui_listen: Option<String>,
}

/// Parses the multiaddresses given with `flag`, or says how to write one.
pub(crate) fn parse_addresses(
    flag: &str,
    list: &[String],
) -> anyhow::Result<Vec<libp2p::Multiaddr>> {
    list.iter()
        .map(|a| {
            a.parse().map_err(|e| {
                anyhow::anyhow!(
                    "{flag} {a:?} is not a multiaddress ({e}); write it like /ip4/127.0.0.1/tcp/4001"
                )
            })
        })
        .collect()
}

pub(crate) fn up(ctx: &Context, args: UpArgs) -> anyhow::Result<()> {
    // Flags win over the configuration file, list by list.
    let config = crate::config::Config::load()?;
    let or_config = |given: Vec<String>, configured: Vec<String>| {
        if given.is_empty() { configured } else { given }
    };
    let listen = parse_addresses("--listen", &or_config(args.listen, config.listen))?;
    let peers = parse_addresses("--peer", &or_config(args.peer, config.peers))?;
    let relays = parse_addresses("--relay", &or_config(args.relay, config.relays))?;
    let api = args.api.or(config.api);
    let ui_listen = match args.ui_listen {
        Some(a) => Some(crate::config::check_ui_listen(&a)?),
        None => config.ui.listen,
    };
    let mdns = !args.no_mdns && config.mdns != Some(false);
    if let Some(a) = api
        && !a.ip().is_loopback()
    {
        anyhow::bail!(
            "--api {a} is not a loopback address: the local API listens on 127.0.0.1 only"
        );
    }
    let net = NetConfig {
        listen,
        peers,
        mdns,
        relays,
    };
    if let Err(e) = net.relay_devices() {
        anyhow::bail!("--relay: {e}, as `cercle relay` prints it");
    }
    let webhook = config
        .notify
        .webhook
        .as_deref()
        .map(|url| cercle_node::notify::Webhook::new(url, ctx.home.root()))
        .transpose()
        .map_err(|e| {
            anyhow::anyhow!(
                "notify.webhook: {e}; change it with `cercle config set notify.webhook URL`"
            )
        })?;
    // Commands run while this node opens its store and circles wait for its API (see
    // `backend`). The mark is left before the store is taken: a command that finds the
    // store taken and no mark says a node runs here, rather than waiting.
    let _mark = ctx.home.mark_node();
    let s = Session::open_waiting(ctx, std::time::Duration::from_secs(10))?;
    let config = NodeConfig {
        net,
        api,
        home: ctx.home.root().to_path_buf(),
        webhook,
        ui_listen,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = s.store();
    let me = s.me;
    let json = ctx.json;
    let ready = move |api: &cercle_node::api::ApiFile, _: &cercle_node::node::NodeHandle| {
        let ui = shown_ui_url(api);
        if json {
            println!(
                "{}",
                serde_json::json!({ "api": api.address.to_string(), "ui": ui })
            );
        } else {
            println!("Cercle node running. Web UI: {ui}\nStop it with Ctrl-C.");
        }
    };
    runtime.block_on(node::run(store, me, config, ready, shutdown_signal()))?;
    Ok(())
}

/// The web UI's address as printed: with the token that logs a browser in on a terminal
/// only, never into a service's log (the token stays in the home's api-token file).
fn shown_ui_url(api: &cercle_node::api::ApiFile) -> String {
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        ui_url(api)
    } else {
        format!("http://{}/", api.address)
    }
}

/// The web UI's address, with the token that logs the browser in.
pub(crate) fn ui_url(api: &cercle_node::api::ApiFile) -> String {
    format!("http://{}/?token={}", api.address, api.token)
}

/// Ctrl-C, or SIGTERM (what systemd and `kill` send) on Unix, or the console closing on
/// Windows.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(windows)]
    let term = async {
        match tokio::signal::windows::ctrl_close() {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(any(unix, windows)))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// The running node's status; without one, what the identity alone tells (no passphrase,
/// no store: a node may be starting and need the store's lock).
fn status_of(ctx: &Context) -> anyhow::Result<Status> {
    if let Some(client) = Client::running(ctx)? {
        return Ok(client.ask(cercle_node::ops::status::Status {})?);
    }
    let me = ctx.home.identity()?;
    Ok(Status {
        peer_id: cercle_node::net::peer_of(&me.device())
            .map(|p| p.to_string())
            .unwrap_or_default(),
        device: me.device().to_string(),
        member: me.member().to_hex(),
        ..Status::default()
    })
}

pub(crate) fn status(ctx: &Context) -> anyhow::Result<()> {
    let s = status_of(ctx)?;
    answer(ctx.json, &s, || {
        if !s.running {
            return format!(
                "not running (start the node with `cercle up`)\npeer id {}",
                s.peer_id
            );
        }
        let mut out = format!("running\npeer id {}\n", s.peer_id);
        if let Ok(Some(api)) = cercle_node::api::ApiFile::read(ctx.home.root()) {
            out.push_str(&format!("web UI  {}\n", shown_ui_url(&api)));
        }
        out.push_str("addresses:");
        for a in &s.addresses {
            out.push_str(&format!("\n  {a}"));
        }
        out.push_str(&format!("\npeers: {}", s.peers.len()));
        if !s.refused.is_empty() {
            out.push_str("\nrefused from peers, by reason:");
            for (reason, count) in &s.refused {
                out.push_str(&format!("\n  {reason}  {count}"));
            }
        }
        if s.replayed_envelopes > 0 {
            out.push_str(&format!(
                "\nenvelopes received again (applied once): {}",
                s.replayed_envelopes
            ));
        }
        out.push_str(&format!("\nenvelopes held: {}", s.held_envelopes));
        if s.settling > 0 {
            out.push_str(&format!(
                "\ncircles with envelopes still to check: {}",
                s.settling
            ));
        }
        out
    })
}

pub(crate) fn peers(ctx: &Context) -> anyhow::Result<()> {
    let s = status_of(ctx)?;
    answer(ctx.json, &s.peers, || {
        if !s.running {
            return "not running (start the node with `cercle up`)".into();
        }
        crate::output::rows(&s.peers, "no peers connected", |p| {
            let path = match p.path {
                cercle_node::ops::status::PeerPath::Direct => "direct",
                cercle_node::ops::status::PeerPath::Relayed => "via relay",
            };
            format!(
                "{}  {path}  {} circle(s)  {} pending  {} B sent  {} B received",
                p.peer_id,
                p.circles.len(),
                p.pending,
                p.data_bytes_sent,
                p.data_bytes_received
            )
        })
    })
}
