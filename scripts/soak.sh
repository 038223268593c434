#!/usr/bin/env bash
# Soak test of `socklab bench server`: one server on 127.0.0.1, WORKERS client loops running
# back-to-back short tests for MINUTES minutes (TCP and UDP, forward, -R, --bidir, rr), one
# run in ten hostile (a wrong token, or a frame header announcing 0xFFFFFFFF bytes). Every
# SAMPLE seconds the server's RSS (VmRSS of /proc/PID/status) and open fds (/proc/PID/fd)
# are sampled; at the end a table, and whether either grew: open fds between the idle server
# before and after the soak (at all), RSS between the first sample after a quarter of the run
# (at most 30 s: by then every concurrency level has made its allocator arenas and thread
# stacks) and the idle server at the end (by more than 2 MiB). Exit 1 if one grew or the
# server died.
#
#   scripts/soak.sh [MINUTES=3] [WORKERS=3]     (SAMPLE=10 BIN=target/release/socklab)
#
# Traffic stays on loopback; every loop ends at the deadline.
set -euo pipefail

MINUTES=${1:-3}
WORKERS=${2:-3}
SAMPLE=${SAMPLE:-10}
BIN=${BIN:-target/release/socklab}
[[ $MINUTES =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "soak.sh: MINUTES must be a number" >&2; exit 2; }
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: WORKERS must be a positive integer" >&2; exit 2; }
[[ -x $BIN ]] || cargo build --release --quiet

dir=$(mktemp -d)
server_pid=
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

"$BIN" bench server --bind 127.0.0.1:0 --token soak --max-tests $((WORKERS + 1)) \
    2>"$dir/server.log" &
server_pid=$!
for _ in $(seq 100); do
    grep -q 'listening on' "$dir/server.log" 2>/dev/null && break
    sleep 0.05
done
addr=$(sed -n 's/.*listening on //p' "$dir/server.log" | head -1)
[[ -n $addr ]] || { echo "soak.sh: the server did not start" >&2; cat "$dir/server.log" >&2; exit 1; }
port=${addr##*:}

secs=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')

sample() {
    local rss fds ok=0 bad=0 fail=0 a b c
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status")
    fds=$(find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
    for f in "$dir"/count.*; do
        [[ -f $f ]] || continue
        read -r a b c <"$f" || continue
        ok=$((ok + a)) bad=$((bad + b)) fail=$((fail + c))
    done
    printf '%8s %10s %10s %10s %8s %8s\n' "$1" "$ok" "$bad" "$fail" "$rss" "$fds"
}

# One client loop: a fixed rotation of test kinds; every tenth run is hostile.
worker() {
    local w=$1 i=0 ok=0 bad=0 fail=0
    local kinds=("--tcp" "-u -b 200M" "-u -R -b 200M" "--tcp --bidir" "-u --test rr" "--tcp -R" "-u --bidir -b 100M" "--tcp --test rr" "--tcp -P 2")
    while ((SECONDS < end)); do
        i=$((i + 1))
        if ((i % 10 == 0)); then
            if ((i % 20 == 0)); then
                "$BIN" bench client "$addr" --token wrong --tcp -t 0.05 >/dev/null 2>&1 || true
            else
                # CVE-2023-38403's frame: a header announcing 4 GiB.
                { exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'SC\001\000\377\377\377\377' >&3 \
                    && timeout 3 cat <&3 >/dev/null; exec 3<&-; } 2>/dev/null || true
            fi
            bad=$((bad + 1))
        else
            # shellcheck disable=SC2086 # the kind is a list of flags
            if "$BIN" bench client "$addr" --token soak ${kinds[i % ${#kinds[@]}]} -t 0.05 \
                --json >/dev/null 2>"$dir/err.$w"; then
                ok=$((ok + 1))
            else
                fail=$((fail + 1))
                sed "s/^/worker $w: /" "$dir/err.$w" >>"$dir/failures"
            fi
        fi
        echo "$ok $bad $fail" >"$dir/tmp.$w" && mv "$dir/tmp.$w" "$dir/count.$w"
    done
}

workers=()
# Warm-up (allocator arenas, thread stacks), then the idle baseline.
end=$((SECONDS + 3600))
for i in $(seq 40); do
    # shellcheck disable=SC2086
    "$BIN" bench client "$addr" --token soak $([[ $((i % 2)) == 0 ]] && echo --tcp || echo -u -R -b 100M) \
        -t 0.02 --json >/dev/null 2>&1 || true
done
sleep 1
echo "soak: bench server pid $server_pid on $addr, $WORKERS client loops, $MINUTES min"
printf '%8s %10s %10s %10s %8s %8s\n' "t (s)" "tests ok" "hostile" "failed" "RSS KiB" "fds"
sample "idle" | tee "$dir/idle"
end=$((SECONDS + secs))
for w in $(seq "$WORKERS"); do
    worker "$w" &
    workers+=($!)
done


start=$SECONDS
: >"$dir/samples"
warm=$((secs / 4 < 30 ? secs / 4 : 30))
while ((SECONDS < end)); do
    sleep "$SAMPLE"
    kill -0 "$server_pid" 2>/dev/null || { echo "soak.sh: the server died" >&2; exit 1; }
    sample $((SECONDS - start)) | tee -a "$dir/samples"
    if [[ ! -s $dir/base ]] && ((SECONDS - start >= warm)); then
        tail -1 "$dir/samples" >"$dir/base"
    fi
done
wait "${workers[@]}" 2>/dev/null || true
sleep 1
sample "idle" | tee -a "$dir/samples"

# Growth: fds of the idle server before and after; RSS after warm-up and at the end.
read -r _ _ _ _ _ fd0 <"$dir/idle"
[[ -s $dir/base ]] || head -1 "$dir/samples" >"$dir/base"
read -r t0 _ _ _ rss0 _ <"$dir/base"
read -r _ ok bad fail rss1 fd1 < <(tail -1 "$dir/samples")
echo "soak: RSS baseline taken at t = $t0 s (after warm-up)"
peak=$(awk 'max < $5 { max = $5 } END { print max }' "$dir/samples")
echo "soak: RSS under load peaked at $peak KiB"
growth=$((rss1 - rss0))
verdict=0
echo "soak: $ok tests ran, $bad hostile connections, $fail failed client runs in $MINUTES min"
if ((growth > 2048)); then
    echo "soak: RSS GREW by $growth KiB ($rss0 -> $rss1 KiB; limit 2048 KiB)"
    verdict=1
else
    echo "soak: RSS did not grow: $rss0 -> $rss1 KiB ($growth KiB, limit 2048 KiB)"
fi
if ((fd1 != fd0)); then
    echo "soak: open fds GREW: $fd0 -> $fd1"
    verdict=1
else
    echo "soak: open fds did not grow: $fd0 -> $fd1"
fi
if [[ -s $dir/failures ]]; then
    echo "soak: failed client runs (first 5):"
    head -5 "$dir/failures"
fi
exit $verdict
