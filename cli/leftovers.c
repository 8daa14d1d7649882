/* Temporary volumes of commands that were killed before they cleaned up.
 *
 * `vdisk import VOL` loads VOL.import-PID and renames it once complete;
 * `vdisk run --ephemeral VOL` boots the clone VOL-eph-PID, of the hidden
 * snapshot VOL@eph-PID unless a snapshot was named.  A SIGKILL leaves them
 * behind.  They are found by name: the tag, then the decimal PID of a
 * process that no longer exists, and no process holding the volume.  The
 * next import or run of the same volume removes that volume's leftovers;
 * `vdisk gc` removes every one. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

bool cli_temp_name(const char *vol, const char *tag, long pid,
		   char out[VD_NAME_MAX + 1])
{
	char tail[32];
	const int n = snprintf(tail, sizeof tail, "%s%ld", tag, pid);
	const bool fits = strlen(vol) + (size_t)n <= VD_NAME_MAX;

	snprintf(out, VD_NAME_MAX + 1, "%.*s%s", VD_NAME_MAX - n, vol, tail);
	return fits;
}

struct leftover {
	char vol[VD_NAME_MAX + 1];
	char hidden_snap[VD_NAME_MAX + 1]; /* of origin: "" if none */
	char origin[VD_NAME_MAX + 1];
	const char *what;
};

struct leftover_scan {
	const char *only;      /* the volume whose leftovers, or NULL: all */
	struct leftover *l;
	size_t n;
};

/* The PID after TAG at the end of NAME, or 0 if NAME is not VOL + TAG + PID
 * for the VOL of the scan (any VOL when the scan has none). */
static long temp_pid(const struct leftover_scan *sc, const char *name,
		     const char *tag)
{
	const char *p = strstr(name, tag), *q;
	char want[VD_NAME_MAX + 1];
	long pid;

	for (; p && (q = strstr(p + 1, tag)); p = q) /* the last one */
		;
	if (!p || !p[strlen(tag)] ||
	    strspn(p + strlen(tag), "0123456789") != strlen(p + strlen(tag)))
		return 0;
	pid = strtol(p + strlen(tag), NULL, 10);
	if (pid <= 0)
		return 0;
	if (sc->only) {
		cli_temp_name(sc->only, tag, pid, want);
		if (strcmp(want, name))
			return 0;
	}
	return pid;
}

static bool process_gone(long pid)
{
	return pid != (long)getpid() && kill((pid_t)pid, 0) < 0 &&
	       errno == ESRCH;
}

static int find_leftover(void *opaque, const struct vd_info *info)
{
	struct leftover_scan *sc = opaque;
	struct leftover *l;
	long pid;
	void *p;

	if (info->snap[0] || info->holder_pid)
		return 0;
	if ((pid = temp_pid(sc, info->vol, CLI_TEMP_IMPORT)) == 0 &&
	    (!info->origin_vol[0] ||
	     (pid = temp_pid(sc, info->vol, CLI_TEMP_EPHEMERAL)) == 0))
		return 0;
	if (!process_gone(pid))
		return 0;
	if (!(p = realloc(sc->l, (sc->n + 1) * sizeof *sc->l)))
		return -ENOMEM;
	sc->l = p;
	l = &sc->l[sc->n++];
	memset(l, 0, sizeof *l);
	snprintf(l->vol, sizeof l->vol, "%s", info->vol);
	if (strstr(info->vol, CLI_TEMP_IMPORT)) {
		l->what = "an import";
	} else {
		l->what = "an ephemeral run";
		snprintf(l->origin, sizeof l->origin, "%s", info->origin_vol);
		/* The hidden snapshot shares the dead process's id. */
		if (!strncmp(info->origin_snap, "eph-", 4) &&
		    strtol(info->origin_snap + 4, NULL, 10) == pid)
			snprintf(l->hidden_snap, sizeof l->hidden_snap, "%s",
				 info->origin_snap);
	}
	return 0;
}

unsigned cli_remove_leftovers(struct cli_ctx *ctx, vd_store *store,
			      const char *vol)
{
	struct leftover_scan sc = { .only = vol };
	unsigned removed = 0;

	if (vd_list(store, 0, find_leftover, &sc) == 0)
		for (size_t i = 0; i < sc.n; i++) {
			const struct leftover *l = &sc.l[i];

			if (vd_volume_remove(store, l->vol, 0) < 0)
				continue; /* taken up meanwhile, or busy */
			removed++;
			fprintf(stderr, "vdisk: %s: removed '%s', left by %s "
				"that was killed\n", ctx->cmd, l->vol, l->what);
			if (l->hidden_snap[0] &&
			    vd_snapshot_remove(store, l->origin, l->hidden_snap) == 0)
				fprintf(stderr, "vdisk: %s: removed its snapshot "
					"'%s@%s'\n", ctx->cmd, l->origin,
					l->hidden_snap);
		}
	free(sc.l);
	return removed;
}
