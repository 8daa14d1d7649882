/* vdisk list, info and diff: read-only views of the catalogue.
 *
 * list gathers every vd_info from vd_list() first, then prints a tree:
 * each volume that is not a clone at the top level, its snapshots under
 * it, and each clone under the snapshot it was made from (recursively, so
 * clones of clones nest).  A clone whose origin is not in the listing is
 * shown at the top level with "(clone of A@s)".  JSON output is flat
 * (see cli/JSON.md); the tree is implied by the origin fields.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

struct listing {
	struct vd_info *items;
	size_t n, cap;
	unsigned char *shown; /* per item: already printed (cycle guard) */
};

static int collect(void *opaque, const struct vd_info *info)
{
	struct listing *l = opaque;

	if (l->n == l->cap) {
		const size_t cap = l->cap ? l->cap * 2 : 32;
		struct vd_info *p = realloc(l->items, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->items = p;
		l->cap = cap;
	}
	l->items[l->n++] = *info;
	return 0;
}

static const char *fmt_time(uint64_t t, char *buf, size_t len)
{
	const time_t tt = (time_t)t;
	struct tm tm;

	if (!t || !localtime_r(&tt, &tm) ||
	    !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "-");
	return buf;
}

static void json_origin(struct cli_json *j, const struct vd_info *in)
{
	cli_json_key(j, "origin");
	if (!in->origin_vol[0]) {
		cli_json_null(j);
		return;
	}
	cli_json_begin_object(j);
	cli_json_key(j, "volume");
	cli_json_string(j, in->origin_vol);
	cli_json_key(j, "snapshot");
	cli_json_string(j, in->origin_snap);
	cli_json_end_object(j);
}

static void json_holder(struct cli_json *j, const struct vd_info *in)
{
	cli_json_key(j, "holder");
	if (!in->holder_pid) {
		cli_json_null(j);
		return;
	}
	cli_json_begin_object(j);
	cli_json_key(j, "pid");
	cli_json_i64(j, in->holder_pid);
	cli_json_key(j, "name");
	cli_json_string(j, in->holder);
	cli_json_end_object(j);
}

static void json_store(struct cli_json *j, const char *dir,
		       const struct vd_store_info *si)
{
	cli_json_begin_object(j);
	cli_json_key(j, "path");
	cli_json_string(j, dir);
	cli_json_key(j, "format_version");
	cli_json_u64(j, si->format_version);
	cli_json_key(j, "uuid");
	cli_json_string(j, si->uuid);
	cli_json_key(j, "chunk_size");
	cli_json_u64(j, si->chunk_size);
	cli_json_key(j, "chunks");
	cli_json_u64(j, si->chunks);
	cli_json_key(j, "chunk_refs");
	cli_json_u64(j, si->chunk_refs);
	cli_json_key(j, "stored_bytes");
	cli_json_u64(j, si->stored_bytes);
	cli_json_key(j, "dead_chunks");
	cli_json_u64(j, si->dead_chunks);
	cli_json_key(j, "dead_bytes");
	cli_json_u64(j, si->dead_bytes);
	cli_json_key(j, "pack_files");
	cli_json_u64(j, si->pack_files);
	cli_json_key(j, "pack_bytes");
	cli_json_u64(j, si->pack_bytes);
	cli_json_key(j, "index_bytes");
	cli_json_u64(j, si->index_bytes);
	cli_json_key(j, "dedup_ratio");
	cli_json_double(j, si->dedup_ratio);
	cli_json_key(j, "compress_ratio");
	cli_json_double(j, si->compress_ratio);
	cli_json_key(j, "reclaimable_bytes");
	cli_json_u64(j, si->reclaimable_bytes);
	cli_json_key(j, "compacted_files");
	cli_json_u64(j, si->compacted_files);
	cli_json_key(j, "compacted_bytes");
	cli_json_u64(j, si->compacted_bytes);
	cli_json_end_object(j);
}

/* ---- list ---------------------------------------------------------------- */

static const char list_help[] =
	"Usage: vdisk list [--json]\n"
	"\n"
	"List volumes, their snapshots and their clones as a tree, with\n"
	"  SIZE     the volume's (or snapshot's) size\n"
	"  WRITTEN  logical bytes in allocated chunks\n"
	"  UNIQUE   stored bytes that removing it alone would free\n"
	"  HOLDER   the process holding a volume open for writing\n"
	"then a summary of the store: bytes stored, deduplication and\n"
	"compression ratios.\n"
	"\n"
	"  -j, --json   machine-readable output (schema in cli/JSON.md)\n";

/* Finds the snapshot VOL@SNAP in the listing, or -1. */
static long find_snap(const struct listing *l, const char *vol,
		      const char *snap)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->items[i].snap[0] && !strcmp(l->items[i].vol, vol) &&
		    !strcmp(l->items[i].snap, snap))
			return (long)i;
	return -1;
}

