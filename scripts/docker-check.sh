#!/usr/bin/env bash
# Builds the image from compose/Dockerfile and runs both compose files as docs/setup/README.md
# says, checking what a user would see:
#
#   0. a data directory the image's user cannot write stops the start and names that user;
#   1. compose/docker-compose.all-in-one.yml: the demo's webhooks make the film available, a
#      malformed one is refused, `doctor` passes, Docker reports the container healthy, it runs
#      as the service user, and the request is still there after `down` and `up`;
#   2. compose/docker-compose.yml: every container healthy, `doctor` passes, the demo sent to
#      the ingress container shows on the dashboard container's API, a webhook sent while NATS
#      is stopped is spooled and applied once it is back, and the state survives `down` and
#      `up`.
#
# After each `down`, only the named volumes may be left (no anonymous volume per container).
#
# Needs a running Docker engine and compose (the v2 plugin, or v1's docker-compose). Not part
# of scripts/test.sh: it makes a release build inside Docker (about 7 minutes on 2 cores).
#
#   scripts/docker-check.sh
#
# The Dockerfile's base images can be replaced (a registry mirror, or images built without
# Docker Hub): RUST_IMAGE, NATS_IMAGE (also used for the split stack's `nats` service) and
# RUNTIME_IMAGE. Everything it creates is named status-tracker-check* and removed at the end;
# the ports are free ones, so a running status-tracker is not disturbed.
set -euo pipefail
cd "$(dirname "$0")/.."

image=status-tracker:check
project=status-tracker-check
network=status-tracker-check-media
work=$(mktemp -d)
fixtures=tests/fixtures

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose_cmd=(docker-compose)
else
  fail "neither 'docker compose' nor 'docker-compose' is installed"
fi
docker info >/dev/null 2>&1 || fail "no Docker engine answers (is dockerd running?)"

# compose_on all-in-one|stack ARGS...: compose with that file, this image, free ports, a network
# of our own and a project name of its own. v1's docker-compose does not know the top-level
# `name:` key, so the files are read without it (the project name is given here).
compose_on() {
  local extra=()
  [ "$1" = stack ] && extra=("${overrides[@]}")
  "${compose_cmd[@]}" --project-name "$project-$1" --project-directory compose --env-file "$work/env" \
    -f "$work/$1.yml" "${extra[@]}" "${@:2}"
}

cleanup() {
  for file in all-in-one stack; do
    if [ -f "$work/$file.yml" ]; then compose_on "$file" down -v --remove-orphans >/dev/null 2>&1 || true; fi
  done
  docker network rm "$network" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for SECONDS DESCRIPTION COMMAND...: runs COMMAND every second until it succeeds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  fail "$what: not within ${seconds}s"
}

