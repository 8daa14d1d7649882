/* test-model with 64 KiB chunks: 4 KiB-aligned writes then leave chunks
 * sparse in memory (only the written pages), which 4 KiB chunks never do. */
#define CHUNK 65536u
#include "test-model.c"
