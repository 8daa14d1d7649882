#!/bin/bash
# Snapshot while serving: a client writes A through the server (no flush),
# `vdisk snapshot` runs from the shell, the same connection writes B.  The
# snapshot export reads A, the volume reads B.  Volumes, snapshots and
# clones created while the server runs are served without a restart.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 qemu-io
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
new_store >/dev/null

vdisk create vol 16M || fail "create"
start_serve "$tmpdir/sock"

cat >"$tmpdir/snap.py" <<'PY'
import os
import subprocess
import sys

import nbd

sock, vdisk = sys.argv[1], os.environ["VDISK"]
M = 1024 * 1024
A = bytes([0xAA]) * (3 * M)
B = bytes([0xBB]) * (3 * M)


def connect(name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    return h


h = connect("vol")
# A: large and unaligned writes, none flushed.
h.pwrite(A, 1000)
h.pwrite(b"A-tail", 10 * M + 5)
h.pwrite(b"A8" * 1000, 8 * M)
subprocess.run([vdisk, "snapshot", "vol@s1"], check=True)
# B over the same ranges, from the same connection.
h.pwrite(B, 1000)
h.pwrite(b"B-tail", 10 * M + 5)
h.zero(1 * M, 8 * M)        # a hole at 8M in the head only

s = connect("vol@s1")
assert s.is_read_only()
assert s.pread(len(A), 1000) == A, "snapshot lost acknowledged writes"
assert s.pread(6, 10 * M + 5) == b"A-tail"
assert s.pread(1000, 0) == bytes(1000)
assert h.pread(len(B), 1000) == B, "volume lost writes"
assert h.pread(6, 10 * M + 5) == b"B-tail"
assert h.pread(2000, 8 * M) == bytes(2000)
assert s.pread(2000, 8 * M) == b"A8" * 1000

# A second snapshot while both connections are open, then a clone of it,
# both served at once without restarting the server.
subprocess.run([vdisk, "snapshot", "vol@s2"], check=True)
subprocess.run([vdisk, "clone", "vol@s2", "cl"], check=True)
subprocess.run([vdisk, "create", "fresh", "1M"], check=True)
c = connect("cl")
assert not c.is_read_only()
assert c.pread(len(B), 1000) == B
c.pwrite(b"clone-only", 0)
assert h.pread(10, 0) == bytes(10), "clone write leaked into its origin"
f = connect("fresh")
assert f.get_size() == M
for x in (c, f, s, h):
    x.shutdown()
print("OK")
PY
/usr/bin/python3 "$tmpdir/snap.py" "$tmpdir/sock" || fail "snapshot-while-serving script"

# The same through qemu-io and the CLI's view of the store.
vdisk export vol@s1 "$tmpdir/s1" || fail "export s1"
cmp -n 1000 "$tmpdir/s1" /dev/zero || fail "s1 head"
cmp -i 1000:0 -n $((3 * 1024 * 1024)) "$tmpdir/s1" <(head -c $((3 * 1024 * 1024)) /dev/zero | tr '\0' '\252') ||
	fail "s1 contents"
qemu-io -f raw -r -c 'read -P 0xbb 1000 1047576' "nbd+unix:///vol?socket=$tmpdir/sock" >/dev/null ||
	fail "qemu-io read of vol"
