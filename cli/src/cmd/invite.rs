//! `cercle invite create` and `cercle join`: bring a new member into a circle with a
//! one-time code instead of exchanging contact cards.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use cercle_node::invite::{AnyCode, parse_validity};
use cercle_node::ops::invite::InviteCreate;
use cercle_node::ops::join::{Join, JoinStatus, JoinView};

use crate::Context;
use crate::backend::{Client, ask};
use crate::output::{answer, now, progress_spinner};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum InviteCommand {
    /// Make a one-time invite code to a circle (coordinators only). The invitee runs
    /// `cercle join CODE` while this node runs.
    Create {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
        /// The role the invitee gets: coordinator, professional, caregiver or observer.
        #[arg(long)]
        role: String,
        /// How long the code is valid: 30m, 48h, 7d (at most 30d).
        #[arg(long, default_value = "7d", value_name = "DURATION")]
        expires: String,
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct JoinArgs {
    /// The invite code, as the coordinator gave it: the long code, or the short one of 24
    /// characters (spaces, dashes and case do not matter).
    #[arg(num_args = 1.., required = true, value_name = "CODE")]
    code: Vec<String>,
    /// Give up after this many seconds if the inviter cannot be reached.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    timeout: u64,
}

pub(crate) fn run(ctx: &Context, cmd: InviteCommand) -> anyhow::Result<()> {
    let InviteCommand::Create {
        circle,
        role,
        expires,
        no_qr,
    } = cmd;
    let role = crate::cmd::circle::parse_role(&role)?;
    let validity = parse_validity(&expires).map_err(|e| anyhow::anyhow!(e))?;
    let create = InviteCreate {
        circle,
        role,
        expires_in: u64::try_from(validity / 1000).unwrap_or(0),
    };
    let view = ask(ctx, create)?;
    answer(ctx.json, &view, || {
        let expires = crate::output::human_time(cercle_crdt::Timestamp(view.expires_at));
        let mut s = format!(
            "Invite to circle {} as {} (single use, until {expires}):\n\n{}\n\nTo read out instead: {}\n",
            &view.circle[..12],
            view.role.as_str(),
            view.code,
            view.short
        );
        push_qr(&mut s, &view.code, no_qr);
        s.push_str(
            "\nThe invitee runs `cercle join CODE` with either code (the short one finds this node on your network or through a relay you both use); keep this node running until they have joined.",
        );
        s
    })
}

/// Appends `code`'s QR to `s` when it is for a terminal and the user did not say `--no-qr`.
pub(crate) fn push_qr(s: &mut String, code: &str, no_qr: bool) {
    if !no_qr
        && std::io::stdout().is_terminal()
        && let Some(qr) = qr_text(code)
    {
        s.push('\n');
        s.push_str(&qr);
    }
}

/// The code as a QR code drawn with half blocks, for a phone to read off the terminal.
pub(crate) fn qr_text(code: &str) -> Option<String> {
    let qr = qrcode::QrCode::new(code.to_ascii_uppercase().as_bytes()).ok()?;
    Some(
        qr.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
    )
}

pub(crate) fn join(ctx: &Context, args: JoinArgs) -> anyhow::Result<()> {
    // A damaged or expired code is reported at once, node running or not. A short code
    // read out may come as several words.
    let text = args.code.join(" ");
    let code = AnyCode::parse(&text)?;
    if let AnyCode::Full(c) = &code {
        c.check_expiry(now().millis())?;
    }
    let Some(client) = Client::running(ctx)? else {
        anyhow::bail!(
            "joining needs the network: start your node with `cercle up` in another terminal, then run this command again"
        );
    };
    let view = client.ask(Join { code: text })?;
    let short = matches!(code, AnyCode::Short(_));
    let view = follow(
        &client,
        view,
        args.timeout,
        ["reaching the inviter", "added; receiving the circle"],
        |view| {
            if view.state == "accepted" {
                anyhow::anyhow!(
                    "you were added to the circle but its data has not arrived yet; it will when a member is reachable (see `cercle circle list`)"
                )
            } else if short {
                anyhow::anyhow!(
                    "the inviter could not be found within {} s: their node must be running on your network, or both nodes must use the same relay (`cercle config set relays ADDRESS`); or ask for the long code",
                    args.timeout
                )
            } else {
                anyhow::anyhow!(
                    "the inviter could not be reached within {} s; their node must be running (on your network or through a relay); try again later",
                    args.timeout
                )
            }
        },
    )?;
    if view.state == "refused" {
        anyhow::bail!(
            "the inviter refused: {}",
            view.reason.as_deref().unwrap_or("no reason given")
        );
    }
    print_joined(ctx, &view)
}

/// Follows a join (or an emergency access, which the node follows as one) until it is
/// done or refused, with a spinner saying `words` (reaching, then added); past `timeout`
/// seconds, the error `late` words for where it stands.
pub(crate) fn follow(
    client: &Client,
    mut view: JoinView,
    timeout: u64,
    words: [&'static str; 2],
    late: impl Fn(&JoinView) -> anyhow::Error,
) -> anyhow::Result<JoinView> {
    let spinner = progress_spinner(words[0]);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    while view.state == "reaching" || view.state == "accepted" {
        if Instant::now() > deadline {
            spinner.finish_and_clear();
            return Err(late(&view));
        }
        if view.state == "accepted" {
            spinner.set_message(words[1]);
        }
        std::thread::sleep(Duration::from_millis(200));
        view = client.ask(JoinStatus {
            invite: view.invite.clone(),
        })?;
    }
    spinner.finish_and_clear();
    Ok(view)
}

fn print_joined(ctx: &Context, view: &JoinView) -> anyhow::Result<()> {
    answer(ctx.json, view, || {
        format!(
            "joined circle {}; see it with `cercle circle show {}`",
            view.circle,
            &view.circle[..12]
        )
    })
}
