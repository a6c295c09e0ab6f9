#!/usr/bin/env bash
# Memory per stalled connection: the service (at its defaults) streams real corpus entries at
# RATE certificates/s; its stream logs are filled first (the simulator starts INITIAL entries
# ahead and the service catches up), so that the logs' own budget is in the RSS before any
# client connects; then CLIENTS websocket clients connect and never read. Reports the
# server's RSS per connection over SECONDS.
#
# usage: perf/stalled.sh [CLIENTS=10000] [RATE=500] [SECONDS=20] [INITIAL=40000] [-- server args]
# SERVER_BIN measures another build (named in the record); perf/heap.sh runs this under heaptrack.
source "$(dirname "$0")/lib.sh"
CLIENTS=${1:-10000}; RATE=${2:-500}; SECS=${3:-20}; INITIAL=${4:-40000}
shift $(( $# < 4 ? $# : 4 )); [[ "${1:-}" == "--" ]] && shift
PORT=${PORT:-4410}
NAME=stalled-$CLIENTS${NAME_SUFFIX:-}
need_tool python3 python3
build
sim_up --source "$CORPUS/get-entries" --rate "$RATE" --batch-cap 256 --initial-size "$INITIAL"
start_server "$PORT" "$@"
echo "filling the stream logs ($INITIAL entries behind)..." >&2
for _ in $(seq 600); do
    evicted=$(metric "$PORT" certstream_stream_log_evicted_total)
    [[ "$evicted" -gt 0 ]] && break
    sleep 0.5
done
sleep 2
log_bytes=$(metric "$PORT" certstream_stream_log_bytes)
echo "stream logs full: $log_bytes bytes held (all cores), $evicted evicted" >&2
"$BIN/loadclient" --addr "127.0.0.1:$PORT" --path / --clients "$CLIENTS" --stall --warmup 3 \
    --duration "$SECS" --server-pid "$SERVER_PID" \
    >"$RUN/$NAME.json" 2> >(tee "$RUN/$NAME.client.log" >&2)
http_get "$PORT" /stats >"$RUN/$NAME-stats.json" 2>/dev/null || true
{
    echo "command: perf/stalled.sh $CLIENTS $RATE $SECS $INITIAL $*"
    versions
    echo "stream log bytes before the clients connected (sum over cores; shared frames): $log_bytes"
} >"$RUN/$NAME.txt"
python3 - "$RUN/$NAME.json" "$RUN/$NAME-stats.json" >>"$RUN/$NAME.txt" <<'PY'
import json, sys
lc = json.load(open(sys.argv[1]))
st = json.load(open(sys.argv[2]))
n = max(1, lc["connected"])
rows = [
    ("clients connected (never reading)", f'{lc["connected"]} of {lc["connected"] + lc.get("failed", 0)}'),
    ("server RSS idle (logs full) → start → end (KiB)", f'{lc["server_rss_kib_idle"]} → {lc["server_rss_kib_start"]} → {lc["server_rss_kib_end"]}'),
    ("RSS per connection (KiB)", f'{(lc["server_rss_kib_end"] - lc["server_rss_kib_idle"]) / n:.1f}'),
    ("stream logs at the end", ", ".join(f'core {c["core"]}: {c["stream_log"]["certificates"]:,} certificates, {c["stream_log"]["bytes"]/2**20:.0f} MiB' for c in st["cores"])),
    ("server drops", f'{st["dropped"]["core_rings"]:,} at core rings, {st["dropped"]["client_lag"]:,} skipped by clients, {st["slow_clients_closed"]} slow clients closed'),
]
for k, v in rows:
    print(f"{k:<50} {v}")
PY
cat "$RUN/$NAME.txt"
