#!/usr/bin/env bash
# The main job: seed 000 (4 nodes in two subnets behind one switch, VXLAN CrossSubnet, /26
# blocks) as a lab of network namespaces on this host, with the real calico-node (Felix) per
# node, the embedded datastore, and one pod per node wired by the calico CNI plugin. `up` prints
# the block affinities, every node's routes to pod blocks and the all-pairs pod matrix (ICMP +
# TCP); then the VXLAN neighbour/FDB entries of k01-worker3, `check`, and `down`.
# Needs root and the release binaries (`make demo` builds them first).
set -euo pipefail
cd "$(dirname "$0")/.."
# Where cargo put the binaries (CARGO_TARGET_DIR is honoured as cargo does; DEMO_PROFILE=debug
# runs a debug build).
bin=${CARGO_TARGET_DIR:-target}/${DEMO_PROFILE:-release}
for b in calico-lab calico-node calico calico-ipam; do
  [[ -x $bin/$b ]] || { echo "demo: $bin/$b is missing; run 'make build' first" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "demo: calico-lab creates network namespaces; run as root" >&2; exit 1; }
lab=$bin/calico-lab
export CALICO_LAB_STATE_DIR
CALICO_LAB_STATE_DIR=$(mktemp -d /tmp/calico-demo.XXXXXX)
cleanup() {
  echo "+ $lab down seed000"
  "$lab" down seed000 || echo "demo: 'calico-lab down seed000' failed" >&2
  rm -rf "$CALICO_LAB_STATE_DIR"
}
# A lab left by an interrupted demo is found by its namespace names and removed first.
if ip netns list | grep -q -- '-seed000-'; then "$lab" down seed000 >/dev/null; fi
trap cleanup EXIT
run() { echo "+ $*"; "$@"; }
run "$lab" up examples/seed000-crosssubnet.yaml
echo
run "$lab" exec k01-worker3 -- ip -br addr show dev vxlan.calico
run "$lab" exec k01-worker3 -- ip neigh show dev vxlan.calico
run "$lab" exec k01-worker3 -- bridge fdb show dev vxlan.calico
run "$lab" exec default/pod-w1 -- ip route
echo
run "$lab" check
echo
