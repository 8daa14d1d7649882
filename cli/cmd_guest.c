/* cli/cmd_guest.c: vdisk ls, cat and get: a guest's ext2/3/4 files read
 * straight from a volume or snapshot (guest/), no mount, no root, no VM.
 *
 * The guest filesystem is untrusted.  guest/ never hands out a name with
 * '/' in it; on top of that, get creates everything below DEST relative to
 * directory descriptors with O_NOFOLLOW / O_EXCL, so no entry of the guest
 * (a symlink named like a later directory, a repeated name) can make it
 * write outside DEST.  Tree walks remember the directories they entered
 * (hard-linked directory loops) and stop at a depth bound. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include "cli/cli.h"
#include "guest/point.h"

#define DEPTH_MAX 256
#define COPY_BUF (1u << 20)

/* ---- shared ------------------------------------------------------------- */

struct guest_cmd {
	struct cli_ctx *ctx;
	vd_store *store;
	struct guest_view *view;
	struct guest_fs *fs;
	const char *spec;
};

/* Opens the point SPEC; prints the failure. */
static int guest_open(struct guest_cmd *g, struct cli_ctx *ctx,
		      const char *spec)
{
	struct guest_point p;
	char why[GUEST_WHY_MAX] = "";
	int rc;

	g->ctx = ctx;
	g->spec = spec;
	rc = guest_point_parse(spec, &p, why, sizeof(why));
	if (rc < 0)
		return cli_usage_error(ctx, "'%s': %s", spec, why);
	if ((rc = cli_store_open(ctx, NULL, &g->store)))
		return rc;
	rc = guest_view_open(g->store, &p, &g->view, why, sizeof(why));
	if (rc < 0) {
		cli_error(ctx, "'%s': %s", spec, why);
		vd_store_close(g->store);
		g->store = NULL;
		return rc == VD_ENAME ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
	}
	g->fs = g->view->fs;
	/* Bad entries of the table were skipped; say so once. */
	if (p.part && g->view->table.warning[0])
		cli_error(ctx, "'%s': note: partition table: %s", spec,
			  g->view->table.warning);
	return 0;
}

static void guest_close(struct guest_cmd *g)
{
	guest_view_close(g->view);
	vd_store_close(g->store);
}

static int resolve(struct guest_cmd *g, const char *path, int follow,
		   uint64_t *ino)
{
	int rc;

	if (path[0] != '/') {
		cli_error(g->ctx, "'%s': guest paths are absolute (start "
			  "with '/')", path);
		return CLI_EXIT_USAGE;
	}
	rc = guest_fs_resolve(g->fs, path, follow, ino);
	if (rc < 0) {
		cli_error(g->ctx, "'%s:%s': %s", g->spec, path, strerror(-rc));
		return CLI_EXIT_ERROR;
	}
	return 0;
}

/* A directory's entries, sorted by name, "." and ".." left out. */
struct entry {
	char *name;
	uint64_t ino;
};

struct entries {
	struct entry *v;
	size_t n, cap;
};

static int collect(void *opaque, const char *name, uint64_t ino,
		   unsigned dtype)
{
	struct entries *e = opaque;

	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (e->n == e->cap) {
		const size_t cap = e->cap ? e->cap * 2 : 32;
		struct entry *v = realloc(e->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		e->v = v;
		e->cap = cap;
	}
	e->v[e->n].name = strdup(name);
	if (!e->v[e->n].name)
		return -ENOMEM;
	e->v[e->n++].ino = ino;
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name,
		      ((const struct entry *)b)->name);
}

static void entries_free(struct entries *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i].name);
	free(e->v);
	memset(e, 0, sizeof(*e));
}

static int list_dir(struct guest_fs *fs, uint64_t dir, struct entries *e)
{
	int rc = guest_fs_readdir(fs, dir, collect, e);

	if (rc < 0) {
		entries_free(e);
		return rc;
	}
	if (e->n > 1)
		qsort(e->v, e->n, sizeof(*e->v), by_name);
	return 0;
}

/* Directory inodes entered on the way down (loop guard). */
struct seen {
	uint64_t *v;
	size_t n, cap;
};

