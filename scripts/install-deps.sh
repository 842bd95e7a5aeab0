#!/usr/bin/env bash
# Installs what builds and tests need on a fresh Debian machine, only when missing.
# Idempotent and quiet when everything is present. Needs root (CI and the lab run as root).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have etcd      || need+=(etcd-server)
have etcdctl   || need+=(etcd-client)
have protoc    || need+=(protobuf-compiler)
have openssl   || need+=(openssl)
have ip        || need+=(iproute2)
have ping      || need+=(iputils-ping)
have nft       || need+=(nftables)
[ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
have podman    || need+=(podman)
have runc      || need+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
have iperf3    || need+=(iperf3)  # the pod throughput benchmark

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages ${need[*]}; run this script as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Debian etcd-server package starts a system etcd on 127.0.0.1:2379; our tests start their
# own on unique ports and never rely on it, but stop it so it cannot be mistaken for ours.
if have systemctl && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi
exit 0
