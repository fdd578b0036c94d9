#!/usr/bin/env bash
# Heavy performance runs (not part of CI). Builds release binaries, then for each
# scenario and each run starts the real server as its own process (temporary data dir,
# loopback only), runs loadgen against it, and stops it. Results: one JSON per run plus
# median tables, under $OUT.
#
#   loadgen/run-bench.sh                      # everything, 3 runs each
#   RUNS=5 SCENARIOS="compare latency" loadgen/run-bench.sh
#   IDLE_CONNECTIONS=2000 SCENARIOS=idle loadgen/run-bench.sh
#
# Scenarios: crypto; compare (one 100-member room, every member sending, vs the bare
# relay); compare-1s (four 100-member rooms, one sender each, vs the bare relay); latency
# (2,000 msg/s into 10-member rooms, vs the bare relay); logins (vs the bare relay plus one
# verification); idle; abuse (10 rooms of 10 members at 200 msg/s, without and then with
# one attacker on $ATTACK_CONNECTIONS connections, against a server with its default rate
# limit, global registration quota, room quota, argon2 pool and join throttle; not part of
# the default set); scale-one, scale-one-so and scale-two (scale-out, below; not part of
# the default set). Environment knobs are listed below with their defaults.
#
# The scale-out scenarios need MongoDB or the emulator (TEST_MONGODB_URI) and compare the
# same load on one instance without scale-out (scale-one), one with it (scale-one-so) and
# two with it, each room's members spread over both (scale-two); each run has a fresh
# database. Through the EMULATOR (figures that say more about round trips than MongoDB):
#
#   ../shared/mongo-emulator/with-emulator env SCENARIOS="scale-one scale-one-so scale-two" \
#       loadgen/run-bench.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${RUNS:-3}
SCENARIOS=${SCENARIOS:-"crypto compare compare-1s latency logins idle"}
PORT=${PORT:-18080}
DURATION=${DURATION:-15}          # seconds counted per fan-out run
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
IDLE_HOLD=${IDLE_HOLD:-20}        # with HEARTBEAT_SECS=5: four heartbeats
ATTACK_CONNECTIONS=${ATTACK_CONNECTIONS:-12}
TACTICS=${TACTICS:-}                # abuse: comma-separated tactics (default: all six)
OUT=${OUT:-$TARGET_DIR/bench-results/$(date +%Y%m%d-%H%M%S)}
SKIP_BUILD=${SKIP_BUILD:-}
SCALE_RATE=${SCALE_RATE:-100}     # scale-*: messages/s offered in the fixed-rate half

mkdir -p "$OUT"
if [[ -z "$SKIP_BUILD" ]]; then
    (cd "$ROOT" && cargo build --release -p server -p loadgen)
fi
SERVER_BIN=${SERVER_BIN:-$TARGET_DIR/release/server}   # override to measure another build
LOADGEN=${LOADGEN:-$TARGET_DIR/release/loadgen}

# The idle scenario holds $IDLE_CONNECTIONS sockets in each process.
if ! ulimit -n 65536 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)" || true
fi
echo "open-files limit: $(ulimit -n) (idle needs more than $IDLE_CONNECTIONS)"

SERVER_PID=""
DATA_DIR=""
stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
SERVER2_PID=""
stop_second_server() {
    if [[ -n "$SERVER2_PID" ]] && kill -0 "$SERVER2_PID" 2>/dev/null; then
        kill -TERM "$SERVER2_PID"
        wait "$SERVER2_PID" 2>/dev/null || true
    fi
    SERVER2_PID=""
}
cleanup() {
    stop_second_server
    stop_server
    if [[ -n "$DATA_DIR" ]]; then rm -rf "$DATA_DIR"; fi
    if [[ -n "${IDLE_DIR:-}" ]]; then rm -rf "$IDLE_DIR"; fi
}
trap cleanup EXIT

# Every bench client comes from 127.0.0.1, so the per-address quotas are always lifted.
PER_ADDRESS_LIFTED=(CONNECTIONS_PER_ADDRESS=1000000 REGISTRATIONS_PER_ADDRESS=1000000)
# The throughput scenarios also lift the global quotas and the rate limit; the abuse
# scenario keeps their defaults, since they are what protect the ordinary users there.
GLOBAL_LIFTED=(REQUESTS_PER_SEC=100000 REGISTRATIONS_TOTAL=1000000 ROOMS_PER_USER=1000000)

