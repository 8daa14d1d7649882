#!/bin/bash
# NBD benchmark: the same client (fio ioengine=nbd over a Unix socket; a
# libnbd Python client for the flush timing) against `vdisk serve` and its
# anchors, in one run, reported as figures and ratios ("the client matters":
# every server gets the same client).  Not part of make check.
#
#   bench/nbd/run.sh            # ~15-17 min on 2 cores with the defaults
#
# Servers (one at a time; scratch data deleted between them):
#   vdisk         vdisk serve, default cache
#   vdisk-cache   vdisk serve --cache SIZE (caches every decompressed chunk)
#   vdisk-snap    vdisk serve, `vdisk snapshot` taken (live) right before
#                 each random-write job (random writes only, with and
#                 without flushes)
#   vdisk-deep    the deepest clone of a 20-level snapshot+clone chain, each
#                 level with a few small `vdisk import --existing` writes
#                 (random QD32 only)
#   qemu-raw      qemu-nbd, raw file
#   qemu-qcow2    qemu-nbd, qcow2
#   qemu-overlay  qemu-nbd, qcow2 overlay (-b base.qcow2 -F qcow2); the data
#                 is written into the base, then every later job runs on the
#                 overlay
#   qemu-snap     qemu-nbd, qcow2, `qemu-img snapshot -c` taken right before
#                 each random-write job (server stopped for it)
#   nbdkit        nbdkit's file plugin, raw file
#
# Workloads (in this order, each over the whole export):
#   seqw / seqr          sequential 1 MiB, queue depth 8, SIZE bytes
#   seqr2                the same read again (with VDISK_DIRECT=on, vdisk's
#                        whole-chunk writes bypass the page cache: its seqr
#                        then reads from the disk, seqr2 from the page cache)
#   randw1 / randw32     random 4 KiB writes over the data, QD 1 / 32, RUNTIME s
#   randwf1 / randwf32   the same with an NBD flush after every 8 writes
#                        (fio --fsync=8), QD 1 / 32, RUNTIME s
#   randw32l             random 4 KiB writes, QD 32, LONG s: long enough that
#                        vdisk's journal fills and destage must keep up (only
#                        when JOBS names it: it adds LONG s per server)
#   randr1 / randr32     random 4 KiB reads of the data, QD 1 / 32, RUNTIME s
#   randr1s / randr32s   the same, each right after the server restarts
#                        (its own caches empty, the page cache warm)
#   flush                write BURST bytes (1 MiB, QD 8, no flush), then time
#                        one NBD flush on its own
# Per job: the server's CPU time (utime+stime of its process, /proc/PID/stat)
# per GiB moved and per request (reads+writes; flushes are not counted as
# requests, their CPU is), counted until the server is idle again after the
# client left (work deferred past the disconnect, like vdisk sealing chunks
# in the background and at close, belongs to the job that caused it; the
# seconds it kept busy are recorded as WORKLOAD.tail); per server: peak RSS
# (VmHWM; the max over restarts) and peak RssAnon (sampled every 0.2 s:
# VmHWM counts mapped file pages too, such as vdisk's LMDB index).
#
# Environment:
#   VDISK_BENCH_TMP  scratch directory (default /work/bench-tmp; never
#                    inside the repository)
#   SIZE             export size (default 2G); sequential jobs cover it
#   RUNTIME          seconds per random job (default 10)
#   LONG             seconds of randw32l (default 60)
#   BURST            bytes written before the timed flush (default 512M)
#   DEPTH            snapshot+clone levels for vdisk-deep (default 20)
#   SERVERS          subset of the servers above (default: all)
#   JOBS             subset of the workloads above (default: all); when it
#                    has reads or random writes but not seqw, the export is
#                    filled first (not recorded), e.g. JOBS="seqr randr1 randr32"
#                    SERVERS="vdisk nbdkit" for the read path alone
#   VDISK            the vdisk program (default: ./vdisk at the top)
#
# Writes bench/results/nbd-raw.txt (RESULT lines) and nbd-latest.md
# (bench/nbd/report.py turns the first into the second).
set -u -o pipefail
source "$(dirname "$0")/../dirs.sh" nbd
size=${SIZE:-2G}
runtime=${RUNTIME:-10}
long=${LONG:-60}
burst=${BURST:-512M}
depth=${DEPTH:-20}
servers=${SERVERS:-vdisk vdisk-cache vdisk-snap vdisk-deep qemu-raw qemu-qcow2 qemu-overlay qemu-snap nbdkit}
vdisk=${VDISK:-$top/vdisk}
raw=$bench/results/nbd-raw.txt
md=$bench/results/nbd-latest.md
mkdir -p "$bench/results"
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
for p in fio nbdkit qemu-nbd qemu-img numfmt "$vdisk"; do
	command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 77; }
