#!/usr/bin/env bash
# hack/setup-containerd.sh — the CRI runtime edged runs pods on (containerd 1.6 + runc + CNI).
# ./hack/test.sh runs it before the tests; run it by hand before starting an edgecore with
# modules.edged.remoteRuntimeEndpoint: unix:///run/containerd/containerd.sock.
#
# Installs (Debian bookworm packages) containerd 1.6 + runc + CNI plugins + busybox-static,
# writes /etc/containerd/config.toml and a bridge/host-local/portmap CNI conflist, builds a
# local pause image and a busybox test image (no registry is reachable), imports both into
# containerd's k8s.io namespace, (re)starts containerd when needed and waits until the CRI
# gRPC API answers Version and reports RuntimeReady + NetworkReady.
#
# Idempotent: a second run changes nothing and restarts nothing. Needs root.
#
#   sudo ./setup-containerd.sh            # install / converge
#   sudo ./setup-containerd.sh --force    # rebuild + re-import images, restart containerd
#   sudo ./setup-containerd.sh --smoke    # also run one pod (busybox httpd) through CRI and
#                                         # check it by pod IP and hostPort (stdlib Python + curl)
#
# Environment overrides: POD_CIDR (10.88.0.0/16), CNI_BRIDGE (cni0),
#   PAUSE_IMAGE (docker.io/kubeedge/pause:3.6), TEST_IMAGE (docker.io/kubeedge/busybox:test),
#   CONTAINERD_LOG (/var/log/containerd.log), STATE_DIR (/var/lib/kubeedge-dev)
set -euo pipefail

POD_CIDR="${POD_CIDR:-10.88.0.0/16}"
CNI_BRIDGE="${CNI_BRIDGE:-cni0}"
PAUSE_IMAGE="${PAUSE_IMAGE:-docker.io/kubeedge/pause:3.6}"
TEST_IMAGE="${TEST_IMAGE:-docker.io/kubeedge/busybox:test}"
CONTAINERD_LOG="${CONTAINERD_LOG:-/var/log/containerd.log}"
STATE_DIR="${STATE_DIR:-/var/lib/kubeedge-dev}"
SOCK=/run/containerd/containerd.sock
CONFIG=/etc/containerd/config.toml
CNI_CONF=/etc/cni/net.d/10-kubeedge.conflist
RUN_DIR=/run/kubeedge-dev            # pid + config stamp of the containerd this script started
FORCE=0; SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive

