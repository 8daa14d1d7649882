#!/bin/bash
# vdisk(1) is lint-clean and in step with --help: every long option that
# `vdisk CMD --help` shows appears in the page's section for CMD (or among
# the global options), and every option the page lists for CMD is in
# `vdisk CMD --help`.  The commands come from `vdisk --help`.
source "$(dirname "$0")/functions.sh"
requires groff python3

page=$VDISK_TOP/$VDISK_BUILD/vdisk.1
[ -f "$page" ] || fail "$page is missing (make all first)"

warn=$(groff -ww -z -man "$page" 2>&1) || fail "groff failed: $warn"
[ -z "$warn" ] || fail "groff -ww warns: $warn"
if command -v mandoc >/dev/null; then
	warn=$(mandoc -T lint -W warning "$page" 2>&1) ||
		fail "mandoc -T lint: $warn"
else
	echo "mandoc not installed: groff -ww check only"
fi
# It renders, and says where the format specification is installed.
out=$(groff -man -T utf8 "$page" 2>/dev/null | col -b 2>/dev/null ||
      groff -man -T ascii "$page")
grep -q 'FORMAT.md' <<<"$out" || fail "vdisk(1) does not point at FORMAT.md"

cmds=$(vdisk --help | awk '/^Commands:/ {on = 1; next} on && /^$/ {exit}
			   on && /^  [a-z]/ {print $1}')
[ "$(wc -w <<<"$cmds")" -ge 10 ] || fail "commands from vdisk --help: $cmds"
for c in $cmds; do
	vdisk "$c" --help >"$tmpdir/help.$c" || fail "vdisk $c --help exited $?"
done
vdisk --help >"$tmpdir/help.TOP"

python3 - "$page" "$tmpdir" $cmds <<'PY'
import re, sys
page, tmp, cmds = sys.argv[1], sys.argv[2], sys.argv[3:]
src = open(page).read().splitlines()
OPT = re.compile(r'\\-\\-([a-z][a-z-]*(?:\\-[a-z]+)*)')

def opts(text):
    return {m.replace('\\-', '-') for m in OPT.findall(text)}

# Sections: ".SS "vdisk CMD ..."" per command; ".SH OPTIONS" is global.
sections, cur, tp = {}, None, False
for line in src:
    if line.startswith('.SH'):
        cur = 'GLOBAL' if line.split()[1:2] == ['OPTIONS'] else None
        continue
    if line.startswith('.SS'):
        m = re.match(r'\.SS "vdisk (\S+)', line)
        cur = m.group(1) if m else None
        if cur:
            sections.setdefault(cur, set())
        continue
    if cur is None:
        continue
    sections.setdefault(cur, set())
    if line.startswith('.TP'):
        tp = True
        continue
    if tp:   # the tag line of a .TP item names the option
        sections[cur] |= opts(line)
        tp = False

glob = sections.get('GLOBAL', set())
bad = []
if not {'store', 'help', 'version'} <= glob:
    bad.append('global options in the page: %s' % sorted(glob))
# The top level's own options: its "Options:" paragraph.
toptext = open(tmp + '/help.TOP').read().split('\nOptions:\n', 1)[-1]
top = opts(toptext.split('\n\n', 1)[0].replace('-', '\\-'))
if not top:
    bad.append('no options parsed from vdisk --help')
for o in top - glob:
    bad.append('vdisk --help shows --%s, not in the page\'s OPTIONS' % o)
for c in cmds:
    if c not in sections:
        bad.append('command %s has no section in the page' % c)
        continue
    shown = opts(open('%s/help.%s' % (tmp, c)).read().replace('-', '\\-'))
    for o in sorted(shown - sections[c] - glob):
        bad.append('vdisk %s --help shows --%s, the page does not' % (c, o))
    for o in sorted(sections[c] - shown):
        bad.append('the page lists --%s for %s, its --help does not' % (o, c))
for c in sections:
    if c != 'GLOBAL' and c not in cmds:
        bad.append('the page has a section for %s, vdisk --help does not' % c)
if bad:
    print('\n'.join(bad))
    sys.exit(1)
print('%d commands, options in step with --help' % len(cmds))
PY
[ $? -eq 0 ] || fail "vdisk(1) and --help disagree"
