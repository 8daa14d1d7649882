#!/bin/bash
# Bounded memory (README "Memory"): `vdisk serve` under a write load far
# past every bound (the dirty bound, the journal's, the cache, the seal
# batch) keeps its peak RSS (VmHWM) within --cache + 64 MiB, and writers
# wait for destage rather than fail.  fio drives it over NBD: sequential
# 1 MiB writes with flushes, random 4 KiB writes with flushes, random reads
# that fill the cache, then a sequential pass that fio reads back and
# verifies.  VDISK_JOURNAL_MB=64 makes the journal's bound bite too (its
# default, 1 GiB, is more than this test writes).  A bound by design, not a
# timing.
source "$(dirname "$0")/functions.sh"
requires fio
fio --enghelp=nbd >/dev/null 2>&1 || { echo "SKIP: fio has no nbd engine"; exit 77; }
if ldd "$VDISK" 2>/dev/null | grep -E 'libasan|libtsan' >/dev/null; then
	echo "SKIP: a sanitizer's shadow memory and quarantine are in the RSS"
	exit 77
fi
new_store >/dev/null
sock=$tmpdir/sock
cache_mib=16
limit_kib=$(((cache_mib + 64) * 1024))
export VDISK_JOURNAL_MB=64

vdisk create vol 512M || fail "create"
start_serve "$sock" --cache ${cache_mib}M vol
uri="nbd+unix:///vol?socket=$sock"

job() {   # job NAME FIO-ARGS...
	local name=$1
	shift
	fio --name="$name" --ioengine=nbd --uri="$uri" --output="$tmpdir/$name.out" "$@" \
		>/dev/null || fail "fio $name: $(tail -5 "$tmpdir/$name.out")"
}
job seqw --rw=write --bs=1M --iodepth=8 --size=512M --fsync=16
job randw --rw=randwrite --bs=4k --iodepth=32 --size=512M --io_size=48M --fsync=8 \
	--randrepeat=0
job randr --rw=randread --bs=4k --iodepth=32 --size=512M --io_size=32M --randrepeat=0
job verify --rw=write --bs=1M --iodepth=8 --size=256M --offset=128M \
	--verify=crc32c --do_verify=1 --verify_fatal=1

hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$serve_pid/status")
[ -n "$hwm" ] || fail "no VmHWM for pid $serve_pid"
grep -q ' 0 errors' "$tmpdir/serve.log" || fail "no clean connection in the log"
! grep -E ' [1-9][0-9]* errors' "$tmpdir/serve.log" || fail "requests failed"
echo "peak RSS $((hwm / 1024)) MiB (bound $((limit_kib / 1024)) MiB: --cache ${cache_mib}M + 64 MiB)"
[ "$hwm" -le "$limit_kib" ] || fail "peak RSS $hwm KiB is over $limit_kib KiB"
