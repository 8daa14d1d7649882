#!/bin/bash
# End to end: `vdisk run` boots Debian 12's stock kernel from a volume; the
# guest loads virtio_pci and virtio_blk, writes and reads patterns on
# /dev/vda (a second disk, a read-only snapshot, on /dev/vdb), syncs and
# powers off; the volume is snapshotted from another process while the
# guest runs and afterwards, and both snapshots are checked through vdisk
# export; then --ephemeral boots a throwaway clone, gone afterwards.  The
# scenario is tests/vmm/scenario.sh, the guests tests/vmm/*-init.sh.
#
# Where it runs: kvm-probe times guest code under the host's /dev/kvm.
# Fast: the direct path (vdisk run on this host).  Slow or missing (a
# software hypervisor such as kvm_pvm runs guest code thousands of times
# slower): the nested path, vdisk run inside a QEMU TCG guest with emulated
# AMD SVM, whose own /dev/kvm is fast enough.  VDISK_VMM_PATH=direct|nested
# chooses.  The kernel package is fetched with apt-get download and cached
# (tests/vmm/build-images.sh).
. "$(dirname "$0")/functions.sh"

requires busybox cpio dpkg-deb apt-get
if ! "$VDISK" run --help >/dev/null 2>&1; then
	echo "SKIP: $VDISK has no run command (vdisk run --help fails)"
	exit 77
fi
probe=$VDISK_TOP/$VDISK_BUILD/tests/vmm/kvm-probe
[ -x "$probe" ] || { echo "SKIP: $probe is not built (make unit)"; exit 77; }

images=$tmpdir/images
VDISK=$VDISK KVM_PROBE=$probe "$VDISK_TOP/tests/vmm/build-images.sh" "$images"
case $? in
0) ;;
77) exit 77 ;;
*) fail "stage build-images: tests/vmm/build-images.sh failed" ;;
esac

# The boot loader's unit test skips its real-bzImage part when no kernel
# is cached yet (on a fresh machine it runs before this test fetched one):
# run it again now that the kernel is here, and require that part.
VDISK_TEST_REQUIRE_KERNEL=1 "$VDISK_TOP/$VDISK_BUILD/tests/test-vmm-boot" ||
	fail "stage loader: test-vmm-boot against the cached Debian bzImage"

path=${VDISK_VMM_PATH:-}
if [ -z "$path" ]; then
	"$probe"
	case $? in
	0) path=direct ;;
	3) path=nested; echo "vmm-boot: the host's /dev/kvm is slow" ;;
	*) path=nested; echo "vmm-boot: the host's /dev/kvm is unusable" ;;
	esac
fi
echo "vmm-boot: running the $path path"

# Fails naming the stage, with the last console lines.
failed() {
	local log=$1 what=$2
	echo "---- last 30 console lines ($log)"
	tail -n 30 "$log" | tr -d '\r'
	echo "----"
	fail "stage $what"
}

start=$(date +%s)
case $path in
direct)
	log=$tmpdir/scenario.log
	RUN_TIMEOUT=60 timeout 300 sh "$VDISK_TOP/tests/vmm/scenario.sh" "$VDISK" \
		"$images/inner" "$tmpdir/work" >"$log" 2>&1
	rc=$?
	grep '^SCENARIO-' "$log"
	if ! grep -q '^SCENARIO-RESULT pass' "$log" || [ $rc -ne 0 ]; then
		stage=$(sed -n 's/^SCENARIO-RESULT fail //p' "$log")
		if [ -n "$stage" ]; then
			# The scenario printed the console lines of its run.
			sed -n '/^SCENARIO-FAIL/,$p' "$log"
			fail "stage $stage"
		fi
		run_log=$(ls -t "$tmpdir"/work/run*.log 2>/dev/null | head -n 1)
		failed "${run_log:-$log}" "$(sed -n 's/^SCENARIO-STAGE //p' "$log" |
			tail -n 1) (the scenario timed out)"
	fi
	;;
nested)
	requires qemu-system-x86_64
	log=$tmpdir/console.log
	timeout -s KILL 360 qemu-system-x86_64 -accel tcg -cpu qemu64,+svm,+npt \
		-m 2048 -smp 1 -nographic -no-reboot -monitor none \
		-kernel "$images/vmlinuz" -initrd "$images/outer.cpio" \
		-append "console=ttyS0 panic=-1 reboot=k quiet vdisk.run-timeout=140" \
		>"$log" 2>&1 </dev/null
	rc=$?
	tr -d '\r' <"$log" | grep -E '^(OUTER|SCENARIO)-|^kvm-probe'
	result=$(tr -d '\r' <"$log" | sed -n 's/^OUTER-RESULT //p' | tail -n 1)
	case $result in
	pass) ;;
	fail*) failed "$log" "${result#fail }" ;;
	*) failed "$log" "outer guest ended (qemu exit $rc) without a result, after $(tr -d '\r' <"$log" | sed -n 's/^SCENARIO-STAGE //p' | tail -n 1 | grep . || echo boot)" ;;
	esac
	;;
*) fail "VDISK_VMM_PATH must be direct or nested, not '$path'" ;;
esac
echo "vmm-boot: the $path path passed in $(( $(date +%s) - start )) s"
