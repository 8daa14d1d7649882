#!/bin/bash
# Space amplification with no `vdisk gc`: a 2 GiB volume is filled, then
# served by `vdisk serve` to fio (ioengine=nbd) doing random 4 KiB writes of
# incompressible, never-repeating data with an NBD flush every 8 writes, for
# DURATION seconds; every SAMPLE seconds it records
#   disk     on-disk bytes of the store (du), the journal excluded
#   journal  on-disk bytes of STORE/journal (bounded by VDISK_JOURNAL_MB)
#   live     the live stored bytes (vdisk list --json: store.stored_bytes)
#   pack     the bytes of the data files (store.pack_bytes)
#   ratio    disk / live, the figure bounded by the background compactor
#            (engine/compact.c), and pack / live
#   rss      the server's resident set
# and prints them as a table with the maximum ratio.  A second phase with a
# flush after every write (fio --fsync=1) runs for DURATION2 seconds
# (default 0: skipped).  Not part of make check.
#
#   nice bench/space/run.sh          # 30 min of writes + the fill
#
# Environment:
#   VDISK_BENCH_TMP  scratch directory (default /work/bench-tmp; never
#                    inside the repository)
#   SIZE             volume size (default 2G)
#   DURATION         seconds of random writes with --fsync=8 (default 1800)
#   DURATION2        seconds of random writes with --fsync=1 (default 0)
#   SAMPLE           seconds between samples (default 30)
#   IODEPTH          fio queue depth (default 8)
#   VDISK            the vdisk program (default: ./vdisk at the top)
#   BOUND            the ratio the run must stay within (default 1.5);
#                    the exit status is 1 if the max ratio exceeds it
#
# Writes bench/results/space-COMMIT.md (the table) and prints it.
set -u -o pipefail
source "$(dirname "$0")/../dirs.sh" space
size=${SIZE:-2G}
duration=${DURATION:-1800}
duration2=${DURATION2:-0}
sample=${SAMPLE:-30}
iodepth=${IODEPTH:-8}
bound=${BOUND:-1.5}
vdisk=${VDISK:-$top/vdisk}
refuse_sanitized "$vdisk"
for p in fio du "$vdisk"; do
	command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 77; }
done
commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git -C "$top" status --porcelain -- engine format cli nbd 2>/dev/null)" ] &&
	commit="$commit+uncommitted"
