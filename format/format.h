/* vdisk on-disk format: constants, layouts, encoders and decoders.
 *
 * Everything here is pure: no I/O, no LMDB calls, no global state, so the
 * engine, `vdisk check`, the tests and the fuzzers share it.  FORMAT.md is
 * the specification; every layout below is described there too.
 *
 * Byte order: every integer vdisk writes is little-endian, except the
 * integers inside LMDB keys, which are big-endian so that LMDB's bytewise
 * key order is numeric order.
 */
#ifndef VDISK_FORMAT_H
#define VDISK_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* The store format this code writes, and the oldest it reads: a version 1
 * to 4 store becomes version 5 when a volume head of it is first opened
 * for writing with a journal (version 2 added the journal, version 3 framed
 * chunk records, version 4 journal chunk records, FMT_JREC_CHUNK, version 5
 * journal epoch markers, FMT_JREC_EPOCH; until the upgrade only the old
 * record kinds are written). */
#define FMT_VERSION 5u
#define FMT_VERSION_MIN 1u
#define FMT_PACK_VERSION 1u  /* pack file headers */

/* ---- superblock: the file STORE/vdisk.sb, written once at init ---------- */

#define FMT_SB_MAGIC "VDISKSB1"
#define FMT_SB_SIZE 64
#define FMT_SB_NAME "vdisk.sb"

struct fmt_superblock {
	uint32_t version;
	uint32_t chunk_size;
	uint8_t uuid[16];
	uint64_t created; /* unix seconds */
};

void fmt_sb_encode(const struct fmt_superblock *sb, uint8_t out[FMT_SB_SIZE]);
/* Returns 0, -1 (bad magic: not a superblock), -2 (bad checksum), -3 (bad
 * field; a version outside FMT_VERSION_MIN..FMT_VERSION is reported as
 * -4). */
#define FMT_BAD_MAGIC   (-1)
#define FMT_BAD_CRC     (-2)
#define FMT_BAD_FIELD   (-3)
#define FMT_BAD_VERSION (-4)
int fmt_sb_decode(const uint8_t in[FMT_SB_SIZE], struct fmt_superblock *sb);

/* ---- data (pack) files: STORE/data/NNNNNNNN.pack ------------------------ */

#define FMT_PACK_MAGIC "VDISKPK1"
#define FMT_PACK_HEADER_SIZE 64
#define FMT_PACK_MAX_BYTES (1ull << 30) /* roll to a new file past this */

struct fmt_pack_header {
	uint32_t version;
	uint32_t pack_id;
	uint8_t uuid[16]; /* the store's */
};

void fmt_pack_header_encode(const struct fmt_pack_header *h,
			    uint8_t out[FMT_PACK_HEADER_SIZE]);
int fmt_pack_header_decode(const uint8_t in[FMT_PACK_HEADER_SIZE],
			   struct fmt_pack_header *h);

/* A chunk record: 48-byte header, then stored_len bytes of payload. */
#define FMT_REC_MAGIC 0x31434456u /* "VDC1" */
#define FMT_REC_HEADER_SIZE 48
#define FMT_CODEC_RAW  0u
#define FMT_CODEC_ZSTD 1u
#define FMT_CODEC_FRAMED 2u /* version 3: a frame table, then frames */

struct fmt_record {
	uint8_t codec;
	uint32_t stored_len; /* payload bytes */
	uint32_t raw_len;    /* chunk size */
	uint8_t hash[32];    /* SHA-256 of the raw chunk */
};

void fmt_record_encode(const struct fmt_record *r,
		       uint8_t out[FMT_REC_HEADER_SIZE]);
int fmt_record_decode(const uint8_t in[FMT_REC_HEADER_SIZE],
		      struct fmt_record *r);

/* A framed payload (codec FMT_CODEC_FRAMED): a frame table, then the
 * frames' stored bytes back to back.  Each frame holds frame_size bytes of
 * the chunk, compressed on its own, so a read decompresses and verifies
 * only the frames it returns.  The table: u32 frame_size, u32 nframes,
 * nframes 16-byte entries (u32 stored_len, u8 kind, 3 reserved, u64
 * XXH3-64 of the stored bytes), then u64 XXH3-64 of the table bytes before
 * it seeded with the first 8 bytes of the chunk name (LE). */
