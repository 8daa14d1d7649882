/* vdisk command-line tool: top-level options and the command table.
 *
 *	vdisk [--store DIR] COMMAND [ARGS]
 *
 * Top-level options stop at the first operand (the command name); the
 * command then parses the rest with GNU permuting getopt, so its options
 * may come before or after its operands.  main() only resolves the store
 * directory; each command opens the store itself (see cli/cli.h).
 */
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

/* One source for the version: engine/vdisk.h once it defines
 * VD_VERSION_STRING, else the Makefile's VDISK_VERSION (which itself reads
 * VD_VERSION_STRING from the header when present). */
#if defined(VD_VERSION_STRING)
#define VDISK_VERSION VD_VERSION_STRING
#elif defined(VDISK_VERSION_STRING)
#define VDISK_VERSION VDISK_VERSION_STRING
#else
#error "build with -DVDISK_VERSION_STRING (see the Makefile)"
#endif

static const struct cli_command commands[] = {
	{ "init", cmd_init, "[--chunk-size SIZE]",
	  "create a store (other commands create one on first use)" },
	{ "create", cmd_create, "VOL SIZE", "create an empty volume" },
	{ "import", cmd_import, "VOL FILE",
	  "create a volume from a raw image, keeping holes" },
	{ "export", cmd_export, "VOL[@SNAP] FILE",
	  "write a volume or snapshot to a raw image (sparse)" },
	{ "snapshot", cmd_snapshot, "VOL@SNAP",
	  "freeze a volume's contents as a snapshot" },
	{ "clone", cmd_clone, "VOL@SNAP NEWVOL",
	  "create a writable volume from a snapshot" },
	{ "rollback", cmd_rollback, "VOL@SNAP",
	  "return a volume to a snapshot's contents" },
	{ "rm", cmd_rm, "[-r] VOL[@SNAP]", "remove a volume or snapshot" },
	{ "flatten", cmd_flatten, "VOL", "detach a clone from its origin" },
	{ "resize", cmd_resize, "VOL SIZE [--shrink]", "change a volume's size" },
	{ "list", cmd_list, "[--json]",
	  "list volumes, snapshots and clones as a tree" },
	{ "info", cmd_info, "VOL[@SNAP] [--json]",
	  "show details of a volume or snapshot" },
	{ "diff", cmd_diff, "VOL@SNAP [VOL[@SNAP]] [--json]",
	  "list the byte ranges that differ between two points" },
	{ "gc", cmd_gc, "[--json]", "free space of unreferenced chunks" },
	{ "check", cmd_check, "[--json]", "verify every chunk and the index" },
	{ "serve", cmd_serve, "[OPTIONS]", "serve volumes over NBD" },
	{ "mount", cmd_mount, "VOL[@SNAP] DIR [OPTIONS]",
	  "show a volume as files under DIR (FUSE)" },
	{ "umount", cmd_umount, "DIR", "unmount a vdisk mount" },
	{ "ls", cmd_ls, "VOL[@SNAP][:PART] [PATH] [-l] [-R] [--json]",
	  "list a guest's files" },
	{ "cat", cmd_cat, "VOL[@SNAP][:PART] PATH", "print a guest's file" },
	{ "get", cmd_get, "VOL[@SNAP][:PART] PATH DEST [-r]",
	  "copy a guest's files out" },
	{ "run", cmd_run, "VOL[@SNAP] --kernel BZIMAGE [OPTIONS]",
	  "boot a Linux guest on volumes (KVM)" },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Commands left out of `vdisk --help`: helpers for other programs. */
static const struct cli_command hidden_commands[] = {
	{ "complete", cmd_complete, "volumes | snapshots VOL",
	  "names for shell completion (dist/vdisk.bash)" },
};
#define N_HIDDEN (sizeof(hidden_commands) / sizeof(hidden_commands[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vdisk [--store DIR] COMMAND [ARGS]\n"
		"       vdisk COMMAND --help\n"
		"\n"
		"Snapshot and cloning storage for VM disks.\n"
		"\n"
		"Commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-9s %-32s %s\n", commands[i].name,
			commands[i].synopsis, commands[i].summary);
	fprintf(f,
		"\n"
		"Options:\n"
		"  --store DIR   the store directory (also accepted after the\n"
		"                command).  Default: $VDISK_STORE if set, else\n"
		"                $XDG_DATA_HOME/vdisk, else ~/.local/share/vdisk.\n"
		"                Every command but init creates the store on\n"
		"                first use if DIR is missing or empty.\n"
		"  -h, --help    show this help\n"
		"  --version     show the version\n"
		"\n"
		"Sizes take binary suffixes: 512, 64K, 64KiB, 10M, 2G, 1T.\n"
		"Names: 1-%d characters of A-Z a-z 0-9 . _ -, not starting with\n"
		"'.' or '-'.  A snapshot is named VOL@SNAP.\n"
		"\n"
		"Exit status: 0 success, 1 error (no such volume, busy, corrupt\n"
		"data, ...), 2 usage error (bad option, operand, size or name).\n",
		VD_NAME_MAX);
}

