#!/bin/bash
# A killed import leaves no half volume: vdisk import loads VOL under
# VOL.import-PID and renames it only once it is complete and durable.
# kill -9 at several points of a parallel import leaves the store clean
# (vdisk check), no volume VOL, and a leftover that the next import of VOL
# removes; SIGTERM removes the temporary volume itself.
source "$(dirname "$0")/functions.sh"
requires cmp dd grep
new_store >/dev/null
vdisk list >/dev/null || fail "store"  # made before two processes race to make it

# 128 MiB, unique per chunk (no dedup shortcut), half of it compressible.
img="$tmpdir/disk.img"
dd if=/dev/urandom of="$tmpdir/rnd" bs=1M count=64 status=none
{ cat "$tmpdir/rnd"; base64 -w0 <"$tmpdir/rnd" | head -c $((64 * 1024 * 1024)); } >"$img"

# Waits until the import PID shows its temporary volume (it has made it
# and holds it), then SECS more.  (PID must be vdisk itself: "$VDISK" &,
# not the vdisk function, which would run it in a subshell.)
wait_temp() { # PID SECS
	local i
	for ((i = 0; i < 2000; i++)); do
		vdisk list 2>/dev/null | grep "^vm\.import-$1 .*vdisk import" >/dev/null && break
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.005
	done
	sleep "$2"
}

killed=0
for secs in 0 0.05 0.15 0.3; do
	"$VDISK" import vm "$img" 2>>"$tmpdir/err" &
	pid=$!
	wait_temp $pid $secs
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	rc=$?
	vdisk check >/dev/null || fail "store not clean after kill -9 at +${secs}s (rc $rc)"
	if vdisk info vm >/dev/null 2>&1; then
		# It finished first, or was killed after the rename: whole.
		vdisk export vm - | cmp - "$img" || fail "vm differs (rc $rc)"
		vdisk list | grep "^vm\.import-$pid " >/dev/null && fail "vm and its temporary volume"
		vdisk rm vm || fail "rm vm"
		continue
	fi
	[ $rc -eq 137 ] || fail "import exited $rc, not killed, and made no vm"
	killed=$((killed + 1))
	vdisk list | grep "^vm\.import-$pid " >/dev/null || fail "no temporary volume left by pid $pid"
done
[ $killed -ge 1 ] || fail "no import was killed while it ran (all finished first)"

# Each import of vm removes the leftovers before it; the next one makes vm
# whole, and then every killed import's leftover has been removed, once.
vdisk import vm "$img" 2>>"$tmpdir/err" || { cat "$tmpdir/err" >&2; fail "import after kills"; }
[ "$(grep -c "left by an import that was killed" "$tmpdir/err")" -eq "$killed" ] ||
	fail "$killed killed, but removed: $(grep removed "$tmpdir/err")"
[ "$(vdisk list | grep -c '^vm')" -eq 1 ] || fail "more than vm left: $(vdisk list)"
vdisk export vm - | cmp - "$img" || fail "vm differs from the image"
vdisk check >/dev/null || fail "store not clean at the end"

# SIGTERM: the import cleans up after itself.
"$VDISK" import vm2 "$img" &
pid=$!
wait_temp $pid 0.05
kill -TERM $pid 2>/dev/null
wait $pid
rc=$?
if [ $rc -ne 0 ]; then
	[ $rc -eq 1 ] || fail "SIGTERM: exit $rc, not 1"
	vdisk list | grep "^vm2" >/dev/null && fail "SIGTERM left $(vdisk list | grep '^vm2')"
fi
vdisk check >/dev/null || fail "store not clean after SIGTERM"

# vdisk gc removes what killed imports and ephemeral runs left, and only
# that: a temporary name whose process lives, a held one, and names that
# merely look alike stay.
sleep 0.01 & gone=$!; wait $gone  # a PID that no longer exists
"$VDISK" import vm3 "$img" 2>>"$tmpdir/err" &
pid=$!
wait_temp $pid 0.05
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
vdisk snapshot vm@eph-$gone >/dev/null || fail "snapshot"
vdisk clone vm@eph-$gone vm-eph-$gone >/dev/null || fail "clone"
for keep in "base.import-$$" "base.import-x$gone" "base-eph-$gone" "import-$gone"; do
	vdisk create "$keep" 1M || fail "create $keep"
done
vdisk gc >/dev/null 2>"$tmpdir/gc.err" || fail "gc: $(cat "$tmpdir/gc.err")"
if vdisk list | grep "^vm3\.import-$pid " >/dev/null; then
	fail "gc left the killed import's vm3.import-$pid"
fi
vdisk list | grep "^vm-eph-$gone " >/dev/null && fail "gc left the ephemeral clone"
vdisk info vm@eph-$gone >/dev/null 2>&1 && fail "gc left the ephemeral clone's snapshot"
for keep in "base.import-$$" "base.import-x$gone" "base-eph-$gone" "import-$gone"; do
	vdisk info "$keep" >/dev/null || fail "gc removed $keep"
done
grep -q "removed 'vm-eph-$gone', left by an ephemeral run" "$tmpdir/gc.err" ||
	fail "gc did not say what it removed: $(cat "$tmpdir/gc.err")"
vdisk export vm - | cmp - "$img" || fail "vm differs after gc"
vdisk check >/dev/null || fail "store not clean after gc"
echo "ok ($killed of 4 imports killed while running)"
