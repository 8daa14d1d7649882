#!/bin/bash
# vdisk init: chunk sizes, refusing an existing store or a non-empty
# directory, and the default store location.
source "$(dirname "$0")/functions.sh"
requires python3

json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }

# init on a missing directory, custom chunk size, visible in info/list.
export VDISK_STORE="$tmpdir/s1"
vdisk init --chunk-size 16K | grep -q 'Initialized' || fail "init"
vdisk create v 1M || fail "create after init"
vdisk info --json v | json 'assert d["chunk_size"] == 16384, d' ||
	fail "chunk size 16K not used"
vdisk list --json | json 'assert d["store"]["chunk_size"] == 16384, d' ||
	fail "list: chunk size"

# Already a store: exit 1, the store still works.
expect_exit 1 vdisk init
expect_exit 1 vdisk init --chunk-size 64K
vdisk info v >/dev/null || fail "store damaged by a refused init"

# Each accepted spelling of a chunk size.
for cs in 4K 4096 8KiB 1M 1MiB 64k; do
	d="$tmpdir/cs-$cs"
	vdisk --store "$d" init -c "$cs" >/dev/null || fail "init -c $cs"
done
# Option after the command and --store after the command.
vdisk init --store "$tmpdir/late" >/dev/null || fail "--store after init"
[ -d "$tmpdir/late" ] || fail "--store after the command was ignored"

# An empty existing directory is fine; a foreign non-empty one is not,
# and nothing is written into it.
mkdir "$tmpdir/empty" "$tmpdir/foreign"
vdisk --store "$tmpdir/empty" init >/dev/null || fail "init in empty dir"
echo precious >"$tmpdir/foreign/file.txt"
err=$(vdisk --store "$tmpdir/foreign" init 2>&1)
[ $? -eq 1 ] || fail "init in a non-empty directory did not exit 1"
grep -q '^vdisk: init: ' <<<"$err" || fail "message: $err"
[ "$(ls -A "$tmpdir/foreign")" = file.txt ] ||
	fail "init wrote into a foreign directory: $(ls -A "$tmpdir/foreign")"

# A file where the store should be.
echo x >"$tmpdir/afile"
expect_exit 1 vdisk --store "$tmpdir/afile" init

# The default store: $XDG_DATA_HOME/vdisk, else ~/.local/share/vdisk;
# other commands create it on first use.
unset VDISK_STORE
(
	export HOME="$tmpdir/home" XDG_DATA_HOME=
	unset XDG_DATA_HOME
	mkdir -p "$HOME"
	vdisk list >/dev/null || fail "list on the default store"
	[ -d "$HOME/.local/share/vdisk" ] || fail "default store not in ~/.local/share/vdisk"
	vdisk create d 1M || fail "create on the default store"
	export XDG_DATA_HOME="$tmpdir/xdg"
	vdisk create x 1M || fail "create with XDG_DATA_HOME"
	[ -d "$XDG_DATA_HOME/vdisk" ] || fail "XDG_DATA_HOME/vdisk not used"
	# VDISK_STORE wins over XDG, --store wins over VDISK_STORE.
	VDISK_STORE="$tmpdir/env" vdisk create e 1M || fail "VDISK_STORE"
	[ -d "$tmpdir/env" ] || fail "VDISK_STORE not used"
	VDISK_STORE="$tmpdir/env" vdisk --store "$tmpdir/opt" create o 1M ||
		fail "--store"
	VDISK_STORE="$tmpdir/opt" vdisk info o >/dev/null || fail "--store not used"
	expect_exit 1 env VDISK_STORE="$tmpdir/env" "$VDISK" info o 2>/dev/null
) || exit 1

# Processes making the same fresh store at once: each finds the store the
# first one made (one superblock, every volume in it), none "not empty".
for round in 1 2 3; do
	d="$tmpdir/race-$round"
	pids=()
	for i in 1 2 3 4 5 6; do
		"$VDISK" --store "$d" create "v$i" 1M 2>>"$tmpdir/race.err" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do
		wait "$p" || fail "concurrent create on a fresh store: $(cat "$tmpdir/race.err")"
	done
	n=$(vdisk --store "$d" list --json | json 'print(len(d["volumes"]))')
	[ "$n" = 6 ] || fail "round $round: $n of 6 volumes in the raced store"
	vdisk --store "$d" check >/dev/null || fail "raced store not clean"
done
echo OK
