/* Unit tests of format/: every encoder against its decoder (random round
 * trips), the byte layout FORMAT.md describes (offsets, byte order, CRC),
 * every reject path of every decoder, LMDB key ordering, and mutation
 * fuzzing (a decoder never crashes, and what it accepts re-encodes to the
 * same bytes: encodings are canonical).
 *
 * Usage: test-format [seed] */
#include <assert.h>

#include "format/format.h"
#include "engine-test.h"

static struct et_rng rng;

static void check_crc32c(void)
{
	/* The CRC-32C check value (RFC 3720 B.4 and the iSCSI test vectors). */
	CHECK(fmt_crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c check value");
	CHECK(fmt_crc32c(0, "", 0) == 0, "crc32c of nothing");
	uint8_t z[32] = {0};
	CHECK(fmt_crc32c(0, z, 32) == 0x8A9136AAu, "crc32c of 32 zero bytes");
	uint8_t ff[32];
	memset(ff, 0xff, sizeof(ff));
	CHECK(fmt_crc32c(0, ff, 32) == 0x62A8AB43u, "crc32c of 32 0xff bytes");
	/* Incremental == one shot. */
	uint8_t buf[300];
	et_fill(&rng, buf, sizeof(buf));
	for (int i = 0; i < 20; i++) {
		const size_t cut = et_below(&rng, sizeof(buf) + 1);
		CHECK(fmt_crc32c(fmt_crc32c(0, buf, cut), buf + cut,
				 sizeof(buf) - cut) ==
			      fmt_crc32c(0, buf, sizeof(buf)),
		      "incremental crc32c at cut %zu", cut);
	}
}

static void check_byte_helpers(void)
{
	uint8_t b[8];

	fmt_put_le32(b, 0x01020304u);
	CHECK(b[0] == 4 && b[1] == 3 && b[2] == 2 && b[3] == 1, "le32 order");
	fmt_put_le64(b, 0x0102030405060708ull);
	CHECK(b[0] == 8 && b[7] == 1, "le64 order");
	CHECK(fmt_get_le64(b) == 0x0102030405060708ull, "le64 round trip");
	fmt_put_be64(b, 0x0102030405060708ull);
	CHECK(b[0] == 1 && b[7] == 8, "be64 order");
	CHECK(fmt_get_be64(b) == 0x0102030405060708ull, "be64 round trip");
	for (int i = 0; i < 1000; i++) {
		const uint64_t v = et_next(&rng);
		fmt_put_le64(b, v);
		CHECK(fmt_get_le64(b) == v, "le64 %" PRIx64, v);
		CHECK(fmt_get_le32(b) == (uint32_t)v, "le32 %" PRIx64, v);
		fmt_put_be64(b, v);
		CHECK(fmt_get_be64(b) == v, "be64 %" PRIx64, v);
	}
}

/* ---- superblock and pack header (CRC-guarded 64-byte headers) ----------- */

static void reseal(uint8_t h[64])
{
	fmt_put_le32(h + 60, fmt_crc32c(0, h, 60));
}

static const uint32_t good_chunks[] = {4096, 8192, 65536, 262144, 1048576};
static const uint32_t bad_chunks[] = {0, 1, 512, 2048, 4095, 4097, 6144,
				      12288, 65535, 65537, 1048577,
				      2097152, 0x80000000u, 0xffffffffu};

static void check_superblock(void)
{
	struct fmt_superblock sb, out;
	uint8_t h[FMT_SB_SIZE], m[FMT_SB_SIZE];

	for (int i = 0; i < 200; i++) {
		sb.version = FMT_VERSION;
		sb.chunk_size = good_chunks[et_below(&rng, 5)];
		et_fill(&rng, sb.uuid, 16);
		sb.created = et_next(&rng);
		memset(h, 0xa5, sizeof(h));
		fmt_sb_encode(&sb, h);
		memset(&out, 0x5a, sizeof(out));
		CHECK(fmt_sb_decode(h, &out) == 0, "sb round trip %d", i);
		CHECK(out.version == sb.version && out.chunk_size == sb.chunk_size &&
			      !memcmp(out.uuid, sb.uuid, 16) &&
			      out.created == sb.created,
		      "sb fields survive");
		/* Layout: magic, LE fields at fixed offsets, zero reserved
		 * bytes, CRC-32C of bytes 0..59 at 60. */
		CHECK(!memcmp(h, "VDISKSB1", 8), "sb magic at 0");
		CHECK(fmt_get_le32(h + 8) == FMT_VERSION, "sb version at 8");
		CHECK(fmt_get_le32(h + 12) == sb.chunk_size, "sb chunk at 12");
		CHECK(!memcmp(h + 16, sb.uuid, 16), "sb uuid at 16");
		CHECK(fmt_get_le64(h + 32) == sb.created, "sb created at 32");
		for (int k = 40; k < 60; k++)
			CHECK(h[k] == 0, "sb reserved byte %d is zero", k);
		CHECK(fmt_get_le32(h + 60) == fmt_crc32c(0, h, 60), "sb crc");
	}

	/* Every single-bit flip is rejected: in the magic as BAD_MAGIC,
	 * elsewhere as BAD_CRC (CRC-32C catches every 1-bit error). */
	for (int bit = 0; bit < FMT_SB_SIZE * 8; bit++) {
		memcpy(m, h, sizeof(m));
		m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		const int rc = fmt_sb_decode(m, &out);
		CHECK(rc == (bit < 64 ? FMT_BAD_MAGIC : FMT_BAD_CRC),
		      "sb bit %d flipped: got %d", bit, rc);
	}
	/* Magic is checked before the CRC. */
	memcpy(m, h, sizeof(m));
	memcpy(m, "VDISKPK1", 8);
	CHECK(fmt_sb_decode(m, &out) == FMT_BAD_MAGIC, "pack magic in sb");
	reseal(m);
	CHECK(fmt_sb_decode(m, &out) == FMT_BAD_MAGIC, "pack magic, sealed");
	memset(m, 0, sizeof(m));
	CHECK(fmt_sb_decode(m, &out) == FMT_BAD_MAGIC, "all-zero sb");
	/* A torn superblock: the first half written, the rest zero. */
	memcpy(m, h, 32);
	memset(m + 32, 0, 32);
	CHECK(fmt_sb_decode(m, &out) == FMT_BAD_CRC, "torn sb");

	/* Version 1 stores are still read (and upgraded by the engine). */
	sb.version = FMT_VERSION_MIN;
	sb.chunk_size = 65536;
	fmt_sb_encode(&sb, m);
	CHECK(fmt_sb_decode(m, &out) == 0 && out.version == FMT_VERSION_MIN,
	      "sb version %u is read", FMT_VERSION_MIN);
	/* Versions outside FMT_VERSION_MIN..FMT_VERSION, correctly sealed. */
	const uint32_t versions[] = {0, FMT_VERSION + 1, 6, 0xffffffffu, 0x100};
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		sb.version = versions[i];
		sb.chunk_size = 65536;
		fmt_sb_encode(&sb, m);
		CHECK(fmt_sb_decode(m, &out) == FMT_BAD_VERSION,
		      "sb version %u", versions[i]);
		/* Version is reported even when other fields are bad too. */
		fmt_put_le32(m + 12, 3);
		reseal(m);
		CHECK(fmt_sb_decode(m, &out) == FMT_BAD_VERSION,
		      "sb version %u with bad chunk size", versions[i]);
	}
	sb.version = FMT_VERSION;
	for (size_t i = 0; i < sizeof(bad_chunks) / sizeof(bad_chunks[0]); i++) {
		sb.chunk_size = bad_chunks[i];
		fmt_sb_encode(&sb, m);
		CHECK(fmt_sb_decode(m, &out) == FMT_BAD_FIELD,
		      "sb chunk size %u", bad_chunks[i]);
	}
	for (uint32_t cs = 4096; cs <= 1048576; cs *= 2) {
		sb.chunk_size = cs;
		fmt_sb_encode(&sb, m);
		CHECK(fmt_sb_decode(m, &out) == 0 && out.chunk_size == cs,
		      "sb chunk size %u", cs);
	}
	/* Reserved bytes must be zero. */
	sb.chunk_size = 4096;
	for (int k = 40; k < 60; k++) {
		fmt_sb_encode(&sb, m);
		m[k] = 1;
		reseal(m);
		CHECK(fmt_sb_decode(m, &out) == FMT_BAD_FIELD,
		      "sb reserved byte %d set", k);
	}
}

