#!/usr/bin/env bash
# Builds and starts status-tracker: every service in one process, its own nats-server, the
# dashboard on http://localhost:8100. Data goes to ./data (TRACKER_DATA_DIR). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
need_cmd nats-server nats-server
cargo build --release --locked --bin status-tracker
# CARGO_TARGET_DIR, when set, is where cargo put the binary.
exec "${CARGO_TARGET_DIR:-target}/release/status-tracker" "$@"
