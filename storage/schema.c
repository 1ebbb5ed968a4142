/* SPDX-License-Identifier: MIT */
/*
 * schema.c - the on-disk encoding of the store: keys are fixed-width
 * big-endian tuples (so LMDB's byte order is numeric order) and every value
 * starts with a version byte and is written field by field. Nothing here
 * touches LMDB; the decoders take bytes that may be corrupt or hostile
 * (they are fuzzed), so they check every length and range and never read
 * past `n`. Never memcpy a struct into a value: padding and endianness
 * would become the file format.
 */
#include "mk_err.h"
#include "store_int.h"

#include <string.h>

void mk__store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void mk__store_be64(uint8_t *p, uint64_t v)
{
	mk__store_be32(p, (uint32_t)(v >> 32));
	mk__store_be32(p + 4, (uint32_t)v);
}

uint32_t mk__store_rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

uint64_t mk__store_rd64(const uint8_t *p)
{
	return (uint64_t)mk__store_rd32(p) << 32 | mk__store_rd32(p + 4);
}

/* ---- keys ---- */

void mk__store_key_mailbox(uint8_t out[8], uint32_t account, uint32_t id)
{
	mk__store_be32(out, account);
	mk__store_be32(out + 4, id);
}

size_t mk__store_key_mbname(uint8_t out[MK__STORE_MBNAME_KEY_MAX], uint32_t account, const char *name)
{
	size_t len = strlen(name);
	mk__store_be32(out, account);
	if (len <= MK__STORE_MBNAME_KEY_PREFIX) {
		memcpy(out + 4, name, len);
		return 4 + len;
	}
	/* LMDB keys are at most 511 bytes, names up to 1023: a long name is
	 * keyed by a prefix, a NUL (which no name contains, so no short name
	 * can collide) and the SHA-256 of the whole name. */
	memcpy(out + 4, name, MK__STORE_MBNAME_KEY_PREFIX);
	out[4 + MK__STORE_MBNAME_KEY_PREFIX] = 0;
	mk_crypto_sha256(name, len, out + 4 + MK__STORE_MBNAME_KEY_PREFIX + 1);
	return MK__STORE_MBNAME_KEY_MAX;
}

void mk__store_key_msg(uint8_t out[16], uint32_t account, uint32_t mailbox, uint32_t uidvalidity, uint32_t uid)
{
	mk__store_be32(out, account);
	mk__store_be32(out + 4, mailbox);
	mk__store_be32(out + 8, uidvalidity);
	mk__store_be32(out + 12, uid);
}

void mk__store_key_chunk(uint8_t out[12], uint64_t owner, uint32_t no)
{
	mk__store_be64(out, owner);
	mk__store_be32(out + 8, no);
}

/* ---- writer ---- */

struct wr {
	uint8_t *p;
	size_t cap, len;
};

static void w_bytes(struct wr *w, const void *p, size_t n)
{
	/* Encoders size their buffers from the struct limits: overflow is a bug. */
	MK_ASSERT(n <= w->cap - w->len);
	if (n > 0)
		memcpy(w->p + w->len, p, n);
	w->len += n;
}

static void w_u8(struct wr *w, uint8_t v)
{
	w_bytes(w, &v, 1);
}

static void w_u16(struct wr *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	w_bytes(w, b, 2);
}

static void w_u32(struct wr *w, uint32_t v)
{
	uint8_t b[4];
	mk__store_be32(b, v);
	w_bytes(w, b, 4);
}

static void w_u64(struct wr *w, uint64_t v)
{
	uint8_t b[8];
	mk__store_be64(b, v);
	w_bytes(w, b, 8);
}

/* A string field from a fixed-size char array: u16 length, bytes, no NUL. */
static void w_str(struct wr *w, const char *s, size_t maxsz)
{
	size_t n = strnlen(s, maxsz);
	MK_ASSERT(n < maxsz && n <= UINT16_MAX);
	w_u16(w, (uint16_t)n);
	w_bytes(w, s, n);
}

/* ---- reader ---- */

struct rd {
	const uint8_t *p;
	size_t n, off;
	bool bad;
};

static const uint8_t *r_take(struct rd *r, size_t n)
{
	if (r->bad || n > r->n - r->off) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p + r->off;
	r->off += n;
	return p;
}

