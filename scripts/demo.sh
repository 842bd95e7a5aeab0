#!/usr/bin/env bash
# Main job until calico-lab lands: apply seed 000's IPPool to a fresh embedded datastore and list
# it like upstream's `calicoctl get ippool -o wide`.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/calico-demo.XXXXXX)
trap 'rm -rf "$dir"' EXIT
export DATASTORE_TYPE=embedded EMBEDDED_DATASTORE_PATH="$dir/datastore.db"
ctl=target/release/calicoctl
echo "+ calicoctl apply -f examples/seed000-ippool.yaml"
"$ctl" apply -f examples/seed000-ippool.yaml
echo "+ calicoctl get ippool -o wide"
"$ctl" get ippool -o wide
echo "+ calicoctl get ippool default-ipv4-ippool -o yaml"
"$ctl" get ippool default-ipv4-ippool -o yaml