static int seen_add(struct seen *s, uint64_t ino)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == ino)
			return 1;
	if (s->n == s->cap) {
		const size_t cap = s->cap ? s->cap * 2 : 64;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ino;
	return 0;
}

static char *join(const char *dir, const char *name)
{
	const size_t dl = strlen(dir);
	char *p = malloc(dl + strlen(name) + 2);

	if (p)
		sprintf(p, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/",
			name);
	return p;
}

static const char *type_name(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return "file";
	case S_IFDIR: return "dir";
	case S_IFLNK: return "symlink";
	case S_IFCHR: return "chr";
	case S_IFBLK: return "blk";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "sock";
	default: return "unknown";
	}
}

/* ---- ls -------------------------------------------------------------- */

static const char ls_help[] =
	"Usage: vdisk ls [OPTIONS] VOL[@SNAP][:PART] [PATH]\n"
	"List PATH (default /) of the ext2/ext3/ext4 filesystem on VOL or\n"
	"VOL@SNAP (the whole disk, or partition PART of its MBR or GPT\n"
	"table), read straight from the store: no mount, no root.  A dirty\n"
	"journal is replayed in memory first, so this is the view the guest\n"
	"would see after recovery.  A volume held for writing by another\n"
	"process is refused: list a snapshot of it.\n"
	"\n"
	"  -l, --long       mode, links, owner, group, size, mtime, name\n"
	"  -R, --recursive  the whole tree below PATH, one path per line\n"
	"  -j, --json       JSON output\n"
	"  -h, --help       show this help\n"
	"      --store DIR  the store (default $VDISK_STORE)\n";

struct ls {
	struct guest_cmd *g;
	int longfmt, recursive, json;
	struct cli_json j;
	struct seen seen;
	int errors;
};

static void mode_string(uint32_t mode, char out[11])
{
	static const char types[] = "?pc?d?b?-?l?s???";
	const char *rwx = "rwxrwxrwx";

	out[0] = types[(mode >> 12) & 15];
	for (int i = 0; i < 9; i++)
		out[1 + i] = mode & (0400u >> i) ? rwx[i] : '-';
	if (mode & S_ISUID)
		out[3] = mode & S_IXUSR ? 's' : 'S';
	if (mode & S_ISGID)
		out[6] = mode & S_IXGRP ? 's' : 'S';
	if (mode & S_ISVTX)
		out[9] = mode & S_IXOTH ? 't' : 'T';
	out[10] = 0;
}

static void json_time(struct cli_json *j, const char *key,
		      const struct timespec *ts)
{
	char k[32];

	cli_json_key(j, key);
	cli_json_i64(j, ts->tv_sec);
	snprintf(k, sizeof(k), "%s_nsec", key);
	cli_json_key(j, k);
	cli_json_i64(j, ts->tv_nsec);
}

