/* tests/guest/test-guest-replay.c: runs the fuzz corpus of guest/
 * (tests/fuzz/corpus-guest/) through guest_fuzz_one() without libFuzzer,
 * so make check catches regressions on damaged and hostile disks.
 * Arguments: files or directories to replay instead. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define GUEST_FUZZ_NO_MAIN
#include "tests/fuzz/fuzz-guest.c"

#define REPLAY_CORPUS "tests/fuzz/corpus-guest"
#define REPLAY_ONE(buf, len) guest_fuzz_one(buf, len)
#include "tests/fuzz/replay-main.h"
