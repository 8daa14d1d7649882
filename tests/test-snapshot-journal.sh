#!/bin/bash
# Snapshots over an unsealed journal (issue #7): `vdisk snapshot` of a head
# that `vdisk serve` holds costs an epoch marker and one index commit, not a
# seal of what is dirty.  Checked structurally: right after the snapshot the
# head's journal is what it was plus one 40-byte marker record (a seal would
# have trimmed it).  Then, with writes of both epochs still unsealed (the
# background sealer off: VDISK_SEAL_FROZEN=off):
#   - after kill -9 of the writer, tests/format-reader.py (which reads the
#     journal by FORMAT.md's epoch rule) and `vdisk export` (replay) give the
#     snapshot exactly the writes before it and the head all of them;
#   - a clone of an unsealed snapshot (the writer is asked to settle it over
#     the control socket) reads as the snapshot did;
#   - removing an unsealed snapshot leaves the head and the other points
#     exact; `vdisk check` is clean at the end;
#   - kill -9 of the writer while `vdisk info VOL@SNAP` waits for it to
#     settle the snapshot (SETTLE over the control socket): info ends (no
#     hang) settled, by recovering the dead writer's journal, or with a
#     clear error; the snapshot then reads exactly as written before it.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 cmp sha256sum
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
have_reader=
/usr/bin/python3 -c 'import xxhash' 2>/dev/null && have_reader=1
reader() { /usr/bin/python3 "$VDISK_TOP/tests/format-reader.py" "$@"; }
new_store >/dev/null
sock=$tmpdir/sock

vdisk create vol 64M || fail "create"

cat >"$tmpdir/io.py" <<'PY'
# STAGE SOCK SERVE_PID DIR: drives one stage through the server on one
# connection to "vol" (a last close would seal everything), keeping the
# expected images in DIR/imgN.
import os
import random
import signal
import struct
import subprocess
import sys
import time

import nbd

K, M = 1024, 1024 * 1024
stage, sock, pid, d = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
vdisk, store = os.environ["VDISK"], os.environ["VDISK_STORE"]


