#!/usr/bin/env bash
# Restarts: the simulator serves 3 RFC 6962 logs and 1 static-ct-api log at RATE
# certificates/s in all; the service streams them with a positions file; a checker client on
# /full-stream runs throughout. RESTARTS times, every 5 to 10 s, the service is stopped,
# alternately with SIGTERM (a clean shutdown: positions saved, clients closed with 1001) and
# SIGKILL (a crash), and started again at once on the same positions file. At the end the
# simulator is frozen and the checker waits for every log's tree size. Each restart's
# duplicates and gaps come from the checker's per-connection counts; a SIGKILL's duplicates
# are also given in seconds of stream (duplicates ÷ the rate), to compare with the save
# interval. Results go into perf/runs/<date>-<host>/.
#
# usage: nice -n 10 perf/restarts.sh [RESTARTS=20] [RATE=2000] [SAVE_INTERVAL=2] [-- server args]
# (SIGNALS="KILL" or any cycle of signal names overrides "TERM KILL"; EVERY="1 2" overrides
# the 5 to 10 s between restarts; CHECKER_ARGS="--reconnect-min-ms 1000" makes the checker
# wait before reconnecting, as real clients do)
source "$(dirname "$0")/lib.sh"
RESTARTS=${1:-20}; RATE=${2:-2000}; SAVE=${3:-2}
shift $(( $# < 3 ? $# : 3 )); [[ "${1:-}" == "--" ]] && shift
PORT=${PORT:-4420}
NAME=restarts-$RESTARTS-$RATE
PER_LOG=$(python3 -c "print($RATE / 4)")
build

POSITIONS=$RUN/$NAME-positions.json
rm -f "$POSITIONS"
sim_up --source "$CORPUS/get-entries" --logs 3 --static-ct 1 --initial-size 0 --rate 0 --control \
    --batch-cap 256 --batch-cap 100 --batch-cap 1000 --batch-cap 256
echo "simulator: $LOG_LIST (4 logs, $PER_LOG certificates/s each once started)" >&2
SERVER_LOG=$RUN/$NAME-server.log
: >"$SERVER_LOG"
# After each restart the service catches up on what it missed (downtime and --resume-delay);
# the checker's queue is deeper than the default 2048 frames for that (see perf/soak.sh).
SERVER_ARGS=(--start 0 --positions "$POSITIONS" --save-interval "$SAVE" --poll-interval 0.25 --operator-rate 100 "$@")
server_up "$PORT" "${SERVER_ARGS[@]}"
# shellcheck disable=SC2086
start_checker "$PORT" /full-stream "$RUN/$NAME.json" "$RUN/$NAME-progress.log" ${CHECKER_ARGS:-}
wait_for_a_client "$PORT" || exit 1
sim_control "rate=$PER_LOG"
echo "streaming; $RESTARTS restarts; progress: $RUN/$NAME-progress.log" >&2

EVENTS=$RUN/$NAME-events.txt
: >"$EVENTS"
for i in $(seq "$RESTARTS"); do
    read -r lo hi <<<"${EVERY:-5 10}"
    sleep "$(python3 -c "import random; print(round(random.uniform($lo, $hi), 2))")"
    read -r -a CYCLE <<<"${SIGNALS:-TERM KILL}"
    SIG=${CYCLE[(i - 1) % ${#CYCLE[@]}]}
    t_signal=$(date +%s.%N)
    kill -"$SIG" "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    t_exit=$(date +%s.%N)
    server_up "$PORT" "${SERVER_ARGS[@]}"
    echo "$i $SIG $t_signal $t_exit $(date +%s.%N)" >>"$EVENTS"
    echo "restart $i: SIG$SIG, down $(python3 -c "print(round($t_exit - $t_signal, 2))") s" >&2
done
sleep 10

echo "freezing the simulator; the checker waits for every log to reach its tree size" >&2
sim_control rate=0
curl -s "${SIM_URL}control" >"$RUN/$NAME-sim.json"
kill -INT "$CHECKER"
wait "$CHECKER" || true
{
    echo "command: perf/restarts.sh $RESTARTS $RATE $SAVE $*"
    echo "simulator: ctlog-sim --source \$CORPUS/get-entries --logs 3 --static-ct 1 --initial-size 0 --control, $PER_LOG/s per log, no faults"
    echo "service: certstream-server ${SERVER_ARGS[*]}"
    echo "restarts: every ${EVERY:-5 10} s (uniform), signals in turn: ${SIGNALS:-TERM KILL}; started again at once"
    echo "checker: checker --path /full-stream --expect-start 0 --sim $SIM_URL ${CHECKER_ARGS:-}"
    versions
} >"$RUN/$NAME.txt"
python3 - "$RUN/$NAME.json" "$EVENTS" "$RATE" "$SAVE" >>"$RUN/$NAME.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); rate = float(sys.argv[3]); save = float(sys.argv[4])
events = [l.split() for l in open(sys.argv[2]) if l.strip()]
events = [(int(n), sig, float(ts), float(te), float(tu)) for n, sig, ts, te, tu in events]
conns = r["by_connection"]
print(f'{"#":>3} {"signal":<8} {"down s":>7} {"duplicates":>10} {"dup s":>6} {"gaps":>5} {"reordered":>9}  old connection ended')
per = {"TERM": [], "KILL": []}
for k, (n, sig, ts, te, tu) in enumerate(events):
    nxt = events[k + 1][2] if k + 1 < len(events) else float("inf")
    after = [c for c in conns if ts <= c["started"] < nxt]
    before = [c for c in conns if c["started"] < ts]
    dups = sum(c["duplicates"] for c in after)
    gaps = sum(c["gap_entries"] for c in after)
    reord = sum(c["reordered"] for c in after)
    end = before[-1]["end"] if before else "?"
    per[sig].append((dups, gaps, reord))
    print(f"{n:>3} SIG{sig:<5} {tu - ts:>7.2f} {dups:>10} {dups / rate:>6.2f} {gaps:>5} {reord:>9}  {end}")
print()
for sig, rows in per.items():
    if not rows: continue
    d = [x[0] for x in rows]; g = [x[1] for x in rows]
    print(f"SIG{sig}: {len(rows)} restarts; duplicates total {sum(d)}, max {max(d)} ({max(d) / rate:.2f} s of stream at {rate:g}/s; save interval {save:g} s); gaps total {sum(g)}")
print(f'whole run: {r["messages"]:,} certificates, gaps {r["gaps"]}, duplicates {r["duplicates"]}, reordered {r["reordered"]}, caught up {r["caught_up"]}, connections {r["connections"]}')
lat = r["latency_ms"]
print(f'latency receipt - seen p50 / p99 / max (ms): {lat["p50"]} / {lat["p99"]} / {lat["max"]}; server drops: client {r["server"]["client_dropped"]} ring {r["server"]["ring_dropped"]}')
PY
cat "$RUN/$NAME.txt"
