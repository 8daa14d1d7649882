#!/bin/bash
# A chunk that fails verification is EIO on the wire (structured and simple
# replies) and logged by the server; other chunks stay readable and the
# connection carries on.  A frame damaged while the server has its chunk's
# frames remembered (and another frame cached) is EIO too.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 od
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
new_store >/dev/null
store=$VDISK_STORE

vdisk create vol 1M || fail "create"
head -c $((128 * 1024)) /dev/urandom >"$tmpdir/data"
vdisk import --existing vol "$tmpdir/data" || fail "write"
# "live": one chunk of raw frames, damaged below while the server has read
# it (its frames' places remembered, one frame cached).
vdisk create live 1M || fail "create live"
head -c $((64 * 1024)) /dev/urandom >"$tmpdir/live"
vdisk import --existing live "$tmpdir/live" || fail "write live"
pack=$(ls "$store"/data/*.pack | head -1)
[ -f "$pack" ] || fail "no pack file"
# The first record's payload starts after the 64-byte pack header and the
# 48-byte record header (FORMAT.md); flip one byte well inside it.
off=$((64 + 48 + 1000))
byte=$(od -A n -t u1 -j $off -N 1 "$pack" | tr -d ' ')
printf "$(printf '\\%03o' $(( (byte ^ 0xff) & 0xff )))" |
	dd of="$pack" bs=1 seek=$off conv=notrunc status=none

start_serve "$tmpdir/sock"
/usr/bin/python3 - "$tmpdir/sock" "$tmpdir/data" <<'PY' || fail "client"
import errno
import sys

import nbd

sock, data = sys.argv[1], open(sys.argv[2], "rb").read()
K = 1024
for structured in (True, False):
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    h.set_export_name("vol")
    h.connect_unix(sock)
    bad = None
    for chunk in (0, 1):
        try:
            got = h.pread(64 * K, chunk * 64 * K)
            assert got == data[chunk * 64 * K:(chunk + 1) * 64 * K], "wrong bytes"
        except nbd.Error as e:
            assert e.errnum == errno.EIO, e
            assert bad is None, "both chunks failed"
            bad = chunk
    assert bad is not None, "corrupt chunk read without error"
    # A read spanning both fails as a whole; the connection survives.
    try:
        h.pread(128 * K, 0)
        raise AssertionError("spanning read succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
    assert h.pread(10, (1 - bad) * 64 * K) == data[(1 - bad) * 64 * K:][:10]
    h.shutdown()
print("OK")
PY

# Damage while served: frame 2 of "live" (raw, so its bytes are in the
# pack as written) flipped after a read of frame 0.  Its read is EIO, never
# the flipped bytes, every time; frame 0 still reads back.
/usr/bin/python3 - "$tmpdir/sock" "$tmpdir/live" "$store" <<'PY' || fail "live damage"
import errno
import glob
import sys

import nbd

sock, data, store = sys.argv[1], open(sys.argv[2], "rb").read(), sys.argv[3]
K = 1024
h = nbd.NBD()
h.set_export_name("live")
h.connect_unix(sock)
assert h.pread(4 * K, 4 * K) == data[4 * K:8 * K], "frame 0"
where = [(p, open(p, "rb").read().find(data[32 * K:33 * K]))
         for p in glob.glob(store + "/data/*.pack")]
where = [(p, o) for p, o in where if o >= 0]
assert len(where) == 1, "frame 2 of live not found as written: %r" % where
path, off = where[0]
with open(path, "r+b") as f:
    f.seek(off + 3000)
    b = f.read(1)
    f.seek(off + 3000)
    f.write(bytes([b[0] ^ 0x40]))
for attempt in range(2):
    try:
        h.pread(4 * K, 34 * K)
        raise AssertionError("damaged frame read without error")
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
assert h.pread(4 * K, 4 * K) == data[4 * K:8 * K], "frame 0 after"
assert h.pread(4 * K, 48 * K) == data[48 * K:52 * K], "frame 3"
h.shutdown()
print("OK")
PY
grep -q "READ at offset" "$tmpdir/serve.log" || fail "corruption not logged: $(cat "$tmpdir/serve.log")"
grep -q "export 'live'.*READ at offset 34816" "$tmpdir/serve.log" ||
	fail "live damage not logged: $(cat "$tmpdir/serve.log")"
cat "$tmpdir/serve.log"
