//! `cercle audit`: a circle's audit trail as this node holds it — every write accepted
//! with its author, device, the author's time and the time of receipt; every refusal with
//! its reason; every fork — as a table, JSON (`--json`) or a CSV file (`--csv FILE`).

use std::path::PathBuf;

use anyhow::Context as _;
use cercle_node::ops::audit::{Audit, AuditTrail};

use crate::Context;
use crate::backend::ask;
use crate::output::{answer, human_time};

#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// The circle: its id or an unambiguous prefix.
    circle: String,
    /// Only what was written, received or refused from this day on (local time).
    #[arg(long, value_name = "YYYY-MM-DD")]
    since: Option<String>,
    /// Also write every row to this CSV file (for a spreadsheet or an auditor).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
}

pub(crate) fn run(ctx: &Context, args: AuditArgs) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(day_start).transpose()?;
    let trail = ask(
        ctx,
        Audit {
            circle: args.circle,
            since,
        },
    )?;
    if let Some(file) = &args.csv {
        write_csv(&trail, file)
            .with_context(|| format!("cannot write {}: check the path", file.display()))?;
    }
    answer(ctx.json, &trail, || text(&trail))
}

/// The start of a local day, in milliseconds.
fn day_start(day: &str) -> anyhow::Result<i64> {
    let date: jiff::civil::Date = day
        .parse()
        .map_err(|_| anyhow::anyhow!("--since takes a day as YYYY-MM-DD, e.g. 2026-12-01"))?;
    let zone = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    let start = date
        .to_zoned(zone)
        .map_err(|e| anyhow::anyhow!("--since {day}: {e}"))?;
    Ok(start.timestamp().as_millisecond())
}

fn time(millis: i64) -> String {
    human_time(cercle_crdt::Timestamp(millis))
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

fn text(trail: &AuditTrail) -> String {
    let mut s = String::new();
    for w in &trail.writes {
        let received = w.received.map_or_else(
            || "written here".to_string(),
            |r| format!("received {}", time(r)),
        );
        s.push_str(&format!(
            "{}  {:<24} {:<16} {:<20} {}{}  ({received}; device {})\n",
            time(w.at),
            w.name.as_deref().unwrap_or(short(&w.member)),
            w.document,
            w.action,
            short(&w.item),
            w.about
                .as_deref()
                .map(|a| format!(" {a}"))
                .unwrap_or_default(),
            w.device.as_deref().map_or("unknown", short),
        ));
    }
    if trail.writes.is_empty() {
        s.push_str("no writes\n");
    }
    for r in &trail.refusals {
        s.push_str(&format!(
            "{}  refused from device {}: {} ({})\n",
            time(r.at),
            r.device.as_deref().map_or("unknown", short),
            r.message,
            r.reason
        ));
    }
    for f in &trail.forks {
        s.push_str(&format!(
            "fork: device {} of {} signed two envelopes for {} #{} ({} and {})\n",
            short(&f.device),
            f.name.as_deref().unwrap_or("an unknown member"),
            f.document,
            f.seq,
            short(&f.first),
            short(&f.second)
        ));
    }
    s.trim_end().to_string()
}

/// One CSV of the whole trail: a row per write, refusal and fork, in that order.
fn write_csv(trail: &AuditTrail, file: &std::path::Path) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_path(file)?;
    out.write_record([
        "kind", "at", "received", "member", "name", "device", "document", "action", "item",
        "detail",
    ])?;
    let iso = |millis: i64| {
        jiff::Timestamp::from_millisecond(millis)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    for w in &trail.writes {
        out.write_record([
            "write",
            &iso(w.at),
            &w.received.map(iso).unwrap_or_default(),
            &w.member,
            w.name.as_deref().unwrap_or(""),
            w.device.as_deref().unwrap_or(""),
            &w.document,
            &w.action,
            &w.item,
            w.about.as_deref().unwrap_or(""),
        ])?;
    }
    for r in &trail.refusals {
        out.write_record([
            "refusal",
            &iso(r.at),
            "",
            "",
            "",
            r.device.as_deref().unwrap_or(""),
            "",
            &r.reason,
            &r.hash,
            &r.message,
        ])?;
    }
    for f in &trail.forks {
        out.write_record([
            "fork",
            "",
            "",
            f.member.as_deref().unwrap_or(""),
            f.name.as_deref().unwrap_or(""),
            &f.device,
            &f.document,
            "fork",
            &f.seq.to_string(),
            &format!("{} / {}", f.first, f.second),
        ])?;
    }
    out.flush()?;
    Ok(())
}