static void check_pack_header(void)
{
	struct fmt_pack_header ph, out;
	uint8_t h[FMT_PACK_HEADER_SIZE], m[FMT_PACK_HEADER_SIZE];

	for (int i = 0; i < 200; i++) {
		ph.version = FMT_PACK_VERSION;
		ph.pack_id = (uint32_t)et_next(&rng);
		et_fill(&rng, ph.uuid, 16);
		memset(h, 0xa5, sizeof(h));
		fmt_pack_header_encode(&ph, h);
		memset(&out, 0x5a, sizeof(out));
		CHECK(fmt_pack_header_decode(h, &out) == 0, "pack round trip");
		CHECK(out.version == ph.version && out.pack_id == ph.pack_id &&
			      !memcmp(out.uuid, ph.uuid, 16),
		      "pack fields survive");
		CHECK(!memcmp(h, "VDISKPK1", 8), "pack magic at 0");
		CHECK(fmt_get_le32(h + 8) == FMT_PACK_VERSION, "pack version at 8");
		CHECK(fmt_get_le32(h + 12) == ph.pack_id, "pack id at 12");
		CHECK(!memcmp(h + 16, ph.uuid, 16), "pack uuid at 16");
		for (int k = 32; k < 60; k++)
			CHECK(h[k] == 0, "pack reserved byte %d", k);
		CHECK(fmt_get_le32(h + 60) == fmt_crc32c(0, h, 60), "pack crc");
	}
	for (int bit = 0; bit < FMT_PACK_HEADER_SIZE * 8; bit++) {
		memcpy(m, h, sizeof(m));
		m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		const int rc = fmt_pack_header_decode(m, &out);
		CHECK(rc == (bit < 64 ? FMT_BAD_MAGIC : FMT_BAD_CRC),
		      "pack bit %d flipped: got %d", bit, rc);
	}
	memcpy(m, h, sizeof(m));
	memcpy(m, "VDISKSB1", 8);
	reseal(m);
	CHECK(fmt_pack_header_decode(m, &out) == FMT_BAD_MAGIC, "sb magic");
	memset(m, 0, sizeof(m));
	CHECK(fmt_pack_header_decode(m, &out) == FMT_BAD_MAGIC, "zero pack");
	ph.version = FMT_PACK_VERSION + 1;
	fmt_pack_header_encode(&ph, m);
	CHECK(fmt_pack_header_decode(m, &out) == FMT_BAD_VERSION, "pack v+1");
	ph.version = 0;
	fmt_pack_header_encode(&ph, m);
	CHECK(fmt_pack_header_decode(m, &out) == FMT_BAD_VERSION, "pack v0");
	ph.version = FMT_PACK_VERSION;
	for (int k = 32; k < 60; k++) {
		fmt_pack_header_encode(&ph, m);
		m[k] = 0x80;
		reseal(m);
		CHECK(fmt_pack_header_decode(m, &out) == FMT_BAD_FIELD,
		      "pack reserved byte %d", k);
	}
}

/* ---- chunk record header (no CRC: the payload's SHA-256 guards it) ------ */

