# Shared by the perf/ scripts: build, install tools, start the simulator and the service,
# record versions. Source it; it sets RUN (the output folder) and BIN.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CORPUS=${CERTSTREAM_CORPUS:-../shared/corpus}
PROFILE=${PROFILE:-profiling}
RUN=${RUN:-perf/runs/$(date +%F)-$(hostname)}
mkdir -p "$RUN"
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE

# Every record names the commit it measured: the tree as the script started. The records'
# own output (perf/runs/, flamegraphs/) does not count as a change. With any other change
# (tracked or untracked) the script refuses to run, unless PERF_ALLOW_DIRTY=1: then the
# changes are saved beside the record, as $RUN/<script>-<time>-<commit>.diff, and the record
# names that file, so that it can still be tied to what was built.
OUTPUTS=(':(exclude)perf/runs' ':(exclude)flamegraphs')
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $COMMIT != unknown ]] && { ! git diff --quiet HEAD -- . "${OUTPUTS[@]}" ||
    [[ -n $(git ls-files --others --exclude-standard -- . "${OUTPUTS[@]}") ]]; }; then
    if [[ -z "${PERF_ALLOW_DIRTY:-}" ]]; then
        echo "perf: the tree has uncommitted changes (git status); commit them so that the record names what it measured, or set PERF_ALLOW_DIRTY=1 to save them beside the record" >&2
        exit 1
    fi
    DIFF=$RUN/$(basename "$0" .sh)-$(date +%H%M%S)-$COMMIT.diff
    {
        git diff HEAD -- . "${OUTPUTS[@]}"
        git ls-files --others --exclude-standard -z -- . "${OUTPUTS[@]}" |
            xargs -0 -r -n1 git diff --no-index /dev/null || true
    } >"$DIFF"
    COMMIT="$COMMIT+dirty, with $DIFF"
fi
PIDS=()
# A wrapped service (SERVER_WRAP, e.g. heaptrack) is a child of the wrapper: its children go too.
cleanup() { for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && { pkill -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; } || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

need_tool() { # need_tool COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null && return
    echo "installing $2" >&2
    [[ -f /tmp/.certstream-apt-updated ]] || { apt-get update -qq && touch /tmp/.certstream-apt-updated; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

build() {
    [[ -n "${SKIP_BUILD:-}" ]] && return
    echo "building ($PROFILE profile)..." >&2
    cargo build --locked --profile "$PROFILE" -p certstream-server -p certstream-sim -p certstream-benches --bins 2>&1 | tail -1 >&2
}

# start_sim RATE [extra args...]: starts ctlog-sim on real corpus entries; sets LOG_LIST.
start_sim() {
    local rate=$1; shift
    sim_up --source "$CORPUS/get-entries" --rate "$rate" --batch-cap 256 --initial-size 0 "$@"
    echo "simulator: $LOG_LIST ($rate certificates/s, batches of 256, real corpus entries)" >&2
}

# start_realistic_sim RATE: the public feed's shape at RATE certificates/s in all: 24 RFC 6962
# logs and 2 static-ct-api logs, two big ones carrying half the stream, batch caps from 32 to
# 1,024, and some logs answering 429 (with Retry-After 30 s: they then return thousands of
# entries at once), 503 or slowly; real corpus entries. Sets LOG_LIST like start_sim.
start_realistic_sim() {
    local rate=$1 args=() caps=(1024 256 32 64 100 512 256 1024) i
    for i in $(seq 0 25); do
        if (( i < 2 )); then
            args+=(--rate "$(python3 -c "print($rate * 0.25)")")
        else
            args+=(--rate "$(python3 -c "print($rate * 0.5 / 24)")")
        fi
        args+=(--batch-cap "${caps[$(( i % 8 ))]}")
        case $(( i % 6 )) in
            1) args+=(--faults "429=0.02,retry-after=30") ;;
            3) args+=(--faults "503=0.05,slow=0.05,slow-ms=800") ;;
            5) args+=(--faults "429=0.05,retry-after-omit=1") ;;
            *) args+=(--faults "") ;;
        esac
    done
    sim_up --source "$CORPUS/get-entries" --logs 24 --static-ct 2 --initial-size 0 "${args[@]}"
    echo "simulator: $LOG_LIST (realistic feed: 26 logs, $rate certificates/s in all, batch caps 32-1024, 429/503/slow faults)" >&2
}

