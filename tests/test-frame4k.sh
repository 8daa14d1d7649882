#!/bin/bash
# Chunks none of whose frames compress are stored in 4 KiB frames, the
# others in 16 KiB ones (FORMAT.md "Framed payload").  Every class of read
# returns the written bytes over NBD (inside a frame, across frames, a
# whole chunk, across chunks), with the server's caches empty and warm,
# with a small and a large cache, with VDISK_IO=uring; `vdisk export` and
# tests/format-reader.py read the same.  One flipped byte in a 4 KiB raw
# frame fails reads of that frame only (EIO), and `vdisk check` names the
# chunk.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 cmp mdb_dump zstd
/usr/bin/python3 -c 'import nbd, xxhash' 2>/dev/null ||
	{ echo "SKIP: python3-libnbd or python3-xxhash missing"; exit 77; }
PY=/usr/bin/python3
new_store >/dev/null
store=$VDISK_STORE
K=1024

vdisk init --chunk-size 64K >/dev/null || fail "init"
# Chunks: 0-3 random (4 KiB frames), 4 random with 16 KiB of zeroes (a
# 16 KiB zero frame: 4 KiB frames too), 5 half text half random (16 KiB
# frames, zstd and raw), 6 text.
"$PY" - "$tmpdir/img" <<'EOF' || fail "gen"
import random, sys
r = random.Random(7)
K = 1024
text = (b"compressible line of the frame4k test\n" * 2000)[:32 * K]
img = r.randbytes(256 * K)
c4 = bytearray(r.randbytes(64 * K)); c4[16 * K:32 * K] = bytes(16 * K)
img += bytes(c4) + text + r.randbytes(32 * K) + text + text
open(sys.argv[1], "wb").write(img)
EOF
vdisk import vol "$tmpdir/img" || fail "import"

# The frame sizes as stored, in the volume's chunk order.
"$PY" - "$store" "$tmpdir/img" <<'EOF' || fail "frame sizes"
import glob, hashlib, struct, sys
store, img = sys.argv[1], open(sys.argv[2], "rb").read()
sizes = {}
for p in glob.glob(store + "/data/*.pack"):
    b = open(p, "rb").read()
    pos = 64
    while pos + 48 <= len(b):
        codec, slen, name = b[pos + 4], struct.unpack_from("<I", b, pos + 8)[0], b[pos + 16:pos + 48]
        if codec == 2:
            sizes[name] = struct.unpack_from("<I", b, pos + 48)[0]
        pos += 48 + slen
got = [sizes.get(hashlib.sha256(img[i:i + 65536]).digest())
       for i in range(0, len(img), 65536)]
want = [4096] * 5 + [16384, 16384]
assert got == want, "frame sizes %r, expected %r" % (got, want)
print("frame sizes", got)
EOF

vdisk export vol "$tmpdir/out" || fail "export"
cmp "$tmpdir/img" "$tmpdir/out" || fail "export differs"
"$PY" "$VDISK_TOP/tests/format-reader.py" "$store" vol "$tmpdir/out2" ||
	fail "format-reader"
cmp "$tmpdir/img" "$tmpdir/out2" || fail "format-reader differs"
vdisk check >/dev/null || fail "check of a sound store"

