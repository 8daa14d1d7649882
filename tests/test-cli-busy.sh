#!/bin/bash
# A volume held open for writing by another process (vdisk serve with a
# connected NBD client): commands that need the head fail with exit 1 and
# name the holder; list/info show it; reads and snapshots still work.
source "$(dirname "$0")/functions.sh"
requires python3 /usr/bin/python3
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
new_store >/dev/null

json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }

if ! "$VDISK" serve --help >/dev/null 2>&1; then
	echo "SKIP: vdisk serve is not built yet, and nothing else can hold a" \
	     "volume open for writing from a test"
	exit 77
fi

head -c $((1024 * 1024)) /dev/urandom >"$tmpdir/img"
vdisk import vm "$tmpdir/img" || fail "import"
sock="$tmpdir/sock"
start_serve "$sock"

# A client that keeps vm open for writing until killed.
hold_open "$sock" vm 0 1
client=$holder_pid
for i in $(seq 1 100); do
	held=$(vdisk info --json vm | json 'print(d["holder"] is not None)')
	[ "$held" = True ] && break
	kill -0 "$client" 2>/dev/null || fail "NBD client died"
	sleep 0.1
done
[ "$held" = True ] || fail "vm never shown as held while a client has it open"
vdisk info --json vm | json '
assert d["holder"]["pid"] > 0 and "serve" in d["holder"]["name"], d
' || fail "holder fields"
vdisk list | grep -E '^vm ' | grep -q 'pid' || fail "list does not show the holder"

busy() {	# CMD...: exit 1, message names the holder
	local err rc
	err=$(timeout 30 "$VDISK" "$@" 2>&1 >/dev/null)
	rc=$?
	[ "$rc" -eq 1 ] || fail "'vdisk $*' on a held volume exited $rc: $err"
	grep -Eqi 'serve|pid|in use|busy|held' <<<"$err" ||
		fail "'vdisk $*': message does not say who holds it: $err"
}
busy rm vm
busy rm -r vm
busy import --existing vm "$tmpdir/img"
busy resize vm 2M
vdisk snapshot vm@s || fail "snapshot of a held volume"
busy rollback vm@s
# Reads work while it is held: the snapshot has the client's write.
vdisk export vm@s "$tmpdir/s.img" || fail "export of the snapshot"
head -c 512 "$tmpdir/s.img" | cmp - <(printf '\1%.0s' $(seq 512)) ||
	fail "snapshot of a held volume lacks the acknowledged write"
vdisk info vm >/dev/null || fail "info on a held volume"

kill "$client"; wait "$client" 2>/dev/null
for i in $(seq 1 50); do
	timeout 30 "$VDISK" rm -r vm 2>/dev/null && { echo OK; exit 0; }
	sleep 0.1
done
fail "vm still busy after the client left"
