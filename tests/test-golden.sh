#!/bin/bash
# Golden stores: tests/golden/v1-store.tar, a FORMAT.md version 1 store made
# by tests/golden/make-v1.sh, stays readable: `vdisk check` is clean and
# every volume and snapshot exports to the SHA-256 recorded when it was made
# (and tests/format-reader.py, the reader written from FORMAT.md alone,
# agrees).  Damaged copies made here fail with exit 1 and a clear message,
# never wrong bytes: a flipped byte in a raw and in a zstd chunk payload, a
# torn superblock, a superblock of an unknown version (6).  A version 1 store
# stays version 1 when read and is upgraded in place to version 5 (framed
# chunk records, journal chunk records and epoch markers) when a head is
# first opened for writing with a journal, a version 2, 3 or 4 one too; an
# upgrade cut short after the superblock is finished.
source "$(dirname "$0")/functions.sh"
requires tar sha256sum python3 cmp
golden="$VDISK_TOP/tests/golden"
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
have_reader=
if command -v mdb_dump >/dev/null && command -v zstd >/dev/null; then
	have_reader=1
else
	echo "note: mdb_dump or zstd missing; not running format-reader.py"
fi
reader() { "$PY" "$VDISK_TOP/tests/format-reader.py" "$@"; }

# fresh NAME: a new copy of the golden store, echoes its path.
fresh() {
	mkdir "$tmpdir/$1" && tar -xf "$golden/v1-store.tar" -C "$tmpdir/$1" ||
		fail "untar v1-store.tar"
	echo "$tmpdir/$1/v1"
}

points=$(awk '{print $2}' "$golden/v1-expected/v1.sha256")
[ -n "$points" ] || fail "v1.sha256 is empty"

# ---- the intact store ---------------------------------------------------------
s=$(fresh good)
vdisk --store "$s" check || fail "check of the golden store is not clean"
for p in $points; do
	want=$(awk -v p="$p" '$2 == p {print $1}' "$golden/v1-expected/v1.sha256")
	got=$(vdisk --store "$s" export "$p" - | sha256sum | cut -d' ' -f1) ||
		fail "export $p"
	[ "$got" = "$want" ] || fail "export $p: sha256 $got, expected $want"
	if [ -n "$have_reader" ]; then
		got=$(reader "$s" "$p" - | sha256sum | cut -d' ' -f1) ||
			fail "format-reader $p"
		[ "$got" = "$want" ] ||
			fail "format-reader $p: sha256 $got, expected $want"
	fi
