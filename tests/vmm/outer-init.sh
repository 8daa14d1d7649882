#!/bin/sh
# /init of the OUTER guest (QEMU TCG with emulated AMD SVM): loads KVM,
# measures it with kvm-probe, then runs the `vdisk run` scenario
# (/scenario.sh) on a store in tmpfs.  The host test reads the serial
# console: the last line it needs is "OUTER-RESULT pass" or
# "OUTER-RESULT fail STAGE".  The kernel command line's vdisk.probe-only
# stops after the probe (the harness proving itself without `vdisk run`).
export PATH=/bin:/usr/bin:/sbin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp && mount -t tmpfs -o size=1g tmpfs /tmp
echo "OUTER-INIT $(cut -d' ' -f1 /proc/uptime)"

result() {
	echo "OUTER-RESULT $*"
	sync
	poweroff -f
	sleep 60
}

for m in irqbypass kvm ccp kvm-amd; do
	insmod /lib/modules/$m.ko || result fail "insmod-$m"
done
[ -c /dev/kvm ] || result fail "no-dev-kvm"
/bin/kvm-probe 1000000
echo "OUTER-PROBE exit $?"
grep -qw vdisk.probe-only /proc/cmdline && result pass probe-only
if grep -qw vdisk.bench /proc/cmdline && [ -x /bench.sh ]; then
	/bench.sh		# bench/vmm/outer-bench.sh
	result pass bench
fi

RUN_TIMEOUT=$(sed -n 's/.*vdisk.run-timeout=\([0-9]*\).*/\1/p' /proc/cmdline)
export RUN_TIMEOUT=${RUN_TIMEOUT:-150}
/scenario.sh /bin/vdisk /inner /tmp/work 2>&1 | tee /tmp/scenario.log
grep -q '^SCENARIO-RESULT pass' /tmp/scenario.log && result pass
stage=$(sed -n "s/^SCENARIO-RESULT fail //p" /tmp/scenario.log)
result fail "${stage:-scenario-ended-without-result}"
