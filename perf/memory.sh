#!/usr/bin/env bash
# Memory under churn: the simulator at RATE certificates/s (real corpus entries, batches of
# 256) → the service → CLIENTS websocket client slots (loadclient --churn) that connect to
# the lite or the domains-only stream at random, stay 1 to 30 s, leave (half with a close
# frame, half by dropping the connection), pause up to 2 s and connect again, for MINUTES.
# The service's RSS and client count are sampled every second into a CSV, rendered as an
# SVG (perf/plot_rss.py), with the least-squares slope of RSS from WARMUP seconds into the
# churn to its end (the clients all leave then; the last samples show what RSS returns to).
# Results go into perf/runs/<date>-<host>/.
#
# usage: nice -n 10 perf/memory.sh [MINUTES=10] [RATE=500] [CLIENTS=2000] [WARMUP=120] [-- server args]
source "$(dirname "$0")/lib.sh"
MINUTES=${1:-10}; RATE=${2:-500}; CLIENTS=${3:-2000}; WARMUP=${4:-120}
shift $(( $# < 4 ? $# : 4 )); [[ "${1:-}" == "--" ]] && shift
PORT=${PORT:-4430}
NAME=memory-${MINUTES}m-$CLIENTS
SECS=$(python3 -c "print(round($MINUTES * 60))")
PATHS=${PATHS:-/,/domains-only}
need_tool python3 python3
build
start_sim "$RATE"
start_server "$PORT" "$@"
sleep 1

# RSS (KiB), connected clients and frames dropped, once a second.
CSV=$RUN/$NAME-rss.csv
echo "seconds,rss_kib,clients,client_dropped,slow_closed" >"$CSV"
usec() { local t=${EPOCHREALTIME/./}; echo $((10#$t)); }
T0=$(usec)
(
    next=$T0
    while kill -0 "$SERVER_PID" 2>/dev/null; do
        now=$(usec)
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo "")
        m=$(http_get "$PORT" /metrics 2>/dev/null || true)
        awk -v t="$(( (now - T0) / 10000 ))" -v rss="$rss" '
            $1 ~ /^certstream_clients\{/ { c += $2 }
            $1 == "certstream_client_dropped_total" { d = $2 }
            $1 == "certstream_slow_clients_closed_total" { s = $2 }
            END { printf "%.2f,%s,%d,%d,%d\n", t / 100, rss, c, d, s }' <<<"$m"
        next=$((next + 1000000))
        wait_us=$((next - $(usec)))
        (( wait_us > 0 )) && sleep "$((wait_us / 1000000)).$(printf %06d $((wait_us % 1000000)))"
    done
) >>"$CSV" &
SAMPLER=$!
PIDS+=("$SAMPLER")

echo "churning $CLIENTS client slots on $PATHS for $MINUTES min; RSS: $CSV" >&2
CHURN_START=$(( ($(usec) - T0) / 1000000 ))
"$BIN/loadclient" --churn --addr "127.0.0.1:$PORT" --clients "$CLIENTS" --paths "$PATHS" \
    --duration "$SECS" --stay-min 1 --stay-max 30 --pause-max 2 --threads "${LC_THREADS:-1}" \
    >"$RUN/$NAME-churn.json" 2>"$RUN/$NAME-churn.log"
sleep 5
http_get "$PORT" /metrics >"$RUN/$NAME-metrics.txt"
kill "$SAMPLER" 2>/dev/null || true
{
    echo "command: perf/memory.sh $MINUTES $RATE $CLIENTS $WARMUP $*"
    echo "simulator: ctlog-sim --source \$CORPUS/get-entries --rate $RATE --batch-cap 256 --initial-size 0"
    echo "service: certstream-server --start 0 --no-positions ${POLL:+--poll-interval $POLL }$* (poll interval ${POLL:-5, the default} s)"
    echo "clients: loadclient --churn --clients $CLIENTS --paths $PATHS --stay-min 1 --stay-max 30 --pause-max 2"
    versions
    echo "churn: $(cat "$RUN/$NAME-churn.json")"
    echo "rss: $(python3 perf/plot_rss.py "$CSV" "$RUN/$NAME-rss.svg" --warmup "$((CHURN_START + WARMUP))" \
        --until "$((CHURN_START + SECS))" \
        --title "certstream-server RSS: $CLIENTS churning clients, $RATE certificates/s")"
} >"$RUN/$NAME.txt"
python3 - "$RUN/$NAME.txt" "$RUN/$NAME-metrics.txt" >>"$RUN/$NAME.txt" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
churn = json.loads(next(l for l in lines if l.startswith("churn: "))[7:])
rss = json.loads(next(l for l in lines if l.startswith("rss: "))[5:])
m = {}
for line in open(sys.argv[2]):
    if line.startswith("#") or " " not in line: continue
    k, v = line.rsplit(" ", 1); k = k.split("{")[0]; m[k] = m.get(k, 0) + float(v)
rows = [
    ("connections made / failed", f'{churn["connects"]:,} / {churn["connect_failures"]}'),
    ("left with a close frame / dropped / closed by the server", f'{churn["clean_leaves"]:,} / {churn["abrupt_leaves"]:,} / {churn["server_closes"]:,}'),
    ("connected clients mean / max", f'{rss["clients_mean"]} / {rss["clients_max"]}'),
    ("messages received", f'{churn["messages"]:,} ({churn["bytes"] / churn["seconds"] / 1e6:,.1f} MB/s)'),
    ("RSS MiB: idle / after warm-up / end of churn / clients gone", f'{rss["rss_mib_at_start"]} / {rss["rss_mib_after_warmup"]} / {rss["rss_mib_end_of_window"]} / {rss["rss_mib_end"]}'),
    ("RSS MiB from warm-up to the end of churn: min / max", f'{rss["rss_mib_min_after_warmup"]} / {rss["rss_mib_max_after_warmup"]}'),
    ("RSS slope from warm-up to the end of churn (MiB/hour)", rss["slope_mib_per_hour_after_warmup"]),
    ("server: frames dropped (client queues / rings)", f'{m.get("certstream_client_dropped_total", 0):,.0f} / {m.get("certstream_ring_dropped_total", 0):,.0f}'),
    ("server: slow clients closed (1008)", f'{m.get("certstream_slow_clients_closed_total", 0):,.0f}'),
    ("server: connections accepted", f'{m.get("certstream_connections_accepted_total", 0):,.0f}'),
]
for k, v in rows:
    print(f"{k:<58} {v}")
PY
cat "$RUN/$NAME.txt"
echo "plot: $RUN/$NAME-rss.svg" >&2