# start_server DATA_DIR [extra env...]: starts the release server on $PORT (per-address
# quotas lifted), waits until it accepts connections.
# healthy PORT: whether the server on PORT answers GET /health with 200. (An open port is
# not enough: the server binds it before its store is open and answers 503 "starting"
# until then.)
healthy() {
    (
        exec 3<>/dev/tcp/127.0.0.1/"$1" || exit 1
        printf 'GET /health HTTP/1.0\r\nHost: bench\r\n\r\n' >&3
        read -r -t 5 _ status _ <&3 || exit 1
        [[ "$status" == 200 ]]
    ) 2>/dev/null
}

# wait_healthy PORT: waits (up to 60 s) until the server on PORT is healthy.
wait_healthy() {
    for _ in $(seq 600); do
        if healthy "$1"; then return 0; fi
        sleep 0.1
    done
    echo "server on port $1 did not become healthy; see $OUT/server.log" >&2
    exit 1
}

start_server() {
    local dir=$1
    shift
    env DATA_DIR="$dir" PORT="$PORT" BIND_ADDRESS=127.0.0.1 RUST_LOG=warn \
        SHUTDOWN_GRACE_SECS=2 "${PER_ADDRESS_LIFTED[@]}" "$@" \
        "$SERVER_BIN" >>"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
    wait_healthy "$PORT"
}

# fresh_server [extra env...]: a new server on a new data dir, global limits lifted.
fresh_server() {
    fresh_limited_server "${GLOBAL_LIFTED[@]}" "$@"
}

# fresh_limited_server [extra env...]: a new server on a new data dir, global limits at
# their defaults.
fresh_limited_server() {
    stop_server
    if [[ -n "$DATA_DIR" ]]; then rm -rf "$DATA_DIR"; fi
    DATA_DIR=$(mktemp -d)
    start_server "$DATA_DIR" "$@"
}

URL="ws://127.0.0.1:$PORT/ws"
PORT2=$((PORT + 1))
URL2="ws://127.0.0.1:$PORT2/ws"

# mongo_servers COUNT SCALE_OUT: COUNT servers (1 or 2) on a fresh database of
# TEST_MONGODB_URI, with SCALE_OUT as given; the second on $PORT2.
mongo_servers() {
    local count=$1 scale=$2
    stop_second_server
    stop_server
    if [[ -z "${TEST_MONGODB_URI:-}" ]]; then
        echo "the scale-* scenarios need TEST_MONGODB_URI (MongoDB or the emulator)" >&2
        exit 2
    fi
    local db="bench_$(date +%s%N | tail -c 10)"
    # HEARTBEAT_SECS=30: on the emulator, setting up 100 members takes longer than three
    # 10 s heartbeats, and connections waiting their turn are not read meanwhile.
    local common=("${GLOBAL_LIFTED[@]}" MONGODB_URI="$TEST_MONGODB_URI" MONGODB_DATABASE="$db"
        MONGODB_ALLOW_STANDALONE=true SCALE_OUT="$scale" HEARTBEAT_SECS=30)
    DATA_DIR=$(mktemp -d)
    start_server "$DATA_DIR" "${common[@]}" INSTANCE_ID=one
    if [[ "$count" == 2 ]]; then
        env DATA_DIR="$DATA_DIR" PORT="$PORT2" BIND_ADDRESS=127.0.0.1 RUST_LOG=warn \
            SHUTDOWN_GRACE_SECS=2 "${PER_ADDRESS_LIFTED[@]}" "${common[@]}" INSTANCE_ID=two \
            "$SERVER_BIN" >>"$OUT/server.log" 2>&1 &
        SERVER2_PID=$!
        wait_healthy "$PORT2"
    fi
}

