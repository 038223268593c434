#!/usr/bin/env bash
# Relay throughput: SIZE bytes (default 1 GiB) through `socklab tcp connect` -> `socklab tcp
# listen` on 127.0.0.1, and the same through socat and through nc (netcat-openbsd), in one
# run, REPS times each (default 3), interleaved. Prints MB/s per run, the median per tool and
# the ratios socklab/socat and socklab/nc (issue 3's goal: >= 2x socat, not below nc).
#
# Every tool gets the same source and sink, so only the relay differs:
#   source: `head -c SIZE /dev/zero |`  (stdin is a pipe: socklab takes the splice(2) path)
#   sink:   `| cat > /dev/null`  with SINK=pipe (default: stdout a pipe, splice(2) again)
#           `> /dev/null`        with SINK=null (stdout not a pipe: recv(2) + write(2))
#
# Usage: scripts/relay-bench.sh [SIZE_BYTES] [REPS]      (SINK=null scripts/relay-bench.sh)
# Loopback only; each transfer is bounded by TIMEOUT seconds (default 120).
set -euo pipefail

SIZE=${1:-$((1 << 30))}
REPS=${2:-3}
SINK=${SINK:-pipe}
TIMEOUT=${TIMEOUT:-120}
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/socklab

for t in socat nc; do
    command -v "$t" >/dev/null || { echo "relay-bench: $t is not installed (apt-get install socat netcat-openbsd)" >&2; exit 2; }
done

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        ss -Htan "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
}

wait_listen() { # bounded poll until something listens on 127.0.0.1:$1
    for _ in $(seq 500); do
        ss -Hltn "sport = :$1" | grep -q . && return 0
        sleep 0.01
    done
    echo "relay-bench: nothing listens on port $1" >&2
    exit 2
}

# run TOOL PORT: starts the receiver, sends SIZE bytes, waits for the receiver; prints seconds.
run() {
    local tool=$1 port=$2 out
    out=$([ "$SINK" = null ] && echo /dev/null || echo pipe)
    case $tool in
    socklab) recv=("$BIN" tcp listen "127.0.0.1:$port"); send=("$BIN" tcp connect "127.0.0.1:$port") ;;
    socat)   recv=(socat -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" -); send=(socat -u - "TCP:127.0.0.1:$port") ;;
    nc)      recv=(nc -l 127.0.0.1 "$port"); send=(nc -N 127.0.0.1 "$port") ;;
    esac
    if [ "$out" = pipe ]; then
        timeout "$TIMEOUT" "${recv[@]}" </dev/null | cat >/dev/null &
    else
        timeout "$TIMEOUT" "${recv[@]}" </dev/null >/dev/null &
    fi
    local rpid=$!
    wait_listen "$port"
    local t0 t1
    t0=$(date +%s.%N)
    head -c "$SIZE" /dev/zero | timeout "$TIMEOUT" "${send[@]}" >/dev/null
    wait "$rpid"
    t1=$(date +%s.%N)
    echo "$t0 $t1" | awk '{printf "%.3f\n", $2 - $1}'
}

declare -A times
echo "relay-bench: $SIZE bytes x $REPS per tool, sink=$SINK, $(nproc) CPUs, $(uname -r)"
for rep in $(seq "$REPS"); do
    for tool in socklab socat nc; do
        s=$(run "$tool" "$(free_port)")
        mbs=$(awk -v b="$SIZE" -v s="$s" 'BEGIN {printf "%.0f", b / s / 1e6}')
        printf '  run %d %-8s %7.3f s %7s MB/s\n' "$rep" "$tool" "$s" "$mbs"
        times[$tool]+="$mbs "
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
sl=$(echo "${times[socklab]}" | median)
so=$(echo "${times[socat]}" | median)
nc=$(echo "${times[nc]}" | median)
echo "median MB/s: socklab $sl, socat $so, nc $nc"
awk -v a="$sl" -v b="$so" -v c="$nc" 'BEGIN {
    printf "socklab/socat %.2fx (goal >= 2), socklab/nc %.2fx (goal >= 1)\n", a / b, a / c }'
