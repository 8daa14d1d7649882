#!/bin/bash
# Engine-level benchmarks of vdisk beside qemu-img, in one run.  Writes
# bench/results/engine-raw.txt (RESULT lines) and engine-latest.md (the
# table, also printed).  Not part of `make check`.
#
#   bench/run-engine.sh [PART...]     parts: 1 2 3 4 5 (default: all)
#
# Environment:
#   VDISK_BENCH_TMP  scratch directory for stores and images
#                    (default /work/bench-tmp; never inside the repository)
#   P2_BIG           bytes written for the large snapshot case (default 8G)
#   VDISK            the vdisk program (default: ./vdisk at the top)
#   BUILD            the top build directory to link against (default build)
#   P4_RUNS          rounds of part 4's timed imports (default 3; median)
#   ENGINE_RAW, ENGINE_MD  where the RESULT lines and the table go (default
#                    results/engine-raw.txt, results/engine-latest.md; relative
#                    paths are from bench/); e.g.
#                    part 3 alone into files of its own:
#                      ENGINE_RAW=results/history-raw.txt \
#                      ENGINE_MD=results/history.md bench/run-engine.sh 3
#
# Part 4 needs a Debian 12 minbase image; the first run makes it with
# debootstrap (a few minutes) and keeps it in bench/cache/.
set -u -o pipefail
source "$(dirname "$0")/dirs.sh" ""
parts=${*:-1 2 3 4 5}
big=${P2_BIG:-8G}
raw=${ENGINE_RAW:-$bench/results/engine-raw.txt}
md=${ENGINE_MD:-$bench/results/engine-latest.md}
vdisk=${VDISK:-$top/vdisk}
case "$vdisk" in /*) ;; *) vdisk=$bench/$vdisk ;; esac
mkdir -p "$bench/results" "$tmp"

say() { printf '== %s\n' "$*" >&2; }
res() { echo "RESULT $1 $2 $3" | tee -a "$raw"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
alloc() { du -sB1 "$1" | cut -f1; }        # allocated bytes
apparent() { du -sb "$1" | cut -f1; }      # apparent bytes

say "building"
make -s -C "$bench" ${BUILD:+BUILD=$BUILD} bench-engine >&2 || exit 1

# A full run starts afresh; a partial one replaces only its parts' figures.
meta=meta
if [ -z "${*:-}" ] || [ ! -f "$raw" ]; then
	: >"$raw"
else
	meta=rerun
	pat='^RESULT (rerun\.'
	for p in $parts; do pat="$pat|p$p\.|q$p\."; done
	grep -Ev "$pat)" "$raw" >"$raw.keep" || :
	mv "$raw.keep" "$raw"
	res rerun.parts "$(echo $parts | tr -d ' ')" parts
fi
res $meta.date "$(date +%s)" unix
res $meta.nproc "$(nproc)" cpus
commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
# bench-engine and vdisk are built from the work tree: say if it differs.
[ -n "$(git -C "$top" status --porcelain -- engine format cli nbd 2>/dev/null)" ] && commit="$commit+uncommitted"
res $meta.commit "$commit" commit
res $meta.load_start "$(cut -d' ' -f1 /proc/loadavg)" load
started=$(now)

# ---- qemu-img bench helpers -------------------------------------------------
# Random 4 KiB pattern identical to bench-engine's: block i is
# (i * 104729) mod 262144 of a 1 GiB image, via qemu-img bench's -S step with
# wrap-around.  aio=threads, cache=writeback (qemu-img's defaults); write runs
# end with one flush (--flush-interval=COUNT), counted in the time.
nblk=262144
stride=$((4096 * 104729))
qbench() { # KEY FMT FILE WRITE DEPTH STEP
	local key=$1 fmt=$2 file=$3 write=$4 depth=$5 step=$6 out secs
	local args=(-f "$fmt" -c $nblk -d "$depth" -s 4096 -S "$step")
	[ "$write" = 1 ] && args+=(-w --flush-interval=$nblk)
	out=$(qemu-img bench "${args[@]}" "$file") || { echo "$out" >&2; return 1; }
	secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' <<<"$out")
	res "$key.iops" "$(awk -v n=$nblk -v s="$secs" 'BEGIN { printf "%.0f", n / s }')" IOPS
	res "$key.mbs" "$(awk -v n=$nblk -v s="$secs" 'BEGIN { printf "%.1f", n * 4096 / s / 1e6 }')" MB/s
}

part1_qemu() { # FMT
	local fmt=$1 f="$tmp/q1.$1" t0
	newimg() { rm -f "$f"; if [ "$fmt" = raw ]; then truncate -s 1G "$f"; else qemu-img create -q -f qcow2 "$f" 1G; fi; }
	say "part 1: qemu-img bench, $fmt"
	newimg; qbench "q1.$fmt.randwrite_empty_t1" "$fmt" "$f" 1 1 $stride
	newimg; qbench "q1.$fmt.seqwrite_t1" "$fmt" "$f" 1 1 4096
	qbench "q1.$fmt.seqread_t1" "$fmt" "$f" 0 1 4096
	qbench "q1.$fmt.randread_t1" "$fmt" "$f" 0 1 $stride
	qbench "q1.$fmt.randread_t4" "$fmt" "$f" 0 4 $stride
	qbench "q1.$fmt.randwrite_t1" "$fmt" "$f" 1 1 $stride
	qbench "q1.$fmt.randwrite_t4" "$fmt" "$f" 1 4 $stride
	if [ "$fmt" = qcow2 ]; then
		for d in 1 4; do
			t0=$(now); qemu-img snapshot -c "s$d" "$f"
			res "q1.qcow2.snapshot_t$d" "$(elapsed "$t0" "$(now)")" s
			qbench "q1.qcow2.randwrite_snap_t$d" qcow2 "$f" 1 "$d" $stride
		done
	else
		# raw has no snapshots: the same overwrite again, for reference
		qbench "q1.raw.randwrite_snap_t1" raw "$f" 1 1 $stride
		qbench "q1.raw.randwrite_snap_t4" raw "$f" 1 4 $stride
	fi
	rm -f "$f"
}

part1() {
	local s="$tmp/p1.store"
	rm -rf "$s"
	say "part 1: vdisk engine, 1 GiB volume, 4 KiB requests"
	"$bench/bench-engine" io "$s" | tee -a "$raw" || say "part 1 (vdisk) FAILED"
	res p1.store_alloc "$(alloc "$s" 2>/dev/null || echo 0)" B
	rm -rf "$s"
	part1_qemu raw
	part1_qemu qcow2
}

# ---- part 2 -------------------------------------------------------------------
part2() {
	local s="$tmp/p2.store" size
	for size in 8M "$big"; do
		rm -rf "$s"
		say "part 2: snapshot/clone after $size written"
		"$bench/bench-engine" snap "$s" "$size" | tee -a "$raw" || say "part 2 ($size) FAILED"
		res "p2.$size.store_alloc" "$(alloc "$s")" B
		rm -rf "$s"
	done
}

# ---- parts 3 and 5 -------------------------------------------------------------
part3() {
	local s="$tmp/p3.store"
	rm -rf "$s"
	"$bench/bench-engine" build3 "$s" | tee -a "$raw" || { say "part 3 build FAILED"; return; }
	# A 640 MiB chunk cache, so that "warm" means in the cache: the warm
	# rows read the three volumes in turn (~460 MiB of distinct chunks;
	# the default cache is 96 MiB).
	VDISK_CACHE_MB=${VDISK_CACHE_MB:-640} "$bench/bench-engine" read3 "$s" |
		tee -a "$raw" || say "part 3 reads FAILED"
	[[ " $parts " == *" 5 "* ]] && part5 "$s"
	rm -rf "$s"
}

part5() { # STORE (from part 3)
	local s=$1
	# The switch must be in the engine linked into bench-engine.
	if grep -qa 'VDISK_IO' "$bench/bench-engine"; then
		for io in pread uring; do
			say "part 5: cold reads with VDISK_IO=$io"
			VDISK_IO=$io "$bench/bench-engine" cold "$s" "$io" | tee -a "$raw" ||
				say "part 5 ($io) FAILED"
		done
		res p5.available 1 flag
	else
		say "part 5: the engine has no VDISK_IO switch; skipped"
		res p5.available 0 flag
	fi
}

# ---- part 4 -------------------------------------------------------------------
make_image() {
	local img=$bench/cache/debian12-minbase.img root=$bench/cache/rootfs
	[ -s "$img" ] && return 0
	mkdir -p "$bench/cache"
	if [ ! -x "$root/bin/sh" ]; then
		command -v debootstrap >/dev/null || apt-get install -y debootstrap >&2 || return 1
		say "part 4: debootstrap --variant=minbase bookworm (one time, a few minutes)"
		rm -rf "$root"
		debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian \
			>"$bench/cache/debootstrap.log" 2>&1 || { say "debootstrap failed"; return 1; }
	fi
	mkfs.ext4 -q -F -d "$root" "$img.tmp" 4G && mv "$img.tmp" "$img"
}

# Timed runs of part 4: each tool is run P4_RUNS times (default 3), vdisk
# and qemu-img with zstd back to back in each round so that both see the
# same load; the median counts.  CPU seconds (user + system) are kept too:
# on a loaded machine they say more than the elapsed time.
p4_timed() { # KEY CMD...: runs CMD, appends "elapsed cpu" to $tmp/KEY.times
	local key=$1 out
	shift
	out=$(mktemp)
	/usr/bin/time -f '%e %U %S' -o "$out" "$@" >&2 || { rm -f "$out"; return 1; }
	awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$out" >>"$tmp/$key.times"
	rm -f "$out"
}

p4_median() { # KEY FIELD(1 elapsed, 2 cpu)
	sort -n -k"$2" "$tmp/$1.times" | awk -v f="$2" '{ v[NR] = $f }
		END { printf "%.4f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

part4() {
	local img=$bench/cache/debian12-minbase.img s="$tmp/p4.store" t0 q i
	local z="$tmp/p4.zstd.qcow2" runs=${P4_RUNS:-3}
	make_image || { say "part 4: no image; skipped"; return; }
	res p4.image_alloc "$(alloc "$img")" B
	res p4.image_size "$(apparent "$img")" B
	cat "$img" >/dev/null # both read it from the page cache
	rm -f "$tmp/p4.vdisk.times" "$tmp/p4.qcow2_zstd.times"
	for ((i = 1; i <= runs; i++)); do
		say "part 4: vdisk import, then qemu-img convert -O qcow2 -c -o compression_type=zstd ($i of $runs)"
		rm -rf "$s"
		p4_timed p4.vdisk "$vdisk" --store "$s" import deb "$img" || { say "vdisk import FAILED"; return; }
		rm -f "$z"
		p4_timed p4.qcow2_zstd qemu-img convert -O qcow2 -c -o compression_type=zstd "$img" "$z" ||
			{ say "qemu-img convert zstd FAILED"; return; }
	done
	res p4.load_timed "$(cut -d' ' -f1 /proc/loadavg)" load
	res p4.runs "$runs" runs
	res p4.vdisk.import_s "$(p4_median p4.vdisk 1)" s
	res p4.vdisk.cpu_s "$(p4_median p4.vdisk 2)" s
	res p4.qcow2_zstd.import_s "$(p4_median p4.qcow2_zstd 1)" s
	res p4.qcow2_zstd.cpu_s "$(p4_median p4.qcow2_zstd 2)" s
	res p4.qcow2_zstd.alloc "$(alloc "$z")" B
	res p4.qcow2_zstd.apparent "$(apparent "$z")" B
	rm -f "$z"
	res p4.vdisk.alloc "$(alloc "$s")" B
	res p4.vdisk.apparent "$(apparent "$s")" B
	store_json "$s" p4.vdisk
	"$vdisk" --store "$s" check >&2 || say "vdisk check after import FAILED"
	t0=$(now)
	for i in 2 3 4 5 6 7 8 9 10; do
		"$vdisk" --store "$s" import "deb$i" "$img" >&2 || { say "vdisk import $i FAILED"; return; }
	done
	res p4.vdisk10.import_s "$(awk -v a="$(elapsed "$t0" "$(now)")" -v b="$(p4_median p4.vdisk 1)" 'BEGIN { printf "%.4f", a + b }')" s
	res p4.vdisk10.alloc "$(alloc "$s")" B
	store_json "$s" p4.vdisk10
	rm -rf "$s"

	for q in plain zlib; do
		local opts=() out="$tmp/p4.$q.qcow2"
		[ $q = zlib ] && opts=(-c -o compression_type=zlib)
		say "part 4: qemu-img convert -O qcow2 ${opts[*]}"
		rm -f "$out"
		t0=$(now)
		qemu-img convert -O qcow2 "${opts[@]}" "$img" "$out" || { say "qemu-img convert $q FAILED"; continue; }
		res "p4.qcow2_$q.import_s" "$(elapsed "$t0" "$(now)")" s
		res "p4.qcow2_$q.alloc" "$(alloc "$out")" B
		res "p4.qcow2_$q.apparent" "$(apparent "$out")" B
		rm -f "$out"
	done
}

store_json() { # STORE PREFIX: stored/pack/index bytes from `vdisk list --json`
	local j
	j=$("$vdisk" --store "$1" list --json) || { say "vdisk list --json FAILED"; return; }
	python3 -c '
import json, sys
d = json.loads(sys.argv[1]); st = d.get("store", {})
for k in ("stored_bytes", "pack_bytes", "index_bytes", "chunks", "chunk_refs"):
    if k in st: print("RESULT %s.%s %s B" % (sys.argv[2], k, st[k]))
print("RESULT %s.written_bytes %d B" % (sys.argv[2], sum(v.get("written_bytes", 0) or 0 for v in d.get("volumes", []))))
' "$j" "$2" | tee -a "$raw"
}

for p in $parts; do
	res "p$p.load_before" "$(cut -d' ' -f1 /proc/loadavg)" load
	case $p in
	1) part1 ;;
	2) part2 ;;
	3) part3 ;;
	4) part4 ;;
	5) [[ " $parts " == *" 3 "* ]] || { s="$tmp/p3.store"; rm -rf "$s";
	     "$bench/bench-engine" build3 "$s" >/dev/null && part5 "$s"; rm -rf "$s"; } ;;
	*) echo "unknown part $p" >&2 ;;
	esac
done
res $meta.total_s "$(elapsed "$started" "$(now)")" s
res $meta.load_end "$(cut -d' ' -f1 /proc/loadavg)" load

python3 "$bench/report.py" "$raw" >"$md"
cat "$md"
echo >&2
say "wrote $md (raw figures: $raw)"
