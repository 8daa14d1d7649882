/* vdisk gc and check: store maintenance.
 *
 * Both run one engine call with a progress bar on stderr (only when stderr
 * is a terminal).  check collects the problems the engine reports and
 * prints them after the bar is gone, so they never mix with it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* --json and no operands. */
static int json_only(struct cli_ctx *ctx, int argc, char **argv,
		     const char *help, int *json)
{
	const int rc = cli_json_option(ctx, argc, argv, help, json);

	if (rc >= 0)
		return rc;
	return cli_operands(ctx, argc, argv, 0, 0) ? CLI_EXIT_USAGE : -1;
}

/* ---- gc ------------------------------------------------------------------ */

static const char gc_help[] =
	"Usage: vdisk gc [--json]\n"
	"\n"
	"Drop chunks no volume or snapshot references any more (after rm,\n"
	"rollback or overwrites) and compact the data files holding them.\n"
	"First removes the temporary volumes of imports and ephemeral runs\n"
	"that were killed (VOL.import-PID, VOL-eph-PID).\n"
	"Safe while volumes are being served.\n"
	"\n"
	"  -j, --json   machine-readable output (schema in cli/JSON.md)\n";

int cmd_gc(struct cli_ctx *ctx, int argc, char **argv)
{
	struct cli_progress progress;
	struct vd_gc_stats st;
	vd_store *store;
	int rc, json;

	if ((rc = json_only(ctx, argc, argv, gc_help, &json)) >= 0)
		return rc;
	if ((rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	memset(&st, 0, sizeof(st));
	cli_remove_leftovers(ctx, store, NULL);
	cli_progress_begin(&progress, "gc", 0);
	rc = vd_store_gc(store, cli_progress_cb, &progress, &st);
	cli_progress_end(&progress);
	if (rc < 0) {
		rc = cli_fail(ctx, rc, "gc");
		goto out;
	}
	if (json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_begin_object(&j);
		cli_json_key(&j, "chunks_freed");
		cli_json_u64(&j, st.chunks_freed);
		cli_json_key(&j, "chunks_moved");
		cli_json_u64(&j, st.chunks_moved);
		cli_json_key(&j, "files_removed");
		cli_json_u64(&j, st.files_removed);
		cli_json_key(&j, "bytes_before");
		cli_json_u64(&j, st.bytes_before);
		cli_json_key(&j, "bytes_after");
		cli_json_u64(&j, st.bytes_after);
		cli_json_key(&j, "bytes_reclaimed");
		cli_json_u64(&j, st.bytes_before > st.bytes_after ?
			     st.bytes_before - st.bytes_after : 0);
		cli_json_end_object(&j);
	} else {
		char before[CLI_HUMAN_MAX], after[CLI_HUMAN_MAX],
			freed[CLI_HUMAN_MAX];

		printf("gc: freed %" PRIu64 " chunk%s, moved %" PRIu64
		       " chunk%s, removed %" PRIu64 " data file%s\n",
		       st.chunks_freed, st.chunks_freed == 1 ? "" : "s",
		       st.chunks_moved, st.chunks_moved == 1 ? "" : "s",
		       st.files_removed, st.files_removed == 1 ? "" : "s");
		printf("gc: data files %s -> %s (%s reclaimed)\n",
		       cli_human_size(st.bytes_before, before),
		       cli_human_size(st.bytes_after, after),
		       cli_human_size(st.bytes_before > st.bytes_after ?
				      st.bytes_before - st.bytes_after : 0,
				      freed));
	}
	rc = CLI_EXIT_OK;
out:
	vd_store_close(store);
	return rc;
}

/* ---- check --------------------------------------------------------------- */

static const char check_help[] =
	"Usage: vdisk check [--json]\n"
	"\n"
	"Verify every chunk (hash, record, reference count), every index\n"
	"invariant and every volume's write journal.  Prints each problem\n"
	"found, one per line, then a summary.  Exits 0 if the store is\n"
	"clean, 1 if any problem was found\n"
	"or the check could not run.\n"
	"\n"
	"  -j, --json   machine-readable output (schema in cli/JSON.md)\n";

struct problems {
	char **what;
	size_t n, cap;
	int oom;
	struct cli_progress *progress;
};

/* vd_store_check passes one opaque pointer to both of its callbacks. */
static void check_progress(void *opaque, uint64_t done, uint64_t total)
{
	const struct problems *p = opaque;

	cli_progress_cb(p->progress, done, total);
}

static void add_problem(void *opaque, const char *what)
{
	struct problems *p = opaque;
	char *copy;

	if (p->n == p->cap) {
		const size_t cap = p->cap ? p->cap * 2 : 16;
		char **w = realloc(p->what, cap * sizeof(*w));

		if (!w) {
			p->oom = 1;
			return;
		}
		p->what = w;
		p->cap = cap;
	}
	copy = strdup(what ? what : "(no description)");
	if (!copy) {
		p->oom = 1;
		return;
	}
	p->what[p->n++] = copy;
}

int cmd_check(struct cli_ctx *ctx, int argc, char **argv)
{
	struct cli_progress progress;
	struct problems pr = { 0 };
	vd_store *store;
	int rc, json, found;

	if ((rc = json_only(ctx, argc, argv, check_help, &json)) >= 0)
		return rc;
	if ((rc = cli_store_open(ctx, NULL, &store)))
		return rc;
	cli_progress_begin(&progress, "check", 0);
	pr.progress = &progress;
	found = vd_store_check(store, check_progress, add_problem, &pr);
	cli_progress_end(&progress);
	if (found < 0) {
		rc = cli_fail(ctx, found, "check");
		/* Still show what was found before the failure. */
		for (size_t i = 0; i < pr.n; i++)
			fprintf(stderr, "problem: %s\n", pr.what[i]);
		goto out;
	}
	if ((size_t)found < pr.n)
		found = (int)pr.n;
	if (json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_begin_object(&j);
		cli_json_key(&j, "clean");
		cli_json_bool(&j, found == 0);
		cli_json_key(&j, "problem_count");
		cli_json_u64(&j, (uint64_t)found);
		cli_json_key(&j, "problems");
		cli_json_begin_array(&j);
		for (size_t i = 0; i < pr.n; i++)
			cli_json_string(&j, pr.what[i]);
		cli_json_end_array(&j);
		cli_json_end_object(&j);
	} else {
		for (size_t i = 0; i < pr.n; i++)
			printf("problem: %s\n", pr.what[i]);
		if (found)
			printf("check: %d problem%s found in %s\n", found,
			       found == 1 ? "" : "s", ctx->store_dir);
		else
			printf("check: %s is clean\n", ctx->store_dir);
	}
	if (pr.oom)
		cli_error(ctx, "out of memory: some problems not shown");
	rc = found ? CLI_EXIT_ERROR : CLI_EXIT_OK;
out:
	for (size_t i = 0; i < pr.n; i++)
		free(pr.what[i]);
	free(pr.what);
	vd_store_close(store);
	return rc;
}
