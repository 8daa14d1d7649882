#!/bin/bash
# vdisk run next to QEMU, nested: both boot the same Debian 12 inner guest
# (tests/vmm/build-images.sh) on a vdisk volume, vdisk run directly, QEMU
# (-accel kvm) through `vdisk serve` over NBD, inside one QEMU TCG guest
# with emulated AMD SVM.  Reports time to the inner /init and to where a
# shell prompt would start, and busybox dd throughput on /dev/vda
# (sequential 1 MiB and 4 KiB O_DIRECT).  Figures are nested figures:
# compare the two columns with each other, never with bare-metal claims.
#
#   bench/vmm/run.sh            (from the top of the tree, after make)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${VDISK_BUILD:-build}
make --no-print-directory -s vdisk "$build/tests/vmm/kvm-probe" >/dev/null
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-bench-vmm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

VMM_BENCH=1 VDISK=$PWD/$build/vdisk KVM_PROBE=$build/tests/vmm/kvm-probe \
	tests/vmm/build-images.sh "$tmp/images"
start=$(date +%s)
timeout -s KILL 900 qemu-system-x86_64 -accel tcg -cpu qemu64,+svm,+npt \
	-m 2048 -smp 1 -nographic -no-reboot -monitor none \
	-kernel "$tmp/images/vmlinuz" -initrd "$tmp/images/outer.cpio" \
	-append "console=ttyS0 panic=-1 reboot=k quiet vdisk.bench" \
	>"$tmp/console.log" 2>&1 </dev/null || :
echo "# vdisk $(git rev-parse --short HEAD) $(date -u +%Y-%m-%dT%H:%MZ), nested (QEMU TCG + SVM, $(nproc) cores), $(( $(date +%s) - start )) s"
tr -d '\r' <"$tmp/console.log" | grep -E '^(BENCH|kvm-probe|OUTER-RESULT)' ||
	{ tail -n 30 "$tmp/console.log"; exit 1; }
