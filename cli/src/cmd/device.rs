//! `cercle device pair|list|revoke`: a member's devices. A new device is paired with
//! `cercle init --pair CODE` (see `init`).

use cercle_node::ops::devices::{DeviceList, DevicePair, DeviceRevoke};

use crate::Context;
use crate::backend::{Client, ask};
use crate::output::{answer, human_time, rows};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DeviceCommand {
    /// Make a one-time pairing code for a new device of yours (on your first device, with
    /// the node running). On the new machine: `cercle init --pair CODE`.
    Pair {
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
    },
    /// Your devices, with the last time each was seen.
    List,
    /// Revoke one of your devices (lost, stolen, replaced) in every circle: it receives
    /// nothing written from now on.
    Revoke {
        /// The device's id, or its first characters (`cercle device list`).
        device: String,
    },
}

pub(crate) fn run(ctx: &Context, cmd: DeviceCommand) -> anyhow::Result<()> {
    match cmd {
        DeviceCommand::Pair { no_qr } => {
            let Some(client) = Client::running(ctx)? else {
                anyhow::bail!(
                    "pairing needs the network: start your node with `cercle up` in another terminal, then run this command again"
                );
            };
            let view = client.ask(DevicePair {})?;
            answer(ctx.json, &view, || {
                let until = human_time(cercle_crdt::Timestamp(view.expires_at));
                let mut s = format!(
                    "Pairing code for a new device of yours (single use, until {until}):\n\n{}\n",
                    view.code
                );
                crate::cmd::invite::push_qr(&mut s, &view.code, no_qr);
                s.push_str("\nOn the new machine run `cercle init --pair CODE` while this node runs; it then receives your circles.");
                s
            })?;
        }
        DeviceCommand::List => {
            let view = ask(ctx, DeviceList {})?;
            answer(ctx.json, &view, || {
                let mut s = rows(&view.devices, "no device", |d| {
                    let state = match (d.this, d.revoked_at, d.connected, d.last_seen) {
                        (true, ..) => "this device".to_string(),
                        (_, Some(at), ..) => {
                            format!("revoked {}", human_time(cercle_crdt::Timestamp(at)))
                        }
                        (_, _, true, _) => "connected".to_string(),
                        (_, _, _, Some(at)) => {
                            format!("last seen {}", human_time(cercle_crdt::Timestamp(at)))
                        }
                        _ => "never seen from here".to_string(),
                    };
                    format!("{}  {state}  ({} circles)", d.device, d.circles)
                });
                if view.holds_member_key {
                    s.push_str("\n\nThis device holds your member key: pair new devices from here (`cercle device pair`).");
                }
                s
            })?;
        }
        DeviceCommand::Revoke { device } => {
            let view = ask(ctx, DeviceRevoke { device })?;
            answer(ctx.json, &view, || {
                format!(
                    "Device {} revoked in {} circles: it receives nothing written from now on, and the teams see it.",
                    &view.device[..16.min(view.device.len())],
                    view.circles
                )
            })?;
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum PhoneCommand {
    /// A one-time link (and QR) that pairs a phone or tablet with this node's web UI on
    /// the LAN (the node runs with `--ui-listen`).
    Pair {
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
    },
    /// The paired phones, with their last use.
    List,
    /// Revoke a phone's session: it opens nothing from now on.
    Revoke {
        /// The phone's id (`cercle phone list`).
        id: String,
    },
}

pub(crate) fn phone(ctx: &Context, cmd: PhoneCommand) -> anyhow::Result<()> {
    let Some(client) = Client::running(ctx)? else {
        anyhow::bail!(
            "phones reach the running node: start it with `cercle up --ui-listen ADDRESS:PORT`, then run this command again"
        );
    };
    match cmd {
        PhoneCommand::Pair { no_qr } => {
            let view: serde_json::Value =
                client.route("/api/v1/phones/pair", Some(serde_json::json!({})))?;
            let link = view["link"].as_str().unwrap_or_default().to_string();
            answer(ctx.json, &view, || {
                let mut s = format!(
                    "Open this link on the phone (once, within 10 minutes), on the same network:\n\n{link}\n\nThe phone must show the certificate fingerprint {}\n",
                    view["fingerprint"].as_str().unwrap_or_default()
                );
                crate::cmd::invite::push_qr(&mut s, &link, no_qr);
                s
            })?;
        }
        PhoneCommand::List => {
            let view: serde_json::Value = client.route("/api/v1/phones", None)?;
            answer(ctx.json, &view, || {
                let phones = view.as_array().cloned().unwrap_or_default();
                rows(&phones, "no phone paired", |p| {
                    format!(
                        "{}  {}  last used {}",
                        p["id"].as_str().unwrap_or_default(),
                        p["name"].as_str().unwrap_or_default(),
                        human_time(cercle_crdt::Timestamp(p["last_used"].as_i64().unwrap_or(0)))
                    )
                })
            })?;
        }
        PhoneCommand::Revoke { id } => {
            let view: serde_json::Value = client.route(
                "/api/v1/phones/revoke",
                Some(serde_json::json!({ "id": id })),
            )?;
            answer(ctx.json, &view, || {
                format!("Phone {id} revoked: it opens nothing from now on.")
            })?;
        }
    }
    Ok(())
}
