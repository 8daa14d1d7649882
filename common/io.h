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

/* For files appended to and synced now and then (pack files, journal
 * segments): once WRITEBACK_BYTES were appended past *FROM (up to END),
 * starts their writeback without waiting (sync_file_range WRITE) and moves
 * *FROM to END.  A later fdatasync then finds most of it on the disk
 * instead of writing it all while its callers wait (RocksDB's
 * bytes_per_sync, PostgreSQL's backend_flush_after).  Advisory: errors
 * are left to that sync. */
#define WRITEBACK_BYTES (8u << 20)
void writeback_start(int fd, uint64_t *from, uint64_t end);

#endif /* VDISK_COMMON_IO_H */