/* The built-in default store directory (malloc'd; the caller frees it),
 * or NULL if no home is known. */
static char *default_store(void)
{
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");
	char *dir = NULL;

	if (xdg && xdg[0] == '/') {
		if (asprintf(&dir, "%s/vdisk", xdg) < 0)
			return NULL;
		return dir;
	}
	if (!home || !*home) {
		const struct passwd *pw = getpwuid(getuid());

		home = pw ? pw->pw_dir : NULL;
	}
	if (!home || !*home)
		return NULL;
	if (asprintf(&dir, "%s/.local/share/vdisk", home) < 0)
		return NULL;
	return dir;
}

int main(int argc, char **argv)
{
	enum { OPT_VERSION = 0x100, OPT_STORE };
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "store", required_argument, NULL, OPT_STORE },
		{ 0 },
	};
	struct cli_ctx ctx = { 0 };
	char *def_store = NULL;
	const char *env;
	int c, rc;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case OPT_VERSION:
			printf("vdisk %s\n", VDISK_VERSION);
			return CLI_EXIT_OK;
		case OPT_STORE:
			ctx.store_dir = optarg;
			break;
		case ':':
			return cli_usage_error(&ctx,
					       "option '%s' needs an argument",
					       argv[optind - 1]);
		default:
			if (optopt && optopt < 0x100)
				return cli_usage_error(&ctx,
						       "unknown option '-%c'",
						       optopt);
			return cli_usage_error(&ctx, "unknown option '%s'",
					       argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return cli_usage_error(&ctx, "missing command");

	if (!ctx.store_dir) {
		env = getenv("VDISK_STORE");
		if (env && *env) {
			ctx.store_dir = env;
		} else {
			ctx.store_dir = def_store = default_store();
			ctx.store_from_default = 1;
			if (!ctx.store_dir) {
				cli_error(&ctx, "no home directory; use "
					  "--store DIR or set VDISK_STORE");
				return CLI_EXIT_ERROR;
			}
		}
	} else if (!*ctx.store_dir) {
		return cli_usage_error(&ctx, "--store: empty directory name");
	}

	for (size_t i = 0; i < N_COMMANDS; i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			char **sub = argv + optind;
			const int subc = argc - optind;

			ctx.cmd = commands[i].name;
			optind = 0; /* full getopt re-initialisation */
			rc = commands[i].fn(&ctx, subc, sub);
			free(def_store);
			return rc;
		}
	}
	for (size_t i = 0; i < N_HIDDEN; i++) {
		if (strcmp(argv[optind], hidden_commands[i].name) == 0) {
			ctx.cmd = hidden_commands[i].name;
			rc = hidden_commands[i].fn(&ctx, argc - optind,
						   argv + optind);
			free(def_store);
			return rc;
		}
	}
	free(def_store);
	if (strcmp(argv[optind], "help") == 0) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	return cli_usage_error(&ctx, "unknown command '%s'", argv[optind]);
}
