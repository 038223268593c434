#!/usr/bin/env bash
# bench-compare.sh: socklab's bench as users run it (`bench server` and `bench client`, two
# processes) side by side with iperf3, sockperf and xfr, interleaved in one run, on loopback
# only; prints each figure's median over REPS repetitions and socklab's ratio to the other tool.
#
#   scripts/bench-compare.sh                       # REPS=5 T=3
#   IPERF3=/opt/iperf-3.21/bin/iperf3 REPS=7 scripts/bench-compare.sh
#
# Figures (each repetition runs every tool once per figure, in turn):
#   TCP 128 KiB writes, -P 1 2 4 8 16: received bits/s, socklab vs iperf3 (and xfr).
#   UDP 1472 B, each tool's fastest path: socklab's default run (GSO/GRO, its own rate search
#     for the highest rate with <= 1 % lost) vs iperf3 with --gsro when the build has it; iperf3
#     has no search, so this script searches for it: an unpaced 1 s run, then a bisection of -b
#     (seven 1 s runs, log scale) between 1/64 and all of what that run sent, then a T-second
#     run at the highest rate that lost <= 1 %. Goodput is bits/s received; the loss of that final run is
#     printed beside it.
#   UDP 1472 B without GSO/GRO: the same with socklab --no-gso --no-gro and iperf3 without --gsro.
#   Round trip 64 B, UDP and TCP: socklab --test rr vs sockperf ping-pong --full-rtt, p50/p99.
#   Latency under load (socklab only): open-loop 64 B probes alone and beside a bulk stream.
#
# Raw JSON and text of every run go to OUT (default target/bench-compare/<time>/); the summary
# is also written there as summary.md. Every run is bounded (timeout), every server started is
# killed on exit. Traffic: 127.0.0.1 only.
set -euo pipefail

REPS=${REPS:-5}
# FIGURES: which groups to measure (default all): tcp udp rr underload
FIGURES=${FIGURES:-tcp udp rr underload}
T=${T:-3}
cd "$(dirname "$0")/.."
SOCKLAB=${SOCKLAB:-target/release/socklab}
IPERF3=${IPERF3:-iperf3}
OUT=${OUT:-target/bench-compare/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
cargo build --release --quiet
LO=127.0.0.1
P_SOCKLAB=15300 P_IPERF=15301 P_SOCKPERF=15302 P_XFR=15303
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

export PATH="$HOME/.cargo/bin:$PATH"
need() { command -v "$1" >/dev/null 2>&1; }
if ! need "$IPERF3" || ! need sockperf; then
    apt-get install -y iperf3 sockperf >/dev/null || echo "warning: apt-get install iperf3 sockperf failed" >&2
fi
need xfr || echo "warning: xfr not installed (cargo install xfr); its columns stay empty" >&2
# xfr: no update check (no traffic off the machine); its server runs with --no-mdns.
export XFR_NO_UPDATE_CHECK=1 DO_NOT_TRACK=1
GSRO=()
"$IPERF3" --help 2>&1 | grep -q -- --gsro && GSRO=(--gsro)

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) exit; if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a=="" || b=="" || b==0) print "-"; else printf "%.2f", a/b }'; }
run() { timeout -k 5 $((T + 60)) "$@"; }
start_bg() { "$@" >/dev/null 2>&1 & PIDS+=($!); LAST=$!; sleep 0.5; }

want() { [[ " $FIGURES " == *" $1 "* ]]; }
declare -A V   # V[figure,series] = newline-separated samples
add() { V["$1,$2"]+="$3"$'\n'; }
# save NAME CMD...: runs CMD, keeps its stdout in a new file OUT/NAME.XXXX.json, prints it
save() { local f; f=$(mktemp "$OUT/$1.XXXX.json"); shift; run "$@" 2>>"$OUT/stderr.log" | tee "$f"; }

