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

# Installs what the client tests use; where that fails outside CI the tests skip.
need() {
    if [[ "${CI:-}" == "true" ]]; then
        echo "error: $*" >&2
        exit 1
    fi
    echo "warning: $* (the tests that need it will skip)" >&2
}
apt_install() {
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        if [[ ! -f target/.apt-updated ]]; then
            apt-get update -qq && mkdir -p target && touch target/.apt-updated
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    else
        return 1
    fi
}

step "test clients: the PyPI certstream client and Chromium"
mkdir -p target
if [[ -z "${CERTSTREAM_PYTHON:-}" ]]; then
    venv=target/venv
    if ! "$venv/bin/python" -c 'import certstream, websockets' 2>/dev/null; then
        if ! python3 -m venv --help >/dev/null 2>&1; then
            apt_install python3 python3-venv || true
        fi
        rm -rf "$venv"
        if python3 -m venv "$venv" && "$venv/bin/pip" install -q certstream websockets; then
            echo "installed the certstream and websockets clients into $venv"
        else
            need "could not install the certstream and websockets Python clients"
        fi
    fi
    if "$venv/bin/python" -c 'import certstream, websockets' 2>/dev/null; then
        export CERTSTREAM_PYTHON="$PWD/$venv/bin/python"
    fi
fi
if [[ -z "${CERTSTREAM_CHROMIUM:-}" ]]; then
    if ! command -v chromium >/dev/null; then
        apt_install chromium || true
    fi
    if command -v chromium >/dev/null; then
        export CERTSTREAM_CHROMIUM="$(command -v chromium)"
    else
        need "could not install chromium"
    fi
fi
if ! command -v curl >/dev/null; then
    apt_install curl || need "could not install curl (the SSE tests use curl -N)"
fi
echo "CERTSTREAM_PYTHON=${CERTSTREAM_PYTHON:-<unset>} CERTSTREAM_CHROMIUM=${CERTSTREAM_CHROMIUM:-<unset>}"

step "nats-server (JetStream) for the ingest/edge tests"
if [[ -z "${CERTSTREAM_NATS_SERVER:-}" ]]; then
    if ! command -v nats-server >/dev/null && [[ ! -x /usr/sbin/nats-server ]]; then
        apt_install nats-server || true
    fi
    if command -v nats-server >/dev/null; then
        export CERTSTREAM_NATS_SERVER="$(command -v nats-server)"
    elif [[ -x /usr/sbin/nats-server ]]; then
        export CERTSTREAM_NATS_SERVER=/usr/sbin/nats-server
    else
        need "could not install nats-server"
    fi
fi
echo "CERTSTREAM_NATS_SERVER=${CERTSTREAM_NATS_SERVER:-<unset>}"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "cargo test"
mkdir -p target
set +e
cargo test --locked --workspace --no-fail-fast -- --nocapture 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^test result: .*' target/test-output.log | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .*' target/test-output.log | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "$passed passed, $failed failed"

# Each fuzz target briefly (fuzz/run.sh: installs cargo-fuzz, seeds from the corpus, builds
# with AddressSanitizer into fuzz/target). CERTSTREAM_FUZZ_SECS=0 skips it.
fuzz_secs="${CERTSTREAM_FUZZ_SECS:-10}"
fuzz_status=0
fuzz_result=skipped
if [[ "$fuzz_secs" != 0 ]]; then
    step "fuzz: every target for $fuzz_secs s (fuzz/run.sh)"
    fuzz_result=ok
    if ! fuzz/run.sh "$fuzz_secs"; then
        fuzz_status=1
        fuzz_result=FAILED
        echo "fuzzing failed: see fuzz/artifacts/logs/" >&2
    fi
fi
echo
echo "tests: $passed passed, $failed failed; fuzz: $fuzz_result"
[[ "$status" == 0 ]] || exit "$status"
exit "$fuzz_status"
