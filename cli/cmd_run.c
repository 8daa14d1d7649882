/* vdisk run: boots a Linux kernel in a KVM virtual machine whose disks are
 * volumes of the store (vmm/).  The store stays open for the whole run, so
 * its control socket answers `vdisk snapshot VOL@S` from other processes
 * while the guest writes. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "guest/bootfiles.h"
#include "vmm/machine.h"

static const char help[] =
	"Usage: vdisk run [OPTIONS] VOL[@SNAP] [--kernel BZIMAGE]\n"
	"Boot a Linux kernel in a KVM virtual machine with VOL as its first\n"
	"disk (/dev/vda, virtio-blk); the serial console is stdin/stdout.\n"
	"Ctrl-A x stops the machine, Ctrl-A Ctrl-A sends Ctrl-A.\n"
	"Without --kernel the guest's own kernel boots: /vmlinuz and\n"
	"/initrd.img, else the newest /boot/vmlinuz-* and its initrd.img-*, of\n"
	"its ext2/3/4 root filesystem, with root=UUID=<its uuid> ro.\n"
	"\n"
	"  --kernel FILE     the kernel, a bzImage (boot protocol 2.12 or later)\n"
	"  --initrd FILE     an initial ramdisk\n"
	"  --append ARGS     added to the command line\n"
	"                    (console=ttyS0 reboot=k panic=-1)\n"
	"  --memory SIZE     guest memory, 64M to 3G (default 512M)\n"
	"  --cpus N          virtual processors, 1 to 16 (default 1)\n"
	"  --disk VOL[@SNAP] one more disk (/dev/vdb, ...); repeatable\n"
	"  --read-only       every disk read-only (a snapshot always is)\n"
	"  --ephemeral       run on a throwaway clone of VOL, removed at exit\n"
	"  --print-boot      print the kernel, initrd (sizes, sha256) and\n"
	"                    command line that would boot, and exit\n"
	"\n"
	"Exit status: 0 when the guest powers off or reboots, 1 on a failure,\n"
	"a triple fault or a stop by signal, 2 on bad usage.\n";

#define DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=-1"

enum {
	OPT_KERNEL = 0x100, OPT_INITRD, OPT_APPEND, OPT_MEMORY, OPT_CPUS,
	OPT_DISK, OPT_READONLY, OPT_EPHEMERAL, OPT_PRINT_BOOT,
};

struct eph {
	int active;
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	char clone[VD_NAME_MAX + 1];
	int own_snap;        /* the hidden snapshot is ours to remove */
};

static void eph_cleanup(vd_store *store, struct eph *e)
{
	if (!e->active)
		return;
	e->active = 0;
	if (vd_volume_remove(store, e->clone, 0) < 0)
		fprintf(stderr, "vdisk: run: removing the ephemeral clone "
			"'%s': %s\n", e->clone, vd_last_error());
	else if (e->own_snap && vd_snapshot_remove(store, e->vol, e->snap) < 0)
		fprintf(stderr, "vdisk: run: removing '%s@%s': %s\n", e->vol,
			e->snap, vd_last_error());
}

static int eph_create(struct cli_ctx *ctx, vd_store *store, struct eph *e,
		      const char *vol, const char *snap)
{
	int rc;

	cli_remove_leftovers(ctx, store, vol);
	snprintf(e->vol, sizeof(e->vol), "%s", vol);
	if (snap[0]) {
		snprintf(e->snap, sizeof(e->snap), "%s", snap);
	} else {
		snprintf(e->snap, sizeof(e->snap), "eph-%d", (int)getpid());
		rc = vd_snapshot_create(store, vol, e->snap);
		if (rc < 0)
			return cli_fail(ctx, rc, "%s@%s", vol, e->snap);
		e->own_snap = 1;
	}
	if (!cli_temp_name(vol, CLI_TEMP_EPHEMERAL, (long)getpid(), e->clone)) {
		cli_error(ctx, "'%s': name too long for an ephemeral clone", vol);
		goto undo;
	}
	rc = vd_clone_create(store, vol, e->snap, e->clone);
	if (rc < 0) {
		cli_fail(ctx, rc, "%s", e->clone);
		goto undo;
	}
	e->active = 1;
	return 0;
undo:
	if (e->own_snap)
		vd_snapshot_remove(store, vol, e->snap);
	return CLI_EXIT_ERROR;
}

/* ARGS has a root= word of its own. */
static int has_root(const char *args)
{
	for (const char *p = args; p && (p = strstr(p, "root=")); p++)
		if (p == args || p[-1] == ' ')
			return 1;
	return 0;
}

