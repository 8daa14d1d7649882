#!/bin/bash
# The write journal (FORMAT.md "Write journal", engine/journal.c) across
# kill -9 of `vdisk serve`.  These claims are tested here:
#  1. Flushed writes (4 KiB, unaligned, 1 MiB, write-zeroes, trim) survive
#     kill -9: the journal is on disk, tests/format-reader.py applies it,
#     `vdisk export` replays it to the same bytes and deletes it, `vdisk
#     check` is clean; `vdisk snapshot` after a crash holds the journaled
#     writes; a clean shutdown (SIGTERM) leaves no journal.
#  2. An unflushed write may be lost but never tears: after write A, flush,
#     write B, kill -9, each chunk of the region reads as A or B.
#  3. A torn tail (the newest segment cut inside its last record) is
#     dropped: both readers see the state without that write.
#  4. Damage in an older segment is refused: export exits 1 naming
#     "damaged journal record" and the segment, writes no file and leaves
#     the journal in place; check names it; format-reader exits 1 too, vdisk serve refuses
#     the export, and rm -r still removes the volume and its journal.
#  5. A flipped bit in the newest segment's last record cannot be told from
#     a torn tail (its check fails the same way), so it is dropped like one:
#     both readers see the state without that write.
#  6. rollback and rm -r drop a dead writer's journal; segments of an
#     earlier layer (a rollback that stopped before deleting them) are
#     ignored.
#  7. A journal trimmed while the server ran (a small VDISK_DIRTY_MB makes
#     the sealer destage and remove the oldest segments) replays its
#     suffix over the sealed chunks to the right bytes.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 qemu-io cmp mdb_dump zstd
/usr/bin/python3 -c 'import nbd, xxhash' 2>/dev/null ||
	{ echo "SKIP: python3-libnbd or python3-xxhash missing"; exit 77; }
reader() { /usr/bin/python3 "$VDISK_TOP/tests/format-reader.py" "$@"; }
sock=$tmpdir/sock
M=$((1 << 20))
# Whole aligned chunks are stored in place (chunk records pointing into
# the pack file; tests 4 and 8 need them), the default, whatever the
# caller's environment; partial ones are journaled as data.  test-crash
# covers both ways.
export VDISK_IN_PLACE=on

# jt.py: the NBD client and the journal parser.
#   jt.py write SOCK PID OPS...   apply OPS through NBD (and to the expected
#                                 images), then kill -9 PID while still
#                                 connected (PID "-": disconnect; a clean
#                                 close of the volume)
#   ops: @VOL:IMG (use export VOL, expected image file IMG; connections
#        stay open to the end), w:OFF:LEN:BYTE (pwrite), z:OFF:LEN
#        (write-zeroes), t:OFF:LEN (trim), f (flush), c:FILE (copy the
#        expected image to FILE), u:FILE:SPAN (1 MiB writes, each
#        flushed, cycling through the first SPAN bytes until FILE is
#        gone); numbers may be hex
#   jt.py records SEG [--newest]   print "OFFSET KIND VOLOFF LENGTH" per
#                         record, and for a chunk record (kind 3) "PACK
#                         PACKOFFSET"; nothing may follow the last record
#                         but, in the newest segment, the zeros written ahead
#   jt.py region IMG OFF LEN CHUNK A B   every CHUNK of the region is all
#                                        byte A or all byte B
cat >"$tmpdir/jt.py" <<'PY'
import os
import shutil
import signal
import struct
import sys

import xxhash

cmd = sys.argv[1]
if cmd == "write":
    import nbd
    sock, pid = sys.argv[2:4]
    conns = {}
    h = f = None
    for op in sys.argv[4:]:
        a = op.split(":")
        if a[0].startswith("@"):
            vol = a[0][1:]
            if vol not in conns:
                c = nbd.NBD()
                c.set_export_name(vol)
                c.connect_unix(sock)
                conns[vol] = (c, open(a[1], "r+b"))
            h, f = conns[vol]
            continue
        if a[0] == "f":
            h.flush()
            continue
        if a[0] == "c":
            f.flush()
            shutil.copyfile(f.name, a[1])
            continue
        if a[0] == "u":
            # 1 MiB writes and flushes, cycling through the first SPAN
            # bytes, until file a[1] is gone.
            span = int(a[2], 0) // (1 << 20)
            for i in range(2000):
                if not os.path.exists(a[1]):
                    break
                data = bytes([i % 255 + 1]) * (1 << 20)
                h.pwrite(data, (i % span) << 20)
                h.flush()
                f.seek((i % span) << 20)
                f.write(data)
            else:
                sys.exit("%s is still there" % a[1])
            continue
        off, n = int(a[1], 0), int(a[2], 0)
        data = bytes([int(a[3], 0)]) * n if a[0] == "w" else bytes(n)
        if a[0] == "w":
            h.pwrite(data, off)
        elif a[0] == "z":
            h.zero(n, off)
        elif a[0] == "t":
            h.trim(n, off)  # vdisk serve zeroes trimmed ranges
        f.seek(off)
        f.write(data)
    for c, f in conns.values():
        f.close()
    if pid != "-":
        os.kill(int(pid), signal.SIGKILL)  # the volumes are still open
    else:
        for c, f in conns.values():
            c.shutdown()
