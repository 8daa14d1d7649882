/* tests/guest/file-disk.h: the guest/ disk over an image file, shared by
 * the guest-fs and guest-parts test tools. */
#ifndef VDISK_TESTS_GUEST_FILE_DISK_H
#define VDISK_TESTS_GUEST_FILE_DISK_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include "common/io.h"
#include "guest/disk.h"

static int file_read(void *opaque, void *buf, size_t len, uint64_t off)
{
	const ssize_t n = pread_full(*(int *)opaque, buf, len, off);

	return n < 0 ? (int)n : (size_t)n < len ? -EIO : 0;
}

/* Opens PATH read-only as *D, reading through *FD (which must outlive D);
 * says why on stderr and returns -1 if it cannot. */
static int file_disk_open(const char *path, struct guest_disk *d, int *fd)
{
	struct stat st;

	*fd = open(path, O_RDONLY);
	if (*fd < 0 || fstat(*fd, &st) < 0) {
		perror(path);
		return -1;
	}
	d->read = file_read;
	d->opaque = fd;
	d->size = (uint64_t)st.st_size;
	return 0;
}

#endif
