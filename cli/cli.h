/* vdisk command-line tool: helpers shared by every command (cli/cli.c).
 *
 * Shape of a command
 *   Each command is one function in cli/cmd_NAME.c (or a group of them in a
 *   shared file), listed in the command table in cli/main.c:
 *
 *	int cmd_NAME(struct cli_ctx *ctx, int argc, char **argv);
 *
 *   ARGV[0] is the command name; ARGV[1..ARGC-1] its options and operands.
 *   The function returns the process exit status: CLI_EXIT_OK (0),
 *   CLI_EXIT_ERROR (1: a state error such as "no such volume", "busy",
 *   "corrupt") or CLI_EXIT_USAGE (2: bad options, operands, sizes or names).
 *   main() resets getopt's state before calling a command.
 *
 *   The store is NOT open when a command starts: the command opens it with
 *   cli_store_open() at the point it wants (after fork() or daemonizing, as
 *   LMDB requires), and closes it with vd_store_close().
 *
 *   A typical command:
 *
 *	static const char help[] =
 *		"Usage: vdisk snapshot [OPTIONS] VOL@SNAP\n"
 *		"Freeze VOL's current contents as the snapshot SNAP.\n";
 *
 *	int cmd_snapshot(struct cli_ctx *ctx, int argc, char **argv)
 *	{
 *		static const struct option longopts[] = { { 0 } };
 *		char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
 *		vd_store *store;
 *		int c, rc;
 *
 *		while ((c = cli_getopt(ctx, argc, argv, "", longopts,
 *				       help)) != -1) {
 *			switch (c) {
 *			case CLI_GETOPT_HELP: return CLI_EXIT_OK;
 *			default: return CLI_EXIT_USAGE;
 *			}
 *		}
 *		if ((rc = cli_operands(ctx, argc, argv, 1, 1)) ||
 *		    (rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_REQUIRED,
 *					  vol, snap)) ||
 *		    (rc = cli_store_open(ctx, NULL, &store)))
 *			return rc;
 *		rc = vd_snapshot_create(store, vol, snap);
 *		if (rc < 0)
 *			rc = cli_fail(ctx, rc, "%s@%s", vol, snap);
 *		vd_store_close(store);
 *		return rc;
 *	}
 *
 * Conventions of the helpers below
 *  - Helpers that print return an exit status (0, 1 or 2) so a command can
 *    `return` it directly; they print "vdisk: CMD: ..." on stderr.
 *  - Pure helpers (parsing, formatting, I/O loops) print nothing and return
 *    0 or -errno.
 *  - Not thread-safe (getopt and the JSON/progress state are per call, but
 *    cli_getopt keeps static state).  A threaded command such as serve
 *    should finish parsing and printing helpers before starting threads, or
 *    use only the pure helpers from its threads.
 */
#ifndef VDISK_CLI_H
#define VDISK_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/types.h>

#include "engine/vdisk.h"

#define CLI_EXIT_OK    0
#define CLI_EXIT_ERROR 1
#define CLI_EXIT_USAGE 2

/* State handed to every command.  Owned by main(); valid for the whole
 * run. */
struct cli_ctx {
	const char *cmd;       /* command name, e.g. "create" */
	/* Store directory: --store DIR (top level or after the command),
	 * else $VDISK_STORE, else $XDG_DATA_HOME/vdisk, else
	 * ~/.local/share/vdisk.  Never NULL once a command runs. */
	const char *store_dir;
	int store_from_default; /* 1 if store_dir is the built-in default */
};

/* Command table entry (cli/main.c). */
struct cli_command {
	const char *name;
	int (*fn)(struct cli_ctx *ctx, int argc, char **argv);
	const char *synopsis;  /* operands, e.g. "VOL SIZE" */
	const char *summary;   /* one line for `vdisk --help` */
};

