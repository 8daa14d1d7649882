/* guest/disk.h: a guest disk as the guest/ readers see it, a size and a
 * read callback.  The callback is all guest/ needs from whoever holds the
 * bytes (a vd_volume, a buffer in a fuzzer, a file in a test), so the
 * partition and filesystem readers never include the engine.
 *
 * Concurrency: a guest_disk is as thread-safe as its read callback; the
 * volume adapter is (vd_volume_pread is). */
#ifndef VDISK_GUEST_DISK_H
#define VDISK_GUEST_DISK_H
#include <stddef.h>
#include <stdint.h>
#include "engine/vdisk.h"

/* Reads LEN bytes at OFF into BUF: 0 or -errno.  A short read is an
 * error; the caller never asks past SIZE (guest_disk_read checks). */
typedef int (*guest_read_fn)(void *opaque, void *buf, size_t len,
			     uint64_t off);

struct guest_disk {
	guest_read_fn read;
	void *opaque;
	uint64_t size; /* bytes */
};

/* Fills OUT to read V through vd_volume_pread, with engine codes turned
 * into errno by vd_errno (VD_ECORRUPT -> -EIO).  V must outlive OUT.
 * Returns 0, or -EINVAL for a NULL argument. */
int guest_disk_from_volume(vd_volume *v, struct guest_disk *out);

/* D->read with the range checked first: -EIO for a range that does not
 * lie inside the disk (a guest table or filesystem pointing past the end
 * is damage, not a caller error).  LEN 0 reads nothing. */
int guest_disk_read(const struct guest_disk *d, void *buf, size_t len,
		    uint64_t off);

/* A guest_disk over a memory buffer (fuzzers, tests): OPAQUE is a
 * struct guest_mem_disk. */
struct guest_mem_disk {
	const uint8_t *data;
	size_t size;
};
int guest_disk_from_memory(struct guest_mem_disk *m, struct guest_disk *out);

/* Formats a message into WHY (WHYLEN bytes; nothing when WHY is NULL or
 * WHYLEN 0): the "why" every guest/ function that fails may fill. */
void guest_say(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
