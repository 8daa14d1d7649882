#!/bin/bash
# A chunk that fails verification is EIO on the wire (structured and simple
# replies) and logged by the server; other chunks stay readable and the
# connection carries on.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 od
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
new_store >/dev/null
store=$VDISK_STORE

vdisk create vol 1M || fail "create"
head -c $((128 * 1024)) /dev/urandom >"$tmpdir/data"
vdisk import --existing vol "$tmpdir/data" || fail "write"
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
grep -q "READ at offset" "$tmpdir/serve.log" || fail "corruption not logged: $(cat "$tmpdir/serve.log")"
cat "$tmpdir/serve.log"