#define FMT_FRAME_RAW  0u
#define FMT_FRAME_ZSTD 1u
#define FMT_FRAME_ZERO 2u /* stored_len 0: the frame reads as zeroes */
#define FMT_FRAME_MIN 4096u
#define FMT_FRAMES_MAX 256u  /* 1 MiB chunks of 4 KiB frames */
#define FMT_FRAME_ENTRY_SIZE 16

static inline size_t fmt_frame_table_size(uint32_t nframes)
{
	return 8 + (size_t)nframes * FMT_FRAME_ENTRY_SIZE + 8;
}
/* The most bytes past chunk_size a framed payload can need (every frame
 * raw, at the smallest frame size): buffers holding payloads add it. */
static inline size_t fmt_frames_slack(uint32_t chunk_size)
{
	return fmt_frame_table_size(chunk_size / FMT_FRAME_MIN);
}

struct fmt_frame {
	uint8_t kind;        /* FMT_FRAME_* */
	uint32_t stored_len;
	uint64_t check;      /* XXH3-64 of the stored bytes */
	uint32_t offset;     /* decoded: of the stored bytes in the payload */
};
struct fmt_frame_table {
	uint32_t frame_size; /* power of two, FMT_FRAME_MIN .. chunk_size */
	uint32_t nframes;    /* chunk_size / frame_size */
	struct fmt_frame f[FMT_FRAMES_MAX];
};
/* Encodes T (its checks filled in) for chunk NAME into OUT; returns the
 * table's size. */
size_t fmt_frames_encode(const struct fmt_frame_table *t,
			 const uint8_t name[32], uint8_t *out);
/* Decodes the table at the start of framed payload IN (LEN bytes) of a
 * CHUNK_SIZE chunk named NAME into T (with each frame's offset): 0,
 * FMT_BAD_CRC (table checksum), FMT_BAD_FIELD (sizes, kinds, reserved
 * bytes, or the frames do not fill LEN exactly). */
int fmt_frames_decode(const uint8_t *in, size_t len, uint32_t chunk_size,
		      const uint8_t name[32], struct fmt_frame_table *t);
/* XXH3-64 of a frame's stored bytes. */
uint64_t fmt_frame_check(const void *stored, size_t len);

/* ---- write journal: STORE/journal/VOL/NNNNNNNNNNNNNNNN.jnl -------------
 * A volume head's acknowledged writes, in order, until they are destaged
 * into chunks.  A segment file is a 64-byte header, then records. */

#define FMT_JNL_MAGIC "VDISKJN1"
#define FMT_JNL_VERSION 1u
#define FMT_JNL_HEADER_SIZE 64

struct fmt_jnl_header {
	uint32_t version;
	uint8_t uuid[16];     /* the store's */
	uint64_t layer;       /* the volume's layer when it was written */
	uint64_t segment;     /* equals the number in the file name, >= 1 */
};
void fmt_jnl_header_encode(const struct fmt_jnl_header *h,
			   uint8_t out[FMT_JNL_HEADER_SIZE]);
int fmt_jnl_header_decode(const uint8_t in[FMT_JNL_HEADER_SIZE],
			  struct fmt_jnl_header *h);

/* A record: 40-byte header, then LENGTH bytes of data for a WRITE (none
 * for a ZERO).  CHECK is XXH3-64 of the data seeded with XXH3-64 of header
 * bytes 0..31, so a torn or damaged record is detected before use. */
#define FMT_JREC_HEADER_SIZE 40
#define FMT_JREC_MAGIC 0x4a524456u  /* bytes "VDRJ" */
#define FMT_JREC_WRITE 1u
#define FMT_JREC_ZERO 2u
#define FMT_JREC_CHUNK 3u  /* a whole chunk stored in a pack file, not here */
/* An epoch marker: the records after it belong to epoch OFFSET of the
 * head's layer (a snapshot moved the write epoch on); LENGTH 0, no data. */