static int own_kernel(struct cli_ctx *ctx, vd_store *store, const char *point,
		      const char *vol, const char *snap, struct guest_boot *b)
{
	char why[1024];
	vd_volume *v;
	int rc;

	rc = vd_volume_open(store, vol, snap[0] ? snap : NULL, VD_OPEN_RDONLY,
			    &v);
	if (rc < 0) {
		rc = cli_fail(ctx, rc, "%s", point);
		return rc == CLI_EXIT_USAGE ? CLI_EXIT_ERROR : rc;
	}
	rc = guest_boot_find(v, b, why, sizeof(why));
	vd_volume_close(v);
	if (rc == -ENOENT && !why[0])
		cli_error(ctx, "no --kernel and no ext2/3/4 filesystem with "
			  "/vmlinuz or /boot/vmlinuz-* on %s", point);
	else if (rc < 0)
		cli_error(ctx, "%s: the guest's kernel: %s", point,
			  why[0] ? why : strerror(-rc));
	return rc < 0 ? CLI_EXIT_ERROR : 0;
}

static void print_file(const char *what, const struct guest_boot_file *f,
		       const char *host_path)
{
	if (f->fd < 0) {
		if (host_path)
			printf("%s %s\n", what, host_path);
		else
			printf("%s none\n", what);
		return;
	}
	printf("%s %s\n%s-size %llu\n%s-sha256 ", what, f->path, what,
	       (unsigned long long)f->size, what);
	for (int i = 0; i < 32; i++)
		printf("%02x", f->sha256[i]);
	printf("\n");
}

static void print_boot_files(const struct guest_boot *b,
			     const struct vmm_config *cfg, const char *cmdline)
{
	print_file("kernel", &b->kernel, cfg->kernel_path);
	print_file("initrd", &b->initrd, cfg->initrd_path);
	if (b->part)
		printf("root partition %u\n", b->part);
	else if (b->uuid[0])
		printf("root disk\n");
	printf("cmdline %s\n", cmdline);
}