/* Column layout.  The tree is walked twice: first MEASURING (only the
 * widest name is recorded), then printing. */
struct columns {
	int name;
	int measuring;
};

static void print_row(struct columns *cols, int depth,
		      const char *label, const struct vd_info *in)
{
	char size[CLI_HUMAN_MAX], written[CLI_HUMAN_MAX],
		unique[CLI_HUMAN_MAX], name[256], holder[96] = "";

	snprintf(name, sizeof(name), "%*s%s", depth * 2, "", label);
	if (cols->measuring) {
		if ((int)strlen(name) > cols->name)
			cols->name = (int)strlen(name);
		return;
	}
	if (in->holder_pid)
		snprintf(holder, sizeof(holder), "%s (pid %d)",
			 in->holder[0] ? in->holder : "?", in->holder_pid);
	printf("%-*s %10s %10s %10s  %s\n", cols->name, name,
	       cli_human_size(in->size, size),
	       cli_human_size(in->written_bytes, written),
	       cli_human_size(in->unique_bytes, unique), holder);
}

static void print_volume(struct listing *l, struct columns *cols,
			 size_t vi, int depth, int show_origin);

/* Prints the snapshots of the volume at VI (they follow it in the
 * listing) and, under each, its clones. */
static void print_snapshots(struct listing *l, struct columns *cols,
			    size_t vi, int depth)
{
	const char *vol = l->items[vi].vol;

	for (size_t s = vi + 1; s < l->n && l->items[s].snap[0] &&
	     !strcmp(l->items[s].vol, vol); s++) {
		char label[VD_NAME_MAX + 2];

		snprintf(label, sizeof(label), "@%s", l->items[s].snap);
		print_row(cols, depth, label, &l->items[s]);
		for (size_t c = 0; c < l->n; c++) {
			const struct vd_info *in = &l->items[c];

			if (!in->snap[0] && !l->shown[c] &&
			    !strcmp(in->origin_vol, vol) &&
			    !strcmp(in->origin_snap, l->items[s].snap))
				print_volume(l, cols, c, depth + 1, 0);
		}
	}
}

static void print_volume(struct listing *l, struct columns *cols,
			 size_t vi, int depth, int show_origin)
{
	const struct vd_info *in = &l->items[vi];
	char label[3 * VD_NAME_MAX + 32];

	l->shown[vi] = 1;
	if (show_origin && in->origin_vol[0])
		snprintf(label, sizeof(label), "%s (clone of %s@%s)", in->vol,
			 in->origin_vol, in->origin_snap);
	else
		snprintf(label, sizeof(label), "%s", in->vol);
	print_row(cols, depth, label, in);
	print_snapshots(l, cols, vi, depth + 1);
}

static void print_tree(struct listing *l, struct columns *cols)
{
	memset(l->shown, 0, l->n);
	/* Roots: volumes that are not clones, or whose origin is gone. */
	for (size_t i = 0; i < l->n; i++) {
		const struct vd_info *in = &l->items[i];

		if (in->snap[0] || l->shown[i])
			continue;
		if (!in->origin_vol[0] ||
		    find_snap(l, in->origin_vol, in->origin_snap) < 0)
			print_volume(l, cols, i, 0, 1);
	}
	/* Anything left (an origin cycle, which the engine should never
	 * produce) is still shown. */
	for (size_t i = 0; i < l->n; i++)
		if (!l->items[i].snap[0] && !l->shown[i])
			print_volume(l, cols, i, 0, 1);
}

/* The space-reclamation line of list and info. */
static void print_reclaim(const struct vd_store_info *si)
{
	char h1[CLI_HUMAN_MAX], h2[CLI_HUMAN_MAX];

	printf("reclaimable %s; compacted %" PRIu64 " data file%s, %s given "
	       "back\n", cli_human_size(si->reclaimable_bytes, h1),
	       si->compacted_files, si->compacted_files == 1 ? "" : "s",
	       cli_human_size(si->compacted_bytes, h2));
}

