#!/usr/bin/env bash
# permessage-deflate, side by side in one run: the simulator serving real corpus entries at
# RATE certificates/s → one service at its defaults (deflate on, as shipped) → CLIENTS lite
# clients without deflate, then CLIENTS offering permessage-deflate (the loadclient's
# `--deflate`: one client in 20 inflates every message, for its latency and as a check).
# Reports bytes on the wire per message, server CPU per delivered message and the delivered
# share of each, and their ratios; writes them, with the command and versions (the commit
# measured), into perf/runs/<date>-<host>/deflate-CLIENTS.txt.
#
# usage: perf/deflate.sh [CLIENTS=1000] [RATE=100] [SECONDS=20] [-- server args]
source "$(dirname "$0")/lib.sh"
CLIENTS=${1:-1000}; RATE=${2:-100}; SECS=${3:-20}
shift $(( $# < 3 ? $# : 3 )); [[ "${1:-}" == "--" ]] && shift
PORT=${PORT:-4410}
NAME=deflate-$CLIENTS
need_tool python3 python3
build
start_sim "$RATE"
start_server "$PORT" "$@"
sleep 1
for mode in plain deflate; do
    flag=(); [[ $mode == deflate ]] && flag=(--deflate)
    echo "$mode: $CLIENTS lite clients, measuring ${SECS}s..." >&2
    "$BIN/loadclient" --addr "127.0.0.1:$PORT" --path / --clients "$CLIENTS" --warmup 3 \
        --duration "$SECS" --server-pid "$SERVER_PID" "${flag[@]}" \
        >"$RUN/$NAME-$mode.json" 2> >(tee "$RUN/$NAME-$mode.client.log" >&2)
    sleep 2
done
http_get "$PORT" /metrics >"$RUN/$NAME-metrics.txt" 2>/dev/null || true
{
    echo "command: ${POLL:+POLL=$POLL }perf/deflate.sh $CLIENTS $RATE $SECS $*"
    echo "poll interval: ${POLL:-5 (the service default)} s; deflate: the default (on); both phases against the same service process"
    versions
} >"$RUN/$NAME.txt"
python3 - "$RUN/$NAME-plain.json" "$RUN/$NAME-deflate.json" "$RATE" "$CLIENTS" >>"$RUN/$NAME.txt" <<'PY'
import json, sys
plain, deflate = (json.load(open(p)) for p in sys.argv[1:3])
rate, clients = float(sys.argv[3]), int(sys.argv[4])
def figures(lc):
    certs = lc["certificate_frames"]
    return {
        "connected": lc["connected"],
        "bytes_per_message": lc["bytes"] / certs if certs else float("nan"),
        "cpu_us_per_message": 1e6 * lc["server_cpu_seconds"] / certs if certs else float("nan"),
        "delivered": lc["certificate_frames_per_second"] / (rate * clients),
        "latency": f'{lc["latency_p50_ms"]} / {lc["latency_p99_ms"]}',
        "mb_s": lc["bytes_per_second"] / 1e6,
    }
p, d = figures(plain), figures(deflate)
print(f"\n{clients} lite clients, {rate:.0f} certificates/s offered ({rate*clients:,.0f} messages/s)\n")
print(f'{"":34} {"plain":>14} {"deflate":>14} {"deflate/plain":>14}')
for key, label, fmt in [
    ("connected", "clients connected", "{:.0f}"),
    ("bytes_per_message", "bytes on the wire per message", "{:,.0f}"),
    ("cpu_us_per_message", "server CPU per delivered msg (µs)", "{:.2f}"),
    ("delivered", "delivered share", "{:.3f}"),
    ("mb_s", "delivered MB/s", "{:,.1f}"),
]:
    ratio = d[key] / p[key] if p[key] else float("nan")
    print(f"{label:34} {fmt.format(p[key]):>14} {fmt.format(d[key]):>14} {ratio:>14.3f}")
print(f'{"latency p50 / p99 (ms)":34} {p["latency"]:>14} {d["latency"]:>14}')
PY
cat "$RUN/$NAME.txt"
