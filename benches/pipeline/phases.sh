#!/usr/bin/env bash
# Where a webhook's time goes at idle, from its POST to its SSE event: runs the benchmark's
# idle probe (500 webhooks, one at a time) with status-tracker under `perf trace`, which
# records the app's and its nats-server's socket reads and writes, and prints the median of
# each step. perf adds little here (two system calls are traced; about a tenth on the p50).
#
#   benches/pipeline/phases.sh [path/to/status-tracker]   # default: target/release/status-tracker
#
# The steps, as the app's system calls show them:
#   http     the POST read → its fact published to MEDIA (the ingress)
#   media    → the publish's ack and the message's delivery to the correlator read (nats-server)
#   correlate→ the state message published to TRACKER (decode, the correlator's thread, the
#              SQLite look-up and commit, the outbox publisher)
#   tracker  → the state message read back by the dashboard's subscription (nats-server)
#   sse      → the SSE event written to the browser's connection (the dashboard)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(realpath "${1:-target/release/status-tracker}")
command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The benchmark starts the binary with no arguments and a cleared environment. It stops what
# it started with SIGTERM, which perf does not pass on: the wrapper hands it to the app (perf's
# child), so that the app stops, and perf with it, instead of living on.
cat >"$work/traced" <<EOF
#!/bin/sh
perf trace -e recvfrom,writev -o "$work/trace" -- "$bin" "\$@" &
perf=\$!
trap 'pkill -TERM -P \$perf; wait \$perf' TERM INT
wait \$perf
EOF
chmod +x "$work/traced"
BENCH_BIN="$work/traced" cargo bench --bench pipeline -- --only idle | grep -F 'webhook → SSE'
python3 - "$work/trace" <<'EOF'
import collections, re, statistics, sys

calls = []  # (time ms, call, fd, bytes), the app's threads only
started = {}  # a call perf printed in two lines (another thread's came in between), by thread
for line in open(sys.argv[1]):
    m = re.match(r'\s*([\d.]+) \(.*?\): (\S+)/(\d+) (recvfrom|writev)\(fd: (\d+).*?(?:= (\d+)|\.\.\.)\s*$', line)
    if m and m[6] is None:
        started[m[3]] = (float(m[1]), m[4], int(m[5]))
        continue
    if not m:
        m = re.match(r'\s*[\d.]+ \(.*?\): (\S+)/(\d+)\s+\.\.\. \[continued\]: (recvfrom|writev)\(\)\)\s+= (\d+)', line)
        if m and m[2] in started and not m[1].startswith('nats-server'):
            calls.append(started.pop(m[2]) + (int(m[4]),))
        continue
    if not m[2].startswith('nats-server'):
        calls.append((float(m[1]), m[4], int(m[5]), int(m[6])))
calls.sort()
writes = collections.Counter(fd for _, call, fd, _ in calls if call == 'writev')
reads = collections.Counter(fd for _, call, fd, _ in calls if call == 'recvfrom')
# NATS: the connection written most (a fact, an ack and a state message per webhook); SSE:
# the one written to and hardly read (its request only); the POSTs: the others read.
nats = writes.most_common(1)[0][0]
sse = max((fd for fd in writes if fd != nats and reads[fd] * 10 < writes[fd]), key=writes.get)
steps = ['http', 'media', 'correlate', 'tracker', 'sse']
found = []
for i, (t, call, fd, n) in enumerate(calls):
    if call != 'recvfrom' or fd in (nats, sse):
        continue
    marks, want = [t], iter([
        ('writev', nats, 0), ('recvfrom', nats, 1000), ('writev', nats, 1000), ('recvfrom', nats, 1000),
        ('writev', sse, 0),
    ])
    step = next(want)
    for t2, call2, fd2, n2 in calls[i + 1:i + 40]:
        if call2 == 'recvfrom' and fd2 not in (nats, sse):
            break  # the next POST: this one's steps were not all seen
        if (call2, fd2) == step[:2] and n2 > step[2]:
            marks.append(t2)
            step = next(want, None)
            if step is None:
                found.append(marks)
                break
if not found:
    sys.exit(f'no webhook followed from POST to SSE event (NATS fd {nats}, SSE fd {sse}; '
             f'written {dict(writes)}, read {dict(reads)}; {len(calls)} calls)')
print(f'{len(found)} webhooks followed from POST to SSE event; median of each step:')
for k, name in enumerate(steps):
    print(f'  {name:10} {statistics.median(m[k + 1] - m[k] for m in found) * 1000:6.0f} µs')
print(f'  {"in all":10} {statistics.median(m[-1] - m[0] for m in found) * 1000:6.0f} µs')
EOF