static uint8_t r_u8(struct rd *r)
{
	const uint8_t *p = r_take(r, 1);
	return p ? p[0] : 0;
}

static uint16_t r_u16(struct rd *r)
{
	const uint8_t *p = r_take(r, 2);
	return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

static uint32_t r_u32(struct rd *r)
{
	const uint8_t *p = r_take(r, 4);
	return p ? mk__store_rd32(p) : 0;
}

static uint64_t r_u64(struct rd *r)
{
	const uint8_t *p = r_take(r, 8);
	return p ? mk__store_rd64(p) : 0;
}

/* Reads a string field into out (outsz includes the NUL). */
static void r_str(struct rd *r, char *out, size_t outsz)
{
	size_t n = r_u16(r);
	out[0] = '\0';
	if (n >= outsz) {
		r->bad = true;
		return;
	}
	const uint8_t *p = r_take(r, n);
	if (p == NULL)
		return;
	if (memchr(p, 0, n) != NULL) {
		r->bad = true;
		return;
	}
	memcpy(out, p, n);
	out[n] = '\0';
}

static void r_begin(struct rd *r, const uint8_t *p, size_t n)
{
	r->p = p;
	r->n = n;
	r->off = 0;
	r->bad = false;
	if (r_u8(r) != MK__STORE_VALUE_V1)
		r->bad = true;
}

/* Every byte must be consumed: trailing data means a wrong layout. */
static int r_end(struct rd *r)
{
	return r->bad || r->off != r->n ? MK_ECORRUPT : 0;
}

/* ---- values ---- */

size_t mk__store_encode_u32(uint8_t out[5], uint32_t v)
{
	struct wr w = {out, 5, 0};
	w_u8(&w, MK__STORE_VALUE_V1);
	w_u32(&w, v);
	return w.len;
}

size_t mk__store_encode_u64(uint8_t out[9], uint64_t v)
{
	struct wr w = {out, 9, 0};
	w_u8(&w, MK__STORE_VALUE_V1);
	w_u64(&w, v);
	return w.len;
}

size_t mk__store_encode_i64(uint8_t out[9], int64_t v)
{
	return mk__store_encode_u64(out, (uint64_t)v);
}

int mk__store_decode_u32(const uint8_t *p, size_t n, uint32_t *v_r)
{
	struct rd r;
	r_begin(&r, p, n);
	*v_r = r_u32(&r);
	return r_end(&r);
}

int mk__store_decode_u64(const uint8_t *p, size_t n, uint64_t *v_r)
{
	struct rd r;
	r_begin(&r, p, n);
	*v_r = r_u64(&r);
	return r_end(&r);
}

int mk__store_decode_i64(const uint8_t *p, size_t n, int64_t *v_r)
{
	uint64_t v = 0;
	int ret = mk__store_decode_u64(p, n, &v);
	*v_r = (int64_t)v;
	return ret;
}

size_t mk__store_encode_account(uint8_t *out, size_t outsz, const char *name)
{
	struct wr w = {out, outsz, 0};
	w_u8(&w, MK__STORE_VALUE_V1);
	w_str(&w, name, MK__STORE_ACCOUNT_NAME_MAX + 1);
	return w.len;
}

int mk__store_decode_account(const uint8_t *p, size_t n, char *name, size_t namesz)
{
	struct rd r;
	r_begin(&r, p, n);
	r_str(&r, name, namesz);
	int ret = r_end(&r);
	if (ret == 0 && name[0] == '\0')
		ret = MK_ECORRUPT;
	return ret;
}

size_t mk__store_encode_mailbox(uint8_t *out, size_t outsz, const struct mk_store_mailbox *mb)
{
	struct wr w = {out, outsz, 0};
	w_u8(&w, MK__STORE_VALUE_V1);
	w_str(&w, mb->name, sizeof(mb->name));
	w_u8(&w, (uint8_t)mb->delimiter);
	w_u32(&w, mb->special_use);
	w_u32(&w, mb->uidvalidity);
	w_u32(&w, mb->uidnext);
	w_u32(&w, mb->highest_uid);
	w_u64(&w, (uint64_t)mb->last_sync);
	w_u64(&w, (uint64_t)mb->last_flag_scan);
	w_u8(&w, mb->gone ? 1 : 0);
	return w.len;
}

int mk__store_decode_mailbox(const uint8_t *p, size_t n, struct mk_store_mailbox *mb)
{
	struct rd r;
	r_begin(&r, p, n);
	r_str(&r, mb->name, sizeof(mb->name));
	mb->delimiter = (char)r_u8(&r);
	mb->special_use = r_u32(&r);
	mb->uidvalidity = r_u32(&r);
	mb->uidnext = r_u32(&r);
	mb->highest_uid = r_u32(&r);
	mb->last_sync = (int64_t)r_u64(&r);
	mb->last_flag_scan = (int64_t)r_u64(&r);
	uint8_t gone = r_u8(&r);
	if (gone > 1)
		r.bad = true;
	mb->gone = gone == 1;
	return r_end(&r);
}

size_t mk__store_encode_msg(uint8_t *out, size_t outsz, const struct mk_store_msg *m)
{
	struct wr w = {out, outsz, 0};
	w_u8(&w, MK__STORE_VALUE_V1);
	w_bytes(&w, m->sha, MK_STORE_SHA_LEN);
	w_u64(&w, m->raw_size);
	w_u32(&w, m->server_size);
	w_u64(&w, (uint64_t)m->internaldate);
	w_u32(&w, (uint32_t)m->internaldate_tz);
	w_u32(&w, m->flags);
	w_str(&w, m->keywords, sizeof(m->keywords));
	w_str(&w, m->unique, sizeof(m->unique));
	w_u8(&w, m->state);
	w_u64(&w, (uint64_t)m->gone_at);
	return w.len;
}

int mk__store_decode_msg(const uint8_t *p, size_t n, struct mk_store_msg *m)
{
	struct rd r;
	r_begin(&r, p, n);
	const uint8_t *sha = r_take(&r, MK_STORE_SHA_LEN);
	if (sha != NULL)
		memcpy(m->sha, sha, MK_STORE_SHA_LEN);
	m->raw_size = r_u64(&r);
	m->server_size = r_u32(&r);
	m->internaldate = (int64_t)r_u64(&r);
	m->internaldate_tz = (int32_t)r_u32(&r);
	m->flags = r_u32(&r);
	r_str(&r, m->keywords, sizeof(m->keywords));
	r_str(&r, m->unique, sizeof(m->unique));
	m->state = r_u8(&r);
	m->gone_at = (int64_t)r_u64(&r);
	if (m->state > MK_STORE_MSG_UNFETCHABLE)
		r.bad = true;
	return r_end(&r);
}

size_t mk__store_encode_blob(uint8_t *out, size_t outsz, const struct mk__store_blob *b)
{
	struct wr w = {out, outsz, 0};
	w_u8(&w, MK__STORE_VALUE_V1);
	w_u64(&w, b->refcount);
	w_u64(&w, b->raw_size);
	w_u64(&w, b->stored_size);
	w_u8(&w, b->codec);
	w_u64(&w, b->owner);
	w_u32(&w, b->n_chunks);
	return w.len;
}

int mk__store_decode_blob(const uint8_t *p, size_t n, struct mk__store_blob *b)
{
	struct rd r;
	r_begin(&r, p, n);
	b->refcount = r_u64(&r);
	b->raw_size = r_u64(&r);
	b->stored_size = r_u64(&r);
	b->codec = r_u8(&r);
	b->owner = r_u64(&r);
	b->n_chunks = r_u32(&r);
	if (b->codec != MK__STORE_CODEC_STORED && b->codec != MK__STORE_CODEC_ZLIB && b->codec != MK__STORE_CODEC_MZ1)
		r.bad = true;
	/* Every chunk but the last is full, so the count follows from the
	 * stored size; a stored body is its raw bytes. Checking here keeps
	 * the readers' loops simple. */
	uint64_t want = b->stored_size / MK__STORE_CHUNK + (b->stored_size % MK__STORE_CHUNK != 0);
	if (b->n_chunks != want)
		r.bad = true;
	if (b->codec == MK__STORE_CODEC_STORED && b->stored_size != b->raw_size)
		r.bad = true;
	if (b->stored_size > 0 && b->owner == 0)
		r.bad = true;
	return r_end(&r);
}
