#!/usr/bin/env bash
# tokio-uring for the positions file: saves it SAVES times (LOGS logs) through std::fs in
# spawn_blocking (what the engine does), through tokio-uring on a thread of its own (what
# adopting it would take), and through tokio-uring in place (its best case), with and without
# fsync; see perf/uring-positions/src/main.rs. The file goes into target/ (the work disk, not
# a tmpfs). Writes perf/runs/<date>-<host>/uring-positions.txt.
#
# usage: perf/uring-positions.sh [SAVES=1000] [LOGS=100]
source "$(dirname "$0")/lib.sh"
SAVES=${1:-1000}
LOGS=${2:-100}
if [[ -z "${SKIP_BUILD:-}" ]]; then
    echo "building perf/uring-positions (release)..." >&2
    (cd perf/uring-positions && cargo build --locked --release 2>&1 | tail -1 >&2)
fi
OUT=$RUN/uring-positions.txt
{
    echo "command: perf/uring-positions.sh $SAVES $LOGS"
    perf/uring-positions/target/release/uring-positions "${CARGO_TARGET_DIR:-target}/uring-positions" "$SAVES" "$LOGS"
    echo "tokio-uring: $(sed -n '/^name = "tokio-uring"/{n;s/version = //p}' perf/uring-positions/Cargo.lock | tr -d '"')"
    versions
} | tee "$OUT"
