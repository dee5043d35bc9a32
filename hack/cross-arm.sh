#!/usr/bin/env bash
# Cross-builds edgecore for 64-bit and 32-bit ARM Linux on an x86_64 Debian 12 (bookworm) host and
# checks the binaries under qemu-user. Needs root (apt-get, dpkg --add-architecture).
#
#   hack/cross-arm.sh            # both targets
#   hack/cross-arm.sh aarch64    # aarch64-unknown-linux-gnu only (also: arm64)
#   hack/cross-arm.sh armv7      # armv7-unknown-linux-gnueabihf only (also: armhf)
#
# Why Debian's compiler: rustup cannot download targets here (no network but the package registries),
# so the standard library for the ARM targets comes from Debian (libstd-rust-web-dev:arm64/armhf,
# multiarch). Those rlibs only load in the exact rustc that built them, so the build uses Debian's
# rustc-web (/usr/bin/rustc, 1.96) through cargo via RUSTC=; the cargo on PATH (rustup's 1.95 or
# Debian's cargo-web) drives it. On a machine where `rustup target add` works, see "Cross-building
# edgecore for ARM" in README.md for the plain cargo recipe.
#
# Per target: `file` of the binary, `edgecore --version` under qemu, --minconfig/--defaultconfig parsed
# as YAML, then edgecore started under qemu with edged/eventbus off and its cloud unreachable: it must
# write its SQLite database (meta + device tables), serve /metrics (edgehub_connected 0, connection
# failures counted) and stop cleanly on SIGTERM.
#
# Environment (defaults in brackets):
#   CARGO_TARGET_DIR [/var/lib/kubeedge-dev/cross-target]   PROFILE [edge] (edge = size-optimised, fat LTO;
#   release is faster to build)   CARGO_BUILD_JOBS [1]   NICE [19]   SKIP_INSTALL [0]   SKIP_SMOKE [0]
#   SMOKE_SECONDS [5] (how long edgecore keeps running under qemu with its cloud unreachable)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

case "${1:-all}" in
    all) TRIPLES=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf) ;;
    aarch64 | arm64 | aarch64-unknown-linux-gnu) TRIPLES=(aarch64-unknown-linux-gnu) ;;
    armv7 | armhf | arm | armv7-unknown-linux-gnueabihf) TRIPLES=(armv7-unknown-linux-gnueabihf) ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
        exit 0
        ;;
    *)
        echo "usage: $0 [all|aarch64|armv7]" >&2
        exit 2
        ;;
esac

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/lib/kubeedge-dev/cross-target}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
PROFILE=${PROFILE:-edge}
NICE=${NICE:-19}

log() { printf '\n==> %s\n' "$*"; }
die() {
    echo "cross-arm: $*" >&2
    exit 1
}

# Debian architecture, GNU triple (gcc prefix, qemu sysroot), qemu binary for a Rust target.
deb_arch() { case $1 in aarch64-*) echo arm64 ;; armv7-*) echo armhf ;; esac }
gnu_triple() { case $1 in aarch64-*) echo aarch64-linux-gnu ;; armv7-*) echo arm-linux-gnueabihf ;; esac }
qemu_bin() { case $1 in aarch64-*) echo qemu-aarch64 ;; armv7-*) echo qemu-arm ;; esac }