static void list_text(struct listing *l, const struct vd_store_info *si,
		      const char *dir)
{
	struct columns cols = { .name = 4, .measuring = 1 };
	char stored[CLI_HUMAN_MAX], disk[CLI_HUMAN_MAX], dead[CLI_HUMAN_MAX];
	size_t vols = 0, snaps = 0;

	for (size_t i = 0; i < l->n; i++)
		l->items[i].snap[0] ? snaps++ : vols++;
	print_tree(l, &cols);
	cols.measuring = 0;
	if (l->n) {
		printf("%-*s %10s %10s %10s  %s\n", cols.name, "NAME", "SIZE",
		       "WRITTEN", "UNIQUE", "HOLDER");
		print_tree(l, &cols);
	}
	if (l->n)
		printf("\n");
	printf("store %s: %zu volume%s, %zu snapshot%s; %s stored "
	       "(%s on disk, %s awaiting gc); dedup %.2fx, "
	       "compression %.2fx\n",
	       dir, vols, vols == 1 ? "" : "s", snaps, snaps == 1 ? "" : "s",
	       cli_human_size(si->stored_bytes, stored),
	       cli_human_size(si->pack_bytes, disk),
	       cli_human_size(si->dead_bytes, dead), si->dedup_ratio,
	       si->compress_ratio);
	print_reclaim(si);
}

static void list_json(const struct listing *l, const struct vd_store_info *si,
		      const char *dir)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_begin_object(&j);
	cli_json_key(&j, "store");
	json_store(&j, dir, si);
	cli_json_key(&j, "volumes");
	cli_json_begin_array(&j);
	for (size_t i = 0; i < l->n; i++) {
		const struct vd_info *in = &l->items[i];

		if (in->snap[0])
			continue;
		cli_json_begin_object(&j);
		cli_json_key(&j, "name");
		cli_json_string(&j, in->vol);
		cli_json_key(&j, "size");
		cli_json_u64(&j, in->size);
		cli_json_key(&j, "created");
		cli_json_u64(&j, in->created);
		cli_json_key(&j, "written_bytes");
		cli_json_u64(&j, in->written_bytes);
		cli_json_key(&j, "unique_bytes");
		cli_json_u64(&j, in->unique_bytes);
		json_origin(&j, in);
		json_holder(&j, in);
		cli_json_key(&j, "snapshots");
		cli_json_begin_array(&j);
		for (size_t s = i + 1; s < l->n && l->items[s].snap[0] &&
		     !strcmp(l->items[s].vol, in->vol); s++) {
			const struct vd_info *sn = &l->items[s];

			cli_json_begin_object(&j);
			cli_json_key(&j, "name");
			cli_json_string(&j, sn->snap);
			cli_json_key(&j, "size");
			cli_json_u64(&j, sn->size);
			cli_json_key(&j, "created");
			cli_json_u64(&j, sn->created);
			cli_json_key(&j, "written_bytes");
			cli_json_u64(&j, sn->written_bytes);
			cli_json_key(&j, "unique_bytes");
			cli_json_u64(&j, sn->unique_bytes);
			cli_json_key(&j, "clones");
			cli_json_begin_array(&j);
			for (size_t c = 0; c < l->n; c++)
				if (!l->items[c].snap[0] &&
				    !strcmp(l->items[c].origin_vol, in->vol) &&
				    !strcmp(l->items[c].origin_snap,
					    sn->snap))
					cli_json_string(&j, l->items[c].vol);
			cli_json_end_array(&j);
			cli_json_end_object(&j);
		}
		cli_json_end_array(&j);
		cli_json_end_object(&j);
	}
	cli_json_end_array(&j);
	cli_json_end_object(&j);
}

