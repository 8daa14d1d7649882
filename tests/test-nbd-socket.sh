#!/bin/bash
# Lifecycle of vdisk serve: the Unix socket is created mode 0600 and only
# once it accepts; a live server's socket is refused, a stale one replaced,
# a non-socket left alone; TCP listens on loopback by default; one log
# line per connection; SIGTERM/SIGINT stop accepting, finish the requests
# in flight (every acknowledged write survives), remove the socket and
# exit 0.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 nbdinfo
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
new_store >/dev/null
sock=$tmpdir/sock
log=$tmpdir/own.log

vdisk create vol 64M || fail "create"
expect_exit 2 vdisk serve --socket "$sock" --listen :1 2>/dev/null
expect_exit 2 vdisk serve --socket "$sock" 'bad name!' 2>/dev/null
for bad in x -1 1001 '' 5us; do
	expect_exit 2 vdisk serve --socket "$sock" --busy-poll "$bad" 2>/dev/null
done

serve_bg() {   # serve_bg ARGS...: starts a server, sets $pid
	"$VDISK" serve "$@" 2>>"$log" &
	pid=$!
	cleanup_fn "kill -9 $pid 2>/dev/null"
}
wait_sock() {
	for _ in $(seq 100); do
		[ -S "$1" ] && return 0
		kill -0 "$pid" 2>/dev/null || fail "serve died: $(cat "$log")"
		sleep 0.1
	done
	fail "no socket $1"
}

# Mode 0600, and connectable as soon as it exists.
serve_bg --socket "$sock"
wait_sock "$sock"
[ "$(stat -c %a "$sock")" = 600 ] || fail "socket mode $(stat -c %a "$sock")"
nbdinfo --size "nbd+unix:///vol?socket=$sock" >/dev/null || fail "first connect"
first=$pid

# A second server on the same socket is refused; the first carries on.
"$VDISK" serve --socket "$sock" 2>"$tmpdir/err2"
[ $? -eq 1 ] || fail "second server not refused"
grep -q "already listening" "$tmpdir/err2" || fail "message: $(cat "$tmpdir/err2")"
nbdinfo --size "nbd+unix:///vol?socket=$sock" >/dev/null || fail "first server broken by the second"

# One log line per connection.
before=$(grep -c '^vdisk serve: \[' "$log")
for _ in 1 2 3; do nbdinfo --size "nbd+unix:///vol?socket=$sock" >/dev/null; done
after=$(grep -c '^vdisk serve: \[' "$log")
[ $((after - before)) -eq 3 ] || fail "expected 3 log lines, got $((after - before))"

# SIGTERM with writes in flight: every write the server acknowledged is
# in the store afterwards.
cat >"$tmpdir/inflight.py" <<'PY'
import json
import os
import signal
import sys

import nbd

sock, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
BS, N = 256 * 1024, 200
h = nbd.NBD()
h.set_export_name("vol")
h.connect_unix(sock)
bufs = [bytes([i % 251 + 1]) * BS for i in range(N)]
cookies = {}
for i in range(N):
    cookies[h.aio_pwrite(bufs[i], i * BS)] = i
acked, failed, signalled = [], 0, False
while cookies:
    try:
        h.poll(-1)
    except nbd.Error:
        break
    for c in list(cookies):
        try:
            done = h.aio_command_completed(c)
        except nbd.Error:
            failed += 1
            del cookies[c]
            continue
        if done:
            acked.append(cookies.pop(c))
    if len(acked) >= 20 and not signalled:
        os.kill(pid, signal.SIGTERM)
        signalled = True
json.dump(acked, open(out, "w"))
print("acked %d, failed %d, unfinished %d" % (len(acked), failed, len(cookies)))
assert signalled
PY
/usr/bin/python3 "$tmpdir/inflight.py" "$sock" "$pid" "$tmpdir/acked" || fail "in-flight client"
wait "$pid"
rc=$?
[ "$rc" -eq 0 ] || fail "serve exited $rc after SIGTERM: $(tail -5 "$log")"
[ -e "$sock" ] && fail "socket left after SIGTERM"
grep -q "signal 15: stopping" "$log" || fail "no stop log"
vdisk export vol "$tmpdir/vol.img" || fail "export"
/usr/bin/python3 - "$tmpdir/acked" "$tmpdir/vol.img" <<'PY' || fail "acknowledged writes lost"
import json, sys
acked = json.load(open(sys.argv[1]))
BS = 256 * 1024
with open(sys.argv[2], "rb") as f:
    for i in acked:
        f.seek(i * BS)
        assert f.read(BS) == bytes([i % 251 + 1]) * BS, "write %d lost" % i
print("%d acknowledged writes intact" % len(acked))
PY
vdisk check || fail "check"

# A stale socket (bound, nobody listening) is replaced.
/usr/bin/python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$sock"
[ -S "$sock" ] || fail "could not make a stale socket"
serve_bg --socket "$sock"
sleep 0.2
for _ in $(seq 50); do nbdinfo --size "nbd+unix:///vol?socket=$sock" >/dev/null 2>&1 && break; sleep 0.1; done
nbdinfo --size "nbd+unix:///vol?socket=$sock" >/dev/null || fail "stale socket not replaced"
kill -INT "$pid"
wait "$pid" || fail "SIGINT exit status $?"
[ -e "$sock" ] && fail "socket left after SIGINT"

# A regular file in the way is never clobbered.
echo keep >"$tmpdir/file"
"$VDISK" serve --socket "$tmpdir/file" 2>/dev/null && fail "served over a regular file"
[ "$(cat "$tmpdir/file")" = keep ] || fail "regular file clobbered"

# TCP: loopback by default, on the port given.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
serve_bg --listen ":$port"
for _ in $(seq 50); do nbdinfo --size "nbd://127.0.0.1:$port/vol" >/dev/null 2>&1 && break; sleep 0.1; done
[ "$(nbdinfo --size "nbd://127.0.0.1:$port/vol")" = 67108864 ] || fail "TCP connect"
if command -v ss >/dev/null; then
	ss -ltn "sport = :$port" | tee "$tmpdir/ss"
	grep -v -e '127\.0\.0\.1' -e '\[::1\]' -e '^State' "$tmpdir/ss" | grep -q . &&
		fail "listening beyond loopback"
fi
kill -TERM "$pid"
wait "$pid" || fail "TCP server exit status $?"
cat "$log"
echo OK
