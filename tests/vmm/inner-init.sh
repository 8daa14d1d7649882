#!/bin/sh
# /init of the INNER guest, booted by `vdisk run` inside the outer guest (or
# on the host when its KVM is fast).  Its only channel back is the serial
# console: every line it prints starting with INNER- is read by the outer
# /init (tests/vmm/outer-init.sh).
#
# /dev/vda: writes pattern A at offset 0, flushes, says INNER-WROTE-A (the
#           outer guest snapshots the volume then, from another process),
#           then writes pattern B at 8 MiB, flushes and reads both back.
# /dev/vdb: when present, must be read-only; its first MiB's digest is
#           printed and a write to it must fail.
# Ends with INNER-OK or INNER-FAIL STAGE, then powers off (or reboots, with
# vdisk.reboot on the command line).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "INNER-INIT $(cut -d' ' -f1 /proc/uptime)"

fail() {
	echo "INNER-FAIL $1"
	sync
	poweroff -f
	sleep 60
}

for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev \
	 virtio_pci virtio_blk; do
	insmod /lib/modules/$m.ko || fail "insmod-$m"
done
i=0
while [ ! -b /dev/vda ]; do
	i=$((i + 1))
	[ $i -gt 300 ] && fail "no-dev-vda"
	sleep 0.2
done
echo "INNER-VDA $(cat /sys/block/vda/size) sectors"
if grep -qw vdisk.bench /proc/cmdline && [ -x /bench ]; then
	/bench			# bench/vmm/inner-bench.sh
	sync
	poweroff -f
fi

sha() { dd if="$1" bs=64k skip="$2" count=16 2>/dev/null | sha256sum | cut -d' ' -f1; }

dd if=/pattern-a of=/dev/vda bs=64k conv=fsync 2>/dev/null || fail "write-a"
sync
echo "INNER-WROTE-A $(sha256sum </pattern-a | cut -d' ' -f1)"
# vdisk.pause=N on the command line: wait, so that the snapshot taken now
# usually lands before B (the check accepts any consistent point).
pause=$(sed -n 's/.*vdisk\.pause=\([0-9]*\).*/\1/p' /proc/cmdline)
[ -n "$pause" ] && sleep "$pause"
dd if=/pattern-b of=/dev/vda bs=64k seek=128 conv=fsync 2>/dev/null || fail "write-b"
sync
blockdev --flushbufs /dev/vda
echo 3 >/proc/sys/vm/drop_caches
a=$(sha /dev/vda 0) b=$(sha /dev/vda 128)
[ "$a" = "$(sha256sum </pattern-a | cut -d' ' -f1)" ] || fail "read-a"
[ "$b" = "$(sha256sum </pattern-b | cut -d' ' -f1)" ] || fail "read-b"
echo "INNER-READ $a $b"

if [ -b /dev/vdb ]; then
	[ "$(cat /sys/block/vdb/ro)" = 1 ] || fail "vdb-not-read-only"
	echo "INNER-VDB $(sha /dev/vdb 0)"
	# A write must fail: refused by the kernel (read-only bit) or by the
	# device model (an I/O error), never accepted.
	dd if=/pattern-b of=/dev/vdb bs=4k count=1 conv=fsync 2>/dev/null &&
		fail "vdb-write-accepted"
	echo "INNER-VDB-RO ok"
fi
echo "INNER-OK $a $b"
sync
# vdisk.reboot on the command line: end with a reboot instead (the kernel's
# reboot= option picks the method).
grep -qw vdisk.reboot /proc/cmdline && reboot -f
poweroff -f