/* The commands.  cmd_serve lives in cli/cmd_serve.c (the NBD server). */
int cmd_init(struct cli_ctx *ctx, int argc, char **argv);
int cmd_create(struct cli_ctx *ctx, int argc, char **argv);
int cmd_import(struct cli_ctx *ctx, int argc, char **argv);
int cmd_export(struct cli_ctx *ctx, int argc, char **argv);
int cmd_snapshot(struct cli_ctx *ctx, int argc, char **argv);
int cmd_clone(struct cli_ctx *ctx, int argc, char **argv);
int cmd_rollback(struct cli_ctx *ctx, int argc, char **argv);
int cmd_rm(struct cli_ctx *ctx, int argc, char **argv);
int cmd_flatten(struct cli_ctx *ctx, int argc, char **argv);
int cmd_resize(struct cli_ctx *ctx, int argc, char **argv);
int cmd_list(struct cli_ctx *ctx, int argc, char **argv);
int cmd_info(struct cli_ctx *ctx, int argc, char **argv);
int cmd_diff(struct cli_ctx *ctx, int argc, char **argv);
int cmd_gc(struct cli_ctx *ctx, int argc, char **argv);
int cmd_check(struct cli_ctx *ctx, int argc, char **argv);
int cmd_serve(struct cli_ctx *ctx, int argc, char **argv);
/* vdisk mount and umount (cli/cmd_mount.c; the file system is in fuse/). */
int cmd_mount(struct cli_ctx *ctx, int argc, char **argv);
int cmd_umount(struct cli_ctx *ctx, int argc, char **argv);
/* A guest's ext2/3/4 files (cli/cmd_guest.c, over guest/). */
int cmd_ls(struct cli_ctx *ctx, int argc, char **argv);
int cmd_cat(struct cli_ctx *ctx, int argc, char **argv);
int cmd_get(struct cli_ctx *ctx, int argc, char **argv);
/* vdisk run (cli/cmd_run.c, the machine in vmm/). */
int cmd_run(struct cli_ctx *ctx, int argc, char **argv);
/* Hidden helper for shell completion (cli/cmd_complete.c). */
int cmd_complete(struct cli_ctx *ctx, int argc, char **argv);

/* ---- option parsing ----------------------------------------------------- */

/* Special returns of cli_getopt(). */
#define CLI_GETOPT_HELP  0x10000 /* --help/-h: help printed; exit 0 */
#define CLI_GETOPT_ERROR 0x10001 /* bad option: message printed; exit 2 */

/* getopt_long() for a command, GNU permuting (options may follow
 * operands; "--" ends options).  Call it in a loop exactly like
 * getopt_long(); afterwards the operands are ARGV[optind..ARGC-1].
 *
 * SHORTOPTS and LONGOPTS are the command's own options (LONGOPTS ends with
 * an all-zero entry and may be just that).  Every command also gets, without
 * listing them:
 *   -h, --help     prints HELP to stdout and returns CLI_GETOPT_HELP;
 *   --store DIR    sets ctx->store_dir (handled here, never returned).
 * Unknown options and missing option arguments print
 * "vdisk: CMD: unknown option '--x'" plus a hint and return
 * CLI_GETOPT_ERROR.  Returns -1 at the end of the options. */
int cli_getopt(struct cli_ctx *ctx, int argc, char **argv,
	       const char *shortopts, const struct option *longopts,
	       const char *help);

/* Checks that there are MIN..MAX operands left (ARGV[optind..]); MAX < 0
 * means no limit.  Prints "missing operand" / "extra operand 'x'" and
 * returns CLI_EXIT_USAGE, or returns 0. */
int cli_operands(struct cli_ctx *ctx, int argc, char **argv, int min,
		 int max);

/* ---- operands ----------------------------------------------------------- */

/* Parses a size: plain bytes ("1048576"), or a number with a binary suffix
 * K, M, G, T, P, E (1K = 1024), optionally followed by "iB" or "B" ("64K",
 * "64KiB", "1.5G" is rejected: integers only), case-insensitive suffix.
 * Rejects empty strings, signs, garbage, zero and values over UINT64_MAX.
 * Returns 0, -EINVAL (malformed or zero) or -ERANGE (overflow). */
