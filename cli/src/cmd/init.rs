//! `cercle init` and `cercle whoami`: create and show this node's identity.

use anyhow::Context as _;
use cercle_node::{LocalIdentity, Profile};
use serde::Serialize;

use crate::Context;
use crate::output::answer;

#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// Your name as colleagues know it, e.g. "Dr Claire Martin".
    #[arg(long)]
    name: String,
    /// Your profession, e.g. "infirmière", "médecin généraliste", "aidant".
    #[arg(long)]
    profession: String,
    /// Your RPPS number (11 digits).
    #[arg(long, value_name = "NUMBER")]
    rpps: Option<String>,
    /// Your ADELI number (9 digits).
    #[arg(long, value_name = "NUMBER")]
    adeli: Option<String>,
}

#[derive(Debug, Serialize)]
struct WhoAmI<'a> {
    member: String,
    device: &'a str,
    name: &'a str,
    profession: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rpps: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adeli: Option<&'a str>,
    home: String,
}

pub(crate) fn run(ctx: &Context, args: InitArgs) -> anyhow::Result<()> {
    let profile = Profile::new(
        &args.name,
        &args.profession,
        args.rpps.as_deref(),
        args.adeli.as_deref(),
    )?;
    let identity = LocalIdentity::generate(profile)?;
    ctx.home.init(&identity)?;
    print_identity(ctx, &identity)
}

pub(crate) fn whoami(ctx: &Context) -> anyhow::Result<()> {
    let identity = ctx.home.identity()?;
    print_identity(ctx, &identity)
}

fn print_identity(ctx: &Context, id: &LocalIdentity) -> anyhow::Result<()> {
    let me = WhoAmI {
        member: id.member.to_hex(),
        device: &id.device,
        name: &id.profile.name,
        profession: &id.profile.profession,
        rpps: id.profile.rpps.as_deref(),
        adeli: id.profile.adeli.as_deref(),
        home: ctx.home.root().display().to_string(),
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
        s
    })
    .context("printing the identity")
}