install_deps() {
    [[ $EUID -eq 0 ]] || die "run as root (apt-get, dpkg --add-architecture), or SKIP_INSTALL=1"
    command -v apt-get >/dev/null || die "needs Debian's apt-get"
    local -a pkgs=(rustc-web libstd-rust-web-dev gcc protobuf-compiler qemu-user file curl python3 python3-yaml openssl)
    local t arch
    for t in "${TRIPLES[@]}"; do
        arch=$(deb_arch "$t")
        if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
            dpkg --add-architecture "$arch"
        fi
        pkgs+=("libstd-rust-web-dev:$arch" "libc6:$arch" "gcc-$(gnu_triple "$t")" "libc6-dev-$arch-cross")
    done
    command -v cargo >/dev/null || pkgs+=(cargo-web)
    local -a missing=()
    local p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "apt-get install ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

# The std rlibs of the target must come from the same rustc build as the compiler.
check_toolchain() {
    export RUSTC=${RUSTC:-/usr/bin/rustc}
    export RUSTDOC=${RUSTDOC:-/usr/bin/rustdoc}
    [[ -x $RUSTC ]] || die "$RUSTC missing: apt-get install rustc-web"
    local host t sysroot
    host=$("$RUSTC" -vV | sed -n 's/^release: //p')
    sysroot=$("$RUSTC" --print sysroot)
    echo "rustc: $("$RUSTC" --version) (sysroot $sysroot); cargo: $(cargo --version)"
    for t in "${TRIPLES[@]}"; do
        ls "$sysroot/lib/rustlib/$t/lib/"libstd-*.rlib >/dev/null 2>&1 ||
            die "no std for $t in $sysroot/lib/rustlib: apt-get install libstd-rust-web-dev:$(deb_arch "$t") (same version as rustc-web $host)"
    done
}

# cc (ring, rusqlite's bundled SQLite) and the final link use the Debian cross gcc.
cross_env() {
    local t gnu var
    for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
        gnu=$(gnu_triple "$t")
        var=${t//-/_}
        export "CC_$var=$gnu-gcc" "AR_$var=$gnu-ar" "CARGO_TARGET_${var^^}_LINKER=$gnu-gcc"
    done
}

build() {
    local t=$1
    log "building edgecore for $t (profile $PROFILE, -j$CARGO_BUILD_JOBS, nice $NICE)"
    local start=$SECONDS
    nice -n "$NICE" cargo build --locked --profile "$PROFILE" -p edgecore --target "$t"
    echo "build time $t: $((SECONDS - start)) s"
}

bin_path() {
    local dir=$PROFILE
    [[ $PROFILE == dev ]] && dir=debug
    echo "$CARGO_TARGET_DIR/$1/$dir/edgecore"
}

# qemu's -L root. libstd-rust-web-dev:<arch> pulls in the multiarch libc6:<arch> (/lib/ld-linux-*.so.*,
# /lib/<gnu>/), and the loader then finds that libc through /etc/ld.so.cache even under
# -L /usr/<gnu>: a loader from libc6-<arch>-cross with a libc from libc6:<arch> (two glibc builds)
# spins forever in the first pthread_create. So use / when the multiarch libc is there.
qemu_root() {
    local interp
    case $1 in aarch64-*) interp=/lib/ld-linux-aarch64.so.1 ;; armv7-*) interp=/lib/ld-linux-armhf.so.3 ;; esac
    if [[ -e $interp ]]; then echo /; else echo "/usr/$(gnu_triple "$1")"; fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

smoke() {
    local t=$1 bin qemu sysroot work
    bin=$(bin_path "$t")
    qemu=$(qemu_bin "$t")
    sysroot=$(qemu_root "$t")
    local -a run=("$qemu" -L "$sysroot" "$bin")
    log "$t: $bin"
    file "$bin"
    ls -l "$bin"
    echo "highest glibc symbol version: $("$(gnu_triple "$t")-objdump" -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
    echo "\$ ${run[*]} --version"
    "${run[@]}" --version
    [[ ${SKIP_SMOKE:-0} == 1 ]] && return 0

    work=$(mktemp -d "/tmp/cross-arm-$t.XXXXXX")
    local flag
    for flag in --minconfig --defaultconfig; do
        "${run[@]}" "$flag" >"$work/out.yaml"
        python3 - "$work/out.yaml" "$flag" <<'EOF'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
assert d["kind"] == "EdgeCore", d.get("kind")
assert "edgehub" in d["modules"], sorted(d["modules"])
print(f"{sys.argv[2]}: parses as YAML, kind {d['kind']}, modules: {', '.join(sorted(d['modules']))}")
EOF
    done

    # A throwaway CA and node certificate (EC P-256), as keadm/cloudcore would hand out.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=KubeEdge -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj /CN=edge-arm -keyout "$work/edge.key" -out "$work/edge.csr" 2>/dev/null
    openssl x509 -req -in "$work/edge.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
        -days 2 -out "$work/edge.crt" 2>/dev/null

    # A cloud address nothing listens on (port taken and released).
    local mport cport
    mport=$(free_port)
    cport=$(free_port)
    cat >"$work/edgecore.yaml" <<EOF
apiVersion: edgecore.config.kubeedge.io/v1alpha1
kind: EdgeCore
metricsAddress: 127.0.0.1:$mport
database:
  dataSource: $work/edgecore.db
modules:
  edged:
    enable: false
    hostnameOverride: edge-arm
    nodeIP: 127.0.0.1
  edgehub:
    heartbeat: 2
    tlsCaFile: $work/ca.crt
    tlsCertFile: $work/edge.crt
    tlsPrivateKeyFile: $work/edge.key
    websocket:
      enable: true
      server: 127.0.0.1:$cport
  eventbus:
    enable: false
  devicetwin:
    enable: true
  edgemesh:
    enable: false
EOF
    NO_COLOR=1 "${run[@]}" --config "$work/edgecore.yaml" >"$work/edgecore.log" 2>&1 &
    local pid=$!
    # shellcheck disable=SC2064 # expand now: this pid and dir
    trap "kill $pid 2>/dev/null || true" EXIT
    local metrics="" i
    for i in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || {
            cat "$work/edgecore.log"
            die "$t: edgecore exited early"
        }
        if metrics=$(curl -fsS "http://127.0.0.1:$mport/metrics" 2>/dev/null) &&
            grep -Eq '^edgehub_connect_failures_total [1-9]' <<<"$metrics"; then
            break
        fi
        sleep 0.5
    done
    grep -q '^edgehub_' <<<"$metrics" || {
        cat "$work/edgecore.log"
        die "$t: /metrics on 127.0.0.1:$mport did not answer with edgehub metrics within 30 s"
    }
    echo "edgecore under qemu: /metrics up after ~$((i / 2)) s; leaving it running ${SMOKE_SECONDS:-5} s more"
    sleep "${SMOKE_SECONDS:-5}"
    kill -0 "$pid" 2>/dev/null || {
        cat "$work/edgecore.log"
        die "$t: edgecore exited while its cloud was unreachable"
    }
    metrics=$(curl -fsS "http://127.0.0.1:$mport/metrics") || die "$t: /metrics stopped answering"
    echo "/metrics (edgehub_*) with the cloud unreachable:"
    grep '^edgehub_' <<<"$metrics"
    grep -q '^edgehub_connected 0' <<<"$metrics" || die "$t: edgehub_connected is not 0 with no cloud"
    grep -Eq '^edgehub_connect_failures_total ([2-9]|[1-9][0-9])' <<<"$metrics" ||
        die "$t: edgehub did not keep retrying the unreachable cloud"
    python3 - "$work/edgecore.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
assert "meta" in tables and "device_twin" in tables, tables
print(f"SQLite DB {sys.argv[1]}: integrity {db.execute('PRAGMA integrity_check').fetchone()[0]}, tables: {', '.join(tables)}")
EOF
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    trap - EXIT
    echo "edgecore stopped on SIGTERM, exit status $rc; log:"
    sed 's/^/  | /' "$work/edgecore.log"
    [[ $rc -eq 0 ]] || die "$t: edgecore exited with $rc on SIGTERM"
    rm -rf "$work"
    echo "$t: smoke test passed"
}

[[ ${SKIP_INSTALL:-0} == 1 ]] || install_deps
check_toolchain
cross_env
for t in "${TRIPLES[@]}"; do
    build "$t"
done
for t in "${TRIPLES[@]}"; do
    smoke "$t"
done
