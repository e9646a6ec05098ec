#!/usr/bin/env bash
# The figures of issue 11 that tests must not assert: the peak memory of a backend after the
# worst inputs, and how long each kind of long statement takes to end after a cancel.
#
#   bench/trust.sh            (the installed extension, the default model)
#
# Peak memory: VmHWM (the backend's peak resident set) of a fresh connection after one call,
# beside the input's own size (PostgreSQL itself holds the text). Cancel latency:
# statement_timeout = 1 s, the statement's wall time minus 1 s, as the client sees it (it includes
# starting psql and connecting, ~10 ms); the worst of 3 runs. Each case at 1 and 2 threads.
# BENCH_ADDRESS_SPACE_GB (default 8) limits each server process's address space, as
# vm.overcommit_memory=2 would, so that an unbounded input fails here instead of swapping.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$root/scripts/common.sh"
port=${UHOK_BENCH_PORT:-54333}
ulimit -v $((${BENCH_ADDRESS_SPACE_GB:-8} * 1024 * 1024))
throwaway_cluster trust "$port"
psql=(psql -X -q -At -h "$cluster" -p "$port" -U postgres -d postgres)
"${psql[@]}" -c "CREATE EXTENSION uhok_embed CASCADE" >/dev/null

echo "machine: $(nproc) cores, ${BENCH_ADDRESS_SPACE_GB:-8} GB address space per process, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "uhok_embed $("${psql[@]}" -c "SELECT extversion FROM pg_extension WHERE extname = 'uhok_embed'"), model: $("${psql[@]}" -c "SELECT (i->>'version') || ', max_seq_length ' || (i->>'max_seq_length') FROM uhok_embed_info() i")"
echo

echo "| input | its size | backend peak RSS (VmHWM) |"
echo "|---|---|---|"
ready() {  # after a crash the postmaster resets every session and recovers: wait for it
    for _ in $(seq 1 60); do "${psql[@]}" -c "SELECT 1" >/dev/null 2>&1 && return 0; sleep 1; done
}
measure_peak() {  # measure_peak DESCRIPTION SIZE SQL
    ready
    local fifo; fifo=$(mktemp -u); mkfifo "$fifo"
    # One session: run the input, then print the backend's pid and wait, so that its
    # /proc/PID/status can be read while it lives.
    "${psql[@]}" -c "SET uhok_embed.batch_size = 4096" -c "$3" -o /dev/null -c "\\o" \
        -c "SELECT pg_backend_pid()" -c "SELECT pg_sleep(5)" > "$fifo" 2>/dev/null &
    local pid hwm
    read -r pid < "$fifo" || true
    if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
        hwm=$(awk '/^VmHWM:/ { printf "%.0f MB", $2 / 1024 }' "/proc/$pid/status")
    else
        sleep 1
        hwm="the backend died: $(grep -oE 'memory allocation of [0-9]+ bytes failed|terminated by signal [0-9]+[^;]*' \
            "$cluster/server.log" | tail -n 2 | paste -sd ';' -)"
    fi
    wait; rm -f "$fifo"
    echo "| $1 | $2 | $hwm |"
}
measure_peak "a fresh connection embedding '갈비탕' (baseline)" "9 B" "SELECT uhok_embed('갈비탕')"
measure_peak "uhok_embed(repeat('갈', 100000000)): one 300 MB word" "300 MB" \
    "SELECT uhok_embed(repeat('갈', 100000000))"
measure_peak "uhok_embed(repeat('갈비탕 ', 25000000)): 200 MB of words" "250 MB" \
    "SELECT uhok_embed(repeat('갈비탕 ', 25000000))"
measure_peak "uhok_embed_batch of 256 texts of 512+ tokens, batch_size 4096" "256 x 3.6 kB" \
    "SELECT uhok_embed_batch(ARRAY(SELECT repeat('갈비탕 ', 300) || g FROM generate_series(1, 256) g))"
echo

cancel_case() {  # cancel_case DESCRIPTION THREADS SQL -> ms after the timeout, worst of 3
    ready
    local worst=0 t0 ms
    for _ in 1 2 3; do
        t0=$EPOCHREALTIME
        "${psql[@]}" -c "SET uhok_embed.threads = $2" -c "SET statement_timeout = '1s'" -c "$3" >/dev/null 2>&1 || true
        ms=$(awk "BEGIN { printf \"%.0f\", ($EPOCHREALTIME - $t0) * 1000 - 1000 }")
        [ "$ms" -gt "$worst" ] && worst=$ms
    done
    echo "| $1 | $2 | $worst ms |"
}
[ "${BENCH_SKIP_CANCEL:-}" = 1 ] && exit 0
echo "| statement (statement_timeout 1 s) | threads | ends after the timeout (worst of 3) |"
echo "|---|---|---|"
for threads in 1 2; do
    cancel_case "uhok_embed_batch of 200 texts of 5,000 tokens" $threads \
        "SELECT uhok_embed_batch(ARRAY(SELECT repeat('갈비탕 ', 1700) || g FROM generate_series(1, 200) g))"
    cancel_case "uhok_embed of 20 MB texts, row by row" $threads \
        "SELECT count(uhok_embed(repeat('갈비탕 ', 2000000) || g)) FROM generate_series(1, 100) g"
    cancel_case "uhok_embed of long texts, row by row" $threads \
        "SELECT count(uhok_embed(repeat('갈비탕 ', 2000) || g)) FROM generate_series(1, 1000) g"
done