#define FMT_JREC_EPOCH 4u
#define FMT_JREC_DATA_MAX (8u << 20) /* longer writes take several records */

struct fmt_jrec {
	uint16_t kind;
	uint64_t seq;      /* 1, 2, 3, ... across the volume's segments */
	uint64_t offset;   /* byte offset in the volume */
	uint64_t length;   /* bytes written or zeroed */
	uint64_t check;
};
/* The data of a CHUNK record: where the chunk written at [offset, offset +
 * length) was appended (a pack record the index may not name yet). */
#define FMT_JCHUNK_SIZE 56
struct fmt_jchunk {
	uint8_t hash[32];
	uint32_t pack_id;
	uint8_t codec;
	uint64_t offset;      /* of the record in the pack file */
	uint32_t stored_len;
};
void fmt_jchunk_encode(const struct fmt_jchunk *c, uint8_t out[FMT_JCHUNK_SIZE]);
int fmt_jchunk_decode(const uint8_t in[FMT_JCHUNK_SIZE], struct fmt_jchunk *c);
/* Bytes of data a record of KIND covering LENGTH bytes carries. */
uint64_t fmt_jrec_data_len(unsigned kind, uint64_t length);

/* Encodes R with its CHECK computed over DATA (NULL for a ZERO). */
void fmt_jrec_encode(struct fmt_jrec *r, const void *data,
		     uint8_t out[FMT_JREC_HEADER_SIZE]);
/* Decodes a header: FMT_BAD_MAGIC or FMT_BAD_FIELD if it is not one. */
int fmt_jrec_decode(const uint8_t in[FMT_JREC_HEADER_SIZE],
		    struct fmt_jrec *r);
/* True if R's check matches header IN and DATA (NULL for a ZERO). */
int fmt_jrec_verify(const uint8_t in[FMT_JREC_HEADER_SIZE],
		    const struct fmt_jrec *r, const void *data);

/* ---- LMDB keys and values ----------------------------------------------- */

/* DB "map": key (layer, chunk index, ~epoch), 24 bytes big-endian, so that
 * a MDB_SET_RANGE seek to (layer, idx, ~E) lands on the newest entry with
 * epoch <= E.  Value: 1 byte kind, plus the 32-byte hash for DATA. */
#define FMT_MAP_KEY_SIZE 24
#define FMT_MAP_HOLE 0u
#define FMT_MAP_DATA 1u
#define FMT_MAP_VAL_HOLE_SIZE 1
#define FMT_MAP_VAL_DATA_SIZE 33

void fmt_map_key(uint8_t out[FMT_MAP_KEY_SIZE], uint64_t layer, uint64_t idx,
		 uint64_t epoch);
void fmt_map_key_decode(const uint8_t in[FMT_MAP_KEY_SIZE], uint64_t *layer,
			uint64_t *idx, uint64_t *epoch);

/* A map value: a hole, or data naming a chunk. */
struct fmt_map_val {
	uint8_t kind;      /* FMT_MAP_HOLE or FMT_MAP_DATA */
	uint8_t hash[32];  /* DATA only */
};
/* Encodes V into OUT; returns its length (1 or 33). */
size_t fmt_map_val_encode(const struct fmt_map_val *v,
			  uint8_t out[FMT_MAP_VAL_DATA_SIZE]);
int fmt_map_val_decode(const uint8_t *in, size_t len, struct fmt_map_val *v);

/* DB "epochs": key (layer, epoch, idx), 24 bytes big-endian, empty value:
 * which chunk indices each epoch of a layer wrote. */
void fmt_epoch_key(uint8_t out[FMT_MAP_KEY_SIZE], uint64_t layer,
		   uint64_t epoch, uint64_t idx);
void fmt_epoch_key_decode(const uint8_t in[FMT_MAP_KEY_SIZE], uint64_t *layer,
			  uint64_t *epoch, uint64_t *idx);

/* DB "readers": key (layer, epoch) 16 bytes big-endian; value u32 count of
 * points reading the layer at that epoch (snapshots, child layers forked
 * there, and the volume head at FMT_EPOCH_HEAD). */
