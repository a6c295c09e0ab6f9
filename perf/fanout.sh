#!/usr/bin/env bash
# Fanout benchmark as ../shared/spec/BENCHMARK.md defines it: the simulator serving real
# corpus entries at RATE certificates/s → the service → CLIENTS websocket clients on STREAM,
# then iperf3 on loopback in the same run as the limit. Prints the figures and the ratios and
# writes them, with the command and versions, into perf/runs/<date>-<host>/.
#
# usage: perf/fanout.sh [CLIENTS=1000] [RATE=500] [STREAM=/] [SECONDS=20] [-- server args]
# FEED=realistic: the public feed's shape instead of one log (start_realistic_sim in lib.sh);
# the delivered share is then counted against what the service published in the window.
source "$(dirname "$0")/lib.sh"
CLIENTS=${1:-1000}; RATE=${2:-500}; STREAM=${3:-/}; SECS=${4:-20}
shift $(( $# < 4 ? $# : 4 )); [[ "${1:-}" == "--" ]] && shift
PORT=${PORT:-4400}
case "$STREAM" in /full-stream*) KIND=full ;; /domains-only*) KIND=domains ;; *) KIND=lite ;; esac
NAME=fanout-$CLIENTS-$KIND${FEED:+-$FEED}${POLL:+-poll$POLL}${NAME_SUFFIX:-}
need_tool python3 python3
build
[[ "${FLAME:-}" == 1 ]] && FLAME=$NAME
profiler_setup "${FLAME:-$NAME}"
if [[ "${FEED:-}" == realistic ]]; then start_realistic_sim "$RATE"; else start_sim "$RATE"; fi
start_server "$PORT" "$@"
sleep 1
echo "connecting $CLIENTS clients to $STREAM, measuring ${SECS}s..." >&2
# CLIENT_CPUS pins the load client (taskset -c), as SERVER_CPUS pins the service.
${CLIENT_CPUS:+taskset -c "$CLIENT_CPUS"} "$BIN/loadclient" --addr "127.0.0.1:$PORT" --path "$STREAM" --clients "$CLIENTS" --warmup 3 \
    --duration "$SECS" --server-pid "$SERVER_PID" --threads "${LC_THREADS:-1}" \
    >"$RUN/$NAME.json" 2> >(tee "$RUN/$NAME.client.log" >&2) &
LOADCLIENT=$!
# What the service published during the measured window (the load client measures from its
# warm-up's end): for a bursty feed, the offered stream is what was published, not the rate.
(
    for _ in $(seq 1200); do grep -q "clients connected" "$RUN/$NAME.client.log" 2>/dev/null && break; sleep 0.25; done
    sleep 3
    metric "$PORT" certstream_certificates_processed_total >"$RUN/$NAME-published0"
    sleep "$SECS"
    metric "$PORT" certstream_certificates_processed_total >"$RUN/$NAME-published1"
) &
PUBLISHED=$!
if [[ -n "${FLAME:-}" ]]; then
    # Profile the service inside the measured window (FLAME=1 names it after the run).
    for _ in $(seq 1200); do grep -q "clients connected" "$RUN/$NAME.client.log" 2>/dev/null && break; sleep 0.25; done
    sleep 4
    profile_window "$FLAME" "$SERVER_PID" "$(( SECS > 12 ? 10 : SECS - 2 ))" || true
fi
wait "$LOADCLIENT"
wait "$PUBLISHED" || true
http_get "$PORT" /stats >"$RUN/$NAME-stats.json" 2>/dev/null || true
cleanup; PIDS=()
echo "iperf3 on loopback (the limit)..." >&2
iperf3_limit
{
    echo "command: ${FEED:+FEED=$FEED }${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }${POLL:+POLL=$POLL }${SERVER_CPUS:+SERVER_CPUS=$SERVER_CPUS }${CLIENT_CPUS:+CLIENT_CPUS=$CLIENT_CPUS }perf/fanout.sh $CLIENTS $RATE $STREAM $SECS $*"
    echo "poll interval: ${POLL:-5 (the service default)} s${FEED:+; feed: $FEED}"
    versions
} >"$RUN/$NAME.txt"
python3 - "$RUN/$NAME.json" "$RUN/iperf3.json" "$RATE" "$CLIENTS" "$RUN/$NAME-stats.json" "$RUN/$NAME-published0" "$RUN/$NAME-published1" "$SECS" >>"$RUN/$NAME.txt" <<'PY'
import json, sys
lc = json.load(open(sys.argv[1]))
try:
    published = (float(open(sys.argv[7]).read()) - float(open(sys.argv[6]).read())) / float(sys.argv[8])
except Exception:
    published = float("nan")
