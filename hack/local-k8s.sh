#!/usr/bin/env bash
# local-k8s.sh — a real Kubernetes control plane (v1.20.2) on this machine, for the demo and the tests.
#
#   hack/local-k8s.sh build            fetch + build the binaries only (cached; no cluster)
#   hack/local-k8s.sh up               build if missing, then start etcd, kube-apiserver,
#                                      kube-controller-manager, kube-scheduler (no kubelet), wait for
#                                      /readyz, apply build/crds + build/rbac, write kubeconfigs
#   hack/local-k8s.sh down [--wipe]    stop exactly what `up` started; --wipe also deletes cluster state
#                                      (etcd data, certs, kubeconfigs) but keeps the build cache
#   hack/local-k8s.sh env              print `export KUBECONFIG=...` (eval "$(hack/local-k8s.sh env)")
#   hack/local-k8s.sh status           processes, ports, health
#   hack/local-k8s.sh kubectl ARGS...  Debian's kubectl 1.20 (unpacked on first use) with the admin kubeconfig
#
# Where the binaries come from: no registry ships kube-apiserver, but Debian's `kubernetes` SOURCE package
# (1.20.2, full tree with vendor/) builds it with Debian's Go 1.19 — after swapping the vendored
# github.com/modern-go/reflect2 1.0.1 for Debian's 1.0.2 (with 1.0.1, Go >= 1.18 binaries die with SIGSEGV in
# json-iterator), and after patching go-openapi's type check (under Go >= 1.19 it takes "" for JSON null and
# rejects custom resources with empty strings). etcd 3.4 is unpacked from Debian's `etcd-server` .deb (NOT installed: its postinst would start
# a system etcd on :2379 through /etc/init.d).
#
# Environment (all optional):
#   KE_STATE_DIR            state + cache root (default /var/lib/kubeedge-dev)
#   KE_ETCD_PORT            etcd client port        (default: first free from 23790)
#   KE_ETCD_PEER_PORT       etcd peer port          (default: first free from 23800)
#   KE_APISERVER_PORT       kube-apiserver port     (default: first free from 6443, then 16443...)
#   KE_KCM_PORT             controller-manager port (default: first free from 10357)
#   KE_SCHEDULER_PORT       scheduler port          (default: first free from 10359)
#   KE_SERVICE_CIDR         service range           (default 10.96.0.0/12; first IP must stay 10.96.0.1)
#   KE_KUBECTL              kubectl used by `up` to apply manifests (default: kubectl on PATH)
#   KE_BUILD_NICE           niceness of the Go build (default 10)
#   KE_READY_TIMEOUT        seconds to wait for health (default 120)
# Ports chosen once are remembered in $KE_STATE_DIR/cluster/ports.env and reused while they stay free.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="${KE_STATE_DIR:-/var/lib/kubeedge-dev}"
CACHE="$STATE/cache"          # build cache: survives `down --wipe`
BIN="$CACHE/bin"
CLUSTER="$STATE/cluster"      # cluster state: certs, etcd data, kubeconfigs, ports
PKI="$CLUSTER/pki"
RUN="$STATE/run"              # pid files
LOGS="$STATE/logs"
K8S_VERSION=v1.20.2
K8S_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler)
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)   # start order
READY_TIMEOUT="${KE_READY_TIMEOUT:-120}"
export DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'local-k8s: error: %s\n' "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root (installs Debian packages, writes $STATE)"; }

# apt-get that waits for the dpkg lock instead of failing (other people install packages on this machine).
apt_get() { apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 "$@"; }

# ---------------------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------------------

# Private apt configuration: deb-src twins of the system's own Debian sources, lists and .debs under the
# cache. The system's apt configuration is never modified.
APTD="$CACHE/apt"
APT_PRIVATE=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$APTD/parts"
             -o "Dir::State::Lists=$APTD/lists" -o "Dir::Cache=$APTD/cache")

private_apt_update() {
  [ -n "$(find "$APTD/lists" -maxdepth 1 -name '*Sources*' -print -quit 2>/dev/null)" ] && return 0
  mkdir -p "$APTD/parts" "$APTD/lists/partial" "$APTD/cache/archives/partial"
  local f n=0
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822 stanzas: keep the URIs/Suites/Components/Signed-By, ask for sources instead of binaries
    sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$APTD/parts/src-$n.sources"; n=$((n + 1))
  done
  if [ -f /etc/apt/sources.list ]; then
    awk '$1=="deb"{ $1="deb-src"; print }' /etc/apt/sources.list >"$APTD/parts/src.list"
  fi
  log "apt: private deb-src index (system sources untouched)"
  apt_get "${APT_PRIVATE[@]}" update -qq
}

