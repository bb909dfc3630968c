#!/bin/bash
# nodenet: the pod network of renderfarm's kind node image (kind's own kindnetd cannot be built
# from a Go module). Every node gets a pod CIDR from the controller manager; this agent, one
# per node on the host network, writes the CNI config that hands out addresses from its own
# node's CIDR (ptp + host-local), routes every other node's CIDR via that node's address, and
# masquerades traffic that leaves the pod network. It polls the API every few seconds: a kind
# cluster's nodes are fixed, so a watch would buy nothing.
set -uo pipefail

SA=/var/run/secrets/kubernetes.io/serviceaccount
API=https://${CONTROL_PLANE_ENDPOINT:-${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}}
CONF_DIR=${CNI_CONF_DIR:-/etc/cni/net.d}
CONF=$CONF_DIR/10-nodenet.conflist
: "${NODE_NAME:?NODE_NAME must be set (downward API spec.nodeName)}"
: "${POD_SUBNET:?POD_SUBNET must be set (the cluster pod CIDR)}"

log() { printf '%s nodenet: %s\n' "$(date -u +%FT%TZ)" "$*"; }

conflist() {
  jq -n --arg subnet "$1" '{
    cniVersion: "0.4.0",
    name: "nodenet",
    plugins: [
      {type: "ptp", ipMasq: false, mtu: 1500,
       ipam: {type: "host-local", dataDir: "/run/cni-ipam-state",
              routes: [{dst: "0.0.0.0/0"}], ranges: [[{subnet: $subnet}]]}},
      {type: "portmap", capabilities: {portMappings: true}}
    ]}'
}

masquerade() {
  local rule=(-s "$POD_SUBNET" ! -d "$POD_SUBNET" -m comment --comment nodenet -j MASQUERADE)
  iptables -t nat -C POSTROUTING "${rule[@]}" 2>/dev/null ||
    iptables -t nat -A POSTROUTING "${rule[@]}"
}

sync_nodes() {
  local nodes name cidr ip want
  nodes=$(curl -sSf --max-time 10 --cacert "$SA/ca.crt" \
    -H "Authorization: Bearer $(cat "$SA/token")" "$API/api/v1/nodes") || return 1
  while IFS=$'\t' read -r name cidr ip; do
    [[ -n $cidr && -n $ip ]] || continue
    if [[ $name == "$NODE_NAME" ]]; then
      want=$(conflist "$cidr")
      if [[ ! -f $CONF || $(cat "$CONF") != "$want" ]]; then
        printf '%s\n' "$want" >"$CONF.tmp" && mv "$CONF.tmp" "$CONF"
        log "wrote $CONF for $cidr"
      fi
    elif [[ $(ip route show "$cidr") != *"via $ip "* ]]; then
      ip route replace "$cidr" via "$ip" && log "route $cidr via $ip ($name)"
    fi
  done < <(jq -r '.items[] | [.metadata.name, (.spec.podCIDR // ""),
    ([.status.addresses[]? | select(.type == "InternalIP") | .address
      | select(test("^[0-9.]+$"))][0] // "")] | @tsv' <<<"$nodes")
}

mkdir -p "$CONF_DIR"
masquerade || log "could not add the masquerade rule"
log "node $NODE_NAME, pod subnet $POD_SUBNET, API $API"
while :; do
  sync_nodes || log "could not read the nodes; retrying"
  sleep "${RESYNC_SECONDS:-5}"
done
