#!/usr/bin/env bash
# Runs every test of status-tracker after installing what they need (nats-server,
# qbittorrent-nox, mktorrent).
# Each test starts its own nats-server on a free port with a temporary store.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
need_cmd nats-server nats-server
# tests/qbittorrent.rs drives two real qBittorrents on loopback (tests/tools/qbit-loopback.sh).
need_cmd qbittorrent-nox qbittorrent-nox
need_cmd mktorrent mktorrent
cargo test --workspace --locked "$@"