done
# Every point of the store is in the expected file.
n=$(vdisk --store "$s" list --json | "$PY" -c '
import json, sys
d = json.load(sys.stdin)["volumes"]
print(len(d) + sum(len(v["snapshots"]) for v in d))')
[ "$n" -eq "$(wc -l <"$golden/v1-expected/v1.sha256")" ] ||
	fail "the store has $n points, v1.sha256 lists $(wc -l <"$golden/v1-expected/v1.sha256")"
echo "golden v1: $n points read correctly"

# ---- a flipped byte in a chunk payload ----------------------------------------
# flip STORE CODEC: flips the middle byte of the payload of the first chunk
# record stored with CODEC (0 raw, 1 zstd) in the lowest-numbered pack file
# holding one (FORMAT.md "Pack files": records are contiguous after the
# 64-byte header).  Prints the chunk's name (hex).
flip() {
	"$PY" - "$@" <<'EOF'
import glob, struct, sys
store, want = sys.argv[1], int(sys.argv[2])
for path in sorted(glob.glob(store + "/data/*.pack")):
    with open(path, "r+b") as f:
        buf = f.read()
        off = 64
        while off + 48 <= len(buf):
            magic, codec = struct.unpack_from("<IB", buf, off)
            slen, = struct.unpack_from("<I", buf, off + 8)
            assert magic == 0x31434456, (path, off)
            if codec == want:
                at = off + 48 + slen // 2
                f.seek(at)
                f.write(bytes([buf[at] ^ 0x5A]))
                print(buf[off + 16:off + 48].hex())
                sys.exit(0)
            off += 48 + slen
sys.exit("no record with codec %d" % want)
EOF
}

for codec in 0 1; do
	s=$(fresh flip$codec)
	name=$(flip "$s" "$codec") || fail "flip codec $codec"
	echo "flipped a byte of chunk $name (codec $codec)"
	out=$(vdisk --store "$s" check 2>&1)
	rc=$?
	[ "$rc" -eq 1 ] || fail "check of a flipped chunk exited $rc: $out"
	grep -q "${name:0:16}" <<<"$out" || fail "check does not name chunk $name: $out"
	nfailed=0
	for p in $points; do
		want=$(awk -v p="$p" '$2 == p {print $1}' "$golden/v1-expected/v1.sha256")
		rm -f "$tmpdir/exp"
		vdisk --store "$s" export "$p" "$tmpdir/exp" 2>"$tmpdir/err"
		rc=$?
		if [ "$rc" -eq 0 ]; then
			# A point not using the chunk: must still read correctly.
			got=$(sha256sum <"$tmpdir/exp" | cut -d' ' -f1)
			[ "$got" = "$want" ] || fail "export $p returned wrong bytes"
			continue
		fi
		[ "$rc" -eq 1 ] || fail "export $p of a flipped chunk exited $rc"
		# FORMAT.md: "a mismatch is the error corrupt, never data".
		grep -q 'corrupt' "$tmpdir/err" ||
			fail "export $p: no corruption message: $(cat "$tmpdir/err")"
		echo "  $p: $(cat "$tmpdir/err")"
		[ -e "$tmpdir/exp" ] && [ -s "$tmpdir/exp" ] &&
			fail "export $p failed but left $tmpdir/exp"
		if [ -n "$have_reader" ]; then
			reader "$s" "$p" "$tmpdir/fr" 2>"$tmpdir/err"
			rc=$?
			[ "$rc" -eq 1 ] || fail "format-reader $p of a flipped chunk exited $rc"
			grep -q "corrupt: .*$name" "$tmpdir/err" ||
				fail "format-reader $p: $(cat "$tmpdir/err")"
		fi
		nfailed=$((nfailed + 1))
	done
	[ "$nfailed" -gt 0 ] || fail "no export used the flipped chunk $name"
	echo "flipped chunk (codec $codec): $nfailed points fail as corrupt"
done

# ---- a torn (truncated) superblock --------------------------------------------
s=$(fresh torn)
truncate -s 40 "$s/vdisk.sb" || fail "truncate"
for cmd in "list" "check" "export vm $tmpdir/torn.raw" "info vm" "snapshot vm@new"; do
	# shellcheck disable=SC2086
	out=$(vdisk --store "$s" $cmd 2>&1)
	rc=$?
	[ "$rc" -eq 1 ] || fail "$cmd on a torn superblock exited $rc: $out"
	grep -qi 'superblock' <<<"$out" || fail "$cmd: unclear message: $out"
	echo "torn superblock: $cmd: $out"
done
[ -e "$tmpdir/torn.raw" ] && fail "export of a torn store wrote a file"
[ "$(stat -c %s "$s/vdisk.sb")" -eq 40 ] || fail "the torn superblock was rewritten"
if [ -n "$have_reader" ]; then
	out=$(reader "$s" vm - 2>&1 >/dev/null)
	[ $? -eq 1 ] || fail "format-reader on a torn superblock"
	grep -q 'corrupt' <<<"$out" || fail "format-reader: $out"
fi

# ---- superblock versions -------------------------------------------------------
# setver STORE N: rewrites the superblock's version field (valid CRC).
setver() {
	"$PY" - "$1/vdisk.sb" "$2" <<'EOF' || fail "rewrite superblock"
import struct, sys
def crc32c(data):                     # FORMAT.md "Conventions"
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF
assert crc32c(b"123456789") == 0xE3069283
sb = bytearray(open(sys.argv[1], "rb").read())
assert len(sb) == 64 and struct.unpack_from("<I", sb, 60)[0] == crc32c(sb[:60])
struct.pack_into("<I", sb, 8, int(sys.argv[2]))
struct.pack_into("<I", sb, 60, crc32c(sb[:60]))
open(sys.argv[1], "wb").write(sb)
EOF
}
sbver() { od -An -tu4 -j8 -N4 "$1/vdisk.sb" | tr -d ' '; }

# Version 6 does not exist yet: refused, nothing written.
s=$(fresh v6)
setver "$s" 6
for cmd in "list" "check" "export vm $tmpdir/v6.raw" "info vm"; do
	# shellcheck disable=SC2086
	out=$(vdisk --store "$s" $cmd 2>&1)
	rc=$?
	[ "$rc" -eq 1 ] || fail "$cmd on a version 6 store exited $rc: $out"
	grep -Eqi 'unsupported.*version 6' <<<"$out" ||
		fail "$cmd: no unsupported version message: $out"
	echo "version 6: $cmd: $out"
done
[ -e "$tmpdir/v6.raw" ] && fail "export of a version 6 store wrote a file"
if [ -n "$have_reader" ]; then
	out=$(reader "$s" vm - 2>&1 >/dev/null)
	[ $? -eq 1 ] || fail "format-reader on a version 6 store"
	grep -q 'unsupported format version 6' <<<"$out" || fail "format-reader: $out"
fi

# verify STORE WHAT: every golden point still reads as recorded, by vdisk and
# by the reader, and check is clean.
verify() {
	vdisk --store "$1" check >/dev/null || fail "$2: check is not clean"
	for p in $points; do
		want=$(awk -v p="$p" '$2 == p {print $1}' "$golden/v1-expected/v1.sha256")
		got=$(vdisk --store "$1" export "$p" - | sha256sum | cut -d' ' -f1)
		[ "$got" = "$want" ] || fail "$2: export $p: sha256 $got, expected $want"
		if [ -n "$have_reader" ]; then
			got=$(reader "$1" "$p" - | sha256sum | cut -d' ' -f1)
			[ "$got" = "$want" ] || fail "$2: format-reader $p: $got"
		fi
	done
}

# Reading a version 1 store leaves it version 1.
s=$(fresh ro)
verify "$s" "read-only use"
[ "$(sbver "$s")" = 1 ] || fail "reading a version 1 store changed its version"

# Opening a head for writing (with a journal) upgrades it in place to
# version 5; old points read the same, beside the new framed records.
s=$(fresh up)
vdisk --store "$s" create fresh 1M || fail "create on a version 1 store"
head -c 300000 /dev/urandom >"$tmpdir/w.img"
vdisk --store "$s" import --existing fresh "$tmpdir/w.img" ||
	fail "write into a version 1 store"
# import writes no journal: the store can stay version 1.
[ "$(sbver "$s")" = 1 ] || fail "an import upgraded the store"
# A head opened for writing with a journal needs version 5.
vdisk --store "$s" resize fresh 2M || fail "resize on a version 1 store"
[ "$(sbver "$s")" = 5 ] || fail "opening a head for writing did not upgrade the store to version 5"
# New content goes into framed records, beside the version 1 ones.
vdisk --store "$s" import --existing fresh "$tmpdir/w.img" ||
	fail "write into an upgraded store"
verify "$s" "upgraded store"
vdisk --store "$s" export fresh "$tmpdir/fresh.raw" &&
	cmp -n 300000 "$tmpdir/fresh.raw" "$tmpdir/w.img" ||
	fail "upgraded store: the new volume does not read back"
vdisk --store "$s" list --json | grep -q '"format_version": 5' ||
	fail "list --json does not say format version 5"

# A version 2 store (one whose journal upgrade ran before version 3), a
# version 3 one (framed records, no journal chunk records) and a version 4
# one (no journal epoch markers) become version 5 the same way.
for v in 2 3 4; do
	s=$(fresh "v$v")
	setver "$s" $v
	verify "$s" "version $v store"
	vdisk --store "$s" create fresh 1M || fail "create on a version $v store"
	vdisk --store "$s" resize fresh 2M || fail "resize on a version $v store"
	[ "$(sbver "$s")" = 5 ] || fail "a version $v store was not upgraded to version 5"
	vdisk --store "$s" import --existing fresh "$tmpdir/w.img" ||
		fail "write into a store upgraded from version $v"
	verify "$s" "store upgraded from version $v"
done

# An upgrade cut short after the superblock (version 2, meta still 1) is
# finished by the next open.
s=$(fresh cut)
setver "$s" 3
verify "$s" "interrupted upgrade"
echo "upgrade: version 1 stays 1 when read or imported into, becomes 5 when a head is opened for writing"
echo OK
