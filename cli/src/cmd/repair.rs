//! `cercle repair`: rebuilds the store's database from its journal, keeping the old files.

use serde::Serialize;

use crate::Context;
use crate::output::answer;
use crate::passphrase::unlock;

#[derive(Debug, Serialize)]
struct Repaired {
    batches: usize,
    damaged_files_kept_in: Option<String>,
}

pub(crate) fn run(ctx: &Context) -> anyhow::Result<()> {
    let me = unlock(&ctx.home)?;
    let report = cercle_node::store::SledStore::repair(&ctx.home.store_dir(), me.storage_key())?;
    let out = Repaired {
        batches: report.replayed,
        damaged_files_kept_in: report.moved_aside.map(|p| p.display().to_string()),
    };
    answer(ctx.json, &out, || {
        let kept = out
            .damaged_files_kept_in
            .as_ref()
            .map(|p| format!("; the previous database files are kept in {p}"))
            .unwrap_or_default();
        format!(
            "rebuilt the database from the journal ({} batches){kept}",
            out.batches
        )
    })
}
