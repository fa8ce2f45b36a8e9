#!/usr/bin/env bash
# A fuzzing soak: every target in turn for SECS seconds each (default 300), one core,
# without a sanitizer (the code under test forbids `unsafe`; a panic or a broken
# property is what is looked for), starting from the committed corpora and adding to
# them. Prints one line per target with its executions and a total at the end.
#   node/fuzz/soak.sh [SECS]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-300}
# Built once: `cargo fuzz run` would rebuild (and wait) whenever a source changed.
cargo +nightly fuzz build -O -s none >/dev/null 2>&1
bin=target/x86_64-unknown-linux-gnu/release
total=0
for target in $(cargo +nightly fuzz list); do
    log=$(mktemp)
    mkdir -p "artifacts/$target" "corpus/$target"
    "$bin/$target" "corpus/$target" -artifact_prefix="artifacts/$target/" \
        -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 || {
        echo "$target: FINDING (see artifacts/$target and $log)"
        exit 1
    }
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    echo "$target: $runs executions in ${secs}s, $cov"
    total=$((total + runs))
    rm -f "$log"
done
echo "total: $total executions"
