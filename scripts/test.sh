#!/usr/bin/env bash
# Runs the whole test suite. Tests start their own etcd servers (unique ports and data dirs) and
# need root for namespace tests; anything missing makes them fail loudly, never skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# TEST_RUNNER=cargo forces plain `cargo test` (what a machine without cargo-nextest runs).
if [ "${TEST_RUNNER:-}" != cargo ] && cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
