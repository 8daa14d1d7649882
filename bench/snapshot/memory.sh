#!/bin/bash
# Memory of partial writes to frozen chunks: a write into a chunk whose
# newest dirty entry a snapshot froze makes a full in-memory copy, pinned
# until sealed.  Serves a SIZE volume, fills it, then runs fio nbd random
# 4 KiB writes (QD 32, RUNTIME s) with and without a `vdisk snapshot`
# right before them, and prints the server's peak RSS (VmHWM) after the
# fill and after the writes.  VDISK_SEAL_FROZEN is passed through (off:
# the copies stay until the epoch is read).  Not part of make check.
#
#   ROUNDS=2 bench/snapshot/memory.sh
set -u -o pipefail
source "$(dirname "$0")/../dirs.sh" "snapmem-$$"
size=${SIZE:-1G}
runtime=${RUNTIME:-20}
rounds=${ROUNDS:-1}
vdisk=${VDISK:-$top/vdisk}
command -v fio >/dev/null || { echo "missing fio" >&2; exit 77; }
export VDISK_STORE=$tmp/store
sock=$tmp/sock
server_pid=
stop() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=; }
trap 'stop; rm -rf "$tmp"' EXIT
hwm() { awk '/^VmHWM:/{print $2}' "/proc/$server_pid/status"; }
for round in $(seq "$rounds"); do
	for snap in 0 1; do
		stop
		rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
		"$vdisk" create vol "$size" >/dev/null || exit 1
		"$vdisk" serve --socket "$sock" vol 2>>"$tmp/serve.log" &
		server_pid=$!
		for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
		uri="nbd+unix:///vol?socket=$sock"
		fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 \
			--size="$size" >/dev/null || exit 1
		h0=$(hwm)
		[ "$snap" = 1 ] && { "$vdisk" snapshot vol@s >/dev/null || exit 1; }
		fio --name=randw --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=32 \
			--size="$size" --time_based --runtime="$runtime" --randrepeat=0 \
			--output-format=json --output="$tmp/randw.json" >/dev/null || exit 1
		iops=$(/usr/bin/python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["jobs"][0]["write"]["iops"])' "$tmp/randw.json")
		echo "memory round=$round snapshot=$snap seal_frozen=${VDISK_SEAL_FROZEN:-on} iops=$iops hwm_fill_kb=$h0 hwm_writes_kb=$(hwm) load=$(cut -d' ' -f1 /proc/loadavg)"
	done
done
