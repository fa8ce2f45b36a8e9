//! `cargo run -p cercle-simulations -- <scenario> --seed N`: runs one scenario and prints its
//! report as a table, or as JSON with `--json`.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)] // printing the report is this binary's job

use cercle_simulations::{gossip, network};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Deterministic simulations of Cercle circles")]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
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
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let v = serde_json::to_value(&report)?;
                if let Some(map) = v.as_object() {
                    for (k, v) in map {
                        println!("{k:<24} {v}");
                    }
                }
            }
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
    }
    Ok(())
}
