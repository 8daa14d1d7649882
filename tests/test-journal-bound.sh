#!/bin/bash
# The journal's bound under random writes (README "Memory"): 4 KiB random
# writes far past VDISK_JOURNAL_MB over a filled volume keep the journal
# within twice its bound plus one segment (writers wait for the sealer
# and never fail), and every block reads back as last written.  The
# sealer destages a full journal in the order of its oldest writes, which
# is what frees its segments; the in-memory map of what the journal holds
# has a bound of its own (1/48 of the journal's, at least 1 MiB), past
# which the sealer destages too.  fio writes each block of the volume
# twice, in random order, with a checksum in every block, then reads the
# whole volume back and verifies it; `vdisk check` is clean after.
# Trimmed segments are kept for reuse (spare files, engine/journal.c):
# after a kill -9 with reused segments in the journal every flushed write
# is replayed.
source "$(dirname "$0")/functions.sh"
requires fio du
fio --enghelp=nbd >/dev/null 2>&1 || { echo "SKIP: fio has no nbd engine"; exit 77; }
export VDISK_JOURNAL_MB=64
sock=$tmpdir/sock
M=$((1 << 20))

new_store >/dev/null
vdisk create vol 256M >/dev/null || fail "create"
start_serve "$sock" vol
uri="nbd+unix:///vol?socket=$sock"
fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 \
	--size=256M --output="$tmpdir/fill.out" >/dev/null || fail "fio fill: $(tail -5 "$tmpdir/fill.out")"

fio --name=randw --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=32 \
	--size=256M --loops=2 --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
	--output="$tmpdir/randw.out" >/dev/null &
fio_pid=$!
# The journal's size while fio runs, sampled, and whether trimmed
# segments were kept for reuse (spare files).
: >"$tmpdir/sizes"
: >"$tmpdir/names"
while kill -0 "$fio_pid" 2>/dev/null; do
	du -sb "$VDISK_STORE/journal" 2>/dev/null | cut -f1 >>"$tmpdir/sizes"
	ls "$VDISK_STORE/journal/vol" >>"$tmpdir/names" 2>/dev/null
	sleep 0.2
done
wait "$fio_pid" || fail "fio randw: $(tail -5 "$tmpdir/randw.out")"
most=$(sort -n "$tmpdir/sizes" | tail -1)
samples=$(wc -l <"$tmpdir/sizes")
# twice the bound, the current segment and two spares
bound=$(((2 * 64 + 64 + 2 * 64) * M + M))
echo "journal: at most $((most / M)) MiB in $samples samples (bound $((bound / M)) MiB)"
[ "$samples" -ge 5 ] || fail "too few samples of the journal ($samples)"
[ "$most" -gt $((64 * M)) ] || fail "the journal never passed its bound ($most bytes): the test did not test it"
[ "$most" -le "$bound" ] || fail "the journal reached $most bytes, past $bound"

grep -q '\.spare$' "$tmpdir/names" || fail "no trimmed segment was kept for reuse"

# Reused segments hold records of their earlier life past their own last
# one: after a kill -9, replay must stop there and apply every flushed
# write.  fio writes each block once (flushing at the end), the server is
# killed, and a new one, replaying the journal, must read back all of it.
dur=(--name=dur --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=32
     --size=256M --randseed=7 --verify=crc32c --verify_state_save=0)
fio "${dur[@]}" --do_verify=0 --end_fsync=1 --output="$tmpdir/dur.out" >/dev/null ||
	fail "fio dur: $(tail -5 "$tmpdir/dur.out")"
segs=$(ls "$VDISK_STORE/journal/vol" | grep -c '\.jnl$')
kill -9 "$serve_pid"
wait "$serve_pid" 2>/dev/null
[ "$segs" -ge 2 ] || fail "the kill found $segs journal segments: nothing to replay across"
rm -f "$sock"
start_serve "$sock" vol
fio "${dur[@]}" --verify_only=1 --verify_fatal=1 --output="$tmpdir/durv.out" >/dev/null ||
	fail "after kill -9 and replay: $(tail -5 "$tmpdir/durv.out")"
echo "kill -9 with $segs segments (reused ones among them): every flushed write replayed"

kill "$serve_pid" && wait "$serve_pid"
! grep -E ' [1-9][0-9]* errors' "$tmpdir/serve.log" || fail "requests failed: $(cat "$tmpdir/serve.log")"
vdisk check >"$tmpdir/check.out" 2>&1 || fail "vdisk check: $(cat "$tmpdir/check.out")"
[ ! -e "$VDISK_STORE/journal/vol" ] || [ -z "$(ls -A "$VDISK_STORE/journal/vol")" ] ||
	fail "a clean shutdown left a journal: $(ls "$VDISK_STORE/journal/vol")"
echo "random writes past the journal's bound: bounded, verified, check clean"
