#!/usr/bin/env bash
# test-local-k8s.sh — end-to-end checks of hack/local-k8s.sh against the real control plane it starts.
#
#   hack/test-local-k8s.sh
#
# Runs in its own fresh state dir ($KE_STATE_DIR/test.XXXXXX, or KE_TEST_STATE_DIR; the build cache is shared with
# $KE_STATE_DIR/cache through a symlink), so it neither disturbs nor is disturbed by a dev cluster or another
# test run; ports are picked free. The dir is removed when everything passed. Steps: up (timed) -> /readyz -> edge Node with Ready status (status subresource) -> Deployment with
# nodeSelector bound to it by the scheduler -> CRDs + Device CRs (and schema rejections) -> cloudcore RBAC ->
# idempotent up -> down leaves no process/listener/mount -> warm up (timed, data kept) -> down --wipe.
# Last line: "N passed, N failed"; exit status 1 if anything failed.
# Needs: root, curl, jq, openssl, a kubectl (PATH or KE_KUBECTL). Cold cache: the first up builds Kubernetes.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
L="$ROOT/hack/local-k8s.sh"
lk() { bash "$L" "$@"; }
BASE="${KE_STATE_DIR:-/var/lib/kubeedge-dev}"
mkdir -p "$BASE/cache"
# a fresh state dir per run: concurrent runs (several people call hack/test.sh) never share a cluster
T="${KE_TEST_STATE_DIR:-$(mktemp -d "$BASE/test.XXXXXX")}"
export KE_STATE_DIR="$T"
mkdir -p "$T"
[ -e "$T/cache" ] || ln -s "$BASE/cache" "$T/cache"
# the test picks its own ports: ignore port overrides meant for a dev cluster
unset KE_ETCD_PORT KE_ETCD_PEER_PORT KE_APISERVER_PORT KE_KCM_PORT KE_SCHEDULER_PORT

K=${KE_KUBECTL:-$(command -v kubectl || true)}
[ -n "$K" ] || K=$(lk kubectl version --client >/dev/null 2>&1; echo "$BASE/cache/bin/kubectl-1.20")
ADMIN="$T/cluster/admin.kubeconfig"
CLOUDCORE="$T/cluster/cloudcore.kubeconfig"
PKI="$T/cluster/pki"
NODE=edge-node-t1
NS=default

