#!/bin/bash
# The engine's random, concurrent and crash tests again with a 1 MiB dirty
# bound: dirty chunks then keep leaving memory for the journal (JOURNALED
# entries, read back from it) and are sealed from there, all the time.
source "$(dirname "$0")/functions.sh"
bin="$VDISK_TOP/${VDISK_BUILD:-build}/tests"
export VDISK_DIRTY_MB=1
for t in test-model test-model-64k test-threads test-threads-64k test-crash-64k; do
	[ -x "$bin/$t" ] || fail "$bin/$t is not built (make unit)"
	"$bin/$t" || fail "$t with VDISK_DIRTY_MB=1"
done
echo "model, threads and crash tests pass with a 1 MiB dirty bound"
