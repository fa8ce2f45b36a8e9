//! Printing answers: JSON for scripts, aligned text for people.

use serde::Serialize;

/// Prints `value` as JSON, or `text()` for people.
pub(crate) fn answer<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        let t = text();
        if !t.is_empty() {
            println!("{t}");
        }
    }
    Ok(())
}

/// The current time as a model timestamp.
pub(crate) fn now() -> cercle_crdt::Timestamp {
    cercle_crdt::Timestamp(jiff::Timestamp::now().as_millisecond())
}

/// A timestamp for people: `2026-11-23 08:15` in UTC.
pub(crate) fn human_time(t: cercle_crdt::Timestamp) -> String {
    match jiff::Timestamp::from_millisecond(t.millis()) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M").to_string(),
        Err(_) => t.to_rfc3339(),
    }
}