int cmd_run(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "append", required_argument, NULL, OPT_APPEND },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "read-only", no_argument, NULL, OPT_READONLY },
		{ "ephemeral", no_argument, NULL, OPT_EPHEMERAL },
		{ "print-boot", no_argument, NULL, OPT_PRINT_BOOT },
		{ 0 }
	};
	const char *points[VMM_PCI_MAX_DISKS];
	struct vmm_disk_spec disks[VMM_PCI_MAX_DISKS];
	char serial[VMM_PCI_MAX_DISKS][21];
	struct vmm_config cfg;
	struct vd_store_options so;
	struct eph eph;
	vd_store *store = NULL;
	char *cmdline = NULL;
	const char *append = NULL;
	unsigned ndisks = 1, opened = 0;
	int readonly = 0, ephemeral = 0, print_boot = 0, c, rc;
	struct guest_boot boot = { .kernel.fd = -1, .initrd.fd = -1 };
	char kpath[64], ipath[64];
	uint64_t v;
	char *end;
	sigset_t stops, old_mask;

	memset(&cfg, 0, sizeof(cfg));
	memset(&eph, 0, sizeof(eph));
	memset(disks, 0, sizeof(disks));
	cfg.mem_size = 512ull << 20;
	cfg.ncpus = 1;
	while ((c = cli_getopt(ctx, argc, argv, "", longopts, help)) != -1) {
		switch (c) {
		case CLI_GETOPT_HELP:
			return CLI_EXIT_OK;
		case OPT_KERNEL: cfg.kernel_path = optarg; break;
		case OPT_INITRD: cfg.initrd_path = optarg; break;
		case OPT_APPEND: append = optarg; break;
		case OPT_MEMORY:
			if ((rc = cli_size_arg(ctx, optarg, &v)))
				return rc;
			if (v < (64ull << 20) || v > VMM_MEM_MAX)
				return cli_usage_error(ctx, "--memory %s: must "
						       "be 64M to 3G", optarg);
			cfg.mem_size = v & ~0xfffull;
			break;
		case OPT_CPUS:
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || !*optarg || optarg[0] == '-' ||
			    v < 1 || v > VMM_MAX_CPUS)
				return cli_usage_error(ctx, "--cpus %s: must be "
						       "1 to %d", optarg,
						       VMM_MAX_CPUS);
			cfg.ncpus = (unsigned)v;
			break;
		case OPT_DISK:
			if (ndisks >= VMM_PCI_MAX_DISKS)
				return cli_usage_error(ctx, "at most %d disks",
						       VMM_PCI_MAX_DISKS);
			points[ndisks++] = optarg;
			break;
		case OPT_READONLY: readonly = 1; break;
		case OPT_EPHEMERAL: ephemeral = 1; break;
		case OPT_PRINT_BOOT: print_boot = 1; break;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	if ((rc = cli_operands(ctx, argc, argv, 1, 1)))
		return rc;
	if (ephemeral && readonly)
		return cli_usage_error(ctx, "--ephemeral and --read-only "
				       "exclude each other");
	points[0] = argv[optind];
	char vols[VMM_PCI_MAX_DISKS][VD_NAME_MAX + 1];
	char snaps[VMM_PCI_MAX_DISKS][VD_NAME_MAX + 1];
	for (unsigned i = 0; i < ndisks; i++)
		if ((rc = cli_parse_point(ctx, points[i], CLI_SNAP_OPTIONAL,
					  vols[i], snaps[i])))
			return rc;

	/* Stop signals wait (vmm_run takes them with sigwait) from here, before
	 * the engine starts threads that would inherit an open mask: a SIGTERM
	 * right after the ephemeral clone is made must still remove it. */
	sigemptyset(&stops);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stops, &old_mask);
	memset(&so, 0, sizeof(so));
	so.create = 1;
	so.holder = "vdisk run";
	rc = cli_store_open(ctx, &so, &store);
	if (rc)
		goto out;
	if (ephemeral) {
		rc = eph_create(ctx, store, &eph, vols[0], snaps[0]);
		if (rc)
			goto out;
		snprintf(vols[0], sizeof(vols[0]), "%s", eph.clone);
		snaps[0][0] = 0;
	}
	/* The guest's own kernel is read before its disk is opened for
	 * writing, through a read-only handle of our own. */
	if (!cfg.kernel_path) {
		rc = own_kernel(ctx, store, points[0], vols[0], snaps[0], &boot);
		if (rc)
			goto out;
		snprintf(kpath, sizeof(kpath), "/proc/self/fd/%d", boot.kernel.fd);
		cfg.kernel_path = kpath;
		if (cfg.initrd_path && boot.initrd.fd >= 0) {
			close(boot.initrd.fd); /* --initrd wins */
			boot.initrd.fd = -1;
		}
		if (boot.initrd.fd >= 0) {
			snprintf(ipath, sizeof(ipath), "/proc/self/fd/%d",
				 boot.initrd.fd);
			cfg.initrd_path = ipath;
		}
	}
	if (asprintf(&cmdline, "%s%s%s%s%s%s", boot.uuid[0] &&
		     !has_root(append) ? "root=UUID=" : "",
		     boot.uuid[0] && !has_root(append) ? boot.uuid : "",
		     boot.uuid[0] && !has_root(append) ? " ro " : "",
		     DEFAULT_CMDLINE, append ? " " : "",
		     append ? append : "") < 0) {
		cli_error(ctx, "out of memory");
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	if (print_boot) {
		print_boot_files(&boot, &cfg, cmdline);
		rc = CLI_EXIT_OK;
		goto out;
	}
	for (; opened < ndisks; opened++) {
		unsigned i = opened;
		int ro = readonly || snaps[i][0];

		rc = vd_volume_open(store, vols[i], snaps[i][0] ? snaps[i] : NULL,
				    ro ? VD_OPEN_RDONLY : 0, &disks[i].vol);
		if (rc < 0) {
			rc = cli_fail(ctx, rc, "%s", points[i]);
			if (rc == CLI_EXIT_USAGE)
				rc = CLI_EXIT_ERROR;
			goto out;
		}
		disks[i].readonly = ro;
		size_t sl = strnlen(vols[i], sizeof(serial[i]) - 1);

		memcpy(serial[i], vols[i], sl); /* GET_ID: 20 bytes at most */
		serial[i][sl] = 0;
		disks[i].serial = serial[i];
	}
	cfg.cmdline = cmdline;
	cfg.disks = disks;
	cfg.ndisks = ndisks;
	rc = vmm_run(&cfg);
out:
	for (unsigned i = 0; i < opened; i++)
		vd_volume_close(disks[i].vol);
	if (store) {
		eph_cleanup(store, &eph);
		vd_store_close(store);
	}
	free(cmdline);
	guest_boot_release(&boot);
	/* A stop signal that came before the machine ran ends us now, with
	 * everything cleaned up. */
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	return rc;
}