T0=$(date +%s.%N)
info() { printf '    %s\n' "$*"; }
warn() { printf '    \033[33mWARNING:\033[0m %s\n' "$*" >&2; }
die()  { printf '\n\033[31mERROR:\033[0m %s\n' "$*" >&2; exit 1; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
step() { printf '\n[%6ss] ==> %s\n' "$(elapsed)" "$*"; }

[ "$(id -u)" = 0 ] || die "run as root"
mkdir -p "$STATE_DIR/images" "$RUN_DIR"

# ---------------------------------------------------------------------------------------------
step "1/7 host checks"
if grep -q '^cgroup2 /sys/fs/cgroup cgroup2' /proc/mounts; then CG=v2
elif grep -q ' /sys/fs/cgroup/memory cgroup ' /proc/mounts; then CG=v1
else die "no cgroup hierarchy mounted at /sys/fs/cgroup"; fi
info "cgroup: $CG (cgroupfs driver; $( [ -d /run/systemd/system ] && echo 'systemd is init' || echo 'no systemd as init'))"
grep -qw overlay /proc/filesystems || die "kernel has no overlayfs"
# CAP_SYS_RESOURCE (bit 24) missing from the bounding set => negative oom_score_adj is EPERM.
capbnd=$(awk '/^CapBnd/{print $2}' /proc/self/status)
if (( (0x$capbnd >> 24) & 1 )); then info "CAP_SYS_RESOURCE: present"
else info "CAP_SYS_RESOURCE: absent (restrict_oom_score_adj=true is required)"; fi

# ---------------------------------------------------------------------------------------------
step "2/7 packages: containerd runc containernetworking-plugins busybox-static iptables"
PKGS=(containerd runc containernetworking-plugins busybox-static iptables)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  info "all installed: $(dpkg-query -W -f='${Package}=${Version} ' "${PKGS[@]}")"
else
  info "missing: ${missing[*]}"
  # Packages must not start services themselves (no systemd here); we start containerd below.
  APTLOG="$STATE_DIR/apt.log"; : >"$APTLOG"
  apt_or_die() { "$@" >>"$APTLOG" 2>&1 || { tail -20 "$APTLOG" >&2; die "'$*' failed (full log: $APTLOG)"; }; }
  if ! apt-cache policy containerd 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    info "apt-get update ..."; apt_or_die apt-get update
  fi
  info "apt-get install --no-install-recommends ${missing[*]} ..."
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >>"$APTLOG" 2>&1; then
    info "retrying after apt-get update"; apt_or_die apt-get update
    apt_or_die apt-get install -y --no-install-recommends "${missing[@]}"
  fi
  info "installed: $(dpkg-query -W -f='${Package}=${Version} ' "${PKGS[@]}")"
fi
for b in /usr/bin/containerd /usr/bin/ctr /usr/sbin/runc /usr/lib/cni/bridge /usr/lib/cni/host-local \
         /usr/lib/cni/loopback /usr/lib/cni/portmap /bin/busybox; do
  [ -x "$b" ] || die "expected binary $b is missing"
done

# ---------------------------------------------------------------------------------------------
step "3/7 configuration files"
changed_cfg=0
write_if_changed() {  # $1=path, content on stdin; sets changed=1 when the file was (re)written
  local tmp; tmp=$(mktemp); cat >"$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; info "unchanged: $1"; return 1; fi
  mkdir -p "$(dirname "$1")"; [ -f "$1" ] && cp -a "$1" "$1.bak.$(date +%s)"
  install -m 0644 "$tmp" "$1"; rm -f "$tmp"; info "written:   $1"; return 0
}
if write_if_changed "$CONFIG" <<EOF
# Managed by setup-containerd.sh (KubeEdge-rs dev). containerd 1.6, CRI v1 + v1alpha2.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "$SOCK"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    # Locally built image (no registry reachable); imported into namespace k8s.io by this script.
    sandbox_image = "$PAUSE_IMAGE"
    # CRI streaming server (Exec/Attach/PortForward URLs), loopback only.
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    # Sandboxes ask for oom_score_adj=-998; without CAP_SYS_RESOURCE (the case on these VMs)
    # runc fails with "can't get final child's PID from pipe: EOF". Clamp to containerd's own value.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          # cgroupfs driver: no systemd on these machines. Pass cgroup_parent like
          # "/kubepods/besteffort/pod<uid>" in RunPodSandbox.
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      # Debian's containernetworking-plugins live in /usr/lib/cni (not /opt/cni/bin).
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
      max_conf_num = 1
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
EOF
then changed_cfg=1; fi

# containerd CRI runs the 'loopback' plugin for lo itself; only the pod network conflist is needed.
write_if_changed "$CNI_CONF" <<EOF || true
{
  "cniVersion": "1.0.0",
  "name": "kubeedge-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$POD_CIDR" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
first_conf=$(ls /etc/cni/net.d/ 2>/dev/null | grep -E '\.(conf|conflist|json)$' | sort | head -1)
[ "$first_conf" = "$(basename "$CNI_CONF")" ] || warn "/etc/cni/net.d/$first_conf sorts first and will be used instead of $(basename "$CNI_CONF")"

# Kernel settings for bridged pods + hostPort (all built in on these VMs; modprobe where modular).
[ -d /proc/sys/net/bridge ] || { command -v modprobe >/dev/null && modprobe br_netfilter 2>/dev/null || true; }
sysctl -qw net.ipv4.ip_forward=1
[ -d /proc/sys/net/bridge ] && sysctl -qw net.bridge.bridge-nf-call-iptables=1 || warn "br_netfilter not available"
iptables -t nat -S >/dev/null 2>&1 || die "iptables (nat table) does not work: portmap/ipMasq need it"
info "ip_forward=$(sysctl -n net.ipv4.ip_forward) bridge-nf-call-iptables=$(sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null || echo n/a) iptables=$(iptables --version | awk '{print $2, $3}')"

# ---------------------------------------------------------------------------------------------
step "4/7 containerd process"
cur_pid=""
for p in $(pgrep -x containerd || true); do   # skip a Docker-managed containerd, if any
  tr '\0' ' ' <"/proc/$p/cmdline" | grep -q docker || { cur_pid=$p; break; }
done
cfg_sum=$(sha256sum "$CONFIG" | cut -d' ' -f1)
need_restart=0
if [ -z "$cur_pid" ]; then
  need_restart=1; info "containerd not running"
elif [ "$FORCE" = 1 ] || [ "$changed_cfg" = 1 ]; then
  need_restart=1; info "config changed (or --force): restart pid $cur_pid"
elif [ "$(cat "$RUN_DIR/config.sha256" 2>/dev/null)" != "$cfg_sum" ] || [ "$(cat "$RUN_DIR/containerd.pid" 2>/dev/null)" != "$cur_pid" ]; then
  need_restart=1; info "running containerd (pid $cur_pid) was not started with this config: restart"
elif readlink "/proc/$cur_pid/exe" | grep -q '(deleted)'; then
  need_restart=1; info "containerd binary was upgraded: restart"
else
  info "running with current config: pid $cur_pid (no restart)"
fi
if [ "$need_restart" = 1 ]; then
  if [ -d /run/systemd/system ] && systemctl cat containerd >/dev/null 2>&1; then
    systemctl restart containerd   # real systemd host
    cur_pid=$(systemctl show -p MainPID --value containerd)
  else
    if [ -n "$cur_pid" ]; then    # running pods/shims survive a containerd restart
      kill -TERM "$cur_pid"
      for _ in $(seq 100); do kill -0 "$cur_pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$cur_pid" 2>/dev/null && { warn "containerd $cur_pid ignored SIGTERM; SIGKILL"; kill -KILL "$cur_pid"; sleep 0.5; }
    fi
    mkdir -p "$(dirname "$CONTAINERD_LOG")"
    ( cd / && exec setsid /usr/bin/containerd --config "$CONFIG" >>"$CONTAINERD_LOG" 2>&1 </dev/null ) &
    cur_pid=$!
    disown "$cur_pid" 2>/dev/null || true
  fi
  echo "$cur_pid" >"$RUN_DIR/containerd.pid"; echo "$cfg_sum" >"$RUN_DIR/config.sha256"
  info "started containerd pid $cur_pid (log: $CONTAINERD_LOG)"
fi
for _ in $(seq 150); do [ -S "$SOCK" ] && ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr version >/dev/null 2>&1 || die "containerd does not answer on $SOCK; see $CONTAINERD_LOG"
info "containerd $(ctr version 2>/dev/null | awk '/Server:/{s=1} s&&/Version:/{print $2; exit}') answers on $SOCK"

# ---------------------------------------------------------------------------------------------
step "5/7 build local images (pause, busybox)"
B="$STATE_DIR/images"
cat >"$B/pause.c" <<'EOF'
/* Minimal pod-sandbox process: holds the pod namespaces, reaps zombies when it is PID 1 of a
 * shared PID namespace, exits 0 on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static void on_term(int s) { (void)s; _exit(0); }
static void on_chld(int s) { (void)s; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) { puts("pause (kubeedge-rs dev) 1.0"); return 0; }
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) return 1;
    sa.sa_handler = on_chld; sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(SIGCHLD, &sa, NULL) < 0) return 2;
    for (;;) pause();
}
EOF
cat >"$B/mkimg.py" <<'EOF'
# Reproducible single-layer docker-archive image (entries sorted, mtime/uid/gid 0).
import argparse, hashlib, io, json, subprocess, tarfile
def ti(name, typ=tarfile.REGTYPE, mode=0o755, size=0, link=""):
    t = tarfile.TarInfo(name); t.type, t.mode, t.size, t.linkname = typ, mode, size, link
    t.mtime = t.uid = t.gid = 0; t.uname = t.gname = "root"; return t
ap = argparse.ArgumentParser()
ap.add_argument("--tag", required=True); ap.add_argument("--out", required=True)
ap.add_argument("--busybox"); ap.add_argument("--file", action="append", default=[])
ap.add_argument("--entrypoint", default="null"); ap.add_argument("--cmd", default="null")
a = ap.parse_args()
ent = {d: ("d",) for d in ["bin", "dev", "etc", "proc", "sys", "tmp", "var", "root"]}
ent["etc/passwd"] = ("f", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644)
ent["etc/group"] = ("f", b"root:x:0:\nnogroup:x:65534:\n", 0o644)
if a.busybox:
    ent["bin/busybox"] = ("f", open(a.busybox, "rb").read(), 0o755)
    for ap_ in subprocess.run([a.busybox, "--list"], capture_output=True, text=True, check=True).stdout.split():
        if ap_ != "busybox": ent["bin/" + ap_] = ("l", "busybox")
for spec in a.file:
    src, dest = spec.split(":", 1); dest = dest.lstrip("/")
    parts = dest.split("/")
    for i in range(1, len(parts)): ent.setdefault("/".join(parts[:i]), ("d",))
    ent[dest] = ("f", open(src, "rb").read(), 0o755)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    for p in sorted(ent):
        e = ent[p]
        if e[0] == "d": t.addfile(ti(p, tarfile.DIRTYPE))
        elif e[0] == "f": t.addfile(ti(p, mode=e[2], size=len(e[1])), io.BytesIO(e[1]))
        else: t.addfile(ti(p, tarfile.SYMTYPE, 0o777, link=e[1]))
layer = buf.getvalue(); ld = hashlib.sha256(layer).hexdigest()
cfg = {"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
       "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                  "Entrypoint": json.loads(a.entrypoint), "Cmd": json.loads(a.cmd), "WorkingDir": "/"},
       "rootfs": {"type": "layers", "diff_ids": ["sha256:" + ld]},
       "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "setup-containerd.sh"}]}
cb = json.dumps(cfg, sort_keys=True).encode(); cd = hashlib.sha256(cb).hexdigest()
man = [{"Config": cd + ".json", "RepoTags": [a.tag], "Layers": [ld + "/layer.tar"]}]
with tarfile.open(a.out, "w", format=tarfile.PAX_FORMAT) as t:
    for n, b in [(cd + ".json", cb), (ld + "/layer.tar", layer), ("manifest.json", json.dumps(man).encode())]:
        t.addfile(ti(n, mode=0o644, size=len(b)), io.BytesIO(b))
print("sha256:" + cd)
EOF
PY=$(command -v python3) || die "python3 is needed to build the images"

if command -v gcc >/dev/null && gcc -Os -static -s -o "$B/pause.new" "$B/pause.c" 2>"$B/gcc.err"; then
  mv "$B/pause.new" "$B/pause"; pause_kind="static C pause (gcc)"
  pause_id=$("$PY" "$B/mkimg.py" --tag "$PAUSE_IMAGE" --out "$B/pause.tar" --file "$B/pause:pause" --entrypoint '["/pause"]')
else
  # Fallback without a C toolchain: busybox sh as PID 1 (exits on TERM; no zombie reaping guarantee).
  pause_kind="busybox sh fallback (no gcc)"
  pause_id=$("$PY" "$B/mkimg.py" --tag "$PAUSE_IMAGE" --out "$B/pause.tar" --busybox /bin/busybox \
    --entrypoint '["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]')
fi
bb_id=$("$PY" "$B/mkimg.py" --tag "$TEST_IMAGE" --out "$B/busybox.tar" --busybox /bin/busybox --cmd '["/bin/sh"]')
info "pause:   $PAUSE_IMAGE  id $pause_id  [$pause_kind]"
info "busybox: $TEST_IMAGE  id $bb_id  [$(/bin/busybox | head -1 | awk '{print $1, $2}')]"

# ---------------------------------------------------------------------------------------------
step "6/7 import images into containerd namespace k8s.io"
image_config_of() {  # prints the config digest (= CRI image id) the tag currently points at, or nothing
  local mdig
  mdig=$(ctr -n k8s.io images ls "name==$1" 2>/dev/null | awk -v r="$1" '$1==r{print $3}')
  [ -n "$mdig" ] || return 0
  ctr -n k8s.io content get "$mdig" 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])' 2>/dev/null || true
}
for pair in "$PAUSE_IMAGE|$pause_id|pause.tar" "$TEST_IMAGE|$bb_id|busybox.tar"; do
  IFS='|' read -r ref want tarball <<<"$pair"
  have=$(image_config_of "$ref")
  if [ "$FORCE" != 1 ] && [ "$have" = "$want" ]; then
    info "up to date: $ref"
  else
    info "importing $ref (had: ${have:-none})"
    ctr -n k8s.io images import "$B/$tarball" >/dev/null
    [ "$(image_config_of "$ref")" = "$want" ] || die "import of $ref did not take"
  fi
done

# ---------------------------------------------------------------------------------------------
step "7/7 wait for the CRI API (runtime.v1 Version + Status)"
# Raw gRPC over the unix socket with curl (HTTP/2 prior knowledge): no crictl needed.
grpc_call() {  # $1=method path, $2=hex protobuf body; prints the response message bytes as hex
  local body_hex len
  body_hex="$2"; len=$(( ${#body_hex} / 2 ))
  "$PY" -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.argv[1]))' "$(printf '00%08x%s' "$len" "$body_hex")" >"$RUN_DIR/grpc.req"
  curl -s --max-time 5 --http2-prior-knowledge --unix-socket "$SOCK" -H 'content-type: application/grpc' -H 'te: trailers' \
       --data-binary @"$RUN_DIR/grpc.req" -D "$RUN_DIR/grpc.hdr" -o "$RUN_DIR/grpc.resp" "http://localhost$1" || return 1
  grep -qi '^grpc-status: 0' "$RUN_DIR/grpc.hdr" || return 1
}
decode='
import sys
def fields(b):
    i = 0
    while i < len(b):
        key = 0; s = 0
        while True:
            c = b[i]; i += 1; key |= (c & 0x7f) << s; s += 7
            if c < 0x80: break
        f, w = key >> 3, key & 7
        if w == 0:
            v = 0; s = 0
            while True:
                c = b[i]; i += 1; v |= (c & 0x7f) << s; s += 7
                if c < 0x80: break
            yield f, v
        elif w == 2:
            n = 0; s = 0
            while True:
                c = b[i]; i += 1; n |= (c & 0x7f) << s; s += 7
                if c < 0x80: break
            yield f, b[i:i + n]; i += n
        else: raise SystemExit("unexpected wire type")
raw = open(sys.argv[2], "rb").read()[5:]
if sys.argv[1] == "version":
    d = dict(fields(raw)); print(d[2].decode(), d[3].decode(), "CRI", d[4].decode())
else:
    out = []
    for f, st in fields(raw):
        if f != 1: continue
        for f2, cond in fields(st):
            if f2 != 1: continue
            c = dict(fields(cond)); out.append("%s=%s%s" % (c.get(1, b"").decode(), bool(c.get(2, 0)), (" (" + c.get(3, b"").decode() + ": " + c.get(4, b"").decode()[:100] + ")") if not c.get(2, 0) else ""))
    print(" ".join(out))
'
ok=0
for i in $(seq 60); do
  if grpc_call /runtime.v1.RuntimeService/Version 0a027631; then   # VersionRequest{version:"v1"}
    ver=$("$PY" -c "$decode" version "$RUN_DIR/grpc.resp")
    if grpc_call /runtime.v1.RuntimeService/Status ""; then
      conds=$("$PY" -c "$decode" status "$RUN_DIR/grpc.resp")
      if echo "$conds" | grep -q 'RuntimeReady=True' && echo "$conds" | grep -q 'NetworkReady=True'; then ok=1; break; fi
    fi
  fi
  sleep 0.5
done
[ "$ok" = 1 ] || die "CRI not ready after 30s: ${conds:-no answer}; see $CONTAINERD_LOG"
info "CRI Version: $ver"
info "CRI Status:  $conds"

printf '\nCRI ready after %ss. CRI endpoint: unix://%s  sandbox image: %s  pod CIDR: %s (bridge %s, hostPort via portmap)\n' \
  "$(elapsed)" "$SOCK" "$PAUSE_IMAGE" "$POD_CIDR" "$CNI_BRIDGE"
printf 'containerd pid %s, log %s. Images in k8s.io: %s\n' "$cur_pid" "$CONTAINERD_LOG" \
  "$(ctr -n k8s.io images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

if [ "$SMOKE" = 1 ]; then
  step "smoke test: one pod through CRI (RunPodSandbox .. RemovePodSandbox), pod IP + hostPort"
  cat >"$STATE_DIR/cri_smoke.py" <<'PYEOF'
#!/usr/bin/env python3
"""Dependency-free CRI smoke test: runs one pod (busybox httpd) through containerd's CRI
runtime.v1 API and checks it is reachable by pod IP and hostPort. Only the Python standard
library and curl (HTTP/2 over the unix socket) are used; protobuf messages are hand-encoded,
so no grpcio, no generated stubs and no crictl are needed.

  cri_smoke_nodeps.py [--image docker.io/kubeedge/busybox:test] [--host-port 30081]
"""
import argparse, json, os, subprocess, sys, tempfile, time, urllib.request, uuid

SOCK = "/run/containerd/containerd.sock"

# --- minimal protobuf encoding/decoding --------------------------------------------------
def varint(n):
    out = b""
    while True:
        b = n & 0x7F; n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def f_bytes(num, b):
    return varint(num << 3 | 2) + varint(len(b)) + b

def f_str(num, s):
    return f_bytes(num, s.encode()) if s else b""

def f_int(num, n):
    return varint(num << 3 | 0) + varint(n) if n else b""

def f_msg(num, b):
    return f_bytes(num, b)

def f_map(num, d):
    return b"".join(f_msg(num, f_str(1, k) + f_str(2, v)) for k, v in d.items())

def decode(b):
    """-> dict field -> list of raw values (int or bytes)."""
    out, i = {}, 0
    while i < len(b):
        key, i = _rv(b, i)
        f, w = key >> 3, key & 7
        if w == 0:
            v, i = _rv(b, i)
        elif w == 2:
            n, i = _rv(b, i); v = b[i:i + n]; i += n
        elif w == 1:
            v = b[i:i + 8]; i += 8
        elif w == 5:
            v = b[i:i + 4]; i += 4
        else:
            raise ValueError("wire type %d" % w)
        out.setdefault(f, []).append(v)
    return out

def _rv(b, i):
    n = s = 0
    while True:
        c = b[i]; i += 1; n |= (c & 0x7F) << s; s += 7
        if c < 0x80:
            return n, i

# --- gRPC over curl -----------------------------------------------------------------------
TIMES = []

def call(method, body, timeout=60):
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        req, resp, hdr = (os.path.join(d, x) for x in ("req", "resp", "hdr"))
        with open(req, "wb") as f:
            f.write(b"\x00" + len(body).to_bytes(4, "big") + body)
        subprocess.run(["curl", "-s", "--max-time", str(timeout), "--http2-prior-knowledge", "--unix-socket", SOCK,
                        "-H", "content-type: application/grpc", "-H", "te: trailers", "--data-binary", "@" + req,
                        "-D", hdr, "-o", resp, "http://localhost/runtime.v1.RuntimeService/" + method], check=True)
        headers = open(hdr, encoding="latin-1").read()
        data = open(resp, "rb").read()
    dt = (time.perf_counter() - t0) * 1000
    st = [l.split(":", 1)[1].strip() for l in headers.splitlines() if l.lower().startswith("grpc-status:")]
    if not st or st[0] != "0":
        msg = [l.split(":", 1)[1].strip() for l in headers.splitlines() if l.lower().startswith("grpc-message:")]
        raise RuntimeError(f"{method}: grpc-status {st} {urllib.request.unquote(msg[0]) if msg else ''}")
    TIMES.append((method, dt))
    print(f"  [{dt:7.1f} ms] {method}")
    return decode(data[5:]) if len(data) > 5 else {}

def http_get(url):
    try:
        return urllib.request.urlopen(url, timeout=3).read().decode().strip()
    except Exception as e:  # noqa: BLE001
        return f"FAILED: {e}"

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="docker.io/kubeedge/busybox:test")
    ap.add_argument("--host-port", type=int, default=30081)
    a = ap.parse_args()
    uid, name, ns = str(uuid.uuid4()), "smoke", "default"
    logdir = f"/var/log/pods/{ns}_{name}_{uid}"
    os.makedirs(logdir, exist_ok=True)
    cgparent = f"/kubepods/besteffort/pod{uid}"
    nsopts = f_int(2, 1)  # network=POD(0), pid=CONTAINER(1), ipc=POD(0)
    sandbox = (f_msg(1, f_str(1, name) + f_str(2, uid) + f_str(3, ns)) + f_str(2, name) + f_str(3, logdir)
               + f_msg(5, f_int(2, 8080) + f_int(3, a.host_port))          # TCP 8080 -> hostPort
               + f_map(6, {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.uid": uid})
               + f_msg(8, f_str(1, cgparent) + f_msg(2, f_msg(1, nsopts))))
    sb = call("RunPodSandbox", f_msg(1, sandbox))[1][0].decode()
    st = call("PodSandboxStatus", f_str(1, sb))
    ip = decode(decode(st[1][0])[5][0])[1][0].decode()
    print(f"  sandbox {sb[:12]} pod IP {ip}")
    cmd = ["/bin/sh", "-c", "mkdir -p /www && echo smoke-ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
    cconf = (f_msg(1, f_str(1, "httpd")) + f_msg(2, f_str(1, a.image)) + b"".join(f_str(3, c) for c in cmd)
             + f_str(11, "httpd/0.log") + f_msg(15, f_msg(2, f_msg(3, nsopts))))  # linux.security_context.namespace_options
    cid = call("CreateContainer", f_str(1, sb) + f_msg(2, cconf) + f_msg(3, sandbox))[1][0].decode()
    call("StartContainer", f_str(1, cid))
    ok = True
    try:
        ex = call("ExecSync", f_str(1, cid) + b"".join(f_str(2, c) for c in ["wget", "-qO-", "http://127.0.0.1:8080/"]) + f_int(3, 10))
        out = ex.get(1, [b""])[0].decode().strip()
        print(f"  ExecSync wget in pod -> {out!r} exit {ex.get(3, [0])[0]}")
        time.sleep(0.2)
        host_ip = subprocess.run(["sh", "-c", "ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'"],
                                 capture_output=True, text=True).stdout.strip() or "127.0.0.1"
        for url in (f"http://{ip}:8080/", f"http://{host_ip}:{a.host_port}/", f"http://127.0.0.1:{a.host_port}/"):
            r = http_get(url)
            print(f"  GET {url} -> {r}")
            ok &= r == "smoke-ok"
        ok &= out == "smoke-ok"
    finally:
        call("StopContainer", f_str(1, cid) + f_int(2, 1))
        call("RemoveContainer", f_str(1, cid))
        call("StopPodSandbox", f_str(1, sb))
        call("RemovePodSandbox", f_str(1, sb))
        for ctrl in os.listdir("/sys/fs/cgroup"):   # kubelet's job: remove the pod-level cgroups
            p = f"/sys/fs/cgroup/{ctrl}{cgparent}"
            if os.path.isdir(p):
                try:
                    os.rmdir(p)
                except OSError:
                    pass
    print("  SMOKE " + ("PASSED" if ok else "FAILED") + f" (pod IP {ip}, {sum(t for _, t in TIMES):.0f} ms in CRI calls)")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
PYEOF
  "$PY" "$STATE_DIR/cri_smoke.py" --image "$TEST_IMAGE" || die "smoke test failed"
fi

printf 'DONE in %ss\n' "$(elapsed)"
