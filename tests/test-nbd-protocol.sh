#!/bin/bash
# NBD protocol corners through libnbd (Python bindings): every option
# (LIST, INFO, GO, STRUCTURED_REPLY, LIST/SET_META_CONTEXT) and command
# (READ with hole chunks and DF, WRITE with FUA, FLUSH, TRIM, WRITE_ZEROES
# with NO_HOLE and FAST_ZERO, CACHE, BLOCK_STATUS with REQ_ONE, DISC),
# simple replies, errors (EPERM on read-only exports, EINVAL/ENOSPC out of
# range), multi-conn visibility, default and restricted exports.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
new_store >/dev/null

vdisk create vol 4M || fail "create vol"
vdisk create ro 1M || fail "create ro"
vdisk snapshot ro@s1 || fail "snapshot"
start_serve "$tmpdir/sock"
start_serve "$tmpdir/sock2" ro vol      # restricted; "ro" is the default
start_serve "$tmpdir/sock3" --read-only vol

cat >"$tmpdir/t.py" <<'PY'
import errno
import sys

import nbd

sock, sock2, sock3 = sys.argv[1:4]
K, M = 1024, 1024 * 1024


def handle(name, structured=True, meta=True, opt=False, strict=True):
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.set_opt_mode(opt)
    if not strict:
        h.set_strict_mode(0)   # let bad requests reach the server
    h.set_export_name(name)
    return h


