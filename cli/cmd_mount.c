/* vdisk mount and vdisk umount: the FUSE raw view, and with --fs the
 * guest filesystem view (the file systems themselves are in fuse/).
 *
 * Start-up without -f: everything that can be checked without the store
 * is checked first (DIR, /dev/fuse, the pidfile); then the command forks
 * and the child, which serves the mount, opens the store (LMDB: after
 * fork, never before) and the volume, and mounts.  The parent waits on a
 * pipe: one byte means the kernel has finished FUSE_INIT and the pidfile is
 * written, so the mount is usable when the parent exits 0; end of file
 * means the child failed (it printed why on the shared stderr) and the
 * parent exits 1 with nothing mounted.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "fuse/vdfuse.h"
#include "guest/point.h"

static const char mount_help[] =
	"Usage: vdisk mount VOL[@SNAP] DIR [--read-only] [-f|--foreground]\n"
	"                   [--pidfile FILE] [-o FUSE_OPTION]...\n"
	"       vdisk mount --fs VOL[@SNAP][:PART] DIR [options]\n"
	"Show a volume or snapshot as files under DIR (FUSE): DIR/disk is the\n"
	"whole volume as a raw file of its size, DIR/part1, DIR/part2, ... its\n"
	"MBR or GPT partitions.  Snapshots are mounted read-only.\n"
	"\n"
	"  --fs                 show the ext2/3/4 filesystem on the volume (or\n"
	"                       on its partition PART) instead, read-only: its\n"
	"                       files, modes, owners, times, links and xattrs,\n"
	"                       a dirty journal replayed in memory; a volume\n"
	"                       held for writing elsewhere is refused (mount a\n"
	"                       snapshot of it)\n"
	"  -r, --read-only      mount a volume read-only\n"
	"  -f, --foreground     serve in the foreground (log to stderr) until\n"
	"                       unmounted, SIGINT or SIGTERM\n"
	"  --pidfile FILE       write the serving process's pid to FILE once the\n"
	"                       mount is usable; removed when it exits\n"
	"  -o FUSE_OPTION       pass a mount option to FUSE (allow_other, ...)\n"
	"\n"
	"Without -f the command returns once the mount is usable and serves in\n"
	"the background; errors at start-up are reported and nothing stays\n"
	"mounted.  fsync on DIR/disk makes acknowledged writes durable;\n"
	"SEEK_DATA/SEEK_HOLE show the volume's allocation; fallocate\n"
	"(punch hole, zero range) discards.  Unmount with vdisk umount DIR\n"
	"(or fusermount3 -u DIR).\n";

static const char umount_help[] =
	"Usage: vdisk umount DIR\n"
	"Flush and unmount a vdisk mount, and wait for its server to exit.\n"
	"A mount whose server was killed is cleared.\n";

struct mount_run {
	const char *absdir;
	const char *pidfile;
	int pidfd;        /* the pidfile, opened before mounting */
	int ready_fd;     /* the pipe to the waiting parent, -1 if none */
	int foreground;
	struct cli_ctx *ctx;
};

static void on_ready(void *opaque)
{
	struct mount_run *r = opaque;
	char buf[32];
	int n, fd;

	if (r->pidfd >= 0) {
		n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
		if (write(r->pidfd, buf, (size_t)n) != n)
			cli_error(r->ctx, "pidfile '%s': %s", r->pidfile,
				  strerror(errno));
		close(r->pidfd);
		r->pidfd = -1;
	}
	if (vdfuse_state_write(r->absdir, getpid()) < 0)
		cli_error(r->ctx, "warning: cannot record the mount's server "
			  "(vdisk umount will not wait for it)");
	if (r->ready_fd >= 0) {
		/* Detach from the terminal: the parent's caller may be
		 * reading our stdout and stderr until they close. */
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		if (write(r->ready_fd, "R", 1) != 1) {
			/* the parent is gone; serve anyway */
		}
		close(r->ready_fd);
		r->ready_fd = -1;
	}
}

/* Checks DIR before anything is started: the reasons a mount would fail
 * that the user should hear about from the command itself. */
static int check_dir(struct cli_ctx *ctx, const char *dir, const char *abs)
{
	struct vdfuse_mnt m;
	struct stat st;
	int rc, fd;

	rc = vdfuse_clear_stale(abs);
	if (rc < 0)
		cli_error(ctx, "'%s': cannot clear the stale mount: %s", dir,
			  strerror(-rc));
	if (stat(abs, &st) < 0) {
		cli_error(ctx, "'%s': %s", dir, errno == ENOENT ?
			  "no such directory" : strerror(errno));
		return CLI_EXIT_ERROR;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_error(ctx, "'%s' is not a directory", dir);
		return CLI_EXIT_ERROR;
	}
	rc = vdfuse_mount_find(abs, &m);
	if (rc > 0) {
		cli_error(ctx, "'%s' is already a mount point (%s from %s)",
			  dir, m.fstype, m.source);
		return CLI_EXIT_ERROR;
	}
	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		cli_error(ctx, "/dev/fuse: %s", strerror(errno));
		return CLI_EXIT_ERROR;
	}
	close(fd);
	return 0;
}

