#!/bin/bash
# The first reader of a live snapshot: serves a SIZE volume (vdisk serve),
# fills it, runs fio nbd random 4 KiB writes (QD 32) for RUNTIME s, takes
# `vdisk snapshot vol@s`, waits DELAY s, then times `vdisk info vol@s`
# (which settles the snapshot's epoch).  Not part of make check.
#
#   bench/snapshot/settle.sh                  # ~1 min
#   ROUNDS=3 VDISK=/path/to/other/vdisk bench/snapshot/settle.sh
#
# Environment: SIZE (default 1G), RUNTIME (default 20), DELAY (default 0),
# ROUNDS (default 1), VDISK (default ./vdisk at the top), PERF=1 to profile
# the server with perf during the settle (bench/results/settle-perf.txt),
# STRACE=1 to count its system calls (bench/results/settle-strace.txt),
# VDISK_BENCH_TMP.  Prints one line per round: the random writes' IOPS,
# the snapshot's and the info's seconds, the server's CPU seconds during
# the info, its RSS before and peak, the load.
set -u -o pipefail
source "$(dirname "$0")/../dirs.sh" "snapshot-$$"
size=${SIZE:-1G}
runtime=${RUNTIME:-20}
delay=${DELAY:-0}
rounds=${ROUNDS:-1}
vdisk=${VDISK:-$top/vdisk}
refuse_sanitized "$vdisk"
for p in fio "$vdisk"; do
	command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 77; }
done
source "$bench/snapshot/lib.sh"
now() { date +%s.%N; }
rss() { awk '/^VmRSS:/{print $2}' "/proc/$server_pid/status"; }

for round in $(seq "$rounds"); do
	serve_filled
	iops=$(random_writes) || exit 1
	rss0=$(rss)
	t0=$(now)
	"$vdisk" snapshot vol@s >/dev/null || exit 1
	t1=$(now)
	sleep "$delay"
	[ "${PERF:-0}" = 1 ] && { perf record -F 999 -o "$tmp/perf.data" -p "$server_pid" 2>/dev/null & perf_pid=$!; sleep 0.5; }
	[ "${STRACE:-0}" = 1 ] && { strace -f -c -w -o "$bench/results/settle-strace.txt" -p "$server_pid" 2>/dev/null & strace_pid=$!; sleep 0.5; }
	c0=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
	t2=$(now)
	"$vdisk" info vol@s >"$tmp/info.txt" || exit 1
	t3=$(now)
	c1=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
	[ "${STRACE:-0}" = 1 ] && { kill -INT "$strace_pid"; wait "$strace_pid"; }
	if [ "${PERF:-0}" = 1 ]; then
		kill -INT "$perf_pid"; wait "$perf_pid"
		perf report -i "$tmp/perf.data" --no-children --sort sym --percent-limit 0.5 \
			--stdio >"$bench/results/settle-perf.txt" 2>/dev/null
	fi
	echo "settle round=$round iops=$iops snapshot=$(echo "$t1 - $t0" | bc) info=$(echo "$t3 - $t2" | bc) server_cpu=$(echo "scale=2; ($c1 - $c0) / $(getconf CLK_TCK)" | bc) delay=$delay rss_before_kb=$rss0 rss_peak_kb=$(hwm) load=$(cut -d' ' -f1 /proc/loadavg)"
done