# socklab client against the socklab server
sl() { local name=$1; shift; save "$name" "$SOCKLAB" bench client $LO:$P_SOCKLAB -t "$T" --json "$@"; }
# iperf3 client, JSON
ip3() { local name=$1; shift; save "$name" "$IPERF3" -c $LO -p $P_IPERF -J "$@"; }
ip3_udp() { # ip3_udp NAME SECS RATE [flags]: prints "received-bit/s lost-% sent-bit/s"
    local name=$1 secs=$2 rate=$3; shift 3
    ip3 "$name" -u -l 1472 -b "$rate" -t "$secs" "$@" |
        jq -r '"\(.end.sum_received.bits_per_second) \(.end.sum_received.lost_percent) \(.end.sum_sent.bits_per_second)"'
}
# iperf3's highest -b with <= 1 % lost (see the header); prints the rate in bit/s. The bounds
# are what an unpaced run sent (an overrun receiver can deliver far less than the rate it can
# take when paced) and 1/64 of it; seven 1 s probes bisect between them on a log scale.
ip3_search() {
    local name=$1; shift
    local got lost sent lo hi mid
    read -r got lost sent < <(ip3_udp "$name-search" 1 0 "$@")
    if awk -v l="$lost" 'BEGIN { exit !(l <= 1) }'; then printf '%.0f\n' "$sent"; return; fi
    hi=$sent; lo=$(awk -v s="$sent" 'BEGIN { printf "%.0f", s / 64 }')
    for _ in 1 2 3 4 5 6 7; do
        mid=$(awk -v a="$lo" -v b="$hi" 'BEGIN { printf "%.0f", sqrt(a * b) }')
        read -r got lost sent < <(ip3_udp "$name-search" 1 "$mid" "$@")
        if awk -v l="$lost" 'BEGIN { exit !(l <= 1) }'; then lo=$mid; else hi=$mid; fi
    done
    echo "$lo"
}

echo "machine: $(nproc) CPUs, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" | tee "$OUT/machine.txt" >&2
echo "socklab $("$SOCKLAB" --version | awk '{print $2}'), $("$IPERF3" --version | head -1), sockperf $(sockperf --version 2>&1 | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1), xfr $(xfr --version 2>/dev/null | awk '{print $2}')" | tee -a "$OUT/machine.txt" >&2
echo "reps=$REPS, duration=${T}s per run, raw output in $OUT" >&2

# two slots: latency-under-load runs its probes and its bulk stream as two tests at once
start_bg "$SOCKLAB" bench server --bind $LO:$P_SOCKLAB --max-tests 2
start_bg "$IPERF3" -s -p $P_IPERF
need xfr && start_bg xfr serve -B $LO -p $P_XFR --no-mdns
start_bg sockperf server -i $LO -p $P_SOCKPERF
start_bg sockperf server -i $LO -p $((P_SOCKPERF + 10)) --tcp

for rep in $(seq "$REPS"); do
    echo "rep $rep/$REPS" >&2
    want tcp && for p in 1 2 4 8 16; do
        add "tcp$p" socklab "$(sl "tcp-P$p" --test stream --tcp -l 128K -P "$p" | jq -r '.results[0].bits_per_second')"
        add "tcp$p" iperf3 "$(ip3 "iperf3-tcp-P$p" -l 128K -P "$p" -t "$T" | jq -r '.end.sum_received.bits_per_second')"
        if need xfr; then
            add "tcp$p" xfr "$(save "xfr-tcp-P$p" xfr $LO -p $P_XFR -P "$p" -t "$T" --json --no-tui -q | jq -r '.throughput_mbps * 1e6' 2>/dev/null || true)"
        fi
    done
    want udp && for path in fast nogso; do
        if [ $path = fast ]; then slx=(); ipx=("${GSRO[@]}"); else slx=(--no-gso --no-gro); ipx=(); fi
        j=$(sl "udp-$path" --test stream -u -l 1472 "${slx[@]}")
        add "udp_$path" socklab "$(echo "$j" | jq -r '.results[0].bits_per_second')"
        add "udp_$path" socklab_loss "$(echo "$j" | jq -r '.results[0].lost_percent')"
        rate=$(ip3_search "iperf3-udp-$path" "${ipx[@]}")
        read -r got lost _ < <(ip3_udp "iperf3-udp-$path" "$T" "$rate" "${ipx[@]}")
        add "udp_$path" iperf3 "$got"
        add "udp_$path" iperf3_loss "$lost"
    done
    want rr && for proto in udp tcp; do
        j=$(sl "rr-$proto" --test rr "--$proto" -l 64)
        add "rr_$proto" socklab_p50 "$(echo "$j" | jq -r '.results[0].latency.p50_ns / 1000')"
        add "rr_$proto" socklab_p99 "$(echo "$j" | jq -r '.results[0].latency.p99_ns / 1000')"
        port=$P_SOCKPERF spx=()
        [ $proto = tcp ] && port=$((P_SOCKPERF + 10)) spx=(--tcp)
        out=$(run sockperf ping-pong -i $LO -p "$port" "${spx[@]}" -m 64 -t "$T" --full-rtt 2>&1 | tee "$OUT/sockperf-rr-$proto.$rep.txt" || true)
        add "rr_$proto" sockperf_p50 "$(echo "$out" | sed -n 's/.*percentile 50.000 = *\([0-9.]*\).*/\1/p' | tail -1)"
        add "rr_$proto" sockperf_p99 "$(echo "$out" | sed -n 's/.*percentile 99.000 = *\([0-9.]*\).*/\1/p' | tail -1)"
    done
    want underload || continue
    j=$(sl underload --test latency-under-load)
    for proto in tcp udp; do
        for load in false true; do
            q=".results[] | select(.transport == \"$proto\" and .under_load == $load)"
            add "ul_${proto}_$load" p50 "$(echo "$j" | jq -r "$q | .latency.p50_ns / 1000")"
            add "ul_${proto}_$load" p99 "$(echo "$j" | jq -r "$q | .latency.p99_ns / 1000")"
            add "ul_${proto}_$load" p999 "$(echo "$j" | jq -r "$q | .latency.p999_ns / 1000")"
        done
    done
