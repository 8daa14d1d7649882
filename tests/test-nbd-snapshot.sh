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

# Snapshots taken while writes are in flight: every write acknowledged
# before `vdisk snapshot` started is in the snapshot, and every 4 KiB
# block in it is either all old (zero) or all new (no torn writes).
cat >"$tmpdir/race.py" <<'PY'
import os
import random
import subprocess
import sys
import time

import nbd

sock, vdisk = sys.argv[1], os.environ["VDISK"]
BS, N = 4096, 4096            # 16 MiB of distinct blocks
h = nbd.NBD()
h.set_export_name("race")
h.connect_unix(sock)
order = list(range(N))
random.Random(7).shuffle(order)
bufs = {i: (b"%07d\n" % i) * (BS // 8) for i in order}
acked_at = {}
pending = {}
snaps = []                     # (name, time started, process)
nxt = 0
while nxt < N or pending:
    while nxt < N and len(pending) < 32:
        i = order[nxt]
        pending[h.aio_pwrite(bufs[i], i * BS)] = i
        nxt += 1
    h.poll(-1)
    for c in [c for c in pending if h.aio_command_completed(c)]:
        acked_at[pending.pop(c)] = time.monotonic()
    if len(snaps) < 3 and len(acked_at) >= (300, 1500, 2700)[len(snaps)] and \
            not any(p.poll() is None for _, _, p in snaps):
        name = "r%d" % len(snaps)
        snaps.append((name, time.monotonic(),
                      subprocess.Popen([vdisk, "snapshot", "race@" + name])))
for name, start, p in snaps:
    assert p.wait() == 0, "snapshot %s failed" % name
    s = nbd.NBD()
    s.set_export_name("race@" + name)
    s.connect_unix(sock)
    data = s.pread(N * BS, 0)
    present = 0
    for i in range(N):
        blk = data[i * BS:(i + 1) * BS]
        if blk == bufs[i]:
            present += 1
        else:
            assert blk == bytes(BS), "snapshot %s: block %d torn" % (name, i)
            assert not (i in acked_at and acked_at[i] < start), \
                "snapshot %s lost block %d acknowledged before it began" % (name, i)
    before = sum(1 for t in acked_at.values() if t < start)
    print("snapshot %s: %d blocks acknowledged before it began, %d present"
          % (name, before, present))
    s.shutdown()
h.shutdown()
PY
vdisk create race 16M || fail "create race"
/usr/bin/python3 "$tmpdir/race.py" "$tmpdir/sock" || fail "snapshots during in-flight writes"

# The same through qemu-io and the CLI's view of the store.
vdisk export vol@s1 "$tmpdir/s1" || fail "export s1"
cmp -n 1000 "$tmpdir/s1" /dev/zero || fail "s1 head"
cmp -i 1000:0 -n $((3 * 1024 * 1024)) "$tmpdir/s1" <(head -c $((3 * 1024 * 1024)) /dev/zero | tr '\0' '\252') ||
	fail "s1 contents"
qemu-io -f raw -r -c 'read -P 0xbb 1000 1047576' "nbd+unix:///vol?socket=$tmpdir/sock" >/dev/null ||
	fail "qemu-io read of vol"
