#!/usr/bin/env bash
# Filter matching cost against the number of filtered clients (issue 11). The simulator makes
# certificates for 2×BIG names (ctlog-sim --names; every tenth with a wildcard) at RATE
# certificates/s, and the service runs at its defaults (5 s poll interval, 5 ms coalescing).
# Three runs side by side, in one invocation, with a fresh simulator and service each:
#   small:   100 clients on `/`, each with its own domain= filter (spread over the names);
#   domains: BIG clients, each with its own domain= filter (half the names are asked for);
#   big:     the same BIG clients plus REGEXES clients each with its own match= regex.
# For the same measured window in each run it samples the service's CPU time
# (/proc/PID/stat) and its counters (/metrics): server CPU per certificate (µs), their ratio
# (the issue asks big/small ≤ 1.5), matching time per certificate per core (the service's
# own nanosecond counter) and the share of certificates that matched a filter.
# Results, the command and the commit measured go into perf/runs/<date>-<host>/.
#
# usage: nice -n 10 perf/filters.sh [RATE=500] [SECONDS=30] [BIG=10000] [REGEXES=100] [-- server args]
source "$(dirname "$0")/lib.sh"
RATE=${1:-500}; SECS=${2:-30}; BIG=${3:-10000}; REGEXES=${4:-100}
shift $(( $# < 4 ? $# : 4 )); [[ "${1:-}" == "--" ]] && shift
PORT=${PORT:-4917}
NAME=filters-$BIG
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
need_tool python3 python3
build
NAMES=$RUN/$NAME-names.txt
python3 - "$NAMES" "$RUN/$NAME-queries-small.txt" "$RUN/$NAME-queries-big.txt" "$BIG" "$REGEXES" "$RUN/$NAME-queries-domains.txt" <<'PY'
import sys
names, small, big_file, big, regexes, domains_file = sys.argv[1:4] + [int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]]
with open(names, "w") as f:
    for i in range(2 * big):
        other = f"*.host-{i}.bench.example" if i % 10 == 0 else f"www.host-{i}.bench.example"
        f.write(f"host-{i}.bench.example,{other}\n")
# Client i asks for host-2i (its wildcard certificates match www.host-2i for i % 5 == 0).
domain = [
    f"domain=www.host-{2*i}.bench.example" if i % 5 == 0 else f"domain=host-{2*i}.bench.example"
    for i in range(big)
]
regex = [f"match=%5Ehost-{i}7%5B0-9%5D%2A%5C." for i in range(regexes)]  # ^host-<i>7[0-9]*\.
open(small, "w").write("\n".join(domain[:: max(1, big // 100)][:100]) + "\n")
open(domains_file, "w").write("\n".join(domain) + "\n")
open(big_file, "w").write("\n".join(domain + regex) + "\n")
PY
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run LABEL QUERIES CLIENTS: one measured run; appends a JSON line to $RUN/$NAME.jsonl.
run() {
    local label=$1 queries=$2 clients=$3
    shift 3
    sim_up --names "$NAMES" --rate "$RATE" --batch-cap 256 --initial-size 0
    # The service listens with SO_REUSEPORT: another process on the port would take a share
    # of the clients and answer some of the samples.
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "port $PORT is in use: set PORT=" >&2; exit 1
    fi
    start_server "$PORT" "$@"
    "$BIN/loadclient" --addr "127.0.0.1:$PORT" --path / --queries "$queries" --clients "$clients" \
        --warmup 3 --duration $((SECS + 30)) --server-pid "$SERVER_PID" \
        >"$RUN/$NAME-$label.json" 2>"$RUN/$NAME-$label.client.log" &
    local lc=$!
    PIDS+=("$lc")
    for _ in $(seq 1200); do grep -q "clients connected" "$RUN/$NAME-$label.client.log" 2>/dev/null && break; sleep 0.25; done
    grep "clients connected" "$RUN/$NAME-$label.client.log" >&2 || { echo "$label: clients did not connect" >&2; exit 1; }
    sleep 6 # more than a poll interval: every core's matcher holds every filter
    local c0 p0 e0 m0 n0 c1 p1 e1 m1 n1 fc pat
    c0=$(cpu_ticks "$SERVER_PID"); p0=$(metric "$PORT" certstream_certificates_processed_total)
    e0=$(metric "$PORT" certstream_filter_evaluated_total); m0=$(metric "$PORT" certstream_filter_matched_total)
    n0=$(metric "$PORT" certstream_filter_match_nanoseconds_total)
    sleep "$SECS"
    c1=$(cpu_ticks "$SERVER_PID"); p1=$(metric "$PORT" certstream_certificates_processed_total)
    e1=$(metric "$PORT" certstream_filter_evaluated_total); m1=$(metric "$PORT" certstream_filter_matched_total)
    n1=$(metric "$PORT" certstream_filter_match_nanoseconds_total)
    fc=$(metric "$PORT" certstream_filtered_clients); pat=$(metric "$PORT" certstream_filter_patterns)
    http_get "$PORT" /stats >"$RUN/$NAME-$label-stats.json" 2>/dev/null || true
    if [[ "$fc" != "$clients" ]]; then
        echo "$label: the service counts $fc filtered clients, not $clients: another process on port $PORT?" >&2; exit 1
    fi
    echo "{\"label\":\"$label\",\"clients\":$clients,\"filtered_clients\":$fc,\"patterns\":$pat,\"cpu_ticks\":$((c1 - c0)),\"tick\":$TICK,\"processed\":$((p1 - p0)),\"evaluated\":$((e1 - e0)),\"matched\":$((m1 - m0)),\"match_ns\":$((n1 - n0)),\"seconds\":$SECS}" >>"$RUN/$NAME.jsonl"
    kill "$lc" "$SERVER_PID" "$SIM_PID" 2>/dev/null || true
    wait "$lc" "$SERVER_PID" "$SIM_PID" 2>/dev/null || true
    PIDS=()
}
: >"$RUN/$NAME.jsonl"
run small "$RUN/$NAME-queries-small.txt" 100 "$@"
run domains "$RUN/$NAME-queries-domains.txt" "$BIG" "$@"
run big "$RUN/$NAME-queries-big.txt" $((BIG + REGEXES)) "$@"
{
    echo "command: ${POLL:+POLL=$POLL }perf/filters.sh $RATE $SECS $BIG $REGEXES $*"
    echo "poll interval: ${POLL:-5 (the service default)} s; other service settings: defaults"
    versions
} >"$RUN/$NAME.txt"
python3 - "$RUN/$NAME.jsonl" >>"$RUN/$NAME.txt" <<'PY'
import json, sys
runs = {r["label"]: r for r in map(json.loads, open(sys.argv[1]))}
def row(r):
    cpu = r["cpu_ticks"] / r["tick"]
    return {
        "clients": f'{r["clients"]:,} ({r["filtered_clients"]:,} filtered, {r["patterns"]:,} patterns in the cores\' matchers)',
        "certificates in the window": f'{r["processed"]:,} in {r["seconds"]} s',
        "server CPU-seconds in the window": f"{cpu:.2f}",
        "server CPU per certificate (µs)": f'{1e6 * cpu / max(1, r["processed"]):.1f}',
        "matching per certificate per core (µs)": f'{r["match_ns"] / max(1, r["evaluated"]) / 1000:.2f}',
        "certificates matched at a core": f'{100 * r["matched"] / max(1, r["evaluated"]):.1f} % of (certificate, core) evaluations',
    }
s, d, b = runs["small"], runs["domains"], runs["big"]
for label, r in zip(("small: 100 domain filters", f"domains: {d['clients']:,} domain filters", f"big: {b['clients']:,} (domain + regex)"), (s, d, b)):
    print(f"== {label}")
    for k, v in row(r).items():
        print(f"  {k:<40} {v}")
per = lambda r: r["cpu_ticks"] / r["tick"] / max(1, r["processed"])
mps = lambda r: r["match_ns"] / max(1, r["evaluated"])
print(f'ratio big/small, server CPU per certificate      {per(b) / per(s):.2f} (the issue asks ≤ 1.5)')
print(f'ratio domains/small, server CPU per certificate  {per(d) / per(s):.2f}')
print(f'ratio domains/small, matching per certificate    {mps(d) / max(1e-9, mps(s)):.2f}')
print(f'ratio big/small, matching per certificate        {mps(b) / max(1e-9, mps(s)):.2f}')
PY
cat "$RUN/$NAME.txt"
