//! `cercle`: the one binary of Cercle. Parses the command line, runs the command against the
//! node library, prints a human or `--json` answer, and turns any error into one sentence
//! and a documented exit code.
#![forbid(unsafe_code)]
// Printing the answer is this binary's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backend;
mod cmd;
mod output;
mod passphrase;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the command failed (the message says why and what to do)
  2  the command line is wrong (unknown option, missing argument)";

/// Cercle: a peer-to-peer sharing network for care teams.
#[derive(Debug, Parser)]
#[command(name = "cercle", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// The node's home directory (identity and circles).
    #[arg(long, global = true, env = "CERCLE_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this node's identity (once per home).
    Init(cmd::init::InitArgs),
    /// Show this node's identity.
    Whoami,
    /// Create and list circles of care.
    #[command(subcommand)]
    Circle(cmd::circle::CircleCommand),
    /// Write and read the liaison notebook.
    #[command(subcommand)]
    Note(cmd::note::NoteCommand),
    /// Run this node in the foreground: sync with the circles' members until Ctrl-C.
    Up(cmd::up::UpArgs),
    /// Show whether the node runs, its peer id, addresses and peers.
    Status,
    /// List the connected peers and what they share with this node.
    Peers,
    /// Run a relay for operators: circuit relay, rendezvous, AutoNAT, metrics.
    Relay(cmd::relay::RelayArgs),
    /// Create a demo care circle on this machine (in a new temporary home unless --home).
    Demo,
    /// Rebuild the store's database from its journal (after disk or machine trouble).
    Repair,
}

/// What every command gets: where the home is and how to print.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) home: cercle_node::Home,
    pub(crate) json: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CERCLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let home_given = cli.home.is_some();
    let home = match cli.home.or_else(default_home) {
        Some(h) => h,
        None => {
            eprintln!(
                "error: no home directory could be found; pass --home DIR or set CERCLE_HOME."
            );
            return ExitCode::from(1);
        }
    };
    let ctx = Context {
        home: cercle_node::Home::at(home),
        json: cli.json,
    };
    let result = match cli.command {
        Command::Init(args) => cmd::init::run(&ctx, args),
        Command::Whoami => cmd::init::whoami(&ctx),
        Command::Circle(c) => cmd::circle::run(&ctx, c),
        Command::Note(c) => cmd::note::run(&ctx, c),
        Command::Up(args) => cmd::up::up(&ctx, args),
        Command::Status => cmd::up::status(&ctx),
        Command::Peers => cmd::up::peers(&ctx),
        Command::Relay(args) => cmd::relay::run(&ctx, args),
        Command::Demo => cmd::demo::run(&ctx, home_given),
        Command::Repair => cmd::repair::run(&ctx),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_sentence(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes as one sentence ending with a period.
fn one_sentence(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

fn default_home() -> Option<PathBuf> {
    directories::ProjectDirs::from("fr", "Cercle", "cercle").map(|d| d.data_dir().to_path_buf())
}
