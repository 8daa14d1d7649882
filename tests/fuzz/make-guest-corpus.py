#!/usr/bin/env python3
# Writes a disk image in the sparse input form of tests/fuzz/fuzz-guest.c:
# u32 LE size in KiB, then runs (u32 LE sector, u16 LE length, bytes) of
# the image's non-zero 512-byte sectors.
#   make-guest-corpus.py IMAGE OUT
import struct, sys

img = open(sys.argv[1], 'rb').read()
out = bytearray(struct.pack('<I', (len(img) + 1023) // 1024))
sec, n = 0, len(img) // 512
while sec < n:
    if not any(img[sec * 512:(sec + 1) * 512]):
        sec += 1
        continue
    start = sec
    while sec < n and sec - start < 127 and any(img[sec * 512:(sec + 1) * 512]):
        sec += 1
    data = img[start * 512:sec * 512]
    out += struct.pack('<IH', start, len(data)) + data
open(sys.argv[2], 'wb').write(out)
