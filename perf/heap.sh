#!/usr/bin/env bash
# Heap profile of stalled connections: perf/stalled.sh's load (the stream logs filled first,
# then CLIENTS websocket clients that never read) against the service built with the system
# allocator (`--features system-alloc`: heaptrack hooks malloc, and mimalloc is not malloc),
# run under heaptrack. Prints the allocation sites live at the heap's peak, largest first, and
# for those on a connection's path (accept, routing, the connection) the bytes per client. The RSS figures of this
# run are heaptrack's, not the service's: measure those with perf/stalled.sh.
#
# usage: perf/heap.sh [CLIENTS=10000] [RATE=500] [SECONDS=20] [INITIAL=40000]
source "$(dirname "$0")/lib.sh"
CLIENTS=${1:-10000}; RATE=${2:-500}; SECS=${3:-20}; INITIAL=${4:-40000}
need_tool heaptrack heaptrack
NAME=heap-$CLIENTS
if [[ -z "${SKIP_BUILD:-}" ]]; then
    echo "building the service with the system allocator ($PROFILE profile)..." >&2
    cargo build --locked --profile "$PROFILE" -p certstream-server --features system-alloc --bin certstream-server 2>&1 | tail -1 >&2
    cp "$BIN/certstream-server" "$RUN/$NAME-server"
    build # the usual binaries again
fi
OUT=$RUN/$NAME
rm -f "$OUT".zst
SERVER_BIN=$RUN/$NAME-server SERVER_WRAP="heaptrack -o $OUT" SKIP_BUILD=1 NAME_SUFFIX=-heaptrack \
    "$(dirname "$0")/stalled.sh" "$CLIENTS" "$RATE" "$SECS" "$INITIAL" >&2
rm -f "$RUN/$NAME-server"
heaptrack_print --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
    --merge-backtraces 0 -n 60 -s 40 "$OUT".zst >"$OUT-peaks.txt" 2>/dev/null
{
    echo "command: perf/heap.sh $CLIENTS $RATE $SECS $INITIAL"
    versions
    python3 - "$OUT-peaks.txt" "$CLIENTS" <<'PY'
import re, sys
text, clients = open(sys.argv[1]).read(), int(sys.argv[2])
unit = {"B": 1, "": 1, "K": 1e3, "M": 1e6, "G": 1e9}
entries = re.split(r"\n(?=\S[^\n]* peak memory consumed over )", text.split("PEAK MEMORY CONSUMERS", 1)[1])
rows = []
for e in entries:
    m = re.match(r"\s*([\d.]+)([KMGB]?) peak memory consumed over (\d+) calls", e)
    if not m:
        continue
    size, calls = float(m[1]) * unit[m[2]], int(m[3])
    frames = re.findall(r"\n\s+at (\S+)", e)
    def first(pred):
        return next((f for f in frames if pred(f)), "?")
    ours = first(lambda f: f.startswith(("server/", "engine/", "sim/")))
    lib = first(lambda f: "/rustc/" not in f and "/alloc/" not in f)
    lib = re.sub(r".*/registry/src/[^/]+/", "", lib)
    # On a connection's path, not the core's stream log (whose tick runs on the same task).
    conn = any(f.startswith(("server/src/router.rs", "server/src/conn.rs", "server/src/sse.rs",
                             "server/src/core.rs")) for f in frames) and not any(
        f.startswith(("server/src/stream_log.rs", "server/src/fanout.rs")) for f in frames)
    rows.append((size, calls, ours, lib, conn))
print(f"allocation sites live at the heap's peak ({clients:,} stalled clients), largest first")
print(f"{'bytes':>12} {'calls':>8} {'per client':>11}  site (ours; first frame outside std)")
per_conn = 0.0
for size, calls, ours, lib, conn in rows[:40]:
    per = size / clients if conn else None
    per_conn += per or 0
    print(f"{size:>12,.0f} {calls:>8,} {'' if per is None else f'{per:,.0f} B':>11}  {ours}; {lib}")
print(f"sum over the connection's sites: {per_conn:,.0f} B per client (allocated; what is touched and the allocator's rounding decide RSS)")
PY
} >"$OUT.txt"
cat "$OUT.txt"
