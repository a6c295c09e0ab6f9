#!/usr/bin/env bash
# Fanout benchmark as ../shared/spec/BENCHMARK.md defines it: the simulator serving real
# corpus entries at RATE certificates/s → the service → CLIENTS websocket clients on STREAM,
# then iperf3 on loopback in the same run as the limit. Prints the figures and the ratios and
# writes them, with the command and versions, into perf/runs/<date>-<host>/.
#
# usage: perf/fanout.sh [CLIENTS=1000] [RATE=500] [STREAM=/] [SECONDS=20] [-- server args]
source "$(dirname "$0")/lib.sh"
CLIENTS=${1:-1000}; RATE=${2:-500}; STREAM=${3:-/}; SECS=${4:-20}
shift $(( $# < 4 ? $# : 4 )); [[ "${1:-}" == "--" ]] && shift
PORT=${PORT:-4400}
case "$STREAM" in /full-stream*) KIND=full ;; /domains-only*) KIND=domains ;; *) KIND=lite ;; esac
NAME=fanout-$CLIENTS-$KIND
need_tool python3 python3
build
start_sim "$RATE"
start_server "$PORT" "$@"
sleep 1
echo "connecting $CLIENTS clients to $STREAM, measuring ${SECS}s..." >&2
"$BIN/loadclient" --addr "127.0.0.1:$PORT" --path "$STREAM" --clients "$CLIENTS" --warmup 3 \
    --duration "$SECS" --server-pid "$SERVER_PID" --threads "${LC_THREADS:-1}" \
    >"$RUN/$NAME.json" 2> >(tee "$RUN/$NAME.client.log" >&2) &
LOADCLIENT=$!
if [[ -n "${FLAME:-}" ]]; then
    # Profile the service inside the measured window (FLAME=1 names it after the run).
    [[ "$FLAME" == 1 ]] && FLAME=$NAME
    for _ in $(seq 1200); do grep -q "clients connected" "$RUN/$NAME.client.log" 2>/dev/null && break; sleep 0.25; done
    sleep 4
    profile_pid "$FLAME" "$SERVER_PID" "$(( SECS > 12 ? 10 : SECS - 2 ))" || true
fi
wait "$LOADCLIENT"
http_get "$PORT" /stats >"$RUN/$NAME-stats.json" 2>/dev/null || true
cleanup; PIDS=()
echo "iperf3 on loopback (the limit)..." >&2
iperf3_limit
{
    echo "command: perf/fanout.sh $CLIENTS $RATE $STREAM $SECS $*"
    versions
} >"$RUN/$NAME.txt"
python3 - "$RUN/$NAME.json" "$RUN/iperf3.json" "$RATE" "$CLIENTS" "$RUN/$NAME-stats.json" >>"$RUN/$NAME.txt" <<'PY'
import json, sys
lc = json.load(open(sys.argv[1])); ip = json.load(open(sys.argv[2]))
try:
    st = json.load(open(sys.argv[5]))
    drops = f'{st["dropped"]["core_rings"]:,} certificates at core rings, {st["dropped"]["client_queues"]:,} frames at client queues, {st["slow_clients_closed"]} slow clients closed (whole run)'
except Exception as e:
    drops = f"unknown ({e})"
rate, clients = float(sys.argv[3]), int(sys.argv[4])
end = ip["end"]; secs = end["sum_sent"]["seconds"]; ibytes = end["sum_sent"]["bytes"]
icpu = end["cpu_utilization_percent"]["host_total"] / 100 * secs
iperf_cpu_gb = icpu / (ibytes / 1e9); iperf_bps = ibytes / secs
try:
    u, s_ = open(sys.argv[2].replace("iperf3.json", "iperf3.cpu")).read().split()
    iperf_proc_gb = (float(u) + float(s_)) / (ibytes / 1e9)
except Exception:
    iperf_proc_gb = float("nan")
offered = rate * clients
delivered = lc["certificate_frames_per_second"] / offered
gb = lc["bytes"] / 1e9
cpu_gb = lc["server_cpu_seconds"] / gb if gb else float("nan")
rows = [
    ("clients connected", f'{lc["connected"]} of {clients}'),
    ("offered messages/s", f"{offered:,.0f}"),
    ("delivered messages/s", f'{lc["certificate_frames_per_second"]:,.0f} ({100*delivered:.1f} % of offered)'),
    ("delivered MB/s", f'{lc["bytes_per_second"]/1e6:,.1f}'),
    ("latency p50 / p99 / max (ms)", f'{lc["latency_p50_ms"]} / {lc["latency_p99_ms"]} / {lc["latency_max_ms"]}'),
    ("server CPU-seconds per GB", f"{cpu_gb:.3f}"),
    ("iperf3 sender CPU-seconds per GB", f"{iperf_cpu_gb:.3f} (host_total; at {iperf_bps/1e9:.2f} GB/s)"),
    ("  same, from the process's user+sys time", f"{iperf_proc_gb:.3f}"),
    ("ratio server/iperf3 CPU per GB", f"{cpu_gb/iperf_cpu_gb:.2f} (host_total) / {cpu_gb/iperf_proc_gb:.2f} (process time)"),
    ("ratio delivered bytes/s / iperf3 bytes/s", f'{lc["bytes_per_second"]/iperf_bps:.3f}'),
    ("server RSS idle → start → end (KiB)", f'{lc["server_rss_kib_idle"]} → {lc["server_rss_kib_start"]} → {lc["server_rss_kib_end"]}'),
    ("RSS per connection (KiB)", f'{(lc["server_rss_kib_end"]-lc["server_rss_kib_idle"])/max(1,lc["connected"]):.1f}'),
    ("client disconnects", lc["disconnects"]),
    ("server drops", drops),
]
for k, v in rows:
    print(f"{k:<44} {v}")
PY
cat "$RUN/$NAME.txt"
