#!/bin/bash
# The wire, byte by byte, with a hand-written client (Python sockets):
# option replies (ERR_UNSUP, ERR_INVALID, ERR_UNKNOWN with a message),
# NBD_OPT_EXPORT_NAME with and without NO_ZEROES, error replies for unknown
# commands and flags, out-of-order replies to pipelined requests, and
# hostile clients (bad magics, huge lengths, cut-off payloads, clients that
# vanish mid-request): each gets an error or a closed connection while the
# server and other clients carry on.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3
new_store >/dev/null

vdisk create vol 64M || fail "create"
vdisk snapshot vol@s || fail "snapshot"
start_serve "$tmpdir/sock"
pid=$(pgrep -f -n -- "serve --socket $tmpdir/sock") || fail "no server pid"

cat >"$tmpdir/raw.py" <<'PY'
import os
import socket
import struct
import sys
import time

SOCK = sys.argv[1]
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x3E889045565A9
REQ_MAGIC, SIMPLE, STRUCT = 0x25609513, 0x67446698, 0x668E33EF
ERR = 0x80000000
EPERM, EINVAL, ENOSPC = 1, 22, 28
M = 1024 * 1024


class Conn:
    def __init__(self, cflags=3):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(20)
        self.s.connect(SOCK)
        magic, opt, hflags = struct.unpack(">QQH", self.recv(18))
        assert magic == 0x4E42444D41474943 and opt == IHAVEOPT, hex(magic)
        assert hflags == 3, hflags
        if cflags is not None:
            self.s.sendall(struct.pack(">I", cflags))

    def recv(self, n):
        buf = b""
        while len(buf) < n:
            b = self.s.recv(n - len(buf))
            if not b:
                raise EOFError("closed after %d of %d bytes" % (len(buf), n))
            buf += b
        return buf

    def closed(self):
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True

    def opt(self, o, data=b""):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, o, len(data)) + data)

    def rep(self):
        magic, o, typ, n = struct.unpack(">QIII", self.recv(20))
        assert magic == REP_MAGIC, hex(magic)
        return o, typ, self.recv(n)

    def go(self, name, structured=True, meta=True):
        if structured:
            self.opt(8)
            assert self.rep()[1] == 1
        if meta:
            n, q = name.encode(), b"base:allocation"
            self.opt(10, struct.pack(">I", len(n)) + n + struct.pack(">II", 1, len(q)) + q)
            o, typ, data = self.rep()
            assert typ == 4 and data[4:] == q, (typ, data)
            assert self.rep()[1] == 1
        n = name.encode()
        self.opt(7, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
        while True:
            o, typ, data = self.rep()
            if typ == 3 and struct.unpack(">H", data[:2])[0] == 0:
                self.size, self.flags = struct.unpack(">QH", data[2:])
            if typ != 3:
                assert typ == 1, (hex(typ), data)
                return

    def req(self, typ, off=0, length=0, flags=0, handle=1, payload=b""):
        self.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, typ, handle,
                                   off, length) + payload)

    def reply(self):
        """Returns (handle, error, data) of one whole reply (structured
        chunks are gathered until DONE; data is a dict offset -> bytes)."""
        magic, = struct.unpack(">I", self.recv(4))
        if magic == SIMPLE:
            err, handle = struct.unpack(">IQ", self.recv(12))
            return handle, err, None
        assert magic == STRUCT, hex(magic)
        data, err = {}, 0
        while True:
            flags, typ, handle, n = struct.unpack(">HHQI", self.recv(16))
            payload = self.recv(n)
            if typ == 1:
                data[struct.unpack(">Q", payload[:8])[0]] = payload[8:]
            elif typ == 2:
                off, ln = struct.unpack(">QI", payload)
                data[off] = bytes(ln)
            elif typ & 0x8000:
                err, mlen = struct.unpack(">IH", payload[:6])
                data["msg"] = payload[6:6 + mlen].decode()
            elif typ == 5:
                data["bs"] = payload
            if flags & 1:
                return handle, err, data
            magic, = struct.unpack(">I", self.recv(4))
            assert magic == STRUCT


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# ---- options -------------------------------------------------------------
c = Conn()
c.opt(3, b"x")                                   # LIST takes no data
check(c.rep()[1] == ERR + 3, "LIST with data")
c.opt(5)                                         # STARTTLS
check(c.rep()[1] == ERR + 1, "STARTTLS")
c.opt(99, b"abc")                                # unknown option
o, typ, msg = c.rep()
check(o == 99 and typ == ERR + 1 and b"99" in msg, "unknown option: %r" % msg)
c.opt(9, struct.pack(">I", 3) + b"vol" + struct.pack(">I", 0))
check(c.rep()[1] == ERR + 3, "LIST_META_CONTEXT before STRUCTURED_REPLY")
c.opt(8)
check(c.rep()[1] == 1, "STRUCTURED_REPLY")
c.opt(8)
check(c.rep()[1] == ERR + 3, "STRUCTURED_REPLY twice")
c.opt(6, struct.pack(">I", 6) + b"nosuch" + struct.pack(">H", 0))
o, typ, msg = c.rep()
check(typ == ERR + 6 and b"nosuch" in msg, "INFO missing: %x %r" % (typ, msg))
c.opt(6, struct.pack(">I", 99) + b"vol")         # inconsistent lengths
check(c.rep()[1] == ERR + 3, "INFO malformed")
c.opt(6, struct.pack(">I", 5) + b"vol@s" + struct.pack(">HH", 1, 2))
reps = []
while True:
    o, typ, data = c.rep()
    reps.append((typ, data))
    if typ != 3:
        break