pass=0 failed=0
ok() { pass=$((pass + 1)); printf 'PASS  %s\n' "$1"; }
ko() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; [ -n "${2:-}" ] && printf '      %s\n' "$2"; }
check() { # NAME CMD... — pass if CMD succeeds
  local name=$1 out; shift
  if out=$("$@" 2>&1); then ok "$name"; else ko "$name" "$(printf '%s' "$out" | tail -n 5)"; fi
}
kc() { "$K" --kubeconfig "$ADMIN" "$@"; }
kcc() { "$K" --kubeconfig "$CLOUDCORE" "$@"; }
api() { # METHOD PATH [curl args...] — admin client cert straight to the apiserver
  local m=$1 p=$2; shift 2
  . "$T/cluster/ports.env"
  curl -sS --fail-with-body --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    -X "$m" "https://127.0.0.1:$KE_APISERVER_PORT$p" "$@"
}
eventually() { # SECONDS CMD... — retry every 0.5 s
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ "$SECONDS" -lt "$deadline" ] || return 1; sleep 0.5; done
}
not() { ! "$@"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b - a}'; }
pids() { cat "$T"/run/*.pid 2>/dev/null | awk '{print $1}'; }

cleanup() { # whatever happens, leave nothing running
  if ls "$T"/run/*.pid >/dev/null 2>&1; then lk down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

echo "kubectl: $K ($("$K" version --client 2>/dev/null | head -n1))"
echo "state dir: $T"

# --- 1. up (timed) ------------------------------------------------------------------------------------------
t0=$EPOCHREALTIME
if lk up >"$T/up1.out" 2>&1; then
  cold=$(since "$t0")
  ok "up: fresh cluster ($cold s; includes the build if the cache was cold)"
else
  ko "up" "$(tail -n 15 "$T/up1.out")"
  echo "$pass passed, $failed failed"; exit 1
fi

# --- 2. readyz, version skew ----------------------------------------------------------------------------------
check "kubectl get --raw /readyz = ok" test "$(kc get --raw /readyz 2>&1)" = ok
check "server is v1.20.2" sh -c "'$K' --kubeconfig '$ADMIN' version -o json 2>/dev/null | jq -e '.serverVersion.gitVersion == \"v1.20.2\"'"
check "env prints export KUBECONFIG" sh -c "bash '$L' env | grep -qx 'export KUBECONFIG=$ADMIN'"
check "status: 4 components running and healthy" lk status

# --- 3. edge node with a Ready status written through the status subresource ---------------------------------
kc create -f - >/dev/null 2>&1 <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE
  labels: {node-role.kubernetes.io/edge: "", name: $NODE}
EOF
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
status=$(jq -n --arg now "$now" '{status: {
  capacity: {cpu: "2", memory: "4Gi", pods: "110"}, allocatable: {cpu: "2", memory: "4Gi", pods: "110"},
  conditions: [{type: "Ready", status: "True", reason: "EdgeReady", message: "edge node is posting ready status",
                lastHeartbeatTime: $now, lastTransitionTime: $now}],
  addresses: [{type: "InternalIP", address: "127.0.0.1"}, {type: "Hostname", address: "edge-node-t1"}],
  nodeInfo: {machineID: "", systemUUID: "", bootID: "", kernelVersion: "", osImage: "", containerRuntimeVersion: "remote://1.6",
             kubeletVersion: "v1.20.2-kubeedge", kubeProxyVersion: "", operatingSystem: "linux", architecture: "amd64"}}}')
check "node created with label node-role.kubernetes.io/edge" \
  sh -c "'$K' --kubeconfig '$ADMIN' get nodes -l node-role.kubernetes.io/edge -o name | grep -qx node/$NODE"
check "node status PATCH via /api/v1/nodes/$NODE/status" \
  api PATCH "/api/v1/nodes/$NODE/status" -H 'Content-Type: application/merge-patch+json' -d "$status" -o /dev/null
check "node is Ready" test "$(kc get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True

# --- 4. a Deployment with nodeSelector is bound to the edge node by the scheduler ------------------------------
kc apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: edge-nginx, namespace: $NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: edge-nginx}}
  template:
    metadata: {labels: {app: edge-nginx}}
    spec:
      nodeSelector: {node-role.kubernetes.io/edge: ""}
      containers: [{name: nginx, image: nginx:1.19}]
EOF
bound() {
  [ "$(kc get pods -n "$NS" -l app=edge-nginx -o json | jq "[.items[] | select(.spec.nodeName == \"$NODE\")] | length")" = 2 ]
}
if eventually 120 bound; then ok "scheduler bound both pods to $NODE (.spec.nodeName)"
else ko "scheduler bound both pods to $NODE" "$(kc get pods -n "$NS" -o wide 2>&1 | tail -n 4)"; fi

# --- 5. CRDs and Device CRs ----------------------------------------------------------------------------------
for crd in devices.devices.kubeedge.io devicemodels.devices.kubeedge.io \
           objectsyncs.reliablesyncs.kubeedge.io clusterobjectsyncs.reliablesyncs.kubeedge.io; do
  check "CRD $crd established" kc wait --for condition=established --timeout=10s "crd/$crd"
done
check "DeviceModel led-light created" kc apply -f - <<'EOF'
apiVersion: devices.kubeedge.io/v1alpha1
kind: DeviceModel
metadata: {name: led-light, namespace: default}
spec:
  properties:
    - name: power-status
      description: light power status
      type: {string: {accessMode: ReadWrite, defaultValue: "OFF"}}
    - name: gpio-pin-number
      description: pin number
      type: {int: {accessMode: ReadOnly, defaultValue: 18}}
  propertyVisitors:
    - propertyName: power-status
      bluetooth:
        characteristicUUID: f000aa0204514000b000000000000000
        dataWrite: {"ON": [1], "OFF": [0]}
        dataConverter: {startIndex: 1, endIndex: 0, shiftRight: 2,
                        orderOfOperations: [{operationType: Multiply, operationValue: 0.03125}]}
    - propertyName: gpio-pin-number
      modbus: {register: CoilRegister, offset: 0, limit: 1, scale: 1, isSwap: false, isRegisterSwap: false}
    - propertyName: power-status
      opcua: {nodeID: "ns=1;i=1005", browseName: ""}
EOF
check "Device led-light-instance-01 created (modbus rtu, nodeSelector, status twins)" kc apply -f - <<EOF
apiVersion: devices.kubeedge.io/v1alpha1
kind: Device
metadata:
  name: led-light-instance-01
  namespace: default
  labels: {description: LEDLight, model: led-light}
spec:
  deviceModelRef: {name: led-light}
  protocol:
    modbus:
      rtu: {serialPort: "1", baudRate: 115200, dataBits: 8, parity: even, stopBits: 1, slaveID: 1}
  nodeSelector:
    nodeSelectorTerms:
      - matchExpressions: [{key: "", operator: In, values: [$NODE]}]
status:
  twins:
    - propertyName: power-status
      desired: {value: "ON", metadata: {type: string, timestamp: "1550049403598"}}
EOF
check "empty string, 0 and false survive in custom resources" sh -c "
  '$K' --kubeconfig '$ADMIN' get devicemodel led-light -o json |
  jq -e '.spec.propertyVisitors[1].modbus.offset == 0 and .spec.propertyVisitors[1].modbus.isSwap == false
         and .spec.propertyVisitors[2].opcua.browseName == \"\"'"
check "Device keeps status twins and free-form dataWrite (no pruning)" sh -c "
  '$K' --kubeconfig '$ADMIN' get device led-light-instance-01 -o json | jq -e '.status.twins[0].desired.metadata.type == \"string\"' &&
  '$K' --kubeconfig '$ADMIN' get devicemodel led-light -o json | jq -e '.spec.propertyVisitors[0].bluetooth.dataWrite.ON == [1]'"
reject() { not kc apply -f - >/dev/null 2>&1; }
check "schema rejects a modbus rtu parity outside the enum" reject <<EOF
apiVersion: devices.kubeedge.io/v1alpha1
kind: Device
metadata: {name: bad-parity, namespace: default}
spec:
  deviceModelRef: {name: led-light}
  protocol: {modbus: {rtu: {serialPort: "1", baudRate: 115200, dataBits: 8, parity: sometimes, stopBits: 1, slaveID: 1}}}
EOF
check "schema rejects a Device without deviceModelRef" reject <<EOF
apiVersion: devices.kubeedge.io/v1alpha1
kind: Device
metadata: {name: no-model, namespace: default}
spec: {protocol: {bluetooth: {macAddress: "BC:6A:29:AE:CC:96"}}}
EOF
check "ObjectSync with status subresource" sh -c "
  '$K' --kubeconfig '$ADMIN' apply -f - <<'EOF' >/dev/null &&
apiVersion: reliablesyncs.kubeedge.io/v1alpha1
kind: ObjectSync
metadata: {name: $NODE.0b1d2c3e-0000-4000-8000-000000000001, namespace: default}
spec: {objectKind: pod, objectName: edge-nginx, objectAPIVersion: ''}
EOF
  '$K' --kubeconfig '$ADMIN' get --raw /apis/reliablesyncs.kubeedge.io/v1alpha1/namespaces/default/objectsyncs/$NODE.0b1d2c3e-0000-4000-8000-000000000001/status | jq -e '.spec.objectKind == \"pod\"'"

# --- 6. cloudcore RBAC -----------------------------------------------------------------------------------------
can() { [ "$(kcc auth can-i "$@" 2>/dev/null)" = yes ]; }
cannot() { [ "$(kcc auth can-i "$@" 2>/dev/null)" = no ]; }
check "cloudcore can list pods in all namespaces" can list pods --all-namespaces
check "cloudcore really lists pods" kcc get pods --all-namespaces -o name
check "cloudcore can patch nodes/status" can patch nodes --subresource=status
check "cloudcore can create configmaps (device profile)" can create configmaps -n default
check "cloudcore can patch devices.devices.kubeedge.io" can patch devices.devices.kubeedge.io -n default
check "cloudcore can create objectsyncs.reliablesyncs.kubeedge.io" can create objectsyncs.reliablesyncs.kubeedge.io -n default
check "cloudcore can create customresourcedefinitions" can create customresourcedefinitions.apiextensions.k8s.io
check "cloudcore cannot delete namespaces" cannot delete namespaces
check "cloudcore cannot create pods" cannot create pods -n default
check "cloudcore cannot read clusterroles" cannot get clusterroles
check "cloudcore is really forbidden to delete a namespace" sh -c \
  "'$K' --kubeconfig '$CLOUDCORE' delete namespace kubeedge 2>&1 | grep -q Forbidden"

# --- 7. up is idempotent ---------------------------------------------------------------------------------------
before=$(pids | sort | tr '\n' ' ')
check "second up while running succeeds" lk up
check "second up kept the same processes" test "$(pids | sort | tr '\n' ' ')" = "$before"

# --- 8. down leaves nothing behind -------------------------------------------------------------------------------
. "$T/cluster/ports.env"
check "down" lk down
gone() { # none of the PIDs is a live process (an exited daemon may stay a zombie until PID 1 reaps it)
  local p st
  for p in $before; do
    st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    st=${st##*) }; [ "${st%% *}" = Z ] || return 1
  done
}
check "no process left (pids $before)" gone
listening() { ss -Htln | awk '{print $4}' | grep -Eq ":($KE_ETCD_PORT|$KE_ETCD_PEER_PORT|$KE_APISERVER_PORT|$KE_KCM_PORT|$KE_SCHEDULER_PORT)\$"; }
check "no listener left on the cluster ports" not listening
check "no mount under the state dir" not grep -q " $T" /proc/mounts
check "status reports stopped" not lk status

# --- 9. second up is fast and keeps the data -------------------------------------------------------------------
t0=$EPOCHREALTIME
if lk up >"$T/up2.out" 2>&1; then
  warm=$(since "$t0")
  ok "warm up: existing cluster state ($warm s)"
else
  ko "warm up" "$(tail -n 15 "$T/up2.out")"
fi
check "readyz ok after warm up" test "$(kc get --raw /readyz 2>&1)" = ok
check "etcd data kept: node and device still there" sh -c \
  "'$K' --kubeconfig '$ADMIN' get node $NODE -o name && '$K' --kubeconfig '$ADMIN' get device led-light-instance-01 -o name"

# --- 10. down --wipe ---------------------------------------------------------------------------------------------
check "down --wipe" lk down --wipe
check "wipe removed cluster state" test ! -e "$T/cluster"
check "wipe kept the build cache" test -x "$BASE/cache/bin/kube-apiserver"
rm -f "$T/up1.out" "$T/up2.out"
# all passed: remove the run's state dir (rm does not follow the cache symlink); else keep it for the logs
if [ "$failed" = 0 ] && [ -z "${KE_TEST_STATE_DIR:-}" ]; then rm -rf "${T:?}"; else echo "state and logs kept in $T"; fi

echo "$pass passed, $failed failed"
[ "$failed" = 0 ]
