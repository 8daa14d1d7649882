#!/bin/bash
# Load: 8 clients on 4 exports at once (two per export, multi-conn), each
# pipelining writes, trims, zeroes, flushes and reads over its own region
# and verifying every read against a model, for a bounded time.  Zero
# errors allowed; the server's peak RSS stays bounded (--cache 32M); a final `vdisk
# check` is clean.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
new_store >/dev/null
sock=$tmpdir/sock
secs=${NBD_LOAD_SECONDS:-8}
# Memory: the engine may hold --cache bytes of clean chunks and its dirty
# bound (8 MiB by default), each connection caps its in-flight requests
# (64 MiB; this load keeps a few MiB in flight per client) and recycles up
# to 4 MiB of buffers (README "Memory").  Once every client has gone,
# the server hands freed buffers back (malloc_trim), so RSS falls back near
# its idle size: a leak of request buffers would show there.
peak_limit_kib=$((400 * 1024))
idle_limit_kib=$((100 * 1024))

for v in v0 v1 v2 v3; do vdisk create $v 32M || fail "create $v"; done
"$VDISK" serve --socket "$sock" --cache 32M 2>"$tmpdir/serve.log" &
pid=$!
cleanup_fn "kill -9 $pid 2>/dev/null"
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "serve did not start"

cat >"$tmpdir/client.py" <<'PY'
import random
import sys
import time

import nbd

sock, export, slot, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
K, M = 1024, 1024 * 1024
REGION = 16 * M
base = slot * REGION
rnd = random.Random(hash((export, slot)) & 0xFFFFFFFF)
model = bytearray(REGION)
h = nbd.NBD()
h.set_export_name(export)
h.connect_unix(sock)
assert h.can_multi_conn()
ops = {"write": 0, "trim": 0, "zero": 0, "read": 0, "flush": 0}


def ranges(n, maxlen):
    """N non-overlapping random ranges inside the region (one per slice)."""
    width = REGION // n
    out = []
    for i in rnd.sample(range(n), n):
        ln = rnd.randint(1, min(maxlen, width))
        if rnd.random() < 0.5:          # chunk-aligned half the time
            ln = max(4 * K, ln // (4 * K) * (4 * K))
        off = i * width + rnd.randint(0, width - ln)
        out.append((off, ln))
    return out


def wait_all(cookies):
    while cookies:
        h.poll(-1)
        for c in [c for c in cookies if h.aio_command_completed(c)]:
            cookies.remove(c)


deadline = time.monotonic() + secs
while time.monotonic() < deadline:
    r = rnd.random()
    batch = ranges(rnd.choice((1, 4, 8, 16)), rnd.choice((4 * K, 64 * K, 300 * K)))
    if r < 0.5:
        cookies, keep = [], []   # buffers must live until completion
        for off, ln in batch:
            data = rnd.randbytes(ln)
            keep.append(data)
            fl = nbd.CMD_FLAG_FUA if rnd.random() < 0.05 else 0
            cookies.append(h.aio_pwrite(data, base + off, flags=fl))
            model[off:off + ln] = data
        wait_all(cookies)
        del keep
        ops["write"] += len(batch)
    elif r < 0.6:
        cookies = []
        for off, ln in batch:
            if rnd.random() < 0.5:
                cookies.append(h.aio_trim(ln, base + off))
                ops["trim"] += 1
            else:
                cookies.append(h.aio_zero(ln, base + off))
                ops["zero"] += 1
            model[off:off + ln] = bytes(ln)
        wait_all(cookies)
    elif r < 0.65:
        h.flush()
        ops["flush"] += 1
    else:
        bufs = []
        cookies = []
        for off, ln in batch:
            b = nbd.Buffer(ln)
            bufs.append((off, ln, b))
            cookies.append(h.aio_pread(b, base + off))
        wait_all(cookies)
        for off, ln, b in bufs:
            got = b.to_bytearray()
            if got != model[off:off + ln]:
                want = model[off:off + ln]
                i = next(i for i in range(ln) if got[i] != want[i])
                j = max(k for k in range(ln) if got[k] != want[k])
                sys.exit("%s slot %d: read %d+%d (export offset %d) differs "
                         "in [%d, %d]: got %s want %s" %
                         (export, slot, off, ln, base + off, off + i, off + j,
                          bytes(got[i:i + 8]).hex(), bytes(want[i:i + 8]).hex()))
        ops["read"] += len(batch)
h.flush()
for off in range(0, REGION, 4 * M):
    if h.pread(4 * M, base + off) != model[off:off + 4 * M]:
        sys.exit("%s slot %d: final mismatch in %d" % (export, slot, off))
h.shutdown()
print(export, slot, ops)
PY

pids=()
for v in v0 v1 v2 v3; do
	for slot in 0 1; do
		/usr/bin/python3 "$tmpdir/client.py" "$sock" $v $slot "$secs" \
			>"$tmpdir/client.$v.$slot" 2>&1 &
		pids+=($!)
	done
done
# Sample the server's RSS while the clients run.
( while kill -0 "${pids[0]}" 2>/dev/null; do
	awk '/VmRSS/ {print $2}' /proc/$pid/status
	sleep 0.5
done >"$tmpdir/rss" ) &
sampler=$!
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
wait $sampler
echo "server RSS samples (KiB): $(tr '\n' ' ' <"$tmpdir/rss")"
cat "$tmpdir"/client.*
[ "$bad" -eq 0 ] || fail "$bad client(s) failed"
kill -0 "$pid" || fail "server died"
grep -E '^(Rss|Anonymous|Shared|Private)' /proc/$pid/smaps_rollup
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
sleep 0.5   # let the last connection threads finish
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo "server RSS ${rss} KiB after the clients left, peak ${hwm} KiB"
sanitized=0
if ldd "$VDISK" 2>/dev/null | grep -E 'libasan|libtsan' >/dev/null; then
	# The sanitizers' shadow memory (and ASan's quarantine) make RSS
	# meaningless.
	peak_limit_kib=$((4096 * 1024)) idle_limit_kib=$((4096 * 1024)) sanitized=1
fi
[ "$hwm" -lt "$peak_limit_kib" ] || fail "server peak RSS ${hwm} KiB over ${peak_limit_kib} KiB"
[ "$rss" -lt "$idle_limit_kib" ] || fail "server RSS ${rss} KiB after the clients left (leak?)"
# No growth: the second half of the run peaks no higher than the first
# half plus a margin.
[ $sanitized = 1 ] || awk -v limit=$((32 * 1024)) '{ v[NR] = $1 } END {
	h = int(NR / 2); a = 0; b = 0
	for (i = 1; i <= h; i++) if (v[i] > a) a = v[i]
	for (i = h + 1; i <= NR; i++) if (v[i] > b) b = v[i]
	if (b > a * 1.25 + limit) { print "RSS still growing: " a " then " b; exit 1 }
}' "$tmpdir/rss" || fail "server RSS grows under steady load"
grep -v ' 0 errors' "$tmpdir/serve.log" | grep -q ' errors,' && fail "server reported errors: $(cat "$tmpdir/serve.log")"
kill -TERM "$pid"
wait "$pid" || fail "serve exit status $?"
cat "$tmpdir/serve.log"
vdisk check || fail "check"
echo OK
