#!/bin/bash
# import keeps holes and zero blocks out of the store; export writes the
# same bytes back, sparsely; export of a snapshot; stdout; --force;
# import --existing --offset.
source "$(dirname "$0")/functions.sh"
requires python3 cmp truncate dd
new_store >/dev/null

json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }
K=1024 M=$((1024 * 1024))

# A 4 MiB image (64 chunks of 64K): random data in chunks 0-1, a 64K
# random run at 1M+4K (chunks 16-17), 256K of written zeroes at 2M,
# 8K random at the end (chunk 63); the rest holes.
img="$tmpdir/disk.img"
truncate -s 4M "$img"
rnd() { dd if=/dev/urandom of="$img" bs=1024 seek=$(($1 / K)) count=$(($2 / K)) conv=notrunc status=none; }
rnd 0 $((128 * K))
rnd $((M + 4 * K)) $((64 * K))
dd if=/dev/zero of="$img" bs=1024 seek=$((2 * M / K)) count=256 conv=notrunc status=none
rnd $((4 * M - 8 * K)) $((8 * K))

vdisk import vm "$img" || fail "import"
vdisk info --json vm | json "
assert d['size'] == 4 * $M, d
# chunks 0, 1, 16, 17, 63: holes and the zero blocks are not stored
assert d['written_bytes'] == 5 * 65536, d['written_bytes']
" || fail "import: size or written bytes"

# Export: identical bytes, sparse.
out="$tmpdir/out.img"
vdisk export vm "$out" || fail "export"
cmp "$img" "$out" || fail "exported image differs"
[ "$(stat -c %s "$out")" -eq $((4 * M)) ] || fail "export size"
used=$(du -k "$out" | cut -f1)
[ "$used" -le 512 ] || fail "export is not sparse: ${used}K used"
if command -v qemu-img >/dev/null; then
	qemu-img map -f raw --output=json "$out" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e["data"]:
        s, n = e["start"], e["length"]
        # the written-zero range at 2M must be a hole in the export
        assert s + n <= 2 * 2**20 or s >= 2 * 2**20 + 256 * 1024, e
' || fail "qemu-img map: zero range exported as data"
else
	echo "qemu-img not installed: skipping the qemu-img map check"
fi

# Refuse to overwrite a non-empty file; --force does; an empty file is ok.
expect_exit 1 vdisk export vm "$out" 2>/dev/null
echo junk >"$tmpdir/junk"
expect_exit 1 vdisk export vm "$tmpdir/junk" 2>/dev/null
[ "$(cat "$tmpdir/junk")" = junk ] || fail "refused export changed the file"
vdisk export --force vm "$tmpdir/junk" || fail "export --force"
cmp "$img" "$tmpdir/junk" || fail "forced export differs"
: >"$tmpdir/empty"
vdisk export vm "$tmpdir/empty" || fail "export to an empty file"
cmp "$img" "$tmpdir/empty" || fail "export to empty file differs"
expect_exit 1 vdisk export vm "$tmpdir" 2>/dev/null   # a directory

# Standard output: every byte, holes as zeroes.
vdisk export vm - | cmp - "$img" || fail "export to stdout differs"
# A reader that stops early: export ends (SIGPIPE), no hang.
n=$(set +o pipefail; timeout 20 "$VDISK" export vm - | head -c 1000 | wc -c)
[ "$n" -eq 1000 ] || fail "export to a closed pipe"

# Snapshot export after overwriting part of the volume with --existing.
vdisk snapshot vm@orig || fail "snapshot"
patch="$tmpdir/patch"
head -c $((100 * K)) /dev/urandom >"$patch"
vdisk import --existing --offset 3M vm "$patch" || fail "import --existing --offset"
python3 - "$img" "$patch" "$tmpdir/expect" <<'PY' || fail "python"
import sys
img = bytearray(open(sys.argv[1], "rb").read())
patch = open(sys.argv[2], "rb").read()
img[3 << 20:(3 << 20) + len(patch)] = patch
open(sys.argv[3], "wb").write(img)
PY
vdisk export vm "$tmpdir/now.img" || fail "export head"
cmp "$tmpdir/expect" "$tmpdir/now.img" || fail "--existing --offset wrote wrong bytes"
vdisk export vm@orig "$tmpdir/orig.img" || fail "export snapshot"
cmp "$img" "$tmpdir/orig.img" || fail "snapshot export differs"

# --existing replaces holes too: import a mostly-hole file over data.
truncate -s 1M "$tmpdir/holes"
vdisk import --existing vm "$tmpdir/holes" || fail "import --existing of holes"
vdisk export vm "$tmpdir/h.out" || fail "export after --existing"
cmp -n $M "$tmpdir/h.out" "$tmpdir/holes" || fail "--existing did not zero the holes"
cmp -i $M "$tmpdir/h.out" "$tmpdir/expect" || fail "--existing changed bytes past the file"
too_big="$tmpdir/too-big"
truncate -s 5M "$too_big"
expect_exit 1 vdisk import --existing vm "$too_big" 2>/dev/null
expect_exit 1 vdisk import --existing --offset 4M vm "$patch" 2>/dev/null
expect_exit 1 vdisk import --existing nosuch "$patch" 2>/dev/null

# import errors: missing file, existing volume (left intact), empty file,
# a directory.  None leaves a volume behind.
expect_exit 1 vdisk import new "$tmpdir/nonexistent" 2>/dev/null
expect_exit 1 vdisk import vm "$img" 2>/dev/null
vdisk export vm@orig - | cmp - "$img" || fail "failed import harmed vm"
: >"$tmpdir/zero-size"
expect_exit 1 vdisk import new "$tmpdir/zero-size" 2>/dev/null
expect_exit 1 vdisk import new "$tmpdir" 2>/dev/null
mkfifo "$tmpdir/fifo"
expect_exit 1 vdisk import new "$tmpdir/fifo" 2>/dev/null
vdisk list --json | json 'assert [v["name"] for v in d["volumes"]] == ["vm"], d' ||
	fail "a failed import left a volume"

# Progress bars go to stderr only when it is a terminal.
vdisk import quiet "$img" 2>"$tmpdir/err" || fail "import quiet"
vdisk export quiet "$tmpdir/quiet.out" 2>>"$tmpdir/err" || fail "export quiet"
[ ! -s "$tmpdir/err" ] || fail "output on a non-terminal stderr: $(cat "$tmpdir/err")"
if command -v script >/dev/null; then
	script -qec "'$VDISK' export quiet '$tmpdir/tty.out'" /dev/null >"$tmpdir/tty" ||
		fail "export on a terminal"
	grep -q 'export \[#' "$tmpdir/tty" || fail "no progress bar on a terminal"
	cmp "$img" "$tmpdir/tty.out" || fail "export on a terminal differs"
fi
vdisk rm quiet || fail "rm quiet"

# Unaligned size: exact, not rounded.
head -c 100001 /dev/urandom >"$tmpdir/odd"
vdisk import odd "$tmpdir/odd" || fail "import odd size"
vdisk info --json odd | json 'assert d["size"] == 100001, d' || fail "odd size"
vdisk export odd "$tmpdir/odd.out" && cmp "$tmpdir/odd" "$tmpdir/odd.out" ||
	fail "odd size round trip"
echo OK
