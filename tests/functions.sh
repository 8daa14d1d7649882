# Sourced by every tests/test-*.sh.  Provides:
#   requires PROG...     skip the test (exit 77) unless each PROG runs
#   cleanup_fn CMD...    run CMD at exit (last registered runs first)
#   new_store            make a fresh store dir, export VDISK_STORE, echo it
#   fail MSG             print MSG and exit 1
#   expect_exit N CMD... run CMD, fail unless it exits N
#   start_serve SOCK ... start `vdisk serve` on unix socket SOCK in the
#                        background, wait until it accepts; stopped at exit;
#                        its pid is left in $serve_pid
set -u
set -o pipefail

: "${VDISK:?run tests through tests/run-tests.sh or make check}"
tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-test.XXXXXX")
_cleanups=()

_run_cleanups() {
	local i
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
		eval "${_cleanups[$i]}" || :
	done
	rm -rf "$tmpdir"
}
trap _run_cleanups EXIT

cleanup_fn() { _cleanups+=("$*"); }

requires() {
	local p
	for p in "$@"; do
		if ! command -v "$p" >/dev/null 2>&1; then
			echo "SKIP: $p is not installed"
			exit 77
		fi
	done
}

fail() { echo "FAIL: $*" >&2; exit 1; }

new_store() {
	VDISK_STORE=$(mktemp -d "$tmpdir/store.XXXXXX")
	export VDISK_STORE
	echo "$VDISK_STORE"
}

expect_exit() {
	local want=$1 got
	shift
	"$@"
	got=$?
	[ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want"
}

vdisk() { "$VDISK" "$@"; }

start_serve() {
	local sock=$1 pidfile="$tmpdir/serve.$$.$RANDOM.pid" i
	shift
	"$VDISK" serve --socket "$sock" "$@" 2>>"$tmpdir/serve.log" &
	local pid=$!
	serve_pid=$pid
	cleanup_fn "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
	for i in $(seq 1 100); do
		[ -S "$sock" ] && return 0
		kill -0 "$pid" 2>/dev/null || fail "vdisk serve died: $(cat "$tmpdir/serve.log")"
		sleep 0.1
	done
	fail "vdisk serve did not start"
}

# expect_compact_idle: waits (20 s at most) for the compactor to go idle,
# which it does only within its bound, pack bytes <= 1.25 x live + 8 MiB,
# and fails if it does not.  Sets space_disk, space_live, space_files
# (compacted so far) and space_ratio.
expect_compact_idle() {
	local i space_ok=0
	for i in $(seq 1 100); do
		read -r space_ok space_disk space_live space_files space_ratio <<<"$(
			vdisk list --json | python3 -c '
import json, sys
s = json.load(sys.stdin)["store"]
live, disk = s["stored_bytes"], s["pack_bytes"]
print("%d %d %d %d %.3f" % (disk <= 1.25 * live + (8 << 20), disk, live,
      s["compacted_files"], disk / max(live, 1)))')"
		[ "$space_ok" = 1 ] && break
		sleep 0.2
	done
	echo "idle: pack bytes $space_disk, live $space_live, ratio $space_ratio, $space_files files compacted"
	[ "$space_ok" = 1 ] || fail "pack bytes $space_disk > 1.25 x live $space_live + 8 MiB"
}

# hold_open SOCK VOL OFFSET BYTE: an NBD client that writes 512 bytes of
# BYTE (a number, 0-255) at OFFSET of VOL, flushes and
# keeps the volume open for writing until the test ends; its pid in
# $holder_pid.  Needs python3-libnbd.
hold_open() {
	/usr/bin/python3 -c '
import nbd, sys, time
h = nbd.NBD()
h.connect_uri("nbd+unix:///" + sys.argv[2] + "?socket=" + sys.argv[1])
h.pwrite(bytes([int(sys.argv[4])]) * 512, int(sys.argv[3]))
h.flush()
time.sleep(60)
' "$1" "$2" "$3" "$4" &
	holder_pid=$!
	cleanup_fn "kill $holder_pid 2>/dev/null; wait $holder_pid 2>/dev/null"
}

# block_diff OLD NEW BLOCKS DATA: writes to BLOCKS the comma-separated
# numbers of the 4 KiB blocks where image NEW differs from OLD, and their
# new contents, in order, to DATA; fails if none differ.
block_diff() {
	/usr/bin/python3 - "$@" <<'P'
import sys
a, b = open(sys.argv[1], 'rb'), open(sys.argv[2], 'rb')
out, nums, n = open(sys.argv[4], 'wb'), [], 0
while True:
    x, y = a.read(4096), b.read(4096)
    if not x:
        break
    if x != y:
        nums.append(n)
        out.write(y)
    n += 1
open(sys.argv[3], 'w').write(','.join(map(str, nums)))
assert nums, "the images do not differ"
P
}