elif cmd == "records":
    # The record layout of FORMAT.md, checks verified as a reader would.
    data = open(sys.argv[2], "rb").read()
    assert data[:8] == b"VDISKJN1", "bad segment header"
    newest = sys.argv[3:] == ["--newest"]
    off = 64
    while off + 40 <= len(data):
        if newest and not data[off:].strip(b"\0"):
            break  # the zeros a writer writes ahead of its appends
        magic, kind, res, seq, voff, n, check = \
            struct.unpack_from("<IHHQQQQ", data, off)
        dlen = n if kind == 1 else 56 if kind == 3 else 0
        body = data[off + 40:off + 40 + dlen]
        if magic != 0x4a524456 or len(body) != dlen or check != \
                xxhash.xxh3_64_intdigest(
                    body, seed=xxhash.xxh3_64_intdigest(data[off:off + 32])):
            sys.exit("invalid record at %d" % off)
        if kind == 3:
            pack, poff = struct.unpack_from("<I", body, 32)[0], \
                struct.unpack_from("<Q", body, 40)[0]
            print(off, kind, voff, n, pack, poff)
        else:
            print(off, kind, voff, n)
        off += 40 + dlen
    assert off == len(data) or newest, "trailing bytes at %d" % off
elif cmd == "region":
    img, off, n, cs, a, b = sys.argv[2:8]
    off, n, cs = int(off, 0), int(n, 0), int(cs, 0)
    with open(img, "rb") as f:
        f.seek(off)
        got = f.read(n)
    for i in range(0, n, cs):
        c = got[i:i + cs]
        ok = [x for x in (a, b) if c == bytes([int(x, 0)]) * len(c)]
        assert ok, "chunk at %d is neither 0x%02x nor 0x%02x (torn)" % (
            off + i, int(a, 0), int(b, 0))
        print("chunk %d: %s" % (off + i, ok[0]))
PY
jt() { /usr/bin/python3 "$tmpdir/jt.py" "$@"; }

# serve: start vdisk serve on $sock for the current store and wait until
# it accepts (the socket of a killed server is still there: start_serve
# alone could return before the new one replaced it).
serve() {
	rm -f "$sock" "$tmpdir/serve.pid"
	start_serve "$sock" --pidfile "$tmpdir/serve.pid"
	for _ in $(seq 100); do
		[ -s "$tmpdir/serve.pid" ] && return 0
		sleep 0.1
	done
	fail "vdisk serve wrote no pidfile"
}
# crash: reap the server jt.py killed (kill -9 while it had clients).
crash() {
	{ wait "$serve_pid"; } 2>/dev/null
	[ $? -eq 137 ] || fail "vdisk serve was not killed by SIGKILL"
}
# img NAME SIZE: a zero-filled expected image.
img() { rm -f "$tmpdir/$1.exp"; truncate -s "$2" "$tmpdir/$1.exp"; }
# xport POINT FILE: vdisk export to a fresh FILE.
xport() { rm -f "$2"; vdisk export "$1" "$2"; }
jdir() { echo "$VDISK_STORE/journal/$1"; }
has_journal() {
	compgen -G "$(jdir "$1")/????????????????.jnl" >/dev/null ||
		fail "$2: no journal segment in $(jdir "$1"): $(ls -la "$(jdir "$1")" 2>&1)"
}
no_journal() {
	[ ! -e "$(jdir "$1")" ] || fail "$2: journal left behind: $(ls -la "$(jdir "$1")")"
}
# same POINT EXPECTED WHAT: both format-reader and vdisk export of POINT
# equal EXPECTED.  format-reader runs first, before vdisk replays anything.
same() {
	reader "$VDISK_STORE" "$1" "$tmpdir/fr.out" ||
		fail "$3: format-reader $1"
	cmp "$tmpdir/fr.out" "$2" || fail "$3: format-reader of $1 differs from the expected image"
	xport "$1" "$tmpdir/ex.out" || fail "$3: export $1"
	cmp "$tmpdir/ex.out" "$2" || fail "$3: export of $1 differs from the expected image"
}

