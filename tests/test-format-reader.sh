#!/bin/bash
# FORMAT.md is complete: tests/format-reader.py, a reader written from the
# spec alone (Python, mdb_dump, zstd), reads every volume and snapshot of
# stores built by vdisk (4K and 64K chunks; data, zero regions, repeated
# blocks, compressible and random data; snapshots, clones, writes, rollback,
# resize, rm, gc) and returns the same bytes as `vdisk export`; it checks
# framed records' tables and frames and rejects a flipped bit in either.
source "$(dirname "$0")/functions.sh"
requires python3 cmp mdb_dump zstd
# Debian's python3 starts in 0.1 s; a pyenv shim can take 2 s.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
reader() { "$PY" "$VDISK_TOP/tests/format-reader.py" "$@"; }
# Stores on /dev/shm when there is one: disk sync behaviour is not under
# test here, and each vdisk command fsyncs several times.
scratch=$tmpdir
if [ -z "${VDISK_TEST_TMPDIR:-}" ] && [ -w /dev/shm ]; then
	scratch=$(mktemp -d /dev/shm/vdisk-test.XXXXXX) || fail "mktemp"
	cleanup_fn "rm -rf '$scratch'"
fi
K=1024

# gen FILE SIZE SEED: an image of SIZE bytes made of 4K pieces: random,
# zero, text (compressible), a repeat of an earlier random piece, and a
# few unaligned sparse bytes.
gen() {
	"$PY" - "$@" <<'EOF' || fail "gen $*"
import random, sys
path, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
out, pieces = bytearray(), []
while len(out) < size:
    k = r.randrange(10)
    if k < 3:
        p = r.randbytes(4096); pieces.append(p)
    elif k < 6:
        p = bytes(4096 * r.randint(1, 20))
    elif k < 8:
        p = (b"line %d of seed %d; vdisk format reader\n" % (len(out), seed)) * 120
        p = p[:4096 * r.randint(1, 3)]
    elif pieces:
        p = r.choice(pieces)
    else:
        p = bytes(4096)
    out += p
out = out[:size]
for _ in range(4):
    out[r.randrange(size)] = r.randrange(1, 256)
open(path, "wb").write(out)
EOF
}

