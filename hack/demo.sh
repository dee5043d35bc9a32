#!/usr/bin/env bash
# The main job, in one command: a Kubernetes control plane, cloudcore and an edge node on this machine,
# a sample web app and a sample device, shown working.
#
#   hack/demo.sh        (or: make demo)        bring everything up and show it; leaves it running
#   hack/demo.sh down   (or: make demo-down)   delete the app and device, stop edgecore, cloudcore and the cluster
#
# Fresh Debian machine, root. Installs what is missing from Debian's packages, sets up containerd,
# builds (release) and runs the real binaries. State under $KE_STATE_DIR (default /var/lib/kubeedge-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${KE_STATE_DIR:-/var/lib/kubeedge-dev}
DEMO=$STATE/demo
NODE=${KE_DEMO_NODE:-edge-demo}
WS_PORT=${KE_DEMO_WS_PORT:-10000}
MQTT_PORT=${KE_DEMO_MQTT_PORT:-1884}
CLOUD_METRICS=${KE_DEMO_CLOUD_METRICS:-127.0.0.1:10350}
EDGE_METRICS=${KE_DEMO_EDGE_METRICS:-127.0.0.1:10351}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$STATE/target}
BIN=$CARGO_TARGET_DIR/release
T0=$(date +%s); TP=$T0
phase() { local now; now=$(date +%s); printf '\n==> [%4ss, previous phase %ss] %s\n' "$((now - T0))" "$((now - TP))" "$*"; TP=$now; }
die() { echo "demo: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (containerd, CNI and the control plane need it)"
mkdir -p "$DEMO"

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_pid() {  # SIGTERM the recorded PID if it is still the recorded binary, wait, then SIGKILL
  local f=$1 exe=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$exe")" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

if [ "${1:-up}" = down ]; then
  phase "delete the sample app and device"
  if [ -f "$STATE/cluster/admin.kubeconfig" ]; then
    export KUBECONFIG=$STATE/cluster/admin.kubeconfig
    kubectl delete -f "$ROOT/hack/demo/web.yaml" --ignore-not-found --wait=false || true
    kubectl delete -f "$ROOT/hack/demo/device.yaml" --ignore-not-found --wait=false 2>/dev/null || true
    for _ in $(seq 60); do [ -z "$(kubectl get pods -l app=web -o name 2>/dev/null)" ] && break; sleep 1; done
    kubectl delete node "$NODE" --ignore-not-found || true
  fi
  phase "stop edgecore and cloudcore"
  stop_pid "$DEMO/edgecore.pid" "$BIN/edgecore"
  stop_pid "$DEMO/cloudcore.pid" "$BIN/cloudcore"
  # Whatever the cloud could not delete (e.g. the control plane was already gone) leaves the runtime too.
  [ -x "$BIN/keadm" ] && "$BIN/keadm" reset --node "$NODE"
  phase "stop the control plane"
  "$ROOT/hack/local-k8s.sh" down
  phase "demo stopped (state kept in $DEMO; remove it to start from scratch)"
  exit 0
fi

phase "system packages"
need=()
for c in mosquitto_pub:mosquitto-clients protoc:protobuf-compiler openssl:openssl curl:curl jq:jq; do
  command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

phase "container runtime (containerd + CNI + local images)"
"$ROOT/hack/setup-containerd.sh" > "$STATE/setup-containerd.log" 2>&1 || { tail -20 "$STATE/setup-containerd.log"; die "containerd setup failed"; }
tail -1 "$STATE/setup-containerd.log"

phase "Kubernetes control plane (first run builds it from Debian's source package, ~4 min)"
"$ROOT/hack/local-k8s.sh" up | tail -3
eval "$("$ROOT/hack/local-k8s.sh" env)"

"$ROOT/hack/ensure-toolchain.sh"

phase "build cloudcore, edgecore, keadm (release)"
cargo build --release --locked --bins 2>&1 | tail -1

phase "certificates (keadm certgen: CA, cloudcore server cert, node cert with CN=$NODE)"
"$BIN/keadm" certgen server --dir "$DEMO/pki" --name server --san 127.0.0.1 --san localhost >/dev/null
"$BIN/keadm" certgen node "$NODE" --dir "$DEMO/pki" >/dev/null
ls "$DEMO/pki/ca" "$DEMO/pki/certs" | tr '\n' ' '; echo

phase "cloudcore"
cat > "$DEMO/cloudcore.yaml" <<YAML
apiVersion: cloudcore.config.kubeedge.io/v1alpha1
kind: CloudCore
metricsAddress: $CLOUD_METRICS
kubeAPIConfig:
  kubeConfig: $KE_CLOUDCORE_KUBECONFIG
modules:
  cloudhub:
    nodeLimit: 10
    tlsCAFile: $DEMO/pki/ca/rootCA.crt
    tlsCertFile: $DEMO/pki/certs/server.crt
    tlsPrivateKeyFile: $DEMO/pki/certs/server.key
    queueStore: $DEMO/cloudhub-queue.db
    unixsocket:
      address: unix://$DEMO/kubeedge.sock
    websocket:
      address: 127.0.0.1
      port: $WS_PORT
YAML
if ! pid_alive "$DEMO/cloudcore.pid"; then
  setsid "$BIN/cloudcore" --config "$DEMO/cloudcore.yaml" >> "$DEMO/cloudcore.log" 2>&1 < /dev/null &
  echo $! > "$DEMO/cloudcore.pid"
fi
for _ in $(seq 100); do curl -sf "http://$CLOUD_METRICS/metrics" >/dev/null && break; sleep 0.1; done
curl -sf "http://$CLOUD_METRICS/metrics" >/dev/null || { tail -20 "$DEMO/cloudcore.log"; die "cloudcore did not start (log: $DEMO/cloudcore.log)"; }
echo "cloudcore pid $(cat "$DEMO/cloudcore.pid"), log $DEMO/cloudcore.log"

phase "edgecore (node $NODE: edged on containerd, embedded MQTT broker on :$MQTT_PORT, device twin)"
cat > "$DEMO/edgecore.yaml" <<YAML
apiVersion: edgecore.config.kubeedge.io/v1alpha1
kind: EdgeCore
metricsAddress: $EDGE_METRICS
database:
  dataSource: $DEMO/edgecore.db
modules:
  edged:
    hostnameOverride: $NODE
    nodeIP: 127.0.0.1
    runtimeType: remote
    remoteRuntimeEndpoint: unix:///run/containerd/containerd.sock
    remoteImageEndpoint: unix:///run/containerd/containerd.sock
    podSandboxImage: docker.io/kubeedge/pause:3.6
  edgehub:
    tlsCaFile: $DEMO/pki/ca/rootCA.crt
    tlsCertFile: $DEMO/pki/certs/$NODE.crt
    tlsPrivateKeyFile: $DEMO/pki/certs/$NODE.key
    websocket:
      server: 127.0.0.1:$WS_PORT
  eventbus:
    mqttMode: 0
    mqttServerInternal: tcp://127.0.0.1:$MQTT_PORT
  edgemesh:
    enable: false
YAML
if ! pid_alive "$DEMO/edgecore.pid"; then
  setsid "$BIN/edgecore" --config "$DEMO/edgecore.yaml" >> "$DEMO/edgecore.log" 2>&1 < /dev/null &
  echo $! > "$DEMO/edgecore.pid"
fi
echo "edgecore pid $(cat "$DEMO/edgecore.pid"), log $DEMO/edgecore.log"

phase "wait for node $NODE to be Ready"
for _ in $(seq 120); do
  [ "$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] && break
  sleep 1
done
[ "$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] \
  || { tail -20 "$DEMO/edgecore.log"; die "node $NODE did not become Ready (logs: $DEMO/edgecore.log, $DEMO/cloudcore.log)"; }

phase "deploy the sample web app"
kubectl apply -f "$ROOT/hack/demo/web.yaml"
kubectl rollout status deployment/web --timeout=120s
kubectl wait --for=condition=Ready pod -l app=web --timeout=120s
IP=$(kubectl get pods -l app=web -o jsonpath='{.items[0].status.podIP}')

if [ -f "$ROOT/hack/demo/device.yaml" ]; then
  phase "deploy the sample DeviceModel + Device"
  kubectl apply -f "$ROOT/hack/demo/device.yaml"
fi

phase "what is running"
kubectl get nodes,pods -o wide
kubectl get devices.devices.kubeedge.io -o wide 2>/dev/null || true

phase "fetch the app's page from its pod IP $IP"
curl -sf --max-time 5 "http://$IP:8080/" || die "the app did not answer on $IP:8080"

if [ -f "$ROOT/hack/demo/device.yaml" ]; then
  phase "a device reports through MQTT; the cloud sees it in the Device's status"
  for _ in $(seq 30); do
    mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -t '$hw/events/device/demo-thermometer/twin/update' \
      -m '{"event_id":"demo-1","timestamp":0,"twin":{"temperature":{"actual":{"value":"23.5"},"metadata":{"type":"Updated"}}}}'
    kubectl get device demo-thermometer -o jsonpath='{.status.twins[0].reported.value}' 2>/dev/null | grep -q 23.5 && break
    sleep 1
  done
  kubectl get device demo-thermometer -o yaml | sed -n '/^status:/,$p'
fi

phase "done in $(( $(date +%s) - T0 )) s. It keeps running: stop everything with 'make demo-down' (hack/demo.sh down)"
