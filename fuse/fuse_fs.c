/* The filesystem view of `vdisk mount --fs`: a guest's ext2/3/4
 * filesystem (guest/extfs.h) as a read-only low-level libfuse3 file
 * system.
 *
 * Inodes: a FUSE node id is the ext inode number, except that FUSE's root
 * (FUSE_ROOT_ID, 1) is the ext root (2) and the other way round, so the
 * mapping is one-to-one even if a hostile directory names ext inode 1.
 * st_ino is the ext number throughout, as a loop mount shows it.
 *
 * Concurrency: none.  libext2fs is not thread-safe (its block cache and
 * the guest_fs read buffers are shared), so this session runs libfuse's
 * one-thread loop and guest_fs is only ever called from that thread; no
 * lock is needed.  The page cache keeps repeated reads off it.
 *
 * Caching: the view never changes (a snapshot, or a volume we hold
 * read-only against writers), so entries and attributes are cached for a
 * day and open files keep their page cache.
 *
 * Guest data is untrusted: guest_fs checks what it reads and every error
 * it returns becomes the request's errno (reply_err() keeps it in range).
 */
#include "fuse/fuse_session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <unistd.h>

#include "guest/extfs.h"

/* The view never changes: let the kernel keep what it learnt. */
#define FS_TIMEOUT 86400.0
#define FS_BLOCK 4096u
/* Bounds of what a reply may carry (the kernel asks for no more). */
#define FS_READ_MAX (1024u * 1024u)
#define FS_XATTR_MAX 65536u
#define FS_LINK_MAX 65536u

struct vdfuse_fs {
	struct guest_fs *gfs;
	uint64_t root;   /* the ext root's inode number */
	uint64_t length; /* bytes of the filesystem's region */
	int foreground;
	const struct vdfuse_options *o;
};

/* One directory, read whole at opendir: readdir's offsets index it. */
struct dir_list {
	size_t count, cap;
	struct dir_entry {
		char *name;
		uint64_t ino;
		unsigned dtype;
	} *e;
};

#define fslog(f, ...) vdfuse_log((f)->foreground, LOG_NOTICE, __VA_ARGS__)

static struct vdfuse_fs *fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* A reader status (-errno) as a reply; anything odd is EIO. */
static void reply_err(fuse_req_t req, long rc)
{
	fuse_reply_err(req, rc < 0 && rc > -4096 ? (int)-rc : EIO);
}

static uint64_t to_ext(const struct vdfuse_fs *f, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return f->root;
	if (ino == f->root)
		return FUSE_ROOT_ID;
	return ino;
}

static fuse_ino_t to_fuse(const struct vdfuse_fs *f, uint64_t ext)
{
	return (fuse_ino_t)to_ext(f, (fuse_ino_t)ext); /* its own inverse */
}

static int fs_stat(struct vdfuse_fs *f, uint64_t ext, struct stat *st)
{
	struct guest_stat g;
	int rc = guest_fs_stat(f->gfs, ext, &g);

	if (rc < 0)
		return rc;
	memset(st, 0, sizeof(*st));
	st->st_ino = (ino_t)g.ino;
	st->st_mode = g.mode;
	st->st_nlink = g.nlink;
	st->st_uid = g.uid;
	st->st_gid = g.gid;
	st->st_size = (off_t)g.size;
	st->st_blocks = (blkcnt_t)g.blocks512;
	st->st_blksize = FS_BLOCK;
	st->st_rdev = (dev_t)g.rdev;
	st->st_atim = g.atime;
	st->st_mtim = g.mtime;
	st->st_ctim = g.ctime;
	return 0;
}

