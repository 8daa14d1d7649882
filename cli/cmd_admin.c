/* vdisk commands that change the catalogue: init, create, snapshot, clone,
 * rollback, rm, flatten, resize.
 *
 * Each parses its options and operands completely (usage errors exit 2
 * before the store is touched), opens the store, makes one engine call and
 * reports its failure with cli_fail().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* Shared option loop for commands with no options of their own.  Returns
 * -1 to go on, or the exit status to return. */
static int no_options(struct cli_ctx *ctx, int argc, char **argv,
		      const char *help)
{
	static const struct option longopts[] = { { 0 } };
	int c;

	while ((c = cli_getopt(ctx, argc, argv, "", longopts, help)) != -1) {
		if (c == CLI_GETOPT_HELP)
			return CLI_EXIT_OK;
		return CLI_EXIT_USAGE;
	}
	return -1;
}

/* ---- init ---------------------------------------------------------------- */

static const char init_help[] =
	"Usage: vdisk [--store DIR] init [--chunk-size SIZE]\n"
	"\n"
	"Create a new, empty store in DIR (which must be missing or an empty\n"
	"directory).  Other commands create a store with the default chunk\n"
	"size on first use; init lets you choose it.\n"
	"\n"
	"  -c, --chunk-size SIZE  chunk size, a power of two from 4K to 1M\n"
	"                         (default 64K).  Fixed for the store's life.\n"
	"\n"
	"Exits 1 if DIR is already a store or is a non-empty directory.\n";

