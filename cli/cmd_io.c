/* vdisk import and export: raw images in and out, keeping holes.
 *
 * import walks the file's data regions with SEEK_DATA/SEEK_HOLE (rounded
 * out to chunk boundaries), reads them a buffer at a time and writes only
 * the chunk-sized blocks that are not all zeroes, so neither holes nor
 * zero-filled blocks take space in the store.  The volume is loaded under
 * a temporary name, VOL.import-PID, and renamed to VOL once it is complete
 * and sealed, so VOL never exists half made: a failed or interrupted import
 * removes the temporary volume, and one killed outright leaves it behind,
 * for the next import of VOL to remove (names VOL.import-DIGITS are
 * import's: one that no process holds is taken for a leftover).  With
 * --existing it writes into a
 * volume that exists (at --offset): there holes and zero blocks become
 * vd_volume_zero() calls, since the old contents must read as zeroes.
 *
 * export asks the engine for the point's extents a window at a time and
 * writes only DATA extents, again skipping all-zero blocks; a regular file
 * is ftruncate'd to the volume size first, so the rest stays holes.  A
 * pipe, character device or block device gets every byte in order,
 * zeroes included.  A regular file that export created is unlinked if the
 * export fails.
 *
 * Limits: import reads regular files and block devices only (no stdin: the
 * size must be known before the volume is created).  Export to a pipe
 * that closes early ends with SIGPIPE, as cat does.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/io.h"

/* I/O buffer: a whole number of chunks, at least 1 MiB. */
#define IO_BUF_MIN (1024u * 1024u)

/* import's store: an import never reads back what it writes, so the clean
 * cache (where sealed chunks go) stays small, and the write-back cache is
 * large, so there are fewer, larger commits.  Measured on the Debian 12
 * minbase image (210 MiB of data): with the defaults (256 MiB clean, 64
 * MiB dirty) a 1.38 MB index, 59000 page faults, 244 MB resident; with
 * these 0.84 MB, 59000, 242 MB (4 MiB clean and 64 MiB dirty: 1.38 MB,
 * 23000, 99 MB).  VDISK_CACHE_MB and VDISK_DIRTY_MB still win. */
#define IMPORT_CACHE_BYTES (4ull << 20)
#define IMPORT_DIRTY_BYTES (256ull << 20)

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* SIGINT/SIGTERM/SIGHUP set `interrupted` so the copy loops can stop and
 * clean up instead of leaving half-written volumes or files behind. */
static void catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static void *alloc_buf(uint32_t chunk, size_t *len)
{
	void *buf = NULL;
	size_t n = chunk;

	while (n < IO_BUF_MIN)
		n *= 2;
	if (posix_memalign(&buf, 4096, n))
		return NULL;
	*len = n;
	return buf;
}

/* ---- import -------------------------------------------------------------- */

static const char import_help[] =
	"Usage: vdisk import [--existing [--offset OFF]] VOL FILE\n"
	"\n"
	"Create the volume VOL from the raw disk image FILE (a regular file or\n"
	"a block device).  VOL's size is FILE's size, exactly.  Holes in FILE\n"
	"and all-zero blocks are not stored.  VOL appears only once it is\n"
	"complete: until then it is VOL.import-PID, which a failed or\n"
	"interrupted import removes (one killed outright leaves it, and the\n"
	"next import of VOL removes it).  Shows progress when stderr is a\n"
	"terminal.\n"
	"\n"
	"  -e, --existing    write FILE into the existing volume VOL instead:\n"
	"                    bytes [OFF, OFF + size of FILE) of VOL become\n"
	"                    FILE's contents (holes and zero blocks are\n"
	"                    discarded to zeroes); the rest of VOL is kept.\n"
	"                    VOL must be large enough; it is not removed on\n"
	"                    failure.\n"
	"  -o, --offset OFF  with --existing: where in VOL to write (default 0;\n"
	"                    0 or a size such as 1M)\n";

struct import {
	struct cli_ctx *ctx;
	const char *file;
	int fd;
	uint64_t size;     /* of the file */
	uint64_t base;     /* volume offset of file offset 0 */
	int existing;      /* zero holes and zero blocks instead of skipping */
	vd_volume *v;
	uint32_t chunk;
	unsigned char *buf;
	size_t buf_len;
	struct cli_progress progress;
};

