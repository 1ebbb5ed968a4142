/* SPDX-License-Identifier: MIT */
/*
 * reader.c - pull-style body reads (mk_store_body_open/next/close): the
 * same checks as mk_store_body_read() (zlib stream well formed and ended,
 * stored and raw sizes, SHA-256), but the caller asks for the next piece
 * when it can take it. One stored chunk is held at a time, copied out of
 * its own short read transaction, so no transaction waits on the network.
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "store_int.h"

#include <string.h>

struct mk_store_body_reader {
	struct mk_store *st;
	uint8_t sha[MK_STORE_SHA_LEN];
	struct mk__store_blob blob;
	struct mk_sha256 hash;
	struct mk__store_dec dec;
	bool coded, dec_active, done;
	uint32_t next_chunk;
	uint8_t *buf; /* the current stored chunk */
	size_t cap, len, off;
	uint64_t stored, raw;
};

int mk_store_body_open(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], struct mk_store_body_reader **r_r)
{
	*r_r = NULL;
	struct mk__store_blob blob;
	int ret = mk__store_lookup_blob(st, sha, &blob);
	if (ret < 0)
		return ret;
	struct mk_store_body_reader *r = mk_xcalloc(1, sizeof(*r));
	r->st = st;
	memcpy(r->sha, sha, MK_STORE_SHA_LEN);
	r->blob = blob;
	mk_sha256_init(&r->hash);
	r->coded = blob.codec != MK__STORE_CODEC_STORED;
	if (r->coded) {
		ret = mk__store_dec_init(&r->dec, blob.codec);
		if (ret < 0) {
			mk_free(r);
			return ret;
		}
		r->dec_active = true;
	}
	*r_r = r;
	return 0;
}

/* Makes sure unread stored bytes are at hand. Returns 1 (some), 0 (no
 * more chunks), <0. */
static int fill(struct mk_store_body_reader *r)
{
	if (r->off < r->len)
		return 1;
	if (r->next_chunk >= r->blob.n_chunks)
		return 0;
	int ret = mk__store_read_chunk_copy(r->st, r->blob.owner, r->next_chunk, &r->buf, &r->cap, &r->len);
	if (ret == MK_ENOTFOUND)
		return MK_ECORRUPT;
	if (ret < 0)
		return ret;
	r->next_chunk++;
	r->off = 0;
	r->stored += r->len;
	return 1;
}

static int finish(struct mk_store_body_reader *r)
{
	r->done = true;
	if (r->coded && !r->dec.done)
		return MK_ECORRUPT;
	if (r->stored != r->blob.stored_size || r->raw != r->blob.raw_size)
		return MK_ECORRUPT;
	uint8_t got[MK_STORE_SHA_LEN];
	mk_sha256_final(&r->hash, got);
	return memcmp(got, r->sha, MK_STORE_SHA_LEN) == 0 ? 0 : MK_ECORRUPT;
}

int mk_store_body_next(struct mk_store_body_reader *r, uint8_t *out, size_t cap, size_t *n_r)
{
	*n_r = 0;
	if (r->done || cap == 0)
		return 0;
	size_t n = 0;
	while (n == 0) {
		int f = fill(r);
		if (f < 0)
			return f;
		if (!r->coded) {
			if (f == 0)
				return finish(r);
			n = r->len - r->off < cap ? r->len - r->off : cap;
			memcpy(out, r->buf + r->off, n);
			r->off += n;
			break;
		}
		if (r->dec.done) {
			if (f == 1)
				return MK_ECORRUPT; /* data after the end of the stream */
			return finish(r);
		}
		/* f == 0 with the stream not ended: it may still have output
		 * pending; no input and no output is a truncated stream. */
		mk__store_dec_input(&r->dec, f == 1 ? r->buf + r->off : NULL, f == 1 ? r->len - r->off : 0);
		const char *why = NULL;
		int ret = mk__store_dec_out(&r->dec, out, cap, &n, &why);
		r->off = r->len - r->dec.zs.avail_in;
		if (ret < 0)
			return ret;
		if (r->dec.done && r->off < r->len)
			return MK_ECORRUPT;
		if (n == 0 && !r->dec.done && f == 0)
			return MK_ECORRUPT; /* truncated stream */
	}
	mk_sha256_update(&r->hash, out, n);
	r->raw += n;
	*n_r = n;
	return 0;
}

void mk_store_body_close(struct mk_store_body_reader **rp)
{
	struct mk_store_body_reader *r = *rp;
	if (r == NULL)
		return;
	if (r->dec_active)
		mk__store_dec_end(&r->dec);
	mk_free(r->buf);
	mk_free(r);
	*rp = NULL;
}
