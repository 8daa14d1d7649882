/* guest/disk.c: guest_disk adapters (engine volume, memory) and the
 * bounds-checked read every guest reader goes through. */
#include <errno.h>
#include <string.h>
#include "guest/disk.h"

static int volume_read(void *opaque, void *buf, size_t len, uint64_t off)
{
	const int rc = vd_volume_pread(opaque, buf, len, off);

	return rc < 0 ? -vd_errno(rc) : 0;
}

int guest_disk_from_volume(vd_volume *v, struct guest_disk *out)
{
	if (!v || !out)
		return -EINVAL;
	out->read = volume_read;
	out->opaque = v;
	out->size = vd_volume_size(v);
	return 0;
}

static int memory_read(void *opaque, void *buf, size_t len, uint64_t off)
{
	const struct guest_mem_disk *m = opaque;

	if (off > m->size || len > m->size - off)
		return -EIO;
	memcpy(buf, m->data + off, len);
	return 0;
}

int guest_disk_from_memory(struct guest_mem_disk *m, struct guest_disk *out)
{
	if (!m || !out)
		return -EINVAL;
	out->read = memory_read;
	out->opaque = m;
	out->size = m->size;
	return 0;
}

int guest_disk_read(const struct guest_disk *d, void *buf, size_t len,
		    uint64_t off)
{
	if (len == 0)
		return 0;
	if (off > d->size || len > d->size - off)
		return -EIO;
	return d->read(d->opaque, buf, len, off);
}
