/* test-crash with 64 KiB chunks and 4 KiB sectors: page-aligned writes
 * leave chunks sparse in memory, sealed over the stored chunk, when the
 * process is killed or the power is cut. */
#define CHUNK  65536u
#define SECTOR 4096u
#include "test-crash.c"
