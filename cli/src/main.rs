//! `cercle`: the one binary of Cercle. Parses the command line, runs the command against the
//! node library, prints a human or `--json` answer, and turns any error into one sentence
//! and a documented exit code.
#![forbid(unsafe_code)]
// Printing the answer is this binary's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backend;
mod cmd;
mod config;
mod output;
mod passphrase;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the command failed (the message on stderr says why and what to do)
  2  the command line is wrong (unknown option, missing argument)

Every command talks to the node running on its home (`cercle up`) when there is one, and
opens the home's store itself otherwise. Settings of `cercle up` live in the configuration
file (`cercle config get` shows where; CERCLE_CONFIG names another one).";

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

// Parsed once per run: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Create this node's identity (once per home).
    Init(cmd::init::InitArgs),
    /// Show this node's identity and contact card.
    Whoami,
    /// Run this node in the foreground: sync with the circles' members, serve the local
    /// API and web UI, until Ctrl-C.
    Up(cmd::up::UpArgs),
    /// Show whether the node runs, its peer id, addresses and peers.
    Status,
    /// List the connected peers and what they share with this node.
    Peers,
    /// Create and list circles of care, and manage their members.
    #[command(subcommand)]
    Circle(cmd::circle::CircleCommand),
    /// Invite someone into a circle with a one-time code.
    #[command(subcommand)]
    Invite(cmd::invite::InviteCommand),
    /// Join a circle with an invite code (your node must be running).
    Join(cmd::invite::JoinArgs),
    /// Read a patient's record in an emergency with their emergency code, if a
    /// coordinator named you on call for them: read-only, 24 hours at most, and the team
    /// sees it (your node must be running).
    Breakglass(cmd::emergency::BreakGlassArgs),
    /// Read and change the patient file.
    #[command(subcommand)]
    Patient(cmd::patient::PatientCommand),
    /// Write and read the liaison notebook.
    #[command(subcommand)]
    Note(cmd::note::NoteCommand),
    /// Send and read the circle's messages.
    #[command(subcommand)]
    Msg(cmd::msg::MsgCommand),
    /// Add, list and fetch documents of the patient file.
    #[command(subcommand)]
    Doc(cmd::doc::DocCommand),
    /// The care plan's tasks.
    #[command(subcommand)]
    Task(cmd::task::TaskCommand),
    /// A circle's audit trail: who wrote what and when (and when it arrived here), what
    /// was refused and why, and any fork; as a table, JSON or CSV.
    Audit(cmd::audit::AuditArgs),
    /// Write a circle's documents to files: Automerge, JSON or a FHIR R4 Bundle.
    Export(cmd::export::ExportArgs),
    /// The health-professional directory (RPPS/ADELI): import its public extract, search it.
    #[command(subcommand)]
    Directory(cmd::directory::DirectoryCommand),
    /// Your devices: pair a new one, list them, revoke a lost one.
    #[command(subcommand)]
    Device(cmd::device::DeviceCommand),
    /// Your phones and tablets on this node's web UI over the LAN: pair, list, revoke.
    #[command(subcommand)]
    Phone(cmd::device::PhoneCommand),
    /// Carry circles on a USB key where no network reaches: `sync export`, `sync import`.
    #[command(subcommand)]
    Sync(cmd::carry::SyncCommand),
    /// Run a relay for operators: circuit relay, mailbox, introductions, metrics.
    Relay(cmd::relay::RelayArgs),
    /// Start a demo care team on this machine (a relay and several nodes) and print the
    /// URLs of their web UIs.
    Demo(cmd::demo::DemoArgs),
    /// Read and change the settings of `cercle up`.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or journald gets plain lines.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(shell, &mut Cli::command(), "cercle", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
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
        Command::Up(args) => cmd::up::up(&ctx, args),
        Command::Status => cmd::up::status(&ctx),
        Command::Peers => cmd::up::peers(&ctx),
        Command::Circle(c) => cmd::circle::run(&ctx, c),
        Command::Invite(c) => cmd::invite::run(&ctx, c),
        Command::Join(args) => cmd::invite::join(&ctx, args),
        Command::Breakglass(args) => cmd::emergency::break_glass(&ctx, args),
        Command::Patient(c) => cmd::patient::run(&ctx, c),
        Command::Note(c) => cmd::note::run(&ctx, c),
        Command::Msg(c) => cmd::msg::run(&ctx, c),
        Command::Doc(c) => cmd::doc::run(&ctx, c),
        Command::Task(c) => cmd::task::run(&ctx, c),
        Command::Directory(c) => cmd::directory::run(&ctx, c),
        Command::Export(args) => cmd::export::run(&ctx, args),
        Command::Audit(args) => cmd::audit::run(&ctx, args),
        Command::Sync(c) => cmd::carry::run(&ctx, c),
        Command::Device(c) => cmd::device::run(&ctx, c),
        Command::Phone(c) => cmd::device::phone(&ctx, c),
        Command::Relay(args) => cmd::relay::run(&ctx, args),
        Command::Demo(args) => cmd::demo::run(&ctx, args),
        Command::Config(c) => cmd::config::run(&ctx, c),
        Command::Completions { .. } => Ok(()),
        Command::Repair => cmd::repair::run(&ctx),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::printable(&one_sentence(&e)));
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
