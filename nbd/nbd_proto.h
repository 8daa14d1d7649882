/* vdisk NBD server: the wire protocol, pure.
 *
 * Constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md,
 * fixed newstyle handshake, simple and structured replies, base:allocation
 * block status), plus decoders, validators and encoders that do no I/O and
 * keep no state, so the server, the fuzz target and the replay test share
 * them (nbd_proto.c).
 *
 * Byte order: every integer on the NBD wire is big-endian.
 */
#ifndef VDISK_NBD_PROTO_H
#define VDISK_NBD_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* ---- magics -------------------------------------------------------------- */

#define NBD_MAGIC              0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_IHAVEOPT           0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC          0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC      0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCT_REPLY_MAGIC 0x668e33efu

/* ---- handshake ----------------------------------------------------------- */

/* Handshake flags (server, 16 bits) and client flags (32 bits). */
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* Options. */
#define NBD_OPT_EXPORT_NAME       1u
#define NBD_OPT_ABORT             2u
#define NBD_OPT_LIST              3u
#define NBD_OPT_STARTTLS          5u
#define NBD_OPT_INFO              6u
#define NBD_OPT_GO                7u
#define NBD_OPT_STRUCTURED_REPLY  8u
#define NBD_OPT_LIST_META_CONTEXT 9u
#define NBD_OPT_SET_META_CONTEXT  10u

/* Option replies. */
#define NBD_REP_ACK               1u
#define NBD_REP_SERVER            2u
#define NBD_REP_INFO              3u
#define NBD_REP_META_CONTEXT      4u
#define NBD_REP_ERR_UNSUP         (0x80000000u + 1)
#define NBD_REP_ERR_POLICY        (0x80000000u + 2)
#define NBD_REP_ERR_INVALID       (0x80000000u + 3)
#define NBD_REP_ERR_PLATFORM      (0x80000000u + 4)
#define NBD_REP_ERR_TLS_REQD      (0x80000000u + 5)
#define NBD_REP_ERR_UNKNOWN       (0x80000000u + 6)
#define NBD_REP_ERR_SHUTDOWN      (0x80000000u + 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (0x80000000u + 8)
#define NBD_REP_ERR_TOO_BIG       (0x80000000u + 9)

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT      0u
#define NBD_INFO_NAME        1u
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE  3u

/* Transmission flags (16 bits). */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* ---- transmission -------------------------------------------------------- */

#define NBD_CMD_READ         0u
#define NBD_CMD_WRITE        1u
#define NBD_CMD_DISC         2u
#define NBD_CMD_FLUSH        3u
#define NBD_CMD_TRIM         4u
#define NBD_CMD_CACHE        5u
#define NBD_CMD_WRITE_ZEROES 6u
#define NBD_CMD_BLOCK_STATUS 7u

#define NBD_CMD_FLAG_FUA       (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBD_CMD_FLAG_DF        (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

#define NBD_REPLY_FLAG_DONE (1u << 0)

#define NBD_REPLY_TYPE_NONE         0u
#define NBD_REPLY_TYPE_OFFSET_DATA  1u
#define NBD_REPLY_TYPE_OFFSET_HOLE  2u
#define NBD_REPLY_TYPE_BLOCK_STATUS 5u
#define NBD_REPLY_TYPE_ERROR        (0x8000u + 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET (0x8000u + 2)

/* base:allocation flags. */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)

/* Error values allowed on the wire. */
#define NBD_EPERM     1u
#define NBD_EIO       5u
#define NBD_ENOMEM    12u
#define NBD_EINVAL    22u
#define NBD_ENOSPC    28u
#define NBD_EOVERFLOW 75u
#define NBD_ENOTSUP   95u
#define NBD_ESHUTDOWN 108u

/* ---- vdisk limits -------------------------------------------------------- */

/* Largest READ or WRITE payload served (advertised as the maximum block
 * size).  A larger READ or CACHE gets EINVAL; a larger WRITE gets EINVAL and
 * the connection is closed, since its payload cannot be skipped cheaply. */
#define NBDP_MAX_REQUEST (32u * 1024 * 1024)
/* Largest option payload read during the handshake; longer options close
 * the connection. */
#define NBDP_MAX_OPTION (64u * 1024)
/* Longest export name or query string accepted (the protocol's limit). */
#define NBDP_MAX_STRING 4096u
/* Block status descriptors sent in one reply at most. */
#define NBDP_MAX_EXTENTS 8192u
/* The one metadata context served and its id. */
#define NBDP_META_ALLOCATION "base:allocation"
#define NBDP_META_ALLOCATION_ID 1u

#define NBDP_OPTION_HDR_SIZE 16 /* IHAVEOPT, option, length */
#define NBDP_OPTREP_HDR_SIZE 20 /* magic, option, type, length */
#define NBDP_REQUEST_SIZE 28
#define NBDP_SIMPLE_REPLY_SIZE 16
#define NBDP_CHUNK_HDR_SIZE 20

/* ---- byte order ---------------------------------------------------------- */

uint16_t nbdp_get16(const uint8_t *p);
uint32_t nbdp_get32(const uint8_t *p);
uint64_t nbdp_get64(const uint8_t *p);
void nbdp_put16(uint8_t *p, uint16_t v);
void nbdp_put32(uint8_t *p, uint32_t v);
void nbdp_put64(uint8_t *p, uint64_t v);