# sim_up [args...]: starts ctlog-sim with exactly these arguments; sets LOG_LIST, SIM_URL
# (its base URL, for /control) and SIM_PID.
sim_up() {
    rm -f "$RUN/sim.out"
    "$BIN/ctlog-sim" "$@" >"$RUN/sim.out" 2>"$RUN/sim.log" &
    SIM_PID=$!
    PIDS+=("$SIM_PID")
    for _ in $(seq 300); do grep -q '^http' "$RUN/sim.out" 2>/dev/null && break; sleep 0.1; done
    LOG_LIST=$(head -1 "$RUN/sim.out")
    [[ "$LOG_LIST" == http* ]] || { echo "the simulator did not start: $(tail -3 "$RUN/sim.log")" >&2; exit 1; }
    SIM_URL=${LOG_LIST%log_list.json}
}

# start_server PORT [extra args...]: starts the service on the simulator at the service's
# defaults (the 5 s poll interval users run; POLL=SECONDS sets --poll-interval, and then the
# record says so); sets SERVER_PID.
start_server() {
    local port=$1; shift
    : >"$RUN/server.log"
    server_up "$port" --start 0 --no-positions ${POLL:+--poll-interval "$POLL"} "$@"
}

# server_up PORT [args...]: starts the service on the simulator's log list with these
# arguments (appending to $SERVER_LOG, default $RUN/server.log); waits for its port; sets
# SERVER_PID.
server_up() {
    local port=$1; shift
    # SERVER_CPUS pins the service (taskset -c), e.g. SERVER_CPUS=0 with `-- --cores 1`;
    # SERVER_WRAP runs it under a tool (profiler_setup sets it for callgrind); SERVER_BIN runs
    # another build of the service (e.g. an earlier commit's, built in a git worktree).
    # shellcheck disable=SC2086
    ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} ${SERVER_WRAP:-} "${SERVER_BIN:-$BIN/certstream-server}" --log-list "$LOG_LIST" --port "$port" --host 127.0.0.1 "$@" ${SERVER_EXTRA:-} \
        >>"${SERVER_LOG:-$RUN/server.log}" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    echo "service: pid $SERVER_PID on 127.0.0.1:$port" >&2
}

# start_checker PORT PATH OUT LOG [args...]: the checker client (every index of every log
# once and in order, against the simulator's tree sizes) on PATH; report to OUT, progress to
# LOG; sets CHECKER.
start_checker() {
    local port=$1 path=$2 out=$3 log=$4
    shift 4
    "$BIN/checker" --addr "127.0.0.1:$port" --path "$path" --expect-start 0 --sim "$SIM_URL" \
        --out "$out" "$@" 2>"$log" &
    CHECKER=$!
    PIDS+=("$CHECKER")
}

# wait_for_a_client PORT: waits (10 s at most) until the service counts a client; fails if not.
wait_for_a_client() {
    for _ in $(seq 100); do
        [[ $(metric "$1" certstream_clients) -ge 1 ]] && return 0
        sleep 0.1
    done
    echo "no client connected to the service" >&2
    return 1
}

# metric PORT NAME: a counter or gauge of the service's /metrics, summed over its labels.
metric() {
    http_get "$1" /metrics | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { print s + 0 }'
}

# sim_control QUERY [LOG]: POST /control[/LOG]?QUERY to the simulator (rate=, max=, listed=,
# faults=); prints nothing.
sim_control() {
    local host=${SIM_URL#http://}; host=${host%/}
    exec 4<>"/dev/tcp/${host%:*}/${host##*:}"
    printf 'POST /control%s?%s HTTP/1.1\r\nHost: sim\r\nConnection: close\r\nContent-Length: 0\r\n\r\n' "${2:+/$2}" "$1" >&4
    head -1 <&4 | grep -q ' 200 ' || echo "sim_control $1 ${2:-}: refused" >&2
    exec 4<&-
}

# iperf3_limit: the loopback limit (BENCHMARK.md); writes $RUN/iperf3.json (the command as
# BENCHMARK.md gives it, placed by the scheduler), $RUN/iperf3-split.json (client on CPU 0,
# server on CPU 1) and $RUN/iperf3-shared.json (both on CPU 0). On loopback the TCP receive
# work runs in the sender's softirq when the receiver is on another core, and in the
# receiver's context when both share one: iperf3's sender CPU per GB is ~0.6 s in the
# first case and ~0.06 s in the second, and an unpinned run lands in either.
iperf3_limit() {
    need_tool iperf3 iperf3
    local placement srv cli
    for placement in default split shared; do
        case $placement in
            default) srv=""; cli="" ;;
            split) srv="taskset -c 1"; cli="taskset -c 0" ;;
            shared) srv="taskset -c 0"; cli="taskset -c 0" ;;
        esac
        $srv iperf3 -s -p 5299 >/dev/null 2>&1 &
        local ip=$!
        sleep 0.5
        local out="$RUN/iperf3"
        [[ $placement == default ]] || out+="-$placement"
        # Also the client process's own user+system time, the service's accounting.
        local TIMEFORMAT='%U %S'
        { time $cli iperf3 -c 127.0.0.1 -p 5299 -t 5 -l 16K -J >"$out.json"; } 2>"$out.cpu"
        kill "$ip" 2>/dev/null || true
        wait "$ip" 2>/dev/null || true
    done
}

