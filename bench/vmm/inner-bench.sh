#!/bin/sh
# Run by the inner guest's /init (tests/vmm/inner-init.sh) instead of the
# test when the command line says vdisk.bench: I/O on /dev/vda with busybox
# dd, timed by the guest's clock.  Prints "INNER-BENCH NAME SECONDS BYTES"
# lines, then INNER-BENCH-DONE.
up() { cut -d' ' -f1 /proc/uptime; }
echo "INNER-PROMPT $(up)"	# where a login shell would start
# Incompressible data: vdisk compresses and skips zero blocks.
head -c 33554432 /dev/urandom >/src
timed() {
	name=$1 bytes=$2
	shift 2
	s=$(up)
	"$@" 2>/dev/null || echo "INNER-BENCH-FAIL $name"
	echo "INNER-BENCH $name $(echo "$(up) $s" | awk '{ print $1 - $2 }') $bytes"
}
timed seq-write-1M 33554432 dd if=/src of=/dev/vda bs=1M oflag=direct conv=fsync
echo 3 >/proc/sys/vm/drop_caches
timed seq-read-1M 33554432 dd if=/dev/vda of=/dev/null bs=1M count=32 iflag=direct
timed write-4k-direct 8388608 dd if=/src of=/dev/vda bs=4k count=2048 seek=16384 oflag=direct conv=fsync
timed read-4k-direct 8388608 dd if=/dev/vda of=/dev/null bs=4k count=2048 iflag=direct
echo "INNER-BENCH-DONE"
