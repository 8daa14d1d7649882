#!/bin/bash
# Bounded memory (README "Memory"): `vdisk serve` under a write load far
# past every bound (the dirty bound, the journal's, the cache, the seal
# batch, the NBD in-flight budget) keeps its peak RSS (VmHWM) within
# --cache + 64 MiB, and writers wait rather than fail.  fio drives it over
# NBD, three servers in turn:
#  1. 64 KiB chunks, --cache 16M: sequential 1 MiB writes with flushes,
#     random 4 KiB writes with flushes, random reads that fill the cache, a
#     sequential pass that fio reads back and verifies, then two clients at
#     once, each pipelining 32 MiB of writes (the server's in-flight budget
#     is shared: per connection, two clients held twice what one does);
#  2. 1 MiB chunks, --cache 16M: the same load over 256 MiB (every
#     buffer sized by the chunk: dirty chunks, seal batches, scratch);
#  3. 64 KiB chunks, --cache 256M: random 64 KiB reads that fill the cache,
#     then writes on top of the full cache (sealed chunks enter it, evicting
#     pieces of other chunks: what grew malloc's heap past the bound).
# VDISK_JOURNAL_MB=64 makes the journal's bound bite too (its default,
# 1 GiB, is more than this test writes).  A bound by design, not a timing.
source "$(dirname "$0")/functions.sh"
requires fio
fio --enghelp=nbd >/dev/null 2>&1 || { echo "SKIP: fio has no nbd engine"; exit 77; }
if ldd "$VDISK" 2>/dev/null | grep -E 'libasan|libtsan' >/dev/null; then
	echo "SKIP: a sanitizer's shadow memory and quarantine are in the RSS"
	exit 77
fi
export VDISK_JOURNAL_MB=64
sock=$tmpdir/sock

job() {   # job NAME FIO-ARGS...
	local name=$1
	shift
	fio --name="$name" --ioengine=nbd --uri="$uri" --output="$tmpdir/$name.out" "$@" \
		>/dev/null || fail "fio $name: $(tail -5 "$tmpdir/$name.out")"
}

# serve CHUNK CACHE-MIB SIZE: a fresh store of CHUNK-sized chunks, a
# volume of SIZE, served with --cache CACHE-MIB
serve() {
	new_store >/dev/null
	vdisk init --chunk-size "$1" >/dev/null || fail "init"
	vdisk create vol "$3" || fail "create"
	cache_mib=$2
	rm -f "$sock"
	: >"$tmpdir/serve.log"
	start_serve "$sock" --cache "${cache_mib}M" vol
	started=$SECONDS
	uri="nbd+unix:///vol?socket=$sock"
}

# check WHAT: the server's VmHWM is within --cache + 64 MiB, no request
# failed; stops the server
check() {
	local hwm limit_kib=$(((cache_mib + 64) * 1024))
	hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$serve_pid/status")
	[ -n "$hwm" ] || fail "no VmHWM for pid $serve_pid"
	kill "$serve_pid" && wait "$serve_pid"
	grep -q ' 0 errors' "$tmpdir/serve.log" || fail "$1: no clean connection in the log"
	! grep -E ' [1-9][0-9]* errors' "$tmpdir/serve.log" || fail "$1: requests failed"
	echo "$1: peak RSS $((hwm / 1024)) MiB (bound $((limit_kib / 1024)) MiB: --cache ${cache_mib}M + 64 MiB), $((SECONDS - started)) s"
	[ "$hwm" -le "$limit_kib" ] || fail "$1: peak RSS $hwm KiB is over $limit_kib KiB"
}

writes() {   # writes MIB: the write and read load of servers 1 and 2
	job seqw --rw=write --bs=1M --iodepth=8 --size="$1M" --fsync=16
	job randw --rw=randwrite --bs=4k --iodepth=32 --size="$1M" --io_size=$(($1 / 16))M \
		--fsync=8 --randrepeat=0
	job randr --rw=randread --bs=4k --iodepth=32 --size="$1M" --io_size=$(($1 / 16))M \
		--randrepeat=0
	job verify --rw=write --bs=1M --iodepth=8 --size=$(($1 / 2))M --offset=$(($1 / 4))M \
		--verify=crc32c --do_verify=1 --verify_fatal=1
}

serve 64K 16 512M
writes 512
# Two clients at once, each with 32 MiB of writes in flight (the server
# reads at most 4 requests ahead per client: large ones, then).
for i in 0 1; do
	fio --name=two$i --ioengine=nbd --uri="$uri" --output="$tmpdir/two$i.out" \
		--rw=write --bs=8M --iodepth=4 --size=64M --offset=$((i * 256))M \
		--verify=crc32c --do_verify=1 --verify_fatal=1 >/dev/null &
	eval "two$i=\$!"
done
# shellcheck disable=SC2154
wait "$two0" || fail "fio two0: $(tail -5 "$tmpdir/two0.out")"
# shellcheck disable=SC2154
wait "$two1" || fail "fio two1: $(tail -5 "$tmpdir/two1.out")"
check "64 KiB chunks, --cache 16M, then two clients"

serve 1M 16 256M
writes 256
check "1 MiB chunks, --cache 16M"

# Fresh random bytes in every write (fio's default buffer repeats, and
# its chunks dedup), and random reads that touch each block once: 288 MiB
# of distinct chunks, which must fill the cache.
serve 64K 256 320M
job fill --rw=write --bs=1M --iodepth=8 --size=320M --refill_buffers
job randr64k --rw=randread --bs=64k --iodepth=16 --size=320M --io_size=288M --randrepeat=0
rss=$(awk '/^VmRSS:/{print $2}' "/proc/$serve_pid/status")
[ "$rss" -ge $((cache_mib * 1024)) ] || fail "the reads did not fill the cache: RSS $rss KiB"
job over --rw=write --bs=1M --iodepth=8 --size=192M --fsync=16
job randw --rw=randwrite --bs=4k --iodepth=32 --size=320M --io_size=16M --fsync=8 \
	--randrepeat=0
check "64 KiB chunks, --cache 256M, full"

# The default journal (1 GiB) under random 4 KiB writes over 2 GiB: its
# map of what it holds grows to a quarter of the cache (about 250 bytes a
# chunk and 32 a write), is charged to the cache's bound with the table of
# where framed chunks are, and the random reads after refill the cache.
unset VDISK_JOURNAL_MB
serve 64K 32 2G
job randw-map --rw=randwrite --bs=4k --iodepth=32 --size=2G --io_size=1G --randrepeat=0
job randr-map --rw=randread --bs=4k --iodepth=32 --size=2G --io_size=64M --randrepeat=0
check "64 KiB chunks, --cache 32M, the default journal's map"