try:
    st = json.load(open(sys.argv[5]))
    d = st["dropped"]
    lag = f'{d["client_lag"]:,} frames skipped by clients behind the stream log' if "client_lag" in d else f'{d["client_queues"]:,} frames dropped from client queues'
    drops = f'{d["core_rings"]:,} certificates at core rings, {lag}, {st["slow_clients_closed"]} slow clients closed (whole run)'
except Exception as e:
    drops = f"unknown ({e})"
rate, clients = float(sys.argv[3]), int(sys.argv[4])
def iperf(path):
    """(sender CPU-s/GB from host_total, from the process's user+sys, receiver CPU-s/GB, bytes/s)"""
    end = json.load(open(path))["end"]; secs = end["sum_sent"]["seconds"]; b = end["sum_sent"]["bytes"]
    cpu = end["cpu_utilization_percent"]
    try:
        u, s_ = open(path.replace(".json", ".cpu")).read().split()
        proc = (float(u) + float(s_)) / (b / 1e9)
    except Exception:
        proc = float("nan")
    return (cpu["host_total"] / 100 * secs / (b / 1e9), proc,
            cpu["remote_total"] / 100 * secs / (b / 1e9), b / secs)
iperf_cpu_gb, iperf_proc_gb, iperf_recv_gb, iperf_bps = iperf(sys.argv[2])
placements = {}
for name in ("split", "shared"):
    try:
        placements[name] = iperf(sys.argv[2].replace("iperf3.json", f"iperf3-{name}.json"))
    except Exception:
        pass
offered = rate * clients
delivered = lc["certificate_frames_per_second"] / offered
gb = lc["bytes"] / 1e9
cpu_gb = lc["server_cpu_seconds"] / gb if gb else float("nan")
client_gb = (lc.get("client_cpu_seconds") or float("nan")) / gb if gb else float("nan")
rows = [
    ("clients connected", f'{lc["connected"]} of {clients}'),
    ("offered messages/s", f"{offered:,.0f}"),
    ("delivered messages/s", f'{lc["certificate_frames_per_second"]:,.0f} ({100*delivered:.1f} % of offered)'),
    ("published in the window, certificates/s", f"{published:,.1f} (delivered = {100*lc['certificate_frames_per_second']/(published*clients):.1f} % of published x clients)" if published == published and published > 0 else "unknown"),
    ("delivered MB/s", f'{lc["bytes_per_second"]/1e6:,.1f}'),
    ("latency p50 / p99 / max (ms)", f'{lc["latency_p50_ms"]} / {lc["latency_p99_ms"]} / {lc["latency_max_ms"]}'),
    ("server CPU-seconds per GB", f"{cpu_gb:.3f}"),
    ("iperf3 sender CPU-seconds per GB", f"{iperf_cpu_gb:.3f} (host_total; at {iperf_bps/1e9:.2f} GB/s)"),
    ("  same, from the process's user+sys time", f"{iperf_proc_gb:.3f}"),
    ("ratio server/iperf3 CPU per GB", f"{cpu_gb/iperf_cpu_gb:.2f} (host_total) / {cpu_gb/iperf_proc_gb:.2f} (process time)"),
    ("ratio delivered bytes/s / iperf3 bytes/s", f'{lc["bytes_per_second"]/iperf_bps:.3f}'),
    ("load client CPU-seconds per GB (receivers)", f"{client_gb:.3f}"),
    ("iperf3 receiver CPU-seconds per GB", f"{iperf_recv_gb:.3f}"),
]
labels = {"split": "iperf3 on two cores (client CPU 0, server CPU 1)",
          "shared": "iperf3 on one core (both on CPU 0)"}
for name, (h, p, r, bps) in placements.items():
    rows += [
        (labels[name], f"sender {h:.3f} (process time {p:.3f}), receiver {r:.3f} CPU-s/GB at {bps/1e9:.2f} GB/s"),
        ("  ratio server/iperf3 sender CPU per GB", f"{cpu_gb/h:.2f}"),
        ("  ratio (server + clients)/(sender + receiver)", f"{(cpu_gb + client_gb)/(h + r):.2f}"),
    ]
rows += [
    ("server RSS idle → start → end (KiB)", f'{lc["server_rss_kib_idle"]} → {lc["server_rss_kib_start"]} → {lc["server_rss_kib_end"]}'),
    ("RSS per connection (KiB)", f'{(lc["server_rss_kib_end"]-lc["server_rss_kib_idle"])/max(1,lc["connected"]):.1f}'),
    ("client disconnects", lc["disconnects"]),
    ("server drops", drops),
]
for k, v in rows:
    print(f"{k:<44} {v}")
PY
cat "$RUN/$NAME.txt"
