#!/bin/sh
# The end-to-end scenario of `vdisk run`, in POSIX sh so that it runs both
# in the outer guest's busybox (tests/vmm/outer-init.sh) and on the host
# (tests/test-vmm-boot.sh, direct path when the host's KVM is fast).
#
#   scenario.sh VDISK INNER_DIR WORK_DIR
#
# INNER_DIR holds vmlinuz, initrd (and optionally vmlinuz-cloud and
# initrd-cloud, Debian's cloud flavour, for the last boot) and the patterns the inner guest writes
# (pattern-a, pattern-b) and the read-only disk's contents (pattern-c).
# Prints "SCENARIO-STAGE NAME" as it goes and ends with
# "SCENARIO-RESULT pass" or "SCENARIO-RESULT fail STAGE" (then the last
# console lines of the run that failed); exits 0 only on pass.
# RUN_TIMEOUT (seconds, default 150) bounds each `vdisk run`.
set -u
vdisk_bin=$1 inner=$2 work=$3
run_timeout=${RUN_TIMEOUT:-150}
# quiet: every byte on the emulated UART is an exit, costly when nested.
append=${INNER_APPEND:-console=ttyS0 panic=-1 reboot=k quiet}
VDISK_STORE=$work/store
export VDISK_STORE
mkdir -p "$work"
log=

stage() { echo "SCENARIO-STAGE $1"; stage=$1; }
fail() {
	echo "SCENARIO-FAIL $stage: $*"
	if [ -n "$log" ] && [ -f "$log" ]; then
		echo "---- last 30 lines of $log"
		tail -n 30 "$log" | tr -d '\r'
		echo "----"
	fi
	echo "SCENARIO-RESULT fail $stage"
	exit 1
}
vdisk() { "$vdisk_bin" "$@"; }
digest() { sha256sum | cut -d' ' -f1; }
# digest of COUNT 64 KiB blocks of FILE from block SKIP
region() { dd if="$1" bs=64k skip="$2" count="$3" 2>/dev/null | digest; }
# the value after MARKER in the console log (carriage returns dropped)
marker() { tr -d '\r' <"$log" | sed -n "s/.*$1 \([^ ]*\).*/\1/p" | head -n 1; }
# wait until MARKER appears in $log or PID exits; 0 if it appeared
wait_marker() {
	w=0
	while ! tr -d '\r' <"$log" | grep -q "$1"; do
		kill -0 "$2" 2>/dev/null || return 1
		w=$((w + 1))
		[ $w -gt $((run_timeout * 5)) ] && return 1
		sleep 0.2
	done
}

sha_a=$(digest <"$inner/pattern-a")
sha_b=$(digest <"$inner/pattern-b")
sha_c=$(digest <"$inner/pattern-c")

stage create
vdisk create vm 64M || fail "vdisk create vm 64M"
vdisk import ro "$inner/pattern-c" || fail "vdisk import ro"
vdisk snapshot ro@gold || fail "vdisk snapshot ro@gold"

# Boot the inner guest on vm with ro@gold as a second (read-only) disk;
# snapshot vm from this process while the guest runs, once the guest says
# it has written and flushed pattern A.
stage boot
log=$work/run1.log
: >"$log"
start=$(date +%s)
timeout -s TERM "$run_timeout" "$vdisk_bin" run vm --kernel "$inner/vmlinuz" \
	--initrd "$inner/initrd" --append "$append vdisk.pause=5" --memory 256M \
	--disk ro@gold >"$log" 2>&1 </dev/null &
pid=$!
wait_marker INNER-INIT $pid || fail "the inner guest did not reach /init"
echo "SCENARIO-INFO inner /init after $(( $(date +%s) - start )) s"
stage inner-write
wait_marker INNER-WROTE-A $pid || fail "no INNER-WROTE-A from the inner guest"
stage snapshot-live
vdisk snapshot vm@mid || fail "vdisk snapshot vm@mid while the guest runs"
# vdisk list names the holder of the running guest's volume.
vdisk list >"$work/list-live" 2>&1 || fail "vdisk list while the guest runs"
awk '$1 == "vm" && NF > 4 { found = 1 } END { exit !found }' "$work/list-live" ||
	fail "vdisk list shows no holder for vm: $(grep '^vm ' "$work/list-live")"
stage inner-run
wait $pid
rc=$?
echo "SCENARIO-INFO vdisk run exited $rc after $(( $(date +%s) - start )) s"
tr -d '\r' <"$log" | grep -q 'INNER-OK' ||
	fail "no INNER-OK: $(tr -d '\r' <"$log" | grep -m1 INNER-FAIL)"
[ "$rc" -eq 0 ] || fail "vdisk run exited $rc after the guest powered off"

stage read-only-disk
got=$(marker INNER-VDB)
[ -n "$got" ] || fail "the inner guest saw no /dev/vdb (--disk ro@gold)"
[ "$got" = "$sha_c" ] || fail "the guest read $got from ro@gold, expected $sha_c"
tr -d '\r' <"$log" | grep -q 'INNER-VDB-RO ok' || fail "no INNER-VDB-RO"
[ "$(vdisk export ro@gold - | digest)" = "$sha_c" ] || fail "ro@gold changed"

