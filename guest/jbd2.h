/* guest/jbd2.h: replay of an ext3/ext4 jbd2 journal into an in-memory
 * overlay of filesystem blocks, written from the kernel's
 * Documentation/filesystems/ext4/journal.rst.  Nothing is ever written
 * back: guest/extfs.c's io_manager returns overlay blocks before disk
 * blocks.  The journal is untrusted: every field is checked, the log walk
 * is bounded by the journal's length. */
#ifndef VDISK_GUEST_JBD2_H
#define VDISK_GUEST_JBD2_H
#include <stddef.h>
#include <stdint.h>

struct jbd2_overlay;

/* Reads block N (0-based) of the journal, BLOCK_SIZE bytes, into BUF:
 * 0 or -errno. */
typedef int (*jbd2_read_fn)(void *opaque, uint64_t n, void *buf);

/* Replays the journal of NBLOCKS blocks of BLOCK_SIZE bytes read through
 * READ into a new overlay *OUT (NULL when there was nothing to replay).
 * Blocks aimed at or past FS_BLOCKS are dropped (counted in NOTES).
 * NOTES gets a summary ("3 transactions, 41 blocks replayed").  Returns 0
 * or -errno (-EIO with NOTES saying why for a journal superblock that
 * cannot be used, -ENOMEM). */
int jbd2_replay(jbd2_read_fn read, void *opaque, uint64_t nblocks,
		unsigned block_size, uint64_t fs_blocks,
		struct jbd2_overlay **out, char *notes, size_t noteslen);

/* The replayed contents of filesystem block BLOCK, or NULL. */
const void *jbd2_overlay_block(const struct jbd2_overlay *o, uint64_t block);
size_t jbd2_overlay_count(const struct jbd2_overlay *o);
void jbd2_overlay_free(struct jbd2_overlay *o); /* NULL is fine */

#endif