def connect(name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    return h


def burst(h, img, seed, n):
    """N writes (mostly random 4 KiB blocks, some unaligned pieces, whole
    chunks and zeroed ranges), then a flush; IMG follows them."""
    rng = random.Random(seed)
    for _ in range(n):
        k = rng.random()
        if k < 0.85:
            off, ln = rng.randrange(len(img) // (4 * K)) * 4 * K, 4 * K
        elif k < 0.95:
            off, ln = rng.randrange(len(img) - 70 * K), rng.randrange(1, 70 * K)
        elif k < 0.98:
            off, ln = rng.randrange(len(img) // (64 * K) - 2) * 64 * K, 128 * K
        else:
            off, ln = rng.randrange(len(img) - 200 * K), rng.randrange(1, 200 * K)
            h.zero(ln, off)
            img[off:off + ln] = bytes(ln)
            continue
        data = rng.randbytes(ln)
        h.pwrite(data, off)
        img[off:off + ln] = data
    h.flush()


def records_end(path):
    """Where the records of segment PATH end (FORMAT.md: a 64-byte header,
    then records of a 40-byte header and their data); past them the writer
    may have written zeros ahead."""
    data = open(path, "rb").read()
    off = 64
    while off + 40 <= len(data):
        magic, kind, _, _, _, n, _ = struct.unpack_from("<IHHQQQQ", data, off)
        if magic != 0x4a524456:
            break
        off += 40 + (n if kind == 1 else 56 if kind == 3 else 0)
    return off


def jbytes():
    j = os.path.join(store, "journal", "vol")
    return sum(records_end(os.path.join(j, f)) for f in os.listdir(j)
               if f.endswith(".jnl"))


def snap(point):
    """Takes POINT live; a seal would have trimmed the journal, so it must
    be what it was plus one 40-byte epoch marker."""
    before = jbytes()
    assert before > M, "%s: journal of %d bytes only" % (point, before)
    t = time.monotonic()
    subprocess.run([vdisk, "snapshot", point], check=True)
    t = time.monotonic() - t
    after = jbytes()
    assert after == before + 40, "%s: journal %d bytes before, %d after " \
        "(expected one 40-byte epoch marker more: nothing sealed)" % (
            point, before, after)
    print("snapshot %s: %.0f ms, journal %d -> %d bytes" % (
        point, t * 1000, before, after))


def same(h, img, what):
    for off in range(0, len(img), 4 * M):
        n = min(4 * M, len(img) - off)
        assert h.pread(n, off) == img[off:off + n], "%s differs at %d" % (
            what, off)


def save(name, img):
    open(os.path.join(d, name), "wb").write(img)


def load(name):
    return bytearray(open(os.path.join(d, name), "rb").read())


h = connect("vol")
if stage == "1":
    img = bytearray(h.get_size())
    burst(h, img, 1, 6000)
    save("img1", img)
    snap("vol@s1")
    burst(h, img, 2, 6000)
    save("img2", img)
    os.kill(pid, signal.SIGKILL)       # both epochs unsealed
else:
    img = load("img2")
    burst(h, img, 3, 6000)
    save("img3", img)
    snap("vol@s2")
    burst(h, img, 4, 3000)
    save("img4", img)
    # The server holds vol: clone asks it to settle s2 first.
    subprocess.run([vdisk, "clone", "vol@s2", "cl"], check=True)
    c = connect("cl")
    same(c, load("img3"), "clone of an unsealed snapshot")
    c.shutdown()
    snap("vol@s3")
    burst(h, img, 5, 3000)
    save("img5", img)
    subprocess.run([vdisk, "rm", "vol@s3"], check=True)
    same(h, img, "head after removing unsealed s3")
    for point, name in (("vol@s2", "img3"), ("vol@s1", "img1")):
        s = connect(point)
        same(s, load(name), point)
        s.shutdown()
    h.shutdown()
print("stage %s OK" % stage)
PY
stage() { /usr/bin/python3 "$tmpdir/io.py" "$1" "$sock" "$serve_pid" "$tmpdir"; }

# same POINT IMG WHAT: export (and, if it can, format-reader) of POINT is IMG.
same() {
	if [ -n "$have_reader" ]; then
		reader "$VDISK_STORE" "$1" "$tmpdir/fr.out" || fail "$3: format-reader $1"
		cmp "$tmpdir/fr.out" "$2" || fail "$3: format-reader of $1 differs"
	fi
	rm -f "$tmpdir/ex.out"
	vdisk export "$1" "$tmpdir/ex.out" || fail "$3: export $1"
	cmp "$tmpdir/ex.out" "$2" || fail "$3: export of $1 differs"
}

# ---- 1: snapshot, more writes, kill -9, reopen ------------------------------
VDISK_SEAL_FROZEN=off VDISK_DIRTY_MB=1024 start_serve "$sock"
stage 1 || fail "1: snapshot over an unsealed journal, then kill -9"
wait "$serve_pid" 2>/dev/null
ls "$VDISK_STORE"/journal/vol/*.jnl >/dev/null 2>&1 || fail "1: no journal left after kill -9"
# A crash between a snapshot's epoch marker and its commit leaves a marker
# newer than the layer's committed write epoch (2, after s1): forge one, and
# a write after it, at the journal's end.  Replay ignores the marker, so the
# write is the head's (epoch 2), not a third epoch's.
if [ -n "$have_reader" ]; then
	/usr/bin/python3 - "$VDISK_STORE/journal/vol" "$tmpdir/img2" <<'PY' || fail "1: forge a marker"
import os, struct, sys, xxhash
d, img = sys.argv[1], sys.argv[2]
path = os.path.join(d, max(f for f in os.listdir(d) if f.endswith(".jnl")))
data = open(path, "rb").read()
off, seq = 64, 0
while off + 40 <= len(data):          # the last valid record (FORMAT.md)
    magic, kind, _, sq, voff, ln, check = struct.unpack_from("<IHHQQQQ", data, off)
    dlen = ln if kind == 1 else 56 if kind == 3 else 0
    body = data[off + 40:off + 40 + dlen]
    if magic != 0x4A524456 or sq <= seq or len(body) != dlen or \
            check != xxhash.xxh3_64_intdigest(body, seed=xxhash.xxh3_64_intdigest(data[off:off + 32])):
        break
    seq, off = sq, off + 40 + dlen
def rec(kind, seq, voff, ln, body=b""):
    h = struct.pack("<IHHQQQ", 0x4A524456, kind, 0, seq, voff, ln)
    return h + struct.pack("<Q", xxhash.xxh3_64_intdigest(body, seed=xxhash.xxh3_64_intdigest(h))) + body
payload = b"\x5a" * 4096
with open(path, "r+b") as f:
    f.truncate(off)
    f.seek(off)
    f.write(rec(4, seq + 1, 3, 0) + rec(1, seq + 2, 0, 4096, payload))
im = bytearray(open(img, "rb").read())
im[:4096] = payload
open(img, "wb").write(im)
PY
fi
# format-reader first: it reads the journal as the dead writer left it.
same vol@s1 "$tmpdir/img1" "1: after kill -9"
same vol "$tmpdir/img2" "1: after kill -9"
vdisk check >/dev/null || fail "1: check after replay"
echo "1: kill -9 after a snapshot over an unsealed journal: snapshot and head exact"

# ---- 2: clone and remove unsealed snapshots, live ---------------------------
VDISK_SEAL_FROZEN=off VDISK_DIRTY_MB=1024 start_serve "$sock"
stage 2 || fail "2: clone and removal of unsealed snapshots while served"
out=$(vdisk diff vol@s2 cl) || fail "2: diff vol@s2 cl"
[ -z "$out" ] || fail "2: s2 and its clone differ: $out"
echo "2: clone and removal of unsealed snapshots while served"

# ---- 3: closed cleanly, everything exact, check clean ----------------------
kill "$serve_pid"
wait "$serve_pid" 2>/dev/null
vdisk check >/dev/null || fail "3: check is not clean"
same vol "$tmpdir/img5" "3"
same vol@s2 "$tmpdir/img3" "3"
same vol@s1 "$tmpdir/img1" "3"
rm -f "$tmpdir/ex.out"
vdisk export cl "$tmpdir/ex.out" && cmp "$tmpdir/ex.out" "$tmpdir/img3" || fail "3: clone"
vdisk info vol@s3 >/dev/null 2>&1 && fail "3: s3 is still there"
echo "3: closed cleanly: every point exact, check clean"

# ---- 4: the holder dies while a reader waits for its settle ---------------
# 256 MiB written, then one 4 KiB write into each of its 4096 chunks (the
# background sealer off: the snapshot's epoch stays unsealed until read),
# so that settling it takes a while; kill -9 lands during the SETTLE.
vdisk create big 256M || fail "4: create"
VDISK_SEAL_FROZEN=off VDISK_DIRTY_MB=1024 start_serve "$sock"
/usr/bin/python3 - "$sock" "$tmpdir/big.img" <<'PY' || fail "4: writes"
import os, random, sys
import nbd
h = nbd.NBD()
h.set_export_name("big")
h.connect_unix(sys.argv[1])
M, K = 1 << 20, 4096
img = bytearray(os.urandom(256 * M))
for off in range(0, len(img), M):
    h.pwrite(bytes(img[off:off + M]), off)
rng = random.Random(4)
for c in range(len(img) // (64 * K)):
    off = c * 64 * K + rng.randrange(16) * K
    img[off:off + K] = rng.randbytes(K)
    h.pwrite(bytes(img[off:off + K]), off)
h.flush()
open(sys.argv[2], "wb").write(img)
PY
vdisk snapshot big@s || fail "4: snapshot"
t0=$(date +%s%N)
vdisk info big@s >"$tmpdir/info4.out" 2>"$tmpdir/info4.err" &
info_pid=$!
sleep 0.3
kill -0 "$info_pid" 2>/dev/null || echo "4: note: info ended before the kill"
kill -9 "$serve_pid"
wait "$serve_pid" 2>/dev/null
for _ in $(seq 600); do kill -0 "$info_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$info_pid" 2>/dev/null && { kill "$info_pid"; fail "4: info hangs after its holder died"; }
# Past a second of settling, info says what it waits for.
if [ $(( ($(date +%s%N) - t0) / 1000000 )) -ge 2000 ]; then
	grep -q "sealing the writes before the snapshot" "$tmpdir/info4.err" ||
		fail "4: info waited without a message: $(cat "$tmpdir/info4.err")"
fi
if wait "$info_pid"; then
	grep -q "^Size:" "$tmpdir/info4.out" || grep -qi "size" "$tmpdir/info4.out" ||
		fail "4: info succeeded without figures: $(cat "$tmpdir/info4.out")"
	echo "4: info settled the snapshot after its holder died"
else
	[ -s "$tmpdir/info4.err" ] || fail "4: info failed without a message"
	echo "4: info failed clearly: $(tail -1 "$tmpdir/info4.err")"
fi
rm -f "$tmpdir/ex.out"
vdisk export big@s "$tmpdir/ex.out" || fail "4: export big@s"
cmp "$tmpdir/ex.out" "$tmpdir/big.img" || fail "4: big@s differs from what was written before it"
rm -f "$tmpdir/ex.out" "$tmpdir/big.img"
vdisk check >/dev/null || fail "4: check is not clean"
echo OK
