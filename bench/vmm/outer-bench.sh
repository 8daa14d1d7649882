#!/bin/sh
# Run by the outer guest's /init (tests/vmm/outer-init.sh) when its command
# line says vdisk.bench: the same inner guest booted by `vdisk run` and by
# QEMU (-accel kvm) on the same volume served by `vdisk serve` over NBD,
# both on the outer guest's /dev/kvm.  Prints "BENCH VMM METRIC VALUE".
set -u
inner=/inner
append="console=ttyS0 panic=-1 reboot=k quiet vdisk.bench"
VDISK_STORE=/tmp/bench-store
export VDISK_STORE
up() { cut -d' ' -f1 /proc/uptime; }
since() { echo "$(up) $1" | awk '{ printf "%.2f", $1 - $2 }'; }

# one VMM LOG: waits for the inner guest's markers in LOG, prints results
report() {
	vmm=$1 log=$2 start=$3 pid=$4 init='' prompt='' n=0
	while kill -0 "$pid" 2>/dev/null && [ $n -lt 1500 ]; do
		c=$(tr -d '\r' <"$log")
		[ -z "$init" ] && echo "$c" | grep -q 'INNER-INIT' && init=$(since "$start")
		[ -z "$prompt" ] && echo "$c" | grep -q 'INNER-PROMPT' && prompt=$(since "$start")
		echo "$c" | grep -q '^INNER-BENCH-DONE' && break
		n=$((n + 1))
		sleep 0.2
	done
	echo "BENCH $vmm to-init-s ${init:-none}"
	echo "BENCH $vmm to-prompt-s ${prompt:-none}"
	tr -d '\r' <"$log" | awk -v vmm="$vmm" '
		$1 == "INNER-BENCH" && $3 > 0 { printf "BENCH %s %s-MBps %.1f\n", vmm, $2, $4 / $3 / 1048576 }
		$1 == "INNER-BENCH-FAIL" { print "BENCH " vmm " " $2 " failed" }'
	wait "$pid"
}

rm -rf "$VDISK_STORE"
vdisk create bench 256M >/dev/null
if vdisk run --help >/dev/null 2>&1; then
	start=$(up)
	timeout 300 vdisk run bench --kernel $inner/vmlinuz --initrd $inner/initrd \
		--append "$append" --memory 256M >/tmp/bench-vdisk.log 2>&1 </dev/null &
	report vdisk-run /tmp/bench-vdisk.log "$start" $!
else
	echo "BENCH vdisk-run skipped (no run command)"
fi

vdisk rm bench >/dev/null && vdisk create bench 256M >/dev/null
vdisk serve --socket /tmp/bench.sock --pidfile /tmp/bench.pid >/dev/null 2>&1 &
serve=$!
while [ ! -s /tmp/bench.pid ]; do sleep 0.1; done
start=$(up)
timeout 300 qemu-system-x86_64 -L /usr/share/seabios -L /usr/share/qemu \
	-accel kvm -cpu host -m 256 -nographic -no-reboot -monitor none -nic none \
	-kernel $inner/vmlinuz -initrd $inner/initrd -append "$append" \
	-drive file=nbd:unix:/tmp/bench.sock:exportname=bench,format=raw,if=virtio,cache=none \
	>/tmp/bench-qemu.log 2>&1 </dev/null &
report qemu-nbd /tmp/bench-qemu.log "$start" $!
kill $serve
wait $serve