# reads SOCK IMG: every class of read, twice (the second time the frames'
# places are remembered and some frames cached).
reads() {
	"$PY" - "$1" "$2" <<'EOF'
import random, sys
import nbd
sock, img = sys.argv[1], open(sys.argv[2], "rb").read()
K, C = 1024, 64 * 1024
h = nbd.NBD()
h.set_export_name("vol")
h.connect_unix(sock)
cases = []
for c in range(len(img) // C):
    b = c * C
    cases += [(b, 4 * K), (b + 8 * K, 4 * K), (b + 9 * K + 7, 100),
              (b + 60 * K, 4 * K), (b + 2 * K, 4 * K), (b + 3 * K, 10 * K),
              (b + 4 * K, 16 * K), (b + 15 * K, 2 * K), (b, 16 * K),
              (b + 16 * K, 32 * K), (b, C - 512), (b + 512, C - 512),
              (b, C)]
    if b + C < len(img):
        cases += [(b + 62 * K, 4 * K), (b + 32 * K, C), (b + 1000, 2 * C)]
cases.append((0, len(img)))
r = random.Random(3)
cases += [(r.randrange(0, len(img) - 4 * K), r.choice((512, 4 * K, 9 * K)))
          for _ in range(300)]
for rnd in range(2):
    for off, n in cases:
        n = min(n, len(img) - off)
        got = h.pread(n, off)
        assert got == img[off:off + n], "round %d: %d bytes at %d" % (rnd, n, off)
h.shutdown()
print("reads OK: %d cases" % len(cases))
EOF
}

for cfg in "default" "cache-1M" "cache-64M" "uring"; do
	sock="$tmpdir/sock-$cfg"
	case $cfg in
	default) start_serve "$sock" ;;
	cache-1M) start_serve "$sock" --cache 1M ;;
	cache-64M) start_serve "$sock" --cache 64M ;;
	uring) VDISK_IO=uring start_serve "$sock" ;;
	esac
	reads "$sock" "$tmpdir/img" || fail "reads ($cfg)"
	kill "$serve_pid"; wait "$serve_pid" 2>/dev/null
done

# Damage: one byte of frame 9 of chunk 2 (random, 4 KiB frames; raw, so its
# bytes are in the pack as written), found by its bytes.
"$PY" - "$store" "$tmpdir/img" <<'EOF' || fail "flip"
import glob, sys
store, img = sys.argv[1], open(sys.argv[2], "rb").read()
frame = img[2 * 65536 + 9 * 4096:2 * 65536 + 10 * 4096]
where = [(p, open(p, "rb").read().find(frame)) for p in glob.glob(store + "/data/*.pack")]
where = [(p, o) for p, o in where if o >= 0]
assert len(where) == 1, where
p, o = where[0]
with open(p, "r+b") as f:
    f.seek(o + 1234)
    b = f.read(1)
    f.seek(o + 1234)
    f.write(bytes([b[0] ^ 0x10]))
EOF
for cfg in "default" "uring"; do
	sock="$tmpdir/sock-bad-$cfg"
	if [ "$cfg" = uring ]; then
		VDISK_IO=uring start_serve "$sock"
	else
		start_serve "$sock"
	fi
	"$PY" - "$sock" "$tmpdir/img" <<'EOF' || fail "damaged frame ($cfg)"
import errno, sys
import nbd
sock, img = sys.argv[1], open(sys.argv[2], "rb").read()
K, b = 1024, 2 * 65536
h = nbd.NBD()
h.set_export_name("vol")
h.connect_unix(sock)
def bad(off, n):
    try:
        h.pread(n, off)
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
        return
    raise AssertionError("damaged frame read: %d bytes at %d" % (n, off))
for rnd in range(2):  # the second time its place is remembered
    for off in (32 * K, 40 * K):  # the neighbours, before and after
        assert h.pread(4 * K, b + off) == img[b + off:b + off + 4 * K], off
    assert h.pread(100, b + 40 * K + 5) == img[b + 40 * K + 5:b + 40 * K + 105]
    bad(b + 36 * K, 4 * K)
    bad(b + 36 * K + 100, 10)
    bad(b + 35 * K, 2 * K)  # across frames 8 and 9
    bad(b, 64 * K)          # the whole chunk
    assert h.pread(4 * K, b + 44 * K) == img[b + 44 * K:b + 48 * K]
    assert h.pread(64 * K, b + 64 * K) == img[b + 64 * K:b + 128 * K]
h.shutdown()
print("damaged frame: EIO, neighbours OK")
EOF
	kill "$serve_pid"; wait "$serve_pid" 2>/dev/null
done
name=$("$PY" -c 'import hashlib,sys; d=open(sys.argv[1],"rb").read(); print(hashlib.sha256(d[2*65536:3*65536]).hexdigest()[:16])' "$tmpdir/img")
out=$(vdisk check 2>&1)
[ $? -ne 0 ] || fail "check passed a damaged frame"
echo "$out" | grep -q "$name" || fail "check does not name chunk $name: $out"
echo "$out" | grep -q "frame 9 of 16" || fail "check does not name the frame: $out"
echo OK