/* The serving side: opens the store and the volume, mounts and serves.
 * Returns the exit status. */
static int serve_fs(struct cli_ctx *ctx, const char *spec,
		    const struct guest_point *gp, struct vdfuse_options *o,
		    struct mount_run *r)
{
	struct guest_view *gv;
	vd_store *store;
	char why[GUEST_WHY_MAX];
	int rc;

	rc = cli_store_open(ctx, NULL, &store);
	if (rc)
		return rc;
	rc = guest_view_open(store, gp, &gv, why, sizeof(why));
	if (rc < 0) {
		cli_error(ctx, "'%s': %s", spec, why);
		vd_store_close(store);
		return CLI_EXIT_ERROR;
	}
	o->readonly = 1;
	why[0] = '\0';
	rc = vdfuse_serve_fs(gv->fs, gv->length, o, why, sizeof(why));
	if (rc < 0 && why[0] && (r->ready_fd >= 0 || r->foreground))
		cli_error(ctx, "%s", why);
	if (r->pidfile)
		unlink(r->pidfile);
	guest_view_close(gv);
	vd_store_close(store);
	return rc < 0 ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}

static int serve_mount(struct cli_ctx *ctx, const char *point,
		       const char *vol, const char *snap, int readonly,
		       const struct guest_point *gp, struct vdfuse_options *o,
		       struct mount_run *r)
{
	struct vd_store_options so;
	vd_store *store;
	vd_volume *v;
	char why[512];
	sigset_t sigs;
	int rc;

	/* The engine's threads inherit this mask: leave these signals to the
	 * session's thread (vdfuse_serve unblocks them there). */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if (gp)
		return serve_fs(ctx, point, gp, o, r);

	memset(&so, 0, sizeof(so));
	so.create = 1;
	so.holder = "vdisk mount";
	rc = cli_store_open(ctx, &so, &store);
	if (rc)
		return rc;
	rc = vd_volume_open(store, vol, *snap ? snap : NULL,
			    readonly ? VD_OPEN_RDONLY : 0, &v);
	if (rc < 0) {
		rc = cli_fail(ctx, rc, "%s", point);
		vd_store_close(store);
		return rc == CLI_EXIT_USAGE ? CLI_EXIT_ERROR : rc;
	}
	o->readonly = readonly || vd_volume_is_readonly(v);
	rc = vdfuse_serve(v, o, why, sizeof(why));
	if (rc < 0 && r->ready_fd >= 0)
		cli_error(ctx, "%s", why);
	else if (rc < 0 && r->foreground)
		cli_error(ctx, "%s", why);
	if (r->pidfile)
		unlink(r->pidfile);
	rc = vd_volume_close(v) < 0 || rc < 0 ? CLI_EXIT_ERROR : CLI_EXIT_OK;
	vd_store_close(store);
	return rc;
}

