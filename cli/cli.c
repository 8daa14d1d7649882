/* vdisk command-line tool: shared helpers (see cli/cli.h for the contract).
 *
 * Option parsing wraps getopt_long() so that every command gets --help and
 * --store for free and reports bad options in the "vdisk: CMD: ..." form
 * with exit status 2.  Output helpers (JSON writer, human sizes, progress
 * bar) and full-I/O loops live here too so each command stays about its
 * own job.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

/* ---- errors ------------------------------------------------------------- */

int cli_exit_code(int err)
{
	if (err >= 0)
		return CLI_EXIT_OK;
	if (err == VD_ENAME)
		return CLI_EXIT_USAGE;
	return CLI_EXIT_ERROR;
}

static void verror(struct cli_ctx *ctx, const char *fmt, va_list ap)
{
	fputs("vdisk: ", stderr);
	if (ctx && ctx->cmd)
		fprintf(stderr, "%s: ", ctx->cmd);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void cli_error(struct cli_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(ctx, fmt, ap);
	va_end(ap);
}

int cli_usage_error(struct cli_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(ctx, fmt, ap);
	va_end(ap);
	if (ctx && ctx->cmd)
		fprintf(stderr, "Try 'vdisk %s --help'.\n", ctx->cmd);
	else
		fprintf(stderr, "Try 'vdisk --help'.\n");
	return CLI_EXIT_USAGE;
}

int cli_fail(struct cli_ctx *ctx, int err, const char *fmt, ...)
{
	const char *msg = vd_last_error();
	va_list ap;

	fputs("vdisk: ", stderr);
	if (ctx && ctx->cmd)
		fprintf(stderr, "%s: ", ctx->cmd);
	if (msg && *msg) {
		/* The engine's message names the call and its objects. */
		fprintf(stderr, "%s\n", msg);
		return cli_exit_code(err);
	}
	if (fmt) {
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputs(": ", stderr);
	}
	fprintf(stderr, "%s\n", vd_strerror(err));
	return cli_exit_code(err);
}

/* ---- option parsing ----------------------------------------------------- */

#define OPT_STORE 0x20000

int cli_getopt(struct cli_ctx *ctx, int argc, char **argv,
	       const char *shortopts, const struct option *longopts,
	       const char *help)
{
	/* The command's options plus --help and --store.  Rebuilt on every
	 * call: cheap, and keeps no state tied to one command. */
	static struct option all[64];
	static char shorts[128];
	size_t n = 0;
	int c, idx = -1;

	for (const struct option *o = longopts; o && o->name; o++) {
		if (n >= sizeof(all) / sizeof(all[0]) - 3)
			break;
		all[n++] = *o;
	}
	all[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	all[n++] = (struct option){ "store", required_argument, NULL,
				    OPT_STORE };
	all[n] = (struct option){ 0 };
	snprintf(shorts, sizeof(shorts), ":%sh", shortopts ? shortopts : "");

	opterr = 0;
	for (;;) {
		c = getopt_long(argc, argv, shorts, all, &idx);
		switch (c) {
		case OPT_STORE:
			if (!*optarg) {
				cli_usage_error(ctx, "--store: empty "
						"directory name");
				return CLI_GETOPT_ERROR;
			}
			ctx->store_dir = optarg;
			ctx->store_from_default = 0;
			continue;
		case 'h':
			fputs(help, stdout);
			return CLI_GETOPT_HELP;
		case '?':
			if (optopt && optopt < 0x100)
				cli_usage_error(ctx, "unknown option '-%c'",
						optopt);
			else
				cli_usage_error(ctx, "unknown option '%s'",
						argv[optind - 1]);
			return CLI_GETOPT_ERROR;
		case ':':
			if (optopt && optopt < 0x100 && argv[optind - 1][1] !=
			    '-')
				cli_usage_error(ctx,
						"option '-%c' needs an argument",
						optopt);
			else
				cli_usage_error(ctx,
						"option '%s' needs an argument",
						argv[optind - 1]);
			return CLI_GETOPT_ERROR;
		default:
			return c;
		}
	}
}

int cli_operands(struct cli_ctx *ctx, int argc, char **argv, int min,
		 int max)
{
	const int n = argc - optind;

	if (n < min)
		return cli_usage_error(ctx, n == 0 ? "missing operand" :
				       "missing operand after '%s'",
				       n ? argv[argc - 1] : "");
	if (max >= 0 && n > max)
		return cli_usage_error(ctx, "extra operand '%s'",
				       argv[optind + max]);
	return 0;
}

/* ---- operands ----------------------------------------------------------- */

int cli_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGTPE";
	uint64_t v = 0, mult = 1;
	const char *p = s;

	if (!s || !isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		const unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (*p) {
		const char *u = strchr(units, toupper((unsigned char)*p));

		if (!u)
			return -EINVAL;
		for (long i = 0; i <= u - units; i++)
			mult *= 1024;
		p++;
		if ((p[0] == 'i' || p[0] == 'I') && (p[1] == 'B' || p[1] == 'b'))
			p += 2;
		else if (p[0] == 'B' || p[0] == 'b')
			p++;
		if (*p)
			return -EINVAL;
	}
	if (v == 0)
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

int cli_size_arg(struct cli_ctx *ctx, const char *s, uint64_t *out)
{
	const int rc = cli_parse_size(s, out);

	if (rc == -ERANGE)
		return cli_usage_error(ctx, "size '%s' is too large", s);
	if (rc < 0)
		return cli_usage_error(ctx,
				       "invalid size '%s' (want a positive "
				       "number of bytes, or with K/M/G/T)", s);
	return 0;
}

int cli_parse_point(struct cli_ctx *ctx, const char *arg,
		    enum cli_snap_rule rule, char vol[VD_NAME_MAX + 1],
		    char snap[VD_NAME_MAX + 1])
{
	const char *const at = strchr(arg, '@');
	char why[VD_POINT_WHY_MAX];
	struct vd_point p;

	vol[0] = snap[0] = '\0';
	if (at && rule == CLI_SNAP_FORBIDDEN)
		return cli_usage_error(ctx, "'%s': expected a volume name, "
				       "not a snapshot", arg);
	if (!at && rule == CLI_SNAP_REQUIRED)
		return cli_usage_error(ctx, "'%s': expected VOL@SNAP", arg);
	if (vd_point_parse(arg, &p, why, sizeof why) < 0)
		return cli_usage_error(ctx, "'%.80s%s': %s", arg,
				       strlen(arg) > 80 ? "..." : "", why);
	memcpy(vol, p.vol, sizeof p.vol);
	memcpy(snap, p.snap, sizeof p.snap);
	return 0;
}

/* ---- the store ---------------------------------------------------------- */

/* mkdir -p of DIR's parent (for the default ~/.local/share/vdisk, whose
 * parents may not exist yet).  Errors are left to vd_store_open(). */
static void mkdir_parents(const char *dir)
{
	char *p = strdup(dir);
	char *slash;

	if (!p)
		return;
	slash = strrchr(p, '/');
	if (slash && slash != p) {
		*slash = '\0';
		for (char *q = p + 1; *q; q++) {
			if (*q == '/') {
				*q = '\0';
				mkdir(p, 0755);
				*q = '/';
			}
		}
		mkdir(p, 0755);
	}
	free(p);
}

int cli_store_open(struct cli_ctx *ctx, const struct vd_store_options *opts,
		   vd_store **out)
{
	char holder[64];
	struct vd_store_options def = { .create = 1 };
	int rc;

	if (!opts) {
		snprintf(holder, sizeof(holder), "vdisk %s",
			 ctx->cmd ? ctx->cmd : "");
		def.holder = holder;
		opts = &def;
	}
	*out = NULL;
	if (ctx->store_from_default && opts->create)
		mkdir_parents(ctx->store_dir);
	rc = vd_store_open(ctx->store_dir, opts, out);
	if (rc < 0)
		return cli_fail(ctx, rc, "store '%s'", ctx->store_dir);
	return 0;
}

/* ---- output ------------------------------------------------------------- */

const char *cli_human_size(uint64_t bytes, char buf[CLI_HUMAN_MAX])
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB",
					     "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	unsigned u = 0;

	if (bytes < 1024) {
		snprintf(buf, CLI_HUMAN_MAX, "%" PRIu64 " B", bytes);
		return buf;
	}
	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	if (v < 10 && bytes % ((uint64_t)1 << (10 * u)))
		snprintf(buf, CLI_HUMAN_MAX, "%.1f %s", v, units[u]);
	else
		snprintf(buf, CLI_HUMAN_MAX, "%.0f %s", v, units[u]);
	return buf;
}

void cli_json_escape(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		case '\b': fputs("\\b", f); break;
		case '\f': fputs("\\f", f); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

void cli_json_init(struct cli_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
}

static void indent(struct cli_json *j)
{
	fputc('\n', j->f);
	for (int i = 0; i < j->depth; i++)
		fputs("  ", j->f);
}

/* Separator and indentation before a value or a key. */
static void before_value(struct cli_json *j)
{
	if (j->after_key) {
		j->after_key = 0;
		return;
	}
	if (j->depth > 0) {
		if (j->count[j->depth - 1]++)
			fputc(',', j->f);
		indent(j);
	}
}

static void after_value(struct cli_json *j)
{
	if (j->depth == 0)
		fputc('\n', j->f);
}

static void open_container(struct cli_json *j, char c)
{
	before_value(j);
	fputc(c, j->f);
	if (j->depth < CLI_JSON_DEPTH)
		j->count[j->depth] = 0;
	j->depth++;
}

static void close_container(struct cli_json *j, char c)
{
	j->depth--;
	if (j->depth < CLI_JSON_DEPTH && j->count[j->depth])
		indent(j);
	fputc(c, j->f);
	after_value(j);
}

void cli_json_begin_object(struct cli_json *j) { open_container(j, '{'); }
void cli_json_end_object(struct cli_json *j) { close_container(j, '}'); }
void cli_json_begin_array(struct cli_json *j) { open_container(j, '['); }
void cli_json_end_array(struct cli_json *j) { close_container(j, ']'); }

void cli_json_key(struct cli_json *j, const char *key)
{
	before_value(j);
	cli_json_escape(j->f, key);
	fputs(": ", j->f);
	j->after_key = 1;
}

void cli_json_string(struct cli_json *j, const char *s)
{
	before_value(j);
	if (s)
		cli_json_escape(j->f, s);
	else
		fputs("null", j->f);
	after_value(j);
}

void cli_json_u64(struct cli_json *j, uint64_t v)
{
	before_value(j);
	fprintf(j->f, "%" PRIu64, v);
	after_value(j);
}

void cli_json_i64(struct cli_json *j, int64_t v)
{
	before_value(j);
	fprintf(j->f, "%" PRId64, v);
	after_value(j);
}

void cli_json_double(struct cli_json *j, double v)
{
	before_value(j);
	if (isfinite(v))
		fprintf(j->f, "%.6g", v);
	else
		fputs("null", j->f);
	after_value(j);
}

void cli_json_bool(struct cli_json *j, int v)
{
	before_value(j);
	fputs(v ? "true" : "false", j->f);
	after_value(j);
}

void cli_json_null(struct cli_json *j)
{
	before_value(j);
	fputs("null", j->f);
	after_value(j);
}

/* ---- progress ----------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void cli_progress_begin(struct cli_progress *p, const char *label,
			uint64_t total)
{
	memset(p, 0, sizeof(*p));
	p->label = label;
	p->total = total;
	p->enabled = isatty(STDERR_FILENO);
}

static void draw(struct cli_progress *p, uint64_t done)
{
	enum { WIDTH = 40 };
	char bar[WIDTH + 1];
	const double frac = p->total ? (double)done / (double)p->total : 0;
	const int fill = (int)(frac * WIDTH);

	for (int i = 0; i < WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[WIDTH] = '\0';
	fprintf(stderr, "\r%s [%s] %3d%%", p->label, bar, (int)(frac * 100));
	fflush(stderr);
	p->drawn = 1;
}

void cli_progress_update(struct cli_progress *p, uint64_t done)
{
	uint64_t t;

	if (!p->enabled)
		return;
	if (done > p->total)
		done = p->total;
	t = now_ns();
	if (p->drawn && t - p->last_ns < 100000000u && done < p->total)
		return;
	p->last_ns = t;
	draw(p, done);
}

void cli_progress_cb(void *opaque, uint64_t done, uint64_t total)
{
	struct cli_progress *p = opaque;

	p->total = total;
	cli_progress_update(p, done);
}

void cli_progress_end(struct cli_progress *p)
{
	if (p->enabled && p->drawn)
		fputs("\r\033[K", stderr);
	p->drawn = 0;
}

/* ---- waits -------------------------------------------------------------- */

#define WAIT_NOTICE_MS 1000

static void *wait_notice(void *arg)
{
	struct cli_wait *w = arg;
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += WAIT_NOTICE_MS / 1000;
	pthread_mutex_lock(&w->lock);
	while (!w->done &&
	       pthread_cond_timedwait(&w->cond, &w->lock, &ts) != ETIMEDOUT)
		;
	if (!w->done) {
		fprintf(stderr, "vdisk: %s...\n", w->what);
		w->shown = 1;
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

void cli_wait_begin(struct cli_wait *w, const char *what)
{
	pthread_condattr_t ca;

	memset(w, 0, sizeof *w);
	w->what = what;
	w->start_ns = now_ns();
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	/* No thread (out of resources): no message, the call goes on. */
	w->started = pthread_create(&w->thread, NULL, wait_notice, w) == 0;
}

void cli_wait_end(struct cli_wait *w)
{
	pthread_mutex_lock(&w->lock);
	w->done = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (w->started)
		pthread_join(w->thread, NULL);
	if (w->shown)
		fprintf(stderr, "vdisk: %s: done in %.1f s\n", w->what,
			(double)(now_ns() - w->start_ns) / 1e9);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
}

/* ---- I/O ---------------------------------------------------------------- */

int cli_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	/* Compare the buffer with itself shifted by one byte: fast memcmp. */
	if (len == 0)
		return 1;
	return p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
}

/* Parses the options of a command whose only option is --json.  Returns
 * -1 to go on, or the exit status to return. */
int cli_json_option(struct cli_ctx *ctx, int argc, char **argv,
		    const char *help, int *json)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ 0 },
	};
	int c;

	*json = 0;
	while ((c = cli_getopt(ctx, argc, argv, "j", longopts, help)) != -1) {
		switch (c) {
		case 'j':
			*json = 1;
			break;
		case CLI_GETOPT_HELP:
			return CLI_EXIT_OK;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	return -1;
}
