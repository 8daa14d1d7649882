/* Replays the virtqueue fuzz corpus (tests/fuzz/corpus-virtq/) through
 * the fuzz target without libFuzzer, so make check catches regressions in
 * the virtqueue parser and virtio-blk request handling.  Arguments: files
 * or directories to replay instead.  Built by vmm/vmm_devices.mk with the
 * device objects and libvdisk.a.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz-virtq.c"

#define REPLAY_CORPUS "tests/fuzz/corpus-virtq"
#define REPLAY_ONE(buf, len) LLVMFuzzerTestOneInput(buf, len)
#include "tests/fuzz/replay-main.h"