static void check_record(void)
{
	struct fmt_record r, out;
	uint8_t h[FMT_REC_HEADER_SIZE], m[FMT_REC_HEADER_SIZE];

	for (int i = 0; i < 500; i++) {
		r.raw_len = good_chunks[et_below(&rng, 5)];
		r.codec = et_chance(&rng, 50) ? FMT_CODEC_RAW : FMT_CODEC_ZSTD;
		r.stored_len = r.codec == FMT_CODEC_RAW
				       ? r.raw_len
				       : (uint32_t)et_range(&rng, 1, r.raw_len);
		et_fill(&rng, r.hash, 32);
		memset(h, 0xa5, sizeof(h));
		fmt_record_encode(&r, h);
		memset(&out, 0x5a, sizeof(out));
		CHECK(fmt_record_decode(h, &out) == 0, "record round trip");
		CHECK(out.codec == r.codec && out.stored_len == r.stored_len &&
			      out.raw_len == r.raw_len &&
			      !memcmp(out.hash, r.hash, 32),
		      "record fields survive");
		CHECK(fmt_get_le32(h) == FMT_REC_MAGIC && !memcmp(h, "VDC1", 4),
		      "record magic \"VDC1\" at 0");
		CHECK(h[4] == r.codec && !h[5] && !h[6] && !h[7],
		      "record codec at 4, zero 5..7");
		CHECK(fmt_get_le32(h + 8) == r.stored_len, "stored_len at 8");
		CHECK(fmt_get_le32(h + 12) == r.raw_len, "raw_len at 12");
		CHECK(!memcmp(h + 16, r.hash, 32), "hash at 16");
	}

	r.codec = FMT_CODEC_ZSTD;
	r.raw_len = 65536;
	r.stored_len = 1000;
	fmt_record_encode(&r, h);
	for (int k = 0; k < 4; k++) {
		memcpy(m, h, sizeof(m));
		m[k] ^= 0x10;
		CHECK(fmt_record_decode(m, &out) == FMT_BAD_MAGIC,
		      "record magic byte %d", k);
	}
	memset(m, 0, sizeof(m));
	CHECK(fmt_record_decode(m, &out) == FMT_BAD_MAGIC, "zero record");

#define REJECT(what, mutate)                                                 \
	do {                                                                 \
		memcpy(m, h, sizeof(m));                                     \
		mutate;                                                      \
		CHECK(fmt_record_decode(m, &out) == FMT_BAD_FIELD,           \
		      "record %s accepted", what);                           \
	} while (0)

	REJECT("codec 3", m[4] = 3);
	REJECT("codec 255", m[4] = 255);
	REJECT("byte 5 set", m[5] = 1);
	REJECT("byte 6 set", m[6] = 1);
	REJECT("byte 7 set", m[7] = 0x80);
	REJECT("stored_len 0", fmt_put_le32(m + 8, 0));
	REJECT("stored_len > raw_len", fmt_put_le32(m + 8, 65537));
	REJECT("stored_len huge", fmt_put_le32(m + 8, 0xffffffffu));
	for (size_t i = 0; i < sizeof(bad_chunks) / sizeof(bad_chunks[0]); i++)
		REJECT("bad raw_len", fmt_put_le32(m + 12, bad_chunks[i]));
	/* RAW payload is exactly the chunk. */
	REJECT("raw codec, short", (m[4] = FMT_CODEC_RAW));
	REJECT("raw codec, short by one",
	       (m[4] = FMT_CODEC_RAW, fmt_put_le32(m + 8, 65535)));
#undef REJECT
	memcpy(m, h, sizeof(m));
	m[4] = FMT_CODEC_RAW;
	fmt_put_le32(m + 8, 65536);
	CHECK(fmt_record_decode(m, &out) == 0, "raw codec, full length");
	fmt_put_le32(m + 8, 65536);
	m[4] = FMT_CODEC_ZSTD;
	CHECK(fmt_record_decode(m, &out) == 0, "zstd, stored == raw");
	fmt_put_le32(m + 8, 1);
	CHECK(fmt_record_decode(m, &out) == 0, "zstd, stored 1");
}

/* ---- LMDB keys ---------------------------------------------------------- */

static int cmp3(uint64_t a0, uint64_t a1, uint64_t a2, uint64_t b0,
		uint64_t b1, uint64_t b2)
{
	if (a0 != b0)
		return a0 < b0 ? -1 : 1;
	if (a1 != b1)
		return a1 < b1 ? -1 : 1;
	if (a2 != b2)
		return a2 < b2 ? -1 : 1;
	return 0;
}

static int sign(int v)
{
	return (v > 0) - (v < 0);
}

/* Interesting values: small, near power-of-two edges and extremes. */
static uint64_t pick_u64(void)
{
	static const uint64_t edge[] = {0, 1, 2, 255, 256, 0xffffffffull,
					0x100000000ull, UINT64_MAX - 1,
					UINT64_MAX};
	switch (et_below(&rng, 3)) {
	case 0:
		return edge[et_below(&rng, sizeof(edge) / sizeof(edge[0]))];
	case 1:
		return et_below(&rng, 8);
	default:
		return et_next(&rng) >> et_below(&rng, 64);
	}
}

static void check_keys(void)
{
	uint8_t ka[FMT_MAP_KEY_SIZE], kb[FMT_MAP_KEY_SIZE];
	uint64_t a0, a1, a2, b0, b1, b2, x, y, z;

	for (int i = 0; i < 5000; i++) {
		a0 = pick_u64(), a1 = pick_u64(), a2 = pick_u64();
		b0 = et_chance(&rng, 50) ? a0 : pick_u64();
		b1 = et_chance(&rng, 50) ? a1 : pick_u64();
		b2 = pick_u64();

		/* map: (layer, idx, ~epoch) big-endian. */
		fmt_map_key(ka, a0, a1, a2);
		fmt_map_key(kb, b0, b1, b2);
		fmt_map_key_decode(ka, &x, &y, &z);
		CHECK(x == a0 && y == a1 && z == a2, "map key round trip");
		CHECK(fmt_get_be64(ka) == a0 && fmt_get_be64(ka + 8) == a1 &&
			      fmt_get_be64(ka + 16) == ~a2,
		      "map key layout");
		/* Same chunk: newer epochs sort first, so SET_RANGE on
		 * (layer, idx, ~E) finds the newest epoch <= E. */
		CHECK(sign(memcmp(ka, kb, 24)) ==
			      cmp3(a0, a1, b2, b0, b1, a2),
		      "map key order (%" PRIu64 ",%" PRIu64 ",%" PRIu64
		      ") vs (%" PRIu64 ",%" PRIu64 ",%" PRIu64 ")",
		      a0, a1, a2, b0, b1, b2);

		/* epochs: (layer, epoch, idx). */
		fmt_epoch_key(ka, a0, a1, a2);
		fmt_epoch_key(kb, b0, b1, b2);
		fmt_epoch_key_decode(ka, &x, &y, &z);
		CHECK(x == a0 && y == a1 && z == a2, "epoch key round trip");
		CHECK(fmt_get_be64(ka) == a0 && fmt_get_be64(ka + 8) == a1 &&
			      fmt_get_be64(ka + 16) == a2,
		      "epoch key layout");
		CHECK(sign(memcmp(ka, kb, 24)) == cmp3(a0, a1, a2, b0, b1, b2),
		      "epoch key order");

		/* readers: (layer, epoch). */
		fmt_reader_key(ka, a0, a1);
		fmt_reader_key(kb, b0, b1);
		fmt_reader_key_decode(ka, &x, &y);
		CHECK(x == a0 && y == a1, "reader key round trip");
		CHECK(sign(memcmp(ka, kb, FMT_READER_KEY_SIZE)) ==
			      cmp3(a0, a1, 0, b0, b1, 0),
		      "reader key order");

		fmt_u64_key(ka, a0);
		fmt_u64_key(kb, b0);
		CHECK(fmt_u64_key_decode(ka) == a0, "u64 key round trip");
		CHECK(sign(memcmp(ka, kb, 8)) == cmp3(a0, 0, 0, b0, 0, 0),
		      "u64 key order");
	}
	/* A seek at epoch E must land on the entry written at epoch <= E. */
	fmt_map_key(ka, 7, 9, 5);
	fmt_map_key(kb, 7, 9, 4);
	CHECK(memcmp(ka, kb, 24) < 0, "epoch 5 sorts before epoch 4");
	fmt_map_key(kb, 7, 9, FMT_EPOCH_HEAD);
	CHECK(memcmp(kb, ka, 24) < 0, "head epoch sorts first");
	fmt_map_key(kb, 7, 10, FMT_EPOCH_HEAD);
	CHECK(memcmp(ka, kb, 24) < 0, "next chunk after every epoch");
}