done
refuse_sanitized "$vdisk"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "missing python3-libnbd" >&2; exit 77; }
size_b=$(numfmt --from=iec "${size%iB}") || exit 2
burst_b=$(numfmt --from=iec "${burst%iB}") || exit 2
hz=$(getconf CLK_TCK)
: >"$raw"
t_start=$(date +%s)

# shellcheck source=bench/nbd/common.sh
source "$bench/nbd/common.sh"

record_build
res meta size "$size"
res meta runtime "$runtime"
res meta long "$long"
res meta burst "$burst"
res meta depth "$depth"
res meta servers "$servers"
res meta jobs "${JOBS:-all}"
res meta load_start "$(cut -d' ' -f1 /proc/loadavg)"
res meta versions "$(fio --version)/qemu-nbd-$(qemu-nbd --version | awk 'NR==1{print $2}')/nbdkit-$(nbdkit --version | awk '{print $2}')"


# Warm the machine's memory first.  Twice, on a machine booted shortly
# before, the run's first job (vdisk's sequential writes) took twice its
# usual CPU per GiB (0.30x and 0.50x qemu-nbd raw, against 1.2-2.0x when
# run again): most likely the first touch of guest memory, which the host
# backs only then.  Writing twice SIZE into tmpfs and freeing it touches
# as much as the page cache of a job takes, for no server in particular.
warm_memory() {
	local dir=/dev/shm mib=$((2 * size_b >> 20))
	local avail_mib=$(($(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) >> 10))
	[ -d "$dir" ] && [ -w "$dir" ] || dir=$tmp
	[ "$mib" -le $((avail_mib / 2)) ] || mib=$((avail_mib / 2))
	dd if=/dev/zero of="$dir/vdisk-bench-warm.$$" bs=1M count="$mib" status=none
	rm -f "$dir/vdisk-bench-warm.$$"
}
warm_memory

sock=$tmp/sock
# restart_server: stops the server and starts it again as it was started
# (its caches empty, the page cache as it was)
restart_server() { stop_server; "${last_serve[@]}"; }
serve_vdisk() {   # serve_vdisk EXPORT [serve options...]
	local exp=$1
	last_serve=(serve_vdisk "$@")
	shift
	rm -f "$sock"
	VDISK_STORE=$tmp/store "$vdisk" serve --socket "$sock" "$@" "$exp" 2>>"$tmp/serve.log" &
	server_pid=$!
	uri="nbd+unix:///$exp?socket=$sock"
	wait_sock "$sock"
}
serve_qemu() {   # serve_qemu FORMAT IMAGE
	last_serve=(serve_qemu "$@")
	rm -f "$sock"
	qemu-nbd -t -f "$1" -k "$sock" --cache=writeback --aio=threads -e 8 "$2" &
	server_pid=$!
	uri="nbd+unix:///?socket=$sock"
	wait_sock "$sock"
}
serve_nbdkit() {   # serve_nbdkit IMAGE
	last_serve=(serve_nbdkit "$@")
	rm -f "$sock"
	nbdkit -f -U "$sock" file "$1" &
	server_pid=$!
	uri="nbd+unix:///?socket=$sock"
	wait_sock "$sock"
}


# settle: wait (at most 120 s) until the server spends at most one clock
# tick in each of two half seconds in a row; prints the seconds it stayed
# busy.  (One quiet half second ended the wait while vdisk's close of the
# last connection was still sealing, between two of its syncs, and the
# next job then ran against that seal: the "collapse after a snapshot" of
# earlier runs, README.)
settle() {
	local t0 a b quiet=0
	t0=$(date +%s.%N)
	b=$(cpu_ticks)
	for _ in $(seq 240); do
		sleep 0.5
		a=$b
		b=$(cpu_ticks)
		if [ $((b - a)) -le 1 ]; then
			quiet=$((quiet + 1))
			[ "$quiet" -ge 2 ] && break
		else
			quiet=0
		fi
	done
	awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a - 1.0}'
}