/* Prints one entry: PATH is what to show (the name, or the path with -R). */
static void ls_print(struct ls *l, const char *path, const char *name,
		     uint64_t ino)
{
	struct guest_stat st;
	char target[PATH_MAX] = "";
	int rc = guest_fs_stat(l->g->fs, ino, &st);

	if (rc < 0) {
		cli_error(l->g->ctx, "'%s': %s", path, strerror(-rc));
		l->errors++;
		return;
	}
	if (S_ISLNK(st.mode) && (l->longfmt || l->json) &&
	    (rc = guest_fs_readlink(l->g->fs, ino, target, sizeof(target))) < 0) {
		cli_error(l->g->ctx, "'%s': reading the link: %s", path,
			  strerror(-rc));
		l->errors++;
		target[0] = 0;
	}
	if (l->json) {
		struct cli_json *j = &l->j;
		cli_json_begin_object(j);
		cli_json_key(j, "path");
		cli_json_string(j, path);
		cli_json_key(j, "name");
		cli_json_string(j, name);
		cli_json_key(j, "ino");
		cli_json_u64(j, st.ino);
		cli_json_key(j, "type");
		cli_json_string(j, type_name(st.mode));
		cli_json_key(j, "mode");
		cli_json_u64(j, st.mode & 07777);
		cli_json_key(j, "nlink");
		cli_json_u64(j, st.nlink);
		cli_json_key(j, "uid");
		cli_json_u64(j, st.uid);
		cli_json_key(j, "gid");
		cli_json_u64(j, st.gid);
		cli_json_key(j, "size");
		cli_json_u64(j, st.size);
		cli_json_key(j, "blocks");
		cli_json_u64(j, st.blocks512);
		json_time(j, "mtime", &st.mtime);
		json_time(j, "atime", &st.atime);
		json_time(j, "ctime", &st.ctime);
		json_time(j, "btime", &st.btime);
		cli_json_key(j, "target");
		cli_json_string(j, S_ISLNK(st.mode) ? target : NULL);
		cli_json_key(j, "rdev_major");
		if (S_ISCHR(st.mode) || S_ISBLK(st.mode))
			cli_json_u64(j, major(st.rdev));
		else
			cli_json_null(j);
		cli_json_key(j, "rdev_minor");
		if (S_ISCHR(st.mode) || S_ISBLK(st.mode))
			cli_json_u64(j, minor(st.rdev));
		else
			cli_json_null(j);
		cli_json_end_object(j);
		return;
	}
	if (l->longfmt) {
		char mode[11], when[32], size[48];
		struct tm tm;
		const time_t t = st.mtime.tv_sec;

		mode_string(st.mode, mode);
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		if (S_ISCHR(st.mode) || S_ISBLK(st.mode))
			snprintf(size, sizeof(size), "%u, %u",
				 major(st.rdev), minor(st.rdev));
		else
			snprintf(size, sizeof(size), "%" PRIu64, st.size);
		printf("%s %" PRIu32 " %" PRIu32 " %" PRIu32 " %s %s.%09ld %s%s%s\n",
		       mode, st.nlink, st.uid, st.gid, size, when,
		       (long)st.mtime.tv_nsec, path,
		       S_ISLNK(st.mode) ? " -> " : "", target);
		return;
	}
	printf("%s\n", path);
}

static int ls_tree(struct ls *l, const char *path, uint64_t dir, int depth)
{
	struct entries e = { 0 };
	int rc;

	if (depth > DEPTH_MAX) {
		cli_error(l->g->ctx, "'%s': deeper than %d directories; not "
			  "listed", path, DEPTH_MAX);
		l->errors++;
		return 0;
	}
	rc = seen_add(&l->seen, dir);
	if (rc < 0)
		return rc;
	if (rc == 1) {
		cli_error(l->g->ctx, "'%s': directory loop (inode %" PRIu64
			  " already listed); not descended", path, dir);
		l->errors++;
		return 0;
	}
	rc = list_dir(l->g->fs, dir, &e);
	if (rc < 0) {
		if (rc == -ENOMEM)
			return rc;
		cli_error(l->g->ctx, "'%s': %s", path, strerror(-rc));
		l->errors++;
		return 0;
	}
	for (size_t i = 0; i < e.n && rc == 0; i++) {
		char *sub = join(path, e.v[i].name);
		struct guest_stat st;
		if (!sub) {
			rc = -ENOMEM;
			break;
		}
		ls_print(l, l->recursive ? sub : e.v[i].name, e.v[i].name,
			 e.v[i].ino);
		if (l->recursive && guest_fs_stat(l->g->fs, e.v[i].ino, &st) == 0 &&
		    S_ISDIR(st.mode))
			rc = ls_tree(l, sub, e.v[i].ino, depth + 1);
		free(sub);
	}
	entries_free(&e);
	return rc;
}

