#!/usr/bin/python3
"""Time one NBD_CMD_FLUSH after a write burst (part of bench/nbd/run.sh).

    flush.py URI BYTES

Writes BYTES sequentially from offset 0 in 1 MiB requests, 8 in flight,
no FUA and no flush, then issues one flush and times it alone.  Every
4 KiB of the data is distinct (random bytes with the offset stamped in),
so neither dedup nor zero detection shortcuts the writes.  Prints
"burst_MBps flush_seconds".  Uses libnbd's Python bindings (Debian's
/usr/bin/python3 with python3-libnbd).
"""
import os
import struct
import sys
import time

import nbd

uri, total = sys.argv[1], int(sys.argv[2])
BS, QD = 1 << 20, 8
base = os.urandom(BS)
h = nbd.NBD()
h.connect_uri(uri)
total = min(total, h.get_size())
inflight = []
t0 = time.monotonic()
for off in range(0, total - BS + 1, BS):
    b = bytearray(base)
    for i in range(0, BS, 4096):
        struct.pack_into("<QQ", b, i, off + i, 0x7664697366757368)
    while len(inflight) >= QD:
        h.poll(-1)
        inflight = [c for c in inflight if not h.aio_command_completed(c)]
    inflight.append(h.aio_pwrite(bytes(b), off))
while inflight:
    h.poll(-1)
    inflight = [c for c in inflight if not h.aio_command_completed(c)]
t1 = time.monotonic()
h.flush()
t2 = time.monotonic()
h.shutdown()
print("%.1f %.3f" % (total / (t1 - t0) / 1e6, t2 - t1))
