/* fuse/fuse_session.h: the libfuse session both views of `vdisk mount`
 * run (fuse_raw.c, fuse_fs.c): options, mount, signal handlers, the loop,
 * the unmount.  Internal to fuse/. */
#ifndef VDISK_FUSE_SESSION_H
#define VDISK_FUSE_SESSION_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>
#include <stddef.h>

#include "fuse/vdfuse.h"

/* Mounts OPS (with USERDATA) at o->dir, with fsname vdisk:o->point,
 * auto_unmount, EXTRA (a -o value, "" for none) and o's -o options, and
 * serves it until unmounted or a signal.  MULTITHREAD picks
 * fuse_session_loop_mt over the one-thread loop.  Returns 0 after a clean
 * stop; -1 with WHY filled if nothing could be mounted; or a negative
 * errno (< -1) when the loop failed after mounting (the caller logs it). */
int vdfuse_session_run(const struct fuse_lowlevel_ops *ops, size_t opsize,
		       void *userdata, const struct vdfuse_options *o,
		       const char *extra, int multithread, char *why,
		       size_t whylen);

/* A server's message: on stderr ("vdisk: mount: ...") in the foreground,
 * else to syslog at PRIORITY (the daemon has no terminal). */
void vdfuse_log(int foreground, int priority, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
