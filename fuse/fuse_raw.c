/* The raw view of `vdisk mount`: a low-level libfuse3 file system.
 *
 * The root directory (inode 1) holds `disk` (inode 2: the whole volume, a
 * regular file of the volume's size) and `partN` (inode 2 + N) for each
 * valid entry of the volume's MBR or GPT table.
 *
 * Concurrency: requests run on fuse_session_loop_mt's worker threads, all
 * at once.  The read and write paths take no lock of ours: an open file
 * carries its byte range (struct open_file in fi->fh, fixed at open), and
 * the engine's handle is thread-safe.  Only the partition table, read again
 * when a lookup or readdir follows a write, sits behind parts_lock.
 *
 * Page cache: writable mounts use direct_io, read-only mounts the kernel's
 * page cache (keep_cache: a snapshot never changes).  Why: for a writable
 * volume direct_io is what keeps things right: `disk` and `partN` alias the
 * same bytes, and a kernel cache per file would go stale on one when the
 * other is written; nothing the kernel holds can be missing from a snapshot
 * taken from another shell (writes are write-through anyway without
 * writeback_cache, which we never ask for); and the engine gets whole
 * 1 MiB requests with no double caching (it has its own chunk cache).  For
 * a snapshot the page cache is safe, and measured (bench/fuse/run.sh,
 * snap-kernel against snap-direct, buffered psync reads of 1 GiB) it wins:
 * 387 MB/s sequential and 226k random 4 KiB reads a second against
 * 260 MB/s and 4.9k with direct_io, the kernel serving repeated reads
 * without a round trip.  VDISK_FUSE_DIRECT_IO=0|1 overrides the choice for
 * read-only mounts, for that measurement.
 *
 * Errors: every engine status becomes an errno in fuse_errno(), the one
 * place.
 */
#include "fuse/fuse_session.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fuse/vdfuse.h"
#include "fuse/fuse_parts.h"

#define ROOT_INO 1
#define DISK_INO 2
/* Largest request either way: 1 MiB (libfuse asks the kernel for
 * max_pages to match when it can; 6.x kernels allow 256 pages). */
#define IO_MAX (1024u * 1024u)

struct vdfuse {
	vd_volume *vol;
	uint64_t size;
	int readonly;
	int direct_io;
	int foreground;
	uid_t uid;
	gid_t gid;
	struct timespec mounted;
	const struct vdfuse_options *o;
	/* Set by every write: the table may have changed. */
	atomic_int parts_stale;
	pthread_mutex_t parts_lock;
	struct vdfuse_parts parts;
};

/* What an open file reads and writes: [off, off + len) of the volume. */
struct open_file {
	uint64_t off, len;
};

#define vdlog(f, ...) vdfuse_log((f)->foreground, LOG_WARNING, __VA_ARGS__)

/* The one mapping of engine statuses to errno for FUSE replies.  A range
 * error on a write is EFBIG (a file that cannot grow), on anything else
 * EINVAL; corruption is EIO for this request only, and logged. */
static int fuse_errno(struct vdfuse *f, int rc, const char *what,
		      uint64_t off, uint64_t len, int is_write)
{
	if (rc == VD_ERANGE)
		return is_write ? EFBIG : EINVAL;
	if (rc == VD_ECORRUPT)
		vdlog(f, "%s at offset %llu length %llu: %s", what,
		      (unsigned long long)off, (unsigned long long)len,
		      vd_last_error()[0] ? vd_last_error() : vd_strerror(rc));
	return vd_errno(rc);
}

static struct vdfuse *fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Reads the partition table again if a write may have changed it. */
static void parts_refresh(struct vdfuse *f)
{
	if (!atomic_exchange(&f->parts_stale, 0))
		return;
	pthread_mutex_lock(&f->parts_lock);
	vdfuse_parts_read(f->vol, &f->parts);
	if (f->parts.warning[0])
		vdlog(f, "partition table: %s", f->parts.warning);
	pthread_mutex_unlock(&f->parts_lock);
}