#define FMT_READER_KEY_SIZE 16
#define FMT_EPOCH_HEAD UINT64_MAX
void fmt_reader_key(uint8_t out[FMT_READER_KEY_SIZE], uint64_t layer,
		    uint64_t epoch);
void fmt_reader_key_decode(const uint8_t in[FMT_READER_KEY_SIZE],
			   uint64_t *layer, uint64_t *epoch);

/* DB "chunks": key the 32-byte hash; value 32 bytes. */
#define FMT_CHUNK_VAL_SIZE 32
struct fmt_chunk {
	uint32_t pack_id;
	uint32_t stored_len; /* payload bytes after the record header */
	uint64_t offset;     /* of the record header in the pack file */
	uint64_t refs;       /* map entries naming this hash; 0: dead */
	uint8_t codec;
};
void fmt_chunk_encode(const struct fmt_chunk *c,
		      uint8_t out[FMT_CHUNK_VAL_SIZE]);
int fmt_chunk_decode(const uint8_t *in, size_t len, struct fmt_chunk *c);

/* DB "layers": key u64 big-endian layer id; value 32 bytes. */
#define FMT_LAYER_VAL_SIZE 32
struct fmt_layer {
	uint64_t parent;       /* 0: none */
	uint64_t parent_epoch; /* epoch of the parent this layer forks at */
	uint64_t epoch;        /* current write epoch (>= 1) */
	uint64_t created;
};
void fmt_layer_encode(const struct fmt_layer *l,
		      uint8_t out[FMT_LAYER_VAL_SIZE]);
int fmt_layer_decode(const uint8_t *in, size_t len, struct fmt_layer *l);
void fmt_u64_key(uint8_t out[8], uint64_t v);
uint64_t fmt_u64_key_decode(const uint8_t in[8]);

/* DB "volumes": key the name; value 160 bytes. */
#define FMT_VOLUME_VAL_SIZE 160
struct fmt_volume {
	uint64_t size;
	uint64_t layer;
	uint64_t created;
	char origin_vol[65];  /* clone origin snapshot, "" if none */
	char origin_snap[65];
};
void fmt_volume_encode(const struct fmt_volume *v,
		       uint8_t out[FMT_VOLUME_VAL_SIZE]);
int fmt_volume_decode(const uint8_t *in, size_t len, struct fmt_volume *v);

/* DB "snapshots": key "VOL\0SNAP"; value 32 bytes. */
#define FMT_SNAP_VAL_SIZE 32
struct fmt_snapshot {
	uint64_t layer;
	uint64_t epoch;
	uint64_t size;
	uint64_t created;
};
void fmt_snapshot_encode(const struct fmt_snapshot *s,
			 uint8_t out[FMT_SNAP_VAL_SIZE]);
int fmt_snapshot_decode(const uint8_t *in, size_t len,
			struct fmt_snapshot *s);
/* Builds "VOL\0SNAP"; returns its length (<= 2 * 64 + 1). */
size_t fmt_snap_key(uint8_t out[130], const char *vol, const char *snap);
/* Splits a "VOL\0SNAP" key into names; FMT_BAD_FIELD if malformed. */
int fmt_snap_key_decode(const uint8_t *in, size_t len, char vol[65],
			char snap[65]);

/* DB "meta": string keys, u64 little-endian values (see FORMAT.md). */

/* ---- helpers ------------------------------------------------------------ */

uint32_t fmt_crc32c(uint32_t crc, const void *buf, size_t len);

static inline void fmt_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}
static inline void fmt_put_le64(uint8_t *p, uint64_t v)
{
	fmt_put_le32(p, (uint32_t)v);
	fmt_put_le32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t fmt_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static inline uint64_t fmt_get_le64(const uint8_t *p)
{
	return (uint64_t)fmt_get_le32(p) | (uint64_t)fmt_get_le32(p + 4) << 32;
}
static inline void fmt_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}
static inline uint64_t fmt_get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

#endif /* VDISK_FORMAT_H */
