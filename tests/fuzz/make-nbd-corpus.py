#!/usr/bin/env python3
"""Writes the seed inputs of the NBD fuzz target into tests/fuzz/corpus/.

Each seed is a byte stream a client could send on one connection (see
tests/fuzz/fuzz-nbd.c): client flags, options, then requests.  The seeds
cover every option and command the server handles plus the hostile cases
(bad magics, huge lengths, truncation).  Inputs found by libFuzzer runs are
kept beside them (named by their SHA-1)."""

import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS = 1, 2, 3, 5
OPT_INFO, OPT_GO, OPT_SR, OPT_LIST_META, OPT_SET_META = 6, 7, 8, 9, 10
READ, WRITE, DISC, FLUSH, TRIM, CACHE, ZEROES, BS = range(8)
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16


def flags(f=3):
    return struct.pack(">I", f)


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def info_go(o, name, infos=()):
    n = name.encode()
    return opt(o, struct.pack(">I", len(n)) + n +
               struct.pack(">H", len(infos)) +
               b"".join(struct.pack(">H", i) for i in infos))


def meta(o, name, queries):
    n = name.encode()
    body = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        body += struct.pack(">I", len(q)) + q.encode()
    return opt(o, body)


def req(t, off=0, length=0, fl=0, handle=1, payload=b""):
    return struct.pack(">IHHQQI", REQ_MAGIC, fl, t, handle, off,
                       length) + payload


GO_SR = (flags() + opt(OPT_SR) +
         meta(OPT_SET_META, "disk", ["base:allocation"]) +
         info_go(OPT_GO, "disk", [0, 1, 2, 3]))

SEEDS = {
    "abort": flags() + opt(OPT_ABORT),
    "list": flags() + opt(OPT_LIST) + opt(OPT_ABORT),
    "list-bad-len": flags() + opt(OPT_LIST, b"x") + opt(OPT_ABORT),
    "starttls": flags() + opt(OPT_STARTTLS) + opt(OPT_ABORT),
    "unknown-option": flags() + opt(99, b"abc") + opt(OPT_ABORT),
    "info-all": flags() + info_go(OPT_INFO, "disk", [0, 1, 2, 3]) +
    info_go(OPT_INFO, "nope") + info_go(OPT_INFO, "") + opt(OPT_ABORT),
    "info-truncated": flags() + opt(OPT_INFO, b"\0\0\0\x09disk"),
    "meta-list": flags() + opt(OPT_SR) +
    meta(OPT_LIST_META, "disk", []) +
    meta(OPT_LIST_META, "disk", ["base:"]) +
    meta(OPT_LIST_META, "disk", ["qemu:dirty-bitmap:x"]) +
    meta(OPT_LIST_META, "nope", []) + opt(OPT_ABORT),
    "meta-without-sr": flags() + meta(OPT_SET_META, "disk",
                                      ["base:allocation"]) + opt(OPT_ABORT),
    "sr-twice": flags() + opt(OPT_SR) + opt(OPT_SR) + opt(OPT_SR, b"x") +
    opt(OPT_ABORT),
    "export-name": flags(1) + opt(OPT_EXPORT_NAME, b"disk") +
    req(READ, 0, 4096) + req(WRITE, 4096, 8, payload=b"12345678") +
    req(FLUSH) + req(DISC),
    "export-name-unknown": flags() + opt(OPT_EXPORT_NAME, b"nope"),
    "export-name-default-nozeroes": flags(3) + opt(OPT_EXPORT_NAME) +
    req(READ, 0, 512),
    "go-ro-writes": flags() + info_go(OPT_GO, "disk@snap") +
    req(WRITE, 0, 4, payload=b"abcd") + req(TRIM, 0, 4096) +
    req(ZEROES, 0, 4096) + req(READ, 0, 4096) + req(DISC),
    "go-commands": GO_SR +
    req(READ, 0, 65536, DF) + req(READ, 1, 100) +
    req(WRITE, 65535, 3, FUA, payload=b"xyz") +
    req(TRIM, 0, 131072, FUA) + req(ZEROES, 4096, 4096, NO_HOLE | FAST_ZERO) +
    req(CACHE, 0, 1 << 20) + req(BS, 0, 1 << 20) + req(BS, 12345, 1, REQ_ONE) +
    req(FLUSH) + req(DISC),
    "go-bad-requests": GO_SR +
    req(READ, (1 << 20) - 1, 2) + req(WRITE, 1 << 20, 1, payload=b"z") +
    req(READ, 0, 0) + req(READ, 0, 33 << 20) + req(9, 0, 1) +
    req(READ, 0, 1, 0x80) + req(FLUSH, 1, 1) + req(BS, 0, 1, DF) +
    req(READ, 0xffffffffffffffff, 1) + req(DISC),
    "go-huge-export": flags() + opt(OPT_SR) +
    meta(OPT_SET_META, "huge", ["base:allocation"]) +
    info_go(OPT_GO, "huge") +
    req(BS, 0x7fffffffffff0000, 0xffffffff) +
    req(BS, 0x7ffffffffffffff0, 0x10) + req(READ, 0x7fffffffffffffff, 1),
    "go-meta-other-export": flags() + opt(OPT_SR) +
    meta(OPT_SET_META, "disk@snap", ["base:allocation"]) +
    info_go(OPT_GO, "disk") + req(BS, 0, 4096),
    "write-oversized": GO_SR + req(WRITE, 0, 0xffffffff),
    "write-cut-off": GO_SR + req(WRITE, 0, 4096) + b"short",
    "bad-request-magic": GO_SR + b"\xde\xad\xbe\xef" + bytes(24),
    "bad-option-magic": flags() + b"NOTMAGIC" + bytes(8),
    "option-too-long": flags() + struct.pack(">QII", IHAVEOPT, OPT_LIST,
                                             0x7fffffff),
    "bad-client-flags": flags(0x80),
    "vanish": flags() + opt(OPT_SR)[:10],
    "empty": b"",
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