int cmd_ls(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "long", no_argument, NULL, 'l' },
		{ "recursive", no_argument, NULL, 'R' },
		{ "json", no_argument, NULL, 'j' },
		{ 0 },
	};
	struct guest_cmd g = { 0 };
	struct ls l = { .g = &g };
	struct guest_stat st;
	const char *path;
	uint64_t ino;
	int c, rc;

	while ((c = cli_getopt(ctx, argc, argv, "lRj", longopts, ls_help)) != -1) {
		switch (c) {
		case 'l': l.longfmt = 1; break;
		case 'R': l.recursive = 1; break;
		case 'j': l.json = 1; break;
		case CLI_GETOPT_HELP: return CLI_EXIT_OK;
		default: return CLI_EXIT_USAGE;
		}
	}
	if ((rc = cli_operands(ctx, argc, argv, 1, 2)))
		return rc;
	path = optind + 1 < argc ? argv[optind + 1] : "/";
	if (path[0] != '/')
		return cli_usage_error(ctx, "'%s': guest paths are absolute "
				       "(start with '/')", path);
	if ((rc = guest_open(&g, ctx, argv[optind])))
		return rc;
	/* ls -l of a symlink shows the link; otherwise a link to a
	 * directory lists the directory. */
	rc = resolve(&g, path, 0, &ino);
	if (!rc && guest_fs_stat(g.fs, ino, &st) == 0 && S_ISLNK(st.mode) &&
	    !l.longfmt && !l.json)
		rc = resolve(&g, path, 1, &ino);
	if (rc)
		goto out;
	rc = guest_fs_stat(g.fs, ino, &st);
	if (rc < 0) {
		cli_error(ctx, "'%s:%s': %s", g.spec, path, strerror(-rc));
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	if (l.json) {
		cli_json_init(&l.j, stdout);
		cli_json_begin_array(&l.j);
	}
	if (S_ISDIR(st.mode)) {
		rc = ls_tree(&l, path, ino, 0);
	} else {
		const char *base = strrchr(path, '/');
		ls_print(&l, path, base && base[1] ? base + 1 : path, ino);
		rc = 0;
	}
	if (l.json)
		cli_json_end_array(&l.j);
	if (rc < 0) {
		cli_error(ctx, "%s", strerror(-rc));
		rc = CLI_EXIT_ERROR;
	} else {
		rc = l.errors ? CLI_EXIT_ERROR : CLI_EXIT_OK;
	}
out:
	free(l.seen.v);
	guest_close(&g);
	return rc;
}

/* ---- cat ------------------------------------------------------------- */

static const char cat_help[] =
	"Usage: vdisk cat [OPTIONS] VOL[@SNAP][:PART] PATH\n"
	"Write the guest file PATH of the ext2/ext3/ext4 filesystem on VOL or\n"
	"VOL@SNAP (the whole disk, or partition PART) to standard output.\n"
	"Symlinks are followed inside the guest filesystem.\n"
	"\n"
	"  -h, --help       show this help\n"
	"      --store DIR  the store (default $VDISK_STORE)\n";

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		const ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int need_file(struct guest_cmd *g, const char *path, uint64_t ino,
		     struct guest_stat *st)
{
	int rc = guest_fs_stat(g->fs, ino, st);

	if (rc < 0) {
		cli_error(g->ctx, "'%s:%s': %s", g->spec, path, strerror(-rc));
		return CLI_EXIT_ERROR;
	}
	if (S_ISDIR(st->mode)) {
		cli_error(g->ctx, "'%s:%s': is a directory", g->spec, path);
		return CLI_EXIT_ERROR;
	}
	if (!S_ISREG(st->mode)) {
		cli_error(g->ctx, "'%s:%s': not a regular file (%s)", g->spec,
			  path, type_name(st->mode));
		return CLI_EXIT_ERROR;
	}
	return 0;
}

