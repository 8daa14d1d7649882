/* vdisk serve: the NBD server command (the server itself is in nbd/). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cli/cli.h"
#include "nbd/nbd.h"

/* --busy-poll's bound: a millisecond of spinning outlasts any wake-up. */
#define BUSY_POLL_MAX 1000u

static const char help[] =
	"Usage: vdisk serve [--socket PATH | --listen HOST[:PORT]] [--read-only]\n"
	"                   [--cache SIZE] [--busy-poll USEC] [--pidfile FILE]\n"
	"                   [--tls=off|on|require]\n"
	"                   [--tls-certificates DIR | --tls-psk FILE]\n"
	"                   [--tls-verify-peer] [EXPORT...]\n"
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
	"  -c, --cache SIZE          memory for caching (default 96M, or\n"
	"                            VDISK_CACHE_MB): decompressed, verified chunks,\n"
	"                            where chunks are, and the map of the write\n"
	"                            journal; random reads are fastest when it\n"
	"                            holds the working set.  Written chunks not yet\n"
	"                            sealed are bounded separately (8M;\n"
	"                            VDISK_DIRTY_MB).  Peak memory is about this\n"
	"                            plus 64M to 72M\n"
	"  --busy-poll USEC          before sleeping until a client's next request,\n"
	"                            poll for it up to USEC microseconds (default\n"
	"                            50; 0: never), adapting to each client, so\n"
	"                            that an idle one costs nothing.  At queue\n"
	"                            depth 1 on a virtual machine this about halves\n"
	"                            a request's latency, for the CPU time spun\n"
	"  --pidfile FILE            write the server's pid to FILE once it accepts\n"
	"                            connections; removed on a clean exit\n"
	"  --tls=off|on|require      NBD over TLS (NBD_OPT_STARTTLS).  on: clients\n"
	"                            may upgrade; require: a client that does not\n"
	"                            is refused every option and sees no export.\n"
	"                            Default: off, or require when credentials\n"
	"                            are given\n"
	"  --tls-certificates DIR    X.509: DIR/server-cert.pem, server-key.pem,\n"
	"                            and ca-cert.pem to verify client certificates\n"
	"                            (the qemu-nbd/nbdkit layout; see certtool)\n"
	"  --tls-psk FILE            pre-shared keys, username:hexkey lines\n"
	"                            (psktool -u NAME -p FILE)\n"
	"  --tls-verify-peer         require a client certificate signed by\n"
	"                            DIR/ca-cert.pem\n"
	"\n"
	"With --listen on an address other than loopback and TLS off, a warning\n"
	"is printed: data and export names cross the network in the clear.\n"
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

/* Settles o->tls from --tls (MODE, -1 if not given) and the credentials:
 * one kind of credentials with TLS on, none with it off. */
static int tls_options(struct cli_ctx *ctx, struct nbd_serve_options *o,
		       int mode)
{
	const int creds = !!o->tls_certificates + !!o->tls_psk;

	if (creds > 1)
		return cli_usage_error(ctx, "--tls-certificates and --tls-psk "
				       "exclude each other");
	if (mode < 0)
		mode = creds ? NBD_TLS_REQUIRE : NBD_TLS_OFF;
	if (mode == NBD_TLS_OFF && (creds || o->tls_verify_peer))
		return cli_usage_error(ctx, "TLS options given with --tls=off");
	if (mode != NBD_TLS_OFF && !creds)
		return cli_usage_error(ctx, "--tls=%s needs --tls-certificates "
				       "DIR or --tls-psk FILE",
				       mode == NBD_TLS_ON ? "on" : "require");
	if (o->tls_verify_peer && !o->tls_certificates)
		return cli_usage_error(ctx, "--tls-verify-peer needs "
				       "--tls-certificates");
	if ((o->tls_certificates && !*o->tls_certificates) ||
	    (o->tls_psk && !*o->tls_psk))
		return cli_usage_error(ctx, "empty TLS credentials path");
	o->tls = mode;
	return 0;
}

/* True unless a listener is a TCP socket bound to a non-loopback
 * address. */
static int listener_is_local(const struct nbd_listener *l)
{
	for (int i = 0; i < l->nfds; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if (getsockname(l->fds[i], (struct sockaddr *)&ss, &sl) < 0)
			continue;
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *in = (void *)&ss;

			if ((ntohl(in->sin_addr.s_addr) >> 24) != 127)
				return 0;
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (void *)&ss;

			if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) &&
			    !(IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
			      in6->sin6_addr.s6_addr[12] == 127))
				return 0;
		}
	}
	return 1;
}

int cmd_serve(struct cli_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_PIDFILE = 0x100,
		OPT_TLS,
		OPT_TLS_CERTS,
		OPT_TLS_PSK,
		OPT_TLS_VERIFY,
		OPT_BUSY_POLL,
	};
	int tls_mode = -1;
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "cache", required_argument, NULL, 'c' },
		{ "pidfile", required_argument, NULL, OPT_PIDFILE },
		{ "busy-poll", required_argument, NULL, OPT_BUSY_POLL },
		{ "tls", required_argument, NULL, OPT_TLS },
		{ "tls-certificates", required_argument, NULL, OPT_TLS_CERTS },
		{ "tls-psk", required_argument, NULL, OPT_TLS_PSK },
		{ "tls-verify-peer", no_argument, NULL, OPT_TLS_VERIFY },
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
	o.busy_poll_us = NBD_BUSY_POLL_DEFAULT;
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
		case OPT_TLS:
			if (strcmp(optarg, "off") == 0)
				tls_mode = NBD_TLS_OFF;
			else if (strcmp(optarg, "on") == 0)
				tls_mode = NBD_TLS_ON;
			else if (strcmp(optarg, "require") == 0)
				tls_mode = NBD_TLS_REQUIRE;
			else
				return cli_usage_error(ctx, "--tls: '%s' is not "
						       "off, on or require",
						       optarg);
			break;
		case OPT_TLS_CERTS:
			o.tls_certificates = optarg;
			break;
		case OPT_TLS_PSK:
			o.tls_psk = optarg;
			break;
		case OPT_BUSY_POLL: {
			char *end;
			unsigned long us;

			errno = 0;
			us = strtoul(optarg, &end, 10);
			if (!*optarg || *end || errno || us > BUSY_POLL_MAX ||
			    optarg[0] == '-')
				return cli_usage_error(ctx, "--busy-poll: '%s' is "
						       "not a number of "
						       "microseconds from 0 to "
						       "%u", optarg,
						       BUSY_POLL_MAX);
			o.busy_poll_us = (unsigned)us;
			break;
		}
		case OPT_TLS_VERIFY:
			o.tls_verify_peer = 1;
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
	rc = tls_options(ctx, &o, tls_mode);
	if (rc)
		return rc;
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
	if (o.tls == NBD_TLS_OFF && !listener_is_local(&l))
		cli_error(ctx, "warning: listening on %s without TLS: data and "
			  "export names cross the network in the clear (see "
			  "--tls)", l.where);
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
