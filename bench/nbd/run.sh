#!/bin/bash
# NBD benchmark: the same fio jobs (ioengine=nbd, Unix socket) against
# `vdisk serve`, nbdkit's file plugin and qemu-nbd on a raw file, in one
# run, reported as figures and ratios to each anchor ("the client
# matters": every server gets the same client).  Not part of make check.
#
#   bench/nbd/run.sh
#
# Environment:
#   VDISK_BENCH_TMP  scratch directory (default /work/bench-tmp/nbd; never
#                    inside the repository)
#   SIZE             export size (default 2G); sequential jobs cover it
#   RUNTIME          seconds per random job (default 15)
#   VDISK            the vdisk program (default: ./vdisk at the top)
#
# Writes bench/results/nbd-raw.txt (RESULT lines) and nbd-latest.md.
set -u -o pipefail
cd "$(dirname "$0")/.."
bench=$PWD
top=$(cd .. && pwd)
tmp=${VDISK_BENCH_TMP:-/work/bench-tmp}/nbd
case "$tmp" in "$top"/*) echo "VDISK_BENCH_TMP must be outside the repository" >&2; exit 2 ;; esac
size=${SIZE:-2G}
runtime=${RUNTIME:-15}
vdisk=${VDISK:-$top/vdisk}
raw=$bench/results/nbd-raw.txt
md=$bench/results/nbd-latest.md
mkdir -p "$bench/results"
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
for p in fio nbdkit qemu-nbd "$vdisk"; do
	command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 77; }
done
: >"$raw"

say() { printf '== %s\n' "$*" >&2; }
server_pid=

stop_server() {
	[ -n "$server_pid" ] || return 0
	kill "$server_pid" 2>/dev/null
	wait "$server_pid" 2>/dev/null
	server_pid=
}
trap stop_server EXIT

wait_sock() {
	for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
	echo "server did not start" >&2
	exit 1
}

start() {   # start SERVER: fresh backing store, server on $tmp/sock
	local sock=$tmp/sock
	rm -f "$sock"
	case $1 in
	vdisk)
		rm -rf "$tmp/store"
		VDISK_STORE=$tmp/store "$vdisk" create vol "$size" >/dev/null || exit 1
		VDISK_STORE=$tmp/store "$vdisk" serve --socket "$sock" 2>"$tmp/serve.log" &
		server_pid=$!
		uri="nbd+unix:///vol?socket=$sock" ;;
	nbdkit)
		rm -f "$tmp/raw.img" && truncate -s "$size" "$tmp/raw.img"
		nbdkit -f -U "$sock" file "$tmp/raw.img" &
		server_pid=$!
		uri="nbd+unix:///?socket=$sock" ;;
	qemu-nbd)
		rm -f "$tmp/raw.img" && truncate -s "$size" "$tmp/raw.img"
		qemu-nbd -t -f raw -k "$sock" --cache=writeback --aio=threads -e 8 "$tmp/raw.img" &
		server_pid=$!
		uri="nbd+unix:///?socket=$sock" ;;
	esac
	wait_sock "$sock"
}

job() {   # job NAME FIO-ARGS...: prints "bw_MBps iops"
	local name=$1
	shift
	fio --name="$name" --ioengine=nbd --uri="$uri" --output-format=json \
		--output="$tmp/$name.json" "$@" >/dev/null || { echo "fio $name failed" >&2; exit 1; }
	/usr/bin/python3 - "$tmp/$name.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
d = j["write"] if j["write"]["io_bytes"] else j["read"]
print("%.1f %.0f" % (d["bw_bytes"] / 1e6, d["iops"]))
PY
}

servers="vdisk nbdkit qemu-nbd"
for s in $servers; do
	say "$s"
	start "$s"
	set -- $(job seqw --rw=write --bs=1M --iodepth=8 --size="$size")
	echo "RESULT $s seq-write-MBps $1" | tee -a "$raw"
	set -- $(job seqr --rw=read --bs=1M --iodepth=8 --size="$size")
	echo "RESULT $s seq-read-MBps $1" | tee -a "$raw"
	set -- $(job randw --rw=randwrite --bs=4k --iodepth=32 --size="$size" \
		--time_based --runtime="$runtime" --randrepeat=0)
	echo "RESULT $s rand-write-IOPS $2" | tee -a "$raw"
	set -- $(job randr --rw=randread --bs=4k --iodepth=32 --size="$size" \
		--time_based --runtime="$runtime" --randrepeat=0)
	echo "RESULT $s rand-read-IOPS $2" | tee -a "$raw"
	stop_server
done

/usr/bin/python3 - "$raw" "$size" "$runtime" >"$md" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    _, server, metric, value = line.split()
    rows.setdefault(metric, {})[server] = float(value)
servers = ["vdisk", "nbdkit", "qemu-nbd"]
print("# NBD servers, same client (fio ioengine=nbd, Unix socket, %s export, random jobs %ss)\n"
      % (sys.argv[2], sys.argv[3]))
print("| metric | vdisk | nbdkit file | qemu-nbd raw | vdisk/nbdkit | vdisk/qemu-nbd |")
print("|---|---|---|---|---|---|")
for metric, v in rows.items():
    r = lambda a: "%.2f" % (v["vdisk"] / v[a]) if v.get(a) else "-"
    print("| %s | %s | %s | %s | %s | %s |" % (
        metric, *("%.0f" % v.get(s, 0) for s in servers), r("nbdkit"), r("qemu-nbd")))
PY
cat "$md"
