#!/usr/bin/env bash
# Fault soak: the simulator serves 3 RFC 6962 logs and 1 static-ct-api log (real corpus
# entries) at RATE certificates/s in all, with random faults on every log (429 with and
# without Retry-After, 500, 503, slow answers and 30 s client timeouts, dropped connections,
# truncated and garbage bodies, forged checkpoints, gzip tiles; short batches: the logs cap
# get-entries at 256, 100 and 1000). On a schedule, one log stops growing and resumes, and
# two logs leave the served log list and come back. One checker client on /full-stream
# verifies that every index of every log arrives exactly once and in order; at the end the
# simulator is frozen and the checker waits until every log is received up to its tree size.
# Results (the checker's JSON report, its progress log, /metrics, the simulator's state, the
# command and versions) go into perf/runs/<date>-<host>/.
#
# usage: nice -n 10 perf/soak.sh [MINUTES=10] [RATE=2000] [-- server args]
source "$(dirname "$0")/lib.sh"
MINUTES=${1:-10}; RATE=${2:-2000}
shift $(( $# < 2 ? $# : 2 )); [[ "${1:-}" == "--" ]] && shift
PORT=${PORT:-4410}
NAME=soak-${MINUTES}m-$RATE
SECS=$(python3 -c "print(round($MINUTES * 60))")
PER_LOG=$(python3 -c "print($RATE / 4)")
build

# Per log (log0, log1, log2, tiled0): batch cap and faults.
# log1's slow answers take 31 s: the service's requests time out after 30 s.
FAULTS0="429=0.02,retry-after=1,retry-after-omit=0.5,500=0.02,503=0.02,truncated=0.02,garbage=0.02,reset=0.02,slow=0.02,slow-ms=2000"
FAULTS1="429=0.01,500=0.01,503=0.01,truncated=0.01,garbage=0.01,reset=0.01,slow=0.001,slow-ms=31000"
FAULTS2="all=0.02,retry-after=0"
FAULTS3="all=0.02,retry-after=1,retry-after-omit=0.5,gzip=0.3"
# Frozen until the checker is connected (every index from 0 on must reach it).
sim_up --source "$CORPUS/get-entries" --logs 3 --static-ct 1 --initial-size 0 --rate 0 --control \
    --batch-cap 256 --batch-cap 100 --batch-cap 1000 --batch-cap 256 \
    --faults "$FAULTS0" --faults "$FAULTS1" --faults "$FAULTS2" --faults "$FAULTS3"
echo "simulator: $LOG_LIST (4 logs, $PER_LOG certificates/s each once started)" >&2
SERVER_LOG=$RUN/$NAME-server.log
: >"$SERVER_LOG"
# The checker is the only client, on a 2-core machine shared with the service and the
# simulator: while the service catches up after a log comes back, all three compete for the
# CPU and the checker can fall seconds behind. A deeper queue (the default holds 2048
# frames) lets it catch up instead of losing frames by the slow-client policy; frames the
# server still drops are counted and reported apart from gaps.
SERVER_ARGS=(--start 0 --no-positions --poll-interval 0.25 --refresh-interval 5 --operator-rate 100 "$@")
server_up "$PORT" "${SERVER_ARGS[@]}"

start_checker "$PORT" /full-stream "$RUN/$NAME.json" "$RUN/$NAME-progress.log"
wait_for_a_client "$PORT" || exit 1
sim_control "rate=$PER_LOG"
T0=$(date +%s.%N)
echo "streaming for $MINUTES min at $RATE certificates/s; progress: $RUN/$NAME-progress.log" >&2

# The schedule, as fractions of the run: log2 stops growing for 10 % of it; log1 and then
# the static-ct log leave the list for 5 % each (the service re-reads the list every 5 s;
# when a log comes back, the service catches up on what it missed).
at() { sleep "$(python3 -c "import time; print(max(0, $T0 + $1 * $SECS - time.time()))")"; }
{
    at 0.20; echo "$(date -Is) log2 stops growing"; sim_control rate=0 log2
    at 0.30; echo "$(date -Is) log2 grows again"; sim_control "rate=$PER_LOG" log2
    at 0.40; echo "$(date -Is) log1 leaves the log list"; sim_control listed=false log1
    at 0.45; echo "$(date -Is) log1 is back in the log list"; sim_control listed=true log1
    at 0.60; echo "$(date -Is) tiled0 leaves the log list"; sim_control listed=false tiled0
    at 0.65; echo "$(date -Is) tiled0 is back in the log list"; sim_control listed=true tiled0
} >"$RUN/$NAME-schedule.log" 2>&1 &
SCHEDULE=$!
PIDS+=("$SCHEDULE")
sleep "$SECS"
wait "$SCHEDULE" 2>/dev/null || true

echo "freezing the simulator; the checker waits for every log to reach its tree size" >&2
cpu() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat" 2>/dev/null; }
CPU="service $(cpu "$SERVER_PID") s, simulator $(cpu "$SIM_PID") s, checker $(cpu "$CHECKER") s"
sim_control rate=0
curl -s "${SIM_URL}control" >"$RUN/$NAME-sim.json"
kill -INT "$CHECKER"
wait "$CHECKER" || true
curl -s "http://127.0.0.1:$PORT/metrics" >"$RUN/$NAME-metrics.txt"
curl -s "http://127.0.0.1:$PORT/stats" >"$RUN/$NAME-stats.json"
{
    echo "command: perf/soak.sh $MINUTES $RATE $*"
    echo "simulator: ctlog-sim --source \$CORPUS/get-entries --logs 3 --static-ct 1 --initial-size 0 --control, $PER_LOG/s per log"
    echo "  batch caps: 256, 100, 1000, (tiles of 256)"
    echo "  faults: log0 $FAULTS0"
    echo "          log1 $FAULTS1"
    echo "          log2 $FAULTS2"
    echo "          tiled0 $FAULTS3"
    echo "service: certstream-server ${SERVER_ARGS[*]}"
    echo "checker: checker --path /full-stream --expect-start 0 --sim $SIM_URL"
    echo "CPU time while streaming: $CPU"
    versions
} >"$RUN/$NAME.txt"
TIMEOUTS=$(grep -c "timed out after" "$SERVER_LOG" || true)
python3 - "$RUN/$NAME.json" "$RUN/$NAME-sim.json" "$RUN/$NAME-metrics.txt" "$TIMEOUTS" >>"$RUN/$NAME.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); sim = json.load(open(sys.argv[2]))
metrics = {}
for line in open(sys.argv[3]):
    if line.startswith("#") or " " not in line: continue
    k, v = line.rsplit(" ", 1); metrics[k.split("{")[0]] = metrics.get(k.split("{")[0], 0) + float(v)
lat = r["latency_ms"]; srv = r["server"]
rows = [
    ("seconds streamed", r["seconds"]),
    ("certificates received", f'{r["messages"]:,} ({r["messages"] / max(1, r["seconds"]):,.0f}/s)'),
    ("logs", len(r["logs"])),
    ("caught up with every tree size", r["caught_up"]),
    ("GAPS (entries never received)", r["gaps"]),
    ("DUPLICATES", r["duplicates"]),
    ("reordered", r["reordered"]),
    ("connections (1 = never dropped)", r["connections"]),
    ("latency receipt - seen p50 / p99 / p99.9 / max (ms)", f'{lat["p50"]} / {lat["p99"]} / {lat["p999"]} / {lat["max"]}'),
    ("server drops: client queue / ring", f'{srv["client_dropped"]} / {srv["ring_dropped"]}'),
    ("faults injected by the simulator", sum(l["faults_injected"] for l in sim["logs"])),
    ("simulator requests", sum(l["requests"] for l in sim["logs"])),
]
for name in ["http_errors", "http_status_errors", "rate_limited", "bad_responses", "bad_checkpoints", "bad_entries", "loglist_errors"]:
    rows.append((f"service ingest {name}", int(metrics.get(f"certstream_ingest_{name}_total", 0))))
rows.append(("service requests that timed out (30 s)", sys.argv[4]))
for k, v in rows:
    print(f"{k:<52} {v}")
print()
for url, l in r["logs"].items():
    print(f'{url}: {l["received"]:,} received of {l["final_size"]}, gaps {l["gaps"]}, duplicates {l["duplicates"]}, reordered {l["reordered"]}')
PY
cat "$RUN/$NAME.txt"
cat "$RUN/$NAME-schedule.log"
