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
# The network-namespace tests (mDNS on a LAN, members behind two NAT routers) need root,
# `ip` and `nft`; without them they say they were skipped.
if [ "$(id -u)" = 0 ] && need apt-get; then
  missing=""
  need ip || missing="$missing iproute2"
  need nft || missing="$missing nftables"
  if [ -n "$missing" ]; then
    apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null || true
  fi
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

# Checkers written independently of Cercle (HL7's FHIR R4 schema, axe-core), from the npm
# registry, into tests/js/node_modules.
if ! need node || ! need npm; then
  if need apt-get; then
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq >/dev/null && $sudo_ apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "Node.js and npm are missing: install them (Debian: nodejs npm)" >&2
    exit 1
  fi
fi
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null

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

# One build of everything (unit, integration and end-to-end tests, benchmarks, binaries)
# with one feature set; the end-to-end tests then run that build's `cercle`.
step "build"
cargo test --workspace --all-targets --locked --no-run
export CERCLE_BIN="$PWD/target/debug/cercle"

# Benchmarks run once each, as tests (no timing); the simulations' CI scenarios (same seed
# twice must print the same report) are simulations/tests/reproducible.rs.
step "tests"
cargo test --workspace --all-targets --locked
