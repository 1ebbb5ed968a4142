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
 * Codec (codec.c): new bodies are MK__STORE_CODEC_MZ1, one zlib stream
 * with preset dictionary 1 (zdict.c) over the body with its base64 lines
 * decoded; base64 runs that look already compressed are deflated at
 * level 0 (stored blocks). Old stores' ZLIB and STORED blobs still read.
 *
 * Measured 2026-12 (Debian 12, zlib 1.2.13, 2 shared CPUs), store_bench
 * zlab: one body at a time on one thread, CPU = user+sys of compression
 * only, median of 3 passes; "out/gz6" = compressed bytes over gzip -6 of
 * the concatenated corpus (corpus.py --seed mailkeep-bench: 1k = 85.1 MB,
 * 10k = 811 MB; 87 % of the bytes are base64 attachments):
 *
 *   codec        level   1k s/MB  out/gz6    10k s/MB  out/gz6
 *   ZLIB (old)   1       0.0118   1.107      0.0120    1.106
 *   ZLIB (old)   4       0.0166   1.042      0.0168    1.043
 *   ZLIB (old)   6       0.0271   1.021      0.0272    1.022
 *   ZLIB+dict    4       0.0169   1.021      0.0167    1.021
 *   MZ1 no dict  4       0.0102   0.847      0.0101    0.853
 *   MZ1 no detect 4      0.0124   0.823      0.0123    0.829
 *   MZ1          1       0.0074   0.862      0.0077    0.867
 *   MZ1          2       0.0080   0.849
 *   MZ1          3       0.0102   0.839
 *   MZ1          4       0.0108   0.826      0.0109    0.831
 *   MZ1          5       0.0140   0.817
 *   MZ1          6       0.0208   0.813      0.0211    0.818
 *
 * (gzip -6: 40.5 MB for 1k, 388.0 MB for 10k.) Decoding MZ1 (inflate
 * plus the transform) costs 0.003 s/MB. Taken apart at level 4: the
 * dictionary alone is -2.5 % of all bytes (-14 % on header and text bytes)
 * for +6 % CPU; decoding base64 is the big step (-19 % bytes, -27 % CPU);
 * storing runs that look already compressed takes another 13 % of the
 * CPU off for +0.3 % bytes. What did not help: memLevel 9 (+0.2 % bytes,
 * same CPU at levels 1 and 4), windowBits 14 (level 4: -6 % CPU for
 * +1.6 % bytes, the trade level 3 already makes), other strategies on the
 * raw message at level 6: Z_FILTERED 1.059 x gzip -6 at 0.0300 s/MB,
 * Z_HUFFMAN_ONLY 1.359 at 0.0052, Z_RLE 1.352 at 0.0056 (fast, but base64
 * of compressible data needs LZ matches).
 *
 * So MK__STORE_DEFAULT_ZLEVEL (and the config's compress_level default)
 * is 4: 0.83 x gzip -6 at less CPU than the old codec's level 1 (which
 * matched mbsync's wall time in bench_sync); level 1 saves another 30 %
 * of CPU for 4 % more bytes, level 6 doubles the CPU for 1.5 %. With
 * the store (store_bench files, 2 threads, batches of 100; CPU includes
 * SHA-256 and LMDB), data.mdb over gzip -6:
 *
 *              1k: CPU s  data.mdb/gz6     10k: CPU s  data.mdb/gz6
 *   old 1          1.12   1.166
 *   old 4          1.63   1.102
 *   old 6          2.48   1.081
 *   MZ1 1          0.74   0.918            7.08        0.922
 *   MZ1 4          1.01   0.879            9.52        0.884
 *   MZ1 6          1.94   0.866            17.71       0.871
 *
 * data.mdb stays ~6.5 % over the compressed bytes (each body's chunk is
 * its own run of 4 KiB overflow pages), now well inside gzip -6.
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
	struct mk__store_blob blob;
	int ret = mk__store_lookup_blob(st, sha, &blob);
	if (ret < 0)
		return ret;
	return mk__store_blob_stream(st, NULL, sha, &blob, cb, ud, NULL);
}
