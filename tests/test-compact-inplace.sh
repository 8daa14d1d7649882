#!/bin/bash
# The space bound holds for whole chunks written in place too: a filled
# volume overwritten by sequential 1 MiB writes, with no flush, has every
# chunk replaced again and again.  Chunks stored in place stay out of the
# index until sealed, so the records they replace still count as live:
# before the sealer indexed them past a bound (compact_pending_high), two
# passes over a 2 GiB volume reached 1.9x its live bytes on disk.  Asserts
# the bound of test-compact.sh while writing (<= 1.5 x live + 56 MiB)
# plus those chunks (L / 32 + 16 MiB) and, once idle, <= 1.25 x live +
# 8 MiB; the data reads back and vdisk check is clean.
source "$(dirname "$0")/functions.sh"
requires python3 /usr/bin/python3
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
new_store >/dev/null
unset VDISK_COMPACT VDISK_IN_PLACE

vdisk create vol 128M || fail "create"
start_serve "$tmpdir/sock"
uri="nbd+unix:///vol?socket=$tmpdir/sock"

/usr/bin/python3 - <<EOF || fail "writes"
import os, nbd, json, subprocess
peak = 0
def sample(what):
    global peak
    s = json.loads(subprocess.run(["$VDISK", "list", "--json"], capture_output=True, check=True).stdout)["store"]
    # Live: the volume's bytes, written whole (the index lags behind by
    # the chunks not yet sealed, up to L / 32 + 16 MiB on top).
    disk, live = s["pack_bytes"], max(s["stored_bytes"], size)
    peak = max(peak, disk / live)
    bound = 1.5 * live + (56 << 20) + live / 32 + (16 << 20)
    assert disk <= bound, "%s: pack bytes %d, live %d" % (what, disk, live)
h = nbd.NBD()
h.connect_uri("$uri")
size, step = 128 << 20, 1 << 20
model = bytearray(size)
for rnd in range(10):
    for off in range(0, size, step):
        buf = os.urandom(step)
        model[off:off + step] = buf
        h.pwrite(buf, off)
        if rnd > 0 and off % (16 << 20) == 0:
            sample("pass %d at %d MiB" % (rnd, off >> 20))
    if rnd == 0:
        h.flush() # the fill, then overwrites with no flush
print("peak while writing: %.2fx" % peak)
h.flush()
open("$tmpdir/model", "wb").write(model)
h.shutdown()
EOF

expect_compact_idle

kill "$serve_pid" && wait "$serve_pid" 2>/dev/null
vdisk check || fail "check"
vdisk export vol "$tmpdir/out" || fail "export"
cmp "$tmpdir/model" "$tmpdir/out" || fail "data differs from the model"
echo OK