/* Length of the block at POS of a buffer of N bytes that holds volume
 * offset VOFF at position 0: up to the next chunk boundary, clipped. */
static size_t block_len(uint32_t chunk, uint64_t voff, size_t pos, size_t n)
{
	const size_t blk = chunk - (size_t)((voff + pos) % chunk);

	return blk < n - pos ? blk : n - pos;
}

/* Makes file range [START, END) read as zeroes in the volume (only needed
 * when writing into an existing volume).  Returns 0 or an exit status. */
static int import_zero(struct import *im, uint64_t start, uint64_t end)
{
	int rc;

	if (!im->existing || start >= end)
		return 0;
	rc = vd_volume_zero(im->v, im->base + start, end - start);
	if (rc < 0)
		return cli_fail(im->ctx, rc, "zero");
	return 0;
}

/* Copies file range [START, END) to the volume, a buffer at a time; each
 * maximal run of non-zero blocks (aligned to the volume's chunks) is one
 * write, all-zero blocks are skipped (or zeroed with --existing).  Returns
 * 0 or an exit status. */
static int import_range(struct import *im, uint64_t start, uint64_t end)
{
	int rc;

	while (start < end) {
		const size_t want = end - start < im->buf_len ?
			(size_t)(end - start) : im->buf_len;
		const ssize_t got = pread_full(im->fd, im->buf, want,
						   (off_t)start);
		const uint64_t voff = im->base + start;
		size_t pos = 0;

		if (interrupted) {
			cli_error(im->ctx, "interrupted");
			return CLI_EXIT_ERROR;
		}
		if (got < 0) {
			cli_error(im->ctx, "%s: %s", im->file,
				  strerror((int)-got));
			return CLI_EXIT_ERROR;
		}
		if ((size_t)got < want) {
			cli_error(im->ctx, "%s: file shrank during import",
				  im->file);
			return CLI_EXIT_ERROR;
		}
		while (pos < want) {
			size_t run = pos + block_len(im->chunk, voff, pos,
						     want);
			const int zero = cli_is_zero(im->buf + pos, run - pos);

			/* Extend the run over blocks of the same kind. */
			while (run < want) {
				const size_t blk = block_len(im->chunk, voff,
							     run, want);

				if (cli_is_zero(im->buf + run, blk) != zero)
					break;
				run += blk;
			}
			if (zero) {
				rc = import_zero(im, start + pos, start + run);
				if (rc)
					return rc;
			} else {
				rc = vd_volume_pwrite(im->v, im->buf + pos,
						      run - pos, voff + pos);
				if (rc < 0)
					return cli_fail(im->ctx, rc, "write");
			}
			pos = run;
		}
		start += want;
		cli_progress_update(&im->progress, start);
	}
	return 0;
}

/* Walks the data regions of the file with SEEK_DATA/SEEK_HOLE, rounded
 * out to the volume's chunks so that chunks are written whole.  Returns 0
 * or an exit status. */
static int import_data(struct import *im)
{
	const uint64_t chunk = im->chunk;
	uint64_t off = 0; /* file offset: everything before it is done */
	int rc;

	while (off < im->size) {
		const off_t data = lseek(im->fd, (off_t)off, SEEK_DATA);
		off_t hole;
		uint64_t start, end;

		if (data < 0 && errno == ENXIO)
			break; /* no data after OFF */
		if (data < 0) {
			/* SEEK_DATA unsupported: copy everything; zero
			 * blocks are still skipped. */
			return import_range(im, off, im->size);
		}
		hole = lseek(im->fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > im->size)
			hole = (off_t)im->size;
		/* Round to volume chunk boundaries, in file offsets. */
		start = (uint64_t)data - (im->base + (uint64_t)data) % chunk;
		if (start < off || start > (uint64_t)data)
			start = off;
		end = (uint64_t)hole;
		if ((im->base + end) % chunk)
			end += chunk - (im->base + end) % chunk;
		if (end > im->size || end < (uint64_t)hole)
			end = im->size;
		if ((rc = import_zero(im, off, start)) ||
		    (rc = import_range(im, start, end)))
			return rc;
		off = end;
	}
	if ((rc = import_zero(im, off, im->size)))
		return rc;
	cli_progress_update(&im->progress, im->size);
	return 0;
}