check(reps[-1][0] == 1, "INFO ack")
info = {struct.unpack(">H", d[:2])[0]: d[2:] for t, d in reps if t == 3}
size, flags = struct.unpack(">QH", info[0])
check(size == 64 * M and flags & 2, "snapshot size/read-only flag")
check(info[2].startswith(b"vdisk snapshot"), "description %r" % info.get(2))
check(struct.unpack(">III", info[3]) == (1, 65536, 32 * M), "block size")
c.opt(2)                                         # ABORT
check(c.rep()[1] == 1, "ABORT ack")
check(c.closed(), "closed after ABORT")

# NBD_OPT_EXPORT_NAME, with and without the 124 zero bytes.
for cflags, tail in ((1, 124), (3, 0)):
    c = Conn(cflags)
    c.opt(1, b"vol")
    size, flags = struct.unpack(">QH", c.recv(10))
    check(size == 64 * M and flags & 1 and not flags & 2, "EXPORT_NAME")
    check(c.recv(tail) == bytes(tail), "zeroes")
    c.req(0, 0, 512, handle=7)
    h, err, _ = c.reply()
    check(h == 7 and err == 0, "simple read reply")
    check(c.recv(512) == bytes(512), "simple read data")
    c.req(2)
    check(c.closed(), "closed after DISC")
c = Conn()
c.opt(1, b"nosuch")                              # cannot error: hang up
check(c.closed(), "EXPORT_NAME of a missing export not closed")
c = Conn(cflags=0x10)                            # unknown client flag
check(c.closed(), "unknown client flags accepted")

# ---- transmission errors ---------------------------------------------------
c = Conn()
c.go("vol")
for typ, off, ln, fl, want in (
        (9, 0, 1, 0, EINVAL),                  # unknown command
        (0, 0, 1, 0x80, EINVAL),               # unknown flag
        (1, 0, 0, 8, EINVAL),                  # REQ_ONE on a write
        (3, 1, 0, 0, EINVAL),                  # FLUSH with an offset
        (0, 64 * M, 1, 0, EINVAL),             # read past the end
        (0, 2**64 - 1, 2, 0, EINVAL),          # offset wraps
        (4, 64 * M - 1, 2, 0, ENOSPC),         # trim past the end
        (6, 2**63, 1, 0, ENOSPC),              # zero past the end
        (0, 0, 33 * M, 0, EINVAL),             # over the 32 MiB cap
        (0, 0, 0, 0, EINVAL)):                 # empty read
    c.req(typ, off, ln, fl, handle=typ + 100)
    h, err, data = c.reply()
    check(h == typ + 100 and err == want,
          "cmd %d off %d len %d: got %d want %d" % (typ, off, ln, err, want))
    check(data and data["msg"], "error chunk without a message")
c.req(1, 64 * M - 1, 2, payload=b"xy", handle=5)   # write past the end
check(c.reply()[1] == ENOSPC, "write past the end")
c.req(1, 0, 4, 1, payload=b"abcd", handle=6)       # FUA write works
check(c.reply()[:2] == (6, 0), "write after errors")
c.req(0, 0, 4, handle=8)
h, err, data = c.reply()
check(err == 0 and data[0] == b"abcd", "read back %r" % data)

# Pipelining: 64 requests sent at once, replies matched by handle; a slow
# 32 MiB read does not hold back small ones (replies out of order).
c.req(1, 1 * M, 3 * M, payload=os.urandom(3 * M), handle=900)
check(c.reply()[1] == 0, "big write")
reordered = False
for attempt in range(5):
    reqs = b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, 0, 1000 + i,
                                i * 4096, 4096) for i in range(63))
    c.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, 0, 999, 0, 32 * M) + reqs)
    order = [c.reply()[0] for _ in range(64)]
    check(sorted(order) == [999] + list(range(1000, 1063)), "lost replies")
    if order[0] != 999:
        reordered = True
        break
check(reordered, "replies never came out of order")

# Many small reads at once (the server answers runs of them together, their
# replies sent in batches): each reply whole, under its own handle, with
# the bytes asked for; holes among them, and one invalid request.
known = os.urandom(1 * M)
c.req(1, 12 * M, 1 * M, payload=known, handle=1999)
check(c.reply()[1] == 0, "known write")
rng = __import__("random").Random(7)
want, reqs = {}, []
for i in range(300):
    if i == 150:
        want[2000 + i] = None          # beyond the end: EINVAL
        reqs.append(struct.pack(">IHHQQI", REQ_MAGIC, 0, 0, 2000 + i, 64 * M, 4096))
        continue
    ln = rng.choice((512, 4096, 4096, 16384))
    if i % 10 == 3:                    # never written: zeroes
        off = 40 * M + rng.randrange(0, M - ln)
        want[2000 + i] = (off, bytes(ln))
    else:
        off = 12 * M + rng.randrange(0, M - ln)
        want[2000 + i] = (off, known[off - 12 * M:off - 12 * M + ln])
    reqs.append(struct.pack(">IHHQQI", REQ_MAGIC, 0, 0, 2000 + i, off, ln))
