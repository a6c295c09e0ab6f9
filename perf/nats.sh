#!/usr/bin/env bash
# Beyond one machine, side by side in one run: the simulator (real corpus entries at RATE
# certificates/s) → a single node (no NATS) and an ingest node (--publish) → nats-server
# (JetStream) → an edge node (--upstream); CLIENTS websocket clients on the single node and
# CLIENTS on the edge at the same time, plus a single node with no clients as the baseline
# of the ingest's CPU. Every node runs at the service's defaults (5 s poll interval).
# Reports: the edge's fanout CPU per GB ÷ the single node's; client latency from `seen` on
# both (the edge's minus the single node's is the NATS hop); the ingest's CPU per
# certificate published (ingest node − quiet single node, same certificates).
#
# usage: perf/nats.sh [CLIENTS=100] [RATE=500] [SECONDS=20] [STREAM=/]
source "$(dirname "$0")/lib.sh"
CLIENTS=${1:-100}; RATE=${2:-500}; SECS=${3:-20}; STREAM=${4:-/}
NAME=nats-$CLIENTS
need_tool python3 python3
need_tool nats-server nats-server
build
start_sim "$RATE"
NATS_PORT=${NATS_PORT:-4522}
rm -rf "$RUN/raw/nats-store"; mkdir -p "$RUN/raw"
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$RUN/raw/nats-store" 2>"$RUN/nats-server.log" &
PIDS+=("$!")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done
NATS=nats://127.0.0.1:$NATS_PORT
SERVER_LOG=$RUN/$NAME-single.log server_up 4511 --start 0 --no-positions; SINGLE=$SERVER_PID
SERVER_LOG=$RUN/$NAME-quiet.log server_up 4512 --start 0 --no-positions; QUIET=$SERVER_PID
SERVER_LOG=$RUN/$NAME-ingest.log server_up 4513 --start 0 --no-positions --publish "$NATS"; INGEST=$SERVER_PID
SERVER_LOG=$RUN/$NAME-edge.log server_up 4514 --upstream "$NATS"; EDGE=$SERVER_PID
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
sleep 6 # the first poll of the logs
q0=$(cpu "$QUIET"); i0=$(cpu "$INGEST"); p0=$(metric 4513 certstream_nats_published_total); t0=$(date +%s.%N)
echo "connecting $CLIENTS clients to the single node and $CLIENTS to the edge, ${SECS}s..." >&2
"$BIN/loadclient" --addr 127.0.0.1:4511 --path "$STREAM" --clients "$CLIENTS" --warmup 3 --duration "$SECS" \
    --server-pid "$SINGLE" >"$RUN/$NAME-single.json" 2>"$RUN/$NAME-single.client.log" &
A=$!
"$BIN/loadclient" --addr 127.0.0.1:4514 --path "$STREAM" --clients "$CLIENTS" --warmup 3 --duration "$SECS" \
    --server-pid "$EDGE" >"$RUN/$NAME-edge.json" 2>"$RUN/$NAME-edge.client.log" &
B=$!
wait "$A" "$B"
q1=$(cpu "$QUIET"); i1=$(cpu "$INGEST"); p1=$(metric 4513 certstream_nats_published_total); t1=$(date +%s.%N)
http_get 4513 /stats >"$RUN/$NAME-ingest-stats.json" || true
http_get 4514 /stats >"$RUN/$NAME-edge-stats.json" || true
TICKS=$(getconf CLK_TCK)
{
    echo "command: perf/nats.sh $CLIENTS $RATE $SECS $STREAM"
    echo "commit measured: $(git rev-parse HEAD)"
    echo "poll interval: 5 s (the service default); every other option at its default"
    versions
    echo "nats-server: $(nats-server --version)"
} >"$RUN/$NAME.txt"
python3 - "$RUN/$NAME-single.json" "$RUN/$NAME-edge.json" "$(( i1 - i0 ))" "$(( q1 - q0 ))" "$TICKS" \
    "$(( ${p1%.*} - ${p0%.*} ))" "$t0" "$t1" "$RUN/$NAME-edge-stats.json" >>"$RUN/$NAME.txt" <<'PY'
import json, sys
s, e = (json.load(open(p)) for p in sys.argv[1:3])
ingest, quiet, ticks, published = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
window = float(sys.argv[8]) - float(sys.argv[7])
gb = lambda r: r["bytes"] / 1e9
cpu_gb = lambda r: r["server_cpu_seconds"] / gb(r)
up = json.load(open(sys.argv[9]))["upstream"]
print(f"single node: {s['connected']} clients, {s['bytes_per_second']/1e6:,.1f} MB/s, {cpu_gb(s):.3f} CPU-s per GB, latency from seen p50 / p99 {s['latency_p50_ms']} / {s['latency_p99_ms']} ms")
print(f"edge node:   {e['connected']} clients, {e['bytes_per_second']/1e6:,.1f} MB/s, {cpu_gb(e):.3f} CPU-s per GB, latency from seen p50 / p99 {e['latency_p50_ms']} / {e['latency_p99_ms']} ms")
print(f"edge CPU per GB / single node's: {cpu_gb(e)/cpu_gb(s):.2f} (target <= 1.2)")
print(f"NATS hop (edge latency - single's): p50 {e['latency_p50_ms'] - s['latency_p50_ms']:.1f} ms, p99 {e['latency_p99_ms'] - s['latency_p99_ms']:.1f} ms")
extra = (ingest - quiet) / ticks
print(f"ingest CPU over {window:.1f} s: {ingest/ticks:.2f} s, quiet single node {quiet/ticks:.2f} s; {published:,} certificates published: "
      f"{1e6*extra/max(published,1):.1f} CPU-us per certificate published")
print(f"edge upstream at the end: consumed {up['consumed']:,}, lag {up['lag']}, skipped {up['skipped']}, malformed {up['malformed']}")
PY
cat "$RUN/$NAME.txt"
