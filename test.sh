#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy, and all tests.
# Installs what the tests need on a fresh Debian machine with only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")"

# The real-data corpus (../shared/corpus) when it is beside the checkout; tests that need it
# skip with a message otherwise.
if [[ -z "${CERTSTREAM_CORPUS:-}" && -d ../shared/corpus ]]; then
    export CERTSTREAM_CORPUS="$(cd ../shared/corpus && pwd)"
fi
echo "CERTSTREAM_CORPUS=${CERTSTREAM_CORPUS:-<unset: corpus tests skip>}"

if ! command -v rustfmt >/dev/null || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi

step() { printf '\n=== %s ===\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "cargo test"
mkdir -p target
set +e
cargo test --locked --workspace -- --nocapture 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^test result: .*' target/test-output.log | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .*' target/test-output.log | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "$passed passed, $failed failed"
exit "$status"