c.s.sendall(b"".join(reqs))
for _ in range(len(reqs)):
    h, err, data = c.reply()
    check(h in want, "unknown or repeated handle %d" % h)
    w = want.pop(h)
    if w is None:
        check(err == EINVAL, "read beyond the end: error %d" % err)
        continue
    check(err == 0, "read %d failed: %d" % (h, err))
    off, exp = w
    got = b"".join(data[k] for k in sorted(data))
    check(min(data) == off and got == exp, "read %d: wrong bytes" % h)
check(not want, "replies missing")

# Read-only export: writes are EPERM (payload consumed), reads work.
r = Conn()
r.go("vol@s")
check(r.flags & 2, "read-only flag")
r.req(1, 0, 4096, payload=bytes(4096), handle=1)
h, err, data = r.reply()
check(err == EPERM and "read-only" in data["msg"], "write to snapshot")
r.req(4, 0, 4096, handle=2)
check(r.reply()[1] == EPERM, "trim of snapshot")
r.req(0, 0, 4, handle=3)
check(r.reply()[1:] == (0, {0: bytes(4)}), "snapshot read")

# BLOCK_STATUS without a meta context is EINVAL.
n = Conn()
n.go("vol", meta=False)
n.req(7, 0, 4096, handle=1)
check(n.reply()[1] == EINVAL, "block status without context")

# ---- hostile clients --------------------------------------------------------
def hostile(name, fn):
    x = Conn()
    try:
        fn(x)
    except (EOFError, ConnectionResetError, BrokenPipeError):
        pass
    x.s.close()
    # The server and the established clients still answer.
    c.req(0, 0, 4, handle=4242)
    check(c.reply()[:2] == (4242, 0), "after " + name)


def bad_option_magic(x):
    x.s.sendall(b"BADMAGIC" + bytes(8))
    check(x.closed(), "bad option magic not closed")


def huge_option(x):
    x.s.sendall(struct.pack(">QII", IHAVEOPT, 3, 0xFFFFFFFF))
    check(x.closed(), "huge option not closed")


def bad_request_magic(x):
    x.go("vol")
    x.s.sendall(b"\xde\xad\xbe\xef" + bytes(24))
    check(x.closed(), "bad request magic not closed")


def oversized_write(x):
    x.go("vol")
    x.req(1, 0, 0xFFFFFFFF, handle=1)
    h, err, data = x.reply()
    check(err == EINVAL, "oversized write: %d" % err)
    check(x.closed(), "oversized write not closed")


def cut_off_payload(x):
    x.go("vol")
    x.req(1, 8 * M, 1 * M, handle=1, payload=b"\x01" * 1000)


def vanish_mid_header(x):
    x.go("vol")
    x.s.sendall(struct.pack(">IHH", REQ_MAGIC, 0, 0))


def vanish_with_replies_pending(x):
    x.go("vol")
    for i in range(16):
        x.req(0, 0, 8 * M, handle=i)


def vanish_in_handshake(x):
    x.s.sendall(struct.pack(">QI", IHAVEOPT, 7))


for name, fn in list(globals().items()):
    if name in ("bad_option_magic", "huge_option", "bad_request_magic",
                "oversized_write", "cut_off_payload", "vanish_mid_header",
                "vanish_with_replies_pending", "vanish_in_handshake"):
        hostile(name, fn)

# The cut-off write wrote nothing.
c.req(0, 8 * M, 1000, handle=77)
h, err, data = c.reply()
check(err == 0 and data.get(8 * M) == bytes(1000), "cut-off write landed")
c.req(2)
print("OK")
PY
/usr/bin/python3 "$tmpdir/raw.py" "$tmpdir/sock" || fail "raw protocol script"
kill -0 "$pid" || fail "server died"
# The connection threads log as they end, which may be after the client
# returned: give them a moment.
for _ in $(seq 50); do
	grep -q "bad request magic" "$tmpdir/serve.log" &&
		grep -q "mid-payload" "$tmpdir/serve.log" && break
	sleep 0.1
done
cat "$tmpdir/serve.log"
grep -q "bad request magic" "$tmpdir/serve.log" || fail "no log of the bad magic"
grep -q "mid-payload" "$tmpdir/serve.log" || fail "no log of the cut-off payload"
# A normal client after all that.
/usr/bin/python3 -c '
import nbd, sys
h = nbd.NBD(); h.set_export_name("vol"); h.connect_unix(sys.argv[1])
assert h.pread(4, 0) == b"abcd"; h.shutdown()' "$tmpdir/sock" || fail "client after hostile ones"
