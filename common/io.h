/* Short I/O in one place: loops over partial reads and writes and EINTR.
 * Used by the engine and by the front ends alike. */
#ifndef VDISK_COMMON_IO_H
#define VDISK_COMMON_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reads up to LEN bytes, stopping early only at end of file.  Returns the
 * bytes read (< LEN at end of file) or -errno. */
ssize_t read_full(int fd, void *buf, size_t len);
ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off);

/* Writes all LEN bytes.  Returns 0 or -errno (-EIO if nothing could be
 * written). */
int write_full(int fd, const void *buf, size_t len);
int pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

#endif /* VDISK_COMMON_IO_H */
