/* SPDX-License-Identifier: MIT */
/*
 * blob.c - message bodies: streamed in (SHA-256 of the raw bytes plus one
 * zlib deflate stream per body), kept in the batch while small, spilled to
 * "staging" chunks of at most MK__STORE_CHUNK bytes in their own short
 * write transactions once they pass MK_STORE_SPILL_BYTES, so memory stays
 * bounded whatever the body size; and streamed out again (inflate into a
 * 64 KiB buffer, size and hash checked at the end).
 *
 * Must not: hold a transaction across a caller's callback when reading
 * (each chunk is copied out of a short read txn first), trust stored
 * bytes (every length is checked, corruption is MK_ECORRUPT, never a
 * crash), or keep more than about one chunk of a body in memory.
 *
 * Bodies below MK_STORE_SPILL_BYTES are buffered raw and compressed in one
 * deflate call at finish, by the store's compression threads (pool.c);
 * bigger ones switch to the streaming path above once they reach it.
 *
 * The level (measured 2026-11, Debian 12, zlib 1.2.13, 2 shared CPUs;
 * store_bench files: corpus.py --count 1000 --seed 1, 78.9 MB, in memory,
 * batches of 100; bench_sync.sh: 1,000 messages, 85 MB, from Dovecot on the
 * same host; one deflate stream per message, "stored" when it does not pay):
 *
 *   level  ratio  1 thread  store_bench, 2 threads    bench_sync, 2 threads
 *                 MB/s      wall/CPU s  mdb/gzip-6    wall/CPU s  (mbsync wall)
 *   1      0.542  71        0.98/1.25   1.167         1.27/1.43   (1.30)
 *   4      0.511  50        1.36/1.75   1.105         1.65/1.90   (1.12)
 *   5      0.504  38        1.73/2.22   1.089         2.05/2.39   (1.14)
 *   6      0.501  29        2.37/2.92   1.084         2.65/3.06   (0.98)
 *   6, 0 threads (as before):  2.91/2.87              3.46/3.13   (1.55)
 *
 * Levels 2 and 3: 0.532 at 66 MB/s, 0.526 at 55 MB/s; deflateTune points
 * fall on the same curve (level 6 with max_chain 16: 0.506 at 45 MB/s).
 * The threads take level 6 from 3.5 s to 2.7 s but not near mbsync: on 2
 * CPUs shared with the server its ~2.8 CPU-seconds per 80 MB are the
 * floor. So the default (MK__STORE_DEFAULT_ZLEVEL, for callers passing 0)
 * is 4: 40 % less CPU than 6 for 2 % more bytes; level 1 matches mbsync's
 * wall time but stores 8 % more. data.mdb is ~6 % over the compressed
 * bytes (each body's chunk is its own run of 4 KiB overflow pages), which
 * alone keeps every level above 1.05 x gzip -6.
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "store_int.h"

#include <string.h>

#define OUT_BUF (64 * 1024)
/* Memory of one pending body never exceeds a chunk plus a deflate step. */
#define MEM_MAX (MK__STORE_CHUNK + 2 * OUT_BUF)

void *mk__store_zalloc(void *opaque, unsigned items, unsigned size)
{
	(void)opaque;
	return mk_xcalloc(items, size);
}

void mk__store_zfree(void *opaque, void *p)
{
	(void)opaque;
	mk_free(p);
}

void mk__store_body_release(struct mk_store_body *w)
{
	if (w == NULL)
		return;
	/* A queued job reads w->raw and writes w->zout: wait for it first. */
	mk__store_pool_wait(w);
	if (w->z_active)
		deflateEnd(&w->zs);
	mk__store_mzenc_free(&w->enc);
	mk_free(w->raw);
	mk_free(w->zout);
	mk_free(w->mem);
	mk_free(w);
}

struct mk_store_body *mk_store_body_begin(struct mk_store_batch *b)
{
	mk__store_pool_reap(b->st);
	struct mk_store_body *w = mk_xcalloc(1, sizeof(*w));
	w->b = b;
	w->codec = MK__STORE_CODEC_MZ1;
	mk_sha256_init(&w->sha_ctx);
	*b->bodies_tail = w;
	b->bodies_tail = &w->next;
	return w;
}

