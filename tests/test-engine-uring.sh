#!/bin/bash
# The batched io_uring read path (VDISK_IO=uring, off by default) returns
# the same bytes and the same corruption errors as pread: the model test
# and the corruption test pass with it on.
source "$(dirname "$0")/functions.sh"
bin="$VDISK_TOP/$VDISK_BUILD/tests"
[ -x "$bin/test-model-64k" ] && [ -x "$bin/test-corrupt" ] ||
	fail "unit test programs missing (make unit)"
VDISK_IO=uring "$bin/test-model-64k" || fail "test-model-64k with VDISK_IO=uring"
VDISK_IO=uring "$bin/test-corrupt" || fail "test-corrupt with VDISK_IO=uring"
echo "io_uring read path: ok"