/* ---- LMDB values -------------------------------------------------------- */

static void check_chunk_val(void)
{
	struct fmt_chunk c, out;
	uint8_t v[FMT_CHUNK_VAL_SIZE + 1], m[FMT_CHUNK_VAL_SIZE + 1];

	for (int i = 0; i < 500; i++) {
		c.pack_id = (uint32_t)et_range(&rng, 1, UINT32_MAX);
		c.stored_len = (uint32_t)et_range(&rng, 1, UINT32_MAX);
		c.offset = et_range(&rng, FMT_PACK_HEADER_SIZE, UINT64_MAX);
		c.refs = pick_u64();
		c.codec = (uint8_t)et_below(&rng, 2);
		memset(v, 0xa5, sizeof(v));
		fmt_chunk_encode(&c, v);
		CHECK(v[FMT_CHUNK_VAL_SIZE] == 0xa5, "chunk encode overran");
		memset(&out, 0x5a, sizeof(out));
		CHECK(fmt_chunk_decode(v, FMT_CHUNK_VAL_SIZE, &out) == 0,
		      "chunk round trip");
		CHECK(out.pack_id == c.pack_id && out.stored_len == c.stored_len &&
			      out.offset == c.offset && out.refs == c.refs &&
			      out.codec == c.codec,
		      "chunk fields survive");
		CHECK(fmt_get_le32(v) == c.pack_id &&
			      fmt_get_le32(v + 4) == c.stored_len &&
			      fmt_get_le64(v + 8) == c.offset &&
			      fmt_get_le64(v + 16) == c.refs && v[24] == c.codec,
		      "chunk layout");
		for (int k = 25; k < 32; k++)
			CHECK(v[k] == 0, "chunk reserved %d", k);
	}
	c = (struct fmt_chunk){.pack_id = 1, .stored_len = 100,
			       .offset = FMT_PACK_HEADER_SIZE, .refs = 0,
			       .codec = FMT_CODEC_ZSTD};
	fmt_chunk_encode(&c, v);
	CHECK(fmt_chunk_decode(v, 32, &out) == 0 && out.refs == 0,
	      "dead chunk (refs 0) decodes");
	CHECK(fmt_chunk_decode(v, 31, &out) == FMT_BAD_FIELD, "chunk len 31");
	CHECK(fmt_chunk_decode(v, 33, &out) == FMT_BAD_FIELD, "chunk len 33");
	CHECK(fmt_chunk_decode(v, 0, &out) == FMT_BAD_FIELD, "chunk len 0");
	CHECK(fmt_chunk_decode(v, 24, &out) == FMT_BAD_FIELD, "chunk len 24");
#define REJECT(what, mutate)                                                 \
	do {                                                                 \
		memcpy(m, v, sizeof(m));                                     \
		mutate;                                                      \
		CHECK(fmt_chunk_decode(m, FMT_CHUNK_VAL_SIZE, &out) ==       \
			      FMT_BAD_FIELD,                                 \
		      "chunk %s accepted", what);                            \
	} while (0)
	REJECT("codec 3", m[24] = 3);
	REJECT("codec 255", m[24] = 255);
	REJECT("pack_id 0", fmt_put_le32(m, 0));
	REJECT("stored_len 0", fmt_put_le32(m + 4, 0));
	REJECT("offset 0", fmt_put_le64(m + 8, 0));
	REJECT("offset 63", fmt_put_le64(m + 8, FMT_PACK_HEADER_SIZE - 1));
	for (int k = 25; k < 32; k++)
		REJECT("reserved byte", m[k] = 1);
#undef REJECT
}

static void check_layer_val(void)
{
	struct fmt_layer l, out;
	uint8_t v[FMT_LAYER_VAL_SIZE], m[FMT_LAYER_VAL_SIZE];

	for (int i = 0; i < 500; i++) {
		l.parent = et_chance(&rng, 30) ? 0 : pick_u64();
		l.parent_epoch = l.parent ? pick_u64() : 0;
		l.epoch = et_range(&rng, 1, FMT_EPOCH_HEAD - 1);
		l.created = pick_u64();
		fmt_layer_encode(&l, v);
		memset(&out, 0x5a, sizeof(out));
		CHECK(fmt_layer_decode(v, sizeof(v), &out) == 0,
		      "layer round trip");
		CHECK(out.parent == l.parent &&
			      out.parent_epoch == l.parent_epoch &&
			      out.epoch == l.epoch && out.created == l.created,
		      "layer fields survive");
		CHECK(fmt_get_le64(v) == l.parent &&
			      fmt_get_le64(v + 8) == l.parent_epoch &&
			      fmt_get_le64(v + 16) == l.epoch &&
			      fmt_get_le64(v + 24) == l.created,
		      "layer layout");
	}
	l = (struct fmt_layer){.parent = 3, .parent_epoch = 2, .epoch = 1};
	fmt_layer_encode(&l, v);
	CHECK(fmt_layer_decode(v, 31, &out) == FMT_BAD_FIELD, "layer len 31");
	CHECK(fmt_layer_decode(v, 33, &out) == FMT_BAD_FIELD, "layer len 33");
	CHECK(fmt_layer_decode(v, 0, &out) == FMT_BAD_FIELD, "layer len 0");
	memcpy(m, v, sizeof(m));
	fmt_put_le64(m + 16, 0);
	CHECK(fmt_layer_decode(m, 32, &out) == FMT_BAD_FIELD, "layer epoch 0");
	fmt_put_le64(m + 16, FMT_EPOCH_HEAD);
	CHECK(fmt_layer_decode(m, 32, &out) == FMT_BAD_FIELD,
	      "layer epoch HEAD");
	memcpy(m, v, sizeof(m));
	fmt_put_le64(m, 0);
	CHECK(fmt_layer_decode(m, 32, &out) == FMT_BAD_FIELD,
	      "root layer with a parent epoch");
	fmt_put_le64(m + 8, 0);
	CHECK(fmt_layer_decode(m, 32, &out) == 0 && out.parent == 0,
	      "root layer");
	/* A child may fork at its parent's epoch 0?  Only (0, 0) is pinned
	 * by the decoder; parent != 0 with any epoch decodes. */
}

