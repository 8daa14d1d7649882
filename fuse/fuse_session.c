/* The libfuse session of `vdisk mount`, shared by the raw and the
 * filesystem views. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "fuse/fuse_session.h"

/* Largest read request: 1 MiB (libfuse asks the kernel for max_pages to
 * match when it can; 6.x kernels allow 256 pages). */
#define SESSION_IO_MAX (1024u * 1024u)

/* Appends "-o OPT" to the argument vector ARGS. */
static int add_opt(struct fuse_args *args, const char *opt)
{
	return fuse_opt_add_arg(args, "-o") || fuse_opt_add_arg(args, opt);
}

int vdfuse_session_run(const struct fuse_lowlevel_ops *ops, size_t opsize,
		       void *userdata, const struct vdfuse_options *o,
		       const char *extra, int multithread, char *why,
		       size_t whylen)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *cfg = NULL;
	struct fuse_session *se = NULL;
	char opt[512];
	sigset_t sigs;
	int rc = -1;

	/* auto_unmount: a helper (fusermount3) unmounts when this process
	 * dies, even by kill -9. */
	snprintf(opt, sizeof(opt), "fsname=vdisk:%s,subtype=vdisk,"
		 "auto_unmount,max_read=%u%s%s%s", o->point, SESSION_IO_MAX,
		 o->readonly ? ",ro" : "", *extra ? "," : "", extra);
	if (fuse_opt_add_arg(&args, "vdisk") || add_opt(&args, opt))
		goto nomem;
	for (int i = 0; i < o->nfuse_opts; i++)
		if (add_opt(&args, o->fuse_opts[i]))
			goto nomem;
	se = fuse_session_new(&args, ops, opsize, userdata);
	if (!se) {
		snprintf(why, whylen, "cannot start a FUSE session (bad -o "
			 "option?)");
		goto out;
	}
	if (fuse_session_mount(se, o->dir) != 0) {
		snprintf(why, whylen, "cannot mount on '%s' (see the message "
			 "above)", o->dir);
		goto out;
	}
	/* The signals were blocked so that the engine's threads leave them
	 * to this one; libfuse's handlers end the loop. */
	if (fuse_set_signal_handlers(se) != 0) {
		snprintf(why, whylen, "cannot set signal handlers");
		fuse_session_unmount(se);
		goto out;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);

	if (multithread) {
		cfg = fuse_loop_cfg_create();
		if (!cfg) {
			fuse_remove_signal_handlers(se);
			fuse_session_unmount(se);
			goto nomem;
		}
		fuse_loop_cfg_set_clone_fd(cfg, 1);
		fuse_loop_cfg_set_max_threads(cfg, 64);
		fuse_loop_cfg_set_idle_threads(cfg, 8);
		rc = fuse_session_loop_mt(se, cfg);
	} else {
		rc = fuse_session_loop(se);
	}
	fuse_remove_signal_handlers(se);
	fuse_session_unmount(se);
	if (rc > 0) /* ended by a signal: that is a clean stop */
		rc = 0;
	if (rc == -1) /* keep -1 for "nothing mounted" */
		rc = -EPERM;
	goto out;
nomem:
	snprintf(why, whylen, "out of memory");
out:
	fuse_loop_cfg_destroy(cfg);
	if (se)
		fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	return rc;
}

void vdfuse_log(int foreground, int priority, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (foreground) {
		fprintf(stderr, "vdisk: mount: ");
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	} else {
		vsyslog(LOG_DAEMON | priority, fmt, ap);
	}
	va_end(ap);
}