# job NAME FIO-ARGS...: prints "MBps iops cpu_s_per_GiB cpu_us_per_request tail_s"
job() {
	local name=$1 c0 c1 tail
	shift
	c0=$(cpu_ticks)
	fio --name="$name" --ioengine=nbd --uri="$uri" --output-format=json \
		--output="$tmp/$name.json" "$@" >/dev/null || { echo "fio $name failed" >&2; exit 1; }
	tail=$(settle)
	c1=$(cpu_ticks)
	/usr/bin/python3 - "$tmp/$name.json" "$((c1 - c0))" "$hz" "$tail" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
d = j["write"] if j["write"]["io_bytes"] else j["read"]
moved = (j["write"]["io_bytes"] + j["read"]["io_bytes"]) / 2**30
ops = j["write"]["total_ios"] + j["read"]["total_ios"]
cpu = int(sys.argv[2]) / int(sys.argv[3])
print("%.1f %.0f %.3f %.1f %s" % (d["bw_bytes"] / 1e6, d["iops"], cpu / moved if moved else 0,
                                  cpu * 1e6 / ops if ops else 0, sys.argv[4]))
PY
}


# run WORKLOAD SERVER: run one workload and record it
run() {
	local wl=$1 s=$2 c0 c1
	case $wl in
	seqw) set -- $(job seqw --rw=write --bs=1M --iodepth=8 --size="$size")
		got $# 5
		res "$s" seqw "$1"; res "$s" seqw.cpu "$3"; res "$s" seqw.tail "$5" ;;
	seqr|seqr2) set -- $(job "$wl" --rw=read --bs=1M --iodepth=8 --size="$size")
		got $# 5
		res "$s" "$wl" "$1"; res "$s" "$wl.cpu" "$3"; res "$s" "$wl.tail" "$5" ;;
	randr1s|randr32s)
		restart_server
		local qd=${wl#randr}
		set -- $(job "$wl" --rw=randread --bs=4k --iodepth="${qd%s}" --size="$size" \
			--time_based --runtime="$runtime" --randrepeat=0)
		got $# 5
		res "$s" "$wl" "$2"; res "$s" "$wl.cpu" "$3"; res "$s" "$wl.us" "$4"
		res "$s" "$wl.tail" "$5" ;;
	randw32l) set -- $(job "$wl" --rw=randwrite --bs=4k --iodepth=32 --size="$size" \
			--time_based --runtime="$long" --randrepeat=0)
		got $# 5
		res "$s" "$wl" "$2"; res "$s" "$wl.cpu" "$3"; res "$s" "$wl.us" "$4"
		res "$s" "$wl.tail" "$5" ;;
	randw*|randr*)
		local rw=randwrite qd=${wl#rand?} sync=
		case $wl in randr*) rw=randread ;; randwf*) qd=${wl#randwf} sync=--fsync=8 ;; esac
		set -- $(job "$wl" --rw=$rw --bs=4k --iodepth="$qd" $sync --size="$size" \
			--time_based --runtime="$runtime" --randrepeat=0)
		got $# 5
		res "$s" "$wl" "$2"; res "$s" "$wl.cpu" "$3"; res "$s" "$wl.us" "$4"
		res "$s" "$wl.tail" "$5" ;;
	flush)
		c0=$(cpu_ticks)
		set -- $(/usr/bin/python3 "$bench/nbd/flush.py" "$uri" "$burst_b")
		got $# 2
		local tail
		tail=$(settle)
		c1=$(cpu_ticks)
		res "$s" burst "$1"; res "$s" flush "$2"; res "$s" flush.tail "$tail"
		res "$s" flush.cpu "$(awk -v t=$((c1 - c0)) -v hz="$hz" -v b="$burst_b" 'BEGIN{printf "%.3f", t / hz / (b / 2^30)}')" ;;
	esac
}

fill() {   # fill: write the whole export once (not recorded)
	set -- $(job fill --rw=write --bs=1M --iodepth=8 --size="$size")
	got $# 5
}

all="seqw seqr seqr2 randw1 randw32 randwf1 randwf32 randr1 randr32 randr1s randr32s flush"
every="$all randw32l"   # randw32l only when JOBS names it
jobs=${JOBS:-$all}
wanted() { case " $jobs " in *" $1 "*) return 0 ;; esac; return 1; }
# run_jobs SERVER WORKLOAD...: the wanted ones of WORKLOAD..., in order;
# fills the export first when a read or a random write would otherwise
# find it empty (over an empty export nbdkit's random writes go into a
# sparse file's page cache, 6x faster than over written data)
run_jobs() {
	local s=$1 wl filled=
	shift
	for wl in "$@"; do
		wanted "$wl" || continue
		case $wl in seqw) filled=1 ;;
		seqr*|randr*|randw*) [ -n "$filled" ] || fill; filled=1 ;; esac
		run "$wl" "$s"
	done
}