/* Size of the file or block device open on FD, or -errno. */
static int file_size(int fd, const struct stat *st, uint64_t *size)
{
	if (S_ISREG(st->st_mode)) {
		*size = (uint64_t)st->st_size;
		return 0;
	}
	if (S_ISBLK(st->st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0)
			return -errno;
		return 0;
	}
	return -EINVAL;
}

int cmd_import(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "existing", no_argument, NULL, 'e' },
		{ "offset", required_argument, NULL, 'o' },
		{ 0 },
	};
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	char target[VD_NAME_MAX + 1]; /* the volume written: VOL, or its temporary name */
	struct import im = { .ctx = ctx, .fd = -1 };
	struct vd_store_options opts = {
		.create = 1,
		.holder = "vdisk import",
		.cache_bytes = getenv("VDISK_CACHE_MB") ? 0 : IMPORT_CACHE_BYTES,
		.dirty_bytes = getenv("VDISK_DIRTY_MB") ? 0 : IMPORT_DIRTY_BYTES,
	};
	const char *offset_arg = NULL;
	vd_store *store = NULL;
	struct stat st;
	int c, rc, err;

	while ((c = cli_getopt(ctx, argc, argv, "eo:", longopts,
			       import_help)) != -1) {
		switch (c) {
		case 'e':
			im.existing = 1;
			break;
		case 'o':
			offset_arg = optarg;
			break;
		case CLI_GETOPT_HELP:
			return CLI_EXIT_OK;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	if ((rc = cli_operands(ctx, argc, argv, 2, 2)) ||
	    (rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_FORBIDDEN, vol,
				  snap)))
		return rc;
	if (offset_arg) {
		if (!im.existing)
			return cli_usage_error(ctx, "--offset needs --existing");
		if (strcmp(offset_arg, "0") &&
		    (rc = cli_size_arg(ctx, offset_arg, &im.base)))
			return rc;
	}
	im.file = argv[optind + 1];
	if (strcmp(im.file, "-") == 0)
		return cli_usage_error(ctx, "cannot import from stdin: the "
				       "size must be known; give a file");

	/* O_NONBLOCK: opening a FIFO must not wait for a writer (it is
	 * refused below); regular files and block devices ignore it. */
	im.fd = open(im.file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (im.fd < 0) {
		cli_error(ctx, "%s: %s", im.file, strerror(errno));
		return CLI_EXIT_ERROR;
	}
	if (fstat(im.fd, &st) < 0 || (err = file_size(im.fd, &st,
						      &im.size)) < 0) {
		cli_error(ctx, "%s: not a regular file or block device",
			  im.file);
		rc = CLI_EXIT_ERROR;
		goto out_close_fd;
	}
	if (im.size == 0 && !im.existing) {
		cli_error(ctx, "%s: empty file: a volume cannot have size 0",
			  im.file);
		rc = CLI_EXIT_ERROR;
		goto out_close_fd;
	}

	catch_signals();
	if ((rc = cli_store_open(ctx, &opts, &store)))
		goto out_close_fd;
	snprintf(target, sizeof target, "%s", vol);
	if (!im.existing) {
		struct vd_info info;

		cli_remove_leftovers(ctx, store, vol);
		err = vd_info_get(store, vol, NULL, 0, &info);
		if (err == 0) {
			cli_error(ctx, "'%s': volume '%s' already exists", vol, vol);
			rc = CLI_EXIT_ERROR;
			goto out_close_store;
		}
		if (err != VD_ENOVOL) {
			rc = cli_fail(ctx, err, "'%s'", vol);
			goto out_close_store;
		}
		cli_temp_name(vol, CLI_TEMP_IMPORT, (long)getpid(), target);
		err = vd_volume_create(store, target, im.size);
		if (err < 0) {
			rc = cli_fail(ctx, err, "'%s'", target);
			goto out_close_store;
		}
	}
	err = vd_volume_open(store, target, NULL, VD_OPEN_BULK, &im.v);
	if (err < 0) {
		rc = cli_fail(ctx, err, "'%s'", vol);
		goto out_remove;
	}
	if (im.existing && (im.base > vd_volume_size(im.v) ||
			    im.size > vd_volume_size(im.v) - im.base)) {
		cli_error(ctx, "%s (%" PRIu64 " bytes) does not fit in '%s' "
			  "(%" PRIu64 " bytes) at offset %" PRIu64
			  "; resize it first", im.file, im.size, vol,
			  vd_volume_size(im.v), im.base);
		rc = CLI_EXIT_ERROR;
		goto out_close_vol;
	}
	im.chunk = vd_volume_chunk_size(im.v);
	im.buf = alloc_buf(im.chunk, &im.buf_len);
	if (!im.buf) {
		cli_error(ctx, "%s", strerror(ENOMEM));
		rc = CLI_EXIT_ERROR;
		goto out_close_vol;
	}

	cli_progress_begin(&im.progress, "import", im.size);
	rc = import_data(&im);
	cli_progress_end(&im.progress);
	if (rc)
		goto out_close_vol;
	err = vd_volume_flush(im.v);
	if (err < 0) {
		rc = cli_fail(ctx, err, "'%s': flush", vol);
		goto out_close_vol;
	}
	err = vd_volume_close(im.v);
	im.v = NULL;
	if (err < 0) {
		rc = cli_fail(ctx, err, "'%s': close", vol);
		goto out_remove;
	}
	if (interrupted) {
		cli_error(ctx, "interrupted");
		rc = CLI_EXIT_ERROR;
		goto out_remove;
	}
	/* Complete and durable: now it may have its name. */
	if (!im.existing && (err = vd_volume_rename(store, target, vol)) < 0) {
		rc = cli_fail(ctx, err, "'%s'", vol);
		goto out_remove;
	}
	free(im.buf);
	vd_store_close(store);
	close(im.fd);
	return CLI_EXIT_OK;

out_close_vol:
	vd_volume_close(im.v);
out_remove:
	if (!im.existing) {
		err = vd_volume_remove(store, target, 0);
		if (err < 0)
			cli_fail(ctx, err, "removing the half-imported '%s'",
				 target);
		else
			fprintf(stderr, "vdisk: import: removed the "
				"half-imported volume '%s'\n", vol);
	}
	free(im.buf);
out_close_store:
	vd_store_close(store);
out_close_fd:
	close(im.fd);
	return rc;
}

/* ---- export -------------------------------------------------------------- */

static const char export_help[] =
	"Usage: vdisk export [--force] VOL[@SNAP] FILE\n"
	"\n"
	"Write the volume VOL, or its snapshot VOL@SNAP, to FILE as a raw\n"
	"image of exactly the volume's size.  A regular FILE is written\n"
	"sparsely: unallocated ranges and all-zero blocks become holes.\n"
	"FILE '-' is standard output (every byte is written, zeroes too).\n"
	"\n"
	"  -f, --force   overwrite FILE if it is a non-empty regular file or a\n"
	"                block device, or write to a terminal\n"
	"\n"
	"Without --force, export refuses an existing non-empty regular file\n"
	"and block devices; it writes freely to a missing or empty file, a\n"
	"pipe or a character device.  A file export created is removed if\n"
	"the export fails.  Shows progress when stderr is a terminal.\n";

struct extent {
	uint64_t off, len;
	unsigned type;
};

struct export {
	struct cli_ctx *ctx;
	const char *file;
	int fd;
	int sparse;        /* regular file: skip holes and zero blocks */
	vd_volume *v;
	uint64_t size;
	uint32_t chunk;
	unsigned char *buf;
	size_t buf_len;
	struct extent *ext;
	size_t n_ext, cap_ext;
	uint64_t pos;      /* next offset for sequential (non-sparse) output */
	struct cli_progress progress;
};

static int collect_extent(void *opaque, uint64_t off, uint64_t len,
			  unsigned type)
{
	struct export *ex = opaque;

	if (ex->n_ext && ex->ext[ex->n_ext - 1].type == type &&
	    ex->ext[ex->n_ext - 1].off + ex->ext[ex->n_ext - 1].len == off) {
		ex->ext[ex->n_ext - 1].len += len;
		return 0;
	}
	if (ex->n_ext == ex->cap_ext) {
		const size_t cap = ex->cap_ext ? ex->cap_ext * 2 : 256;
		struct extent *e = realloc(ex->ext, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		ex->ext = e;
		ex->cap_ext = cap;
	}
	ex->ext[ex->n_ext++] = (struct extent){ off, len, type };
	return 0;
}

/* Writes LEN bytes of BUF at OFF: positioned for a sparse (regular) file,
 * sequential otherwise.  Returns 0 or an exit status. */
static int export_write(struct export *ex, const void *buf, size_t len,
			uint64_t off)
{
	const int rc = ex->sparse ? pwrite_full(ex->fd, buf, len,
						    (off_t)off) :
		write_full(ex->fd, buf, len);

	if (rc < 0) {
		if (rc == -EPIPE)
			cli_error(ex->ctx, "%s: broken pipe", ex->file);
		else
			cli_error(ex->ctx, "%s: %s", ex->file,
				  strerror(-rc));
		return CLI_EXIT_ERROR;
	}
	return 0;
}

static int export_hole(struct export *ex, uint64_t off, uint64_t len)
{
	int rc;

	if (ex->sparse)
		return 0; /* the ftruncate'd file already reads as zeroes */
	memset(ex->buf, 0, ex->buf_len);
	while (len) {
		const size_t n = len < ex->buf_len ? (size_t)len : ex->buf_len;

		if (interrupted) {
			cli_error(ex->ctx, "interrupted");
			return CLI_EXIT_ERROR;
		}
		if ((rc = export_write(ex, ex->buf, n, off)))
			return rc;
		off += n;
		len -= n;
		cli_progress_update(&ex->progress, off);
	}
	return 0;
}

static int export_data(struct export *ex, uint64_t off, uint64_t len)
{
	int rc;

	while (len) {
		const size_t n = len < ex->buf_len ? (size_t)len : ex->buf_len;
		size_t pos = 0;

		if (interrupted) {
			cli_error(ex->ctx, "interrupted");
			return CLI_EXIT_ERROR;
		}
		rc = vd_volume_pread(ex->v, ex->buf, n, off);
		if (rc < 0)
			return cli_fail(ex->ctx, rc, "read at %" PRIu64, off);
		if (!ex->sparse) {
			if ((rc = export_write(ex, ex->buf, n, off)))
				return rc;
		} else {
			/* Write maximal runs of non-zero blocks, aligned to
			 * chunks of the volume. */
			while (pos < n) {
				size_t run = pos + block_len(ex->chunk, off, pos, n);

				if (cli_is_zero(ex->buf + pos, run - pos)) {
					pos = run;
					continue;
				}
				while (run < n) {
					const size_t blk = block_len(ex->chunk,
								     off, run,
								     n);

					if (cli_is_zero(ex->buf + run, blk))
						break;
					run += blk;
				}
				if ((rc = export_write(ex, ex->buf + pos,
						       run - pos, off + pos)))
					return rc;
				pos = run;
			}
		}
		off += n;
		len -= n;
		cli_progress_update(&ex->progress, off);
	}
	return 0;
}

/* Extents are fetched in windows so that a huge, fragmented volume does
 * not need one big array. */
#define EXPORT_WINDOW (1ull << 30)

static int export_all(struct export *ex)
{
	int rc;

	for (uint64_t w = 0; w < ex->size; w += EXPORT_WINDOW) {
		const uint64_t wlen = ex->size - w < EXPORT_WINDOW ?
			ex->size - w : EXPORT_WINDOW;

		ex->n_ext = 0;
		rc = vd_volume_extents(ex->v, w, wlen, collect_extent, ex);
		if (rc < 0)
			return cli_fail(ex->ctx, rc, "extents");
		for (size_t i = 0; i < ex->n_ext; i++) {
			const struct extent *e = &ex->ext[i];

			rc = e->type == VD_EXTENT_HOLE ?
				export_hole(ex, e->off, e->len) :
				export_data(ex, e->off, e->len);
			if (rc)
				return rc;
		}
	}
	cli_progress_update(&ex->progress, ex->size);
	return 0;
}

/* Opens the output.  Returns 0 or an exit status; sets *CREATED if the
 * file did not exist before. */
static int export_open(struct export *ex, int force, int *created)
{
	struct stat st;

	*created = 0;
	if (strcmp(ex->file, "-") == 0) {
		if (isatty(STDOUT_FILENO) && !force) {
			cli_error(ex->ctx, "refusing to write a disk image "
				  "to a terminal (use --force)");
			return CLI_EXIT_ERROR;
		}
		ex->fd = STDOUT_FILENO;
		ex->file = "standard output";
		return 0;
	}
	if (stat(ex->file, &st) == 0) {
		if (S_ISDIR(st.st_mode)) {
			cli_error(ex->ctx, "%s: is a directory", ex->file);
			return CLI_EXIT_ERROR;
		}
		if (((S_ISREG(st.st_mode) && st.st_size > 0) ||
		     S_ISBLK(st.st_mode)) && !force) {
			cli_error(ex->ctx, "%s: exists and is not empty "
				  "(use --force to overwrite)", ex->file);
			return CLI_EXIT_ERROR;
		}
		ex->fd = open(ex->file, O_WRONLY | O_CLOEXEC |
			      (S_ISREG(st.st_mode) ? O_TRUNC : 0));
	} else if (errno == ENOENT) {
		ex->fd = open(ex->file, O_WRONLY | O_CREAT | O_EXCL |
			      O_CLOEXEC, 0644);
		*created = ex->fd >= 0;
	} else {
		ex->fd = -1;
	}
	if (ex->fd < 0) {
		cli_error(ex->ctx, "%s: %s", ex->file, strerror(errno));
		return CLI_EXIT_ERROR;
	}
	if (fstat(ex->fd, &st) == 0 && S_ISREG(st.st_mode))
		ex->sparse = 1;
	return 0;
}

int cmd_export(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ 0 },
	};
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	struct export ex = { .ctx = ctx, .fd = -1 };
	vd_store *store = NULL;
	int c, rc, err, force = 0, created = 0;
	const char *path;

	while ((c = cli_getopt(ctx, argc, argv, "f", longopts,
			       export_help)) != -1) {
		switch (c) {
		case 'f':
			force = 1;
			break;
		case CLI_GETOPT_HELP:
			return CLI_EXIT_OK;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	if ((rc = cli_operands(ctx, argc, argv, 2, 2)) ||
	    (rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_OPTIONAL, vol,
				  snap)))
		return rc;
	path = ex.file = argv[optind + 1];

	catch_signals();
	if ((rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	err = vd_volume_open(store, vol, snap[0] ? snap : NULL,
			     VD_OPEN_RDONLY, &ex.v);
	if (err < 0) {
		rc = cli_fail(ctx, err, "'%s'", argv[optind]);
		goto out_close_store;
	}
	ex.size = vd_volume_size(ex.v);
	ex.chunk = vd_volume_chunk_size(ex.v);
	ex.buf = alloc_buf(ex.chunk, &ex.buf_len);
	if (!ex.buf) {
		cli_error(ctx, "%s", strerror(ENOMEM));
		rc = CLI_EXIT_ERROR;
		goto out_close_vol;
	}
	if ((rc = export_open(&ex, force, &created)))
		goto out_free;
	if (ex.sparse && ftruncate(ex.fd, (off_t)ex.size) < 0) {
		cli_error(ctx, "%s: %s", ex.file, strerror(errno));
		rc = CLI_EXIT_ERROR;
		goto out_close_fd;
	}

	cli_progress_begin(&ex.progress, "export", ex.size);
	rc = export_all(&ex);
	cli_progress_end(&ex.progress);
	if (!rc && ex.fd != STDOUT_FILENO && fsync(ex.fd) < 0 &&
	    errno != EINVAL && errno != EROFS) {
		cli_error(ctx, "%s: %s", ex.file, strerror(errno));
		rc = CLI_EXIT_ERROR;
	}

out_close_fd:
	if (ex.fd != STDOUT_FILENO && close(ex.fd) < 0 && !rc) {
		cli_error(ctx, "%s: %s", ex.file, strerror(errno));
		rc = CLI_EXIT_ERROR;
	}
	if (rc && created)
		unlink(path);
out_free:
	free(ex.buf);
	free(ex.ext);
out_close_vol:
	vd_volume_close(ex.v);
out_close_store:
	vd_store_close(store);
	return rc;
}
