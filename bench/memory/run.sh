#!/bin/bash
# Peak memory of `vdisk serve` under the NBD bench's jobs (issue #7): the
# same fio jobs as bench/nbd/run.sh, one server, and after each job the
# server's VmHWM (peak RSS so far), VmRSS, RssAnon and thread count, next
# to qemu-nbd (qcow2) under the same jobs.  Not part of make check.
#
#   bench/memory/run.sh        # ~3-4 min on 2 cores with the defaults
#
# Environment:
#   VDISK_BENCH_TMP  scratch directory (default /work/bench-tmp; never
#                    inside the repository)
#   SIZE             export size (default 1G); sequential jobs cover it
#   RUNTIME          seconds per random job (default 5)
#   BURST            bytes written before the flush job's flush (512M)
#   SERVERS          "vdisk qemu-qcow2" by default
#   SERVE_ARGS       extra `vdisk serve` options (e.g. "--cache 1G")
#   CHUNK            the store's chunk size (`vdisk init --chunk-size`;
#                    default: init's, 64K)
#   JOBS             subset of "seqw seqr randw1 randw32 randwf1 randwf32
#                    randr1 randr32 flush two" (default: all, in that
#                    order); two: two clients at once, each writing half
#                    the export in 8 MiB requests, 4 in flight (more than
#                    the server's in-flight budget)
#   VDISK            the vdisk program (default: ./vdisk at the top)
#
# Prints one row per server and job, "MEM SERVER JOB hwm rss anon threads
# MB/s IOPS" (MiB of VmHWM, VmRSS and RssAnon after the job; the flush
# job's MB/s is its burst's, two's the sum of both clients'), one "MEM
# SERVER peak hwm" row (vdisk's with the bound, --cache + 64 MiB), then
# the load average.
set -u -o pipefail
source "$(dirname "$0")/../dirs.sh" memory
size=${SIZE:-1G}
runtime=${RUNTIME:-5}
burst=${BURST:-512M}
servers=${SERVERS:-vdisk qemu-qcow2}
jobs=${JOBS:-seqw seqr randw1 randw32 randwf1 randwf32 randr1 randr32 flush two}
vdisk=${VDISK:-$top/vdisk}
refuse_sanitized "$vdisk"
for p in fio qemu-nbd qemu-img numfmt "$vdisk"; do
	command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 77; }
done
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "missing python3-libnbd" >&2; exit 77; }
burst_b=$(numfmt --from=iec "${burst%iB}") || exit 2
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
sock=$tmp/sock
# say, stop_server, wait_sock, and the trap that stops the server at exit
# shellcheck source=bench/nbd/common.sh
source "$bench/nbd/common.sh"

status() {   # status FIELD: kB
	awk -v f="$1:" '$1 == f {print $2}' "/proc/$server_pid/status"
}

row() {   # row SERVER JOB
	printf 'MEM %-10s %-9s %6d %6d %6d %4d %8s %7s\n' "$1" "$2" \
		$(($(status VmHWM) / 1024)) $(($(status VmRSS) / 1024)) \
		$(($(status RssAnon) / 1024)) "$(status Threads)" $perf
	perf="- -"
}

fio_perf() {   # fio_perf JSON...: "MB/s IOPS", summed over the files
	/usr/bin/python3 -c 'import json, sys
bw = iops = 0
for f in sys.argv[1:]:
    j = json.load(open(f))["jobs"][0]
    d = j["write"] if j["write"]["io_bytes"] else j["read"]
    bw += d["bw_bytes"]; iops += d["iops"]
print("%.1f %.0f" % (bw / 1e6, iops))' "$@"
}

job() {   # job NAME FIO-ARGS...: sets $perf to "MB/s IOPS"
	local name=$1
	shift
	fio --name="$name" --ioengine=nbd --uri="$uri" --output-format=json \
		--output="$tmp/fio.json" "$@" >/dev/null || { echo "fio $name failed" >&2; exit 1; }
	perf=$(fio_perf "$tmp/fio.json")
}

two() {   # two clients at once, each on its half of the export
	local half=$(($(numfmt --from=iec "$size") / 2)) i pids=()
	for i in 0 1; do
		fio --name=two$i --ioengine=nbd --uri="$uri" --output-format=json \
			--output="$tmp/two$i.json" --rw=write --bs=8M --iodepth=4 \
			--size=$half --offset=$((i * half)) >/dev/null &
		pids+=($!)
	done
	wait "${pids[0]}" && wait "${pids[1]}" || { echo "fio two failed" >&2; exit 1; }
	perf=$(fio_perf "$tmp/two0.json" "$tmp/two1.json")
}

perf="- -"
printf 'MEM %-10s %-9s %6s %6s %6s %4s %8s %7s\n' server job hwm rss anon thr MB/s iops
for s in $servers; do
	rm -rf "$tmp/store" "$tmp/img.qcow2"
	rm -f "$sock"
	case $s in
	vdisk)
		if [ -n "${CHUNK:-}" ]; then
			VDISK_STORE=$tmp/store "$vdisk" init --chunk-size "$CHUNK" >/dev/null || exit 1
		fi
		VDISK_STORE=$tmp/store "$vdisk" create vol "$size" >/dev/null || exit 1
		# shellcheck disable=SC2086
		VDISK_STORE=$tmp/store "$vdisk" serve --socket "$sock" ${SERVE_ARGS:-} vol &
		server_pid=$!
		uri="nbd+unix:///vol?socket=$sock" ;;
	qemu-qcow2)
		qemu-img create -q -f qcow2 "$tmp/img.qcow2" "$size" || exit 1
		qemu-nbd -t -f qcow2 -k "$sock" --cache=writeback --aio=threads -e 8 "$tmp/img.qcow2" &
		server_pid=$!
		uri="nbd+unix:///?socket=$sock" ;;
	*) echo "unknown server $s" >&2; exit 2 ;;
	esac
	wait_sock "$sock"
	row "$s" start
	for wl in $jobs; do
		case $wl in
		seqw) job seqw --rw=write --bs=1M --iodepth=8 --size="$size" ;;
		seqr) job seqr --rw=read --bs=1M --iodepth=8 --size="$size" ;;
		flush) perf=$(/usr/bin/python3 "$bench/nbd/flush.py" "$uri" "$burst_b") || exit 1
			perf="${perf% *} -" ;;
		two) two ;;
		rand*)
			rw=randwrite qd=${wl#rand?} sync=
			case $wl in randr*) rw=randread ;; randwf*) qd=${wl#randwf} sync=--fsync=8 ;; esac
			job "$wl" --rw=$rw --bs=4k --iodepth="$qd" $sync --size="$size" \
				--time_based --runtime="$runtime" --randrepeat=0 ;;
		*) echo "unknown job $wl" >&2; exit 2 ;;
		esac
		row "$s" "$wl"
	done
	sleep 2
	row "$s" idle
	peak=$(($(status VmHWM) / 1024))
	stop_server
	case $s in
	vdisk)
		cache=$(echo " ${SERVE_ARGS:-}" | sed -n 's/.* --cache[= ]\([^ ]*\).*/\1/p')
		cache_mib=$(($(numfmt --from=iec "${cache:-96M}") >> 20))
		bound=$((cache_mib + 64))
		echo "MEM $s peak $peak MiB, bound $bound MiB (--cache ${cache_mib}M + 64 MiB):" \
			"$([ "$peak" -le "$bound" ] && echo met || echo NOT met)" ;;
	*) echo "MEM $s peak $peak MiB" ;;
	esac
done
echo "MEM load $(cut -d' ' -f1-3 /proc/loadavg)"
