/* vdisk serve: placeholder until the NBD server lands (owned by the NBD
 * engineer, who replaces this file). */
#include "cli/cli.h"

int cmd_serve(struct cli_ctx *ctx, int argc, char **argv)
{
	(void)ctx;
	(void)argc;
	(void)argv;
	fprintf(stderr, "vdisk: serve: not built yet\n");
	return CLI_EXIT_ERROR;
}
