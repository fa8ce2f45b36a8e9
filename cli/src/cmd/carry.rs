//! `cercle sync export` and `cercle sync import`: circles carried on a USB key where no
//! network reaches. The file holds sealed envelopes and membership operations only, in
//! parts signed by the writing device; every part is checked before anything is imported.

use std::path::PathBuf;

use cercle_node::ops::carried::{SyncExport, SyncImport, SyncTaken};
use cercle_node::ops::circles::CircleList;
use cercle_node::sync::file;
use serde::Serialize;

use crate::Context;
use crate::backend::Backend;
use crate::output::answer;

/// A sync file larger than this is refused before it is read (a whole practice's circles
/// fit many times over).
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SyncCommand {
    /// Write what the other members may lack to a file (sealed: nothing readable), for a
    /// USB key carried to a practice that nothing connects to.
    Export {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// Only this circle (its id or an unambiguous prefix); all of them by default.
        #[arg(long)]
        circle: Option<String>,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Take in a file written by `cercle sync export` on another member's node, checked
    /// exactly as data from the network; importing twice changes nothing.
    Import {
        /// The file to read.
        file: PathBuf,
    },
}

#[derive(Debug, Serialize)]
struct Written {
    file: String,
    circles: usize,
    operations: usize,
    envelopes: usize,
    bytes: u64,
}

#[derive(Debug, Default, Serialize)]
struct Imported {
    circles: Vec<SyncTaken>,
    new: usize,
    already_held: usize,
    refused: usize,
}

pub(crate) fn run(ctx: &Context, cmd: SyncCommand) -> anyhow::Result<()> {
    match cmd {
        SyncCommand::Export { out, circle, force } => export(ctx, out, circle, force),
        SyncCommand::Import { file } => import(ctx, &file),
    }
}

fn export(ctx: &Context, out: PathBuf, circle: Option<String>, force: bool) -> anyhow::Result<()> {
    let mut node = Backend::open(ctx)?;
    let circles = match circle {
        Some(c) => vec![c],
        None => node
            .ask(CircleList {})?
            .circles
            .into_iter()
            .map(|c| c.id)
            .collect(),
    };
    if circles.is_empty() {
        anyhow::bail!("this node holds no circle: there is nothing to export");
    }
    let mut parts = Vec::new();
    let mut written = Written {
        file: out.display().to_string(),
        circles: circles.len(),
        operations: 0,
        envelopes: 0,
        bytes: 0,
    };
    for c in circles {
        let exported = node.ask(SyncExport { circle: c })?;
        written.operations += exported.operations;
        written.envelopes += exported.envelopes;
        for p in exported.parts {
            parts.push(
                hex::decode(&p).map_err(|_| anyhow::anyhow!("the node sent a damaged part"))?,
            );
        }
    }
    let mut bytes = Vec::new();
    file::write(&parts, &mut bytes)?;
    written.bytes = bytes.len() as u64;
    // Sealed data only, but still the team's: readable by this user only.
    let mut f = crate::output::create_private(&out, force)?;
    std::io::Write::write_all(&mut f, &bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    answer(ctx.json, &written, || {
        format!(
            "wrote {} circle(s) to {} ({} operations, {} entries, {} bytes, all sealed); on the other node run `cercle sync import FILE`",
            written.circles, written.file, written.operations, written.envelopes, written.bytes
        )
    })
}

fn import(ctx: &Context, path: &std::path::Path) -> anyhow::Result<()> {
    let size = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        anyhow::bail!(
            "{} is {size} bytes, larger than a sync file may be; export fewer circles with --circle",
            path.display()
        );
    }
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    // Every part is checked before anything is imported.
    let parts = file::read(&bytes).map_err(|e| anyhow::anyhow!("{e}: nothing was imported"))?;
    let mut node = Backend::open(ctx)?;
    let mut done = Imported::default();
    for (raw, _) in parts {
        let taken = node.ask(SyncImport {
            part: hex::encode(raw),
        })?;
        done.new += taken.new;
        done.already_held += taken.already_held;
        done.refused += taken.refused;
        match done.circles.iter_mut().find(|c| c.circle == taken.circle) {
            Some(c) => {
                c.new += taken.new;
                c.already_held += taken.already_held;
                c.refused += taken.refused;
                c.held = taken.held;
            }
            None => done.circles.push(taken),
        }
    }
    answer(ctx.json, &done, || {
        let mut s = format!(
            "imported {} circle(s): {} new entries, {} already here, {} refused",
            done.circles.len(),
            done.new,
            done.already_held,
            done.refused
        );
        let not_held = done.circles.iter().filter(|c| !c.held).count();
        if not_held > 0 {
            s.push_str(&format!(
                "; {not_held} circle(s) you are not a member of were left out"
            ));
        }
        if done.refused > 0 {
            s.push_str("; see why with `cercle status`");
        }
        s
    })
}