# compare_all STORE: every volume and snapshot, read both ways.
compare_all() {
	local store=$1 points p n=0
	points=$(vdisk --store "$store" list --json | "$PY" -c '
import json, sys
for v in json.load(sys.stdin)["volumes"]:
    print(v["name"])
    for s in v["snapshots"]:
        print(v["name"] + "@" + s["name"])') || fail "list --json"
	for p in $points; do
		rm -f "$tmpdir/exp" "$tmpdir/fr"
		vdisk --store "$store" export "$p" "$tmpdir/exp" || fail "export $p"
		reader "$store" "$p" "$tmpdir/fr" || fail "format-reader $p ($store)"
		cmp "$tmpdir/exp" "$tmpdir/fr" || fail "format-reader and export differ for $p ($store)"
		n=$((n + 1))
	done
	echo "$store: $n points agree"
	[ "$n" -gt 0 ] || fail "no points in $store"
}

for cs in 4K 64K; do
	s="$scratch/store-$cs"
	vdisk --store "$s" init --chunk-size "$cs" >/dev/null || fail "init $cs"
	v() { vdisk --store "$s" "$@" || fail "vdisk $* ($cs)"; }

	gen "$tmpdir/img" $((1536 * K + 1000)) 1
	v import vm "$tmpdir/img"
	compare_all "$s"
	v snapshot vm@s1
	# Writes into vm: aligned, unaligned, zeroes over data.
	gen "$tmpdir/w1" $((200 * K)) 2
	v import --existing --offset 64K vm "$tmpdir/w1"
	gen "$tmpdir/w2" 5000 3
	v import --existing --offset 777 vm "$tmpdir/w2"
	head -c $((128 * K)) /dev/zero >"$tmpdir/z"
	v import --existing --offset 1M vm "$tmpdir/z"
	v snapshot vm@s2

	# A second volume created empty, written by import --existing.
	v create other 3M
	gen "$tmpdir/w3" $((300 * K)) 4
	v import --existing --offset 2M other "$tmpdir/w3"
	v import --existing --offset 100 other "$tmpdir/w2"
	v snapshot other@o1

	# Clones with their own writes and snapshots; a clone of a clone.
	v clone vm@s1 c1
	v import --existing --offset 300K c1 "$tmpdir/w3"
	v snapshot c1@c1s
	v import --existing c1 "$tmpdir/w2"
	v clone c1@c1s c2
	v import --existing --offset 1000K c2 "$tmpdir/w1"
	compare_all "$s"

	# Rollback, writes after it, a further snapshot.
	v rollback vm@s1
	v import --existing --offset 12345 vm "$tmpdir/w1"
	v snapshot vm@s3
	v import --existing --offset 1400K vm "$tmpdir/w2"
	# Shrink to an unaligned size then grow: the tail must read as zeroes.
	v resize other $((2 * 1024 * K + 4321)) --shrink
	v resize other 4M
	v snapshot other@o2
	compare_all "$s"

	# Removal and gc: dead chunks, compacted packs.
	v rm vm@s2
	# c2 is a clone of c1@c1s: removing the snapshot is refused (exit 1).
	vdisk --store "$s" rm c1@c1s 2>"$tmpdir/err"
	rc=$?
	[ "$rc" -eq 1 ] || fail "rm c1@c1s with clone c2 exited $rc, expected 1 ($cs)"
	grep -qF "vdisk: rm: vd_snapshot_remove: snapshot 'c1@c1s' has 1 clone: c2" \
		"$tmpdir/err" || fail "rm c1@c1s with clone c2: $(cat "$tmpdir/err")"
	compare_all "$s"                                # dead chunks, before gc
	v gc >/dev/null
	v check >/dev/null
	compare_all "$s"
	v flatten c2
	# c2 no longer depends on c1@c1s: rm -r removes c1 and its snapshot.
	v rm -r c1
	expect_exit 1 vdisk --store "$s" info c1 2>/dev/null
	expect_exit 1 vdisk --store "$s" info c1@c1s 2>/dev/null
	v gc >/dev/null
	compare_all "$s"
	unset -f v
done

# Framed records (version 3): the reader checks the frame table and every
# frame's XXH3-64 before it decodes; a flipped bit in either is corruption.
s="$scratch/frames"
vdisk --store "$s" init --chunk-size 64K >/dev/null || fail "init frames"
gen "$tmpdir/img" $((512 * K)) 5
vdisk --store "$s" import vm "$tmpdir/img" || fail "import frames"
compare_all "$s"
# Chunks none of whose frames compress are stored in 4 KiB frames: a store
# whose first chunk is random.
s4="$scratch/frames4k"
vdisk --store "$s4" init --chunk-size 64K >/dev/null || fail "init frames4k"
{ head -c $((128 * K)) /dev/urandom; cat "$tmpdir/img"; } >"$tmpdir/img4k"
vdisk --store "$s4" import vm "$tmpdir/img4k" || fail "import frames4k"
compare_all "$s4"
# flip STORE WHERE [FRAME_SIZE]: flips a bit in the first framed record of
# pack 1 (of FRAME_SIZE frames if given): WHERE is "table" (frame 0's
# check) or "frame" (the last stored byte of its first frame with stored
# bytes).
flip() {
	"$PY" - "$1/data/00000001.pack" "$2" "${3:-0}" <<'EOF' || fail "flip $2"
import struct, sys
f = open(sys.argv[1], "r+b")
b = f.read()
want, rec = int(sys.argv[3]), 64
while True:  # the first framed record (of WANT-byte frames, if given)
    assert rec + 48 <= len(b), "no framed record of %d-byte frames" % want
    codec, slen = b[rec + 4], struct.unpack_from("<I", b, rec + 8)[0]
    if codec == 2 and want in (0, struct.unpack_from("<I", b, rec + 48)[0]):
        break
    rec += 48 + slen
pay = rec + 48
f.seek(pay)
fsize, n = struct.unpack("<II", f.read(8))
f.seek(pay + 8)
ents = f.read(16 * n)
pos = pay + 16  # frame 0's check: only the table check notices
if sys.argv[2] == "frame":
    pos = pay + 16 + 16 * n
    for i in range(n):
        slen, = struct.unpack_from("<I", ents, 16 * i)
        if slen:
            pos += slen - 1
            break
f.seek(pos)
b = f.read(1)
f.seek(pos)
f.write(bytes([b[0] ^ 0x10]))
EOF
}
for case in "$s:16384:table" "$s:16384:frame" "$s4:4096:table" \
	    "$s4:4096:frame"; do
	IFS=: read -r src fsize where <<<"$case"
	rm -rf "$scratch/frames-bad"
	cp -a "$src" "$scratch/frames-bad"
	flip "$scratch/frames-bad" "$where" "$fsize"
	out=$(reader "$scratch/frames-bad" vm "$tmpdir/x" 2>&1)
	rc=$?
	[ "$rc" -eq 1 ] || fail "format-reader on a flipped $where exited $rc: $out"
	grep -q "check mismatch" <<<"$out" || fail "format-reader, flipped $where: $out"
	expect_exit 1 vdisk --store "$scratch/frames-bad" check >/dev/null 2>&1
	echo "flipped bit in the $where ($fsize-byte frames): $out"
done

# The reader rejects what it does not know: a missing point is an error.
expect_exit 1 reader "$scratch/store-4K" nosuch "$tmpdir/x" 2>/dev/null
expect_exit 1 reader "$scratch/store-4K" vm@nosuch "$tmpdir/x" 2>/dev/null
expect_exit 1 reader "$tmpdir" vm "$tmpdir/x" 2>/dev/null
echo OK
