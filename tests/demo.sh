#!/bin/bash
# vdisk demo: create a volume from an image, snapshot it, clone it, write
# to the clone, and look at the tree.  Uses $VDISK_STORE if set, else the
# default store (~/.local/share/vdisk).  Idempotent: it removes its own
# demo-* volumes first and leaves the final state for you to explore.
set -euo pipefail
cd "$(dirname "$0")/.."
VDISK=${VDISK:-./vdisk}
[ -x "$VDISK" ] || VDISK=./build/vdisk
work=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold= plain=; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
run() { printf '$ vdisk %s\n' "$*"; "$VDISK" "$@"; }

say "Store: ${VDISK_STORE:-default (\$XDG_DATA_HOME/vdisk or ~/.local/share/vdisk)}"

# Clean up a previous run: clones first, then the base with its snapshot.
for v in demo-web2 demo-web1 demo-base; do
	"$VDISK" rm -r "$v" >/dev/null 2>&1 || :
done
"$VDISK" gc >/dev/null   # reclaim what a previous run left

say "A 64 MiB disk image: a 4 MiB 'OS' of text, 2 MiB of random data, holes elsewhere"
img="$work/base.img"
truncate -s 64M "$img"
seq -f 'line %.0f of a very compressible operating system' 1 100000 >"$work/os.txt"
dd if="$work/os.txt" of="$img" bs=1M count=4 conv=notrunc status=none
dd if=/dev/urandom of="$img" bs=1M count=2 seek=32 conv=notrunc status=none
ls -ls "$img"

say "Import it: holes stay holes, zero blocks are not stored"
run import demo-base "$img"
run info demo-base

say "Snapshot it, then clone the snapshot twice: clones are instant and share every chunk"
run snapshot demo-base@golden
run clone demo-base@golden demo-web1
run clone demo-base@golden demo-web2

say "Write 1 MiB of new data into demo-web1 at offset 8 MiB"
head -c $((1024 * 1024)) /dev/urandom >"$work/patch"
run import --existing --offset 8M demo-web1 "$work/patch"

say "What changed in demo-web1 since it was cloned (offset length)"
run diff demo-base@golden demo-web1

say "The tree: clones sit under the snapshot they come from"
run list

say "demo-web1 in detail: only its own 1 MiB is unique"
run info demo-web1

say "Export demo-web2 and check it is byte-for-byte the original image"
run export demo-web2 "$work/web2.img"
cmp "$img" "$work/web2.img" && echo "identical: $(du -h "$work/web2.img" | cut -f1) on disk for a 64 MiB image"

say "Verify every chunk in the store"
run check

say "Done.  Explore with: vdisk list, vdisk info demo-web1 --json; clean up with: vdisk rm demo-web1; vdisk rm demo-web2; vdisk rm -r demo-base"
