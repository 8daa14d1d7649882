#!/bin/bash
# vdisk serve with qemu-img, qemu-io and nbdinfo: info, list, flags, patterns
# (unaligned, write -z, discard), convert in and out, compare, map.
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io nbdinfo cmp
new_store >/dev/null
sock=$tmpdir/sock
M=$((1024 * 1024))

vdisk create vol 64M || fail "create"
vdisk create other 8M || fail "create other"
vdisk snapshot other@s1 || fail "snapshot"
start_serve "$sock"
uri() { echo "nbd+unix:///$1?socket=$sock"; }

# qemu-img info sees the size.
qemu-img info --output=json -f raw "$(uri vol)" >"$tmpdir/info" || fail "qemu-img info"
grep -q '"virtual-size": 67108864' "$tmpdir/info" || fail "size: $(cat "$tmpdir/info")"

# nbdinfo --list shows every volume and snapshot.
nbdinfo --list --json "$(uri '')" >"$tmpdir/list" || fail "nbdinfo --list"
for e in vol other other@s1; do
	grep -q "\"export-name\": \"$e\"" "$tmpdir/list" || fail "list lacks $e: $(cat "$tmpdir/list")"
done

# Flags: the volume is writable, the snapshot read-only, both multi-conn.
nbdinfo --can write "$(uri vol)" || fail "vol not writable"
nbdinfo --can write "$(uri other@s1)" && fail "snapshot writable"
for f in flush fua trim zero fast-zero cache multi-conn df; do
	nbdinfo --can "$f" "$(uri vol)" || fail "vol cannot $f"
done
nbdinfo --can multi-conn "$(uri other@s1)" || fail "snapshot lacks multi-conn"
nbdinfo --json "$(uri vol)" | grep -q '"base:allocation"' || fail "no base:allocation"

# Patterns, with unaligned offsets and lengths.
qemu-io -f raw \
	-c 'write -P 0x55 0 1M' \
	-c 'write -P 0x66 1000 3000' \
	-c 'write -P 0x77 65535 2' \
	-c 'write -P 0x11 8M 64k' \
	-c 'write -P 0x22 9M 64k' \
	-c 'write -z 8M 64k' \
	-c 'discard 9M 64k' \
	-c 'write -P 0x33 63M 1M' \
	"$(uri vol)" >"$tmpdir/qio" || fail "qemu-io writes: $(cat "$tmpdir/qio")"
qemu-io -f raw \
	-c 'read -P 0x55 0 1000' \
	-c 'read -P 0x66 1000 3000' \
	-c 'read -P 0x55 4000 61535' \
	-c 'read -P 0x77 65535 2' \
	-c 'read -P 0x55 65537 982999' \
	-c 'read -P 0 1M 1M' \
	-c 'read -P 0 8M 64k' \
	-c 'read -P 0 9M 64k' \
	-c 'read -P 0x33 63M 1M' \
	"$(uri vol)" >"$tmpdir/qio" || fail "qemu-io reads"
grep -q -i 'fail\|error' "$tmpdir/qio" && fail "pattern mismatch: $(cat "$tmpdir/qio")"

# Out-of-range I/O is refused, the connection survives.
out=$(qemu-io -f raw -c 'read 64M 512' -c 'read -P 0x55 0 512' "$(uri vol)" 2>&1)
echo "$out" | grep -q 'read failed' || fail "read past the end accepted: $out"
echo "$out" | grep -q 'read 512/512 bytes at offset 0' || fail "no read after error: $out"

# nbdinfo --map: data where written, holes elsewhere (chunk granular).
nbdinfo --map "$(uri vol)" >"$tmpdir/map" || fail "nbdinfo --map"
cat "$tmpdir/map"
read -r off len typ _ < <(sed -n 1p "$tmpdir/map")
[ "$off" = 0 ] && [ "$len" = $((1 * M)) ] && [ "$typ" = 0 ] || fail "map line 1"
grep -q "^ *$((1 * M)) *$((62 * M)) *3" "$tmpdir/map" || fail "map: hole 1M..63M"
grep -q "^ *$((63 * M)) *$((1 * M)) *0" "$tmpdir/map" || fail "map: data at 63M"

# qemu-img map agrees.
qemu-img map -f raw --output=json "$(uri vol)" >"$tmpdir/qmap" || fail "qemu-img map"
grep -q '"start": 1048576, "length": 65011712, "depth": 0, "present": true, "zero": true, "data": false' \
	"$tmpdir/qmap" || fail "qemu-img map: $(cat "$tmpdir/qmap")"

# Convert in and out, compare both ways.
head -c $((3 * M)) /dev/urandom >"$tmpdir/rand"
truncate -s 8M "$tmpdir/rand"
qemu-img convert -n -f raw -O raw "$tmpdir/rand" "$(uri other)" || fail "convert in"
qemu-img compare -f raw -F raw "$tmpdir/rand" "$(uri other)" || fail "compare"
qemu-img convert -f raw -O raw "$(uri other)" "$tmpdir/back" || fail "convert out"
cmp "$tmpdir/rand" "$tmpdir/back" || fail "convert round trip"
# The snapshot kept its (zero) contents.
qemu-img convert -f raw -O raw "$(uri other@s1)" "$tmpdir/snap" || fail "convert snapshot"
cmp "$tmpdir/snap" <(head -c $((8 * M)) /dev/zero) || fail "snapshot changed"
# Sparse: convert out of an empty region keeps it a hole.
qemu-img convert -f raw -O qcow2 "$(uri vol)" "$tmpdir/vol.qcow2" || fail "convert to qcow2"
qemu-img compare -f raw -F qcow2 "$(uri vol)" "$tmpdir/vol.qcow2" || fail "compare qcow2"

# A missing export is refused with a message naming it.
nbdinfo "$(uri nosuch)" 2>"$tmpdir/err" && fail "missing export accepted"
grep -q "nosuch" "$tmpdir/err" || fail "no message: $(cat "$tmpdir/err")"

# The data survives a restart through the store.
vdisk export other "$tmpdir/exported" || fail "export while served"
cmp "$tmpdir/rand" "$tmpdir/exported" || fail "store contents differ"
echo OK
