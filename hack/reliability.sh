#!/usr/bin/env bash
# The reliability suite in its full form (a bench: not part of ./hack/test.sh, which runs the short
# form of every scenario).
#
#   ./hack/reliability.sh [SOAK_MINUTES]        default 30
#
# Scenarios (tests/blackbox/tests/it/reliability.rs, hostile.rs; fuzz/ for the decoders):
#   soak          50 pods, 20 devices (10 twin updates/s in all), a ConfigMap updated every 10 s,
#                 the cloud link cut for 5 s every 60 s; RSS and fds of edgecore and cloudcore
#                 sampled each minute
#   crash loop    kill -9 edgecore at random moments x100 during twin and pod traffic
#   cloud crash   kill -9 cloudcore during a 1,000-object burst x20
#   hostile       malformed/oversized frames, slowloris handshakes, MQTT garbage, 1,000 MQTT
#                 clients at once, bad twin JSON, truncated YAML and certificates
#   fuzz          every decoder a peer reaches, $KE_FUZZ_SECS (default 300) each
#
# Needs what ./hack/test.sh sets up (containerd, the local Kubernetes build); run that once first.
# Every line the scenarios print about their counts starts with "reliability"; they are collected
# at the end, with the command, for docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${KE_STATE_DIR:-/var/lib/kubeedge-dev}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$STATE/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
SOAK_MINUTES=${1:-30}
LOG=$STATE/reliability-$(date -u +%Y%m%dT%H%M%SZ).log
mkdir -p "$STATE"

export KE_RELIABILITY_FULL=1
export KE_SOAK_SECS=$((SOAK_MINUTES * 60))
T0=$(date +%s)
{
  echo "command: ./hack/reliability.sh $SOAK_MINUTES   ($(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%FT%TZ))"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
} | tee "$LOG"

"$ROOT/hack/ensure-toolchain.sh"
. "$ROOT/hack/clone-target.sh"
cargo build --workspace --bins --locked 2>&1 | tail -1
# One scenario at a time: they would otherwise compete for the two cores and skew the figures.
status=0
for scenario in reliability::soak reliability::crash_loop reliability::cloud_crash hostile::; do
  s0=$(date +%s)
  if cargo nextest run -p blackbox --locked --no-capture --test-threads 1 --no-fail-fast "$scenario" >>"$LOG" 2>&1; then
    result=pass
  else
    result=FAIL; status=1
  fi
  echo "reliability scenario $scenario: $result in $(( $(date +%s) - s0 )) s" | tee -a "$LOG"
done
s0=$(date +%s)
if "$ROOT/hack/fuzz.sh" "${KE_FUZZ_SECS:-300}" >>"$LOG" 2>&1; then result=pass; else result=FAIL; status=1; fi
echo "reliability scenario fuzz: $result in $(( $(date +%s) - s0 )) s" | tee -a "$LOG"

echo
echo "== figures (full log: $LOG, $(( $(date +%s) - T0 )) s in all)"
grep -E '^(reliability|hostile|fuzz)[ :]' "$LOG" || true
exit $status
