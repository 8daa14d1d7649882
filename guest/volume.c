/* guest/volume.c: a guest_disk over an engine volume. */
#include <errno.h>
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