int cli_parse_size(const char *s, uint64_t *out);

/* cli_parse_size() for a size operand or option value; prints
 * "vdisk: CMD: invalid size 'x'" and returns CLI_EXIT_USAGE on error. */
int cli_size_arg(struct cli_ctx *ctx, const char *s, uint64_t *out);

enum cli_snap_rule {
	CLI_SNAP_FORBIDDEN, /* "VOL" */
	CLI_SNAP_OPTIONAL,  /* "VOL" or "VOL@SNAP" */
	CLI_SNAP_REQUIRED,  /* "VOL@SNAP" */
};

/* Splits ARG ("VOL" or "VOL@SNAP") into VOL and SNAP (SNAP "" when absent)
 * with vd_point_parse(), after checking RULE.  On error prints why ("'ARG':
 * expected VOL@SNAP", "'ARG': more than one '@'", ...) and returns
 * CLI_EXIT_USAGE; returns 0 on success. */
int cli_parse_point(struct cli_ctx *ctx, const char *arg,
		    enum cli_snap_rule rule, char vol[VD_NAME_MAX + 1],
		    char snap[VD_NAME_MAX + 1]);

/* ---- errors ------------------------------------------------------------- */

/* Exit status for an engine status: 0 for ERR >= 0, CLI_EXIT_USAGE for
 * VD_ENAME, CLI_EXIT_ERROR for everything else. */
int cli_exit_code(int err);

/* Reports the engine failure ERR (< 0) of the command: prints
 * "vdisk: CMD: LAST" where LAST is vd_last_error() (which names the engine
 * call and the objects: "vd_volume_open: volume 'a' is held by ..."), or,
 * when that is empty, "vdisk: CMD: WHAT: vd_strerror(ERR)" where WHAT is
 * the printf-style FMT (NULL to omit it).  Call it right after the failing vd_* call, before any
 * other vd_* call (they reset vd_last_error()).  Returns
 * cli_exit_code(ERR). */
