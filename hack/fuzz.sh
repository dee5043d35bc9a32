#!/usr/bin/env bash
# hack/fuzz.sh — runs every cargo-fuzz target of fuzz/ (the decoders a network peer or user input
# reaches; each target's doc comment says what it checks) for a fixed time each.
#
#   hack/fuzz.sh [SECONDS_PER_TARGET]       default 20
#   hack/fuzz.sh 30 mqtt_broker token       only these targets
#
# Stable toolchain only: cargo-fuzz needs nightly flags (-Zsanitizer=address), which the pinned
# stable rustc accepts with RUSTC_BOOTSTRAP=1 (the ASan runtime ships in rust-std for x86_64).
# cargo-fuzz is installed from crates.io into $KE_STATE_DIR/cargo-fuzz if it is not on PATH.
# Builds go to $KE_FUZZ_TARGET_DIR (default $KE_STATE_DIR/fuzz-target; an inherited
# CARGO_TARGET_DIR is not used, the sanitizer flags would only churn it), with one job so a core
# stays free. Each run works on a temporary copy of fuzz/corpus/<target> (the seeds in the repo are
# not modified). Prints `fuzz <target>: <runs> runs in <s>s, no crash` per target; on a crash it
# prints the crash input's path (under $KE_FUZZ_ARTIFACTS, default $KE_STATE_DIR/fuzz-artifacts)
# and the libFuzzer log, goes on with the other targets and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-20}
shift $(( $# > 0 ? 1 : 0 ))
[[ $SECS =~ ^[0-9]+$ && $SECS -gt 0 ]] || { echo "usage: hack/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2; }
STATE=${KE_STATE_DIR:-/var/lib/kubeedge-dev}
TARGET_DIR=${KE_FUZZ_TARGET_DIR:-$STATE/fuzz-target}
ARTIFACTS=${KE_FUZZ_ARTIFACTS:-$STATE/fuzz-artifacts}
TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
mkdir -p "$STATE" "$ARTIFACTS"

"$ROOT/hack/ensure-toolchain.sh"
if ! command -v cargo-fuzz >/dev/null; then
  export PATH=$STATE/cargo-fuzz/bin:$PATH
  if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: installing cargo-fuzz into $STATE/cargo-fuzz"
    CARGO_TARGET_DIR=$STATE/cargo-fuzz/build cargo +"$TOOLCHAIN" install cargo-fuzz --locked -j1 \
      --root "$STATE/cargo-fuzz" --quiet
  fi
fi

export RUSTC_BOOTSTRAP=1 CARGO_BUILD_JOBS=1 CARGO_TARGET_DIR=$TARGET_DIR
cd "$ROOT/fuzz"
t0=$(date +%s)
cargo +"$TOOLCHAIN" fuzz build
echo "fuzz: built all targets in $(( $(date +%s) - t0 ))s"

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +"$TOOLCHAIN" fuzz list); fi
work=$(mktemp -d "${TMPDIR:-/tmp}/kubeedge-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
status=0
for t in "${targets[@]}"; do
  corpus=$work/corpus-$t log=$work/$t.log
  mkdir -p "$corpus" "$ARTIFACTS/$t"
  if [ -d "corpus/$t" ]; then cp -r "corpus/$t/." "$corpus/"; fi
  s0=$(date +%s)
  if cargo +"$TOOLCHAIN" fuzz run "$t" "$corpus" -- -max_total_time="$SECS" -rss_limit_mb=2048 \
       -artifact_prefix="$ARTIFACTS/$t/" -print_final_stats=1 >"$log" 2>&1; then
    # libFuzzer's last line: "Done 123456 runs in 20 second(s)".
    read -r runs secs < <(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$log" | tail -1) || true
    echo "fuzz $t: ${runs:-?} runs in ${secs:-$(( $(date +%s) - s0 ))}s, no crash"
  else
    status=1
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "fuzz $t: CRASH after $(( $(date +%s) - s0 ))s, input ${crash:-<not written, see log>}"
    grep -E '^(thread .* panicked|==[0-9]+==ERROR|SUMMARY)' -A3 "$log" | head -20 || tail -30 "$log"
    echo "fuzz $t: reproduce with: cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$TARGET_DIR cargo +$TOOLCHAIN fuzz run $t ${crash:-<input>}"
  fi
done
exit $status
