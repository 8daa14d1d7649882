#!/usr/bin/env python3
"""Writes the seed inputs of tests/fuzz/fuzz-virtq.c (its header comment
describes the layout) into the directory given as the argument."""
import os
import struct
import sys

DESC, AVAIL, USED = 0x0000, 0x1000, 0x2000
HDR, DATA, STATUS, INDIR = 0x3000, 0x3400, 0x3F00, 0x2800


class Guest:
    def __init__(self):
        self.mem = bytearray(0x4000)
        self.nreq = 0
        self.ndesc = 0

    def put(self, addr, data):
        self.mem[addr:addr + len(data)] = data

    def desc(self, table, i, addr, length, flags, nxt):
        self.put(table + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def offer(self, head):
        self.put(AVAIL + 4 + 2 * self.nreq, struct.pack("<H", head))
        self.nreq += 1

    def request(self, rtype, sector, dlen=0, dwrite=False, payload=b""):
        """One chain: header, optional data, status; returns its head."""
        k = self.nreq
        hdr = HDR + 16 * k
        self.put(hdr, struct.pack("<IIQ", rtype, 0, sector))
        data = DATA + 0x100 * k if payload else DATA
        if payload:
            self.put(data, payload)
        head = self.ndesc
        self.desc(DESC, self.ndesc, hdr, 16, 1, self.ndesc + 1)
        self.ndesc += 1
        if dlen:
            self.desc(DESC, self.ndesc, data, dlen, 1 | (2 if dwrite else 0),
                      self.ndesc + 1)
            self.ndesc += 1
        self.desc(DESC, self.ndesc, STATUS + k, 1, 2, 0)
        self.ndesc += 1
        self.offer(head)
        return head


def seed(flags, qlog, ops, g):
    out = bytes([flags, qlog, len(ops)])
    for op in ops:
        out += bytes((list(op) + [0, 0, 0])[:4])
    return out + bytes(g.mem)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = {}

    g = Guest()
    g.request(1, 1, 512, payload=bytes(range(256)) * 2)  # write
    g.request(0, 1, 512, dwrite=True)                    # read
    g.request(4, 0)                                      # flush
    g.request(8, 0, 20, dwrite=True)                     # get-id
    seeds["rw-flush-id"] = seed(0, 4, [(0, 2), (1, 0), (0, 2), (1, 0)], g)

    g = Guest()
    g.request(11, 0, 16, payload=struct.pack("<QII", 0, 8, 0))   # discard
    g.request(13, 8, 16, payload=struct.pack("<QII", 8, 8, 1))   # zeroes
    g.request(99, 0)                                             # unsupported
    seeds["discard-zeroes"] = seed(0, 3, [(0, 3)], g)

    g = Guest()
    g.put(HDR, struct.pack("<IIQ", 0, 0, 2))
    g.desc(INDIR, 0, HDR, 16, 1, 1)
    g.desc(INDIR, 1, DATA, 1024, 3, 2)
    g.desc(INDIR, 2, STATUS, 1, 2, 0)
    g.desc(DESC, 0, INDIR, 48, 4, 0)
    g.offer(0)
    seeds["indirect"] = seed(1, 4, [(0, 1), (1, 0)], g)

    g = Guest()
    g.request(4, 0)
    g.request(0, 0, 512, dwrite=True)
    g.put(AVAIL + 4 + 2 * 16, struct.pack("<H", 1))  # used_event
    seeds["event-idx-msix"] = seed(2 | 8, 4, [(0, 1), (0, 1)], g)

    g = Guest()
    g.request(1, 0, 512)
    seeds["readonly-write"] = seed(4, 2, [(0, 1)], g)

    g = Guest()
    g.desc(DESC, 0, HDR, 16, 1, 1)
    g.desc(DESC, 1, STATUS, 1, 3, 0)
    g.offer(0)
    seeds["loop"] = seed(0, 2, [(0, 1), (1, 0)], g)

    g = Guest()
    g.request(4, 0)
    seeds["avail-jump"] = seed(0, 1, [(0, 40), (3, 4, 0), (0, 1)], g)

    g = Guest()
    g.request(0, 0, 512, dwrite=True)
    # Reset, then set the queue up again by hand before the notify.
    ops = [(3, 4, 0), (3, 4, 3), (3, 1, 1), (3, 2, 1), (3, 4, 11), (3, 5, 0),
           (3, 6, 4), (3, 9, 0), (3, 11, AVAIL & 0xFF, AVAIL >> 8),
           (3, 13, USED & 0xFF, USED >> 8), (3, 8, 1), (3, 4, 15),
           (4, 1, 0, 0xEE), (0, 1), (5, 7, 0), (2, 4, 0), (0, 0)]
    seeds["reset-resetup"] = seed(0, 4, ops, g)

    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
