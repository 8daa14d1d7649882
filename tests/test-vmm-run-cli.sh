#!/bin/bash
# vdisk run's command line and the failures it must report before or
# without booting: usage errors (exit 2), missing and hostile kernels, a
# busy volume (exit 1, named), and --ephemeral leaving nothing behind after
# SIGTERM (the guest never gets far on a slow /dev/kvm: SIGTERM ends it).
. "$(dirname "$0")/functions.sh"

new_store >/dev/null
vdisk create vm 64M >/dev/null || fail "create"

out=$(vdisk run vm 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q -- "no --kernel and no ext2/3/4 filesystem with /vmlinuz or /boot/vmlinuz-\* on vm" <<<"$out" ||
	fail "no --kernel on an empty disk: exit $rc: $out"
expect_exit 2 vdisk run vm --kernel /x --memory 32M 2>/dev/null
expect_exit 2 vdisk run vm --kernel /x --memory 4G 2>/dev/null
expect_exit 2 vdisk run vm --kernel /x --cpus 0 2>/dev/null
expect_exit 2 vdisk run vm --kernel /x --cpus 2x 2>/dev/null
expect_exit 2 vdisk run vm --kernel /x --ephemeral --read-only 2>/dev/null
expect_exit 2 vdisk run 'v m' --kernel /x 2>/dev/null

if [ ! -e /dev/kvm ]; then
	out=$(vdisk run vm --kernel /bin/sh 2>&1); rc=$?
	[ $rc -eq 1 ] && grep -q "needs KVM (/dev/kvm is missing)" <<<"$out" ||
		fail "without /dev/kvm: exit $rc: $out"
	echo "SKIP: no /dev/kvm: only the usage checks ran"
	exit 77
fi

out=$(vdisk run vm --kernel "$tmpdir/none" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "kernel '$tmpdir/none': No such file" <<<"$out" ||
	fail "missing kernel: exit $rc: $out"
head -c 8192 /dev/urandom >"$tmpdir/junk"
out=$(vdisk run vm --kernel "$tmpdir/junk" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "not a bzImage" <<<"$out" ||
	fail "junk kernel: exit $rc: $out"
head -c 600 /dev/zero >"$tmpdir/short"
out=$(vdisk run vm --kernel "$tmpdir/short" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "too short" <<<"$out" || fail "short kernel: exit $rc: $out"

# A volume held by another writer: busy, named.
kernel=
for k in "${VDISK_TEST_CACHE:-/var/tmp/vdisk-test-cache}"/kernel-*/vmlinuz; do
	[ -f "$k" ] && kernel=$k
done
if [ -z "$kernel" ]; then
	echo "SKIP: no cached bzImage (tests/vmm/build-images.sh): the busy and --ephemeral checks need one"
	exit 77
fi
"$VDISK" run vm --kernel "$kernel" </dev/null >/dev/null 2>"$tmpdir/first.err" &
pid=$!
for _ in $(seq 100); do
	vdisk list 2>/dev/null | grep -q "vdisk run (pid $pid)" && break
	sleep 0.1
done
vdisk list | grep -q "vdisk run (pid $pid)" || fail "vdisk list does not name the runner"
out=$(vdisk run vm --kernel "$kernel" 2>&1 </dev/null); rc=$?
[ $rc -eq 1 ] && grep -q "in use by vdisk run (pid $pid)" <<<"$out" || fail "busy volume: exit $rc: $out"
vdisk snapshot vm@live >/dev/null || fail "snapshot of the running guest's volume"
kill -TERM $pid
wait $pid; rc=$?
[ $rc -eq 1 ] && grep -q "stopped by" "$tmpdir/first.err" ||
	fail "SIGTERM: exit $rc: $(cat "$tmpdir/first.err")"

# --ephemeral: nothing left after SIGTERM; a kill -9 leftover goes with the
# next run.
before=$(vdisk list | sed '/^$/,$d')
"$VDISK" run vm --ephemeral --kernel "$kernel" </dev/null >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do
	vdisk list 2>/dev/null | grep -q "vm-eph-$pid" && break
	sleep 0.1
done
vdisk list | grep -q "vm-eph-$pid" || fail "no ephemeral clone vm-eph-$pid"
kill -9 $pid
wait $pid 2>/dev/null
"$VDISK" run vm --ephemeral --kernel "$kernel" </dev/null >/dev/null 2>&1 &
pid2=$!
for _ in $(seq 100); do
	vdisk list 2>/dev/null | grep -q "vm-eph-$pid2" && break
	sleep 0.1
done
kill -TERM $pid2
wait $pid2
after=$(vdisk list | sed '/^$/,$d')
[ "$before" = "$after" ] || fail "--ephemeral left: $(diff <(echo "$before") <(echo "$after"))"
echo "ok"
