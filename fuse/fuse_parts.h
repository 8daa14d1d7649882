/* The partition files of the raw view (fuse/fuse_parts.c). */
#ifndef VDISK_FUSE_PARTS_H
#define VDISK_FUSE_PARTS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vdisk.h"

#define VDFUSE_PARTS_MAX 128

struct vdfuse_parts {
	size_t count;
	struct {
		unsigned number;        /* partN */
		uint64_t offset, length;
	} part[VDFUSE_PARTS_MAX];
	char warning[256];              /* "" when the table is fine */
};

/* Fills OUT with V's valid partitions (none, with a warning, when the
 * table cannot be read). */
void vdfuse_parts_read(vd_volume *v, struct vdfuse_parts *out);

#endif /* VDISK_FUSE_PARTS_H */