done

m() { printf '%s' "${V["$1,$2"]:-}" | grep -v '^$' | grep -v null | median; }
gbps() { awk -v v="$1" 'BEGIN { if (v=="") print "-"; else printf "%.1f Gbit/s", v/1e9 }'; }
pc() { awk -v v="$1" 'BEGIN { if (v=="") print "-"; else printf "%.2f", v }'; }
us() { awk -v v="$1" 'BEGIN { if (v=="") print "-"; else printf "%.1f us", v }'; }
row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }

{
    echo "Medians of $REPS interleaved runs of ${T} s; $(head -1 "$OUT/machine.txt")."
    echo "$(tail -1 "$OUT/machine.txt")."
    echo
    row "figure" "socklab" "other tool" "ratio" "goal"
    row "---" "---:" "---:" "---:" "---"
    for p in 1 2 4 8 16; do
        row "TCP 128 KiB writes, -P $p, vs iperf3" "$(gbps "$(m tcp$p socklab)")" "$(gbps "$(m tcp$p iperf3)")" "$(ratio "$(m tcp$p socklab)" "$(m tcp$p iperf3)")" ">= 1.1x"
        need xfr && row "TCP -P $p vs xfr (xfr's write size)" "$(gbps "$(m tcp$p socklab)")" "$(gbps "$(m tcp$p xfr)")" "$(ratio "$(m tcp$p socklab)" "$(m tcp$p xfr)")" "-"
    done
    row "UDP 1472 B fastest path vs iperf3 ${GSRO[*]:-(no --gsro)}" "$(gbps "$(m udp_fast socklab)"), $(pc "$(m udp_fast socklab_loss)") % lost" "$(gbps "$(m udp_fast iperf3)"), $(pc "$(m udp_fast iperf3_loss)") % lost" "$(ratio "$(m udp_fast socklab)" "$(m udp_fast iperf3)")" ">= 2x at <= 1 % lost"
    row "UDP 1472 B without GSO/GRO vs iperf3" "$(gbps "$(m udp_nogso socklab)"), $(pc "$(m udp_nogso socklab_loss)") % lost" "$(gbps "$(m udp_nogso iperf3)"), $(pc "$(m udp_nogso iperf3_loss)") % lost" "$(ratio "$(m udp_nogso socklab)" "$(m udp_nogso iperf3)")" ">= 1.1x at <= 1 % lost"
    for proto in udp tcp; do
        for q in p50 p99; do
            s=$(m "rr_$proto" "socklab_$q"); o=$(m "rr_$proto" "sockperf_$q")
            row "${proto^^} 64 B round trip $q vs sockperf" "$(us "$s")" "$(us "$o")" "$(ratio "$s" "$o")" "<= 1.05x"
        done
    done
    echo
    echo "Latency under load (socklab only; open-loop 64 B probes, p50 / p99 / p99.9):"
    echo
    for proto in tcp udp; do
        for load in false true; do
            beside="nothing"; [ $load = true ] && beside="a ${proto^^} bulk stream"
            echo "- ${proto^^} probes beside $beside: $(us "$(m "ul_${proto}_$load" p50)") / $(us "$(m "ul_${proto}_$load" p99)") / $(us "$(m "ul_${proto}_$load" p999)")"
        done
    done
} | tee "$OUT/summary.md"
