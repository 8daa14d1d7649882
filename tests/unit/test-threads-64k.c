/* test-threads with 64 KiB chunks and 4 KiB sectors: every write is
 * page-aligned, so chunks are written sparse and sealed over the stored
 * chunk while other threads read and snapshot them. */
#define CHUNK  65536u
#define SECTOR 4096u
#include "test-threads.c"
