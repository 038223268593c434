#!/usr/bin/env bash
# bench-compare.sh: socklab bench side by side with iperf3, sockperf and xfr, on loopback only,
# in one run, several repetitions; prints each figure's median and the ratio to the goal.
#
#   scripts/bench-compare.sh            # REPS=3 T=2 by default
#   REPS=5 T=3 scripts/bench-compare.sh
#
# Installs iperf3 and sockperf (apt) and xfr (cargo install xfr) when missing. Every run is
# bounded (timeout), every server it starts is killed by its pid on exit. Traffic: 127.0.0.1 only.
set -euo pipefail

REPS=${REPS:-3}
T=${T:-2}
cd "$(dirname "$0")/.."
SOCKLAB=${SOCKLAB:-target/release/socklab}
cargo build --release --quiet
LO=127.0.0.1
P_IPERF=15201 P_SOCKPERF=15202 P_XFR=15203
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

export PATH="$HOME/.cargo/bin:$PATH"
need() { command -v "$1" >/dev/null 2>&1; }
if ! need iperf3 || ! need sockperf; then
    apt-get install -y iperf3 sockperf >/dev/null || echo "warning: apt-get install iperf3 sockperf failed" >&2
fi
if ! need xfr; then
    cargo install xfr --quiet || echo "warning: cargo install xfr failed; xfr columns will be empty" >&2
fi
# xfr: no update check (no traffic off the machine); its server runs with --no-mdns.
export XFR_NO_UPDATE_CHECK=1 DO_NOT_TRACK=1

# median of the numbers on stdin (empty input: empty output)
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) exit; if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a=="" || b=="" || b==0) print "-"; else printf "%.2f", a/b }'; }
run() { timeout $((T + 20)) "$@"; }

start_bg() { "$@" >/dev/null 2>&1 & PIDS+=($!); LAST=$!; sleep 0.3; }
stop_bg() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

sl() { run "$SOCKLAB" bench local -t "$T" --json "$@"; }
# jq over socklab's first result row
slq() { jq -r ".results[0].$1"; }

declare -A V   # V[figure,tool] = newline-separated samples

add() { V["$1,$2"]+="$3"$'\n'; }

echo "machine: $(nproc) CPUs, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >&2
echo "reps=$REPS, duration=${T}s per run" >&2

# UDP 1472 B: socklab paces at 0.8x what an unpaced run just delivered (calibrated every
# repetition, since the machine's load moves it), so that loss stays <= 1 %.
pace() {
    local un
    un=$(run "$SOCKLAB" bench local -u -l 1472 -b 0 -t 1 --json | slq bits_per_second)
    awk -v r="$un" 'BEGIN { printf "%.0f", r * 0.8 }'
}

start_bg iperf3 -s -p $P_IPERF; IPERF_PID=$LAST
if need xfr; then start_bg xfr serve -B $LO -p $P_XFR --no-mdns; XFR_PID=$LAST; fi
start_bg sockperf server -i $LO -p $P_SOCKPERF; SP_PID=$LAST

for rep in $(seq "$REPS"); do
    echo "rep $rep/$REPS" >&2
    PACE=$(pace)
    echo "  UDP 1472 B pacing at $PACE bit/s" >&2
    j=$(sl -u -l 1472 -b "$PACE")
    add udp1472 socklab "$(echo "$j" | slq bits_per_second)"
    add udp1472 socklab_loss "$(echo "$j" | slq lost_percent)"
    j=$(run iperf3 -c $LO -p $P_IPERF -u -b 0 -l 1472 -t "$T" -J)
    add udp1472 iperf3 "$(echo "$j" | jq -r '.end.sum_received.bits_per_second // (.end.sum.bits_per_second * (1 - .end.sum.lost_percent/100))')"
    add udp1472 iperf3_loss "$(echo "$j" | jq -r '.end.sum.lost_percent')"
    if need xfr; then
        j=$(run xfr $LO -p $P_XFR -u -b 0 -l 1472 -t "$T" --json --no-tui -q 2>/dev/null || true)
        # throughput_mbps is over the bytes received (bytes_total = packets_received x size)
        add udp1472 xfr "$(echo "$j" | jq -r '.throughput_mbps * 1e6' 2>/dev/null || true)"
        add udp1472 xfr_loss "$(echo "$j" | jq -r '.udp_stats.lost_percent' 2>/dev/null || true)"
    fi

    # --- UDP 64 B message rate
    add udp64 socklab "$(sl --test rate -u -l 64 | slq packets_per_second)"
    add udp64 socklab_nogso "$(sl --test rate -u -l 64 --no-gso --no-gro | slq packets_per_second)"
    add udp64 sockperf "$(run sockperf throughput -i $LO -p $P_SOCKPERF -m 64 -t "$T" 2>&1 | sed -n 's/.*Message Rate is \([0-9]*\).*/\1/p' | tail -1)"

    # --- TCP one stream, 128 KiB and 1 MiB writes
    for w in 128K 1M; do
        add "tcp$w" socklab "$(sl --tcp -l $w | slq bits_per_second)"
        add "tcp$w" iperf3 "$(run iperf3 -c $LO -p $P_IPERF -l $w -t "$T" -J | jq -r '.end.sum_received.bits_per_second')"
        if need xfr; then
            # xfr's -l stops at 65507 bytes (a UDP size): its TCP runs use its own write size.
            j=$(run xfr $LO -p $P_XFR -t "$T" --json --no-tui -q 2>/dev/null || true)
            add "tcp$w" xfr "$(echo "$j" | jq -r '.throughput_mbps * 1e6' 2>/dev/null || true)"
        fi
    done
