#!/bin/bash
# How tests/golden/v1-store.tar and v1-expected/v1.sha256 were made: a
# small FORMAT.md version 1 store (4K chunks) written by the vdisk of the
# commit that added them.  Kept as it was made: later vdisk versions must
# read it (tests/test-golden.sh).  Do not regenerate it for a new format
# version; add make-v2.sh and v2-store.tar instead.
#
# Usage: tests/golden/make-v1.sh [VDISK]     (default: ./vdisk)
# Run from the top of the tree; overwrites tests/golden/v1-store.tar and
# tests/golden/v1-expected/v1.sha256.
set -eu
vdisk=$(realpath "${1:-./vdisk}")
golden=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
s=$work/v1
v() { "$vdisk" --store "$s" "$@"; }

# gen FILE SIZE SEED: deterministic image, in 4K blocks: pseudo-random
# (stored raw), text (stored zstd), zero (holes), and a block repeated
# (deduplicated), ending with an unaligned tail.
gen() {
	python3 - "$@" <<'PY'
import random, sys
path, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
rnd = r.randbytes(4096)
txt = (b"vdisk golden store v1, seed %d\n" % seed) * 200
blocks = [rnd, txt[:4096], bytes(4096), rnd, txt[100:4196], r.randbytes(4096)]
out = b"".join(blocks[i % len(blocks)] for i in range(size // 4096 + 1))
open(path, "wb").write(out[:size])
PY
}

v init --chunk-size 4K
gen "$work/a" $((48 * 1024 + 1000)) 1          # vm: 13 chunks, last partial
v import vm "$work/a"
v snapshot vm@s1
gen "$work/b" 6000 2
v import --existing --offset 5000 vm "$work/b"   # unaligned, over 3 chunks
head -c 4096 /dev/zero >"$work/z"
v import --existing --offset 24K vm "$work/z"    # data -> hole
v snapshot vm@s2
v clone vm@s1 cl                                 # clone of the first snapshot
gen "$work/c" 9000 3
v import --existing --offset 30K cl "$work/c"
v snapshot cl@c1
v create empty 100K                              # a volume never written
v rollback vm@s1                                 # head back to s1, s2 kept
printf 'after rollback' >"$work/d"
v import --existing --offset 40000 vm "$work/d"
v resize cl 40K --shrink                         # shrink (writes holes)
v check

# The tar holds v1/ without the lock files (not persistent state, FORMAT.md
# "Process locks"; LMDB recreates index.mdb-lock).
rm -rf "$s/locks" "$s/index.mdb-lock"
tar --sort=name --owner=0 --group=0 --numeric-owner --mode=u+rwX,go+rX \
	-C "$work" -cf "$golden/v1-store.tar" v1
: >"$golden/v1-expected/v1.sha256"
for p in cl cl@c1 empty vm vm@s1 vm@s2; do
	v export "$p" - | sha256sum | sed "s/ .*/  $p/" \
		>>"$golden/v1-expected/v1.sha256"
done
cat "$golden/v1-expected/v1.sha256"
ls -l "$golden/v1-store.tar"