/* The byte range of file INO, or -ENOENT. */
static int file_range(struct vdfuse *f, fuse_ino_t ino, struct open_file *r)
{
	int rc = -ENOENT;

	if (ino == DISK_INO) {
		r->off = 0;
		r->len = f->size;
		return 0;
	}
	pthread_mutex_lock(&f->parts_lock);
	for (size_t i = 0; i < f->parts.count; i++) {
		if (f->parts.part[i].number + DISK_INO == ino) {
			r->off = f->parts.part[i].offset;
			r->len = f->parts.part[i].length;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&f->parts_lock);
	return rc;
}

struct alloc_sum {
	uint64_t bytes;
};

static int sum_data(void *opaque, uint64_t off, uint64_t len, unsigned type)
{
	struct alloc_sum *s = opaque;

	if (type == VD_EXTENT_DATA)
		s->bytes += len;
	return 0;
}

static int file_stat(struct vdfuse *f, fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = f->uid;
	st->st_gid = f->gid;
	st->st_atim = st->st_mtim = st->st_ctim = f->mounted;
	if (ino == ROOT_INO) {
		st->st_mode = S_IFDIR | (f->readonly ? 0555 : 0755);
		st->st_nlink = 2;
		return 0;
	}

	struct open_file r;
	struct alloc_sum s = { 0 };
	int rc = file_range(f, ino, &r);

	if (rc < 0)
		return rc;
	st->st_mode = S_IFREG | (f->readonly ? 0444 : 0644);
	st->st_nlink = 1;
	st->st_size = (off_t)r.len;
	st->st_blksize = (blksize_t)vd_volume_chunk_size(f->vol);
	/* Allocation in 512-byte units; when the walk fails (a damaged
	 * index), say "all allocated" rather than fail stat. */
	if (r.len && vd_volume_extents(f->vol, r.off, r.len, sum_data, &s) < 0)
		s.bytes = r.len;
	st->st_blocks = (blkcnt_t)((s.bytes + 511) / 512);
	return 0;
}

static double attr_timeout(fuse_ino_t ino)
{
	/* Partition entries come and go with the table: no caching. */
	return ino <= DISK_INO ? 1.0 : 0.0;
}

/* ---- operations -------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct vdfuse *f = userdata;

	conn->max_write = IO_MAX;
	conn->max_read = IO_MAX;
	conn->max_readahead = IO_MAX;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (f->o->ready)
		f->o->ready(f->o->opaque);
}

static int part_ino(const char *name, fuse_ino_t *ino)
{
	char *end;
	unsigned long n;

	if (strncmp(name, "part", 4) || name[4] < '1' || name[4] > '9')
		return -1;
	n = strtoul(name + 4, &end, 10);
	if (*end || n > 4096)
		return -1;
	*ino = DISK_INO + n;
	return 0;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vdfuse *f = fs(req);
	struct fuse_entry_param e;
	fuse_ino_t ino;
	int rc;

	if (parent != ROOT_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (strcmp(name, "disk") == 0) {
		ino = DISK_INO;
	} else if (part_ino(name, &ino) == 0) {
		parts_refresh(f);
	} else {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	rc = file_stat(f, ino, &e.attr);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	e.ino = ino;
	e.attr_timeout = e.entry_timeout = attr_timeout(ino);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct stat st;
	int rc = file_stat(fs(req), ino, &st);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, attr_timeout(ino));
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct vdfuse *f = fs(req);
	struct stat st;
	int rc = file_stat(f, ino, &st);

	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* Times are accepted and forgotten (touch, cp -p); the size of a
	 * disk is not a file's to change (vdisk resize), so a truncation is
	 * refused rather than carried out; owners and modes are fixed. */
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID |
		      FUSE_SET_ATTR_GID)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size != st.st_size) {
		fuse_reply_err(req, f->readonly ? EROFS : EPERM);
		return;
	}
	fuse_reply_attr(req, &st, attr_timeout(ino));
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vdfuse *f = fs(req);
	struct open_file *of;
	int rc;

	if (ino == ROOT_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (f->readonly && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	of = malloc(sizeof(*of));
	if (!of) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = file_range(f, ino, of);
	if (rc < 0) {
		free(of);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)of;
	fi->direct_io = f->direct_io;
	fi->keep_cache = !f->direct_io;
	fi->noflush = f->readonly;
	if (fuse_reply_open(req, fi) == -ENOENT)
		free(of); /* the open was interrupted: no release follows */
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct vdfuse *f = fs(req);
	int rc = f->readonly ? 0 : vd_volume_flush(f->vol);

	free((struct open_file *)(uintptr_t)fi->fh);
	fuse_reply_err(req, rc < 0 ? fuse_errno(f, rc, "flush", 0, 0, 1) : 0);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct vdfuse *f = fs(req);
	const struct open_file *of = (void *)(uintptr_t)fi->fh;
	uint64_t uoff = (uint64_t)off;
	char *buf;
	int rc;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (uoff >= of->len || size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > of->len - uoff)
		size = (size_t)(of->len - uoff);
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = vd_volume_pread(f->vol, buf, size, of->off + uoff);
	if (rc < 0)
		fuse_reply_err(req, fuse_errno(f, rc, "read", of->off + uoff,
					       size, 0));
	else
		fuse_reply_buf(req, buf, size);
	free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct vdfuse *f = fs(req);
	const struct open_file *of = (void *)(uintptr_t)fi->fh;
	uint64_t uoff = (uint64_t)off;
	int rc;

	if (f->readonly) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (size && uoff >= of->len) {
		fuse_reply_err(req, EFBIG);
		return;
	}
	if (size > of->len - uoff)
		size = (size_t)(of->len - uoff); /* a short write at the end */
	rc = vd_volume_pwrite(f->vol, buf, size, of->off + uoff);
	atomic_store(&f->parts_stale, 1);
	if (rc < 0)
		fuse_reply_err(req, fuse_errno(f, rc, "write", of->off + uoff,
					       size, 1));
	else
		fuse_reply_write(req, size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vdfuse *f = fs(req);
	int rc = f->readonly ? 0 : vd_volume_flush(f->vol);

	fuse_reply_err(req, rc < 0 ? fuse_errno(f, rc, "flush", 0, 0, 1) : 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	op_flush(req, ino, fi);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			 off_t off, off_t len, struct fuse_file_info *fi)
{
	struct vdfuse *f = fs(req);
	const struct open_file *of = (void *)(uintptr_t)fi->fh;
	const int keep = mode & FALLOC_FL_KEEP_SIZE;
	uint64_t uoff = (uint64_t)off, ulen = (uint64_t)len;
	int rc;

	if (f->readonly) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	mode &= ~FALLOC_FL_KEEP_SIZE;
	/* Past the end: KEEP_SIZE clips, anything else would grow the file. */
	if (uoff >= of->len || ulen > of->len - uoff) {
		if (!keep && mode != FALLOC_FL_PUNCH_HOLE) {
			fuse_reply_err(req, EFBIG);
			return;
		}
		ulen = uoff >= of->len ? 0 : of->len - uoff;
	}
	if (mode == 0) { /* allocate: every byte of a volume is writable */
		fuse_reply_err(req, 0);
		return;
	}
	if (mode != FALLOC_FL_PUNCH_HOLE && mode != FALLOC_FL_ZERO_RANGE) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	rc = ulen ? vd_volume_zero(f->vol, of->off + uoff, ulen) : 0;
	atomic_store(&f->parts_stale, 1);
	fuse_reply_err(req, rc < 0 ? fuse_errno(f, rc, "zero", of->off + uoff,
						ulen, 1) : 0);
}

struct seek_ctx {
	unsigned want;
	uint64_t found;
};

static int seek_cb(void *opaque, uint64_t off, uint64_t len, unsigned type)
{
	struct seek_ctx *s = opaque;

	if (type != s->want)
		return 0;
	s->found = off;
	return 1;
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct vdfuse *f = fs(req);
	const struct open_file *of = (void *)(uintptr_t)fi->fh;
	struct seek_ctx s;
	uint64_t uoff = (uint64_t)off;
	int rc;

	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (off < 0 || uoff >= of->len) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	s.want = whence == SEEK_DATA ? VD_EXTENT_DATA : VD_EXTENT_HOLE;
	rc = vd_volume_extents(f->vol, of->off + uoff, of->len - uoff, seek_cb,
			       &s);
	if (rc < 0) {
		fuse_reply_err(req, fuse_errno(f, rc, "lseek", of->off + uoff,
					       of->len - uoff, 0));
	} else if (rc == 1) {
		fuse_reply_lseek(req, (off_t)(s.found - of->off));
	} else if (whence == SEEK_HOLE) {
		fuse_reply_lseek(req, (off_t)of->len); /* the implicit hole */
	} else {
		fuse_reply_err(req, ENXIO);
	}
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	if (ino != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	parts_refresh(fs(req));
	fuse_reply_open(req, fi);
}

static size_t add_entry(fuse_req_t req, char *buf, size_t room,
			const char *name, fuse_ino_t ino, mode_t mode,
			off_t next)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_ino = ino;
	st.st_mode = mode;
	return fuse_add_direntry(req, buf, room, name, &st, next);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct vdfuse *f = fs(req);
	char *buf = malloc(size);
	size_t used = 0, n;
	off_t i = 0;
	char name[32];

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Entries: ".", "..", "disk", then the partitions; OFF counts them. */
	pthread_mutex_lock(&f->parts_lock);
	const size_t total = 3 + f->parts.count;
	for (i = off; i < (off_t)total; i++) {
		if (i == 0)
			n = add_entry(req, buf + used, size - used, ".",
				      ROOT_INO, S_IFDIR, i + 1);
		else if (i == 1)
			n = add_entry(req, buf + used, size - used, "..",
				      ROOT_INO, S_IFDIR, i + 1);
		else if (i == 2)
			n = add_entry(req, buf + used, size - used, "disk",
				      DISK_INO, S_IFREG, i + 1);
		else {
			const unsigned num = f->parts.part[i - 3].number;

			snprintf(name, sizeof(name), "part%u", num);
			n = add_entry(req, buf + used, size - used, name,
				      DISK_INO + num, S_IFREG, i + 1);
		}
		if (n > size - used)
			break;
		used += n;
	}
	pthread_mutex_unlock(&f->parts_lock);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct vdfuse *f = fs(req);
	struct statvfs sv;
	const uint32_t bs = vd_volume_chunk_size(f->vol);

	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = bs;
	sv.f_blocks = f->size / bs;
	sv.f_files = 2 + f->parts.count;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops raw_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.statfs = op_statfs,
	.fallocate = op_fallocate,
	.lseek = op_lseek,
};

/* ---- the session ------------------------------------------------------- */

int vdfuse_serve(vd_volume *v, const struct vdfuse_options *o, char *why,
		 size_t whylen)
{
	struct vdfuse f;
	int rc;

	memset(&f, 0, sizeof(f));
	f.vol = v;
	f.size = vd_volume_size(v);
	f.readonly = o->readonly || vd_volume_is_readonly(v);
	f.direct_io = !f.readonly;
	/* For measuring the choice (bench/fuse/run.sh): 1 or 0 forces it. */
	if (getenv("VDISK_FUSE_DIRECT_IO") && f.readonly)
		f.direct_io = atoi(getenv("VDISK_FUSE_DIRECT_IO")) != 0;
	f.foreground = o->foreground;
	f.uid = getuid();
	f.gid = getgid();
	f.o = o;
	clock_gettime(CLOCK_REALTIME, &f.mounted);
	pthread_mutex_init(&f.parts_lock, NULL);
	atomic_init(&f.parts_stale, 1);
	parts_refresh(&f);

	struct vdfuse_options ro = *o;

	ro.readonly = f.readonly;
	rc = vdfuse_session_run(&raw_ops, sizeof(raw_ops), &f, &ro, "", 1,
				why, whylen);
	if (rc < -1) {
		vdlog(&f, "session ended: %s", strerror(-rc));
		rc = -1;
	}
	pthread_mutex_destroy(&f.parts_lock);
	return rc;
}