done
stop_bg "$SP_PID"

# --- rr 64 B: p50/p99 round trip, socklab vs sockperf ping-pong --full-rtt (µs)
pct() { sed -n "s/.*percentile $1 = *\([0-9.]*\).*/\1/p" | tail -1; }
for variant in unpinned onecpu busypoll; do
    case $variant in
        unpinned) SRV=(); CLI=(); SLX=(); SPX=() ;;
        onecpu)   SRV=(taskset -c 0); CLI=(taskset -c 0); SLX=(--cpu 0); SPX=() ;;
        busypoll) SRV=(taskset -c 0); CLI=(taskset -c 1); SLX=(--busy-poll --cpu 0,1); SPX=(--nonblocked) ;;
    esac
    start_bg "${SRV[@]}" sockperf server -i $LO -p $P_SOCKPERF "${SPX[@]}"; SP_PID=$LAST
    for rep in $(seq "$REPS"); do
        pre=()
        [ "$variant" = onecpu ] && pre=(taskset -c 0)
        j=$(run "${pre[@]}" "$SOCKLAB" bench local --test rr -u -l 64 -t "$T" --json "${SLX[@]}")
        add "rr_$variant" socklab_p50 "$(echo "$j" | jq -r '.results[0].latency.p50_ns / 1000')"
        add "rr_$variant" socklab_p99 "$(echo "$j" | jq -r '.results[0].latency.p99_ns / 1000')"
        out=$(run "${CLI[@]}" sockperf ping-pong -i $LO -p $P_SOCKPERF -m 64 -t "$T" --full-rtt "${SPX[@]}" 2>&1 || true)
        add "rr_$variant" sockperf_p50 "$(echo "$out" | pct 50.000)"
        add "rr_$variant" sockperf_p99 "$(echo "$out" | pct 99.000)"
    done
    stop_bg "$SP_PID"
done
stop_bg "$IPERF_PID"
[ -n "${XFR_PID:-}" ] && stop_bg "$XFR_PID"

m() { printf '%s' "${V["$1,$2"]:-}" | grep -v '^$' | grep -v null | median; }
gbps() { awk -v v="$1" 'BEGIN { if (v=="") print "-"; else printf "%.2f Gbit/s", v/1e9 }'; }
row() { printf '%-34s %-30s %-30s %-8s %s\n' "$@"; }
pc() { awk -v v="$1" 'BEGIN { if (v=="") print "-"; else printf "%.2f", v }'; }

echo
row "figure (median of $REPS)" "socklab" "other" "ratio" "goal"
row "UDP 1472 B goodput vs iperf3" "$(gbps "$(m udp1472 socklab)") ($(pc "$(m udp1472 socklab_loss)") % lost)" "$(gbps "$(m udp1472 iperf3)") ($(pc "$(m udp1472 iperf3_loss)") % lost)" "$(ratio "$(m udp1472 socklab)" "$(m udp1472 iperf3)")" ">= 3x, loss <= 1 %"
row "UDP 1472 B goodput vs xfr" "$(gbps "$(m udp1472 socklab)")" "$(gbps "$(m udp1472 xfr)") ($(pc "$(m udp1472 xfr_loss)") % lost)" "$(ratio "$(m udp1472 socklab)" "$(m udp1472 xfr)")" "> 1x"
row "UDP 64 B rate vs sockperf tp" "$(m udp64 socklab | xargs printf '%.0f') msg/s" "$(m udp64 sockperf) msg/s" "$(ratio "$(m udp64 socklab)" "$(m udp64 sockperf)")" ">= 2x"
row "UDP 64 B rate, no GSO/GRO" "$(m udp64 socklab_nogso | xargs printf '%.0f') msg/s" "$(m udp64 sockperf) msg/s" "$(ratio "$(m udp64 socklab_nogso)" "$(m udp64 sockperf)")" ">= 2x"
for w in 128K 1M; do
    row "TCP $w writes vs iperf3" "$(gbps "$(m tcp$w socklab)")" "$(gbps "$(m tcp$w iperf3)")" "$(ratio "$(m tcp$w socklab)" "$(m tcp$w iperf3)")" ">= 1.1x"
    row "TCP $w writes vs xfr (xfr default -l)" "$(gbps "$(m tcp$w socklab)")" "$(gbps "$(m tcp$w xfr)")" "$(ratio "$(m tcp$w socklab)" "$(m tcp$w xfr)")" ">= 1x"
done
for variant in unpinned onecpu busypoll; do
    for q in p50 p99; do
        s=$(m "rr_$variant" "socklab_$q"); o=$(m "rr_$variant" "sockperf_$q")
        row "rr 64 B $q $variant (us)" "$s" "$o" "$(ratio "$s" "$o")" "<= 1.05x"
    done
done