md=$bench/results/space-$commit.md
mkdir -p "$bench/results"
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
store=$tmp/store
sock=$tmp/sock
export VDISK_STORE=$store
server_pid=
sampler_pid=
stop_all() {
	[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null && wait "$sampler_pid" 2>/dev/null
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap stop_all EXIT

say() { printf '== %s\n' "$*" >&2; }

"$vdisk" init >/dev/null && "$vdisk" create vol "$size" || exit 1
"$vdisk" serve --socket "$sock" vol 2>>"$tmp/serve.log" &
server_pid=$!
for _ in $(seq 200); do
	[ -S "$sock" ] && break
	kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/serve.log" >&2; exit 1; }
	sleep 0.1
done
uri="nbd+unix:///vol?socket=$sock"

# One row: t phase disk journal live pack ratio pack_ratio rss_kib load
t0=$(date +%s)
row() {
	local phase=$1 du_all du_j rss json
	# The index first: a seal between the two reads then shows as more
	# disk bytes, never as fewer.
	json=$("$vdisk" list --json 2>/dev/null) || return 0
	du_all=$(du -sB1 "$store" 2>/dev/null | cut -f1)
	du_j=$(du -sB1 "$store/journal" 2>/dev/null | cut -f1)
	rss=$(awk '/^VmRSS:/{print $2}' "/proc/$server_pid/status" 2>/dev/null)
	/usr/bin/python3 -c '
import json, sys
s = json.loads(sys.argv[1])["store"]
t, phase, du_all, du_j, rss, load = sys.argv[2:8]
disk = int(du_all) - int(du_j)
live = max(s["stored_bytes"], 1)
print("%s %s %d %s %d %d %.3f %.3f %s %s %d" % (t, phase, disk, du_j, s["stored_bytes"],
      s["pack_bytes"], disk / live, s["pack_bytes"] / live, rss or 0, load,
      s["compacted_files"]))' "$json" "$(($(date +%s) - t0))" "$phase" "$du_all" "$du_j" \
		"$rss" "$(cut -d' ' -f1 /proc/loadavg)"
}
sampler() {   # sampler PHASE: a row every $sample seconds
	while sleep "$sample"; do row "$1" >>"$tmp/rows"; done
}

fio_run() {   # fio_run NAME FIO-ARGS...
	local name=$1
	shift
	fio --name="$name" --ioengine=nbd --uri="$uri" --output-format=json \
		--output="$tmp/$name.json" "$@" >/dev/null ||
		{ echo "fio $name failed" >&2; exit 1; }
}

: >"$tmp/rows"
load_start=$(cut -d' ' -f1 /proc/loadavg)
say "fill: $size sequential, incompressible"
fio_run fill --rw=write --bs=1M --iodepth=8 --size="$size" --refill_buffers
row fill >>"$tmp/rows"
phases="fsync8:$duration"
[ "$duration2" -gt 0 ] && phases="$phases fsync1:$duration2"
for p in $phases; do
	name=${p%%:*} secs=${p#*:}
	say "$name: random 4 KiB writes, --fsync=${name#fsync}, $secs s"
	sampler "$name" &
	sampler_pid=$!
	fio_run "$name" --rw=randwrite --bs=4k --iodepth="$iodepth" \
		--fsync="${name#fsync}" --size="$size" --time_based --runtime="$secs" \
		--randrepeat=0 --norandommap --refill_buffers
	kill "$sampler_pid" 2>/dev/null
	wait "$sampler_pid" 2>/dev/null
	sampler_pid=
	row "$name" >>"$tmp/rows"
done
# Idle: the compactor's idle bound (1.25 x live + 8 MiB) after at most 120 s.
for _ in $(seq 24); do
	sleep 5
	row idle >"$tmp/idle"
	awk '{exit !($6 <= 1.25 * $5 + 8388608)}' "$tmp/idle" && break
done
cat "$tmp/idle" >>"$tmp/rows"
hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$server_pid/status" 2>/dev/null)
kill "$server_pid" && wait "$server_pid" 2>/dev/null
server_pid=
rm -f "$sock"
"$vdisk" check >"$tmp/check" 2>&1 && check=clean || check="FAILED: $(tail -3 "$tmp/check")"

iops=$(/usr/bin/python3 -c '
import json, sys
out = []
for f in sys.argv[1:]:
    j = json.load(open(f))["jobs"][0]["write"]
    out.append("%s %.0f IOPS, %.1f GiB written" % (f.split("/")[-1][:-5], j["iops"], j["io_bytes"] / 2**30))
print("; ".join(out))' $(for p in $phases; do echo "$tmp/${p%%:*}.json"; done))

{
	echo "# Space amplification, no gc ($commit)"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average at start $load_start," \
	     "at end $(cut -d' ' -f1 /proc/loadavg). Volume $size, filled with incompressible" \
	     "data, then fio (ioengine=nbd, QD $iodepth) random 4 KiB writes of never-repeating" \
	     "incompressible data: $iops. Default settings (journal, dirty memory, compactor)."
	echo "disk = du of the store less the journal (data files + index);" \
	     "live = stored_bytes (live compressed chunk records); ratio = disk / live."
	echo
	echo "| t (s) | phase | disk (MiB) | journal (MiB) | live (MiB) | packs (MiB) | ratio | packs / live | RSS (MiB) | load | files compacted |"
	echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	awk '{printf "| %s | %s | %.0f | %.0f | %.0f | %.0f | %s | %s | %.0f | %s | %s |\n",
	      $1, $2, $3 / 1048576, $4 / 1048576, $5 / 1048576, $6 / 1048576, $7, $8, $9 / 1024, $10, $11}' "$tmp/rows"
	echo
	awk -v b="$bound" -v hwm="${hwm:-0}" '
		$2 != "fill" && $7 > m { m = $7; t = $1 }
		$2 != "fill" && $8 > pm { pm = $8 }
		$4 > j { j = $4 }
		END { printf "Max ratio while writing and after: %.3f (at %d s; bound %s); max packs / live %.3f; max journal %.0f MiB; server peak RSS %.0f MiB.\n", m, t, b, pm, j / 1048576, hwm / 1024 }' "$tmp/rows"
	echo "vdisk check afterwards: $check."
} >"$md"
cat "$md"
awk -v b="$bound" '$2 != "fill" && $7 > b { bad = 1 } END { exit bad }' "$tmp/rows"
