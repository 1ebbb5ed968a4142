/* SPDX-License-Identifier: MIT */
/*
 * codec.c - codec MK__STORE_CODEC_MZ1 ("mime-zlib 1"): one zlib stream
 * with preset dictionary 1 (zdict.c) over a reversible transform of the
 * message that turns base64 lines back into the bytes they encode.
 *
 * Why: ~87 % of the bytes of real mail are base64 attachments. deflate
 * sees base64 as 6-bit symbols misaligned with the data, so it compresses
 * them slowly and badly; the decoded bytes are 3/4 as many and compress
 * far better (and already-compressed ones are detected and stored, not
 * deflated for nothing). The dictionary helps the headers and text of
 * small messages, which have no history of their own. Measured in blob.c.
 *
 * The transformed stream (what is deflated) is a sequence of records:
 *   0x00 n [n bytes]        n literal bytes, 1 <= n <= MZ_LIT_MAX
 *   0x01 L k [k*3L/4 bytes] k lines of L base64 characters plus CRLF:
 *                           each line is base64 (RFC 4648 alphabet, no
 *                           padding) of its 3L/4 bytes; L % 4 == 0,
 *                           MZ_MIN_L <= L <= MZ_MAX_L, k >= 1,
 *                           k*3L/4 <= MZ_RUN_MAX
 * with n, L, k as LEB128 varints (at most 3 bytes). Any other byte where
 * a record starts, a limit exceeded, or a stream ending inside a record
 * is corruption. Only full lines of the alphabet without '=' are turned
 * into a 0x01 record, so decode(encode(x)) == x for every x: a line that
 * merely looks like base64 (a token, a hash) round-trips the same way,
 * and anything else (short last lines, padding, LF-only lines, spaces)
 * stays literal. The format can never change: a new one is a new codec.
 *
 * Encoder: bounded memory (one line, one literal and one run buffer),
 * any split of the input into writes gives the same records. Decoder:
 * pull-style (zlib-like), a few bytes of state, so readers can hand out
 * any amount at a time.
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "store_int.h"

#include <string.h>

#define MZ_TAG_LIT 0x00
#define MZ_TAG_RUN 0x01
#define MZ_LINE_CAP (MZ_MAX_L + 2)

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for the alphabet, 0xff for anything else. */
static const uint8_t b64_val[256] = {
#define X 0xff
	X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
	X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  62, X,  X,  X,  63, 52, 53, 54, 55,
	56, 57, 58, 59, 60, 61, X,  X,  X,  X,  X,  X,  X,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
	13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X,  X,  X,  X,  X,  X,  26, 27, 28, 29, 30, 31, 32,
	33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X,  X,  X,  X,  X,  X,  X,
	X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
	X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
	X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
	X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
	X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
#undef X
};

/* ---- encoder ---- */

struct mk__store_mzenc {
	int level;     /* the body's zlib level */
	int cur_level; /* what the stream runs at now (0 for incompressible runs) */
	struct mk__store_zsink sink;
	size_t lit_len, run_len, line_len;
	uint32_t run_l, run_k;
	bool long_line; /* inside a line too long to be base64: literal to its LF */
	uint64_t stored_runs, runs;
	uint8_t line[MZ_LINE_CAP];
	uint8_t lit[MZ_LIT_MAX];
	uint8_t run[MZ_RUN_MAX];
};

struct mk__store_mzenc *mk__store_mzenc_new(void)
{
	return mk_xcalloc(1, sizeof(struct mk__store_mzenc));
}

void mk__store_mzenc_free(struct mk__store_mzenc **ep)
{
	MK_FREE(ep);
}

void mk__store_mzenc_begin(struct mk__store_mzenc *e, int level, const struct mk__store_zsink *sink)
{
	e->level = e->cur_level = level;
	e->sink = *sink;
	e->lit_len = e->run_len = e->line_len = 0;
	e->run_l = e->run_k = 0;
	e->long_line = false;
}

