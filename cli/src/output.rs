//! Printing answers: JSON for scripts, aligned text for people.

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// Prints `value` as JSON, or `text()` for people.
pub(crate) fn answer<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let out = if json {
        json_for_terminal(&serde_json::to_string_pretty(value)?)
    } else {
        printable(&text())
    };
    if out.is_empty() {
        return Ok(());
    }
    // A reader that went away (`cercle ... | head`) is not an error of this command.
    match writeln!(std::io::stdout(), "{out}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `text` as it may reach a terminal: what other members wrote (notes, names, document
/// names) could hold escape sequences that rewrite the screen, set the window title or
/// fake a line; control characters but line breaks and tabs, and the bidirectional
/// overrides that reorder a line, are shown escaped (`\u{1b}`) instead.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hostile(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

fn is_hostile(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// JSON for a terminal: the same value, with the control characters JSON leaves raw (C1
/// controls, bidirectional overrides) written as `\uXXXX` escapes (they occur only in
/// strings, where the escape means the same character).
pub(crate) fn json_for_terminal(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if is_hostile(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// What a write that made one item answers: the item's id and its circle.
#[derive(Debug, Serialize)]
pub(crate) struct Added {
    pub(crate) id: String,
    pub(crate) circle: String,
}

/// Prints the one item a write made: one sentence for people, "Note 80348ba2 added in
/// circle 5ea58b12." (`done` is `("Note", "added")`), `{"id", "circle"}` with `--json`.
pub(crate) fn added(
    json: bool,
    circle: String,
    mut ids: Vec<String>,
    done: (&str, &str),
) -> anyhow::Result<()> {
    let added = Added {
        id: ids.pop().unwrap_or_default(),
        circle,
    };
    let (what, verb) = done;
    answer(json, &added, || {
        format!(
            "{what} {} {verb} in circle {}.",
            short(&added.id),
            short(&added.circle)
        )
    })
}

/// The first 8 characters of an id, as people type it back.
pub(crate) fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// One line per item, or `empty` when there is none.
pub(crate) fn rows<T>(items: &[T], empty: &str, row: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        return empty.to_string();
    }
    items.iter().map(row).collect::<Vec<_>>().join("\n")
}

/// The current time as a model timestamp.
pub(crate) fn now() -> cercle_crdt::Timestamp {
    cercle_crdt::Timestamp(jiff::Timestamp::now().as_millisecond())
}

/// A timestamp for people in this machine's time zone, as the web UI shows it:
/// `2026-11-23 09:15`.
pub(crate) fn human_time(t: cercle_crdt::Timestamp) -> String {
    let zone = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    match jiff::Timestamp::from_millisecond(t.millis()) {
        Ok(ts) => ts.to_zoned(zone).strftime("%Y-%m-%d %H:%M").to_string(),
        Err(_) => t.to_rfc3339(),
    }
}

/// A spinner on stderr, drawn only when stderr is a terminal.
pub(crate) fn progress_spinner(message: &'static str) -> indicatif::ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A progress bar over `len` bytes on stderr, drawn only when stderr is a terminal.
pub(crate) fn progress_bytes(len: u64, message: &'static str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// Creates `path` for care data this command writes out (a document, an export): readable
/// by its owner only, and never over an existing file unless `overwrite` (a document's name
/// comes from another member, who must not be able to replace a file of this user's).
pub(crate) fn create_private(
    path: &std::path::Path,
    overwrite: bool,
) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; choose another file with --out, or add --force to replace it",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot create {}: {e}", path.display())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_from_other_members_reach_no_terminal() {
        let note = "Tension 13/8\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}txt.exe\nligne 2\tfin";
        let shown = printable(note);
        assert!(!shown.chars().any(is_hostile), "{shown:?}");
        assert!(
            shown.starts_with("Tension 13/8\\u{1b}]0;pwned"),
            "{shown:?}"
        );
        assert!(
            shown.contains("\nligne 2\tfin"),
            "line breaks and tabs stay"
        );
        // JSON keeps the value: it decodes back to the very text.
        let json = json_for_terminal(&serde_json::to_string(&note).unwrap_or_default());
        assert!(!json.chars().any(is_hostile), "{json:?}");
        let back: String = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, note);
    }

    proptest::proptest! {
        #[test]
        fn any_text_prints_without_control_characters(text in ".*") {
            proptest::prop_assert!(!printable(&text).chars().any(is_hostile));
            let json = json_for_terminal(&serde_json::to_string(&text).unwrap_or_default());
            let back: String = serde_json::from_str(&json).unwrap_or_default();
            proptest::prop_assert_eq!(back, text);
        }
    }
}
