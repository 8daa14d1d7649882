/* The partition files of the raw view, from guest/partition.c: one per
 * valid entry of an MBR or GPT table (an MBR's extended container is left
 * out; its logical partitions are shown).  A table that cannot be read
 * gives no partition files and a warning, never an error: `disk` stays. */
#include <stdio.h>
#include <string.h>

#include "fuse/fuse_parts.h"
#include "guest/disk.h"
#include "guest/partition.h"

void vdfuse_parts_read(vd_volume *v, struct vdfuse_parts *out)
{
	static _Thread_local struct guest_partition_table t;
	struct guest_disk d;
	char why[200] = "";

	memset(out, 0, sizeof(*out));
	if (guest_disk_from_volume(v, &d) < 0)
		return;
	if (guest_partitions_read(&d, &t, why, sizeof(why)) < 0) {
		snprintf(out->warning, sizeof(out->warning), "%s",
			 why[0] ? why : "cannot be read");
		return;
	}
	snprintf(out->warning, sizeof(out->warning), "%s", t.warning);
	for (size_t i = 0; i < t.count && out->count < VDFUSE_PARTS_MAX; i++) {
		if (t.part[i].extended || !t.part[i].length)
			continue;
		out->part[out->count].number = t.part[i].number;
		out->part[out->count].offset = t.part[i].offset;
		out->part[out->count].length = t.part[i].length;
		out->count++;
	}
}
