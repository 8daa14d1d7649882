#!/bin/bash
# kill -9 of vdisk serve during a write load with flushes: after a restart
# (which replaces the stale socket) every flushed write reads back intact
# and `vdisk check` is clean.  Also: SIGTERM exits 0 and removes the socket.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
new_store >/dev/null
sock=$tmpdir/sock
log=$tmpdir/serve.log

vdisk create vol 32M || fail "create"

serve_bg() {
	"$VDISK" serve --socket "$sock" 2>>"$log" &
	pid=$!
	cleanup_fn "kill -9 $pid 2>/dev/null"
	for _ in $(seq 100); do
		/usr/bin/python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' \
			"$sock" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || fail "serve died: $(cat "$log")"
		sleep 0.1
	done
	fail "serve did not start"
}

cat >"$tmpdir/load.py" <<'PY'
# Writes each 4 KiB block of a random permutation once (16 in flight),
# flushing every 64 writes; after each flush records how many writes it
# covers in STATE.  Runs until killed.
import json
import os
import random
import sys

import nbd

sock, state, mode = sys.argv[1:4]
BS, N = 4096, 32 * 1024 * 1024 // 4096
perm = list(range(N))
random.Random(42).shuffle(perm)


def block(i):
    return (b"%08d" % i) * (BS // 8)


h = nbd.NBD()
h.set_export_name("vol")
h.connect_unix(sock)
if mode == "verify":
    n = json.load(open(state))["flushed"]
    assert n > 0, "nothing was flushed before the kill"
    for k in range(n):
        i = perm[k]
        got = h.pread(BS, i * BS)
        assert got == block(i), "flushed block %d (write %d of %d) lost" % (i, k, n)
    print("verified %d flushed writes" % n)
    sys.exit(0)

# After the last block it starts over with the same contents, so that the
# kill always lands mid-load however fast the machine is.
done = 0
while True:
    batch = perm[done % N:done % N + 64]
    bufs = {i: block(i) for i in batch}  # alive until completion
    cookies = [h.aio_pwrite(bufs[i], i * BS) for i in batch[:16]]
    nxt = 16
    while cookies:
        h.poll(-1)
        for c in [c for c in cookies if h.aio_command_completed(c)]:
            cookies.remove(c)
            if nxt < len(batch):
                cookies.append(h.aio_pwrite(bufs[batch[nxt]], batch[nxt] * BS))
                nxt += 1
    done += len(batch)
    h.flush()
    with open(state + ".tmp", "w") as f:
        json.dump({"flushed": min(done, N)}, f)
    os.replace(state + ".tmp", state)
PY

serve_bg
/usr/bin/python3 "$tmpdir/load.py" "$sock" "$tmpdir/state" load 2>"$tmpdir/load.err" &
load=$!
cleanup_fn "kill $load 2>/dev/null"
# Let it write and flush for a while, then kill -9 mid-load.
for _ in $(seq 50); do
	[ -e "$tmpdir/state" ] && break
	sleep 0.1
done
sleep 1.5
kill -0 "$load" || fail "load finished or died early: $(cat "$tmpdir/load.err")"
kill -9 "$pid"
wait "$pid" 2>/dev/null
wait "$load" 2>/dev/null
cat "$tmpdir/state"; echo
[ -S "$sock" ] || fail "socket file gone after kill -9 (test cannot check stale replacement)"

vdisk check || fail "vdisk check after kill -9"
serve_bg   # replaces the stale socket
/usr/bin/python3 "$tmpdir/load.py" "$sock" "$tmpdir/state" verify || fail "flushed data lost"

# SIGTERM: exit 0, socket removed.
kill -TERM "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 0 ] || fail "serve exited $rc on SIGTERM"
[ -e "$sock" ] && fail "socket left behind after SIGTERM"
vdisk check || fail "vdisk check after SIGTERM"
echo OK