# post HOOKS SOURCE FIXTURE: a fixture's body to /hooks/SOURCE; prints the status code.
post() { curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$fixtures/$3" "$1/$2"; }

# The README's demo: one film from Jellyseerr's request to Jellyfin's library.
demo() {
  local hooks=$1 codes=""
  codes+=$(post "$hooks" jellyseerr jellyseerr/webhook_media_pending_movie_the_batman_req42.json)" "
  codes+=$(post "$hooks" jellyseerr jellyseerr/webhook_media_approved_movie_the_batman_req42.json)" "
  codes+=$(post "$hooks" radarr radarr/webhook_movie_added_the_batman.json)" "
  codes+=$(post "$hooks" radarr radarr/webhook_grab_the_batman.json)" "
  codes+=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' "$hooks/qbittorrent" \
    -d '{"hash":"5e3f9a1c7b2d4e6f8091a2b3c4d5e6f708192a3b","name":"The.Batman"}')" "
  codes+=$(post "$hooks" radarr radarr/webhook_download_the_batman.json)" "
  codes+=$(post "$hooks" jellyfin jellyfin/item_added_movie_the_batman.json)
  [ "$codes" = "202 202 202 202 202 202 202" ] || fail "demo webhooks answered $codes"
  local refused
  refused=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{"eventType":' "$hooks/radarr")
  [ "$refused" = 400 ] || fail "a malformed webhook answered $refused, not 400"
  echo "demo: 7 webhooks accepted (202), a malformed one refused (400)"
}

# state TITLE: the state of the request with that title on the dashboard's API, or nothing.
state() {
  curl -sf "$api/api/requests" | python3 -c '
import json, sys
rows = json.load(sys.stdin)["requests"]
print(next((r["state"] for r in rows if r.get("title") == sys.argv[1]), ""))' "$1"
}
is_state() { [ "$(state "$1")" = "$2" ]; }

# all_healthy all-in-one|stack SERVICES...: Docker's healthcheck says healthy for each.
all_healthy() {
  local s
  for s in "${@:2}"; do
    [ "$(docker inspect --format '{{.State.Health.Status}}' "$(compose_on "$1" ps -q "$s")")" = healthy ] || return 1
  done
}

# named_volumes_only all-in-one|stack VOLUMES...: after `down`, these are the only new volumes.
named_volumes_only() {
  local left wanted
  left=$(comm -13 <(echo "$volumes_before") <(docker volume ls -q | sort) | tr '\n' ' ')
  wanted=$(printf "$project-$1_%s " "${@:2}")
  [ "$left" = "$wanted" ] || fail "after down the volumes left are: $left(expected $wanted)"
  echo "after down: only the named volumes are left ($left)"
}

step "build $image"
build_args=()
for arg in RUST_IMAGE NATS_IMAGE RUNTIME_IMAGE; do
  if [ -n "${!arg:-}" ]; then build_args+=(--build-arg "$arg=${!arg}"); fi
done
started=$(date +%s)
docker build -q -f compose/Dockerfile "${build_args[@]}" -t "$image" . >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')
echo "built in $(($(date +%s) - started)) s, $size"

sed '/^name: /d' compose/docker-compose.all-in-one.yml > "$work/all-in-one.yml"
sed '/^name: /d' compose/docker-compose.yml > "$work/stack.yml"
overrides=()
if [ -n "${NATS_IMAGE:-}" ]; then
  printf 'services:\n  nats:\n    image: %s\n' "$NATS_IMAGE" > "$work/nats-image.yml"
  overrides=(-f "$work/nats-image.yml")
fi
dashboard_port=$(free_port)
ingress_port=$(free_port)
cat > "$work/env" <<ENV
TRACKER_IMAGE=$image
MEDIA_NETWORK=$network
NATS_TRACKER_PASSWORD=check-$RANDOM$RANDOM
NATS_AUTOMATION_PASSWORD=check-$RANDOM$RANDOM
TRACKER_DASHBOARD_PORT=$dashboard_port
TRACKER_INGRESS_PORT=$ingress_port
NATS_HOST_PORT=$(free_port)
ENV
api=http://127.0.0.1:$dashboard_port
docker network create "$network" >/dev/null
volumes_before=$(docker volume ls -q | sort)

step "a bind mount the image's user cannot write"
mkdir "$work/not-ours"
if docker run --rm -v "$work/not-ours:/data" "$image" all > "$work/refused.txt" 2>&1; then
  fail "the all-in-one ran on a data directory it cannot write"
fi
grep -q "is not writable by this process (uid 10001, gid 10001)" "$work/refused.txt" ||
  { cat "$work/refused.txt"; fail "the refusal does not name the image's user"; }
echo "refused at start: $(cut -c1-110 "$work/refused.txt")..."

step "all-in-one: compose/docker-compose.all-in-one.yml"
compose_on all-in-one up -d --no-build >/dev/null 2>&1 || { compose_on all-in-one up -d --no-build; fail "compose up"; }
wait_for 60 "the all-in-one's /healthz" curl -sf "$api/healthz"
uid=$(compose_on all-in-one exec -T status-tracker id -u)
[ "$uid" = 10001 ] || fail "the all-in-one runs as uid $uid, not 10001"
demo "$api/hooks"
wait_for 20 "The Batman available in the all-in-one" is_state "The Batman" available
echo "The Batman: available"
compose_on all-in-one exec -T status-tracker status-tracker doctor > "$work/doctor.txt" 2>&1 ||
  { cat "$work/doctor.txt"; fail "doctor in the all-in-one"; }
grep -E '^  nats ' "$work/doctor.txt"
wait_for 90 "Docker's healthcheck of the all-in-one" all_healthy all-in-one status-tracker
echo "healthcheck: healthy, running as uid $uid"
compose_on all-in-one down >/dev/null 2>&1
named_volumes_only all-in-one tracker-data
compose_on all-in-one up -d --no-build >/dev/null 2>&1
wait_for 60 "the all-in-one's /healthz after down and up" curl -sf "$api/healthz"
wait_for 20 "The Batman after down and up" is_state "The Batman" available
echo "after down and up: The Batman still available"
compose_on all-in-one down -v >/dev/null 2>&1

step "split stack: compose/docker-compose.yml"
hooks=http://127.0.0.1:$ingress_port/hooks
services=(nats ingress poller shoko-bridge correlator dashboard)
compose_on stack up -d --no-build >/dev/null 2>&1 || { compose_on stack up -d --no-build; fail "compose up"; }
wait_for 120 "every container of the stack healthy" all_healthy stack "${services[@]}"
echo "healthy: ${services[*]}"
compose_on stack run --rm doctor > "$work/doctor.txt" 2>&1 || { cat "$work/doctor.txt"; fail "doctor in the stack"; }
grep -E '^  nats ' "$work/doctor.txt"
demo "$hooks"
wait_for 20 "The Batman available on the dashboard" is_state "The Batman" available
echo "The Batman: available (webhooks to the ingress container, state from the dashboard's)"

compose_on stack stop nats >/dev/null 2>&1
spooled=$(curl -s -H 'Content-Type: application/json' \
  --data-binary @"$fixtures/jellyseerr/webhook_media_pending_tv_severance_req44.json" "$hooks/jellyseerr")
case "$spooled" in *'"spooled":true'*) ;; *) fail "with NATS stopped the ingress answered $spooled" ;; esac
compose_on stack start nats >/dev/null 2>&1
wait_for 60 "the webhook spooled while NATS was stopped" is_state Severance requested
echo "a webhook sent while NATS was stopped: spooled, then applied (Severance requested)"

compose_on stack down >/dev/null 2>&1
named_volumes_only stack ingress-spool nats-data tracker-data
compose_on stack up -d --no-build >/dev/null 2>&1
wait_for 120 "every container healthy after down and up" all_healthy stack "${services[@]}"
wait_for 20 "The Batman after down and up" is_state "The Batman" available
echo "after down and up: The Batman available, Severance $(state Severance)"

step "every check passed"
