//! `cargo run -p cercle-simulations -- <scenario> --seed N`: runs one scenario and prints its
//! report as a table, or as JSON with `--json`.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)] // printing the report is this binary's job

use cercle_simulations::gossip;
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
    }
    Ok(())
}
