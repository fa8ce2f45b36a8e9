//! `cercle export`: a circle's documents in a portable form: Automerge's binary save
//! format (one file per document, loadable by any Automerge implementation), one JSON
//! file of what people read, or one FHIR R4 bundle for other care systems.

use std::path::PathBuf;

use cercle_node::ops::export::{Export, ExportFormat};
use serde::Serialize;

use crate::Context;
use crate::backend::ask;
use crate::output::{answer, progress_bytes};

#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// The circle: its id or an unambiguous prefix.
    circle: String,
    /// automerge (a directory of .automerge files), json or fhir (one file: a FHIR R4
    /// Bundle of the patient, care team, notebook, messages, documents and provenance).
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// The directory (automerge) or file (json) to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Automerge,
    Json,
    Fhir,
}

#[derive(Debug, Serialize)]
struct Exported {
    files: Vec<String>,
    bytes: u64,
}

pub(crate) fn run(ctx: &Context, args: ExportArgs) -> anyhow::Result<()> {
    let format = match args.format {
        Format::Automerge => ExportFormat::Automerge,
        Format::Json => ExportFormat::Json,
        Format::Fhir => ExportFormat::Fhir,
    };
    let export = Export {
        circle: args.circle,
        format,
    };
    let files = ask(ctx, export)?.files;
    let contents = files
        .into_iter()
        .map(|f| {
            hex::decode(&f.content)
                .map(|b| (f.name, b))
                .map_err(|_| anyhow::anyhow!("the node sent a damaged export"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let total: u64 = contents.iter().map(|(_, b)| b.len() as u64).sum();
    let targets: Vec<(PathBuf, Vec<u8>)> = match format {
        ExportFormat::Automerge => {
            std::fs::create_dir_all(&args.out)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.out.display()))?;
            contents
                .into_iter()
                .map(|(name, b)| (args.out.join(name), b))
                .collect()
        }
        _ => contents
            .into_iter()
            .map(|(_, b)| (args.out.clone(), b))
            .collect(),
    };
    let bar = progress_bytes(total, "exporting");
    let mut written = Vec::new();
    for (path, bytes) in targets {
        // The patient's file: readable by this user only. The path is the user's own choice.
        std::io::Write::write_all(&mut crate::output::create_private(&path, true)?, &bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        bar.inc(bytes.len() as u64);
        written.push(path.display().to_string());
    }
    bar.finish_and_clear();
    let out = Exported {
        files: written,
        bytes: total,
    };
    answer(ctx.json, &out, || {
        format!("wrote {} ({} bytes)", out.files.join(", "), out.bytes)
    })
}