# Unpack a Debian binary package into DIR without installing it (no maintainer scripts run).
deb_unpack() { # PKG DIR
  local pkg=$1 dir=$2 tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && chmod 755 . && apt_get download -qq "$pkg" >/dev/null 2>&1) \
    || { rm -rf "$tmp"; die "apt-get download $pkg failed"; }
  mkdir -p "$dir"
  dpkg-deb -x "$tmp"/*.deb "$dir"
  rm -rf "$tmp"
}

build_etcd() {
  [ -x "$BIN/etcd" ] && return 0
  log "etcd: unpacking Debian's etcd-server (3.4) into the cache"
  deb_unpack etcd-server "$CACHE/etcd-server"
  install -m 0755 "$CACHE/etcd-server/usr/bin/etcd" "$BIN/etcd"
  "$BIN/etcd" --version | head -n1 >&2
}

# Source patches on top of Debian's tree. Bump BUILD_ID when they change: binaries built with another id
# are rebuilt (incrementally, from the Go cache).
BUILD_ID="$K8S_VERSION+ke.2 reflect2-1.0.2 openapi-empty-string"

build_kube() {
  local b missing=0
  for b in "${K8S_BINS[@]}"; do [ -x "$BIN/$b" ] || missing=1; done
  [ "$(cat "$BIN/.build-id" 2>/dev/null)" = "$BUILD_ID" ] || missing=1
  [ "$missing" = 0 ] && return 0

  log "build tools from Debian: golang-go (1.19), rsync, dpkg-dev (installed if missing)"
  local pkgs=() p
  for p in golang-go rsync dpkg-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
  done
  if [ ${#pkgs[@]} -gt 0 ]; then
    apt_get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi

  local srcroot="$CACHE/src" S
  mkdir -p "$srcroot"
  S=$(find "$srcroot" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
  if [ -z "$S" ] || ! [ -f "$S/.ke-unpacked" ]; then
    private_apt_update
    rm -rf "${srcroot:?}"/*
    log "source: apt-get source kubernetes (Debian's 1.20 tree, vendor/ included)"
    (cd "$srcroot" && chmod 755 . && apt_get "${APT_PRIVATE[@]}" source -qq kubernetes >/dev/null 2>&1) \
      || die "apt-get source kubernetes failed (see 'apt-get source' with the private index under $APTD)"
    S=$(find "$srcroot" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
    [ -n "$S" ] || die "no kubernetes-* directory after apt-get source"
    touch "$S/.ke-unpacked"
  fi

  local V="$S/vendor/github.com/modern-go/reflect2"
  if ! [ -f "$V/go_above_118.go" ]; then
    log "vendor: github.com/modern-go/reflect2 1.0.1 -> Debian's 1.0.2 (Go >= 1.18 SIGSEGV fix)"
    local R="$CACHE/reflect2"
    [ -d "$R/usr/share/gocode/src/github.com/modern-go/reflect2" ] \
      || deb_unpack golang-github-modern-go-reflect2-dev "$R"
    R="$R/usr/share/gocode/src/github.com/modern-go/reflect2"
    find "$V" -maxdepth 1 -type f ! -name LICENSE ! -name BUILD -delete
    cp "$R"/*.go "$R"/*.s "$V/"
    rm -f "$V"/*_test.go
  fi

  # go-openapi's type check treats a value as JSON null when
  #   reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))
  # — it compares two reflect.Value headers, which never matched with the Go this was written for, but does
  # for "" since Go 1.19 (empty strings and reflect.Zero share runtime.zeroVal). Unpatched, the apiserver
  # rejects every custom resource holding an empty string ('Invalid value: "null": ... must be of type
  # string'). Patched to what it did under older Go: only nil is JSON null.
  local f
  for f in "$S/vendor/github.com/go-openapi/validate/type.go" "$S/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go"; do
    [ -f "$f" ] || continue
    if grep -q 'data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))' "$f"; then
      log "vendor: ${f#"$S/vendor/"}: only nil is JSON null (Go >= 1.19 empty-string fix)"
      sed -i 's/data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))/data == nil/' "$f"
    fi
  done

  if grep -q 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))' \
       "$S/vendor/github.com/go-openapi/validate/type.go" || ! [ -f "$V/go_above_118.go" ]; then
    die "source patches did not apply to $S (Debian's source package changed?)"
  fi

  log "make ${K8S_BINS[*]} (GOPATH build from vendor/, no network, nice ${KE_BUILD_NICE:-10}); log: $CACHE/build.log"
  local t0=$SECONDS
  (
    cd "$S"
    # (the Go build cache lives in _output/local/go/cache inside the tree: kube's build scripts set GOCACHE)
    export HOME="$CACHE/gohome" GOPROXY=off GOFLAGS= \
           KUBE_GIT_VERSION="$K8S_VERSION" KUBE_GIT_COMMIT="$K8S_COMMIT" KUBE_GIT_TREE_STATE=archive
    mkdir -p "$HOME"
    nice -n "${KE_BUILD_NICE:-10}" make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler"
  ) >"$CACHE/build.log" 2>&1 || { tail -n 30 "$CACHE/build.log" >&2; die "kubernetes build failed"; }
  for b in "${K8S_BINS[@]}"; do
    install -m 0755 "$S/_output/bin/$b" "$BIN/$b.tmp" && mv -f "$BIN/$b.tmp" "$BIN/$b"
    "$BIN/$b" --version >&2
  done
  echo "$BUILD_ID" >"$BIN/.build-id"
  log "kubernetes binaries built in $((SECONDS - t0)) s"
}

cmd_build() {
  need_root
  mkdir -p "$BIN"
  # one build at a time, even if two `up`s race
  exec 9>"$CACHE/.build.lock"
  flock -w 3600 9 || die "another build holds $CACHE/.build.lock"
  build_etcd
  build_kube
  flock -u 9
}

# ---------------------------------------------------------------------------------------------------------
# processes: started with setsid (no systemd here), tracked by "pid starttime binary" files; a PID counts as
# ours only while /proc/PID still runs that binary and started at that clock tick (no PID-reuse accidents).
# ---------------------------------------------------------------------------------------------------------

proc_starttime() { # PID -> start time in clock ticks since boot (field 22 of /proc/PID/stat)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }          # drop "pid (comm) " — comm may contain spaces or parentheses
  set -- $stat               # now $1 is field 3 (state)
  echo "${20}"
}

proc_exe() { local e; e=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1; echo "${e% (deleted)}"; }

# prints the PID if component NAME runs as recorded; cleans a stale pid file
component_pid() {
  local f="$RUN/$1.pid" pid st exe
  [ -f "$f" ] || return 1
  read -r pid st exe <"$f" || true
  if [ -n "${pid:-}" ] && [ "$(proc_starttime "$pid" 2>/dev/null)" = "$st" ] \
     && [ "$(proc_exe "$pid" 2>/dev/null)" = "$exe" ]; then
    echo "$pid"; return 0
  fi
  rm -f "$f"
  return 1
}

start_component() { # NAME BINARY ARGS...
  local name=$1 bin pid= i; bin=$(readlink -f "$2"); shift 2   # /proc/PID/exe shows the resolved path
  if pid=$(component_pid "$name"); then log "$name already running (pid $pid)"; return 0; fi
  mkdir -p "$RUN" "$LOGS"
  rm -f "$RUN/$name.pid.new"
  # setsid: own session, no controlling terminal; env -i: no KUBECONFIG/ETCD_* leaking in from the caller.
  # The inner shell records its own PID, then execs the daemon (same PID).
  setsid env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$STATE" \
    bash -c 'echo $$ >"$0"; exec "$@"' "$RUN/$name.pid.new" "$bin" "$@" \
    </dev/null >>"$LOGS/$name.log" 2>&1 8>&- 9>&- &   # 8, 9: our lock files — daemons must not hold them
  for i in $(seq 100); do
    if [ -s "$RUN/$name.pid.new" ]; then
      pid=$(cat "$RUN/$name.pid.new")
      [ "$(proc_exe "$pid" 2>/dev/null)" = "$bin" ] && break
    fi
    sleep 0.05
  done
  if [ -z "$pid" ] || [ "$(proc_exe "$pid" 2>/dev/null)" != "$bin" ]; then
    # the PID came from the shell we just launched: if something runs there, it is ours to stop
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -f "$RUN/$name.pid.new"
    tail -n 20 "$LOGS/$name.log" >&2
    die "$name did not start (log: $LOGS/$name.log)"
  fi
  echo "$pid $(proc_starttime "$pid") $bin" >"$RUN/$name.pid"
  rm -f "$RUN/$name.pid.new"
  log "$name started (pid $pid, log $LOGS/$name.log)"
}

stop_component() {
  local name=$1 pid i
  pid=$(component_pid "$name") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 150); do component_pid "$name" >/dev/null || break; sleep 0.1; done
  if pid=$(component_pid "$name"); then
    log "$name (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 50); do component_pid "$name" >/dev/null || break; sleep 0.1; done
  fi
  if component_pid "$name" >/dev/null; then die "$name is still running"; fi
  rm -f "$RUN/$name.pid"
  log "$name stopped"
}

# ---------------------------------------------------------------------------------------------------------
# ports
# ---------------------------------------------------------------------------------------------------------

PORT_VARS=(KE_ETCD_PORT KE_ETCD_PEER_PORT KE_APISERVER_PORT KE_KCM_PORT KE_SCHEDULER_PORT)
declare -A PORT_START=([KE_ETCD_PORT]=23790 [KE_ETCD_PEER_PORT]=23800 [KE_APISERVER_PORT]=6443
                       [KE_KCM_PORT]=10357 [KE_SCHEDULER_PORT]=10359)
PICKED=" "

port_free() { # nobody listens on TCP port $1 (any address)
  if command -v ss >/dev/null; then
    [ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

pick_port() { # VAR SAVED_VALUE
  local var=$1 saved=${2:-} p start override=${!1:-}
  if [ -n "$override" ]; then
    port_free "$override" || die "$var=$override is already in use"
    p=$override
  elif [ -n "$saved" ] && [[ "$PICKED" != *" $saved "* ]] && port_free "$saved"; then
    p=$saved
  else
    start=${PORT_START[$var]}
    for p in "$start" $(seq $((start + 10000)) $((start + 10200))); do
      [[ "$PICKED" != *" $p "* ]] && port_free "$p" && break
      p=
    done
    [ -n "$p" ] || die "no free port for $var near $start; set $var"
  fi
  PICKED+="$p "
  printf -v "$var" '%s' "$p"
}

load_ports() { # from ports.env, if present
  [ -f "$CLUSTER/ports.env" ] || return 1
  # shellcheck disable=SC1091
  . "$CLUSTER/ports.env"
}

choose_ports() {
  local running=0 c v saved
  for c in "${COMPONENTS[@]}"; do component_pid "$c" >/dev/null && running=1; done
  if [ "$running" = 1 ]; then
    # something of ours is up: its ports are fixed
    load_ports || die "components running but $CLUSTER/ports.env is missing; run: $0 down"
    for v in "${PORT_VARS[@]}"; do [ -n "${!v:-}" ] || die "$v missing from $CLUSTER/ports.env"; done
    return 0
  fi
  declare -A prev=()
  if [ -f "$CLUSTER/ports.env" ]; then
    while IFS='=' read -r k val; do [ -n "$k" ] && prev[$k]=$val; done <"$CLUSTER/ports.env"
  fi
  for v in "${PORT_VARS[@]}"; do
    saved=${prev[$v]:-}
    pick_port "$v" "$saved"
  done
  mkdir -p "$CLUSTER"
  for v in "${PORT_VARS[@]}"; do echo "$v=${!v}"; done >"$CLUSTER/ports.env"
}

# ---------------------------------------------------------------------------------------------------------
# certificates (openssl) and kubeconfigs
# ---------------------------------------------------------------------------------------------------------

# issue NAME "SUBJECT" EXTENSIONS — RSA-2048 key + cert signed by the local CA (idempotent)
issue() {
  local name=$1 subj=$2 ext=$3
  [ -s "$PKI/$name.crt" ] && [ -s "$PKI/$name.key" ] && return 0
  openssl req -new -nodes -newkey rsa:2048 -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj" 2>/dev/null
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
  chmod 600 "$PKI/$name.key"
}

make_pki() {
  mkdir -p "$PKI"; chmod 700 "$PKI"
  command -v openssl >/dev/null || apt_get install -y -qq --no-install-recommends openssl >/dev/null
  if ! [ -s "$PKI/ca.crt" ]; then
    log "pki: CA, apiserver, service-account keys, client certs (openssl) in $PKI"
    openssl req -x509 -new -nodes -newkey rsa:2048 -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 3650 -sha256 \
      -subj "/CN=kubeedge-dev-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    chmod 600 "$PKI/ca.key"
  fi
  local client="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  local sans="IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"
  sans+=",DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$sans"
  issue admin "/O=system:masters/CN=kubernetes-admin" "$client"
  issue kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  issue kube-scheduler "/CN=system:kube-scheduler" "$client"
  # cloudcore authenticates as its ServiceAccount's user name and groups (see build/rbac/cloudcore.yaml)
  issue cloudcore "/O=system:serviceaccounts/O=system:serviceaccounts:kubeedge/CN=system:serviceaccount:kubeedge:cloudcore" "$client"
  # aggregation layer (front proxy): its own CA, so delegated authentication (controller-manager, scheduler,
  # aggregated API servers) finds a request-header CA in kube-system/extension-apiserver-authentication
  if ! [ -s "$PKI/front-proxy-ca.crt" ]; then
    openssl req -x509 -new -nodes -newkey rsa:2048 -keyout "$PKI/front-proxy-ca.key" -out "$PKI/front-proxy-ca.crt" \
      -days 3650 -sha256 -subj "/CN=kubeedge-dev-front-proxy-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    chmod 600 "$PKI/front-proxy-ca.key"
  fi
  if ! [ -s "$PKI/front-proxy-client.crt" ]; then
    openssl req -new -nodes -newkey rsa:2048 -keyout "$PKI/front-proxy-client.key" -out "$PKI/front-proxy-client.csr" \
      -subj "/CN=front-proxy-client" 2>/dev/null
    printf '%s\n' "$client" >"$PKI/front-proxy-client.ext"
    openssl x509 -req -in "$PKI/front-proxy-client.csr" -CA "$PKI/front-proxy-ca.crt" -CAkey "$PKI/front-proxy-ca.key" \
      -CAcreateserial -days 3650 -sha256 -extfile "$PKI/front-proxy-client.ext" -out "$PKI/front-proxy-client.crt" 2>/dev/null
    rm -f "$PKI/front-proxy-client.csr" "$PKI/front-proxy-client.ext"
    chmod 600 "$PKI/front-proxy-client.key"
  fi
  if ! [ -s "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    chmod 600 "$PKI/sa.key"
  fi
  if ! [ -s "$CLUSTER/tokens.csv" ]; then
    # static bearer token for the admin (token,user,uid,"groups")
    echo "$(openssl rand -hex 32),admin,admin,\"system:masters\"" >"$CLUSTER/tokens.csv"
    chmod 600 "$CLUSTER/tokens.csv"
  fi
}

b64() { base64 -w0 <"$1"; }

write_kubeconfig() { # FILE CERTNAME USERNAME
  local f=$1 c=$2 user=$3
  umask 077
  cat >"$f.tmp" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: kubeedge-dev
  cluster:
    server: https://127.0.0.1:$KE_APISERVER_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(b64 "$PKI/$c.crt")
    client-key-data: $(b64 "$PKI/$c.key")
contexts:
- name: $user@kubeedge-dev
  context:
    cluster: kubeedge-dev
    user: $user
current-context: $user@kubeedge-dev
KCFG
  mv -f "$f.tmp" "$f"
  umask 022
}

write_kubeconfigs() {
  write_kubeconfig "$CLUSTER/admin.kubeconfig" admin kubernetes-admin
  write_kubeconfig "$CLUSTER/cloudcore.kubeconfig" cloudcore cloudcore
  write_kubeconfig "$CLUSTER/kube-controller-manager.kubeconfig" kube-controller-manager system:kube-controller-manager
  write_kubeconfig "$CLUSTER/kube-scheduler.kubeconfig" kube-scheduler system:kube-scheduler
}

# ---------------------------------------------------------------------------------------------------------
# health
# ---------------------------------------------------------------------------------------------------------

admin_curl() { curl -sS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"; }

healthy() { # NAME
  case $1 in
    etcd) curl -sS --max-time 3 "http://127.0.0.1:$KE_ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"' ;;
    kube-apiserver) [ "$(admin_curl "https://127.0.0.1:$KE_APISERVER_PORT/readyz" 2>/dev/null)" = ok ] ;;
    kube-controller-manager) [ "$(curl -sk --max-time 3 "https://127.0.0.1:$KE_KCM_PORT/healthz" 2>/dev/null)" = ok ] ;;
    kube-scheduler) [ "$(curl -sk --max-time 3 "https://127.0.0.1:$KE_SCHEDULER_PORT/healthz" 2>/dev/null)" = ok ] ;;
  esac
}

wait_healthy() { # NAME
  local name=$1 t0=$SECONDS
  until healthy "$name"; do
    component_pid "$name" >/dev/null \
      || { tail -n 30 "$LOGS/$name.log" >&2; die "$name exited (log: $LOGS/$name.log)"; }
    [ $((SECONDS - t0)) -lt "$READY_TIMEOUT" ] \
      || { tail -n 30 "$LOGS/$name.log" >&2; die "$name not healthy after ${READY_TIMEOUT}s (log: $LOGS/$name.log)"; }
    sleep 0.3
  done
}

# ---------------------------------------------------------------------------------------------------------
# kubectl
# ---------------------------------------------------------------------------------------------------------

debian_kubectl() { # Debian's kubectl 1.20 (package kubernetes-client), unpacked into the cache on first use
  if ! [ -x "$BIN/kubectl-1.20" ]; then
    log "kubectl: unpacking Debian's kubernetes-client (1.20) into the cache"
    mkdir -p "$BIN"
    deb_unpack kubernetes-client "$CACHE/kubernetes-client"
    install -m 0755 "$CACHE/kubernetes-client/usr/bin/kubectl" "$BIN/kubectl-1.20"
  fi
  echo "$BIN/kubectl-1.20"
}

KUBECTL=
resolve_kubectl() {
  [ -n "$KUBECTL" ] && return 0
  if [ -n "${KE_KUBECTL:-}" ]; then KUBECTL=$KE_KUBECTL
  elif command -v kubectl >/dev/null; then KUBECTL=$(command -v kubectl)
  else KUBECTL=$(debian_kubectl)
  fi
}

apply_manifests() {
  resolve_kubectl
  local k=("$KUBECTL" --kubeconfig "$CLUSTER/admin.kubeconfig")
  "${k[@]}" apply -f "$ROOT/build/crds/devices" -f "$ROOT/build/crds/reliablesyncs" \
    -f "$ROOT/build/rbac/cloudcore.yaml" >"$LOGS/apply.log" 2>&1 \
    || { cat "$LOGS/apply.log" >&2; die "kubectl apply of build/crds and build/rbac failed"; }
  "${k[@]}" wait --for condition=established --timeout=60s \
    crd/devices.devices.kubeedge.io crd/devicemodels.devices.kubeedge.io \
    crd/objectsyncs.reliablesyncs.kubeedge.io crd/clusterobjectsyncs.reliablesyncs.kubeedge.io >>"$LOGS/apply.log" 2>&1 \
    || { cat "$LOGS/apply.log" >&2; die "CRDs not established"; }
  log "applied build/crds (4 CRDs established) and build/rbac/cloudcore.yaml"
}

# ---------------------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------------------

lock_state() { mkdir -p "$STATE"; exec 8>"$STATE/.lock"; flock -w 600 8 || die "another up/down holds $STATE/.lock"; }

cmd_up() {
  need_root
  local t0=$SECONDS
  lock_state
  cmd_build
  mkdir -p "$CLUSTER" "$RUN" "$LOGS"
  choose_ports
  make_pki
  write_kubeconfigs
  local cidr="${KE_SERVICE_CIDR:-10.96.0.0/12}"

  start_component etcd "$BIN/etcd" \
    --name kubeedge-dev --data-dir "$CLUSTER/etcd" \
    --listen-client-urls "http://127.0.0.1:$KE_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$KE_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$KE_ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$KE_ETCD_PEER_PORT" \
    --initial-cluster "kubeedge-dev=http://127.0.0.1:$KE_ETCD_PEER_PORT" \
    --logger zap --log-level warn
  wait_healthy etcd

  start_component kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$KE_ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$KE_APISERVER_PORT" --insecure-port 0 \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --token-auth-file "$CLUSTER/tokens.csv" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$cidr" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --endpoint-reconciler-type none \
    --profiling=false
  wait_healthy kube-apiserver

  # --port=0: no insecure ports (1.20 defaults 10252/10251 would collide with other clusters)
  start_component kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$CLUSTER/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$CLUSTER/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$CLUSTER/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KE_KCM_PORT" --port 0 --leader-elect=false \
    --use-service-account-credentials=true --controllers '*,bootstrapsigner,tokencleaner' \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" --client-ca-file "$PKI/ca.crt" \
    --cluster-name kubeedge-dev --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --flex-volume-plugin-dir "$CLUSTER/flexvolume" \
    --service-cluster-ip-range "$cidr" --profiling=false
  start_component kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$CLUSTER/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$CLUSTER/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$CLUSTER/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KE_SCHEDULER_PORT" --port 0 --leader-elect=false --profiling=false
  wait_healthy kube-controller-manager
  wait_healthy kube-scheduler

  apply_manifests
  local envcmd="$0 env"
  [ "$STATE" = /var/lib/kubeedge-dev ] || envcmd="KE_STATE_DIR=$STATE $0 env"
  cat <<SUMMARY
local Kubernetes $K8S_VERSION is up ($((SECONDS - t0)) s)
  apiserver:            https://127.0.0.1:$KE_APISERVER_PORT   (etcd http://127.0.0.1:$KE_ETCD_PORT)
  admin kubeconfig:     $CLUSTER/admin.kubeconfig
  cloudcore kubeconfig: $CLUSTER/cloudcore.kubeconfig   (user system:serviceaccount:kubeedge:cloudcore)
  admin token:          cut -d, -f1 $CLUSTER/tokens.csv
  logs:                 $LOGS
  use it:               eval "\$($envcmd)"
SUMMARY
}

cmd_down() {
  local wipe=0
  case "${1:-}" in --wipe) wipe=1 ;; "") ;; *) die "usage: $0 down [--wipe]" ;; esac
  lock_state
  local i c
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c=${COMPONENTS[$i]}
    if component_pid "$c" >/dev/null; then stop_component "$c"; fi
  done
  rm -f "$RUN"/*.pid.new 2>/dev/null || true
  if [ "$wipe" = 1 ]; then
    rm -rf "${CLUSTER:?}" "${RUN:?}" "${LOGS:?}"
    log "wiped cluster state ($CLUSTER, $RUN, $LOGS); build cache kept in $CACHE"
  fi
  log "down"
}

cmd_env() {
  [ -f "$CLUSTER/admin.kubeconfig" ] || die "no cluster yet: run $0 up"
  echo "export KUBECONFIG=$CLUSTER/admin.kubeconfig"
  echo "export KE_CLOUDCORE_KUBECONFIG=$CLUSTER/cloudcore.kubeconfig"
}

cmd_status() {
  local c pid up=0 port
  load_ports || true
  for c in "${COMPONENTS[@]}"; do
    case $c in
      etcd) port=${KE_ETCD_PORT:-?} ;; kube-apiserver) port=${KE_APISERVER_PORT:-?} ;;
      kube-controller-manager) port=${KE_KCM_PORT:-?} ;; kube-scheduler) port=${KE_SCHEDULER_PORT:-?} ;;
    esac
    if pid=$(component_pid "$c"); then
      up=$((up + 1))
      if healthy "$c"; then h=healthy; else h=UNHEALTHY; fi
      printf '%-24s running  pid %-7s port %-6s %s\n' "$c" "$pid" "$port" "$h"
    else
      printf '%-24s stopped\n' "$c"
    fi
  done
  echo "state dir: $STATE"
  [ -f "$CLUSTER/admin.kubeconfig" ] && echo "admin kubeconfig: $CLUSTER/admin.kubeconfig"
  [ "$up" = "${#COMPONENTS[@]}" ]
}

cmd_kubectl() {
  local k
  k=$(debian_kubectl)
  exec "$k" --kubeconfig "$CLUSTER/admin.kubeconfig" "$@"
}

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

main() {
  local cmd=${1:-}; shift || true
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    env) cmd_env ;;
    status) cmd_status ;;
    build) cmd_build ;;
    kubectl) cmd_kubectl "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

# (exit inside the same compound command: bash never reads past this line, so editing the file while it
# runs is harmless)
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; exit; fi
