#!/usr/bin/env bash
# The main job, in one command: a Kubernetes control plane, cloudcore and an edge node on this machine,
# a sample web app and a sample device, shown working. Installed the way a user installs it: `keadm init`
# on the cloud side, `keadm gettoken`, `keadm join --token` on the edge (a network namespace of its own,
# so the edge is a separate machine as far as the network goes), `keadm reset` to undo.
#
#   hack/demo.sh        (or: make demo)        bring everything up and show it; leaves it running
#   hack/demo.sh down   (or: make demo-down)   delete the app and device, keadm reset edge and cloud
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
HTTPS_PORT=${KE_DEMO_HTTPS_PORT:-10002}
MQTT_PORT=${KE_DEMO_MQTT_PORT:-1883}
CLOUD_METRICS=${KE_DEMO_CLOUD_METRICS:-127.0.0.1:10350}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$STATE/target}
BIN=$CARGO_TARGET_DIR/release
T0=$(date +%s); TP=$T0
phase() { local now; now=$(date +%s); printf '\n==> [%4ss, previous phase %ss] %s\n' "$((now - T0))" "$((now - TP))" "$*"; TP=$now; }
die() { echo "demo: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (containerd, CNI and the control plane need it)"
mkdir -p "$DEMO"

# The edge "machine": a network namespace with a veth link to the host (10.252.0.1 <-> 10.252.0.2).
NETNS=kedemo HOST_IP=10.252.0.1 EDGE_IP=10.252.0.2
in_edge() { ip netns exec "$NETNS" "$@"; }
CLOUD_DIRS=(--config-dir "$DEMO/cloud/etc" --state-dir "$DEMO/cloud/var" --log-dir "$DEMO/cloud/log")
EDGE_DIRS=(--config-dir "$DEMO/edge/etc" --state-dir "$DEMO/edge/var" --log-dir "$DEMO/edge/log")

if [ "${1:-up}" = down ]; then
  phase "delete the sample app and device"
  if [ -f "$STATE/cluster/admin.kubeconfig" ] && "$ROOT/hack/local-k8s.sh" status >/dev/null 2>&1; then
    export KUBECONFIG=$STATE/cluster/admin.kubeconfig
    kubectl delete -f "$ROOT/hack/demo/web.yaml" --ignore-not-found --wait=false || true
    kubectl delete -f "$ROOT/hack/demo/device.yaml" --ignore-not-found --wait=false 2>/dev/null || true
    for _ in $(seq 60); do [ -z "$(kubectl get pods -l app=web -o name 2>/dev/null)" ] && break; sleep 1; done
    kubectl delete node "$NODE" --ignore-not-found || true
  fi
  [ -x "$BIN/keadm" ] || die "$BIN/keadm is missing: nothing was set up by this script"
  phase "keadm reset on the edge (edgecore, its pods, its files)"
  if ip netns list | grep -qw "$NETNS"; then in_edge "$BIN/keadm" reset "${EDGE_DIRS[@]}"; else "$BIN/keadm" reset "${EDGE_DIRS[@]}"; fi
  phase "keadm reset on the cloud (cloudcore, its files, the local control plane)"
  "$BIN/keadm" reset "${CLOUD_DIRS[@]}"
  ip netns del "$NETNS" 2>/dev/null || true
  phase "demo stopped"
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
"$ROOT/hack/local-k8s.sh" build | tail -1

"$ROOT/hack/ensure-toolchain.sh"

phase "build cloudcore, keadm (release) and edgecore (size-optimised 'edge' profile)"
cargo build --release --locked -p cloudcore -p keadm 2>&1 | tail -1
cargo build --profile edge --locked -p edgecore 2>&1 | tail -1

phase "the edge's network namespace $NETNS ($EDGE_IP, linked to the host at $HOST_IP)"
if ! ip netns list | grep -qw "$NETNS"; then
  ip netns add "$NETNS"
  ip link add kedemo-h type veth peer name kedemo-e
  ip link set kedemo-e netns "$NETNS"
  ip addr add "$HOST_IP/30" dev kedemo-h && ip link set kedemo-h up
  in_edge ip addr add "$EDGE_IP/30" dev kedemo-e
  in_edge ip link set kedemo-e up && in_edge ip link set lo up
fi

phase "keadm init: CRDs, RBAC, certificates, cloudcore.yaml, cloudcore"
"$BIN/keadm" init --local "$ROOT/hack/local-k8s.sh" "${CLOUD_DIRS[@]}" --advertise-address "$HOST_IP" \
  --port "$WS_PORT" --https-port "$HTTPS_PORT" --metrics-address "$CLOUD_METRICS" --mode background \
  | grep -v '^  '
eval "$("$ROOT/hack/local-k8s.sh" env)"

phase "keadm gettoken"
TOKEN=$("$BIN/keadm" gettoken "${CLOUD_DIRS[@]}")
echo "${TOKEN:0:24}... (valid 24 h)"

phase "keadm join (in $NETNS): certificates fetched with the token, edgecore.yaml, edgecore"
in_edge "$BIN/keadm" join --cloudcore-ipport "$HOST_IP:$WS_PORT" --certport "$HTTPS_PORT" --token "$TOKEN" \
  --edgenode-name "$NODE" --mqtt-port "$MQTT_PORT" "${EDGE_DIRS[@]}" --mode background \
  --binary "$CARGO_TARGET_DIR/edge/edgecore"

phase "wait for node $NODE to be Ready"
for _ in $(seq 120); do
  [ "$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] && break
  sleep 1
done
[ "$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] \
  || { tail -20 "$DEMO/edge/log/edgecore.log"; die "node $NODE did not become Ready (logs: $DEMO/edge/log/edgecore.log, $DEMO/cloud/log/cloudcore.log)"; }

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
    in_edge mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -t '$hw/events/device/demo-thermometer/twin/update' \
      -m '{"event_id":"demo-1","timestamp":0,"twin":{"temperature":{"actual":{"value":"23.5"},"metadata":{"type":"Updated"}}}}'
    kubectl get device demo-thermometer -o jsonpath='{.status.twins[0].reported.value}' 2>/dev/null | grep -q 23.5 && break
    sleep 1
  done
  kubectl get device demo-thermometer -o yaml | sed -n '/^status:/,$p'
fi

phase "done in $(( $(date +%s) - T0 )) s"
cat <<EOF
It keeps running. Look around:
  eval "\$(hack/local-k8s.sh env)"; kubectl get nodes,pods,devices -o wide
  ip netns exec $NETNS mosquitto_sub -p $MQTT_PORT -v -t '\$hw/events/#'     # the edge's MQTT broker
  logs: $DEMO/cloud/log/cloudcore.log  $DEMO/edge/log/edgecore.log
Stop everything with 'make demo-down' (hack/demo.sh down: keadm reset on both sides).
EOF
