/* vdisk mount: the FUSE front end (fuse/), over engine/vdisk.h only.
 *
 * fuse_raw.c  the raw view: a low-level libfuse3 file system whose root
 *             holds `disk` (the volume) and `partN` (its partitions),
 *             served by a multi-threaded session.
 * fuse_fs.c   the filesystem view (--fs): a guest's ext2/3/4, read-only,
 *             in a one-thread session (libext2fs is not thread-safe).
 * fuse_session.c the libfuse session both views run.
 * fuse_mount.c the mount table side: finding a mount in
 *             /proc/self/mountinfo, clearing a stale one, the state file
 *             naming the serving process, and `vdisk umount`.
 */
#ifndef VDISK_VDFUSE_H
#define VDISK_VDFUSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/vdisk.h"

/* The file system type every vdisk mount has in /proc/self/mountinfo. */
#define VDFUSE_FSTYPE "fuse.vdisk"

struct vdfuse_options {
	const char *point;      /* "VOL" or "VOL@SNAP", for fsname */
	const char *dir;        /* absolute mount point */
	int readonly;           /* mount ro (snapshots always are) */
	int foreground;         /* log to stderr, not syslog */
	const char **fuse_opts; /* extra -o values, NFUSE_OPTS of them */
	int nfuse_opts;
	/* Called once, from a session thread, when the kernel has finished
	 * FUSE_INIT: the mount is usable. */
	void (*ready)(void *opaque);
	void *opaque;
};

/* Mounts V at o->dir and serves it until it is unmounted or SIGINT,
 * SIGTERM or SIGHUP arrive (block those in every other thread first: the
 * engine's threads inherit the mask of the thread that opens a volume).
 * Returns 0 after a clean unmount, or -1 with WHY filled when the session
 * could not be created or mounted (nothing is left mounted then). */
int vdfuse_serve(vd_volume *v, const struct vdfuse_options *o, char *why,
		 size_t whylen);

struct guest_fs;

/* Mounts GFS (a filesystem of LENGTH bytes, see guest/extfs.h) read-only
 * at o->dir and serves it like vdfuse_serve().  Its notes ("journal
 * replayed ...") go to stderr with o->foreground, else to syslog. */
int vdfuse_serve_fs(struct guest_fs *gfs, uint64_t length,
		    const struct vdfuse_options *o, char *why, size_t whylen);

/* ---- fuse_mount.c ------------------------------------------------------ */

struct vdfuse_mnt {
	unsigned major, minor;  /* the connection's device */
	char fstype[64];
	char source[160];
};

/* Makes an absolute, '/'-normalised path of DIR without stat()ing its
 * last component (a stale FUSE mount point cannot be stat()ed).  Returns 0
 * or -errno. */
int vdfuse_abspath(const char *dir, char *out, size_t outlen);

/* Looks ABSDIR up in /proc/self/mountinfo: 1 and *OUT (the topmost mount
 * there) if something is mounted on it, 0 if not, -errno if the table
 * cannot be read. */
int vdfuse_mount_find(const char *absdir, struct vdfuse_mnt *out);

/* Detaches a vdisk mount on ABSDIR whose server is gone (ENOTCONN).
 * Returns 1 if it cleared one, 0 if there was none, -errno on failure. */
int vdfuse_clear_stale(const char *absdir);

/* The state file of the mount on ABSDIR (in /run/vdisk, or
 * $XDG_RUNTIME_DIR/vdisk when not root) records PID as its server.  Call
 * once the mount is live.  Returns 0 or -errno. */
int vdfuse_state_write(const char *absdir, pid_t pid);

/* Removes the state file of a mount with device MAJOR:MINOR. */
void vdfuse_state_remove(unsigned major, unsigned minor);

/* `vdisk umount`: flushes, unmounts ABSDIR and waits for its server to
 * exit.  Returns 0, or -1 with WHY filled ("not a vdisk mount", ...). */
int vdfuse_umount(const char *absdir, char *why, size_t whylen);

#endif /* VDISK_VDFUSE_H */