def expect_errno(want, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        assert e.errnum == want, (fn.__name__, e.errno, e.string)
        return e
    raise AssertionError("%s succeeded, expected errno %d" % (fn.__name__, want))


def extents(h, off, length, flags=0):
    got = []

    def cb(ctx, offset, entries, err):
        assert ctx == nbd.CONTEXT_BASE_ALLOCATION, ctx
        assert offset == off, (offset, off)
        got.extend(zip(entries[0::2], entries[1::2]))
    h.block_status(length, off, cb, flags)
    return got


HZ = nbd.STATE_HOLE | nbd.STATE_ZERO

# ---- option haggling ------------------------------------------------------
h = handle("vol", opt=True)
h.connect_unix(sock)
seen = []
h.opt_list(lambda name, desc: seen.append((name, desc)))
names = sorted(n for n, _ in seen)
assert names == ["ro", "ro@s1", "vol"], seen
assert dict(seen)["ro@s1"].startswith("vdisk snapshot"), seen
ctxs = []
assert h.opt_list_meta_context(lambda c: ctxs.append(c)) == 1
assert ctxs == ["base:allocation"], ctxs
h.set_full_info(True)
h.opt_info()
assert h.get_size() == 4 * M
assert h.get_canonical_export_name() == "vol"
assert h.get_export_description() == "vdisk volume vol", h.get_export_description()
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1
assert h.get_block_size(nbd.SIZE_PREFERRED) == 64 * K
assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 * M
assert not h.is_read_only()
h.set_export_name("nosuch")
expect_errno(errno.ENOENT, h.opt_info)   # NBD_REP_ERR_UNKNOWN
h.set_export_name("bad name!")
expect_errno(errno.ENOENT, h.opt_info)
h.set_export_name("ro@s1")
h.opt_info()
assert h.is_read_only() and h.get_size() == 1 * M
h.set_export_name("vol")
h.opt_go()
assert h.get_structured_replies_negotiated()
assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
for can in ("can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero",
            "can_cache", "can_df", "can_multi_conn"):
    assert getattr(h, can)(), can

# ---- commands --------------------------------------------------------------
# Fresh volume: one hole extent, zero reads.
assert extents(h, 0, 4 * M) == [(4 * M, HZ)], extents(h, 0, 4 * M)
assert h.pread(100, 12345) == bytes(100)
# Unaligned write with FUA; read back around it.
data = bytes((i * 7) & 0xFF for i in range(100000))
h.pwrite(data, 70000, nbd.CMD_FLAG_FUA)
assert h.pread(100000, 70000) == data
assert h.pread(10, 69995) == bytes(5) + data[:5]
# Block status: chunk granular (64K): data over [64K, 192K).
ext = extents(h, 0, 4 * M)
assert ext == [(64 * K, HZ), (128 * K, 0), (4 * M - 192 * K, HZ)], ext
# REQ_ONE: one extent only; unaligned start is clipped to the request.
assert extents(h, 1000, 4 * M - 1000, nbd.CMD_FLAG_REQ_ONE) == [(64 * K - 1000, HZ)]
assert extents(h, 70000, 10) == [(10, 0)]
# Structured read of data + hole: hole chunks for the sparse part.
chunks = []


def chunk(buf, off, status, err):
    chunks.append((off, len(buf), status))


buf = h.pread_structured(256 * K, 0, chunk)
assert buf == bytes(70000) + data + bytes(256 * K - 170000)
assert (0, 64 * K, nbd.READ_HOLE) in chunks, chunks
assert (64 * K, 128 * K, nbd.READ_DATA) in chunks, chunks
assert (192 * K, 64 * K, nbd.READ_HOLE) in chunks, chunks
# DF: one data chunk covering everything.
chunks.clear()
buf = h.pread_structured(256 * K, 0, chunk, nbd.CMD_FLAG_DF)
assert buf == bytes(70000) + data + bytes(256 * K - 170000)
assert chunks == [(0, 256 * K, nbd.READ_DATA)], chunks
# TRIM: reads zero and reports a hole afterwards.
h.trim(64 * K, 64 * K)
assert h.pread(64 * K, 64 * K) == bytes(64 * K)
assert extents(h, 0, 256 * K) == [(128 * K, HZ), (64 * K, 0), (64 * K, HZ)]
# WRITE_ZEROES with NO_HOLE still becomes a hole (vdisk stores no zeroes),
# and FAST_ZERO succeeds.
h.pwrite(b"\xff" * (128 * K), 512 * K)
h.zero(64 * K, 512 * K, nbd.CMD_FLAG_NO_HOLE)
h.zero(64 * K, 576 * K, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_FUA)
assert h.pread(128 * K, 512 * K) == bytes(128 * K)
assert extents(h, 512 * K, 128 * K) == [(128 * K, HZ)]
# Partial-chunk zero keeps the rest of the chunk.
h.pwrite(b"\xee" * (64 * K), 1 * M)
h.zero(100, 1 * M + 10)
assert h.pread(64 * K, 1 * M) == b"\xee" * 10 + bytes(100) + b"\xee" * (64 * K - 110)
h.cache(1 * M, 0)
h.flush()
# Errors (strict mode would refuse these client-side).
h2 = handle("vol", strict=False)
h2.connect_unix(sock)
expect_errno(errno.EINVAL, h2.pread, 512, 4 * M)
expect_errno(errno.EINVAL, h2.pread, 2, 4 * M - 1)
expect_errno(errno.ENOSPC, h2.pwrite, b"x" * 512, 4 * M)
expect_errno(errno.ENOSPC, h2.zero, 512, 4 * M - 1)
expect_errno(errno.EINVAL, h2.pread, 33 * M, 0)
expect_errno(errno.EINVAL, h2.block_status, 1, 4 * M, lambda *a: 0)
# The connection still works after the errors.
assert h2.pread(4, 140000) == data[70000:70004]
# Multi-conn: h2's write is visible to h after h2's flush.
h2.pwrite(b"multi", 3 * M)
h2.flush()
assert h.pread(5, 3 * M) == b"multi"
h2.shutdown()
h.shutdown()

# ---- simple replies (no structured replies, no meta) ----------------------
h = handle("vol", structured=False, meta=False)
h.connect_unix(sock)
assert not h.get_structured_replies_negotiated()
assert not h.can_df()
assert h.pread(10, 140000) == data[70000:70010]
h.pwrite(b"simple", 2 * M, nbd.CMD_FLAG_FUA)
assert h.pread(6, 2 * M) == b"simple"
h.shutdown()

# ---- read-only exports ------------------------------------------------------
h = handle("ro@s1", strict=False)
h.connect_unix(sock)
assert h.is_read_only()
assert not h.can_trim() and not h.can_zero()
assert h.pread(512, 0) == bytes(512)
expect_errno(errno.EPERM, h.pwrite, b"x", 0)
expect_errno(errno.EPERM, h.trim, 512, 0)
expect_errno(errno.EPERM, h.zero, 512, 0)
h.flush()
assert extents(h, 0, 1 * M) == [(1 * M, HZ)]
h.shutdown()
h = handle("vol", strict=False)
h.connect_unix(sock3)        # served with --read-only
assert h.is_read_only()
expect_errno(errno.EPERM, h.pwrite, b"x", 0)
assert h.pread(6, 2 * M) == b"simple"
h.shutdown()

# ---- restricted server: default export and filtering ----------------------
h = handle("", opt=True)
h.connect_unix(sock2)
seen = []
h.opt_list(lambda name, desc: seen.append(name))
assert sorted(seen) == ["ro", "vol"], seen
h.opt_info()
assert h.get_size() == 1 * M          # "" is the first named: ro
h.set_export_name("ro@s1")
expect_errno(errno.ENOENT, h.opt_info)
h.opt_abort()
print("OK")
PY
/usr/bin/python3 "$tmpdir/t.py" "$tmpdir/sock" "$tmpdir/sock2" "$tmpdir/sock3" || fail "protocol script"
grep -q "client disconnected" "$tmpdir/serve.log" || fail "no connection log: $(cat "$tmpdir/serve.log")"