static void random_name(char out[65], size_t len)
{
	static const char cs[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
	for (size_t i = 0; i < len; i++)
		out[i] = cs[et_below(&rng, sizeof(cs) - 1)];
	out[len] = '\0';
}

static void check_volume_val(void)
{
	struct fmt_volume vol, out;
	uint8_t v[FMT_VOLUME_VAL_SIZE], m[FMT_VOLUME_VAL_SIZE];

	for (int i = 0; i < 500; i++) {
		vol.size = et_range(&rng, 1, UINT64_MAX);
		vol.layer = et_range(&rng, 1, UINT64_MAX);
		vol.created = pick_u64();
		if (et_chance(&rng, 50)) {
			random_name(vol.origin_vol, et_range(&rng, 1, 64));
			random_name(vol.origin_snap, et_range(&rng, 1, 64));
		} else {
			vol.origin_vol[0] = vol.origin_snap[0] = '\0';
		}
		memset(v, 0xa5, sizeof(v));
		fmt_volume_encode(&vol, v);
		memset(&out, 0x5a, sizeof(out));
		CHECK(fmt_volume_decode(v, sizeof(v), &out) == 0,
		      "volume round trip (%s@%s)", vol.origin_vol,
		      vol.origin_snap);
		CHECK(out.size == vol.size && out.layer == vol.layer &&
			      out.created == vol.created &&
			      !strcmp(out.origin_vol, vol.origin_vol) &&
			      !strcmp(out.origin_snap, vol.origin_snap),
		      "volume fields survive");
		CHECK(fmt_get_le64(v) == vol.size &&
			      fmt_get_le64(v + 8) == vol.layer &&
			      fmt_get_le64(v + 16) == vol.created &&
			      !strncmp((char *)v + 32, vol.origin_vol, 64) &&
			      !strncmp((char *)v + 96, vol.origin_snap, 64),
		      "volume layout");
		for (int k = 24; k < 32; k++)
			CHECK(v[k] == 0, "volume reserved %d", k);
		const size_t ol = strlen(vol.origin_vol), sl = strlen(vol.origin_snap);
		for (size_t k = ol; k < 64; k++)
			CHECK(v[32 + k] == 0, "origin_vol padding");
		for (size_t k = sl; k < 64; k++)
			CHECK(v[96 + k] == 0, "origin_snap padding");
	}
	vol = (struct fmt_volume){.size = 1 << 20, .layer = 5, .created = 9};
	strcpy(vol.origin_vol, "base");
	strcpy(vol.origin_snap, "s1");
	fmt_volume_encode(&vol, v);
	CHECK(fmt_volume_decode(v, 159, &out) == FMT_BAD_FIELD, "volume len 159");
	CHECK(fmt_volume_decode(v, 161, &out) == FMT_BAD_FIELD, "volume len 161");
	CHECK(fmt_volume_decode(v, 0, &out) == FMT_BAD_FIELD, "volume len 0");
#define REJECT(what, mutate)                                                 \
	do {                                                                 \
		memcpy(m, v, sizeof(m));                                     \
		mutate;                                                      \
		CHECK(fmt_volume_decode(m, FMT_VOLUME_VAL_SIZE, &out) ==     \
			      FMT_BAD_FIELD,                                 \
		      "volume %s accepted", what);                           \
	} while (0)
	REJECT("size 0", fmt_put_le64(m, 0));
	REJECT("layer 0", fmt_put_le64(m + 8, 0));
	for (int k = 24; k < 32; k++)
		REJECT("reserved byte", m[k] = 1);
	REJECT("garbage after origin_vol NUL", m[32 + 10] = 'x');
	REJECT("garbage at end of origin_vol", m[32 + 63] = 'x');
	REJECT("garbage after origin_snap NUL", m[96 + 5] = 'x');
	REJECT("garbage at end of origin_snap", m[96 + 63] = 1);
	REJECT("origin_vol without origin_snap", memset(m + 96, 0, 64));
	REJECT("origin_snap without origin_vol", memset(m + 32, 0, 64));
#undef REJECT
	/* A 64-character name fills its field with no NUL. */
	memcpy(m, v, sizeof(m));
	memset(m + 32, 'a', 64);
	memset(m + 96, 'b', 64);
	CHECK(fmt_volume_decode(m, FMT_VOLUME_VAL_SIZE, &out) == 0 &&
		      strlen(out.origin_vol) == 64 &&
		      strlen(out.origin_snap) == 64,
	      "64-character origin names");
	memset(m + 32, 0, 128);
	CHECK(fmt_volume_decode(m, FMT_VOLUME_VAL_SIZE, &out) == 0 &&
		      !out.origin_vol[0] && !out.origin_snap[0],
	      "no origin");
}

static void check_snapshot_val(void)
{
	struct fmt_snapshot s, out;
	uint8_t v[FMT_SNAP_VAL_SIZE], m[FMT_SNAP_VAL_SIZE];

	for (int i = 0; i < 500; i++) {
		s.layer = et_range(&rng, 1, UINT64_MAX);
		s.epoch = et_range(&rng, 1, FMT_EPOCH_HEAD - 1);
		s.size = et_range(&rng, 1, UINT64_MAX);
		s.created = pick_u64();
		fmt_snapshot_encode(&s, v);
		memset(&out, 0x5a, sizeof(out));
		CHECK(fmt_snapshot_decode(v, sizeof(v), &out) == 0,
		      "snapshot round trip");
		CHECK(out.layer == s.layer && out.epoch == s.epoch &&
			      out.size == s.size && out.created == s.created,
		      "snapshot fields survive");
		CHECK(fmt_get_le64(v) == s.layer && fmt_get_le64(v + 8) == s.epoch &&
			      fmt_get_le64(v + 16) == s.size &&
			      fmt_get_le64(v + 24) == s.created,
		      "snapshot layout");
	}
	CHECK(fmt_snapshot_decode(v, 31, &out) == FMT_BAD_FIELD, "snap len 31");
	CHECK(fmt_snapshot_decode(v, 33, &out) == FMT_BAD_FIELD, "snap len 33");
	CHECK(fmt_snapshot_decode(v, 0, &out) == FMT_BAD_FIELD, "snap len 0");
	memcpy(m, v, sizeof(m));
	fmt_put_le64(m, 0);
	CHECK(fmt_snapshot_decode(m, 32, &out) == FMT_BAD_FIELD, "snap layer 0");
	memcpy(m, v, sizeof(m));
	fmt_put_le64(m + 8, 0);
	CHECK(fmt_snapshot_decode(m, 32, &out) == FMT_BAD_FIELD, "snap epoch 0");
	fmt_put_le64(m + 8, FMT_EPOCH_HEAD);
	CHECK(fmt_snapshot_decode(m, 32, &out) == FMT_BAD_FIELD,
	      "snap epoch HEAD");
	memcpy(m, v, sizeof(m));
	fmt_put_le64(m + 16, 0);
	CHECK(fmt_snapshot_decode(m, 32, &out) == FMT_BAD_FIELD, "snap size 0");

	/* "VOL\0SNAP" */
	uint8_t k[130];
	char a[65], b[65];
	CHECK(fmt_snap_key(k, "vm1", "s") == 5 && !memcmp(k, "vm1\0s", 5),
	      "snap key layout");
	for (int i = 0; i < 200; i++) {
		random_name(a, et_range(&rng, 1, 64));
		random_name(b, et_range(&rng, 1, 64));
		memset(k, 0xa5, sizeof(k));
		const size_t n = fmt_snap_key(k, a, b);
		CHECK(n == strlen(a) + 1 + strlen(b) && n <= 129, "snap key len");
		CHECK(!memcmp(k, a, strlen(a)) && k[strlen(a)] == 0 &&
			      !memcmp(k + strlen(a) + 1, b, strlen(b)),
		      "snap key bytes");
		if (n < sizeof(k))
			CHECK(k[n] == 0xa5, "snap key overran");
	}
	/* All snapshots of one volume are contiguous in key order: a volume
	 * name that is a prefix of another sorts apart thanks to the NUL. */
	uint8_t k1[130], k2[130];
	const size_t n1 = fmt_snap_key(k1, "vm", "zzz"),
		     n2 = fmt_snap_key(k2, "vm1", "a");
	CHECK(memcmp(k1, k2, n1 < n2 ? n1 : n2) < 0, "vm@* before vm1@*");
}

/* ---- mutation fuzzing: no crash, accepted input is canonical ------------ */

static void mutate(uint8_t *p, size_t n)
{
	const int count = (int)et_range(&rng, 1, 3);
	for (int i = 0; i < count; i++) {
		const size_t at = et_below(&rng, n);
		switch (et_below(&rng, 3)) {
		case 0:
			p[at] ^= (uint8_t)(1u << et_below(&rng, 8));
			break;
		case 1:
			p[at] = (uint8_t)et_next(&rng);
			break;
		default:
			p[at] = 0;
			break;
		}
	}
}

static void fuzz_values(void)
{
	uint8_t v[FMT_VOLUME_VAL_SIZE], e[FMT_VOLUME_VAL_SIZE];
	unsigned accepted = 0;

	for (int i = 0; i < 20000; i++) {
		switch (i % 7) {
		case 0: {
			struct fmt_chunk c = {.pack_id = 3, .stored_len = 9,
					      .offset = 4096, .refs = 2};
			fmt_chunk_encode(&c, v);
			mutate(v, FMT_CHUNK_VAL_SIZE);
			if (fmt_chunk_decode(v, FMT_CHUNK_VAL_SIZE, &c) == 0) {
				accepted++;
				fmt_chunk_encode(&c, e);
				CHECK(!memcmp(v, e, FMT_CHUNK_VAL_SIZE),
				      "chunk value not canonical");
			}
			break;
		}
		case 1: {
			struct fmt_layer l = {.parent = 1, .parent_epoch = 4,
					      .epoch = 7, .created = 1};
			fmt_layer_encode(&l, v);
			mutate(v, FMT_LAYER_VAL_SIZE);
			if (fmt_layer_decode(v, FMT_LAYER_VAL_SIZE, &l) == 0) {
				accepted++;
				fmt_layer_encode(&l, e);
				CHECK(!memcmp(v, e, FMT_LAYER_VAL_SIZE),
				      "layer value not canonical");
			}
			break;
		}
		case 2: {
			struct fmt_volume vol = {.size = 4096, .layer = 2};
			if (i & 8) {
				strcpy(vol.origin_vol, "abc");
				strcpy(vol.origin_snap, "d");
			}
			fmt_volume_encode(&vol, v);
			mutate(v, FMT_VOLUME_VAL_SIZE);
			if (fmt_volume_decode(v, FMT_VOLUME_VAL_SIZE, &vol) == 0) {
				accepted++;
				fmt_volume_encode(&vol, e);
				CHECK(!memcmp(v, e, FMT_VOLUME_VAL_SIZE),
				      "volume value not canonical");
			}
			break;
		}
		case 3: {
			struct fmt_snapshot s = {.layer = 1, .epoch = 1,
						 .size = 512};
			fmt_snapshot_encode(&s, v);
			mutate(v, FMT_SNAP_VAL_SIZE);
			if (fmt_snapshot_decode(v, FMT_SNAP_VAL_SIZE, &s) == 0) {
				accepted++;
				fmt_snapshot_encode(&s, e);
				CHECK(!memcmp(v, e, FMT_SNAP_VAL_SIZE),
				      "snapshot value not canonical");
			}
			break;
		}
		case 4: {
			struct fmt_record r = {.codec = 1, .stored_len = 7,
					       .raw_len = 4096};
			fmt_record_encode(&r, v);
			mutate(v, FMT_REC_HEADER_SIZE);
			if (fmt_record_decode(v, &r) == 0) {
				accepted++;
				fmt_record_encode(&r, e);
				CHECK(!memcmp(v, e, FMT_REC_HEADER_SIZE),
				      "record header not canonical");
			}
			break;
		}
		case 5: {
			struct fmt_superblock sb = {.version = FMT_VERSION,
						    .chunk_size = 4096};
			fmt_sb_encode(&sb, v);
			mutate(v, FMT_SB_SIZE);
			if (fmt_sb_decode(v, &sb) == 0) {
				accepted++;
				fmt_sb_encode(&sb, e);
				CHECK(!memcmp(v, e, FMT_SB_SIZE),
				      "superblock not canonical");
			}
			break;
		}
		default: {
			struct fmt_pack_header ph = {.version = FMT_PACK_VERSION,
						     .pack_id = 1};
			fmt_pack_header_encode(&ph, v);
			mutate(v, FMT_PACK_HEADER_SIZE);
			if (fmt_pack_header_decode(v, &ph) == 0) {
				accepted++;
				fmt_pack_header_encode(&ph, e);
				CHECK(!memcmp(v, e, FMT_PACK_HEADER_SIZE),
				      "pack header not canonical");
			}
			break;
		}
		}
	}
	CHECK(accepted > 0 && accepted < 20000, "fuzz accepted %u", accepted);
	printf("fuzz: %u of 20000 mutants accepted, all canonical\n", accepted);
}

static void check_constants(void)
{
	CHECK(FMT_SB_SIZE == 64 && FMT_PACK_HEADER_SIZE == 64 &&
		      FMT_REC_HEADER_SIZE == 48,
	      "header sizes");
	CHECK(FMT_MAP_KEY_SIZE == 24 && FMT_READER_KEY_SIZE == 16 &&
		      FMT_MAP_VAL_HOLE_SIZE == 1 && FMT_MAP_VAL_DATA_SIZE == 33,
	      "key and map value sizes");
	CHECK(FMT_CHUNK_VAL_SIZE == 32 && FMT_LAYER_VAL_SIZE == 32 &&
		      FMT_VOLUME_VAL_SIZE == 160 && FMT_SNAP_VAL_SIZE == 32,
	      "value sizes");
	CHECK(!strcmp(FMT_SB_NAME, "vdisk.sb"), "superblock file name");
	CHECK(FMT_CODEC_RAW == 0 && FMT_CODEC_ZSTD == 1, "codec numbers");
	CHECK(FMT_BAD_MAGIC != FMT_BAD_CRC && FMT_BAD_CRC != FMT_BAD_FIELD &&
		      FMT_BAD_FIELD != FMT_BAD_VERSION && FMT_BAD_MAGIC < 0 &&
		      FMT_BAD_CRC < 0 && FMT_BAD_FIELD < 0 && FMT_BAD_VERSION < 0,
	      "distinct negative decode errors");
}

/* Journal segment headers and records (FORMAT.md "Write journal"). */
static void check_journal(void)
{
	static const uint8_t data[] = "the bytes of a journaled write";
	struct fmt_jnl_header h = { .version = FMT_JNL_VERSION, .layer = 7,
				    .segment = 3 }, hout;
	struct fmt_jrec r = { .kind = FMT_JREC_WRITE, .seq = 9, .offset = 4096,
			      .length = sizeof data }, rout;
	uint8_t hb[FMT_JNL_HEADER_SIZE], rb[FMT_JREC_HEADER_SIZE], m[64];

	memset(h.uuid, 0xab, 16);
	fmt_jnl_header_encode(&h, hb);
	CHECK(!memcmp(hb, FMT_JNL_MAGIC, 8) && fmt_get_le32(hb + 8) == 1 &&
	      fmt_get_le64(hb + 32) == 7 && fmt_get_le64(hb + 40) == 3 &&
	      fmt_get_le32(hb + 60) == fmt_crc32c(0, hb, 60),
	      "journal header layout");
	CHECK(fmt_jnl_header_decode(hb, &hout) == 0 && hout.layer == 7 &&
	      hout.segment == 3 && !memcmp(hout.uuid, h.uuid, 16),
	      "journal header round trip");
	for (int k = 0; k < FMT_JNL_HEADER_SIZE; k++) { /* every byte counts */
		memcpy(m, hb, sizeof hb);
		m[k] ^= 0x10;
		CHECK(fmt_jnl_header_decode(m, &hout) != 0,
		      "journal header byte %d flipped", k);
	}
	memcpy(m, hb, sizeof hb);
	m[50] = 1; /* reserved, resealed */
	reseal(m);
	CHECK(fmt_jnl_header_decode(m, &hout) == FMT_BAD_FIELD, "journal reserved");

	fmt_jrec_encode(&r, data, rb);
	CHECK(fmt_get_le32(rb) == FMT_JREC_MAGIC && fmt_get_le64(rb + 8) == 9 &&
	      fmt_get_le64(rb + 16) == 4096 && fmt_get_le64(rb + 24) == sizeof data,
	      "journal record layout");
	CHECK(fmt_jrec_decode(rb, &rout) == 0 && rout.kind == FMT_JREC_WRITE &&
	      rout.seq == 9 && rout.check == r.check &&
	      fmt_jrec_verify(rb, &rout, data), "journal record round trip");
	/* A flipped bit anywhere, header or data, is caught.  (D is as long
	 * as any length a flip can make: a reader reads that much.) */
	uint8_t *d = calloc(1, FMT_JREC_DATA_MAX);
	CHECK(d != NULL, "out of memory");
	for (size_t k = 0; d && k < FMT_JREC_HEADER_SIZE + sizeof data; k++) {
		memcpy(m, rb, sizeof rb);
		memcpy(d, data, sizeof data);
		if (k < FMT_JREC_HEADER_SIZE)
			m[k] ^= 0x04;
		else
			d[k - FMT_JREC_HEADER_SIZE] ^= 0x04;
		CHECK(fmt_jrec_decode(m, &rout) != 0 || !fmt_jrec_verify(m, &rout, d),
		      "journal record byte %zu flipped", k);
	}
	free(d);
	/* A zero record has no data; lengths and kinds are checked. */
	r.kind = FMT_JREC_ZERO;
	r.length = 1ull << 40;
	fmt_jrec_encode(&r, NULL, rb);
	CHECK(fmt_jrec_decode(rb, &rout) == 0 && fmt_jrec_verify(rb, &rout, NULL),
	      "journal zero record");
	r.kind = FMT_JREC_WRITE;
	r.length = FMT_JREC_DATA_MAX + 1ull;
	fmt_jrec_encode(&r, NULL, rb);
	CHECK(fmt_jrec_decode(rb, &rout) == FMT_BAD_FIELD, "journal record too long");
	r.kind = 5;
	r.length = 1;
	fmt_jrec_encode(&r, NULL, rb);
	CHECK(fmt_jrec_decode(rb, &rout) == FMT_BAD_FIELD, "journal record kind 5");
	/* An epoch marker: the epoch in OFFSET, no length, no data. */
	r.kind = FMT_JREC_EPOCH;
	r.offset = 7;
	r.length = 0;
	CHECK(fmt_jrec_data_len(FMT_JREC_EPOCH, 0) == 0, "epoch marker data length");
	fmt_jrec_encode(&r, NULL, rb);
	CHECK(fmt_jrec_decode(rb, &rout) == 0 && rout.offset == 7 &&
	      fmt_jrec_verify(rb, &rout, NULL), "journal epoch marker");
	r.length = 1;
	fmt_jrec_encode(&r, NULL, rb);
	CHECK(fmt_jrec_decode(rb, &rout) == FMT_BAD_FIELD, "epoch marker with a length");
	r.length = 0;
	r.offset = 0;
	fmt_jrec_encode(&r, NULL, rb);
	CHECK(fmt_jrec_decode(rb, &rout) == FMT_BAD_FIELD, "epoch marker of epoch 0");
	r.offset = 4096;
	/* A chunk record: 56 bytes of data, checked; the body round-trips
	 * and its reserved bytes must be zero. */
	{
		struct fmt_jchunk jc = { .pack_id = 0x01020304, .codec = 2,
					 .offset = 0x1122334455667788ull,
					 .stored_len = 65600 }, jo;
		uint8_t body[FMT_JCHUNK_SIZE];
		et_fill(&rng, jc.hash, 32);
		fmt_jchunk_encode(&jc, body);
		CHECK(fmt_get_le32(body + 32) == 0x01020304 && body[36] == 2 &&
		      fmt_get_le64(body + 40) == 0x1122334455667788ull &&
		      fmt_get_le32(body + 48) == 65600 &&
		      !memcmp(body, jc.hash, 32), "chunk record body layout");
		CHECK(fmt_jchunk_decode(body, &jo) == 0 && !memcmp(&jo.hash, jc.hash, 32) &&
		      jo.pack_id == jc.pack_id && jo.codec == jc.codec &&
		      jo.offset == jc.offset && jo.stored_len == jc.stored_len,
		      "chunk record body round trip");
		r.kind = FMT_JREC_CHUNK;
		r.length = 65536;
		CHECK(fmt_jrec_data_len(FMT_JREC_CHUNK, r.length) == FMT_JCHUNK_SIZE,
		      "chunk record data length");
		fmt_jrec_encode(&r, body, rb);
		CHECK(fmt_jrec_decode(rb, &rout) == 0 && fmt_jrec_verify(rb, &rout, body),
		      "journal chunk record");
		body[50] ^= 1;
		CHECK(!fmt_jrec_verify(rb, &rout, body), "chunk record body flip");
		body[50] ^= 1;
		body[38] = 1;
		CHECK(fmt_jchunk_decode(body, &jo) == FMT_BAD_FIELD,
		      "chunk record reserved byte");
	}
}

/* Frame tables: layout byte by byte, round trip, and every single-bit
 * flip of the table rejected. */
static void check_frames(void)
{
	static struct fmt_frame_table t, out;
	static uint8_t buf[8192];
	uint8_t name[32];
	const uint32_t cs = 65536, fs = 16384;
	size_t n, len;

	et_fill(&rng, name, sizeof name);
	t.frame_size = fs;
	t.nframes = cs / fs;
	const uint8_t kinds[4] = {FMT_FRAME_ZSTD, FMT_FRAME_RAW, FMT_FRAME_ZERO,
				  FMT_FRAME_ZSTD};
	const uint32_t lens[4] = {1000, fs, 0, fs - 1};
	len = fmt_frame_table_size(t.nframes);
	for (int i = 0; i < 4; i++) {
		t.f[i].kind = kinds[i];
		t.f[i].stored_len = lens[i];
		t.f[i].check = et_below(&rng, UINT64_MAX);
		len += lens[i];
	}
	CHECK(fmt_frame_table_size(4) == 80, "table of 4 frames is 80 bytes");
	CHECK(fmt_frames_slack(cs) == 16 + 16 * 16, "slack of a 64 KiB chunk");
	n = fmt_frames_encode(&t, name, buf);
	CHECK(n == 80, "encoded table is %zu bytes", n);
	CHECK(fmt_get_le32(buf) == fs && fmt_get_le32(buf + 4) == 4,
	      "frame_size at 0, nframes at 4");
	for (int i = 0; i < 4; i++)
		CHECK(fmt_get_le32(buf + 8 + 16 * i) == lens[i] &&
		      buf[12 + 16 * i] == kinds[i] && !buf[13 + 16 * i] &&
		      !buf[14 + 16 * i] && !buf[15 + 16 * i] &&
		      fmt_get_le64(buf + 16 + 16 * i) == t.f[i].check,
		      "frame entry %d at %d", i, 8 + 16 * i);
	CHECK(fmt_frames_decode(buf, len, cs, name, &out) == 0,
	      "table round trip");
	for (int i = 0; i < 4; i++)
		CHECK(out.f[i].kind == kinds[i] && out.f[i].stored_len == lens[i] &&
		      out.f[i].check == t.f[i].check,
		      "frame %d decodes as encoded", i);
	CHECK(out.f[0].offset == 80 && out.f[1].offset == 1080 &&
	      out.f[3].offset == 1080 + fs, "frame offsets");
	CHECK(fmt_frames_decode(buf, len + 1, cs, name, &out) == FMT_BAD_FIELD,
	      "a byte after the last frame");
	CHECK(fmt_frames_decode(buf, len - 1, cs, name, &out) == FMT_BAD_FIELD,
	      "a frame cut short");
	CHECK(fmt_frames_decode(buf, len, 2 * cs, name, &out) == FMT_BAD_FIELD,
	      "another chunk size");
	name[0] ^= 1;
	CHECK(fmt_frames_decode(buf, len, cs, name, &out) == FMT_BAD_CRC,
	      "the table of another chunk");
	name[0] ^= 1;
	for (size_t bit = 0; bit < n * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << bit % 8);
		CHECK(fmt_frames_decode(buf, len, cs, name, &out) != 0,
		      "table bit %zu flipped: accepted", bit);
		buf[bit / 8] ^= (uint8_t)(1u << bit % 8);
	}
	CHECK(fmt_frame_check("", 0) == fmt_frame_check(NULL, 0),
	      "check of no bytes");
}

int main(int argc, char **argv)
{
	et_rng_seed(&rng, et_init_seed(argc, argv));
	check_constants();
	check_crc32c();
	check_byte_helpers();
	check_superblock();
	check_pack_header();
	check_record();
	check_frames();
	check_keys();
	check_chunk_val();
	check_layer_val();
	check_volume_val();
	check_snapshot_val();
	check_journal();
	fuzz_values();
	return et_finish("test-format");
}
