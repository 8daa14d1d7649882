#!/bin/bash
# Bash completion (dist/vdisk.bash): command names, the options of
# `snapshot`, volume names, VOL@ -> that volume's snapshots, and --store DIR
# on the command line, driven through COMP_WORDS/COMP_CWORD as bash does.
source "$(dirname "$0")/functions.sh"

script=$VDISK_TOP/dist/vdisk.bash
new_store >/dev/null
vdisk create web1 1M && vdisk create web2 1M && vdisk create db 1M &&
	vdisk snapshot web1@mon && vdisk snapshot web1@tue &&
	vdisk snapshot db@gold || fail "setup"
other=$tmpdir/other
vdisk --store "$other" create elsewhere 1M || fail "setup other store"

# comp WORD... : complete the last WORD (may be ""); prints COMPREPLY
# sorted, one per line.
comp() {
	bash -c '
		source "$1" || exit 1
		shift
		COMP_WORDS=("$@")
		COMP_CWORD=$(($# - 1))
		COMP_LINE="$*"
		COMP_POINT=${#COMP_LINE}
		_vdisk vdisk "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		printf "%s\n" "${COMPREPLY[@]}" | sort
	' comp "$script" "$VDISK" "$@"
}
expect() {	# expect "WANTED LINES" WORD...
	local want=$1 got
	shift
	got=$(comp "$@") || fail "completion of '$*' failed"
	[ "$got" = "$want" ] || fail "completing '$*': got [$got], want [$want]"
}
nl() { printf '%s\n' "$@"; }

# Commands: every one of `vdisk --help`, nothing hidden.
all=$(comp "")
for c in init create import export snapshot clone rollback rm flatten \
	 resize list info diff gc check serve run; do
	grep -qx "$c" <<<"$all" || fail "command $c not completed: $all"
done
grep -qx complete <<<"$all" && fail "the hidden helper is offered"
expect "$(nl resize rm rollback run)" r
expect "$(nl snapshot)" sn
expect "$(nl --help --store --version)" --
# Options of snapshot (it has only the global ones), and of others.
expect "$(nl --help --store)" snapshot --
expect "$(nl --recursive)" rm --r
expect "$(nl --socket)" serve --so
expect "$(nl --existing)" import --e
# Volume names.
expect "$(nl db web1 web2)" info ""
expect "$(nl web1 web2)" rm w
# VOL@ -> snapshots of VOL; snapshot/clone/rollback complete to "VOL@".
expect "$(nl web1@mon web1@tue)" clone web1@
expect "$(nl web1@tue)" export web1@t
expect "$(nl db@gold)" rollback db@
expect "$(nl web1@ web2@)" snapshot we
# Operand positions: clone's second operand is a new name, export's a file.
expect "" clone web1@mon ""
touch "$tmpdir/out.raw"
expect "$tmpdir/out.raw" export web1 "$tmpdir/out"
# Option arguments are skipped when counting operands.
expect "$(nl db web1 web2)" serve --cache 64M ""
expect "$(nl db web1 web2)" serve --tls require --tls-psk keys ""
expect "$(nl off on)" serve --tls o
# --store DIR on the command line, before or after the command.
expect elsewhere --store "$other" info ""
expect elsewhere info --store "$other" e
expect "" --store "$other" info web
# A missing store completes nothing and is not created.
expect "" --store "$tmpdir/missing" info ""
[ -e "$tmpdir/missing" ] && fail "completion created a store"
echo "completion ok"
