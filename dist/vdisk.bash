# bash completion for vdisk(1).  Installed as
# $(PREFIX)/share/bash-completion/completions/vdisk.
#
# Commands and options come from the installed tool's own --help (so they
# never drift from it); volume and snapshot names from the hidden helper
# `vdisk [--store DIR] complete volumes | snapshots VOL`, which never
# creates a store.  A --store DIR on the command line is honoured.

# Prints the commands listed by `vdisk --help`.
_vdisk_commands()
{
	"$1" --help 2>/dev/null | awk '/^Commands:/ { on = 1; next }
		on && /^$/ { exit } on && /^  [a-z]/ { print $1 }'
}

# Prints the long options of `vdisk CMD --help`, plus the global ones.
_vdisk_options()
{
	{
		"$1" "$2" --help 2>/dev/null |
			grep -oE -- '(^|[[ ,])--[a-z][a-z-]*' | grep -oE -- '--[a-z-]+'
		printf '%s\n' --store --help
	} | sort -u
}

# Prints the options of `vdisk CMD --help` that take an argument, short
# and long ("-s --socket"): those shown as "--opt ARG", "--opt=ARG" or
# "--opt=a|b".
_vdisk_arg_options()
{
	"$1" "$2" --help 2>/dev/null |
		grep -oE -- '(-[a-zA-Z], )?--[a-z][a-z-]*([ =][A-Z]|=[a-z]+[|])' |
		sed -E 's/([ =][A-Z]|=[a-z]+[|])$//; s/, / /'
	echo --store
}

# Prints the values of "--OPT=a|b|c" in `vdisk CMD --help`.
_vdisk_option_values()
{
	"$1" "$2" --help 2>/dev/null | grep -oE -- "$3=[a-z|]+" | head -n 1 |
		sed "s/^$3=//; s/|/ /g"
}

_vdisk()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=
	local prog=${COMP_WORDS[0]} cmd= store= i w argopts= nops=0
	local -a sargs=()

	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	COMPREPLY=()

	# The command, --store, and the operands before the cursor.
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		--store)
			((i++))
			store=${COMP_WORDS[i]:-}
			continue ;;
		--store=*)
			store=${w#--store=}
			continue ;;
		esac
		if [[ -z $cmd ]]; then
			[[ $w == -* ]] || {
				cmd=$w
				argopts=" $(_vdisk_arg_options "$prog" "$cmd" | tr '\n' ' ') "
			}
			continue
		fi
		if [[ $w == -- ]]; then
			continue
		elif [[ $cmd == mount && $w == -o ]]; then
			((i++)) # mount -o FUSE_OPTION
		elif [[ $w == -* ]]; then
			[[ $argopts == *" ${w%%=*} "* && $w != *=* ]] && ((i++))
		else
			((nops++))
		fi
	done
	[[ $store == "~/"* ]] && store=$HOME/${store#"~/"}
	[[ -n $store ]] && sargs=(--store "$store")

	if [[ $prev == --store ]]; then
		mapfile -t COMPREPLY < <(compgen -d -- "$cur")
		return 0
	fi
	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W '--store --help --version' -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$(_vdisk_commands "$prog")" -- "$cur")
		fi
		return 0
	fi

	# The argument of an option: files for paths, nothing for sizes.
	if [[ $prev == -* && $argopts == *" $prev "* ]]; then
		case $prev in
		--socket | -s | --pidfile | --tls-psk | --kernel | --initrd)
			mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
		--tls-certificates)
			mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
		*)
			mapfile -t COMPREPLY < <(compgen -W \
				"$(_vdisk_option_values "$prog" "$cmd" "$prev")" -- "$cur") ;;
		esac
		return 0
	fi
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$(_vdisk_options "$prog" "$cmd")" -- "$cur")
		return 0
	fi

	# Operands: what each position of each command takes.
	local what=
	case $cmd:$nops in
	snapshot:0 | clone:0 | rollback:0) what=snap ;;
	export:0 | info:0 | rm:0 | diff:[01] | serve:* | mount:0 | run:0) what=point ;;
	ls:0 | cat:0 | get:0) what=point ;;
	flatten:0 | resize:0 | import:0) what=vol ;;
	export:1 | import:1 | get:2) what=file ;;
	mount:1 | umount:0) what=dir ;;
	esac
	[[ $cmd == mount && $prev == -o ]] && return 0
	case $what in
	dir)
		mapfile -t COMPREPLY < <(compgen -d -- "$cur")
		return 0 ;;
	file)
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return 0 ;;
	'')
		return 0 ;;
	esac
	if [[ $cur == *@* ]]; then
		local vol=${cur%%@*} snaps
		snaps=$("$prog" "${sargs[@]}" complete snapshots "$vol" 2>/dev/null |
			sed "s/^/$vol@/")
		mapfile -t COMPREPLY < <(compgen -W "$snaps" -- "$cur")
		return 0
	fi
	mapfile -t COMPREPLY < <(compgen -W \
		"$("$prog" "${sargs[@]}" complete volumes 2>/dev/null)" -- "$cur")
	if [[ $what == snap ]]; then
		# A snapshot is VOL@SNAP: complete the volume and its '@'.
		COMPREPLY=("${COMPREPLY[@]/%/@}")
		compopt -o nospace 2>/dev/null
	fi
	return 0
}
complete -F _vdisk vdisk
