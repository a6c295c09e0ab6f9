#!/usr/bin/env bash
# Mixed streams: CLIENTS websocket clients split evenly over lite (/), full (/full-stream) and
# domains-only (/domains-only) at RATE certificates/s from real corpus entries; one load
# client per stream, measured in the same window. FLAME=1 also records a flamegraph of the
# service (flamegraphs/mixed.svg).
#
# usage: perf/mixed.sh [CLIENTS=900] [RATE=500] [SECONDS=20] [-- server args]
source "$(dirname "$0")/lib.sh"
CLIENTS=${1:-900}; RATE=${2:-500}; SECS=${3:-20}
shift $(( $# < 3 ? $# : 3 )); [[ "${1:-}" == "--" ]] && shift
PORT=${PORT:-4401}
need_tool python3 python3
build
profiler_setup mixed
start_sim "$RATE"
start_server "$PORT" "$@"
sleep 1
per=$(( CLIENTS / 3 ))
LCS=()
for s in / /full-stream /domains-only; do
    k=$(case $s in /) echo lite;; /full-stream) echo full;; *) echo domains;; esac)
    "$BIN/loadclient" --addr "127.0.0.1:$PORT" --path "$s" --clients "$per" --warmup 4 \
        --duration "$SECS" --server-pid "$SERVER_PID" >"$RUN/mixed-$k.json" 2>"$RUN/mixed-$k.client.log" &
    LCS+=($!)
done
if [[ -n "${FLAME:-}" ]]; then
    for _ in $(seq 1200); do [[ $(cat "$RUN"/mixed-*.client.log 2>/dev/null | grep -c "clients connected") -ge 3 ]] && break; sleep 0.25; done
    sleep 5
    profile_window mixed "$SERVER_PID" "$(( SECS > 12 ? 10 : SECS - 2 ))" || true
fi
for p in "${LCS[@]}"; do wait "$p"; done
{
    echo "command: perf/mixed.sh $CLIENTS $RATE $SECS $*"
    versions
    python3 - "$RATE" "$RUN"/mixed-lite.json "$RUN"/mixed-full.json "$RUN"/mixed-domains.json <<'PY'
import json, sys
rate = float(sys.argv[1])
tot_b = 0; cpu = None
print(f"{'stream':<8} {'clients':>7} {'delivered':>10} {'MB/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
for f in sys.argv[2:]:
    d = json.load(open(f)); k = f.rsplit('-', 1)[1][:-5]
    offered = rate * d["connected"]
    print(f'{k:<8} {d["connected"]:>7} {100*d["certificate_frames_per_second"]/offered:>9.1f}% {d["bytes_per_second"]/1e6:>9.1f} {d["latency_p50_ms"] or "-":>8} {d["latency_p99_ms"] or "-":>8}')
    tot_b += d["bytes"]; cpu = d["server_cpu_seconds"]
print(f"server CPU-seconds per GB (all streams): {cpu/(tot_b/1e9):.3f}")
PY
} | tee "$RUN/mixed.txt"
