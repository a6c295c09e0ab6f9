#!/usr/bin/env bash
# Seeds (seed.sh), builds and runs every fuzz target, or the ones named, for a bounded time:
#
#   fuzz/run.sh [SECONDS_PER_TARGET [TARGET...]]     # default 60 s each, all targets
#   FUZZ_RUNS=10000000 fuzz/run.sh 0 leaf            # a number of executions instead (0 s:
#                                                    # no time limit)
#
# CI: `fuzz/run.sh 10`. Installs cargo-fuzz when it is missing (`cargo install cargo-fuzz
# --locked`); the stable toolchain takes libFuzzer's nightly flags with RUSTC_BOOTSTRAP=1.
# FUZZ_SANITIZER=none builds without AddressSanitizer, into fuzz/target/none (several times
# the executions per second where the code under test has no unsafe code of its own).
# Builds into fuzz/target; findings go to fuzz/artifacts/<target>/, logs to
# fuzz/artifacts/logs/. Exits non-zero if any target found a crash, hang or OOM.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# A relative CERTSTREAM_CORPUS is relative to where run.sh was started.
if [ -n "${CERTSTREAM_CORPUS:-}" ] && [ -d "$CERTSTREAM_CORPUS" ]; then
  CERTSTREAM_CORPUS="$(cd "$CERTSTREAM_CORPUS" && pwd)"
  export CERTSTREAM_CORPUS
fi
cd "$here"
secs="${1:-60}"
shift || true
all=(leaf cert_json get_entries tile checkpoint http_request ws_client_frames ws_deflate_frames)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
sanitizer="${FUZZ_SANITIZER:-address}"
target_dir=target
[ "$sanitizer" = address ] || target_dir="target/$sanitizer"
limits=(-max_total_time="$secs")
[ -z "${FUZZ_RUNS:-}" ] || limits+=(-runs="$FUZZ_RUNS")
export RUSTC_BOOTSTRAP=1
unset CARGO_TARGET_DIR # always fuzz/target, never the workspace's target/
mkdir -p artifacts/logs

t0=$(date +%s)
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked >artifacts/logs/install.log 2>&1 \
    || { tail -20 artifacts/logs/install.log; exit 1; }
fi
./seed.sh || exit 1
if ! nice -n 19 cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir" \
  >artifacts/logs/build.log 2>&1; then
  tail -40 artifacts/logs/build.log
  exit 1
fi
echo "seed + build: $(($(date +%s) - t0)) s (sanitizer: $sanitizer)"

failed=0
printf '%-18s %12s %8s %6s %7s %s\n' target executions exec/s wall_s rss_mb result
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t"
  log="artifacts/logs/$t.log"
  t1=$(date +%s)
  nice -n 19 "$target_dir/x86_64-unknown-linux-gnu/release/$t" "corpus/$t" \
    -artifact_prefix="artifacts/$t/" "${limits[@]}" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  if [ $rc -eq 0 ]; then result=ok; else result="FAILED (rc $rc, see $log)"; failed=1; fi
  printf '%-18s %12s %8s %6s %7s %s\n' "$t" "${execs:-?}" "${rate:-?}" "$(($(date +%s) - t1))" \
    "${rss:-?}" "$result"
  [ $rc -eq 0 ] || grep -E 'ERROR|panicked|Test unit written' "$log" | head -5
done
echo "total: $(($(date +%s) - t0)) s"
exit $failed
