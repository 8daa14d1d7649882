/* Replays the NBD fuzz corpus (tests/fuzz/corpus/) through the fuzz target
 * without libFuzzer, so make check catches regressions in the handshake
 * and request parser.  Arguments: files or directories to replay instead.
 *
 * The parser and handshake are compiled in from their sources: unit tests
 * link only build/libvdisk.a.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nbd/nbd_proto.c"
#include "nbd/nbd_handshake.c"
#include "tests/fuzz/fuzz-nbd.c"

#define REPLAY_CORPUS "tests/fuzz/corpus"
#define REPLAY_ONE(buf, len) LLVMFuzzerTestOneInput(buf, len)
#include "tests/fuzz/replay-main.h"