for s in $servers; do
	say "$s ($(date +%T))"
	rm -rf "$tmp/store" "$tmp"/*.img "$tmp"/*.qcow2 "$tmp"/*.json
	peak_kb=0 peak_anon_kb=0
	res "$s" load "$(cut -d' ' -f1 /proc/loadavg)"
	case $s in
	vdisk|vdisk-cache)
		VDISK_STORE=$tmp/store "$vdisk" create vol "$size" >/dev/null || exit 1
		if [ "$s" = vdisk ]; then serve_vdisk vol; else serve_vdisk vol --cache "$size"; fi
		run_jobs "$s" $every ;;
	vdisk-snap)
		VDISK_STORE=$tmp/store "$vdisk" create vol "$size" >/dev/null || exit 1
		serve_vdisk vol
		fill
		for wl in randw1 randw32 randwf1 randwf32; do
			wanted "$wl" || continue
			VDISK_STORE=$tmp/store "$vdisk" snapshot "vol@before-$wl" >/dev/null || exit 1
			run "$wl" "$s"
		done ;;
	vdisk-deep)
		export VDISK_STORE=$tmp/store
		"$vdisk" create c0 "$size" >/dev/null || exit 1
		serve_vdisk c0
		fill
		stop_server
		t0=$(date +%s.%N)
		chunks=$((size_b / 65536))
		for i in $(seq 1 "$depth"); do
			"$vdisk" snapshot "c$((i - 1))@s" >/dev/null &&
			"$vdisk" clone "c$((i - 1))@s" "c$i" >/dev/null || exit 1
			for k in 1 2 3; do
				head -c 64K /dev/urandom >"$tmp/small.img"
				"$vdisk" import --existing --offset $(( ((RANDOM << 15 | RANDOM) % chunks) * 65536 )) \
					"c$i" "$tmp/small.img" >/dev/null || exit 1
			done
		done
		res "$s" build-s "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')"
		unset VDISK_STORE
		serve_vdisk "c$depth"
		for wl in randw32 randwf32 randr32; do wanted "$wl" && run "$wl" "$s"; done ;;
	qemu-raw|nbdkit)
		truncate -s "$size" "$tmp/raw.img"
		if [ "$s" = nbdkit ]; then serve_nbdkit "$tmp/raw.img"; else serve_qemu raw "$tmp/raw.img"; fi
		run_jobs "$s" $every ;;
	qemu-qcow2)
		qemu-img create -q -f qcow2 "$tmp/img.qcow2" "$size" || exit 1
		serve_qemu qcow2 "$tmp/img.qcow2"
		run_jobs "$s" $every ;;
	qemu-overlay)
		qemu-img create -q -f qcow2 "$tmp/base.qcow2" "$size" || exit 1
		serve_qemu qcow2 "$tmp/base.qcow2"
		run seqw "$s"   # into the base
		stop_server
		qemu-img create -q -f qcow2 -b "$tmp/base.qcow2" -F qcow2 "$tmp/ov.qcow2" || exit 1
		serve_qemu qcow2 "$tmp/ov.qcow2"
		for wl in seqr seqr2 randw1 randw32 randwf1 randwf32 randr1 randr32 flush; do wanted "$wl" && run "$wl" "$s"; done ;;
	qemu-snap)
		qemu-img create -q -f qcow2 "$tmp/img.qcow2" "$size" || exit 1
		serve_qemu qcow2 "$tmp/img.qcow2"
		for wl in $all; do
			wanted "$wl" || continue
			case $wl in randw*)
				stop_server
				qemu-img snapshot -c "before-$wl" "$tmp/img.qcow2" || exit 1
				serve_qemu qcow2 "$tmp/img.qcow2" ;;
			esac
			run "$wl" "$s"
		done ;;
	*) echo "unknown server $s" >&2; exit 2 ;;
	esac
	stop_server
	res "$s" peak-rss-MiB $((peak_kb / 1024))
	res "$s" peak-anon-MiB $((peak_anon_kb / 1024))
done
rm -rf "$tmp/store" "$tmp"/*.img "$tmp"/*.qcow2

res meta load_end "$(cut -d' ' -f1 /proc/loadavg)"
res meta elapsed-s $(($(date +%s) - t_start))
/usr/bin/python3 "$bench/nbd/report.py" "$raw" >"$md" || exit 1
cat "$md"