int cmd_mount(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { OPT_PIDFILE = 0x100, OPT_FS };
	static const struct option longopts[] = {
		{ "read-only", no_argument, NULL, 'r' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "pidfile", required_argument, NULL, OPT_PIDFILE },
		{ "fs", no_argument, NULL, OPT_FS },
		{ NULL, 0, NULL, 0 },
	};
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1], abs[PATH_MAX];
	static char store_abs[PATH_MAX], pid_abs[PATH_MAX];
	const char **fopts;
	struct vdfuse_options o;
	struct mount_run r;
	struct guest_point gpoint, *gp = NULL;
	char why[GUEST_WHY_MAX];
	int c, rc, readonly = 0, fsview = 0, pipefd[2], status;
	char byte;
	pid_t pid;

	memset(&o, 0, sizeof(o));
	memset(&r, 0, sizeof(r));
	fopts = calloc((size_t)argc + 1, sizeof(*fopts));
	if (!fopts) {
		cli_error(ctx, "out of memory");
		return CLI_EXIT_ERROR;
	}
	while ((c = cli_getopt(ctx, argc, argv, "rfo:", longopts,
			       mount_help)) != -1) {
		switch (c) {
		case 'r':
			readonly = 1;
			break;
		case 'f':
			r.foreground = 1;
			break;
		case 'o':
			if (!*optarg || strchr(optarg, ' ')) {
				free(fopts);
				return cli_usage_error(ctx, "bad -o option "
						       "'%s'", optarg);
			}
			fopts[o.nfuse_opts++] = optarg;
			break;
		case OPT_FS:
			fsview = 1;
			break;
		case OPT_PIDFILE:
			if (!*optarg) {
				free(fopts);
				return cli_usage_error(ctx, "empty pidfile "
						       "name");
			}
			r.pidfile = optarg;
			break;
		case CLI_GETOPT_HELP:
			free(fopts);
			return CLI_EXIT_OK;
		default:
			free(fopts);
			return CLI_EXIT_USAGE;
		}
	}
	if ((rc = cli_operands(ctx, argc, argv, 2, 2)))
		goto out;
	if (fsview) {
		if (guest_point_parse(argv[optind], &gpoint, why,
				      sizeof(why)) < 0) {
			rc = cli_usage_error(ctx, "'%s': %s", argv[optind],
					     why);
			goto out;
		}
		gp = &gpoint;
	} else if ((rc = cli_parse_point(ctx, argv[optind], CLI_SNAP_OPTIONAL,
					 vol, snap))) {
		goto out;
	}
	rc = vdfuse_abspath(argv[optind + 1], abs, sizeof(abs));
	if (rc < 0) {
		cli_error(ctx, "'%s': %s", argv[optind + 1], strerror(-rc));
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	rc = check_dir(ctx, argv[optind + 1], abs);
	if (rc)
		goto out;
	r.pidfd = -1;
	if (r.pidfile) {
		r.pidfd = open(r.pidfile, O_WRONLY | O_CREAT | O_TRUNC |
			       O_CLOEXEC, 0644);
		if (r.pidfd < 0) {
			cli_error(ctx, "pidfile '%s': %s", r.pidfile,
				  strerror(errno));
			rc = CLI_EXIT_ERROR;
			goto out;
		}
	}
	/* The server changes to "/" (without -f): make the paths it keeps
	 * absolute first. */
	if (!r.foreground) {
		if (ctx->store_dir[0] != '/' &&
		    vdfuse_abspath(ctx->store_dir, store_abs,
				   sizeof(store_abs)) == 0)
			ctx->store_dir = store_abs;
		if (r.pidfile && r.pidfile[0] != '/' &&
		    vdfuse_abspath(r.pidfile, pid_abs, sizeof(pid_abs)) == 0)
			r.pidfile = pid_abs;
	}
	r.absdir = abs;
	r.ctx = ctx;
	r.ready_fd = -1;
	o.point = argv[optind];
	o.dir = abs;
	o.foreground = r.foreground;
	o.fuse_opts = fopts;
	o.ready = on_ready;
	o.opaque = &r;

	if (r.foreground) {
		rc = serve_mount(ctx, argv[optind], vol, snap, readonly, gp,
				 &o, &r);
		goto out;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		cli_error(ctx, "pipe: %s", strerror(errno));
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		cli_error(ctx, "fork: %s", strerror(errno));
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	if (pid == 0) {
		close(pipefd[0]);
		setsid();
		/* Hold no directory busy: the paths we use are absolute. */
		if (chdir("/") < 0) {
			/* harmless: we stay where we were */
		}
		r.ready_fd = pipefd[1];
		rc = serve_mount(ctx, argv[optind], vol, snap, readonly, gp,
				 &o, &r);
		_exit(rc);
	}
	close(pipefd[1]);
	if (r.pidfd >= 0)
		close(r.pidfd);
	while ((rc = (int)read(pipefd[0], &byte, 1)) < 0 && errno == EINTR)
		;
	close(pipefd[0]);
	if (rc == 1) {
		rc = CLI_EXIT_OK;
		goto out;
	}
	/* The child failed before the mount was usable, and said why. */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (r.pidfile)
		unlink(r.pidfile);
	rc = CLI_EXIT_ERROR;
out:
	free(fopts);
	return rc;
}

int cmd_umount(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { { 0 } };
	char abs[PATH_MAX], why[PATH_MAX + 256];
	int c, rc;

	while ((c = cli_getopt(ctx, argc, argv, "", longopts, umount_help)) !=
	       -1) {
		switch (c) {
		case CLI_GETOPT_HELP:
			return CLI_EXIT_OK;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	rc = cli_operands(ctx, argc, argv, 1, 1);
	if (rc)
		return rc;
	rc = vdfuse_abspath(argv[optind], abs, sizeof(abs));
	if (rc < 0) {
		cli_error(ctx, "'%s': %s", argv[optind], strerror(-rc));
		return CLI_EXIT_ERROR;
	}
	if (vdfuse_umount(abs, why, sizeof(why)) < 0) {
		cli_error(ctx, "%s", why);
		return CLI_EXIT_ERROR;
	}
	return CLI_EXIT_OK;
}