int cmd_cat(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { { 0 } };
	struct guest_cmd g = { 0 };
	struct guest_stat st;
	const char *path;
	uint64_t ino, off = 0;
	char *buf = NULL;
	int c, rc;

	while ((c = cli_getopt(ctx, argc, argv, "", longopts, cat_help)) != -1) {
		switch (c) {
		case CLI_GETOPT_HELP: return CLI_EXIT_OK;
		default: return CLI_EXIT_USAGE;
		}
	}
	if ((rc = cli_operands(ctx, argc, argv, 2, 2)))
		return rc;
	path = argv[optind + 1];
	if (path[0] != '/')
		return cli_usage_error(ctx, "'%s': guest paths are absolute "
				       "(start with '/')", path);
	if ((rc = guest_open(&g, ctx, argv[optind])))
		return rc;
	if ((rc = resolve(&g, path, 1, &ino)) || (rc = need_file(&g, path, ino, &st)))
		goto out;
	buf = malloc(COPY_BUF);
	if (!buf) {
		cli_error(ctx, "%s", strerror(ENOMEM));
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	while (off < st.size) {
		const ssize_t n = guest_fs_read(g.fs, ino, buf, COPY_BUF, off);
		int err;
		if (n <= 0) {
			cli_error(ctx, "'%s:%s': at byte %" PRIu64 ": %s",
				  g.spec, path, off,
				  n < 0 ? strerror((int)-n) : "file ends early");
			rc = CLI_EXIT_ERROR;
			goto out;
		}
		err = write_all(STDOUT_FILENO, buf, (size_t)n);
		if (err < 0) {
			cli_error(ctx, "standard output: %s", strerror(-err));
			rc = CLI_EXIT_ERROR;
			goto out;
		}
		off += (uint64_t)n;
	}
	rc = CLI_EXIT_OK;
out:
	free(buf);
	guest_close(&g);
	return rc;
}

/* ---- get --------------------------------------------------------------- */

static const char get_help[] =
	"Usage: vdisk get [OPTIONS] VOL[@SNAP][:PART] PATH DEST\n"
	"Copy the guest file PATH of the ext2/ext3/ext4 filesystem on VOL or\n"
	"VOL@SNAP (the whole disk, or partition PART) to DEST (into it when\n"
	"DEST is a directory), keeping mode, owner (when run as root), times,\n"
	"extended attributes and holes.  With -r a directory is copied as a\n"
	"tree: symlinks stay symlinks, hard links stay hard links, device\n"
	"nodes and FIFOs are made where permitted.  Nothing already existing\n"
	"below DEST is overwritten inside a tree.\n"
	"\n"
	"  -r, --recursive  copy directories and everything below them\n"
	"  -h, --help       show this help\n"
	"      --store DIR  the store (default $VDISK_STORE)\n";

struct link_seen {
	uint64_t ino;
	char *rel; /* the first copy, relative to the top's directory */
};

struct get {
	struct guest_cmd *g;
	int recursive;
	char *buf;
	struct seen seen;
	struct link_seen *links;
	size_t nlinks, caplinks;
	int topfd; /* the directory the copy goes into */
	int errors;
	int is_root;
};

/* A problem with one entry: reported, counted, the copy goes on. */
static void get_warn(struct get *gt, const char *path, const char *what,
		     int err)
{
	cli_error(gt->g->ctx, "'%s': %s: %s", path, what, strerror(err));
	gt->errors++;
}

static int copy_xattrs(struct get *gt, const char *path, uint64_t ino,
		       int fd, int dirfd, const char *name, int is_link)
{
	ssize_t n = guest_fs_listxattr(gt->g->fs, ino, NULL, 0);
	char *list, *value = NULL;

	if (n <= 0) {
		if (n < 0)
			get_warn(gt, path, "listing extended attributes",
				 (int)-n);
		return 0;
	}
	list = malloc((size_t)n);
	if (!list)
		return -ENOMEM;
	n = guest_fs_listxattr(gt->g->fs, ino, list, (size_t)n);
	if (n < 0) {
		get_warn(gt, path, "listing extended attributes", (int)-n);
		free(list);
		return 0;
	}
	for (char *k = list; k < list + n; k += strlen(k) + 1) {
		ssize_t vlen = guest_fs_getxattr(gt->g->fs, ino, k, NULL, 0);
		int rc;
		if (vlen < 0) {
			get_warn(gt, path, k, (int)-vlen);
			continue;
		}
		free(value);
		value = malloc(vlen ? (size_t)vlen : 1);
		if (!value) {
			free(list);
			return -ENOMEM;
		}
		vlen = guest_fs_getxattr(gt->g->fs, ino, k, value, (size_t)vlen);
		if (vlen < 0) {
			get_warn(gt, path, k, (int)-vlen);
			continue;
		}
		if (is_link) {
			/* No f/l*xattr at a directory fd: symlink
			 * xattrs are rare (security.*); go by path via
			 * /proc/self/fd. */
			char p[PATH_MAX];
			snprintf(p, sizeof(p), "/proc/self/fd/%d/%s", dirfd,
				 name);
			rc = lsetxattr(p, k, value, (size_t)vlen, 0);
		} else {
			rc = fsetxattr(fd, k, value, (size_t)vlen, 0);
		}
		if (rc < 0 && errno != ENOTSUP && errno != EPERM)
			get_warn(gt, path, k, errno);
	}
	free(value);
	free(list);
	return 0;
}

/* Owner, mode, times and xattrs of a copy, after its contents. */
static int finish(struct get *gt, const char *path, const struct guest_stat *st,
		  int fd, int dirfd, const char *name)
{
	const struct timespec times[2] = { st->atime, st->mtime };
	const int is_link = S_ISLNK(st->mode);
	int rc;

	if (gt->is_root) {
		rc = is_link ? fchownat(dirfd, name, st->uid, st->gid,
					AT_SYMLINK_NOFOLLOW) :
			       fchown(fd, st->uid, st->gid);
		if (rc < 0)
			get_warn(gt, path, "setting the owner", errno);
	}
	rc = copy_xattrs(gt, path, st->ino, fd, dirfd, name, is_link);
	if (rc < 0)
		return rc;
	if (!is_link && fchmod(fd, st->mode & 07777) < 0)
		get_warn(gt, path, "setting the mode", errno);
	rc = is_link ? utimensat(dirfd, name, times, AT_SYMLINK_NOFOLLOW) :
		       futimens(fd, times);
	if (rc < 0)
		get_warn(gt, path, "setting the times", errno);
	return 0;
}

/* Copies regular file INO into FD, leaving its holes as holes. */
static int copy_data(struct get *gt, const char *path, uint64_t ino,
		     uint64_t size, int fd)
{
	uint64_t off = 0;

	while (off < size) {
		uint64_t data, hole;
		int rc = guest_fs_seek(gt->g->fs, ino, off, SEEK_DATA, &data);
		if (rc == -ENXIO)
			break;
		if (rc == 0)
			rc = guest_fs_seek(gt->g->fs, ino, data, SEEK_HOLE,
					   &hole);
		if (rc < 0) {
			/* No allocation map: copy it all. */
			data = off;
			hole = size;
		}
		for (off = data; off < hole;) {
			const size_t want = hole - off < COPY_BUF ?
					    (size_t)(hole - off) : COPY_BUF;
			const ssize_t n = guest_fs_read(gt->g->fs, ino, gt->buf,
							want, off);
			if (n <= 0) {
				get_warn(gt, path, "reading", n < 0 ?
					 (int)-n : EIO);
				return 0;
			}
			if (cli_is_zero(gt->buf, (size_t)n)) {
				off += (uint64_t)n;
				continue;
			}
			if (pwrite(fd, gt->buf, (size_t)n, (off_t)off) != n) {
				get_warn(gt, path, "writing", errno ? errno : EIO);
				return 0;
			}
			off += (uint64_t)n;
		}
	}
	if (ftruncate(fd, (off_t)size) < 0)
		get_warn(gt, path, "setting the size", errno);
	return 0;
}

/* A second name of an inode already copied: a hard link to the copy. */
static int hard_link(struct get *gt, const char *path, const struct guest_stat *st,
		     int dirfd, const char *name)
{
	for (size_t i = 0; i < gt->nlinks; i++) {
		const struct link_seen *s = &gt->links[i];
		if (s->ino != st->ino)
			continue;
		/* REL runs through directories this copy made (a name
		 * that existed already failed with EEXIST), so no guest
		 * symlink lies on it. */
		if (linkat(gt->topfd, s->rel, dirfd, name, 0) < 0)
			get_warn(gt, path, "making the hard link", errno);
		return 1;
	}
	return 0;
}

static int remember_link(struct get *gt, const struct guest_stat *st,
			 const char *rel)
{
	struct link_seen *s;

	if (gt->nlinks == gt->caplinks) {
		const size_t cap = gt->caplinks ? gt->caplinks * 2 : 16;
		struct link_seen *v = realloc(gt->links, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		gt->links = v;
		gt->caplinks = cap;
	}
	s = &gt->links[gt->nlinks];
	s->rel = strdup(rel);
	if (!s->rel)
		return -ENOMEM;
	s->ino = st->ino;
	gt->nlinks++;
	return 0;
}

static int get_entry(struct get *gt, const char *path, const char *rel,
		     uint64_t ino, int dirfd, const char *name, int top,
		     int depth);

static int get_dir(struct get *gt, const char *path, const char *rel,
		   const struct guest_stat *st, int dirfd, const char *name,
		   int top, int depth)
{
	struct entries e = { 0 };
	int fd, rc;

	if (depth > DEPTH_MAX) {
		get_warn(gt, path, "not copied", ELOOP);
		return 0;
	}
	rc = seen_add(&gt->seen, st->ino);
	if (rc < 0)
		return rc;
	if (rc == 1) {
		cli_error(gt->g->ctx, "'%s': directory loop (inode %" PRIu64
			  " already copied); not descended", path, st->ino);
		gt->errors++;
		return 0;
	}
	if (mkdirat(dirfd, name, 0700) < 0 && !(top && errno == EEXIST)) {
		get_warn(gt, path, "creating the directory", errno);
		return 0;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		get_warn(gt, path, "opening the directory", errno);
		return 0;
	}
	rc = list_dir(gt->g->fs, st->ino, &e);
	if (rc < 0) {
		if (rc == -ENOMEM) {
			close(fd);
			return rc;
		}
		get_warn(gt, path, "reading the directory", -rc);
		rc = 0;
	}
	for (size_t i = 0; i < e.n && rc == 0; i++) {
		char *sub = join(path, e.v[i].name);
		char *subrel = join(rel, e.v[i].name);
		if (!sub || !subrel) {
			free(sub);
			rc = -ENOMEM;
			break;
		}
		rc = get_entry(gt, sub, subrel, e.v[i].ino, fd, e.v[i].name,
			       0, depth + 1);
		free(sub);
		free(subrel);
	}
	entries_free(&e);
	if (rc == 0)
		rc = finish(gt, path, st, fd, dirfd, name);
	close(fd);
	return rc;
}

static int get_entry(struct get *gt, const char *path, const char *rel,
		     uint64_t ino, int dirfd, const char *name, int top,
		     int depth)
{
	struct guest_stat st;
	int fd, rc = guest_fs_stat(gt->g->fs, ino, &st);

	if (rc < 0) {
		get_warn(gt, path, "reading the inode", -rc);
		return 0;
	}
	if (S_ISDIR(st.mode)) {
		if (!gt->recursive) {
			cli_error(gt->g->ctx, "'%s': is a directory (use -r)",
				  path);
			gt->errors++;
			return 0;
		}
		return get_dir(gt, path, rel, &st, dirfd, name, top, depth);
	}
	if (st.nlink > 1 && hard_link(gt, path, &st, dirfd, name))
		return 0;
	if (S_ISREG(st.mode)) {
		const int flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
				  (top ? O_TRUNC : O_EXCL);
		fd = openat(dirfd, name, flags, 0600);
		if (fd < 0) {
			get_warn(gt, path, "creating the file", errno);
			return 0;
		}
		rc = copy_data(gt, path, ino, st.size, fd);
		if (rc == 0)
			rc = finish(gt, path, &st, fd, dirfd, name);
		if (close(fd) < 0)
			get_warn(gt, path, "closing the file", errno);
	} else if (S_ISLNK(st.mode)) {
		char target[PATH_MAX];
		rc = guest_fs_readlink(gt->g->fs, ino, target, sizeof(target));
		if (rc < 0) {
			get_warn(gt, path, "reading the link", -rc);
			return 0;
		}
		if (symlinkat(target, dirfd, name) < 0) {
			get_warn(gt, path, "creating the symlink", errno);
			return 0;
		}
		rc = finish(gt, path, &st, -1, dirfd, name);
	} else {
		/* Device nodes, FIFOs, sockets. */
		if (mknodat(dirfd, name, (st.mode & S_IFMT) | 0600,
			    (dev_t)st.rdev) < 0) {
			get_warn(gt, path, "creating the node", errno);
			return 0;
		}
		fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			get_warn(gt, path, "opening the node", errno);
			return 0;
		}
		{
			/* fchmod/fchown/futimens refuse O_PATH descriptors:
			 * go through /proc/self/fd. */
			const struct timespec times[2] = { st.atime, st.mtime };
			char p[64];
			snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
			if (gt->is_root && chown(p, st.uid, st.gid) < 0)
				get_warn(gt, path, "setting the owner", errno);
			if (chmod(p, st.mode & 07777) < 0)
				get_warn(gt, path, "setting the mode", errno);
			if (utimensat(AT_FDCWD, p, times, 0) < 0)
				get_warn(gt, path, "setting the times", errno);
		}
		close(fd);
		rc = 0;
	}
	if (rc == 0 && st.nlink > 1)
		rc = remember_link(gt, &st, rel);
	return rc;
}

int cmd_get(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "recursive", no_argument, NULL, 'r' },
		{ 0 },
	};
	struct guest_cmd g = { 0 };
	struct get gt = { .g = &g };
	const char *path, *dest, *base;
	char *destdir = NULL, *destname = NULL;
	struct stat ds;
	uint64_t ino;
	int c, rc, dirfd = -1;

	while ((c = cli_getopt(ctx, argc, argv, "r", longopts, get_help)) != -1) {
		switch (c) {
		case 'r': gt.recursive = 1; break;
		case CLI_GETOPT_HELP: return CLI_EXIT_OK;
		default: return CLI_EXIT_USAGE;
		}
	}
	if ((rc = cli_operands(ctx, argc, argv, 3, 3)))
		return rc;
	path = argv[optind + 1];
	dest = argv[optind + 2];
	if (path[0] != '/')
		return cli_usage_error(ctx, "'%s': guest paths are absolute "
				       "(start with '/')", path);
	if (!dest[0])
		return cli_usage_error(ctx, "DEST is empty");
	if ((rc = guest_open(&g, ctx, argv[optind])))
		return rc;
	if ((rc = resolve(&g, path, 1, &ino)))
		goto out;
	gt.is_root = geteuid() == 0;
	gt.buf = malloc(COPY_BUF);
	if (!gt.buf) {
		cli_error(ctx, "%s", strerror(ENOMEM));
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	/* Where the copy goes: into DEST if it is a directory (under the
	 * source's last name, or DEST itself for the guest's root), else
	 * DEST itself. */
	base = path + strlen(path);
	while (base > path && base[-1] == '/')
		base--;
	{
		const char *b = base;
		while (b > path && b[-1] != '/')
			b--;
		destname = strndup(b, (size_t)(base - b));
	}
	if (!destname) {
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	if (stat(dest, &ds) == 0 && S_ISDIR(ds.st_mode)) {
		destdir = strdup(dest);
		if (!destname[0] || !strcmp(destname, ".") ||
		    !strcmp(destname, "..")) {
			/* "/" (or a path ending in . or ..) into DEST:
			 * the tree goes into DEST itself. */
			free(destname);
			destname = strdup(".");
		}
	} else {
		const char *slash = strrchr(dest, '/');
		free(destname);
		if (slash) {
			destdir = strndup(dest, (size_t)(slash - dest) + 1);
			destname = strdup(slash + 1);
		} else {
			destdir = strdup(".");
			destname = strdup(dest);
		}
	}
	if (!destdir || !destname || !destname[0]) {
		cli_error(ctx, "'%s': not a usable destination", dest);
		rc = CLI_EXIT_USAGE;
		goto out;
	}
	dirfd = open(destdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		cli_error(ctx, "'%s': %s", destdir, strerror(errno));
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	gt.topfd = dirfd;
	rc = get_entry(&gt, path, destname, ino, dirfd, destname, 1, 0);
	if (rc < 0) {
		cli_error(ctx, "%s", strerror(-rc));
		rc = CLI_EXIT_ERROR;
	} else {
		rc = gt.errors ? CLI_EXIT_ERROR : CLI_EXIT_OK;
	}
out:
	for (size_t i = 0; i < gt.nlinks; i++)
		free(gt.links[i].rel);
	free(gt.links);
	if (dirfd >= 0)
		close(dirfd);
	free(gt.seen.v);
	free(gt.buf);
	free(destdir);
	free(destname);
	guest_close(&g);
	return rc;
}
