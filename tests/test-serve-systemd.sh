#!/bin/bash
# systemd integration without systemd running:
#  - socket activation: a listening Unix socket passed as fd 3 (LISTEN_FDS,
#    LISTEN_PID, LISTEN_FDNAMES) by systemd-socket-activate, or by a small
#    python3 helper if that is missing; nbdinfo connects through it;
#  - readiness: with NOTIFY_SOCKET (a path and an abstract name) READY=1
#    arrives only once the server accepts connections, after the pidfile is
#    written, and STOPPING=1 at SIGTERM; the pidfile goes on a clean exit;
#  - the unit files pass `systemd-analyze verify` (if available).
source "$(dirname "$0")/functions.sh"
requires nbdinfo python3
new_store >/dev/null
vdisk create vol 4M || fail "create"

# ---- socket activation ----
sock=$tmpdir/act.sock pid=$tmpdir/act.pid log=$tmpdir/act.log
if command -v systemd-socket-activate >/dev/null; then
	activate=(systemd-socket-activate -l "$sock" --fdname=nbd)
	echo "socket activation by systemd-socket-activate"
else
	cat >"$tmpdir/activate.py" <<'PY'
# activate.py SOCK PROG ARGS...: listen on SOCK, pass it as fd 3 and exec.
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(16)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()),
                  LISTEN_FDNAMES="nbd")
os.execv(sys.argv[2], sys.argv[2:])
PY
	activate=(python3 "$tmpdir/activate.py" "$sock")
	echo "socket activation by a python3 helper"
fi
"${activate[@]}" "$VDISK" --store "$VDISK_STORE" serve --pidfile "$pid" \
	2>"$log" &
spid=$!
cleanup_fn "kill -9 $spid 2>/dev/null"
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "no activation socket: $(cat "$log")"
size=$(nbdinfo --size "nbd+unix:///vol?socket=$sock") ||
	fail "nbdinfo through the activated socket: $(cat "$log")"
[ "$size" = 4194304 ] || fail "size $size"
grep -q 'listening on systemd:nbd' "$log" || fail "log: $(cat "$log")"
# A second connection is served by the same process.
nbdinfo --list "nbd+unix://?socket=$sock" | grep -q 'export="vol"' ||
	fail "nbdinfo --list"
[ "$(cat "$pid")" = "$spid" ] || fail "pidfile holds $(cat "$pid"), not $spid"
kill -TERM "$spid"
wait "$spid"
rc=$?
[ "$rc" -eq 0 ] || fail "activated serve exited $rc on SIGTERM: $(cat "$log")"
[ -e "$pid" ] && fail "pidfile left after a clean exit"
[ -S "$sock" ] || fail "the passed socket file was removed (it is systemd's)"

# Not a listening socket: refused.
python3 - "$VDISK" "$VDISK_STORE" >"$tmpdir/bad.log" 2>&1 <<'PY' &&
import os, socket, subprocess, sys
a, b = socket.socketpair()
def child():
    os.dup2(a.fileno(), 3)
    os.set_inheritable(3, True)
    os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
r = subprocess.run([sys.argv[1], "--store", sys.argv[2], "serve"],
                   preexec_fn=child, stderr=subprocess.PIPE, text=True,
                   timeout=10)
print(r.stderr)
sys.exit(0 if r.returncode == 1 and "not a listening" in r.stderr else 1)
PY
	echo "a passed non-listening socket is refused" ||
	fail "serve with a non-listening passed socket: $(cat "$tmpdir/bad.log")"

# ---- readiness ----
cat >"$tmpdir/notify.py" <<'PY'
# notify.py ADDR NBDSOCK PIDFILE: receive sd_notify datagrams on ADDR ('@'
# abstract).  At READY=1 the NBD socket must accept and the pidfile exist.
# Prints one line per event; exits after STOPPING=1.
import os, socket, sys
addr, nbdsock, pidfile = sys.argv[1:4]
r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
r.bind("\0" + addr[1:] if addr.startswith("@") else addr)
r.settimeout(20)
print("listening", flush=True)
while True:
    msg = r.recv(4096).decode()
    for line in msg.split("\n"):
        if line == "READY=1":
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(nbdsock)    # raises if not accepting yet
            c.close()
            pid = open(pidfile).read().strip()
            print("READY accepting pid=" + pid, flush=True)
        elif line == "STOPPING=1":
            print("STOPPING", flush=True)
            sys.exit(0)
PY
for addr in "$tmpdir/notify" "@vdisk-test-notify-$$-$RANDOM"; do
	nsock=$tmpdir/n.sock out=$tmpdir/notify.out
	rm -f "$nsock" "$out"
	python3 "$tmpdir/notify.py" "$addr" "$nsock" "$pid" >"$out" 2>&1 &
	npid=$!
	cleanup_fn "kill $npid 2>/dev/null"
	for _ in $(seq 50); do grep -q listening "$out" && break; sleep 0.1; done
	NOTIFY_SOCKET=$addr "$VDISK" serve --socket "$nsock" --pidfile "$pid" \
		2>>"$log" &
	spid=$!
	cleanup_fn "kill -9 $spid 2>/dev/null"
	for _ in $(seq 100); do grep -q READY "$out" && break; sleep 0.1; done
	grep -qx "READY accepting pid=$spid" "$out" ||
		fail "no READY=1 (or not accepting yet) via $addr: $(cat "$out")"
	grep -q STOPPING "$out" && fail "STOPPING=1 before the signal"
	kill -TERM "$spid"
	wait "$spid" || fail "serve exited $? on SIGTERM"
	wait "$npid" || fail "notify receiver: $(cat "$out")"
	grep -qx STOPPING "$out" || fail "no STOPPING=1 via $addr: $(cat "$out")"
	[ -e "$pid" ] && fail "pidfile left after a clean exit"
	echo "readiness via $addr: ok"
done

# ---- unit files ----
if command -v systemd-analyze >/dev/null; then
	units=$tmpdir/units
	mkdir -p "$units" "$tmpdir/man/man1"
	sed "s|@BINDIR@|$(dirname "$VDISK")|" "$VDISK_TOP/dist/vdisk-serve.service.in" \
		>"$units/vdisk-serve.service"
	cp "$VDISK_TOP/dist/vdisk-serve.socket" "$units/"
	# Documentation=man:vdisk(1) must resolve: give it our page.
	cp "$VDISK_TOP/$VDISK_BUILD/vdisk.1" "$tmpdir/man/man1/"
	out=$(MANPATH=$tmpdir/man systemd-analyze verify \
		"$units/vdisk-serve.socket" "$units/vdisk-serve.service" 2>&1) ||
		fail "systemd-analyze verify: $out"
	[ -z "$out" ] || fail "systemd-analyze verify warns: $out"
	grep -qx 'Type=notify' "$units/vdisk-serve.service" || fail "not Type=notify"
	echo "unit files verified"
else
	echo "systemd-analyze not installed: unit files not verified"
fi
echo OK
