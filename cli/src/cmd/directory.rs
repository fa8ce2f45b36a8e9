//! `cercle directory`: the health-professional directory on this node. `import` reads the
//! public extract (the "PS_LibreAcces" personne-activité file) and gives it to the node in
//! parts; `search` finds a colleague by name or number, to invite them.

use std::path::PathBuf;

use anyhow::Context as _;
use cercle_node::directory::{Extract, MAX_PER_IMPORT, Professional};
use cercle_node::ops::directory::{DirectoryImport, DirectorySearch};

use crate::Context;
use crate::backend::{Backend, ask};
use crate::output::answer;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DirectoryCommand {
    /// Import the directory's public extract (PS_LibreAcces personne-activité, the
    /// pipe-separated file of annuaire.sante.fr); members whose RPPS or ADELI number,
    /// name and profession match it show as verified.
    Import {
        /// The extract file (unzipped).
        file: PathBuf,
    },
    /// Find professionals in the imported directory by name or RPPS/ADELI number.
    Search {
        /// A last name (or its start), "first last", or a number.
        query: String,
    },
}

pub(crate) fn run(ctx: &Context, cmd: DirectoryCommand) -> anyhow::Result<()> {
    match cmd {
        DirectoryCommand::Import { file } => import(ctx, &file),
        DirectoryCommand::Search { query } => {
            let found = ask(ctx, DirectorySearch { query })?.professionals;
            answer(ctx.json, &found, || {
                crate::output::rows(
                    &found,
                    "nobody found in the imported directory (import it with `cercle directory import FILE`)",
                    row,
                )
            })
        }
    }
}

fn row(p: &Professional) -> String {
    format!(
        "{} {:<11}  {} {}  ({})",
        p.register.label(),
        p.number,
        p.first_name,
        p.last_name,
        p.profession
    )
}

fn import(ctx: &Context, file: &std::path::Path) -> anyhow::Result<()> {
    let input = std::fs::File::open(file)
        .with_context(|| format!("cannot open {}: check the path", file.display()))?;
    let mut extract = Extract::open(std::io::BufReader::new(input))?;
    let mut backend = Backend::open(ctx)?;
    let mut imported = 0usize;
    let mut part = Vec::with_capacity(MAX_PER_IMPORT);
    loop {
        let next = extract.next().transpose()?;
        let end = next.is_none();
        part.extend(next);
        if part.len() == MAX_PER_IMPORT || (end && !part.is_empty()) {
            let professionals = std::mem::take(&mut part);
            imported += backend
                .ask(DirectoryImport { professionals })?
                .professionals;
        }
        if end {
            break;
        }
    }
    let count = extract.count;
    let summary = serde_json::json!({
        "professionals": imported,
        "lines": count.lines,
        "skipped": count.skipped,
    });
    answer(ctx.json, &summary, || {
        format!(
            "{imported} professionals imported from {} lines{}",
            count.lines,
            if count.skipped > 0 {
                format!(
                    " ({} lines without a valid professional skipped)",
                    count.skipped
                )
            } else {
                String::new()
            }
        )
    })
}
