#!/usr/bin/env bash
# The demo on the local control plane (kwok nodes): starts it, installs the CRD, runs the
# operator and the example RenderJob, and shows `kubectl get rj -w` until it completes. On kwok
# nodes the batch pods go through their phases without running Blender; hack/demo.sh renders
# real frames on kind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

hack/deps.sh
hack/cluster.sh up
eval "$(hack/cluster.sh env)"
cargo build --locked -p renderfarm --bin renderfarm-operator

kubectl apply --server-side -f crds/renderjob.yaml
kubectl wait --for=condition=Established crd/renderjobs.renderfarm.io --timeout=60s
# Render storage: a statically bound volume (the chart provides one on kind and AKS).
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: PersistentVolume
metadata: {name: render-storage}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteMany]
  storageClassName: manual
  hostPath: {path: /tmp/renderfarm-demo}
  claimRef: {namespace: default, name: render-storage}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: render-storage, namespace: default}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: manual
  volumeName: render-storage
  resources: {requests: {storage: 10Gi}}
YAML

mkdir -p target
./target/debug/renderfarm-operator --listen 127.0.0.1:18080 >target/demo-operator.log 2>&1 &
OPERATOR=$!
trap 'kill $OPERATOR 2>/dev/null || true' EXIT

kubectl delete renderjob demo --ignore-not-found --wait=true >/dev/null
kubectl apply -f examples/renderjob.yaml
kubectl get rj demo -w &
WATCH=$!
kubectl wait --for=condition=Complete rj/demo --timeout=300s >/dev/null
sleep 1
kill $WATCH 2>/dev/null || true
echo
kubectl get rj demo -o wide
kubectl get jobs -l renderfarm.io/renderjob=demo
echo
echo "operator metrics: curl -s 127.0.0.1:18080/metrics (while it runs); log: target/demo-operator.log"
echo "stop the cluster with: hack/cluster.sh down"