int cmd_init(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "chunk-size", required_argument, NULL, 'c' },
		{ 0 },
	};
	uint64_t chunk = VD_CHUNK_DEFAULT;
	int c, rc;

	while ((c = cli_getopt(ctx, argc, argv, "c:", longopts,
			       init_help)) != -1) {
		switch (c) {
		case 'c':
			if ((rc = cli_size_arg(ctx, optarg, &chunk)))
				return rc;
			if (chunk < VD_CHUNK_MIN || chunk > VD_CHUNK_MAX ||
			    (chunk & (chunk - 1)))
				return cli_usage_error(ctx,
					"chunk size '%s' must be a power of "
					"two from 4K to 1M", optarg);
			break;
		case CLI_GETOPT_HELP:
			return CLI_EXIT_OK;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	if ((rc = cli_operands(ctx, argc, argv, 0, 0)))
		return rc;
	rc = vd_store_init(ctx->store_dir, (uint32_t)chunk);
	if (rc < 0)
		return cli_fail(ctx, rc, "'%s'", ctx->store_dir);
	printf("Initialized vdisk store in %s (chunk size %u)\n",
	       ctx->store_dir, (unsigned)chunk);
	return CLI_EXIT_OK;
}

/* ---- create -------------------------------------------------------------- */

static const char create_help[] =
	"Usage: vdisk create VOL SIZE\n"
	"\n"
	"Create the volume VOL of SIZE bytes, reading as zeroes.  SIZE takes\n"
	"binary suffixes: 10M, 2G, 2GiB, or plain bytes.\n";

int cmd_create(struct cli_ctx *ctx, int argc, char **argv)
{
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	vd_store *store;
	uint64_t size;
	int rc;

	if ((rc = no_options(ctx, argc, argv, create_help)) >= 0)
		return rc;
	if ((rc = cli_operands(ctx, argc, argv, 2, 2)) ||
	    (rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_FORBIDDEN, vol,
				  snap)) ||
	    (rc = cli_size_arg(ctx, argv[optind + 1], &size)) ||
	    (rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	rc = vd_volume_create(store, vol, size);
	if (rc < 0)
		rc = cli_fail(ctx, rc, "'%s'", vol);
	vd_store_close(store);
	return rc;
}

/* ---- snapshot ------------------------------------------------------------ */

static const char snapshot_help[] =
	"Usage: vdisk snapshot VOL@SNAP\n"
	"\n"
	"Freeze VOL's current contents as the read-only snapshot SNAP.  This\n"
	"is instant whatever the volume's size.  If VOL is open for writing\n"
	"(by vdisk serve), the snapshot holds every write acknowledged\n"
	"before it.\n";

int cmd_snapshot(struct cli_ctx *ctx, int argc, char **argv)
{
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	vd_store *store;
	int rc;

	if ((rc = no_options(ctx, argc, argv, snapshot_help)) >= 0)
		return rc;
	if ((rc = cli_operands(ctx, argc, argv, 1, 1)) ||
	    (rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_REQUIRED, vol,
				  snap)) ||
	    (rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	rc = vd_snapshot_create(store, vol, snap);
	if (rc < 0)
		rc = cli_fail(ctx, rc, "'%s@%s'", vol, snap);
	vd_store_close(store);
	return rc;
}

/* ---- clone --------------------------------------------------------------- */

static const char clone_help[] =
	"Usage: vdisk clone VOL@SNAP NEWVOL\n"
	"\n"
	"Create the writable volume NEWVOL starting as VOL@SNAP.  It shares\n"
	"the snapshot's chunks: only what NEWVOL later writes takes space.\n"
	"VOL@SNAP cannot be removed while clones depend on it (see flatten).\n";

int cmd_clone(struct cli_ctx *ctx, int argc, char **argv)
{
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	char newvol[VD_NAME_MAX + 1], none[VD_NAME_MAX + 1];
	vd_store *store;
	int rc;

	if ((rc = no_options(ctx, argc, argv, clone_help)) >= 0)
		return rc;
	if ((rc = cli_operands(ctx, argc, argv, 2, 2)) ||
	    (rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_REQUIRED, vol,
				  snap)) ||
	    (rc = cli_parse_point(ctx, argv[optind + 1], CLI_SNAP_FORBIDDEN,
				  newvol, none)) ||
	    (rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	rc = vd_clone_create(store, vol, snap, newvol);
	if (rc < 0)
		rc = cli_fail(ctx, rc, "'%s@%s' -> '%s'", vol, snap, newvol);
	vd_store_close(store);
	return rc;
}

/* ---- rollback ------------------------------------------------------------ */

static const char rollback_help[] =
	"Usage: vdisk rollback VOL@SNAP\n"
	"\n"
	"Return VOL to the contents and size of its snapshot SNAP, discarding\n"
	"what was written since.  Later snapshots are kept.  Fails if VOL is\n"
	"open for writing elsewhere.\n";

int cmd_rollback(struct cli_ctx *ctx, int argc, char **argv)
{
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	vd_store *store;
	int rc;

	if ((rc = no_options(ctx, argc, argv, rollback_help)) >= 0)
		return rc;
	if ((rc = cli_operands(ctx, argc, argv, 1, 1)) ||
	    (rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_REQUIRED, vol,
				  snap)) ||
	    (rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	rc = vd_volume_rollback(store, vol, snap);
	if (rc < 0)
		rc = cli_fail(ctx, rc, "'%s@%s'", vol, snap);
	vd_store_close(store);
	return rc;
}

/* ---- rm ------------------------------------------------------------------ */

static const char rm_help[] =
	"Usage: vdisk rm [-r] VOL[@SNAP]\n"
	"\n"
	"Remove the volume VOL or the snapshot VOL@SNAP.  Space is reclaimed\n"
	"by `vdisk gc`.\n"
	"\n"
	"  -r, --recursive  remove VOL together with its snapshots (without\n"
	"                   it, a volume with snapshots is refused)\n"
	"\n"
	"A snapshot with clones cannot be removed (the message names them):\n"
	"remove or flatten the clones first.  A volume open for writing\n"
	"elsewhere cannot be removed.\n";

int cmd_rm(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "recursive", no_argument, NULL, 'r' },
		{ 0 },
	};
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	vd_store *store;
	int c, rc, recursive = 0;

	while ((c = cli_getopt(ctx, argc, argv, "r", longopts, rm_help)) !=
	       -1) {
		switch (c) {
		case 'r':
			recursive = 1;
			break;
		case CLI_GETOPT_HELP:
			return CLI_EXIT_OK;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	if ((rc = cli_operands(ctx, argc, argv, 1, 1)) ||
	    (rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_OPTIONAL, vol,
				  snap)))
		return rc;
	if (snap[0] && recursive)
		return cli_usage_error(ctx, "-r applies to volumes, not to "
				       "the snapshot '%s'", argv[optind]);
	if ((rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	if (snap[0]) {
		rc = vd_snapshot_remove(store, vol, snap);
		if (rc < 0)
			rc = cli_fail(ctx, rc, "'%s@%s'", vol, snap);
	} else {
		rc = vd_volume_remove(store, vol, recursive);
		if (rc < 0)
			rc = cli_fail(ctx, rc, "'%s'", vol);
	}
	vd_store_close(store);
	return rc;
}

/* ---- flatten ------------------------------------------------------------- */

static const char flatten_help[] =
	"Usage: vdisk flatten VOL\n"
	"\n"
	"Detach the clone VOL from the snapshot it was cloned from, so that\n"
	"the snapshot can be removed.  No data is copied: VOL takes its own\n"
	"references to the chunks it shares.\n";

int cmd_flatten(struct cli_ctx *ctx, int argc, char **argv)
{
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	vd_store *store;
	int rc;

	if ((rc = no_options(ctx, argc, argv, flatten_help)) >= 0)
		return rc;
	if ((rc = cli_operands(ctx, argc, argv, 1, 1)) ||
	    (rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_FORBIDDEN, vol,
				  snap)) ||
	    (rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	rc = vd_volume_flatten(store, vol);
	if (rc < 0)
		rc = cli_fail(ctx, rc, "'%s'", vol);
	vd_store_close(store);
	return rc;
}

/* ---- resize -------------------------------------------------------------- */

static const char resize_help[] =
	"Usage: vdisk resize VOL SIZE [--shrink]\n"
	"\n"
	"Change VOL's size to SIZE.  Growing adds zeroes.\n"
	"\n"
	"  --shrink   allow SIZE to be smaller than the current size (the\n"
	"             data past SIZE is dropped from VOL; snapshots keep it)\n";

int cmd_resize(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "shrink", no_argument, NULL, 's' },
		{ 0 },
	};
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	vd_store *store;
	uint64_t size;
	int c, rc, shrink = 0;

	while ((c = cli_getopt(ctx, argc, argv, "", longopts,
			       resize_help)) != -1) {
		switch (c) {
		case 's':
			shrink = 1;
			break;
		case CLI_GETOPT_HELP:
			return CLI_EXIT_OK;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	if ((rc = cli_operands(ctx, argc, argv, 2, 2)) ||
	    (rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_FORBIDDEN, vol,
				  snap)) ||
	    (rc = cli_size_arg(ctx, argv[optind + 1], &size)) ||
	    (rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	rc = vd_volume_resize(store, vol, size, shrink);
	if (rc < 0)
		rc = cli_fail(ctx, rc, "'%s'", vol);
	vd_store_close(store);
	return rc;
}