versions() {
    {
        echo "date: $(date -Is)"
        echo "host: $(hostname); $(nproc) cores; $(uname -sr); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
        echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
        echo "rustc: $(rustc --version)"
        echo "certstream: $COMMIT"
        if [[ -n "${SERVER_BIN:-}" ]]; then echo "service binary: $SERVER_BIN (SERVER_BIN: another build than the commit above)"; fi
        echo "iperf3: $(iperf3 --version 2>/dev/null | head -1 || echo none)"
    }
}

# flamegraph NAME PERF_DATA: renders flamegraphs/NAME.svg from a perf recording (inferno).
flamegraph() {
    local name=$1 data=$2
    command -v inferno-flamegraph >/dev/null || cargo install inferno --locked >&2
    mkdir -p flamegraphs
    perf script -i "$data" 2>/dev/null | inferno-collapse-perf >"$RUN/$name.folded"
    inferno-flamegraph --title "certstream: $name" --countname samples <"$RUN/$name.folded" >"flamegraphs/$name.svg"
    echo "flamegraph: flamegraphs/$name.svg ($(wc -l <"$RUN/$name.folded") stacks)" >&2
}

# profile_pid NAME PID SECONDS: perf-records a running process (cpu-clock: this VM has no
# hardware counters) with DWARF call graphs and renders its flamegraph.
profile_pid() {
    local name=$1 pid=$2 secs=$3
    need_tool perf linux-perf
    if perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$pid" -o "$RUN/$name.perf.data" -- sleep "$secs" 2>"$RUN/$name.perf.log"; then
        flamegraph "$name" "$RUN/$name.perf.data"
        rm -f "$RUN/$name.perf.data"
    else
        echo "perf record failed ($(tail -1 "$RUN/$name.perf.log")); no flamegraph" >&2
        return 1
    fi
}

# profiler_setup NAME: with FLAME set, picks the profiler for the service: perf (cpu-clock,
# DWARF call graphs → flamegraphs/NAME.svg) where it can record, else (or with
# PROFILER=callgrind) valgrind's callgrind, which counts instructions: the service is then
# started under it (SERVER_WRAP) with instrumentation off until profile_window turns it on. Under
# callgrind the service runs tens of times slower, so use fewer clients.
profiler_setup() {
    [[ -n "${FLAME:-}" ]] || return 0
    if [[ "${PROFILER:-perf}" != callgrind ]]; then
        need_tool perf linux-perf || true
        if perf record -e cpu-clock -o "$RUN/.probe.perf.data" -- true >/dev/null 2>&1; then
            rm -f "$RUN/.probe.perf.data"
            PROFILER=perf
            return 0
        fi
        echo "perf cannot record here: counting instructions with callgrind instead" >&2
    fi
    PROFILER=callgrind
    need_tool valgrind valgrind
    SERVER_WRAP="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$RUN/$1.callgrind"
    # valgrind 3.19 does not complete the service's io_uring operations (nothing is sent):
    # the cores run on the legacy (epoll) driver under it.
    SERVER_EXTRA="--driver legacy"
}

# profile_window NAME PID SECONDS: profiles the service for SECONDS with the profiler
# profiler_setup chose. callgrind: writes $RUN/NAME-callgrind.txt (instructions per function).
profile_window() {
    local name=$1 pid=$2 secs=$3
    if [[ "${PROFILER:-perf}" != callgrind ]]; then
        profile_pid "$name" "$pid" "$secs"
        return
    fi
    callgrind_control -i on "$pid" >/dev/null
    sleep "$secs"
    callgrind_control -d "$pid" >/dev/null
    callgrind_control -i off "$pid" >/dev/null
    local dump
    dump=$(ls -t "$RUN/$name.callgrind"* 2>/dev/null | head -1)
    [[ -n "$dump" ]] || { echo "callgrind wrote no dump" >&2; return 1; }
    callgrind_annotate --inclusive=no "$dump" 2>/dev/null | head -45 >"$RUN/$name-callgrind.txt"
    echo "callgrind: $(grep -m1 -E '^ *[0-9,]+ .*PROGRAM TOTALS' "$RUN/$name-callgrind.txt" | awk '{print $1}') instructions in ${secs} s of the service (user space; the kernel's share is not counted): $RUN/$name-callgrind.txt" >&2
}

# http_get PORT PATH: the body of GET http://127.0.0.1:PORT/PATH (no curl needed).
http_get() {
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
    sed '1,/^\r$/d' <&3
    exec 3<&-
}
