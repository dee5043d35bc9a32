#!/usr/bin/env bash
# The one command that runs the tests (CI calls exactly this through .ci/run).
#
#   ./hack/test.sh            lint, build, unit + black-box tests, local Kubernetes checks
#
# On a fresh Debian machine (root) it installs what it needs from Debian's packages first.
# Build output goes to $KE_STATE_DIR/target (default /var/lib/kubeedge-dev/target), outside the
# clone, so a second run on the same machine is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${KE_STATE_DIR:-/var/lib/kubeedge-dev}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$STATE/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
mkdir -p "$STATE"
T0=$(date +%s)
phase() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

phase "system packages"
need=()
command -v mosquitto >/dev/null || need+=(mosquitto)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
command -v openssl >/dev/null || need+=(openssl)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v protoc >/dev/null || need+=(protobuf-compiler)   # k8s-cri generates the CRI bindings
command -v socat >/dev/null || need+=(socat)                  # pty pairs for the Modbus RTU test
command -v python3 >/dev/null || need+=(python3)              # pymodbus: the Modbus server the mapper tests talk to
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The Debian package starts a system mosquitto where systemd runs; tests start their own.
  else
    echo "missing packages (${need[*]}): run as root or install them" >&2
    exit 1
  fi
fi

phase "container runtime (containerd + CNI for edged's tests)"
if [ "$(id -u)" = 0 ]; then
  # Idempotent: on a machine already set up it changes nothing and takes a second or two.
  "$ROOT/hack/setup-containerd.sh" > "$STATE/setup-containerd.log" 2>&1 \
    || { tail -30 "$STATE/setup-containerd.log" >&2; echo "hack/setup-containerd.sh failed (log: $STATE/setup-containerd.log)" >&2; exit 1; }
  tail -3 "$STATE/setup-containerd.log"
else
  echo "not root: skipping hack/setup-containerd.sh; CRI tests need containerd on /run/containerd/containerd.sock" >&2
fi

# pymodbus (pinned) in a venv under $STATE: Debian's python refuses system-wide pip installs.
PYMODBUS_VERSION=3.8.6
PYSERIAL_VERSION=3.5
export KE_PYTHON=$STATE/pyvenv/bin/python3
if ! "$KE_PYTHON" -c "import pymodbus, serial, sys; sys.exit(pymodbus.__version__ != '$PYMODBUS_VERSION')" 2>/dev/null; then
  rm -rf "$STATE/pyvenv"
  python3 -m venv "$STATE/pyvenv"
  "$STATE/pyvenv/bin/pip" install -q --disable-pip-version-check \
    "pymodbus==$PYMODBUS_VERSION" "pyserial==$PYSERIAL_VERSION"
fi

"$ROOT/hack/ensure-toolchain.sh"

. "$ROOT/hack/clone-target.sh"

phase "format"
cargo fmt --all -- --check

phase "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

phase "build binaries"
cargo build --workspace --bins --locked

phase "tests"
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
cargo test --workspace --doc --locked

if [ "${KE_SKIP_FUZZ:-0}" != 1 ]; then
  # The short form of the reliability suite's fuzzing: every cargo-fuzz target for a few seconds
  # (hack/reliability.sh runs them longer). Installs cargo-fuzz under $STATE the first time.
  phase "fuzz (short)"
  "$ROOT/hack/fuzz.sh" "${KE_FUZZ_SECS:-10}"
fi

if [ -x "$ROOT/hack/test-local-k8s.sh" ] && [ "${KE_SKIP_K8S:-0}" != 1 ]; then
  phase "local Kubernetes control plane"
  "$ROOT/hack/test-local-k8s.sh"
fi

phase "done"
