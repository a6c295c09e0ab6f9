#!/usr/bin/env bash
# Catch-up burst: a log ENTRIES entries ahead of the service (as after downtime: the
# simulator starts at --initial-size ENTRIES and keeps growing at RATE/s; the service starts
# at index 0). The log is left out of the served list until the clients are connected: the
# stream checker on the lite stream, CLIENTS load clients on the lite stream, and one client
# that never reads. Then the log is listed and the service catches up as fast as it can
# (default operator rate limit, batches of up to 1024). Meanwhile /stats is fetched every
# 100 ms (until 40 s have passed and 10 s after the catch-up): its latency, the log's
# position, and the drop counters (rings, client queues) and slow-client closes that show
# load shedding by policy. Results go into perf/runs/<date>-<host>/.
#
# usage: nice -n 10 perf/burst.sh [ENTRIES=100000] [RATE=500] [CLIENTS=100] [-- server args]
source "$(dirname "$0")/lib.sh"
ENTRIES=${1:-100000}; RATE=${2:-500}; CLIENTS=${3:-100}
shift $(( $# < 3 ? $# : 3 )); [[ "${1:-}" == "--" ]] && shift
PORT=${PORT:-4440}
NAME=burst-$ENTRIES
need_tool python3 python3
build
sim_up --source "$CORPUS/get-entries" --logs 1 --initial-size "$ENTRIES" --rate "$RATE" --batch-cap 1024 --control
sim_control listed=false log0
echo "simulator: $LOG_LIST (log0: $ENTRIES entries, +$RATE/s; not listed yet)" >&2
SERVER_LOG=$RUN/$NAME-server.log
: >"$SERVER_LOG"
SERVER_ARGS=(--start 0 --no-positions --poll-interval 0.25 --refresh-interval 1 "$@")
server_up "$PORT" "${SERVER_ARGS[@]}"

start_checker "$PORT" / "$RUN/$NAME-checker.json" "$RUN/$NAME-checker.log"
"$BIN/loadclient" --addr "127.0.0.1:$PORT" --path / --clients "$CLIENTS" --warmup 0 --duration 90 \
    --server-pid "$SERVER_PID" >"$RUN/$NAME-loadclient.json" 2>"$RUN/$NAME-loadclient.log" &
LOADCLIENT=$!
PIDS+=("$LOADCLIENT")
( # A client that completes the handshake and never reads.
    exec 7<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' >&7
    sleep 600
) &
PIDS+=($!)
for _ in $(seq 300); do
    [[ $(metric "$PORT" certstream_clients) -ge $((CLIENTS + 2)) ]] && break
    sleep 0.1
done
echo "$(metric "$PORT" certstream_clients) clients connected; listing the log: catch-up starts" >&2
RSS0=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")
sim_control listed=true log0
python3 - "$PORT" "$SERVER_PID" "$RUN/$NAME-stats.csv" "$ENTRIES" >"$RUN/$NAME-poll.json" <<'PY'
import http.client, json, sys, time
port, pid, out, entries = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
rows, t0, caught, started = [], time.time(), None, None
with open(out, "w") as f:
    f.write("seconds,stats_ms,position,tree_size,processed,ring_dropped,client_dropped,slow_closed,clients,rss_kib\n")
    while time.time() - t0 < 600:
        a = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/stats"); body = c.getresponse().read(); c.close()
        ms = (time.perf_counter() - a) * 1000
        s = json.loads(body); t = time.time() - t0
        log = s["logs"][0] if s["logs"] else {"position": 0, "tree_size": 0}
        row = (round(t, 2), round(ms, 2), log["position"], log["tree_size"], s["processed_certificates"],
               s["dropped"]["core_rings"], s["dropped"]["client_lag"], s["slow_clients_closed"], s["clients"]["total"], rss())
        rows.append(row); f.write(",".join(map(str, row)) + "\n")
        if started is None and log["position"] > 0: started = t
        if caught is None and log["position"] >= entries and log["position"] + 1024 >= log["tree_size"]: caught = t
        if caught is not None and t > max(caught + 10, 40): break
        time.sleep(max(0, 0.1 - (time.perf_counter() - a)))
burst = [r for r in rows if started is not None and started <= r[0] <= (caught or rows[-1][0])]
lat = sorted(r[1] for r in burst) or [float("nan")]
pct = lambda p: lat[round((len(lat) - 1) * p)]
first = burst[0] if burst else rows[0]; last = burst[-1] if burst else rows[-1]
secs = (caught or rows[-1][0]) - (started or 0)
print(json.dumps({
    "catch_up_seconds": round(secs, 2) if caught else None,
    "entries_per_second_during_catch_up": round((last[4] - first[4]) / max(secs, 1e-9)),
    "stats_requests_during_catch_up": len(burst),
    "stats_latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": lat[-1]},
    "ring_dropped": rows[-1][5], "client_dropped": rows[-1][6], "slow_clients_closed": rows[-1][7],
    "rss_kib_peak": max(r[9] for r in rows), "rss_kib_end": rows[-1][9],
}))
PY
sim_control rate=0
kill -INT "$CHECKER"
wait "$CHECKER" || true
wait "$LOADCLIENT" || true
http_get "$PORT" /metrics >"$RUN/$NAME-metrics.txt"
{
    echo "command: perf/burst.sh $ENTRIES $RATE $CLIENTS $*"
    echo "simulator: ctlog-sim --source \$CORPUS/get-entries --logs 1 --initial-size $ENTRIES --rate $RATE --batch-cap 1024 --control"
    echo "service: certstream-server ${SERVER_ARGS[*]}"
    echo "clients: checker on / ; loadclient --clients $CLIENTS --path / ; one client that never reads"
    versions
} >"$RUN/$NAME.txt"
python3 - "$RUN/$NAME-poll.json" "$RUN/$NAME-checker.json" "$RUN/$NAME-loadclient.json" "$RSS0" >>"$RUN/$NAME.txt" <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); c = json.load(open(sys.argv[2]))
try: lc = json.load(open(sys.argv[3]))
except Exception: lc = {}
rows = [
    ("catch-up: seconds / entries per second", f'{p["catch_up_seconds"]} / {p["entries_per_second_during_catch_up"]:,}'),
    ("/stats latency during catch-up p50 / p99 / max (ms)", f'{p["stats_latency_ms"]["p50"]} / {p["stats_latency_ms"]["p99"]} / {p["stats_latency_ms"]["max"]} ({p["stats_requests_during_catch_up"]} requests)'),
    ("shed: ring drops / client-queue drops / slow clients closed", f'{p["ring_dropped"]:,} / {p["client_dropped"]:,} / {p["slow_clients_closed"]}'),
    ("RSS KiB before / peak / end", f'{sys.argv[4]} / {p["rss_kib_peak"]:,} / {p["rss_kib_end"]:,}'),
    ("checker (lite stream): received / gaps / duplicates", f'{c["messages"]:,} / {c["gaps"]:,} / {c["duplicates"]}'),
    ("checker latency receipt - seen p50 / p99 / max (ms)", f'{c["latency_ms"]["p50"]} / {c["latency_ms"]["p99"]} / {c["latency_ms"]["max"]}'),
    ("load clients: connected / disconnects / frames/s", f'{lc.get("connected")} / {lc.get("disconnects")} / {lc.get("certificate_frames_per_second")}'),
    ("load clients latency p50 / p99 / max (ms)", f'{lc.get("latency_p50_ms")} / {lc.get("latency_p99_ms")} / {lc.get("latency_max_ms")}'),
]
for k, v in rows:
    print(f"{k:<62} {v}")
PY
cat "$RUN/$NAME.txt"
