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
