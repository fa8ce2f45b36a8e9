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

/// The named scenarios at a size CI runs in a minute or two (their full size is for the
/// release build: `cargo run --release -p cercle-simulations -- region --seed 1`). Each seed
/// runs twice, on the machine's cores and then on one thread, and must print the same
/// report; the plots are drawn.
#[test]
fn the_named_scenarios_are_reproducible_from_their_seeds() {
    let plots = std::env::temp_dir().join(format!("cercle-plots-{}", std::process::id()));
    let plot = plots.to_string_lossy().into_owned();
    let region = [
        "region",
        "--nodes",
        "60",
        "--circles",
        "240",
        "--relays",
        "4",
        "--write-s",
        "60",
    ];
    let lan = [
        "msp-lan",
        "--nodes",
        "20",
        "--circles",
        "40",
        "--write-s",
        "60",
    ];
    for (args, seeds) in [(&region[..], ["1", "2"]), (&lan[..], ["1", "2"])] {
        for seed in seeds {
            let mut args = args.to_vec();
            args.extend(["--seed", seed]);
            let first = report(&args);
            assert_eq!(converged(&first), Some(true), "{first}");
            let everywhere = |r: &str| {
                let v: serde_json::Value = serde_json::from_str(r).ok()?;
                Some((
                    v.get("notes_written")?.as_u64()?,
                    v.get("notes_everywhere")?.as_u64()?,
                ))
            };
            let (written, held) = everywhere(&first).unwrap_or_default();
            assert!(
                written > 0 && held == written,
                "not every note reached every member: {first}"
            );
            args.extend(["--plot", plot.as_str(), "--threads", "1"]);
            assert_eq!(first, report(&args), "{args:?} gave two reports");
        }
    }
    let drawn = std::fs::read_dir(&plots).map(|d| d.count()).unwrap_or(0);
    assert_eq!(drawn, 2 * 3 + 2 * 2, "plots in {plot}");
    let _ = std::fs::remove_dir_all(&plots);
}
