//! Break-glass: `cercle circle on-call` (who may break the glass), `cercle circle
//! emergency-code` (the patient's code to print) and `cercle breakglass` (an on-call
//! professional's read access, for 24 hours at most).

use cercle_node::ContactCard;
use cercle_node::emergency::{EmergencyCode, MAX_MINUTES, check_request};
use cercle_node::ops::circles::CircleShow;
use cercle_node::ops::emergency::{BreakGlassAsk, EmergencyCodeMake, OnCallSet};

use crate::Context;
use crate::backend::{Client, ask};
use crate::output::answer;

#[derive(Debug, clap::Args)]
pub(crate) struct BreakGlassArgs {
    /// The patient's emergency code (printed from the patient page, kept at the patient's
    /// home).
    #[arg(num_args = 1.., required = true, value_name = "CODE")]
    code: Vec<String>,
    /// Why you need to read the record (kept in the audit, shown to the team).
    #[arg(long)]
    reason: String,
    /// For how long, in minutes (at most 1440: 24 hours).
    #[arg(long, default_value_t = MAX_MINUTES)]
    minutes: u32,
    /// Give up after this many seconds if no member's node answers.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    timeout: u64,
}

/// `cercle circle on-call CIRCLE [--card CARD | --remove NAME]`.
pub(crate) fn on_call(
    ctx: &Context,
    circle: String,
    card: Option<String>,
    remove: Option<String>,
) -> anyhow::Result<()> {
    if card.is_none() && remove.is_none() {
        let view = ask(ctx, CircleShow { circle })?;
        return answer(ctx.json, &view.on_call, || {
            if view.on_call.is_empty() {
                return "no one may break the glass in this circle; a coordinator adds an on-call professional with `cercle circle on-call CIRCLE --card CARD`".into();
            }
            let mut s = String::from("may break the glass:\n");
            for o in &view.on_call {
                s.push_str(&format!(
                    "  {:<28} {:<24} {}\n",
                    o.name,
                    o.profession,
                    &o.member[..12]
                ));
            }
            s
        });
    }
    if let Some(card) = &card {
        // A bad card is reported before the passphrase is asked for.
        ContactCard::decode(card)?;
    }
    let view = ask(
        ctx,
        OnCallSet {
            circle,
            add: card,
            remove,
        },
    )?;
    answer(ctx.json, &view, || {
        let names: Vec<&str> = view.on_call.iter().map(|o| o.name.as_str()).collect();
        if names.is_empty() {
            "no one may break the glass in this circle now".into()
        } else {
            format!("may break the glass: {}", names.join(", "))
        }
    })
}

/// `cercle circle emergency-code CIRCLE`.
pub(crate) fn code(ctx: &Context, circle: String, no_qr: bool) -> anyhow::Result<()> {
    let view = ask(ctx, EmergencyCodeMake { circle })?;
    answer(ctx.json, &view, || {
        let mut s = format!(
            "Emergency code of {} (circle {}). Print it and leave it at the patient's home; it holds no care data.\n\n{}\n",
            view.patient,
            &view.circle[..12],
            view.code
        );
        crate::cmd::invite::push_qr(&mut s, &view.code, no_qr);
        if view.on_call.is_empty() {
            s.push_str("\nNo one may use it yet: a coordinator names the on-call professionals with `cercle circle on-call CIRCLE --card CARD`.");
        } else {
            let names: Vec<&str> = view.on_call.iter().map(|o| o.name.as_str()).collect();
            s.push_str(&format!(
                "\nMay use it (`cercle breakglass CODE --reason TEXT`): {}.",
                names.join(", ")
            ));
        }
        s
    })
}

/// `cercle breakglass CODE --reason TEXT`.
pub(crate) fn break_glass(ctx: &Context, args: BreakGlassArgs) -> anyhow::Result<()> {
    let text = args.code.join(" ");
    EmergencyCode::decode(&text)?;
    check_request(&args.reason, args.minutes)?;
    let Some(client) = Client::running(ctx)? else {
        anyhow::bail!(
            "an emergency access needs the network: start your node with `cercle up` in another terminal, then run this command again"
        );
    };
    let view = client.ask(BreakGlassAsk {
        code: text,
        reason: args.reason,
        minutes: args.minutes,
    })?;
    let view = crate::cmd::invite::follow(
        &client,
        view,
        args.timeout,
        [
            "asking the patient's care team",
            "access granted; receiving the record",
        ],
        |view| {
            if view.state == "accepted" {
                anyhow::anyhow!(
                    "access was granted but the record has not arrived yet; it will while a member's node is reachable (see `cercle circle list`)"
                )
            } else {
                anyhow::anyhow!(
                    "no member's node of this circle could be reached within {} s (through the relays or on your network); try again, or call the team",
                    args.timeout
                )
            }
        },
    )?;
    if view.state == "refused" {
        anyhow::bail!(
            "the care team's node refused: {}",
            view.reason.as_deref().unwrap_or("no reason given")
        );
    }
    answer(ctx.json, &view, || {
        format!(
            "emergency access to circle {} granted, read-only; every member sees it. Read it with `cercle note list {}`",
            &view.circle[..12],
            &view.circle[..12]
        )
    })
}
