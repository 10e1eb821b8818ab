#!/usr/bin/env bash
# Runs every test of status-tracker after installing what they need (nats-server).
# Each test starts its own nats-server on a free port with a temporary store.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
need_cmd nats-server nats-server
cargo test --workspace --locked "$@"