# ---- 1. flushed writes survive kill -9 -------------------------------------
new_store >/dev/null
vdisk create vol 16M || fail "create vol"
img vol 16M
serve
jt write "$sock" "$serve_pid" "@vol:$tmpdir/vol.exp" \
	w:0:4096:0x11 w:0x10000:4096:0x22 w:0x2ffff:4097:0x33 \
	w:12345:100000:0x44 w:0x100000:$M:0x55 w:$((5 * M + 777)):$M:0x66 \
	w:$((16 * M - 4096)):4096:0x77 w:$((8 * M)):$((2 * M)):0x88 \
	z:$((8 * M + 4096)):$((64 * 1024)):0 t:$((9 * M)):$((128 * 1024)):0 \
	w:0x2f000:512:0x99 f || fail "1: writes"
crash
has_journal vol "1"
same vol "$tmpdir/vol.exp" "1"
no_journal vol "1: after export"
vdisk check >"$tmpdir/check.out" || fail "1: vdisk check: $(cat "$tmpdir/check.out")"

# Another crash, then a snapshot: it holds the journaled writes.
serve
jt write "$sock" "$serve_pid" "@vol:$tmpdir/vol.exp" \
	w:0x3000:0x3000:0xa1 z:0x100000:4096:0 w:$((15 * M + 3)):70000:0xa2 f ||
	fail "1: second writes"
crash
has_journal vol "1: second crash"
vdisk snapshot vol@s || fail "1: snapshot after crash"
no_journal vol "1: after snapshot"
same vol@s "$tmpdir/vol.exp" "1: snapshot"
same vol "$tmpdir/vol.exp" "1: head after snapshot"

# A clean shutdown seals everything and deletes the journal.
serve
jt write "$sock" - "@vol:$tmpdir/vol.exp" w:$((3 * M)):$M:0xa3 f || fail "1: third writes"
kill -TERM "$serve_pid"
wait "$serve_pid" || fail "1: serve exited $? on SIGTERM"
no_journal vol "1: after SIGTERM"
same vol "$tmpdir/vol.exp" "1: after SIGTERM"
vdisk check >"$tmpdir/check.out" || fail "1: vdisk check: $(cat "$tmpdir/check.out")"

# ---- 2. an unflushed write is lost or kept, never torn ----------------------
new_store >/dev/null
vdisk create vol 4M || fail "2: create"
img vol 4M
serve
jt write "$sock" "$serve_pid" "@vol:$tmpdir/vol.exp" w:$M:$((512 * 1024)):0xaa f \
	w:$M:$((512 * 1024)):0xbb || fail "2: writes"
crash
has_journal vol "2"
reader "$VDISK_STORE" vol "$tmpdir/fr.out" || fail "2: format-reader"
xport vol "$tmpdir/ex.out" || fail "2: export"
cmp "$tmpdir/fr.out" "$tmpdir/ex.out" || fail "2: format-reader and export disagree"
jt region "$tmpdir/ex.out" $M $((512 * 1024)) 65536 0xaa 0xbb ||
	fail "2: the unflushed region tore"
# Outside the region: zeroes.
cmp -n $M "$tmpdir/ex.out" /dev/zero || fail "2: bytes before the region"
no_journal vol "2: after export"

# ---- 3 and 5. a torn or damaged last record is dropped ----------------------
# The same writes to two volumes; the last one (0xee over 0x00 and 0xcc,
# within one chunk: journaled data, not stored in place) is cut short in
# t3's newest segment and has one bit flipped in t5's.
new_store >/dev/null
for v in t3 t5; do
	vdisk create $v 4M || fail "create $v"
	img $v 4M
done
serve
ops=()
for v in t3 t5; do
	ops+=("@$v:$tmpdir/$v.exp" w:0:$M:0xcc w:$((2 * M)):4096:0xcd
	      z:$((100 * 1024)):5000:0 f "c:$tmpdir/$v.before" w:$((M - 5000)):5000:0xee f)
