/* vdisk complete: a hidden helper for shell completion (dist/vdisk.bash).
 *
 *	vdisk [--store DIR] complete volumes
 *	vdisk [--store DIR] complete snapshots VOL
 *
 * prints the names, one per line.  It never creates a store: a missing or
 * unreadable store, or a missing volume, prints nothing and exits 1, and it
 * prints no messages (they would land on the user's command line).  Not in
 * `vdisk --help` and not a stable interface.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

struct complete_walk {
	const char *vol; /* NULL: list volume heads */
};

static int print_name(void *opaque, const struct vd_info *info)
{
	const struct complete_walk *w = opaque;

	if (!w->vol) {
		if (!info->snap[0])
			printf("%s\n", info->vol);
	} else if (info->snap[0] && strcmp(info->vol, w->vol) == 0) {
		printf("%s\n", info->snap);
	}
	return 0;
}

int cmd_complete(struct cli_ctx *ctx, int argc, char **argv)
{
	struct vd_store_options so = { .create = 0, .holder = "vdisk complete" };
	struct complete_walk w = { NULL };
	vd_store *store;
	int rc;

	if (argc == 2 && strcmp(argv[1], "volumes") == 0)
		w.vol = NULL;
	else if (argc == 3 && strcmp(argv[1], "snapshots") == 0 &&
		 vd_name_valid(argv[2]))
		w.vol = argv[2];
	else
		return CLI_EXIT_USAGE;
	if (vd_store_open(ctx->store_dir, &so, &store) < 0)
		return CLI_EXIT_ERROR;
	rc = vd_list(store, 0, print_name, &w);
	vd_store_close(store);
	return rc < 0 ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}