/* ---- operations -------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct vdfuse_fs *f = userdata;

	conn->max_read = FS_READ_MAX; /* as the session's max_read option */
	conn->max_readahead = FS_READ_MAX;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (f->o->ready)
		f->o->ready(f->o->opaque);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vdfuse_fs *f = fs(req);
	struct fuse_entry_param e;
	uint64_t ino;
	int rc;

	rc = guest_fs_lookup(f->gfs, to_ext(f, parent), name, &ino);
	if (rc == 0)
		rc = fs_stat(f, ino, &e.attr);
	if (rc < 0) {
		if (rc == -ENOENT) {
			/* A negative entry, cached as long as the others. */
			memset(&e, 0, sizeof(e));
			e.entry_timeout = FS_TIMEOUT;
			fuse_reply_entry(req, &e);
			return;
		}
		reply_err(req, rc);
		return;
	}
	e.ino = to_fuse(f, ino);
	e.generation = 0;
	e.attr_timeout = e.entry_timeout = FS_TIMEOUT;
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct vdfuse_fs *f = fs(req);
	struct stat st;
	int rc = fs_stat(f, to_ext(f, ino), &st);

	if (rc < 0)
		reply_err(req, rc);
	else
		fuse_reply_attr(req, &st, FS_TIMEOUT);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vdfuse_fs *f = fs(req);
	struct stat st;
	int rc;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	rc = fs_stat(f, to_ext(f, ino), &st);
	if (rc < 0) {
		reply_err(req, rc);
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	fi->keep_cache = 1;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct vdfuse_fs *f = fs(req);
	ssize_t n;
	char *buf;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (size > FS_READ_MAX)
		size = FS_READ_MAX;
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = guest_fs_read(f->gfs, to_ext(f, ino), buf, size, (uint64_t)off);
	if (n < 0)
		reply_err(req, n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct vdfuse_fs *f = fs(req);
	char *buf = malloc(FS_LINK_MAX);
	int rc;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = guest_fs_readlink(f->gfs, to_ext(f, ino), buf, FS_LINK_MAX);
	if (rc < 0)
		reply_err(req, rc);
	else
		fuse_reply_readlink(req, buf);
	free(buf);
}

static int collect(void *opaque, const char *name, uint64_t ino,
		   unsigned dtype)
{
	struct dir_list *d = opaque;

	if (d->count == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct dir_entry *e = realloc(d->e, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		d->e = e;
		d->cap = cap;
	}
	d->e[d->count].name = strdup(name);
	if (!d->e[d->count].name)
		return -ENOMEM;
	d->e[d->count].ino = ino;
	d->e[d->count].dtype = dtype;
	d->count++;
	return 0;
}

static void dir_free(struct dir_list *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->count; i++)
		free(d->e[i].name);
	free(d->e);
	free(d);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct vdfuse_fs *f = fs(req);
	struct dir_list *d = calloc(1, sizeof(*d));
	int rc;

	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = guest_fs_readdir(f->gfs, to_ext(f, ino), collect, d);
	if (rc != 0) {
		dir_free(d);
		reply_err(req, rc);
		return;
	}
	fi->fh = (uintptr_t)d;
	fi->keep_cache = 1;
	fi->cache_readdir = 1;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dir_free(d); /* interrupted: no releasedir follows */
}

/* readdir, and with PLUS readdirplus: each entry with its attributes, so a
 * walk (ls -l, find, diff -r) needs no lookup per name.  An entry whose
 * inode cannot be read goes without them (node id 0: the kernel looks it
 * up later and gets the error then). */
static void fill_dir(fuse_req_t req, size_t size, off_t off,
		     struct fuse_file_info *fi, int plus)
{
	struct vdfuse_fs *f = fs(req);
	const struct dir_list *d = (void *)(uintptr_t)fi->fh;
	char *buf;
	size_t used = 0;

	if (size > FS_READ_MAX)
		size = FS_READ_MAX;
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = off < 0 ? 0 : (size_t)off; i < d->count; i++) {
		const struct dir_entry *de = &d->e[i];
		struct fuse_entry_param e;
		size_t n;

		memset(&e, 0, sizeof(e));
		e.attr.st_ino = (ino_t)de->ino;
		e.attr.st_mode = de->dtype == DT_UNKNOWN ? 0 :
				 (mode_t)(de->dtype << 12);
		if (!plus) {
			n = fuse_add_direntry(req, buf + used, size - used,
					      de->name, &e.attr,
					      (off_t)(i + 1));
		} else {
			const int dot = strcmp(de->name, ".") == 0 ||
					strcmp(de->name, "..") == 0;

			if (!dot && fs_stat(f, de->ino, &e.attr) == 0) {
				e.ino = to_fuse(f, de->ino);
				e.attr_timeout = e.entry_timeout = FS_TIMEOUT;
			}
			n = fuse_add_direntry_plus(req, buf + used,
						   size - used, de->name, &e,
						   (off_t)(i + 1));
		}
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	fill_dir(req, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	fill_dir(req, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	dir_free((struct dir_list *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* The size-probe protocol of listxattr(2)/getxattr(2): SIZE 0 asks for
 * the length. */
static void reply_xattr(fuse_req_t req, ssize_t n, const char *buf,
			size_t size)
{
	if (n < 0)
		reply_err(req, n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

/* getxattr of NAME, or listxattr without one: the same buffer and reply. */
static void xattr_op(fuse_req_t req, fuse_ino_t ino, const char *name,
		     size_t size)
{
	struct vdfuse_fs *f = fs(req);
	char *buf = NULL;
	ssize_t n;

	if (size > FS_XATTR_MAX)
		size = FS_XATTR_MAX;
	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = name ? guest_fs_getxattr(f->gfs, to_ext(f, ino), name, buf, size)
		 : guest_fs_listxattr(f->gfs, to_ext(f, ino), buf, size);
	reply_xattr(req, n, buf, size);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	xattr_op(req, ino, NULL, size);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	xattr_op(req, ino, name, size);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct vdfuse_fs *f = fs(req);
	uint64_t out;
	int rc;

	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	rc = guest_fs_seek(f->gfs, to_ext(f, ino), (uint64_t)off, whence,
			   &out);
	if (rc < 0)
		reply_err(req, rc);
	else if (out > (uint64_t)INT64_MAX)
		fuse_reply_err(req, EIO);
	else
		fuse_reply_lseek(req, (off_t)out);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct vdfuse_fs *f = fs(req);
	struct statvfs sv;

	/* guest_fs does not give the superblock's counts: the region's size,
	 * nothing free (nothing can be written here anyway). */
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = FS_BLOCK;
	sv.f_blocks = f->length / FS_BLOCK;
	sv.f_namemax = 255;
	sv.f_flag = ST_RDONLY;
	fuse_reply_statfs(req, &sv);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct vdfuse_fs *f = fs(req);
	struct stat st;
	int rc = fs_stat(f, to_ext(f, ino), &st);

	if (rc < 0)
		reply_err(req, rc);
	else
		fuse_reply_err(req, (mask & W_OK) ? EROFS : 0);
}

/* ---- every write-type operation: EROFS --------------------------------- */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EROFS);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	fuse_reply_err(req, EROFS);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	fuse_reply_err(req, EROFS);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	fuse_reply_err(req, EROFS);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	fuse_reply_err(req, EROFS);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			 off_t off, off_t len, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.open = op_open,
	.read = op_read,
	.readlink = op_readlink,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.listxattr = op_listxattr,
	.getxattr = op_getxattr,
	.lseek = op_lseek,
	.statfs = op_statfs,
	.access = op_access,
	.setattr = op_setattr,
	.write = op_write,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
};

int vdfuse_serve_fs(struct guest_fs *gfs, uint64_t length,
		    const struct vdfuse_options *o, char *why, size_t whylen)
{
	struct vdfuse_options ro = *o;
	struct vdfuse_fs f;
	int rc;

	memset(&f, 0, sizeof(f));
	f.gfs = gfs;
	f.root = guest_fs_root(gfs);
	f.length = length;
	f.foreground = o->foreground;
	f.o = o;
	if (guest_fs_notes(gfs)[0])
		fslog(&f, "%s: %s", o->point, guest_fs_notes(gfs));
	ro.readonly = 1;
	rc = vdfuse_session_run(&fs_ops, sizeof(fs_ops), &f, &ro, "", 0, why,
				whylen);
	if (rc < -1) {
		fslog(&f, "session ended: %s", strerror(-rc));
		rc = -1;
	}
	return rc;
}
