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
        serde_json::to_string_pretty(value)?
    } else {
        text()
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

/// What a write that made one item answers: the item's id and its circle.
#[derive(Debug, Serialize)]
pub(crate) struct Added {
    pub(crate) id: String,
    pub(crate) circle: String,
}

/// Prints the one item a write made (its id; `{"id", "circle"}` with `--json`).
pub(crate) fn added(json: bool, circle: String, mut ids: Vec<String>) -> anyhow::Result<()> {
    let added = Added {
        id: ids.pop().unwrap_or_default(),
        circle,
    };
    answer(json, &added, || added.id.clone())
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

/// A timestamp for people: `2026-11-23 08:15` in UTC.
pub(crate) fn human_time(t: cercle_crdt::Timestamp) -> String {
    match jiff::Timestamp::from_millisecond(t.millis()) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M").to_string(),
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