stage check-after
vdisk snapshot vm@after || fail "vdisk snapshot vm@after"
vdisk export vm@after "$work/after.img" || fail "vdisk export vm@after"
[ "$(region "$work/after.img" 0 16)" = "$sha_a" ] || fail "pattern A not at 0"
[ "$(region "$work/after.img" 128 16)" = "$sha_b" ] || fail "pattern B not at 8M"
[ "$(region "$work/after.img" 16 112)" = "$(region /dev/zero 0 112)" ] ||
	fail "bytes between the patterns are not zero"

# vm@mid was taken after the guest flushed A and before or while it wrote
# B: A is whole, and every 4 KiB block of the B region is either zero or
# B's block (a consistent point, nothing torn or foreign).
stage check-live-snapshot
vdisk export vm@mid "$work/mid.img" || fail "vdisk export vm@mid"
[ "$(region "$work/mid.img" 0 16)" = "$sha_a" ] ||
	fail "vm@mid misses pattern A, which the guest had flushed"
dd if="$work/mid.img" of="$work/mid-b" bs=64k skip=128 count=16 2>/dev/null
dd if=/dev/zero of="$work/zero4k" bs=4k count=1 2>/dev/null
i=0 zeros=0
while [ $i -lt 256 ]; do
	dd if="$work/mid-b" of="$work/blk" bs=4k skip=$i count=1 2>/dev/null
	if cmp -s "$work/blk" "$work/zero4k"; then
		zeros=$((zeros + 1))
	else
		dd if="$inner/pattern-b" of="$work/want" bs=4k skip=$i count=1 2>/dev/null
		cmp -s "$work/blk" "$work/want" || fail "vm@mid block $i of B is torn"
	fi
	i=$((i + 1))
done
echo "SCENARIO-INFO vm@mid holds $((256 - zeros)) of B's 256 blocks"

# kill -9 of the runner once the guest has flushed: the flushed write
# survives.
stage kill9-flushed
vdisk list >"$work/list-before" 2>&1 || fail "vdisk list"
sed -i '/^$/,$d' "$work/list-before"	# the table; the summary counts bytes
vdisk create k9 16M || fail "vdisk create k9"
log=$work/run-k9.log
: >"$log"
"$vdisk_bin" run k9 --kernel "$inner/vmlinuz" --initrd "$inner/initrd" \
	--append "$append vdisk.pause=60" --memory 256M >"$log" 2>&1 </dev/null &
pid=$!
wait_marker INNER-WROTE-A $pid
ok=$?
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
[ $ok -eq 0 ] || fail "no INNER-WROTE-A from the guest on k9"
[ "$(vdisk export k9 - | head -c 1048576 | digest)" = "$sha_a" ] ||
	fail "pattern A, flushed by the guest, is not on k9 after kill -9 of vdisk run"
vdisk rm k9 || fail "vdisk rm k9 after kill -9 of its runner"

# --ephemeral: boot a throwaway clone of vm@after, kill -9 the runner; the
# next --ephemeral run removes the leftover and its own clone; afterwards
# vdisk list is as before and vm@after as it was.
stage ephemeral-kill9
log=$work/run-eph-k9.log
: >"$log"
"$vdisk_bin" run vm@after --ephemeral --kernel "$inner/vmlinuz" \
	--initrd "$inner/initrd" --append "$append vdisk.pause=60" \
	--memory 256M >"$log" 2>&1 </dev/null &
pid=$!
wait_marker INNER-WROTE-A $pid
ok=$?
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
[ $ok -eq 0 ] || fail "no INNER-WROTE-A from the guest on the ephemeral clone"
stage ephemeral
log=$work/run2.log
: >"$log"
# This boot uses Debian's cloud kernel flavour when build-images.sh got it.
kernel=$inner/vmlinuz initrd=$inner/initrd
if [ -f "$inner/vmlinuz-cloud" ]; then
	kernel=$inner/vmlinuz-cloud initrd=$inner/initrd-cloud
fi
echo "SCENARIO-INFO booting $(basename "$kernel")"
# It ends with a reboot through the PCI reset register (reboot=pci writes
# 0x06 to port 0xCF9), which must stop the VMM like a poweroff.
timeout -s TERM "$run_timeout" "$vdisk_bin" run vm@after --ephemeral \
	--kernel "$kernel" --initrd "$initrd" \
	--append "$append reboot=pci vdisk.reboot" \
	--memory 256M >"$log" 2>&1 </dev/null
rc=$?
tr -d '\r' <"$log" | grep -q 'INNER-OK' ||
	fail "no INNER-OK: $(tr -d '\r' <"$log" | grep -m1 INNER-FAIL)"
[ "$rc" -eq 0 ] || fail "vdisk run --ephemeral exited $rc"
grep -q 'guest rebooted (port 0xCF9)' "$log" || fail "reboot=pci did not stop the VMM"
vdisk list >"$work/list-after" 2>&1 || fail "vdisk list"
sed -i '/^$/,$d' "$work/list-after"
cmp -s "$work/list-before" "$work/list-after" ||
	fail "vdisk list differs after --ephemeral runs: $(diff "$work/list-before" "$work/list-after" | tail -n 3)"
[ "$(vdisk export vm@after - | head -c 1048576 | digest)" = "$sha_a" ] ||
	fail "vm@after changed under --ephemeral"
vdisk check >/dev/null || fail "vdisk check"

log=
stage "done"
echo "SCENARIO-RESULT pass"
