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
refuse_sanitized "$vdisk"
command -v fio >/dev/null || { echo "missing fio" >&2; exit 77; }
source "$bench/snapshot/lib.sh"
for round in $(seq "$rounds"); do
	for snap in 0 1; do
		serve_filled
		h0=$(hwm)
		[ "$snap" = 1 ] && { "$vdisk" snapshot vol@s >/dev/null || exit 1; }
		iops=$(random_writes) || exit 1
		echo "memory round=$round snapshot=$snap seal_frozen=${VDISK_SEAL_FROZEN:-on} iops=$iops hwm_fill_kb=$h0 hwm_writes_kb=$(hwm) load=$(cut -d' ' -f1 /proc/loadavg)"
	done
done