static void mem_reserve(struct mk_store_body *w, size_t need)
{
	if (w->mem_cap - w->mem_len >= need)
		return;
	size_t cap = w->mem_cap ? w->mem_cap * 2 : 16 * 1024;
	while (cap - w->mem_len < need)
		cap *= 2;
	if (cap > MEM_MAX)
		cap = MEM_MAX;
	MK_ASSERT(cap - w->mem_len >= need);
	w->mem = mk_xrealloc(w->mem, cap);
	w->mem_cap = cap;
}

struct spill_ctx {
	struct mk_store_body *w;
	uint64_t owner;
};

/* One chunk in its own transaction; the first also takes an owner id and
 * the staging mark that lets mk_store_open() free it after a crash. */
static int spill_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	struct spill_ctx *sc = ud;
	sc->owner = sc->w->owner;
	int ret = 0;
	if (sc->owner == 0) {
		ret = mk__store_alloc_owner(st, txn, &sc->owner);
		if (ret == 0)
			ret = mk__store_put_staging(st, txn, sc->owner);
	}
	if (ret == 0)
		ret = mk__store_put_chunk(st, txn, sc->owner, sc->w->spilled_chunks, sc->w->mem, MK__STORE_CHUNK);
	return ret;
}

static int spill_full_chunks(struct mk_store_body *w)
{
	while (w->mem_len >= MK_STORE_SPILL_BYTES) {
		struct spill_ctx sc = {w, 0};
		int ret = mk__store_write(w->b->st, spill_txn, &sc, false);
		if (ret < 0)
			return ret;
		w->owner = sc.owner;
		w->spilled_chunks++;
		w->mem_len -= MK__STORE_CHUNK;
		memmove(w->mem, w->mem + MK__STORE_CHUNK, w->mem_len);
	}
	return 0;
}

/* Runs deflate over the pending input (flush: Z_NO_FLUSH or Z_FINISH). */
static int deflate_step(struct mk_store_body *w, int flush)
{
	for (;;) {
		mem_reserve(w, OUT_BUF);
		w->zs.next_out = w->mem + w->mem_len;
		w->zs.avail_out = (uInt)(w->mem_cap - w->mem_len);
		int zr = deflate(&w->zs, flush);
		w->mem_len = w->mem_cap - w->zs.avail_out;
		if (zr == Z_STREAM_ERROR)
			return MK_EIO;
		int ret = spill_full_chunks(w);
		if (ret < 0)
			return ret;
		if (flush == Z_FINISH ? zr == Z_STREAM_END : (w->zs.avail_in == 0 && w->zs.avail_out != 0))
			return 0;
	}
}

static void raw_append(struct mk_store_body *w, const uint8_t *p, size_t n)
{
	if (w->raw_cap - w->raw_len < n) {
		size_t cap = w->raw_cap ? w->raw_cap * 2 : 16 * 1024;
		while (cap - w->raw_len < n)
			cap *= 2;
		if (cap > MK_STORE_SPILL_BYTES)
			cap = MK_STORE_SPILL_BYTES;
		MK_ASSERT(cap - w->raw_len >= n);
		w->raw = mk_xrealloc(w->raw, cap);
		w->raw_cap = cap;
	}
	if (n > 0)
		memcpy(w->raw + w->raw_len, p, n);
	w->raw_len += n;
}

static int deflate_in(struct mk_store_body *w, const uint8_t *p, size_t n)
{
	while (n > 0) {
		/* avail_in is a uInt: feed huge writes in pieces. */
		size_t piece = n > (1u << 30) ? (1u << 30) : n;
		w->zs.next_in = (Bytef *)(uintptr_t)p;
		w->zs.avail_in = (uInt)piece;
		int ret = deflate_step(w, Z_NO_FLUSH);
		if (ret < 0)
			return ret;
		p += piece;
		n -= piece;
	}
	return 0;
}

/* The streaming body's sink for the mz1 encoder. */
static int stream_feed(void *ud, const uint8_t *p, size_t n)
{
	return deflate_in(ud, p, n);
}