int cli_fail(struct cli_ctx *ctx, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prints "vdisk: CMD: MESSAGE" (printf-style) on stderr. */
void cli_error(struct cli_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Prints "vdisk: CMD: MESSAGE" plus "Try 'vdisk CMD --help'." on stderr
 * and returns CLI_EXIT_USAGE. */
int cli_usage_error(struct cli_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- the store ---------------------------------------------------------- */

/* Opens ctx->store_dir.  OPTS NULL means: create the store if missing (or
 * an empty directory), default cache, holder "vdisk CMD".  With OPTS the
 * caller's options are used as given (set holder for a long-lived writer
 * such as "vdisk serve").  On failure prints
 * "vdisk: CMD: store 'DIR': MESSAGE" and returns its exit status; returns 0
 * and sets *OUT on success.  Close with vd_store_close(). */
int cli_store_open(struct cli_ctx *ctx, const struct vd_store_options *opts,
		   vd_store **out);

/* ---- output ------------------------------------------------------------- */

/* Formats BYTES for humans: "512 B", "64 KiB", "1.5 GiB" (binary units,
 * one decimal when under 10 and not whole).  Returns BUF. */
#define CLI_HUMAN_MAX 32
const char *cli_human_size(uint64_t bytes, char buf[CLI_HUMAN_MAX]);

/* A small streaming JSON writer with correct string escaping (control
 * characters, quotes, backslashes; bytes >= 0x80 are passed through, since
 * names are ASCII and messages are UTF-8).  Output is indented, two spaces
 * a level, and ends with a newline after the outermost value.  Keys are
 * given with cli_json_key() before each member value of an object.
 *
 *	struct cli_json j;
 *	cli_json_init(&j, stdout);
 *	cli_json_begin_object(&j);
 *	cli_json_key(&j, "size"); cli_json_u64(&j, 42);
 *	cli_json_end_object(&j);
 */
#define CLI_JSON_DEPTH 16
struct cli_json {
	FILE *f;
	int depth;
	int after_key;
	int count[CLI_JSON_DEPTH]; /* members written at each depth */
};
void cli_json_init(struct cli_json *j, FILE *f);
void cli_json_begin_object(struct cli_json *j);
void cli_json_end_object(struct cli_json *j);
void cli_json_begin_array(struct cli_json *j);
void cli_json_end_array(struct cli_json *j);
void cli_json_key(struct cli_json *j, const char *key);
void cli_json_string(struct cli_json *j, const char *s); /* NULL: null */
void cli_json_u64(struct cli_json *j, uint64_t v);
void cli_json_i64(struct cli_json *j, int64_t v);
void cli_json_double(struct cli_json *j, double v); /* non-finite: null */
void cli_json_bool(struct cli_json *j, int v);
void cli_json_null(struct cli_json *j);

/* Writes S as a JSON string literal (with quotes) to F. */
void cli_json_escape(FILE *f, const char *s);

/* Progress bar on stderr, drawn only when stderr is a terminal; otherwise
 * every call is a no-op.  Redraws at most ~10 times a second.
 *
 *	struct cli_progress p;
 *	cli_progress_begin(&p, "import", total);
 *	cli_progress_update(&p, done);      (or pass cli_progress_cb and &p
 *	                                     as a vd_progress_fn and opaque)
 *	cli_progress_end(&p);               (erases the bar)
 */
struct cli_progress {
	const char *label;
	uint64_t total;
	uint64_t last_ns;
	int enabled;
	int drawn;
};
void cli_progress_begin(struct cli_progress *p, const char *label,
			uint64_t total);
void cli_progress_update(struct cli_progress *p, uint64_t done);
void cli_progress_cb(void *opaque, uint64_t done, uint64_t total);
void cli_progress_end(struct cli_progress *p);

/* A message on stderr for a call that may wait long (settling a snapshot:
 * sealing the writes before it), shown only once it has taken more than a
 * second, with the seconds it took at the end:
 *
 *	struct cli_wait w;
 *	cli_wait_begin(&w, "vol@s: sealing the writes before the snapshot");
 *	... the call ...
 *	cli_wait_end(&w);
 */
struct cli_wait {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const char *what;
	uint64_t start_ns;
	int done, shown, started;
};
void cli_wait_begin(struct cli_wait *w, const char *what);
void cli_wait_end(struct cli_wait *w);

/* ---- I/O ---------------------------------------------------------------- */

/* True if the LEN bytes at BUF are all zero. */
int cli_is_zero(const void *buf, size_t len);

/* Parses the options of a command whose only option is --json (plus
 * --help and --store).  Returns -1 to go on, or the exit status to return. */
int cli_json_option(struct cli_ctx *ctx, int argc, char **argv,
		    const char *help, int *json);

/* ---- temporary volumes (cli/leftovers.c) -------------------------------- */

/* `vdisk import VOL` loads VOL CLI_TEMP_IMPORT PID, `vdisk run --ephemeral
 * VOL` boots the clone VOL CLI_TEMP_EPHEMERAL PID. */
#define CLI_TEMP_IMPORT    ".import-"
#define CLI_TEMP_EPHEMERAL "-eph-"

/* Writes VOL + TAG + PID to OUT, VOL cut so that it fits; returns false if
 * VOL had to be cut. */
bool cli_temp_name(const char *vol, const char *tag, long pid,
		   char out[VD_NAME_MAX + 1]);

/* Removes the temporary volumes of VOL (of every volume if VOL is NULL)
 * whose process is gone and that nobody holds, with an ephemeral clone's
 * hidden snapshot, saying so on stderr.  Best effort; returns how many. */
unsigned cli_remove_leftovers(struct cli_ctx *ctx, vd_store *store,
			      const char *vol);

#endif /* VDISK_CLI_H */