/* ---- handshake messages -------------------------------------------------- */

struct nbdp_option {
	uint32_t opt;
	uint32_t len;
};

/* Decodes a client option header.  Returns 0, or -1 if the magic is not
 * IHAVEOPT (the connection must then be dropped). */
int nbdp_option_decode(const uint8_t in[NBDP_OPTION_HDR_SIZE],
		       struct nbdp_option *o);

/* Encodes an option reply header. */
void nbdp_optrep_encode(uint8_t out[NBDP_OPTREP_HDR_SIZE], uint32_t opt,
			uint32_t type, uint32_t len);

/* Payload of NBD_OPT_INFO and NBD_OPT_GO. */
#define NBDP_MAX_INFO_REQS 16
struct nbdp_info_req {
	char name[NBDP_MAX_STRING + 1]; /* NUL-terminated */
	unsigned ninfos;                /* requests kept (extras dropped) */
	uint16_t infos[NBDP_MAX_INFO_REQS];
};

/* Parses an INFO/GO payload of LEN bytes.  Returns 0, or
 * NBD_REP_ERR_INVALID if the lengths are inconsistent or the name holds a
 * NUL or is too long. */
uint32_t nbdp_info_req_parse(const uint8_t *data, uint32_t len,
			     struct nbdp_info_req *out);

/* Payload of NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
struct nbdp_meta_req {
	char name[NBDP_MAX_STRING + 1];
	uint32_t nqueries;
	int want_allocation; /* base:allocation selected (or listed) */
};

/* Parses a meta context payload of LEN bytes; IS_LIST selects LIST
 * semantics (no query or "base:" lists base:allocation).  Returns 0 or
 * NBD_REP_ERR_INVALID. */
uint32_t nbdp_meta_req_parse(const uint8_t *data, uint32_t len, int is_list,
			     struct nbdp_meta_req *out);

/* Transmission flags for an export. */
uint16_t nbdp_export_flags(int readonly, int structured);

/* ---- requests ------------------------------------------------------------ */

struct nbdp_request {
	uint16_t flags;
	uint16_t type;
	uint64_t handle;
	uint64_t offset;
	uint32_t length;
};

/* What the transmission phase negotiated for one connection. */
struct nbdp_xmit {
	uint64_t size;
	uint16_t eflags;   /* transmission flags sent to the client */
	int structured;    /* NBD_OPT_STRUCTURED_REPLY acknowledged */
	int meta_alloc;    /* base:allocation selected */
};

/* Decodes a request header.  Returns 0, or -1 for a bad magic (drop the
 * connection). */
int nbdp_request_decode(const uint8_t in[NBDP_REQUEST_SIZE],
			struct nbdp_request *r);

/* Bytes of payload that follow the header (the length of a WRITE). */
uint32_t nbdp_request_payload(const struct nbdp_request *r);

/* True if the connection cannot continue after R: a WRITE whose payload
 * exceeds NBDP_MAX_REQUEST (it is answered EINVAL, then dropped). */
int nbdp_request_fatal(const struct nbdp_request *r);

/* Validates R against X: command known, flags allowed, range inside the
 * export, length within limits, writes allowed.  Returns 0 or the NBD
 * error to answer (NBD_EINVAL, NBD_ENOSPC, NBD_EPERM).  Every check the
 * server makes before touching the engine is here. */
uint32_t nbdp_request_check(const struct nbdp_request *r,
			    const struct nbdp_xmit *x);

/* Name of a command for logs ("READ", ..., "CMD#9"); BUF holds unknown
 * ones. */
const char *nbdp_cmd_name(uint16_t type, char buf[16]);

/* ---- replies ------------------------------------------------------------- */

void nbdp_simple_reply_encode(uint8_t out[NBDP_SIMPLE_REPLY_SIZE],
			      uint32_t error, uint64_t handle);
void nbdp_chunk_encode(uint8_t out[NBDP_CHUNK_HDR_SIZE], uint16_t flags,
		       uint16_t type, uint64_t handle, uint32_t len);

/* Error chunk payload: error, message length, message (truncated to fit
 * OUTLEN - 6 and to 65535).  Returns the payload length. */
size_t nbdp_error_payload(uint8_t *out, size_t outlen, uint32_t error,
			  const char *msg);

/* Builder of a base:allocation NBD_REPLY_TYPE_BLOCK_STATUS payload.
 * BUF holds 4 + 8 * MAX bytes.  Descriptors with equal flags merge. */
struct nbdp_bs {
	uint8_t *buf;
	uint32_t max;     /* descriptors that fit (>= 1) */
	uint32_t count;
	uint64_t covered; /* bytes described so far */
	uint64_t limit;   /* request length: never describe more */
};
void nbdp_bs_init(struct nbdp_bs *bs, uint8_t *buf, uint32_t max,
		  uint32_t context_id, uint64_t limit);
/* Appends LEN bytes of FLAGS.  Returns 0, or 1 when full (stop walking). */
int nbdp_bs_add(struct nbdp_bs *bs, uint64_t len, uint32_t flags);
/* Payload length so far (4 + 8 * count). */
size_t nbdp_bs_size(const struct nbdp_bs *bs);

#endif /* VDISK_NBD_PROTO_H */
