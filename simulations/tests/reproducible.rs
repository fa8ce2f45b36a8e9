//! The simulations' CI scenarios, through the real `cercle-simulations` binary: each scenario
//! converges, and the same seed run twice prints the same report, byte for byte.

use std::process::Command;

fn report(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cercle-simulations"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap_or_else(|e| panic!("cannot run cercle-simulations: {e}"));
    assert!(
        out.status.success(),
        "cercle-simulations {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("the report is not UTF-8: {e}"))
}

fn converged(report: &str) -> Option<bool> {
    serde_json::from_str::<serde_json::Value>(report)
        .ok()?
        .get("converged")?
        .as_bool()
}

#[test]
fn the_gossip_scenario_is_reproducible_from_its_seed() {
    for seed in ["1", "2"] {
        let args = ["gossip", "--seed", seed, "--nodes", "30"];
        let first = report(&args);
        assert_eq!(converged(&first), Some(true), "{first}");
        assert_eq!(first, report(&args), "seed {seed} gave two reports");
    }
}

#[test]
fn the_network_scenario_is_reproducible_from_its_seed() {
    for seed in ["1", "2"] {
        let args = ["network", "--seed", seed];
        let first = report(&args);
        assert_eq!(converged(&first), Some(true), "{first}");
        assert_eq!(first, report(&args), "seed {seed} gave two reports");
    }
}