# scale_runs JSON-PREFIX COUNT SCALE_OUT: the scale-out load on fresh servers (see
# mongo_servers) and a fresh database each time: closed loop (capacity) into
# PREFIX-max.json, then at $SCALE_RATE msg/s (latency) into PREFIX.json. With two servers
# each room's members alternate between them. CPU figures are the first server's only.
scale_runs() {
    local prefix=$1 count=$2 scale=$3
    local spread=()
    [[ "$count" == 1 ]] || spread=(--spread-url "$URL2")
    local load=(--rooms 10 --members 10 --payload 256 --window 4 --duration "$DURATION"
        "${spread[@]}")
    mongo_servers "$count" "$scale"
    "$LOADGEN" fanout --server-url "$URL" --server-pid "$SERVER_PID" "${load[@]}" \
        --json "$prefix-max.json"
    mongo_servers "$count" "$scale"
    "$LOADGEN" fanout --server-url "$URL" --server-pid "$SERVER_PID" "${load[@]}" \
        --rate "$SCALE_RATE" --json "$prefix.json"
}
{
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
        "$(free -m | awk '/Mem:/ {print $2}') MiB, kernel $(uname -r)"
} | tee "$OUT/machine.txt"

for scenario in $SCENARIOS; do
    files=()
    for run in $(seq "$RUNS"); do
        json="$OUT/$scenario-$run.json"
        echo "== $scenario, run $run/$RUNS (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
        case $scenario in
        crypto)
            "$LOADGEN" crypto --json "$json"
            ;;
        compare)
            fresh_server
            "$LOADGEN" fanout --compare --server-url "$URL" --server-pid "$SERVER_PID" \
                --rooms 1 --members 100 --payload 256 --window 2 \
                --duration "$DURATION" --json "$json"
            ;;
        compare-1s)
            fresh_server
            "$LOADGEN" fanout --compare --server-url "$URL" --server-pid "$SERVER_PID" \
                --rooms 4 --members 100 --senders 1 --payload 256 --window 4 \
                --duration "$DURATION" --json "$json"
            ;;
        latency)
            fresh_server
            "$LOADGEN" fanout --compare --server-url "$URL" --server-pid "$SERVER_PID" \
                --rooms 20 --members 10 --payload 256 --rate 2000 --window 16 \
                --duration "$DURATION" --json "$json"
            ;;
        logins)
            fresh_server
            "$LOADGEN" logins --server-url "$URL" --server-pid "$SERVER_PID" \
                --users 64 --concurrency 32 --duration "$DURATION" --compare --json "$json"
            ;;
        idle)
            # One data dir for all idle runs: the first registers the accounts, later runs
            # log in to them again. Each run gets a fresh server process (fresh RSS).
            stop_server
            IDLE_DIR=${IDLE_DIR:-$(mktemp -d)}
            start_server "$IDLE_DIR" "${GLOBAL_LIFTED[@]}" HEARTBEAT_SECS=5
            "$LOADGEN" idle --server-url "$URL" --server-pid "$SERVER_PID" \
                --connections "$IDLE_CONNECTIONS" --room-size 10 --hold "$IDLE_HOLD" \
                --json "$json"
            ;;
        abuse)
            # One fresh server per run: the attacker uses up its global registration
            # quota for the hour.
            fresh_limited_server
            "$LOADGEN" abuse --server-url "$URL" --server-pid "$SERVER_PID" \
                --attack-connections "$ATTACK_CONNECTIONS" --duration "$DURATION" \
                ${TACTICS:+--tactics "$TACTICS"} --json "$json"
            ;;
        scale-one)
            scale_runs "$OUT/$scenario-$run" 1 false
            ;;
        scale-one-so)
            scale_runs "$OUT/$scenario-$run" 1 true
            ;;
        scale-two)
            scale_runs "$OUT/$scenario-$run" 2 true
            ;;
        *)
            echo "unknown scenario $scenario" >&2
            exit 2
            ;;
        esac
        files+=("$json")
    done
    stop_second_server
    stop_server
    if [[ "$scenario" == scale-* ]]; then
        # Two medians: closed-loop capacity, and the fixed rate's latency.
        "$LOADGEN" median "${files[@]/%.json/-max.json}" | tee "$OUT/$scenario-max-median.txt"
    fi
    "$LOADGEN" median "${files[@]}" | tee "$OUT/$scenario-median.txt"
done
echo "results in $OUT"
