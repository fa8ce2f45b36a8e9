//! `cargo run -p cercle-simulations -- <scenario> --seed N`: runs one scenario and prints its
//! report as a table, or as JSON with `--json`; `--plot DIR` also draws the named
//! scenarios' plots there (SVG).
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)] // printing the report is this binary's job

use std::path::PathBuf;

use cercle_simulations::territory::{self, Config};
use cercle_simulations::{gossip, network, plot};
use clap::{Parser, Subcommand};

/// A thousand node cores in one process allocate and free from every thread at once:
/// mimalloc's per-thread heaps spend less time on it than the system allocator (which also
/// gave pages back to the system and faulted them in again).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Deterministic simulations of Cercle circles")]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
}

/// A named scenario's seed, plot directory, and smaller sizes for quick runs.
#[derive(Debug, clap::Args)]
struct Named {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Draw the plots into this directory (created if missing).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Fewer nodes than the scenario's.
    #[arg(long)]
    nodes: Option<usize>,
    /// Fewer circles than the scenario's.
    #[arg(long)]
    circles: Option<usize>,
    /// Fewer relays (territories) than the scenario's.
    #[arg(long)]
    relays: Option<usize>,
    /// Fewer seconds of writes than the scenario's.
    #[arg(long)]
    write_s: Option<i64>,
    /// Threads to run the nodes on (the machine's cores by default); the report is the same
    /// whatever their number.
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Members of one circle write notes; devices reconcile pairwise over a lossy network.
    Gossip {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 12)]
        nodes: usize,
        /// Probability that a message is lost.
        #[arg(long, default_value_t = 0.10)]
        loss: f64,
        /// Probability per tick that a device goes offline or comes back.
        #[arg(long, default_value_t = 0.02)]
        churn: f64,
    },
    /// Nodes in several circles run the real sync protocol over a simulated network with
    /// partitions, lost connections, churn and concurrent writers.
    Network {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 50)]
        nodes: usize,
        #[arg(long, default_value_t = 5)]
        circles: usize,
        /// Probability that a message is lost (its connection breaks).
        #[arg(long, default_value_t = 0.10)]
        loss: f64,
        /// Probability per second that a node goes offline or comes back.
        #[arg(long, default_value_t = 0.05)]
        churn: f64,
    },
    /// A rural circle of 8 over a week, each node online 5-40 % of the time, one relay.
    RuralWeek(Named),
    /// A health centre's LAN with the internet down: 40 professionals, 150 patients.
    MspLan(Named),
    /// A region: 1 000 nodes, 5 000 circles, 20 relays, churn and outages.
    Region(Named),
}

fn print_report(json: bool, report: &impl serde::Serialize) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else if let Some(map) = serde_json::to_value(report)?.as_object() {
        for (k, v) in map {
            println!("{k:<24} {v}");
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.scenario {
        Scenario::Gossip {
            seed,
            nodes,
            loss,
            churn,
        } => {
            anyhow::ensure!((0.0..1.0).contains(&loss), "--loss must be in [0, 1)");
            anyhow::ensure!((0.0..=1.0).contains(&churn), "--churn must be in [0, 1]");
            let config = gossip::Config {
                nodes,
                loss,
                churn,
                ..Default::default()
            };
            let report = gossip::run(&config, seed);
            print_report(args.json, &report)?;
            anyhow::ensure!(report.converged, "the scenario did not converge");
        }
        Scenario::Network {
            seed,
            nodes,
            circles,
            loss,
            churn,
        } => {
            anyhow::ensure!((0.0..1.0).contains(&loss), "--loss must be in [0, 1)");
            anyhow::ensure!((0.0..=1.0).contains(&churn), "--churn must be in [0, 1]");
            anyhow::ensure!(
                nodes >= 2 && circles >= 1,
                "--nodes must be at least 2 and --circles at least 1"
            );
            let config = network::Config {
                nodes,
                circles,
                loss,
                churn,
                ..Default::default()
            };
            let report = network::run(&config, seed);
            print_report(args.json, &report)?;
            anyhow::ensure!(report.converged, "the scenario did not converge");
            anyhow::ensure!(
                report.non_member_data_bytes == 0,
                "a node received data of a circle it is not a member of"
            );
        }
        Scenario::RuralWeek(named) => run_named(Config::rural_week(), named, args.json)?,
        Scenario::MspLan(named) => run_named(Config::msp_lan(), named, args.json)?,
        Scenario::Region(named) => run_named(Config::region(), named, args.json)?,
    }
    Ok(())
}

fn run_named(config: Config, named: Named, json: bool) -> anyhow::Result<()> {
    let at_most = |asked: Option<usize>, full: usize, what: &str| -> anyhow::Result<usize> {
        match asked {
            Some(0) => anyhow::bail!("--{what} must be at least 1"),
            Some(k) if k > full => {
                anyhow::bail!(
                    "--{what} may only make {} smaller (at most {full})",
                    config.name
                )
            }
            Some(k) => Ok(k),
            None => Ok(full),
        }
    };
    let nodes = at_most(named.nodes, config.nodes, "nodes")?;
    let circles = at_most(named.circles, config.circles, "circles")?;
    let relays = match config.relays {
        0 if named.relays.is_some() => anyhow::bail!("{} runs without relays", config.name),
        0 => 0,
        full => at_most(named.relays, full, "relays")?,
    };
    anyhow::ensure!(
        relays <= nodes,
        "--relays must not exceed --nodes (one territory per relay)"
    );
    let write_s = config.write_ms / 1000;
    let write_ms = match named.write_s {
        Some(s) if !(1..=write_s).contains(&s) => {
            anyhow::bail!("--write-s must be between 1 and {write_s}")
        }
        Some(s) => s * 1000,
        None => config.write_ms,
    };
    let config = config.at_most(nodes, circles, relays, write_ms);
    let threads = match named.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let (report, series) = territory::run(&config, named.seed, threads);
    print_report(json, &report)?;
    if let Some(dir) = &named.plot {
        let drawn = plot::draw(dir, &report, &series)?;
        for path in drawn {
            eprintln!("plot: {}", path.display());
        }
    }
    anyhow::ensure!(report.converged, "the scenario did not converge");
    anyhow::ensure!(
        report.non_member_data_bytes == 0,
        "a node received data of a circle it is not a member of"
    );
    Ok(())
}
