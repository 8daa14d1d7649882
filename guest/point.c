/* guest/point.c: a guest filesystem named by "VOL[@SNAP][:PART]". */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "guest/point.h"

int guest_point_parse(const char *spec, struct guest_point *out, char *why,
		      size_t whylen)
{
	char head[2 * VD_NAME_MAX + 3];
	const char *colon;
	size_t n;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!spec)
		spec = "";
	colon = strchr(spec, ':');
	n = colon ? (size_t)(colon - spec) : strlen(spec);
	if (n >= sizeof(head)) {
		guest_say(why, whylen, "volume name is longer than %d characters",
		    VD_NAME_MAX);
		return VD_ENAME;
	}
	memcpy(head, spec, n);
	head[n] = 0;
	if (colon) {
		const char *p = colon + 1;
		unsigned long v = 0;
		if (!*p || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p) ||
		    (v = strtoul(p, NULL, 10)) == 0 || v > 65535) {
			guest_say(why, whylen, "partition number '%s' is not a "
			    "number from 1 to 65535", p);
			return VD_ENAME;
		}
		out->part = (unsigned)v;
	}
	rc = vd_point_parse(head, &out->point, why, whylen);
	if (rc < 0)
		out->part = 0;
	return rc;
}

/* "1, 2, 5" for the message naming a table's partitions. */
static void list_numbers(const struct guest_partition_table *t, char *buf,
			 size_t len)
{
	size_t used = 0;

	buf[0] = 0;
	for (size_t i = 0; i < t->count && used + 16 < len; i++) {
		if (t->part[i].extended)
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%u",
					 used ? ", " : "", t->part[i].number);
	}
}

int guest_view_open(vd_store *store, const struct guest_point *p,
		    struct guest_view **out, char *why, size_t whylen)
{
	const char *snap = p->point.snap[0] ? p->point.snap : NULL;
	char fswhy[GUEST_WHY_MAX] = "";
	struct guest_view *v;
	int rc;

	*out = NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	rc = vd_volume_open(store, p->point.vol, snap, VD_OPEN_RDONLY, &v->vol);
	if (rc < 0) {
		if (rc == VD_EBUSY && !snap)
			guest_say(why, whylen, "%s; a volume being written is not a "
			    "consistent filesystem: read a snapshot of it "
			    "(vdisk snapshot %s@NAME, then %s@NAME)",
			    vd_last_error()[0] ? vd_last_error() :
			    "the volume is held for writing by another process",
			    p->point.vol, p->point.vol);
		else
			guest_say(why, whylen, "%s", vd_last_error()[0] ?
			    vd_last_error() : vd_strerror(rc));
		goto fail;
	}
	guest_disk_from_volume(v->vol, &v->disk);
	rc = guest_partitions_read(&v->disk, &v->table, fswhy, sizeof(fswhy));
	if (rc < 0 && p->part) {
		guest_say(why, whylen, "partition table: %s", fswhy);
		goto fail;
	}
	if (rc < 0) /* the whole disk may still hold a filesystem */
		memset(&v->table, 0, sizeof(v->table));
	if (p->part) {
		const struct guest_partition *part =
			guest_partition_find(&v->table, p->part);
		char nums[128];
		if (!part || part->extended) {
			list_numbers(&v->table, nums, sizeof(nums));
			if (!strcmp(v->table.scheme, "none") ||
			    !v->table.scheme[0])
				guest_say(why, whylen, "no partition %u: the disk has "
				    "no partition table", p->part);
			else if (part)
				guest_say(why, whylen, "partition %u is the extended "
				    "partition, a container of partitions %s",
				    p->part, nums);
			else
				guest_say(why, whylen, "no partition %u: the disk's "
				    "%s table has %s%s%s", p->part,
				    v->table.scheme,
				    nums[0] ? "partitions " : "no partitions",
				    nums, v->table.warning[0] ? "; " : "");
			if (!part && v->table.warning[0]) {
				const size_t used = strlen(why);
				snprintf(why + used, whylen - used, "%s",
					 v->table.warning);
			}
			rc = -ENOENT;
			goto fail;
		}
		v->offset = part->offset;
		v->length = part->length;
	} else {
		v->offset = 0;
		v->length = v->disk.size;
	}
	rc = guest_fs_open(&v->disk, v->offset, v->length, &v->fs, fswhy,
			   sizeof(fswhy));
	if (rc < 0) {
		char nums[128];
		if (p->part)
			guest_say(why, whylen, "partition %u %s", p->part, fswhy);
		else if (rc == -EMEDIUMTYPE && v->table.count) {
			list_numbers(&v->table, nums, sizeof(nums));
			guest_say(why, whylen, "the disk holds a %s partition table "
			    "(partitions %s); name one: %s%s%s:N",
			    !strcmp(v->table.scheme, "mbr") ? "MBR" : "GPT",
			    nums, p->point.vol, snap ? "@" : "",
			    snap ? snap : "");
		} else
			guest_say(why, whylen, "the disk %s", fswhy);
		goto fail;
	}
	*out = v;
	return 0;
fail:
	guest_view_close(v);
	return rc;
}

void guest_view_close(struct guest_view *v)
{
	if (!v)
		return;
	guest_fs_close(v->fs);
	vd_volume_close(v->vol);
	free(v);
}