/* deflateParams flushes the input so far (Z_BLOCK) when the level
 * changes; Z_BUF_ERROR means it needs more output room. */
static int stream_level(void *ud, int level)
{
	struct mk_store_body *w = ud;
	for (int i = 0; i < 64; i++) {
		mem_reserve(w, OUT_BUF);
		w->zs.next_out = w->mem + w->mem_len;
		w->zs.avail_out = (uInt)(w->mem_cap - w->mem_len);
		int zr = deflateParams(&w->zs, level, Z_DEFAULT_STRATEGY);
		w->mem_len = w->mem_cap - w->zs.avail_out;
		int ret = spill_full_chunks(w);
		if (ret < 0)
			return ret;
		if (zr == Z_OK)
			return 0;
		if (zr != Z_BUF_ERROR)
			return MK_EIO;
	}
	return MK_EIO;
}

/* The body reached MK_STORE_SPILL_BYTES: from now on it is deflated as it
 * is written (bounded memory whatever its size), starting with what was
 * buffered. */
static int start_streaming(struct mk_store_body *w)
{
	struct mk_store *st = w->b->st;
	w->zs.zalloc = mk__store_zalloc;
	w->zs.zfree = mk__store_zfree;
	/* deflateInit2 only fails on bad parameters or memory (which aborts). */
	MK_ASSERT(deflateInit2(&w->zs, st->zlevel, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
	w->z_active = true;
	w->streaming = true;
	if (mk__store_zstart(&w->zs, st->zlevel) < 0)
		return MK_EIO;
	w->enc = mk__store_mzenc_new();
	struct mk__store_zsink sink = {stream_feed, stream_level, w};
	mk__store_mzenc_begin(w->enc, st->zlevel, &sink);
	int ret = mk__store_mzenc_write(w->enc, w->raw, w->raw_len);
	MK_FREE(&w->raw);
	w->raw_len = w->raw_cap = 0;
	return ret;
}

int mk_store_body_write(struct mk_store_body *w, const uint8_t *p, size_t n)
{
	if (w->finished || w->failed)
		return MK_ESTATE;
	mk_sha256_update(&w->sha_ctx, p, n);
	w->raw_size += n;
	if (!w->streaming) {
		if (w->raw_size < MK_STORE_SPILL_BYTES) {
			raw_append(w, p, n);
			return 0;
		}
		int ret = start_streaming(w);
		if (ret < 0) {
			w->failed = true;
			return ret;
		}
	}
	int ret = mk__store_mzenc_write(w->enc, p, n);
	if (ret < 0)
		w->failed = true;
	return ret;
}

/* Decodes a whole small stream into exactly `raw` bytes. */
static int decode_mem(uint8_t codec, const uint8_t *in, size_t in_n, uint8_t *out, size_t raw)
{
	struct mk__store_dec d;
	int ret = mk__store_dec_init(&d, codec);
	if (ret < 0)
		return ret;
	mk__store_dec_input(&d, in, in_n);
	size_t total = 0;
	const char *why = NULL;
	for (;;) {
		size_t n = 0;
		ret = mk__store_dec_out(&d, out + total, raw - total, &n, &why);
		if (ret < 0 || n == 0)
			break;
		total += n;
	}
	if (ret == 0 && total == raw && !d.done) {
		/* Exactly full: the end of the stream is still to be seen. */
		uint8_t extra;
		size_t n = 0;
		ret = mk__store_dec_out(&d, &extra, 1, &n, &why);
		if (n != 0)
			ret = MK_EIO;
	}
	bool ok = ret == 0 && d.done && total == raw && d.zs.avail_in == 0;
	mk__store_dec_end(&d);
	return ok ? 0 : MK_EIO;
}

int mk_store_body_finish(struct mk_store_body *w, uint8_t sha_r[MK_STORE_SHA_LEN], uint64_t *raw_size_r)
{
	if (w->finished || w->failed)
		return MK_ESTATE;
	if (!w->streaming) {
		/* Small: the hash now, the compression inline or in the pool. */
		mk_sha256_final(&w->sha_ctx, w->sha);
		w->finished = true;
		mk__store_pool_submit(w);
		mk__store_pool_reap(w->b->st);
		memcpy(sha_r, w->sha, MK_STORE_SHA_LEN);
		*raw_size_r = w->raw_size;
		return 0;
	}
	int ret = mk__store_mzenc_finish(w->enc);
	if (ret < 0) {
		w->failed = true;
		return ret;
	}
	mk__store_mzenc_free(&w->enc);
	w->zs.next_in = NULL;
	w->zs.avail_in = 0;
	ret = deflate_step(w, Z_FINISH);
	if (ret < 0) {
		w->failed = true;
		return ret;
	}
	deflateEnd(&w->zs);
	w->z_active = false;
	mk_sha256_final(&w->sha_ctx, w->sha);
	w->stored_size = (uint64_t)w->spilled_chunks * MK__STORE_CHUNK + w->mem_len;
	/* Incompressible (already-compressed attachments, tiny mails): store the
	 * raw bytes, which saves the inflate on every read. Only for bodies
	 * still in memory, so raw_size < mem_len * 100 / 95 is small too. */
	if (w->owner == 0 && (uint64_t)w->mem_len * 100 > w->raw_size * 95) {
		uint8_t *raw = mk_xmalloc(w->raw_size ? (size_t)w->raw_size : 1);
		ret = decode_mem(w->codec, w->mem, w->mem_len, raw, (size_t)w->raw_size);
		if (ret < 0) {
			mk_free(raw);
			w->failed = true;
			return ret;
		}
		mk_free(w->mem);
		w->mem = raw;
		w->mem_len = w->mem_cap = (size_t)w->raw_size;
		w->codec = MK__STORE_CODEC_STORED;
		w->stored_size = w->raw_size;
	} else if (w->mem_cap > w->mem_len) {
		/* Drop the slack: a batch holds many small bodies. */
		w->mem = mk_xrealloc(w->mem, w->mem_len ? w->mem_len : 1);
		w->mem_cap = w->mem_len;
	}
	w->finished = true;
	memcpy(sha_r, w->sha, MK_STORE_SHA_LEN);
	*raw_size_r = w->raw_size;
	return 0;
}

static int drop_owner_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	return mk__store_drop_owner(st, txn, *(const uint64_t *)ud);
}

void mk_store_body_abort(struct mk_store_body *w)
{
	if (w == NULL)
		return;
	struct mk_store_batch *b = w->b;
	for (struct mk_store_body **pp = &b->bodies; *pp != NULL; pp = &(*pp)->next) {
		if (*pp != w)
			continue;
		*pp = w->next;
		if (b->bodies_tail == &w->next)
			b->bodies_tail = pp;
		break;
	}
	/* Best effort: if this fails the staging mark stays and the next
	 * mk_store_open() frees the chunks. */
	if (w->owner != 0)
		(void)mk__store_write(b->st, drop_owner_txn, &w->owner, false);
	mk__store_body_release(w);
}

/* ---- reading ---- */

struct reader {
	const struct mk__store_blob *blob;
	struct mk_sha256 sha;
	uint64_t raw_out;
	int (*cb)(void *ud, const uint8_t *p, size_t n);
	void *ud;
	const char *why;
};

static int emit(struct reader *r, const uint8_t *p, size_t n)
{
	if (n == 0)
		return 0;
	/* Stop at the recorded size: a corrupt stream must not run on. */
	if (n > r->blob->raw_size - r->raw_out) {
		r->why = "longer than its recorded size";
		return MK_ECORRUPT;
	}
	r->raw_out += n;
	mk_sha256_update(&r->sha, p, n);
	return r->cb != NULL ? r->cb(r->ud, p, n) : 0;
}

/* One chunk, copied out of a short read transaction into *buf. */
int mk__store_read_chunk_copy(struct mk_store *st, uint64_t owner, uint32_t no, uint8_t **buf, size_t *cap,
			       size_t *len_r)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	uint8_t k[12];
	mk__store_key_chunk(k, owner, no);
	MDB_val key = {sizeof(k), k}, val;
	int rc = mdb_get(txn, st->chunks, &key, &val);
	if (rc == 0) {
		if (val.mv_size > *cap) {
			*buf = mk_xrealloc(*buf, val.mv_size);
			*cap = val.mv_size;
		}
		if (val.mv_size > 0)
			memcpy(*buf, val.mv_data, val.mv_size);
		*len_r = val.mv_size;
	}
	mk__store_txn_abort(st, txn);
	if (rc == MDB_NOTFOUND)
		return MK_ENOTFOUND;
	return mk__store_err(rc);
}

