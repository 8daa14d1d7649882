# Shared by bench/snapshot/*.sh (sourced after dirs.sh, with $vdisk,
# $tmp, $size and $runtime set): one `vdisk serve` of a filled volume and
# the random writes both scripts run against it.
export VDISK_STORE=$tmp/store
sock=$tmp/sock
uri="nbd+unix:///vol?socket=$sock"
server_pid=
stop() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=; }
trap 'stop; rm -rf "$tmp"' EXIT
hwm() { awk '/^VmHWM:/{print $2}' "/proc/$server_pid/status"; }

# A new store with volume "vol" of $size, served and written once over.
serve_filled() {
	stop
	rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
	"$vdisk" create vol "$size" >/dev/null || exit 1
	"$vdisk" serve --socket "$sock" vol 2>>"$tmp/serve.log" &
	server_pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
	fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 \
		--size="$size" >/dev/null || exit 1
}

# Random 4 KiB writes at QD 32 for $runtime s; prints their IOPS.
random_writes() {
	fio --name=randw --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=32 \
		--size="$size" --time_based --runtime="$runtime" --randrepeat=0 \
		--output-format=json --output="$tmp/randw.json" >/dev/null || exit 1
	/usr/bin/python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["jobs"][0]["write"]["iops"])' "$tmp/randw.json"
}
