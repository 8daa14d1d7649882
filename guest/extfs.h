/* guest/extfs.h: a guest's ext2/ext3/ext4 filesystem, read-only, through
 * libext2fs with its own io_manager reading a guest_disk region (no copy
 * of the image, no loop device).  A dirty jbd2 journal is replayed into an
 * in-memory overlay first (guest/jbd2.c), never written, so the view is
 * what the guest would see after its own recovery.
 *
 * Every call returns 0 (or a size) or -errno: -ENOENT, -ENOTDIR, -EISDIR,
 * -EINVAL (not a symlink, bad whence), -ENODATA (no such xattr), -ERANGE
 * (buffer too small), -ENXIO (SEEK_DATA at or past the end), -ENOMEM, and
 * -EIO for damage: the filesystem is untrusted input, every value it holds
 * is checked before use, and damage is an error, never a crash or a hang.
 *
 * NOT thread-safe: one guest_fs is used by one thread at a time (callers
 * lock). */
#ifndef VDISK_GUEST_EXTFS_H
#define VDISK_GUEST_EXTFS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include "guest/disk.h"

struct guest_fs;

/* Opens the filesystem in D's bytes [OFFSET, OFFSET + LENGTH).  D must
 * outlive the guest_fs.  A filesystem of another kind is named in WHY
 * ("holds xfs; only ext2/3/4 can be read", "holds no filesystem vdisk
 * recognises; only ext2/3/4 can be read") and gives -EMEDIUMTYPE; a
 * damaged ext filesystem -EIO with WHY saying what libext2fs found.
 * Returns 0 and sets *OUT, or -errno. */
int guest_fs_open(const struct guest_disk *d, uint64_t offset,
		  uint64_t length, struct guest_fs **out, char *why,
		  size_t whylen);
void guest_fs_close(struct guest_fs *fs); /* NULL is fine */

/* What guest_fs_open noticed without failing ("journal replayed: 3
 * transactions, 41 blocks"), "" if nothing.  Valid until close. */
const char *guest_fs_notes(const struct guest_fs *fs);

/* The superblock's UUID as blkid prints it ("0f2c...-..."), for root=UUID=. */
void guest_fs_uuid(const struct guest_fs *fs, char out[37]);

uint64_t guest_fs_root(const struct guest_fs *fs);

struct guest_stat {
	uint64_t ino;
	uint32_t mode, nlink, uid, gid; /* mode: S_IF* | permission bits */
	uint64_t size, blocks512, rdev; /* rdev as makedev() builds it */
	struct timespec atime, mtime, ctime, btime; /* btime 0 if absent */
};
int guest_fs_stat(struct guest_fs *fs, uint64_t ino, struct guest_stat *st);

/* NAME (one component) in directory DIR. */
int guest_fs_lookup(struct guest_fs *fs, uint64_t dir, const char *name,
		    uint64_t *ino);

/* An absolute PATH ("/", "/etc/passwd"; "//" and trailing '/' allowed).
 * Symlinks are resolved inside the guest filesystem (absolute targets
 * from its root; ".." at the root stays there), at most 40 of them
 * (-ELOOP); the last component's only if FOLLOW_LAST.  A relative PATH is
 * -EINVAL. */
int guest_fs_resolve(struct guest_fs *fs, const char *path, int follow_last,
		     uint64_t *ino);

/* Calls FN for each entry of DIR, "." and ".." included, in on-disk order;
 * DTYPE is a DT_* value (DT_UNKNOWN without the filetype feature).  Names
 * holding '/' and entries with an impossible inode number are skipped (a
 * hostile directory must not name a path outside itself).  FN returning
 * non-zero stops the walk and that value is returned. */
typedef int (*guest_dirent_fn)(void *opaque, const char *name, uint64_t ino,
			       unsigned dtype);
int guest_fs_readdir(struct guest_fs *fs, uint64_t dir, guest_dirent_fn fn,
		     void *opaque);

/* Reads up to LEN bytes at OFF of regular file INO; holes and unwritten
 * extents read as zeroes.  Returns the count (short only at the end of
 * the file). */
ssize_t guest_fs_read(struct guest_fs *fs, uint64_t ino, void *buf,
		      size_t len, uint64_t off);

/* The target of symlink INO (fast, slow or inline), NUL-terminated in
 * BUF.  Returns its length; -ENAMETOOLONG if LEN cannot hold it and the
 * NUL. */
int guest_fs_readlink(struct guest_fs *fs, uint64_t ino, char *buf,
		      size_t len);

/* Like listxattr(2) and getxattr(2): LEN 0 returns the size needed;
 * -ERANGE if LEN is too small.  POSIX ACLs come in the Linux xattr form
 * (system.posix_acl_access), as getfattr shows them. */
ssize_t guest_fs_listxattr(struct guest_fs *fs, uint64_t ino, char *buf,
			   size_t len);
ssize_t guest_fs_getxattr(struct guest_fs *fs, uint64_t ino,
			  const char *name, void *buf, size_t len);

/* lseek(2)'s SEEK_DATA / SEEK_HOLE on regular file INO from OFF: -ENXIO
 * if OFF is at or past the end (SEEK_DATA also when only holes follow);
 * the end of the file counts as a hole.  Unwritten extents are holes. */
int guest_fs_seek(struct guest_fs *fs, uint64_t ino, uint64_t off,
		  int whence, uint64_t *out);

#endif
