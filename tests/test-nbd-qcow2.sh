#!/bin/bash
# A qcow2 overlay whose backing file is a vdisk export: reads fall through
# to the export, writes stay in the overlay, and committing the overlay
# writes into the volume through the server.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io
new_store >/dev/null

vdisk create base 16M || fail "create"
start_serve "$tmpdir/sock"
uri="nbd+unix:///base?socket=$tmpdir/sock"
ov=$tmpdir/overlay.qcow2

qemu-io -f raw -c 'write -P 0xa1 0 1M' -c 'write -P 0xa2 5M 100k' "$uri" >/dev/null || fail "seed base"
qemu-img create -q -f qcow2 -b "$uri" -F raw "$ov" || fail "qemu-img create overlay"
qemu-img info "$ov" | grep -q "backing file: $uri" || fail "backing not recorded"
# Reads through the overlay, writes only into the overlay (unaligned).
qemu-io -f qcow2 \
	-c 'read -P 0xa1 0 1M' -c 'read -P 0xa2 5M 100k' -c 'read -P 0 6M 1M' \
	-c 'write -P 0xb1 4097 3000' -c 'write -z 5M 4k' -c 'discard 512k 64k' \
	-c 'read -P 0xb1 4097 3000' -c 'read -P 0xa1 0 4097' -c 'read -P 0 5M 4k' \
	"$ov" >"$tmpdir/qio" || fail "qemu-io overlay: $(cat "$tmpdir/qio")"
grep -qi 'fail\|mismatch' "$tmpdir/qio" && fail "pattern: $(cat "$tmpdir/qio")"
# The export is untouched.
qemu-io -f raw -c 'read -P 0xa1 0 1M' -c 'read -P 0xa2 5M 100k' "$uri" >"$tmpdir/qio" ||
	fail "base changed"
grep -qi 'fail\|mismatch' "$tmpdir/qio" && fail "base pattern: $(cat "$tmpdir/qio")"
qemu-img compare "$ov" "$uri" && fail "overlay and base should differ"
# Commit the overlay down into the volume through NBD.
qemu-img commit -q "$ov" || fail "qemu-img commit"
qemu-io -f raw -c 'read -P 0xb1 4097 3000' -c 'read -P 0 5M 4k' -c 'read -P 0xa2 5246976 96k' \
	"$uri" >"$tmpdir/qio" || fail "read after commit"
grep -qi 'fail\|mismatch' "$tmpdir/qio" && fail "commit pattern: $(cat "$tmpdir/qio")"
qemu-img compare "$ov" "$uri" || fail "overlay and base differ after commit"
qemu-img check "$ov" || fail "qemu-img check overlay"
echo OK