done
jt write "$sock" "$serve_pid" "${ops[@]}" || fail "3: writes"
crash
for v in t3 t5; do
	has_journal $v "3"
	segs=("$(jdir $v)"/*.jnl)
	[ ${#segs[@]} -eq 1 ] || fail "3: ${#segs[@]} segments in $(jdir $v), expected 1"
	jt records "${segs[0]}" --newest >"$tmpdir/$v.recs" || fail "3: parse ${segs[0]}"
	read -r roff kind voff len < <(tail -n 1 "$tmpdir/$v.recs")
	[ "$kind $voff $len" = "1 $((M - 5000)) 5000" ] ||
		fail "3: last record of $v is '$kind $voff $len', not the last write"
	case $v in
	t3) truncate -s $((roff + 40 + len / 2)) "${segs[0]}" ;;
	t5) # One bit of a data byte: 0xee becomes 0xef.
	    printf '\xef' | dd of="${segs[0]}" bs=1 seek=$((roff + 40 + 1000)) \
		conv=notrunc status=none ;;
	esac
	same $v "$tmpdir/$v.before" "3/5: $v"
	no_journal $v "3/5: $v after export"
done

# ---- 4. damage in an older segment is refused -------------------------------
new_store >/dev/null
vdisk create vol 80M || fail "4: create"
serve
ops=()
# Unaligned: each has a journaled head of almost a chunk (and 15 whole
# chunks stored in place between).
for ((i = 0; i < 72; i++)); do ops+=("w:$((i * M + 512)):$M:$((i + 1))"); done
jt write "$sock" "$serve_pid" @vol:/dev/null "${ops[@]}" f || fail "4: 72 MiB of writes"
crash
segs=("$(jdir vol)"/*.jnl)
[ ${#segs[@]} -ge 2 ] || fail "4: the journal has ${#segs[@]} segment(s), expected 2 or more"
old=${segs[0]}
jt records "$old" >"$tmpdir/old.recs" || fail "4: parse $old"
read -r roff kind voff len < <(awk '$2 == 1 && $4 > 8192' "$tmpdir/old.recs" | sed -n 3p)
[ "$kind" = 1 ] || fail "4: $old has no third long write record"
grep -q '^[0-9]* 3 ' "$tmpdir/old.recs" || fail "4: $old has no chunk record"
printf '\xff' | dd of="$old" bs=1 seek=$((roff + 40 + 4321)) conv=notrunc status=none
md5sum "$(jdir vol)"/*.jnl >"$tmpdir/j.md5"
rm -f "$tmpdir/ex.out"
vdisk export vol "$tmpdir/ex.out" 2>"$tmpdir/err"
rc=$?
cat "$tmpdir/err"
[ $rc -eq 1 ] || fail "4: export of a damaged journal exited $rc, expected 1"
grep -q "damaged journal record" "$tmpdir/err" || fail "4: message lacks 'damaged journal record'"
grep -qF "$old" "$tmpdir/err" || fail "4: message does not name $old"
grep -q "offset $roff" "$tmpdir/err" || fail "4: message does not give the record's offset $roff"
[ ! -e "$tmpdir/ex.out" ] || fail "4: export wrote $tmpdir/ex.out"
md5sum -c --quiet "$tmpdir/j.md5" || fail "4: the journal changed after the refused export"
# check names the damage too (and changes nothing).
vdisk check >"$tmpdir/chk" 2>&1
rc=$?
cat "$tmpdir/chk"
[ $rc -eq 1 ] || fail "4: check of a damaged journal exited $rc, expected 1"
grep -q "journal of 'vol': .*damaged journal record" "$tmpdir/chk" ||
	fail "4: check does not name the damaged journal"
md5sum -c --quiet "$tmpdir/j.md5" || fail "4: check changed the journal"
reader "$VDISK_STORE" vol "$tmpdir/fr.out" 2>"$tmpdir/err"
rc=$?
cat "$tmpdir/err"
[ $rc -eq 1 ] || fail "4: format-reader of a damaged journal exited $rc, expected 1"
grep -qi "journal" "$tmpdir/err" || fail "4: format-reader's message does not mention the journal"
# A writer (vdisk serve) refuses the export too, and leaves the journal.
serve
/usr/bin/python3 - "$sock" <<'PY' || fail "4: a client could open vol"
import sys
import nbd
h = nbd.NBD()
h.set_export_name("vol")
try:
    h.connect_unix(sys.argv[1])
except nbd.Error as e:
    print("refused as expected:", e)
    sys.exit(0)
sys.exit("vdisk serve opened a volume with a damaged journal")
PY
kill -TERM "$serve_pid"
wait "$serve_pid" || fail "4: serve exited $? on SIGTERM"
md5sum -c --quiet "$tmpdir/j.md5" || fail "4: the journal changed after the refused NBD open"
vdisk rm -r vol || fail "4: rm -r of a volume with a damaged journal"
no_journal vol "4: after rm -r"

# ---- 6. rollback and rm -r drop the journal ---------------------------------
new_store >/dev/null
vdisk create vol 4M || fail "6: create"
img vol 4M
serve
jt write "$sock" "$serve_pid" "@vol:$tmpdir/vol.exp" w:4096:65536:0x5a \
	w:$M:$M:0x5b f || fail "6: writes"
crash
has_journal vol "6"
vdisk snapshot vol@s || fail "6: snapshot"
cp "$tmpdir/vol.exp" "$tmpdir/s.exp"
serve
jt write "$sock" "$serve_pid" "@vol:$tmpdir/vol.exp" w:0:$((2 * M)):0x6c \
	z:$((3 * M)):4096 f || fail "6: writes 2"
crash
has_journal vol "6: before rollback"
cp -a "$(jdir vol)" "$tmpdir/stale"
vdisk rollback vol@s || fail "6: rollback"
no_journal vol "6: after rollback"
same vol "$tmpdir/s.exp" "6: after rollback"
# Segments of the layer before the rollback (as if it had stopped before
# deleting them) are stale: ignored by both readers, then removed.
cp -a "$tmpdir/stale" "$(jdir vol)"
same vol "$tmpdir/s.exp" "6: stale segments"
no_journal vol "6: after export with stale segments"
# And as qemu-io sees it through vdisk serve.
serve
out=$(qemu-io -f raw -r -c "read -P 0 0 4k" -c "read -P 0x5a 4k 64k" \
	-c "read -P 0 68k 956k" -c "read -P 0x5b 1M 1M" -c "read -P 0 2M 2M" \
	"nbd+unix:///vol?socket=$sock") || fail "6: qemu-io read after rollback"
grep -q "verification failed" <<<"$out" && fail "6: contents after rollback: $out"
[ "$(grep -c '^read ' <<<"$out")" -eq 5 ] || fail "6: qemu-io reads: $out"
jt write "$sock" "$serve_pid" "@vol:$tmpdir/vol.exp" w:0:$M:0x7d f || fail "6: writes 3"
crash
has_journal vol "6: before rm"
vdisk rm -r vol || fail "6: rm -r"
no_journal vol "6: after rm -r"
vdisk create vol 4M || fail "6: create again"
xport vol "$tmpdir/ex.out" || fail "6: export new vol"
cmp -n $((4 * M)) "$tmpdir/ex.out" /dev/zero || fail "6: a new vol of the same name is not empty"
vdisk check >"$tmpdir/check.out" || fail "6: vdisk check: $(cat "$tmpdir/check.out")"

# ---- 7. a trimmed journal -----------------------------------------------------
new_store >/dev/null
vdisk create vol 32M || fail "7: create"
img vol 32M
VDISK_DIRTY_MB=8 serve
# About 100 MiB of overwrites, flushed every 50: 1 MiB, small unaligned,
# whole chunks and zeroes, the same every run.
ops=("@vol:$tmpdir/vol.exp")
RANDOM=7
for ((i = 0; i < 300; i++)); do
	case $((RANDOM % 4)) in
	0) ops+=(w:$((RANDOM * 997 % (31 * M))):$M:$((RANDOM % 255 + 1))) ;;
	1) ops+=(w:$((RANDOM * 97 % (31 * M))):$((RANDOM % 8000 + 1)):$((RANDOM % 255 + 1))) ;;
	2) ops+=(z:$((RANDOM * 53 % (31 * M))):$((RANDOM % 200000 + 1))) ;;
	3) ops+=(w:$((RANDOM % 512 * 65536)):65536:$((RANDOM % 255 + 1))) ;;
	esac
	((i % 50 == 49)) && ops+=(f)
done
# A seal trims only if it can take the journal's lock at once (a trim it
# skips waits for the next seal), so more writes follow until segment 1
# is gone, each MiB of them new dirty data that brings the next seal.
jt write "$sock" "$serve_pid" "${ops[@]}" f \
	"u:$(jdir vol)/0000000000000001.jnl:$((32 * M))" ||
	fail "7: writes (segment 1 never trimmed?)"
crash
has_journal vol "7"
same vol "$tmpdir/vol.exp" "7"
no_journal vol "7: after export"
vdisk check >"$tmpdir/check.out" || fail "7: vdisk check: $(cat "$tmpdir/check.out")"

# ---- 8. a chunk stored in place that never reached the disk ---------------
# Whole chunks are stored in a pack file, the journal pointing to them; a
# flush syncs the pack before the journal.  A crash that kept the journal
# record but not the chunk (the pack cut before it, as a power cut can
# leave it) loses that write and everything after it, none of which a
# flush covered, and keeps every flushed write.
new_store >/dev/null
vdisk create vol 4M || fail "8: create"
img vol 4M
serve
jt write "$sock" "$serve_pid" "@vol:$tmpdir/vol.exp" w:0:$M:0xa8 \
	w:$((2 * M + 100)):3000:0xa9 f "c:$tmpdir/vol.flushed" \
	w:$M:$((2 * 65536)):0xb8 w:$((M + 4096)):4096:0xb9 w:$((3 * M)):65536:0xba ||
	fail "8: writes"
crash
has_journal vol "8"
segs=("$(jdir vol)"/*.jnl)
jt records "${segs[-1]}" --newest >"$tmpdir/v8.recs" || fail "8: parse ${segs[-1]}"
read -r _ kind voff len pack poff < <(awk -v o=$M '$2 == 3 && $3 == o' "$tmpdir/v8.recs")
[ "$kind $len" = "3 65536" ] || fail "8: no chunk record for the write at 1 MiB: $(cat "$tmpdir/v8.recs")"
grep -q "^[0-9]* 1 $((M + 4096)) 4096\$" "$tmpdir/v8.recs" ||
	fail "8: the write into a chunk stored in place is not journaled"
# Reads see the later writes before the cut; cut the pack inside the chunk.
pfile=$VDISK_STORE/data/$(printf '%08x' "$pack").pack
[ -f "$pfile" ] || fail "8: no pack file $pfile"
truncate -s $((poff + 100)) "$pfile"
same vol "$tmpdir/vol.flushed" "8: cut before an unflushed chunk"
no_journal vol "8: after export"
vdisk check >"$tmpdir/check.out" || fail "8: vdisk check: $(cat "$tmpdir/check.out")"

# The same writes, flushed: the chunks are on disk and every write stays.
new_store >/dev/null
vdisk create vol 4M || fail "8b: create"
img vol 4M
serve
jt write "$sock" "$serve_pid" "@vol:$tmpdir/vol.exp" w:0:$M:0xa8 \
	w:$((2 * M + 100)):3000:0xa9 f w:$M:$((2 * 65536)):0xb8 \
	w:$((M + 4096)):4096:0xb9 w:$((3 * M)):65536:0xba f || fail "8b: writes"
crash
has_journal vol "8b"
same vol "$tmpdir/vol.exp" "8b: flushed chunks stored in place"
no_journal vol "8b: after export"

# ---- 9. chunk records across the end of the zeros written ahead -------------
# A segment's writer writes zeros up to the next MiB past its appends; chunk
# records that cross that MiB must move it too, or the next record's zeros
# land on them.  253 records of 4 KiB (4136 bytes each, after the 64-byte
# header and the 40-byte epoch marker) end 2064 bytes short of 1 MiB, so the
# 32 chunk records (96 bytes each) of the 2 MiB write cross it, and the
# 4 KiB write after them writes the next MiB of zeros.
new_store >/dev/null
vdisk create vol 24M || fail "9: create"
img vol 24M
serve
ops=()
for ((i = 0; i < 253; i++)); do ops+=("w:$((4 * M + i * 65536)):4096:$((i % 200 + 1))"); done
jt write "$sock" "$serve_pid" "@vol:$tmpdir/vol.exp" "${ops[@]}" \
	w:0:$((2 * M)):0xc1 w:$((22 * M)):4096:0xc2 f || fail "9: writes"
crash
has_journal vol "9"
segs=("$(jdir vol)"/*.jnl)
jt records "${segs[-1]}" --newest >"$tmpdir/v9.recs" || fail "9: parse ${segs[-1]}"
awk '$2 == 3 && $1 < 1048576 && $1 + 96 > 1048576 { found = 1 } END { exit !found }' \
	"$tmpdir/v9.recs" || fail "9: no chunk record crosses 1 MiB: $(cat "$tmpdir/v9.recs")"
same vol "$tmpdir/vol.exp" "9: chunk records across the zeros written ahead"
no_journal vol "9: after export"
echo OK
