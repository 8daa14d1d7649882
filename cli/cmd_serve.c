/* vdisk serve: the NBD server command (the server itself is in nbd/). */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "nbd/nbd.h"

static const char help[] =
	"Usage: vdisk serve [--socket PATH | --listen HOST[:PORT]] [--read-only]\n"
	"                   [--cache SIZE] [--pidfile FILE] [EXPORT...]\n"
	"Serve the store's volumes over NBD until SIGINT or SIGTERM.\n"
	"\n"
	"Every volume VOL is an export named VOL (read-write) and every snapshot\n"
	"an export named VOL@SNAP (read-only), resolved when a client connects,\n"
	"so volumes created later are served too.  EXPORT names restrict the\n"
	"set; the first is the default export (the empty name).\n"
	"\n"
	"  -s, --socket PATH         listen on a Unix socket (mode 0600); a stale\n"
	"                            socket is replaced, a live one refused\n"
	"  -l, --listen HOST[:PORT]  listen on TCP (port 10809); by default on\n"
	"                            loopback only\n"
	"  -r, --read-only           serve every export read-only\n"
	"  -c, --cache SIZE          memory for decompressed, verified chunks\n"
	"                            (default 256M); random reads are fastest when\n"
	"                            it holds the working set.  Unflushed writes\n"
	"                            are bounded separately (1G; VDISK_DIRTY_MB)\n"
	"  --pidfile FILE            write the server's pid to FILE once it accepts\n"
	"                            connections; removed on a clean exit\n"
	"\n"
	"Without --socket and --listen, listening sockets passed by systemd socket\n"
	"activation (LISTEN_FDS) are used, else TCP on loopback.  With\n"
	"NOTIFY_SOCKET set (systemd Type=notify), READY=1 is sent once the server\n"
	"accepts connections and STOPPING=1 when it starts to shut down.\n"
	"\n"
	"Writes are durable after NBD_CMD_FLUSH or FUA.  TRIM and WRITE_ZEROES\n"
	"(with or without NO_HOLE) both make the range a hole that reads as\n"
	"zeroes: vdisk never stores zero chunks.  One log line per connection\n"
	"goes to stderr.\n";

int cmd_serve(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { OPT_PIDFILE = 0x100 };
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "cache", required_argument, NULL, 'c' },
		{ "pidfile", required_argument, NULL, OPT_PIDFILE },
		{ NULL, 0, NULL, 0 },
	};
	struct nbd_serve_options o;
	struct vd_store_options so;
	struct nbd_listener l;
	char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1], err[512];
	vd_store *store;
	uint64_t cache = 0;
	int c, i, rc, have_listen = 0;

	memset(&o, 0, sizeof(o));
	while ((c = cli_getopt(ctx, argc, argv, "s:l:rc:", longopts, help)) !=
	       -1) {
		switch (c) {
		case 's':
			o.socket_path = optarg;
			break;
		case 'l':
			o.listen_addr = optarg;
			have_listen = 1;
			break;
		case 'r':
			o.readonly = 1;
			break;
		case 'c':
			rc = cli_size_arg(ctx, optarg, &cache);
			if (rc)
				return rc;
			break;
		case OPT_PIDFILE:
			if (!*optarg)
				return cli_usage_error(ctx, "empty pidfile name");
			o.pidfile = optarg;
			break;
		case CLI_GETOPT_HELP:
			return CLI_EXIT_OK;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	if (o.socket_path && have_listen)
		return cli_usage_error(ctx, "--socket and --listen exclude "
				       "each other");
	if (o.socket_path && !*o.socket_path)
		return cli_usage_error(ctx, "empty socket path");
	for (i = optind; i < argc; i++) {
		rc = cli_parse_point(ctx, argv[i], CLI_SNAP_OPTIONAL, vol, snap);
		if (rc)
			return rc;
	}
	o.exports = argv + optind;
	o.nexports = argc - optind;

	if (nbd_listener_open(&o, &l, err, sizeof(err)) < 0) {
		cli_error(ctx, "%s", err);
		return CLI_EXIT_ERROR;
	}
	memset(&so, 0, sizeof(so));
	so.create = 1; /* like every command but init */
	so.holder = "vdisk serve";
	so.cache_bytes = cache;
	rc = cli_store_open(ctx, &so, &store);
	if (rc) {
		nbd_listener_close(&l);
		return rc;
	}
	rc = nbd_serve(store, &l, &o);
	nbd_listener_close(&l);
	vd_store_close(store);
	return rc ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}
