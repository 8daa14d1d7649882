/* guest/disk.c: the bounds-checked read every guest reader goes through,
 * and the memory adapter.  The engine adapter is in guest/volume.c, so
 * the readers and the fuzzers link without the engine. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "guest/disk.h"

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

void guest_say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}
