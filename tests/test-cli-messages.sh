#!/bin/bash
# The exact error messages and exit codes of the CLI: "vdisk: CMD: " then
# the engine's last error, which names the API call the user's command made
# (STYLE.md, "Errors"), then exit 1.  Covers messages the holder of a volume
# sends back through the control socket, which must carry the holder's
# error text and pid.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
new_store >/dev/null

nfail=0
# says WANT CMD...: CMD exits 1 and its whole stderr is WANT (stdout empty).
says() {
	local want=$1 err out rc
	shift
	out=$(timeout 30 "$VDISK" "$@" 2>"$tmpdir/err")
	rc=$?
	err=$(cat "$tmpdir/err")
	if [ "$rc" -ne 1 ] || [ "$err" != "$want" ] || [ -n "$out" ]; then
		echo "FAIL: vdisk $*: exit $rc (expected 1)" >&2
		echo "  stderr:   $err" >&2
		echo "  expected: $want" >&2
		[ -z "$out" ] || echo "  stdout:   $out" >&2
		nfail=$((nfail + 1))
	else
		echo "ok: vdisk $*: $err"
	fi
}

vdisk create a 2M || fail "create a"

# Lookups of what is not there.
says "vdisk: info: vd_info_get: no volume 'nosuch'" info nosuch
says "vdisk: info: vd_info_get: no snapshot 'a@nosuch'" info a@nosuch
says "vdisk: snapshot: vd_snapshot_create: no volume 'nosuch'" snapshot nosuch@s

# Resize without --shrink: the message names vd_volume_resize, the call the
# command made (it said vd_volume_close).
says "vdisk: resize: vd_volume_resize: 'a' is 2097152 bytes; shrinking to 1048576 loses data (allow it with --shrink)" \
	resize a 1M

# Snapshots, clones and removal.
vdisk snapshot a@s || fail "snapshot a@s"
says "vdisk: snapshot: vd_snapshot_create: snapshot 'a@s' already exists" snapshot a@s
says "vdisk: rm: vd_volume_remove: volume 'a' has 1 snapshot (use rm -r to remove them too)" rm a
vdisk clone a@s c || fail "clone"
says "vdisk: rm: vd_snapshot_remove: snapshot 'a@s' has 1 clone: c (remove or flatten it first)" rm a@s
vdisk rm c || fail "rm c"

# A held volume: serve it to an NBD client that keeps it open for writing.
sock=$tmpdir/sock
start_serve "$sock"
/usr/bin/python3 -c '
import nbd, sys, time
h = nbd.NBD()
h.connect_uri("nbd+unix:///a?socket=" + sys.argv[1])
h.pwrite(b"\1" * 512, 0)
time.sleep(60)
' "$sock" &
client=$!
cleanup_fn "kill $client 2>/dev/null; wait $client 2>/dev/null"
for _ in $(seq 1 100); do
	vdisk info a | grep -q "^held by:     vdisk serve (pid $serve_pid)\$" && break
	kill -0 "$client" 2>/dev/null || fail "NBD client died"
	sleep 0.1
done
vdisk info a | grep -q "^held by:     vdisk serve (pid $serve_pid)\$" ||
	fail "a is not shown as held by pid $serve_pid: $(vdisk info a)"

# Commands that need the head name the holder.
held="'a' is in use by vdisk serve (pid $serve_pid)"
says "vdisk: rm: vd_volume_remove: $held" rm a
says "vdisk: rm: vd_volume_remove: $held" rm -r a
says "vdisk: rollback: vd_volume_rollback: $held" rollback a@s
says "vdisk: flatten: vd_volume_flatten: $held" flatten a
head -c 4096 /dev/urandom >"$tmpdir/img"
says "vdisk: import: vd_volume_open: $held" import --existing a "$tmpdir/img"
# resize calls vd_volume_resize (it said vd_volume_open).
says "vdisk: resize: vd_volume_resize: $held" resize a 4M

# Snapshots of a held volume go through its holder, over the control
# socket: the holder's own message comes back (it came back empty).
vdisk snapshot a@t || fail "snapshot a@t of a held volume"
says "vdisk: snapshot: vd_snapshot_create: snapshot 'a@t' already exists (via pid $serve_pid)" \
	snapshot a@t
says "vdisk: snapshot: vd_snapshot_create: snapshot 'a@s' already exists (via pid $serve_pid)" \
	snapshot a@s

[ "$nfail" -eq 0 ] || fail "$nfail messages differ"
echo OK
