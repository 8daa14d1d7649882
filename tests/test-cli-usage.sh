#!/bin/bash
# Usage errors exit 2 before touching the store; --help works everywhere.
source "$(dirname "$0")/functions.sh"

store="$tmpdir/store"          # never created: usage errors must not
export VDISK_STORE="$store"    # open (and so create) the store

# --help and --version, top level and on every command.
vdisk --help | grep -q 'Usage: vdisk' || fail "vdisk --help"
vdisk -h | grep -q 'VDISK_STORE' || fail "vdisk -h does not document VDISK_STORE"
vdisk --help | grep -q 'local/share/vdisk' || fail "--help does not name the default store"
vdisk --version | grep -Eq '^vdisk [0-9]' || fail "vdisk --version"
for cmd in init create import export snapshot clone rollback rm flatten \
	   resize list info diff gc check; do
	out=$(vdisk "$cmd" --help) || fail "vdisk $cmd --help exited $?"
	grep -q "Usage: vdisk.*$cmd" <<<"$out" || fail "vdisk $cmd --help: $out"
	vdisk "$cmd" -h >/dev/null || fail "vdisk $cmd -h"
	vdisk --help | grep -q "^  $cmd " || fail "$cmd missing from vdisk --help"
done
# Options after operands (permuting): --help anywhere.
vdisk create foo 1M --help | grep -q 'Usage: vdisk create' ||
	fail "--help after operands"

u() {	# u ARGS...: expect exit 2, a "vdisk:" message and no store
	local err
	err=$("$VDISK" "$@" 2>&1 >/dev/null)
	local rc=$?
	[ "$rc" -eq 2 ] || fail "'vdisk $*' exited $rc, expected 2 ($err)"
	grep -q '^vdisk: ' <<<"$err" || fail "'vdisk $*': no 'vdisk:' message: $err"
	[ ! -e "$store" ] || fail "'vdisk $*' created the store"
}

# Top level.
u
u frobnicate
u --bogus list
u -x list
u --store
u --store '' list
u list --store ''
# Unknown options and missing option arguments.
u list --bogus
u list -z
u create vol 1M --bogus
u init --chunk-size
u rm -x vol
u export --force
# Missing and extra operands.
u create
u create vol
u create vol 1M extra
u import vol
u import vol file extra
u export vol
u export vol file extra
u snapshot
u snapshot a@s b@t
u clone a@s
u clone a@s b c
u rollback
u rm
u rm a b
u flatten
u resize vol
u info
u info a b
u diff
u diff a@s b c
u list extra
u gc extra
u check extra
# Bad sizes.
for s in 0 -1 abc 1.5G 1X 1KK '' ' 1' 1K2 18446744073709551616 16E 99999999999999999999T 0K; do
	u create vol "$s"
	u resize vol "$s"
done
u init --chunk-size 3K
u init --chunk-size 2M
u init --chunk-size 1K
u init --chunk-size 65537
u init --chunk-size junk
u import --existing --offset junk vol /dev/null
u import --offset 1M vol /dev/null
# Bad names.
long=$(printf 'a%.0s' $(seq 65))
for n in .hidden -dash 'a/b' 'a b' '' "$long" 'a$' 'ü'; do
	u create "$n" 1M
	u snapshot "vol@$n"
	u snapshot "$n@snap"
	u info "$n"
done
u create vol@snap 1M     # a snapshot where a volume is expected
u snapshot vol           # a volume where a snapshot is expected
u rollback vol
u clone vol newvol
u clone vol@s new@t
u flatten vol@s
u resize vol@s 1M
u diff vol              # one operand must be a snapshot
u rm -r vol@snap        # -r is for volumes
u import - vol
u import vol -
echo OK
