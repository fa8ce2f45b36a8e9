//! `cercle init` and `cercle whoami`: create and show this node's identity.

use anyhow::Context as _;
use cercle_node::{KdfParams, LocalIdentity, Profile, PublicIdentity};
use serde::Serialize;

use crate::Context;
use crate::output::{answer, now};
use crate::passphrase;

#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// Your name as colleagues know it, e.g. "Dr Claire Martin".
    #[arg(long, required_unless_present = "pair")]
    name: Option<String>,
    /// Your profession, e.g. "infirmière", "médecin généraliste", "aidant".
    #[arg(long, required_unless_present = "pair")]
    profession: Option<String>,
    /// Make this home a new device of yours instead: the pairing code that
    /// `cercle device pair` printed on your first device (which must be running).
    #[arg(long, value_name = "CODE", conflicts_with_all = ["name", "profession", "rpps", "adeli"])]
    pair: Option<String>,
    /// With --pair: give up after this many seconds if your first device cannot be reached.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    timeout: u64,
    /// Your RPPS number (11 digits).
    #[arg(long, value_name = "NUMBER")]
    rpps: Option<String>,
    /// Your ADELI number (9 digits).
    #[arg(long, value_name = "NUMBER")]
    adeli: Option<String>,
    /// Store the keys without a passphrase. For demos and tests only: anyone who can read
    /// the home directory can then act as you.
    #[arg(long)]
    insecure_no_passphrase: bool,
}

#[derive(Debug, Serialize)]
struct WhoAmI<'a> {
    member: String,
    device: String,
    card: String,
    name: &'a str,
    profession: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rpps: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adeli: Option<&'a str>,
    home: String,
    insecure: bool,
}

pub(crate) fn run(ctx: &Context, args: InitArgs) -> anyhow::Result<()> {
    if let Some(code) = &args.pair {
        let identity =
            crate::cmd::pair::pair(ctx, code, args.timeout, args.insecure_no_passphrase)?;
        print_identity(ctx, &identity, None)?;
        if !ctx.json {
            println!(
                "\nThis home is now a device of {}. Start it with `cercle up`: it reaches your first device and receives your circles.",
                identity.profile.name
            );
        }
        return Ok(());
    }
    let (Some(name), Some(profession)) = (&args.name, &args.profession) else {
        anyhow::bail!("give --name and --profession, or --pair CODE for a new device of yours");
    };
    let profile = Profile::new(
        name,
        profession,
        args.rpps.as_deref(),
        args.adeli.as_deref(),
    )?;
    let identity = LocalIdentity::generate(profile, now())?;
    if args.insecure_no_passphrase {
        ctx.home.init(&identity, None, KdfParams::FAST_INSECURE)?;
    } else {
        let pass = passphrase::choose()?;
        ctx.home.init(&identity, Some(&pass), KdfParams::DEFAULT)?;
    }
    print_identity(ctx, &identity.public(), None)
}

pub(crate) fn whoami(ctx: &Context) -> anyhow::Result<()> {
    let identity = ctx.home.identity()?;
    // While the node runs, the card also carries its addresses.
    let card = match crate::backend::Client::running(ctx)? {
        Some(client) => Some(client.ask(cercle_node::ops::status::Card {})?.card),
        None => None,
    };
    print_identity(ctx, &identity, card)
}

fn print_identity(ctx: &Context, id: &PublicIdentity, card: Option<String>) -> anyhow::Result<()> {
    let me = WhoAmI {
        member: id.member().to_hex(),
        device: id.device().to_string(),
        card: card.unwrap_or_else(|| id.card(&[]).encode()),
        name: &id.profile.name,
        profession: &id.profile.profession,
        rpps: id.profile.rpps.as_deref(),
        adeli: id.profile.adeli.as_deref(),
        home: ctx.home.root().display().to_string(),
        insecure: ctx.home.is_insecure()?,
    };
    answer(ctx.json, &me, || {
        let mut s = format!(
            "{} ({})\nmember  {}\ndevice  {}\nhome    {}",
            me.name, me.profession, me.member, me.device, me.home
        );
        if let Some(r) = me.rpps {
            s.push_str(&format!("\nRPPS    {r}"));
        }
        if let Some(a) = me.adeli {
            s.push_str(&format!("\nADELI   {a}"));
        }
        if me.insecure {
            s.push_str("\nwarning: these keys are stored without a passphrase (demo only)");
        }
        s.push_str(&format!(
            "\n\nYour contact card (give it to a coordinator to join a circle):\n{}",
            me.card
        ));
        s
    })
    .context("printing the identity")
}
