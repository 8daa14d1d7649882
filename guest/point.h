/* guest/point.h: "VOL[@SNAP][:PART]" and opening the guest filesystem
 * there, read-only, for vdisk ls/cat/get and vdisk mount --fs. */
#ifndef VDISK_GUEST_POINT_H
#define VDISK_GUEST_POINT_H
#include <stddef.h>
#include "engine/vdisk.h"
#include "guest/disk.h"
#include "guest/extfs.h"
#include "guest/partition.h"

struct guest_point {
	struct vd_point point;
	unsigned part; /* 0: the whole disk */
};

/* A WHY buffer of this size holds every reason the calls below give. */
#define GUEST_WHY_MAX 512

/* Splits SPEC at its ':' (names never hold one) into a point, parsed by
 * vd_point_parse(), and a partition number 1..65535.  Returns 0 or
 * VD_ENAME with WHY saying why ("partition number 'x' is not a number
 * from 1 to 65535", or vd_point_parse's reason). */
int guest_point_parse(const char *spec, struct guest_point *out, char *why,
		      size_t whylen);

struct guest_view {
	vd_volume *vol;
	struct guest_disk disk;
	struct guest_partition_table table;
	uint64_t offset, length; /* the filesystem's region */
	struct guest_fs *fs;
};

/* Opens P's volume read-only and the filesystem on it (the whole disk, or
 * partition P->part of its MBR/GPT table).  A head held for writing by
 * another process is refused (VD_EBUSY) with a message saying a snapshot
 * is the consistent view.  Other failures: the vd_volume_open errors, and
 * the -errno of guest_partitions_read / guest_fs_open (-ENOENT: no such
 * partition; -EMEDIUMTYPE: not ext2/3/4, e.g. "partition 1 holds xfs;
 * only ext2/3/4 can be read").  WHY gets the whole message.  Close with
 * guest_view_close() (NULL is fine). */
int guest_view_open(vd_store *store, const struct guest_point *p,
		    struct guest_view **out, char *why, size_t whylen);
void guest_view_close(struct guest_view *v);

#endif