int mk__store_blob_stream(struct mk_store *st, MDB_txn *txn, const uint8_t sha[MK_STORE_SHA_LEN],
			  const struct mk__store_blob *blob, int (*cb)(void *ud, const uint8_t *p, size_t n),
			  void *ud, const char **why_r)
{
	struct reader r = {blob, {{0}}, 0, cb, ud, NULL};
	mk_sha256_init(&r.sha);
	bool coded = blob->codec != MK__STORE_CODEC_STORED;
	struct mk__store_dec dec;
	int ret = mk__store_dec_init(&dec, blob->codec);
	if (ret == MK_ECORRUPT)
		r.why = "unknown codec";
	uint8_t *out = coded ? mk_xmalloc(OUT_BUF) : NULL;
	uint8_t *buf = NULL;
	size_t cap = 0;
	uint64_t stored = 0;
	for (uint32_t i = 0; i < blob->n_chunks && ret == 0; i++) {
		const uint8_t *data;
		size_t len = 0;
		if (txn == NULL) {
			ret = mk__store_read_chunk_copy(st, blob->owner, i, &buf, &cap, &len);
			data = buf;
		} else {
			uint8_t k[12];
			mk__store_key_chunk(k, blob->owner, i);
			MDB_val key = {sizeof(k), k}, val;
			int rc = mdb_get(txn, st->chunks, &key, &val);
			ret = rc == MDB_NOTFOUND ? MK_ENOTFOUND : mk__store_err(rc);
			data = val.mv_data;
			len = val.mv_size;
		}
		if (ret == MK_ENOTFOUND) {
			r.why = "a chunk is missing";
			ret = MK_ECORRUPT;
		}
		if (ret < 0)
			break;
		stored += len;
		if (!coded) {
			ret = emit(&r, data, len);
			continue;
		}
		if (dec.done && len > 0) {
			r.why = "data after the end of the zlib stream";
			ret = MK_ECORRUPT;
			break;
		}
		mk__store_dec_input(&dec, data, len);
		for (;;) {
			size_t n = 0;
			ret = mk__store_dec_out(&dec, out, OUT_BUF, &n, &r.why);
			if (ret == 0)
				ret = emit(&r, out, n);
			if (ret < 0 || n == 0)
				break;
		}
		if (ret == 0 && dec.done && dec.zs.avail_in != 0) {
			r.why = "data after the end of the zlib stream";
			ret = MK_ECORRUPT;
		}
	}
	if (ret == 0) {
		uint8_t got[MK_STORE_SHA_LEN];
		mk_sha256_final(&r.sha, got);
		if (coded && !dec.done)
			r.why = "truncated zlib stream";
		else if (stored != blob->stored_size)
			r.why = "stored size mismatch";
		else if (r.raw_out != blob->raw_size)
			r.why = "size mismatch";
		else if (memcmp(got, sha, MK_STORE_SHA_LEN) != 0)
			r.why = "hash mismatch";
		if (r.why != NULL)
			ret = MK_ECORRUPT;
	}
	mk__store_dec_end(&dec);
	mk_free(out);
	mk_free(buf);
	if (why_r != NULL)
		*why_r = ret == MK_ECORRUPT ? (r.why ? r.why : "corrupt") : NULL;
	return ret;
}

int mk_store_body_read(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN],
		       int (*cb)(void *ud, const uint8_t *p, size_t n), void *ud)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	struct mk__store_blob blob;
	ret = mk__store_get_blob(st, txn, sha, &blob);
	mk__store_txn_abort(st, txn);
	if (ret < 0)
		return ret;
	return mk__store_blob_stream(st, NULL, sha, &blob, cb, ud, NULL);
}
