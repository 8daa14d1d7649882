#!/bin/bash
# Commands on a directory that is not a store: a foreign non-empty
# directory and an unreadable one exit 1 and write nothing into it.
source "$(dirname "$0")/functions.sh"

check_refused() {	# DIR CMD...
	local dir=$1 err rc
	shift
	err=$("$VDISK" --store "$dir" "$@" 2>&1 >/dev/null)
	rc=$?
	[ "$rc" -eq 1 ] || fail "'vdisk --store $dir $*' exited $rc, expected 1: $err"
	grep -q '^vdisk: ' <<<"$err" || fail "'$*': message: $err"
}

foreign="$tmpdir/foreign"
mkdir "$foreign"
echo "my thesis" >"$foreign/thesis.txt"
before=$(cd "$foreign" && ls -lA --time-style=full-iso)
for cmd in "list" "create v 1M" "info v" "gc" "check" "snapshot v@s"; do
	# shellcheck disable=SC2086
	check_refused "$foreign" $cmd
done
check_refused "$foreign" init
after=$(cd "$foreign" && ls -lA --time-style=full-iso)
[ "$before" = "$after" ] || fail "foreign directory changed: $after"

# An unreadable directory.  Root ignores permissions, so as root run the
# commands as nobody (setpriv), with the test directory traversable.
if [ "$(id -u)" -eq 0 ]; then
	command -v setpriv >/dev/null || { echo "SKIP: root without setpriv"; exit 77; }
	chmod 711 "$tmpdir"
	as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
else
	as_user() { "$@"; }
fi
locked="$tmpdir/locked"
mkdir "$locked"
chmod 000 "$locked"
cleanup_fn "chmod 700 '$locked'"
for cmd in "list" "create v 1M" "init"; do
	# shellcheck disable=SC2086
	err=$(as_user "$VDISK" --store "$locked" $cmd 2>&1 >/dev/null)
	rc=$?
	[ "$rc" -eq 1 ] || fail "'$cmd' on an unreadable store exited $rc: $err"
	grep -q '^vdisk: ' <<<"$err" || fail "'$cmd': message: $err"
done
chmod 700 "$locked"
[ -z "$(ls -A "$locked")" ] || fail "wrote into the unreadable directory"

# A store inside a plain file path.
echo x >"$tmpdir/file"
check_refused "$tmpdir/file" list
check_refused "$tmpdir/file/sub" list
echo OK
