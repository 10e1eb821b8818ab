#!/usr/bin/env bash
# Runs every test of status-tracker after installing what they need (nats-server,
# qbittorrent-nox, mktorrent, chromium and chromium-driver).
# Each test starts its own nats-server on a free port with a temporary store.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
need_cmd nats-server nats-server
# tests/qbittorrent.rs drives two real qBittorrents on loopback (tests/tools/qbit-loopback.sh).
need_cmd qbittorrent-nox qbittorrent-nox
need_cmd mktorrent mktorrent
# tests/browser.rs drives Debian's headless Chromium through chromedriver; the emoji font draws
# the timeline's ⏳ in the screenshots it takes (docs/dashboard.md).
need_cmd chromium chromium
need_cmd chromedriver chromium-driver
fc-list 2>/dev/null | grep -q "Noto Color Emoji" || apt_install fonts-noto-color-emoji
cargo test --workspace --locked "$@"
