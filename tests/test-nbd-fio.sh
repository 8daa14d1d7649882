#!/bin/bash
# fio's nbd engine against vdisk serve: random writes of mixed sizes at
# queue depth 16 with crc32c verification, then a verify-only pass on a
# second connection, on a writable volume and a clone.
source "$(dirname "$0")/functions.sh"
requires fio
fio --enghelp=nbd >/dev/null 2>&1 || { echo "SKIP: fio lacks the nbd engine"; exit 77; }
new_store >/dev/null

vdisk create vol 32M || fail "create"
vdisk snapshot vol@empty || fail "snapshot"
vdisk clone vol@empty cl || fail "clone"
start_serve "$tmpdir/sock"

for export in vol cl; do
	uri="nbd+unix:///$export?socket=$tmpdir/sock"
	fio --name=randw --ioengine=nbd --uri="$uri" --rw=randwrite \
		--bssplit=4k/50:16k/20:64k/20:192k/10 --size=24M --offset=4M \
		--iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--verify_backlog=256 --randrepeat=1 --output="$tmpdir/fio.$export" ||
		fail "fio randwrite $export: $(cat "$tmpdir/fio.$export")"
	grep -q "err= 0" "$tmpdir/fio.$export" || fail "fio errors: $(cat "$tmpdir/fio.$export")"
	# Verify again in a fresh job (new connection): same seed, read only.
	fio --name=randw --ioengine=nbd --uri="$uri" --rw=randwrite \
		--bssplit=4k/50:16k/20:64k/20:192k/10 --size=24M --offset=4M \
		--iodepth=16 --verify=crc32c --verify_only=1 --verify_fatal=1 \
		--randrepeat=1 --output="$tmpdir/fio2.$export" ||
		fail "fio verify_only $export: $(cat "$tmpdir/fio2.$export")"
done
# And at queue depth 1 from servers that never poll for the next request
# and that poll the longest (serve --busy-poll; the default is between).
for poll in 0 1000; do
	kill "$serve_pid"; wait "$serve_pid"
	start_serve "$tmpdir/sock" --busy-poll "$poll"
	fio --name=randw --ioengine=nbd --uri="nbd+unix:///vol?socket=$tmpdir/sock" \
		--rw=randwrite --bssplit=4k/50:16k/20:64k/20:192k/10 --size=24M \
		--offset=4M --iodepth=1 --verify=crc32c --verify_only=1 \
		--verify_fatal=1 --randrepeat=1 --output="$tmpdir/fio.poll$poll" ||
		fail "fio verify_only, --busy-poll $poll: $(cat "$tmpdir/fio.poll$poll")"
done
# The verification is real: the same verify-only job fails on the
# (still zero) origin snapshot.
fio --name=randw --ioengine=nbd --uri="nbd+unix:///vol@empty?socket=$tmpdir/sock" \
	--rw=randwrite --bssplit=4k/50:16k/20:64k/20:192k/10 --size=24M --offset=4M \
	--iodepth=16 --verify=crc32c --verify_only=1 --verify_fatal=1 --randrepeat=1 \
	--output="$tmpdir/fio3" && fail "verify of an unwritten export passed"
# The clone's writes never touched its origin.
vdisk export vol@empty "$tmpdir/empty" || fail "export"
cmp "$tmpdir/empty" <(head -c $((32 * 1024 * 1024)) /dev/zero) || fail "origin snapshot changed"
echo OK