int cmd_list(struct cli_ctx *ctx, int argc, char **argv)
{
	struct listing l = { 0 };
	struct vd_store_info si;
	vd_store *store;
	int rc, json;

	if ((rc = cli_json_option(ctx, argc, argv, list_help, &json)) >= 0)
		return rc;
	if ((rc = cli_operands(ctx, argc, argv, 0, 0)) ||
	    (rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	rc = vd_list(store, VD_INFO_SPACE, collect, &l);
	if (rc < 0) {
		rc = cli_fail(ctx, rc, "listing");
		goto out;
	}
	rc = vd_store_info(store, &si);
	if (rc < 0) {
		rc = cli_fail(ctx, rc, "store info");
		goto out;
	}
	l.shown = calloc(l.n + 1, 1);
	if (!l.shown) {
		cli_error(ctx, "%s", strerror(ENOMEM));
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	if (json)
		list_json(&l, &si, ctx->store_dir);
	else
		list_text(&l, &si, ctx->store_dir);
	rc = CLI_EXIT_OK;
out:
	free(l.items);
	free(l.shown);
	vd_store_close(store);
	return rc;
}

/* ---- info ---------------------------------------------------------------- */

static const char info_help[] =
	"Usage: vdisk info VOL[@SNAP] [--json]\n"
	"\n"
	"Show the size, creation time, origin (for a clone), snapshot or\n"
	"clone count, written and unique bytes, holder and chunk size of\n"
	"the volume VOL or the snapshot VOL@SNAP.\n"
	"\n"
	"  -j, --json   machine-readable output (schema in cli/JSON.md)\n";

struct clone_names {
	const char *vol, *snap;
	struct listing l;
};

static int collect_clones(void *opaque, const struct vd_info *info)
{
	struct clone_names *c = opaque;

	if (info->snap[0] || strcmp(info->origin_vol, c->vol) ||
	    strcmp(info->origin_snap, c->snap))
		return 0;
	return collect(&c->l, info);
}

int cmd_info(struct cli_ctx *ctx, int argc, char **argv)
{
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	char h1[CLI_HUMAN_MAX], h2[CLI_HUMAN_MAX], when[64];
	struct clone_names clones = { 0 };
	struct vd_store_info si;
	struct vd_info in;
	vd_store *store;
	int rc, json;

	if ((rc = cli_json_option(ctx, argc, argv, info_help, &json)) >= 0)
		return rc;
	if ((rc = cli_operands(ctx, argc, argv, 1, 1)) ||
	    (rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_OPTIONAL, vol,
				  snap)) ||
	    (rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	if (snap[0]) {
		/* The snapshot's epoch is sealed first (snapshot_settle), so
		 * that its figures count every write before it. */
		struct cli_wait w;
		char what[2 * VD_NAME_MAX + 64];
		snprintf(what, sizeof what, "%s@%s: sealing the writes before "
			 "the snapshot", vol, snap);
		cli_wait_begin(&w, what);
		rc = vd_info_get(store, vol, snap, VD_INFO_SPACE, &in);
		cli_wait_end(&w);
	} else {
		rc = vd_info_get(store, vol, NULL, VD_INFO_SPACE, &in);
	}
	if (rc < 0) {
		rc = cli_fail(ctx, rc, "'%s'", argv[optind]);
		goto out;
	}
	rc = vd_store_info(store, &si);
	if (rc < 0) {
		rc = cli_fail(ctx, rc, "store info");
		goto out;
	}
	if (snap[0]) {
		clones.vol = vol;
		clones.snap = snap;
		rc = vd_list(store, 0, collect_clones, &clones);
		if (rc < 0) {
			rc = cli_fail(ctx, rc, "listing clones");
			goto out;
		}
	}

	if (json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_begin_object(&j);
		cli_json_key(&j, "volume");
		cli_json_string(&j, in.vol);
		cli_json_key(&j, "snapshot");
		cli_json_string(&j, in.snap[0] ? in.snap : NULL);
		cli_json_key(&j, "size");
		cli_json_u64(&j, in.size);
		cli_json_key(&j, "created");
		cli_json_u64(&j, in.created);
		json_origin(&j, &in);
		cli_json_key(&j, "snapshots");
		cli_json_u64(&j, in.snapshots);
		cli_json_key(&j, "clones");
		cli_json_begin_array(&j);
		for (size_t i = 0; i < clones.l.n; i++)
			cli_json_string(&j, clones.l.items[i].vol);
		cli_json_end_array(&j);
		cli_json_key(&j, "written_bytes");
		cli_json_u64(&j, in.written_bytes);
		cli_json_key(&j, "unique_bytes");
		cli_json_u64(&j, in.unique_bytes);
		json_holder(&j, &in);
		cli_json_key(&j, "chunk_size");
		cli_json_u64(&j, si.chunk_size);
		cli_json_key(&j, "store");
		json_store(&j, ctx->store_dir, &si);
		cli_json_end_object(&j);
	} else {
		if (in.snap[0])
			printf("snapshot:    %s@%s\n", in.vol, in.snap);
		else
			printf("volume:      %s\n", in.vol);
		printf("size:        %s (%" PRIu64 " bytes)\n",
		       cli_human_size(in.size, h1), in.size);
		printf("created:     %s\n",
		       fmt_time(in.created, when, sizeof(when)));
		if (in.origin_vol[0])
			printf("clone of:    %s@%s\n", in.origin_vol,
			       in.origin_snap);
		if (in.snap[0]) {
			printf("clones:      %zu", clones.l.n);
			for (size_t i = 0; i < clones.l.n; i++)
				printf("%s%s", i ? ", " : " (",
				       clones.l.items[i].vol);
			printf("%s\n", clones.l.n ? ")" : "");
		} else {
			printf("snapshots:   %u\n", in.snapshots);
		}
		printf("written:     %s (%" PRIu64 " bytes)\n",
		       cli_human_size(in.written_bytes, h1),
		       in.written_bytes);
		printf("unique:      %s (%" PRIu64 " bytes)\n",
		       cli_human_size(in.unique_bytes, h2), in.unique_bytes);
		if (in.holder_pid)
			printf("held by:     %s (pid %d)\n",
			       in.holder[0] ? in.holder : "?", in.holder_pid);
		else if (!in.snap[0])
			printf("held by:     -\n");
		printf("chunk size:  %s\n", cli_human_size(si.chunk_size, h1));
		printf("store:       %s stored, %s on disk; ",
		       cli_human_size(si.stored_bytes, h1),
		       cli_human_size(si.pack_bytes, h2));
		print_reclaim(&si);
	}
	rc = CLI_EXIT_OK;
out:
	free(clones.l.items);
	vd_store_close(store);
	return rc;
}

/* ---- diff ---------------------------------------------------------------- */

static const char diff_help[] =
	"Usage: vdisk diff VOL@SNAP [VOL[@SNAP]] [--json]\n"
	"\n"
	"List the byte ranges whose contents differ between two points: a\n"
	"snapshot and, by default, the current contents of its volume, or the\n"
	"second point given (any volume or snapshot, e.g. a clone and its\n"
	"origin).  Ranges are chunk granular and merged; ranges past the\n"
	"smaller size count as changed.  Text output is one line per range:\n"
	"OFFSET LENGTH, in bytes, decimal.\n"
	"\n"
	"  -j, --json   a JSON array of {\"offset\", \"length\"} objects\n";

struct diff_out {
	int json;
	int started; /* JSON array opened */
	struct cli_json j;
};

static int print_range(void *opaque, uint64_t off, uint64_t len)
{
	struct diff_out *d = opaque;

	if (d->json) {
		if (!d->started) {
			cli_json_begin_array(&d->j);
			d->started = 1;
		}
		cli_json_begin_object(&d->j);
		cli_json_key(&d->j, "offset");
		cli_json_u64(&d->j, off);
		cli_json_key(&d->j, "length");
		cli_json_u64(&d->j, len);
		cli_json_end_object(&d->j);
	} else {
		printf("%" PRIu64 " %" PRIu64 "\n", off, len);
	}
	return 0;
}

int cmd_diff(struct cli_ctx *ctx, int argc, char **argv)
{
	char vol_a[VD_NAME_MAX + 1], snap_a[VD_NAME_MAX + 1];
	char vol_b[VD_NAME_MAX + 1], snap_b[VD_NAME_MAX + 1];
	struct diff_out d = { 0 };
	vd_store *store;
	int rc, json;

	if ((rc = cli_json_option(ctx, argc, argv, diff_help, &json)) >= 0)
		return rc;
	if ((rc = cli_operands(ctx, argc, argv, 1, 2)))
		return rc;
	if (argc - optind == 1) {
		rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_REQUIRED,
				     vol_a, snap_a);
		strcpy(vol_b, vol_a);
		snap_b[0] = '\0';
	} else {
		if (!(rc = cli_parse_point(ctx, argv[optind],
					   CLI_SNAP_OPTIONAL, vol_a, snap_a)))
			rc = cli_parse_point(ctx, argv[optind + 1],
					     CLI_SNAP_OPTIONAL, vol_b, snap_b);
	}
	if (rc || (rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	d.json = json;
	cli_json_init(&d.j, stdout);
	rc = vd_diff(store, vol_a, snap_a[0] ? snap_a : NULL, vol_b,
		     snap_b[0] ? snap_b : NULL, print_range, &d);
	if (d.started) {
		cli_json_end_array(&d.j); /* keep stdout valid JSON */
	} else if (json && rc >= 0) {
		cli_json_begin_array(&d.j);
		cli_json_end_array(&d.j);
	}
	if (rc < 0)
		rc = cli_fail(ctx, rc, "diff");
	else
		rc = CLI_EXIT_OK;
	vd_store_close(store);
	return rc;
}