static size_t put_varint(uint8_t *p, uint32_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static int set_level(struct mk__store_mzenc *e, int level)
{
	if (e->cur_level == level)
		return 0;
	int ret = e->sink.level(e->sink.ud, level);
	if (ret == 0)
		e->cur_level = level;
	return ret;
}

static int flush_lit(struct mk__store_mzenc *e)
{
	if (e->lit_len == 0)
		return 0;
	int ret = set_level(e, e->level);
	if (ret < 0)
		return ret;
	uint8_t hdr[8];
	hdr[0] = MZ_TAG_LIT;
	size_t h = 1 + put_varint(hdr + 1, (uint32_t)e->lit_len);
	ret = e->sink.feed(e->sink.ud, hdr, h);
	if (ret == 0)
		ret = e->sink.feed(e->sink.ud, e->lit, e->lit_len);
	e->lit_len = 0;
	return ret;
}

/* Already-compressed data (JPEG, ZIP, PDF streams, gzip): a byte
 * histogram of the first 4 KiB close to flat. sum(c^2) is n^2/256 + n for
 * random bytes; the cut-off is Renyi entropy 7.8 bits/byte (sum(c^2) *
 * 2^7.8 <= n^2). Measured (blob.c): deflate level 1 gets such runs to
 * 98.4 % at the cost of 20 % of all deflate time. */
static bool looks_random(const uint8_t *p, size_t n)
{
	if (n > 4096)
		n = 4096;
	if (n < 1024)
		return false;
	uint32_t h[256];
	memset(h, 0, sizeof(h));
	for (size_t i = 0; i < n; i++)
		h[p[i]]++;
	uint64_t sq = 0;
	for (int i = 0; i < 256; i++)
		sq += (uint64_t)h[i] * h[i];
	return sq * 223 <= (uint64_t)n * n;
}

/* Test/bench only (store_bench zlab): turns the detection off. */
static bool no_detect;

void mk__store_test_mz_detect(bool on)
{
	no_detect = !on;
}

static int flush_run(struct mk__store_mzenc *e)
{
	if (e->run_len == 0)
		return 0;
	e->runs++;
	bool stored = !no_detect && looks_random(e->run, e->run_len);
	e->stored_runs += stored;
	int ret = set_level(e, stored ? 0 : e->level);
	if (ret < 0)
		return ret;
	uint8_t hdr[8];
	hdr[0] = MZ_TAG_RUN;
	size_t h = 1 + put_varint(hdr + 1, e->run_l);
	h += put_varint(hdr + h, e->run_k);
	ret = e->sink.feed(e->sink.ud, hdr, h);
	if (ret == 0)
		ret = e->sink.feed(e->sink.ud, e->run, e->run_len);
	e->run_len = 0;
	e->run_k = 0;
	return ret;
}

static int append_lit(struct mk__store_mzenc *e, const uint8_t *p, size_t n)
{
	int ret = flush_run(e);
	while (ret == 0 && n > 0) {
		size_t k = MZ_LIT_MAX - e->lit_len;
		if (k > n)
			k = n;
		memcpy(e->lit + e->lit_len, p, k);
		e->lit_len += k;
		p += k;
		n -= k;
		if (e->lit_len == MZ_LIT_MAX)
			ret = flush_lit(e);
	}
	return ret;
}

/* A full line of the alphabet (no '='), L % 4 == 0, then CRLF: its L. */
static uint32_t b64_line(const uint8_t *p, size_t len)
{
	if (len < MZ_MIN_L + 2 || len > MZ_LINE_CAP || p[len - 2] != '\r' || p[len - 1] != '\n')
		return 0;
	size_t l = len - 2;
	if (l % 4 != 0)
		return 0;
	for (size_t i = 0; i < l; i++)
		if (b64_val[p[i]] == 0xff)
			return 0;
	return (uint32_t)l;
}

/* One whole line (with its LF). */
static int line_done(struct mk__store_mzenc *e, const uint8_t *p, size_t len)
{
	uint32_t l = b64_line(p, len);
	if (l == 0)
		return append_lit(e, p, len);
	int ret = flush_lit(e);
	size_t bpl = (size_t)l / 4 * 3;
	if (ret == 0 && e->run_len > 0 && (l != e->run_l || e->run_len + bpl > MZ_RUN_MAX))
		ret = flush_run(e);
	if (ret < 0)
		return ret;
	uint8_t *o = e->run + e->run_len;
	for (size_t i = 0; i < l; i += 4) {
		uint32_t v = (uint32_t)b64_val[p[i]] << 18 | (uint32_t)b64_val[p[i + 1]] << 12 |
			     (uint32_t)b64_val[p[i + 2]] << 6 | b64_val[p[i + 3]];
		*o++ = (uint8_t)(v >> 16);
		*o++ = (uint8_t)(v >> 8);
		*o++ = (uint8_t)v;
	}
	e->run_len += bpl;
	e->run_l = l;
	e->run_k++;
	return 0;
}

int mk__store_mzenc_write(struct mk__store_mzenc *e, const uint8_t *p, size_t n)
{
	int ret = 0;
	while (ret == 0 && n > 0) {
		const uint8_t *lf = memchr(p, '\n', n);
		size_t seg = lf != NULL ? (size_t)(lf - p) + 1 : n;
		if (e->long_line) {
			ret = append_lit(e, p, seg);
			if (lf != NULL)
				e->long_line = false;
		} else if (e->line_len == 0 && lf != NULL) {
			ret = line_done(e, p, seg);
		} else if (e->line_len + seg <= MZ_LINE_CAP) {
			memcpy(e->line + e->line_len, p, seg);
			e->line_len += seg;
			if (lf != NULL) {
				ret = line_done(e, e->line, e->line_len);
				e->line_len = 0;
			}
		} else {
			/* Too long for a base64 line: literal up to its LF. */
			ret = append_lit(e, e->line, e->line_len);
			e->line_len = 0;
			if (ret == 0)
				ret = append_lit(e, p, seg);
			e->long_line = lf == NULL;
		}
		p += seg;
		n -= seg;
	}
	return ret;
}

int mk__store_mzenc_finish(struct mk__store_mzenc *e)
{
	int ret = 0;
	if (e->line_len > 0)
		ret = append_lit(e, e->line, e->line_len);
	e->line_len = 0;
	e->long_line = false;
	if (ret == 0)
		ret = flush_run(e);
	if (ret == 0)
		ret = flush_lit(e);
	/* deflate(Z_FINISH) may run at level 0: nothing is left to compress,
	 * and the next body starts with mk__store_zstart(). */
	return ret;
}

void mk__store_mzenc_stats(const struct mk__store_mzenc *e, uint64_t *runs_r, uint64_t *stored_runs_r)
{
	*runs_r = e->runs;
	*stored_runs_r = e->stored_runs;
}

int mk__store_zstart(z_stream *zs, int level)
{
	/* Straight after deflateInit2/deflateReset: no flush, cannot fail
	 * for levels 0..9. */
	if (deflateParams(zs, level, Z_DEFAULT_STRATEGY) != Z_OK)
		return MK_EIO;
	if (deflateSetDictionary(zs, mk__store_zdict1, (uInt)mk__store_zdict1_len) != Z_OK)
		return MK_EIO;
	return 0;
}

/* ---- decoder ---- */

enum {
	MZD_TAG = 0,
	MZD_LIT_N,
	MZD_LIT,
	MZD_RUN_L,
	MZD_RUN_K,
	MZD_RUN,
};

void mk__store_mzdec_init(struct mk__store_mzdec *d)
{
	memset(d, 0, sizeof(*d));
}

bool mk__store_mzdec_idle(const struct mk__store_mzdec *d)
{
	return d->state == MZD_TAG && d->npend == d->pend_off;
}

/* Varint byte; returns 1 when the value is complete, 0 for more, <0. */
static int varint_byte(struct mk__store_mzdec *d, uint8_t b)
{
	if (d->vshift >= 21)
		return MK_ECORRUPT; /* more than 3 bytes: no field is that big */
	d->v |= (uint32_t)(b & 0x7f) << d->vshift;
	d->vshift += 7;
	if (b & 0x80)
		return 0;
	d->vshift = 0;
	return 1;
}

int mk__store_mzdec_run(struct mk__store_mzdec *d, const uint8_t *in, size_t in_n, size_t *used_r, uint8_t *out,
			size_t cap, size_t *made_r)
{
	size_t i = 0, o = 0;
	int ret = 0;
	for (;;) {
		/* Characters of a group (and CRLF) that did not fit last time. */
		while (d->pend_off < d->npend && o < cap)
			out[o++] = d->pend[d->pend_off++];
		if (d->pend_off < d->npend || o == cap)
			break;
		d->pend_off = d->npend = 0;
		if (d->state == MZD_LIT) {
			size_t k = in_n - i;
			if (k > d->left)
				k = d->left;
			if (k > cap - o)
				k = cap - o;
			memcpy(out + o, in + i, k);
			i += k;
			o += k;
			d->left -= k;
			if (d->left == 0)
				d->state = MZD_TAG;
			if (i == in_n)
				break;
			continue;
		}
		if (d->state == MZD_RUN) {
			/* Whole groups straight into out while both sides have room. */
			while (d->ngrp == 0 && in_n - i >= 3 && cap - o >= 4 && d->line_left > 0) {
				uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
				out[o] = (uint8_t)b64_chars[v >> 18];
				out[o + 1] = (uint8_t)b64_chars[(v >> 12) & 63];
				out[o + 2] = (uint8_t)b64_chars[(v >> 6) & 63];
				out[o + 3] = (uint8_t)b64_chars[v & 63];
				i += 3;
				o += 4;
				d->line_left -= 3;
			}
			if (d->line_left == 0) {
				d->pend[d->npend++] = '\r';
				d->pend[d->npend++] = '\n';
				d->line_left = d->bpl;
				if (--d->lines == 0)
					d->state = MZD_TAG;
				continue;
			}
			if (i == in_n)
				break;
			/* A group split over inputs, or out nearly full: byte-wise. */
			d->grp[d->ngrp++] = in[i++];
			if (d->ngrp == 3) {
				uint32_t v = (uint32_t)d->grp[0] << 16 | (uint32_t)d->grp[1] << 8 | d->grp[2];
				d->pend[d->npend++] = (uint8_t)b64_chars[v >> 18];
				d->pend[d->npend++] = (uint8_t)b64_chars[(v >> 12) & 63];
				d->pend[d->npend++] = (uint8_t)b64_chars[(v >> 6) & 63];
				d->pend[d->npend++] = (uint8_t)b64_chars[v & 63];
				d->ngrp = 0;
				d->line_left -= 3;
			}
			continue;
		}
		if (i == in_n)
			break;
		uint8_t b = in[i++];
		int vr;
		switch (d->state) {
		case MZD_TAG:
			d->v = 0;
			d->vshift = 0;
			if (b == MZ_TAG_LIT)
				d->state = MZD_LIT_N;
			else if (b == MZ_TAG_RUN)
				d->state = MZD_RUN_L;
			else
				ret = MK_ECORRUPT;
			break;
		case MZD_LIT_N:
			vr = varint_byte(d, b);
			if (vr < 0 || (vr == 1 && (d->v == 0 || d->v > MZ_LIT_MAX))) {
				ret = MK_ECORRUPT;
			} else if (vr == 1) {
				d->left = d->v;
				d->state = MZD_LIT;
			}
			break;
		case MZD_RUN_L:
			vr = varint_byte(d, b);
			if (vr < 0 || (vr == 1 && (d->v < MZ_MIN_L || d->v > MZ_MAX_L || d->v % 4 != 0))) {
				ret = MK_ECORRUPT;
			} else if (vr == 1) {
				d->bpl = d->v / 4 * 3;
				d->v = 0;
				d->state = MZD_RUN_K;
			}
			break;
		case MZD_RUN_K:
			vr = varint_byte(d, b);
			if (vr < 0 || (vr == 1 && (d->v == 0 || (uint64_t)d->v * d->bpl > MZ_RUN_MAX))) {
				ret = MK_ECORRUPT;
			} else if (vr == 1) {
				d->lines = d->v;
				d->line_left = d->bpl;
				d->ngrp = 0;
				d->state = MZD_RUN;
			}
			break;
		default:
			ret = MK_ECORRUPT;
			break;
		}
		if (ret < 0)
			break;
	}
	*used_r = i;
	*made_r = o;
	return ret;
}

/* ---- whole-blob decoder: inflate (+ dictionary + transform) ---- */

#define DEC_ZBUF (64 * 1024)

int mk__store_dec_init(struct mk__store_dec *d, uint8_t codec)
{
	memset(d, 0, sizeof(*d));
	d->codec = codec;
	if (codec == MK__STORE_CODEC_STORED)
		return 0;
	if (codec != MK__STORE_CODEC_ZLIB && codec != MK__STORE_CODEC_MZ1)
		return MK_ECORRUPT;
	d->zs.zalloc = mk__store_zalloc;
	d->zs.zfree = mk__store_zfree;
	if (inflateInit(&d->zs) != Z_OK)
		return MK_EIO;
	d->z_active = true;
	if (codec == MK__STORE_CODEC_MZ1) {
		d->zbuf = mk_xmalloc(DEC_ZBUF);
		mk__store_mzdec_init(&d->md);
	}
	return 0;
}

void mk__store_dec_end(struct mk__store_dec *d)
{
	if (d->z_active)
		inflateEnd(&d->zs);
	d->z_active = false;
	MK_FREE(&d->zbuf);
}

void mk__store_dec_input(struct mk__store_dec *d, const uint8_t *p, size_t n)
{
	d->zs.next_in = (Bytef *)(uintptr_t)p;
	d->zs.avail_in = (uInt)n;
}

int mk__store_dec_out(struct mk__store_dec *d, uint8_t *out, size_t cap, size_t *n_r, const char **why_r)
{
	*n_r = 0;
	if (cap == 0)
		return 0;
	if (cap > (1u << 30))
		cap = 1u << 30;
	bool mz = d->codec == MK__STORE_CODEC_MZ1;
	for (;;) {
		if (mz && (d->zoff < d->zlen || !mk__store_mzdec_idle(&d->md))) {
			size_t used = 0, made = 0;
			int ret = mk__store_mzdec_run(&d->md, d->zbuf + d->zoff, d->zlen - d->zoff, &used, out, cap, &made);
			d->zoff += used;
			if (ret < 0) {
				*why_r = "bad record in the mz1 stream";
				return MK_ECORRUPT;
			}
			if (made > 0) {
				*n_r = made;
				return 0;
			}
			if (d->zoff < d->zlen)
				continue; /* record headers only */
			/* Needs more inflated bytes. */
		}
		if (d->z_end) {
			if (mz && !mk__store_mzdec_idle(&d->md)) {
				*why_r = "mz1 stream ends inside a record";
				return MK_ECORRUPT;
			}
			d->done = true;
			return 0;
		}
		uint8_t *dst = mz ? d->zbuf : out;
		size_t dcap = mz ? DEC_ZBUF : cap;
		d->zs.next_out = dst;
		d->zs.avail_out = (uInt)dcap;
		int zr = inflate(&d->zs, Z_NO_FLUSH);
		if (zr == Z_NEED_DICT) {
			/* Only MZ1 has a dictionary; inflateSetDictionary checks
			 * its Adler-32 against the one in the stream. */
			if (!mz || inflateSetDictionary(&d->zs, mk__store_zdict1, (uInt)mk__store_zdict1_len) != Z_OK) {
				*why_r = "zlib stream wants an unknown dictionary";
				return MK_ECORRUPT;
			}
			continue;
		}
		if (zr == Z_STREAM_END) {
			d->z_end = true;
		} else if (zr != Z_OK && zr != Z_BUF_ERROR) {
			*why_r = "zlib data error";
			return MK_ECORRUPT;
		}
		size_t got = dcap - d->zs.avail_out;
		if (mz) {
			d->zlen = got;
			d->zoff = 0;
		} else if (got > 0) {
			*n_r = got;
			return 0;
		}
		if (got == 0 && !d->z_end && (zr == Z_BUF_ERROR || d->zs.avail_in == 0))
			return 0; /* needs more input */
	}
}
