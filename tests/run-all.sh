#!/usr/bin/env bash
# Runs every check of Cercle on this machine: formatting, lints, the purity of cercle-crdt,
# the whole test suite and the simulations' CI scenarios. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cargo; then
  echo "cargo is missing: install Rust from your distribution or rustup first." >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The LAN test (mDNS between two network namespaces) needs `ip` and root; without them it
# says it was skipped.
if ! need ip && [ "$(id -u)" = 0 ] && need apt-get; then
  apt-get update -qq >/dev/null && apt-get install -y -qq iproute2 >/dev/null || true
fi

# The web UI is tested in a real headless Chromium through chromedriver.
if ! need chromedriver || ! need chromium; then
  if need apt-get; then
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq >/dev/null && $sudo_ apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium and chromedriver are missing: install them (Debian: chromium chromium-driver)" >&2
    exit 1
  fi
fi

step() { printf '\n== %s\n' "$*"; }

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cercle-crdt stays pure (no tokio, libp2p or sled)"
if cargo tree -p cercle-crdt -e normal --prefix none --locked | grep -E '^(tokio|libp2p|sled) '; then
  echo "cercle-crdt must not depend on tokio, libp2p or sled" >&2
  exit 1
fi

step "tests"
cargo test --workspace --locked

step "benchmark smoke run (each bench once, no timing)"
cargo test --workspace --benches --locked

step "simulation CI scenarios (same seed twice must print the same report)"
for seed in 1 2; do
  a=$(cargo run -q --locked -p cercle-simulations -- gossip --seed "$seed" --nodes 30 --json)
  b=$(cargo run -q --locked -p cercle-simulations -- gossip --seed "$seed" --nodes 30 --json)
  [ "$a" = "$b" ] || { echo "seed $seed gave two different reports" >&2; exit 1; }
  a=$(cargo run -q --locked -p cercle-simulations -- network --seed "$seed" --json)
  b=$(cargo run -q --locked -p cercle-simulations -- network --seed "$seed" --json)
  [ "$a" = "$b" ] || { echo "network seed $seed gave two different reports" >&2; exit 1; }
done
echo "simulations: converged and reproducible"
