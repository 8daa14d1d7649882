#!/bin/bash
# nbdcopy from a sparse file into an export and back out, across
# connections (multi-conn), keeping holes: the export's map shows holes
# where the file has none, and the copy out is byte-identical.
source "$(dirname "$0")/functions.sh"
requires nbdcopy nbdinfo cmp
new_store >/dev/null
M=$((1024 * 1024))

vdisk create vol 40M || fail "create"
start_serve "$tmpdir/sock"
uri="nbd+unix:///vol?socket=$tmpdir/sock"

# A sparse image: data at 0-3M, 10M-10M+100K and the last 1M.
f=$tmpdir/in.img
truncate -s 40M "$f"
head -c $((3 * M)) /dev/urandom | dd of="$f" conv=notrunc status=none
head -c 100000 /dev/urandom | dd of="$f" bs=1 seek=$((10 * M)) conv=notrunc status=none
head -c $((1 * M)) /dev/urandom | dd of="$f" bs=1M seek=39 conv=notrunc status=none

nbdcopy --connections=4 --requests=16 "$f" "$uri" || fail "nbdcopy in"
nbdcopy --connections=4 "$uri" "$tmpdir/out.img" || fail "nbdcopy out"
cmp "$f" "$tmpdir/out.img" || fail "round trip differs"
nbdcopy "$uri" - | cmp - "$f" || fail "nbdcopy to stdout differs"

# Holes stayed holes (64K chunks): 3M..10M is not allocated.
nbdinfo --map "$uri" >"$tmpdir/map" || fail "map"
cat "$tmpdir/map"
grep -q "^ *$((3 * M)) *$((7 * M)) *3" "$tmpdir/map" || fail "hole 3M..10M missing"
nbdinfo --map --totals "$uri" | tee "$tmpdir/totals"
# A snapshot copies out the same bytes.
vdisk snapshot vol@s || fail "snapshot"
nbdcopy "nbd+unix:///vol@s?socket=$tmpdir/sock" "$tmpdir/snap.img" || fail "nbdcopy snapshot"
cmp "$f" "$tmpdir/snap.img" || fail "snapshot copy differs"
echo OK
