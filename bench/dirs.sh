# Sourced first by every bench script, with the name of its scratch
# directory (empty for the engine bench's own):
#	source "$(dirname "$0")/../dirs.sh" NAME    (or "$(dirname "$0")/dirs.sh")
# Moves to bench/ and sets bench (bench/), top (the checkout) and tmp
# (VDISK_BENCH_TMP, default /work/bench-tmp, + /NAME), refusing a tmp
# inside the checkout: the scripts delete what they make there.
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 2
bench=$PWD
top=$(cd .. && pwd)
tmp=${VDISK_BENCH_TMP:-/work/bench-tmp}${1:+/$1}
case "$tmp" in "$top"/*) echo "VDISK_BENCH_TMP must be outside the repository" >&2; exit 2 ;; esac

# refuse_sanitized VDISK: exits 2 if VDISK is a sanitizer build (`make
# tsan`/`make asan` point ./vdisk at theirs): never time that.
refuse_sanitized() {
	case $(readlink -f "$1") in
	*/build-tsan/*|*/build-asan/*)
		echo "$1 is a sanitizer build: run make, or set VDISK" >&2; exit 2 ;;
	esac
}
