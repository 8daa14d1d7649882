#!/bin/bash
# Random writes across a live snapshot: serves a filled SIZE volume, runs
# fio nbd random 4 KiB writes (QD 32, optionally --fsync=8) for RUNTIME s
# and takes `vdisk snapshot vol@s` SNAPAT s into them, while the journal
# holds the undestaged writes of the seconds before.  The same job runs
# without a snapshot and against nbdkit's file plugin (which has none), in
# the same run.  fio logs the writes completed each second; the table
# gives them around the snapshot, the longest stall (seconds in a row
# below a tenth of the median rate before the snapshot), the server's CPU
# and peak RSS.  Not part of make check.
#
#   bench/snapshot/live.sh                    # ~2 min
#   SYNC=1 RUNTIME=60 bench/snapshot/live.sh
#
# Environment: SIZE (default 2G), RUNTIME (default 30), SNAPAT (default
# 10), SYNC=1 for a flush every 8 writes, SERVERS (default "vdisk-snap
# vdisk nbdkit"), VDISK (default ./vdisk at the top), VDISK_BENCH_TMP.
# Writes bench/results/snapshot-live.md (OUT= to name another file).
set -u -o pipefail
case ${OUT:-} in ""|/*) ;; *) OUT=$PWD/$OUT ;; esac # dirs.sh moves to bench/
source "$(dirname "$0")/../dirs.sh" "snapshot-live-$$"
size=${SIZE:-2G}
runtime=${RUNTIME:-30}
snapat=${SNAPAT:-10}
servers=${SERVERS:-vdisk-snap vdisk nbdkit}
vdisk=${VDISK:-$top/vdisk}
out=${OUT:-$bench/results/snapshot-live.md}
sync=
[ "${SYNC:-0}" = 1 ] && sync=--fsync=8
for p in fio bc "$vdisk"; do
	command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 77; }
done
refuse_sanitized "$vdisk"
case " $servers " in *" nbdkit "*)
	command -v nbdkit >/dev/null || { echo "missing nbdkit" >&2; exit 77; } ;; esac
source "$bench/snapshot/lib.sh"
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }

serve_nbdkit() {
	stop
	rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
	truncate -s "$size" "$tmp/disk.img" || exit 1
	nbdkit --foreground --unix "$sock" --exportname vol file "$tmp/disk.img" \
		2>>"$tmp/serve.log" &
	server_pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
	fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 \
		--size="$size" >/dev/null || exit 1
}

# row SERVER: one timed run; prints a table row
row() {
	local s=$1 c0 c1 snap_pid=
	case $s in nbdkit) serve_nbdkit ;; *) serve_filled ;; esac
	sleep 2 # the fill's own seals and writeback out of the way
	if [ "$s" = vdisk-snap ]; then
		( sleep "$snapat"; t0=$(date +%s.%N)
		  "$vdisk" snapshot vol@s >/dev/null || echo "snapshot failed" >&2
		  echo "$(date +%s.%N) - $t0" | bc >"$tmp/snap.s" ) &
		snap_pid=$!
	fi
	c0=$(cpu_ticks)
	fio --name=w --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=32 \
		$sync --size="$size" --time_based --runtime="$runtime" --randrepeat=0 \
		--write_iops_log="$tmp/w" --log_avg_msec=1000 \
		--output-format=json --output="$tmp/w.json" >/dev/null || exit 1
	c1=$(cpu_ticks)
	[ -n "$snap_pid" ] && wait "$snap_pid"
	/usr/bin/python3 - "$s" "$tmp/w_iops.1.log" "$tmp/w.json" "$snapat" "$runtime" \
		"$(echo "scale=2; ($c1 - $c0) / $hz" | bc)" "$(( $(hwm) / 1024 ))" \
		"$(cat "$tmp/snap.s" 2>/dev/null || echo -)" <<'PY'
import json, statistics, sys
s, log, js, at, rt, cpu, rss, snap = sys.argv[1:9]
at, rt = int(at), int(rt)
per = [0] * rt   # writes completed in each second (fio leaves out empty ones)
for line in open(log):
    t, v = line.split(",")[:2]
    i = int(t) // 1000 - 1
    if 0 <= i < rt:
        per[i] = int(v)
before = per[1:at] or per[:1]
floor = statistics.median(before) / 10
stall = run = 0
for v in per[at:rt - 1]:  # the last second is fio's partial one
    run = run + 1 if v < floor else 0
    stall = max(stall, run)
after = per[at:at + 10]
n = json.load(open(js))["jobs"][0]["write"]["total_ios"]
label = {"vdisk-snap": "vdisk, snapshot at %d s" % at,
         "vdisk": "vdisk, no snapshot", "nbdkit": "nbdkit file plugin"}[s]
print("| %s | %.0f | %.0f | %.0f | %d | %s | %.0f | %s | %s |" % (
    label, statistics.mean(before), statistics.mean(after), n / rt, stall,
    cpu, float(cpu) * 1e6 / max(n, 1), rss, snap))
print("<!-- %s per second: %s -->" % (s, " ".join(map(str, per))))
PY
}

{
	echo "# Random 4 KiB writes across a live snapshot"
	echo
	echo "vdisk $(git -C "$top" rev-parse --short HEAD 2>/dev/null), $(date -u +%FT%RZ), SIZE=$size RUNTIME=$runtime SNAPAT=$snapat${sync:+ fsync=8}, load $(cut -d' ' -f1 /proc/loadavg) at start; $(fio --version), $(nbdkit --version 2>/dev/null | head -1). fio nbd engine, QD 32, over a filled export; one server at a time on the same machine. Single runs: compare rows of this run only."
	echo
	echo "- *before*: mean writes/s over seconds 2..$snapat; *after*: over the 10 s from the snapshot (the same seconds without one)."
	echo "- *stall, s*: the longest run of seconds from $snapat s on with fewer than a tenth of the median rate before."
	echo "- *CPU*: the server's user+system seconds during fio, and per write."
	echo
	echo "| server | before, IOPS | after, IOPS | whole run, IOPS | stall, s | CPU s | CPU µs/write | peak RSS MiB | snapshot took, s |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for s in $servers; do row "$s"; done
	stop
} | tee "$out"
