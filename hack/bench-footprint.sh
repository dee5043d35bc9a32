#!/usr/bin/env bash
# hack/bench-footprint.sh — the footprint KPI: edgecore's RSS, RssAnon and %CPU from 0 to 100
# pods in steps of 5 (edged on containerd), and pod start latency p50/p99, on the release
# binaries. A bench, not a test: hack/test.sh does not run it.
#
# Needs root and the containerd of hack/setup-containerd.sh (run first), and 127.0.0.1:10255
# free (edged's read-only endpoint). Every pod is deleted at the end; leftovers labelled
# kubeedge.io/node=footprint-bench are removed by id.
#
#   ./hack/bench-footprint.sh                      # 0..100 pods, steps of 5
#   ./hack/bench-footprint.sh --max 20 --step 5    # any footprintbench flag (--help)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p footprintbench -p cloudcore
# edgecore as shipped to edges: the size-optimised `edge` profile (Cargo.toml)
cargo build --profile edge -p edgecore
exec "$target/release/footprintbench" --edgecore "$target/edge/edgecore" "$@"
