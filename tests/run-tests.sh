#!/bin/bash
# Runs the unit test programs and every tests/test-*.sh (or those named as
# arguments).  Exit code 77 means skipped.  Ends with "N passed, N failed,
# N skipped" and exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
top=$PWD
build=${VDISK_BUILD:-build}
export VDISK="$top/$build/vdisk" VDISK_TOP="$top" VDISK_BUILD="$build"
# The power-cut shim test-crash preloads (built by make unit).
export VDISK_POWERCUT="$top/$build/tests/powercut.so"
# Hostile allocator settings: catch use of uninitialised or freed memory.
export MALLOC_PERTURB_=165 MALLOC_CHECK_=3
# Tests leave the tree as they found it: no bytecode caches, and each test
# runs in its own scratch directory (fio, for one, writes state files into
# the current directory).
export PYTHONDONTWRITEBYTECODE=1

# Seconds a test may take (the slowest, the nested VM boot, takes about a
# minute here, and a few minutes under a sanitizer).
limit=${VDISK_TEST_TIMEOUT:-900}

logdir="$top/$build/test-logs"
mkdir -p "$logdir"

if [ $# -gt 0 ]; then
	tests=("$@")
else
	tests=()
	for t in "$build"/tests/test-*; do [ -x "$t" ] && tests+=("$t"); done
	for t in tests/test-*.sh; do [ -e "$t" ] && tests+=("$t"); done
fi

pass=0 fail=0 skip=0 failed=()
for t in "${tests[@]}"; do
	name=$(basename "$t")
	log="$logdir/$name.log"
	start=$(date +%s)
	scratch=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-run.XXXXXX")
	case $t in /*) path=$t ;; *) path=$top/$t ;; esac
	# A hang (a lost wake-up, a server that never answers) fails the test
	# instead of holding CI to its own limit.
	(cd "$scratch" && timeout -k 10 "$limit" "$path") >"$log" 2>&1 </dev/null
	rc=$?
	[ "$rc" -eq 124 ] && echo "run-tests.sh: timed out after $limit s" >>"$log"
	rm -rf "$scratch"
	secs=$(( $(date +%s) - start ))
	case $rc in
	0) pass=$((pass + 1)); printf 'PASS: %s (%ss)\n' "$name" "$secs" ;;
	77) skip=$((skip + 1))
	    printf 'SKIP: %s: %s\n' "$name" "$(grep -m1 -i 'skip' "$log" || echo 'requirement missing')" ;;
	*) fail=$((fail + 1)); failed+=("$name")
	   printf 'FAIL: %s (exit %d, %ss); last lines of %s:\n' "$name" "$rc" "$secs" "$log"
	   tail -n 25 "$log" | sed 's/^/    /' ;;
	esac
done
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
