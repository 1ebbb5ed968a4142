/* SPDX-License-Identifier: MIT */
/*
 * fuzz_store.c - libFuzzer target for the value decoders of storage/schema.c:
 * every decoder runs on the input as is. A value that decodes must encode
 * back to the same bytes (the format has one spelling per value), and no
 * input may read out of bounds or leave a string unterminated.
 *
 * Also codec MZ1's transform (codec.c): the input as a record stream
 * through the decoder in small pieces (corrupt or not, never more output
 * than room), and the input as a message through the encoder and back,
 * which must give the input again.
 */
#include "mk_err.h"
#include "store_int.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
	if (an != bn || memcmp(a, b, an) != 0)
		__builtin_trap();
}

static int cap_feed(void *ud, const uint8_t *p, size_t n)
{
	uint8_t **w = ud;
	memcpy(*w, p, n);
	*w += n;
	return 0;
}

static int cap_level(void *ud, int level)
{
	(void)ud;
	(void)level;
	return 0;
}

/* Decodes in (size n) into out (room cap) in pieces of `step`. */
static int mz_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t step, size_t *got_r)
{
	struct mk__store_mzdec d;
	mk__store_mzdec_init(&d);
	size_t off = 0, got = 0;
	for (;;) {
		size_t k = n - off < step ? n - off : step;
		size_t room = cap - got < step ? cap - got : step;
		size_t used = 0, made = 0;
		int r = mk__store_mzdec_run(&d, in + off, k, &used, out + got, room, &made);
		if (used > k || made > room)
			__builtin_trap();
		off += used;
		got += made;
		if (r < 0)
			return r;
		if ((off == n && made == 0) || got == cap)
			break;
	}
	*got_r = got;
	return mk__store_mzdec_idle(&d) && off == n ? 0 : 1;
}

static void fuzz_mz1(const uint8_t *data, size_t size)
{
	static uint8_t out[1 << 18], enc[1 << 18];
	size_t got;
	(void)mz_decode(data, size, out, sizeof(out), 1 + size % 61, &got);
	/* Encode: a record stream is never much longer than its input. */
	if (size > sizeof(enc) / 2)
		return;
	static struct mk__store_mzenc *e;
	if (e == NULL)
		e = mk__store_mzenc_new();
	uint8_t *w = enc;
	struct mk__store_zsink sink = {cap_feed, cap_level, &w};
	mk__store_mzenc_begin(e, 6, &sink);
	size_t piece = 1 + (size > 0 ? data[0] : 0);
	for (size_t off = 0; off < size; off += piece)
		if (mk__store_mzenc_write(e, data + off, size - off < piece ? size - off : piece) != 0)
			__builtin_trap();
	if (mk__store_mzenc_finish(e) != 0)
		__builtin_trap();
	if (mz_decode(enc, (size_t)(w - enc), out, sizeof(out), 7, &got) != 0 || got != size ||
	    memcmp(out, data, size) != 0)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_mz1(data, size);

	uint8_t out[MK__STORE_MBOX_VAL_MAX];
	uint32_t u32;
	uint64_t u64;
	int64_t i64;
	if (mk__store_decode_u32(data, size, &u32) == 0)
		same(out, mk__store_encode_u32(out, u32), data, size);
	if (mk__store_decode_u64(data, size, &u64) == 0)
		same(out, mk__store_encode_u64(out, u64), data, size);
	if (mk__store_decode_i64(data, size, &i64) == 0)
		same(out, mk__store_encode_i64(out, i64), data, size);

	char name[MK__STORE_ACCOUNT_NAME_MAX + 1];
	if (mk__store_decode_account(data, size, name, sizeof(name)) == 0) {
		if (strlen(name) >= sizeof(name))
			__builtin_trap();
		same(out, mk__store_encode_account(out, sizeof(out), name), data, size);
	}

	struct mk_store_mailbox mb;
	memset(&mb, 0, sizeof(mb));
	if (mk__store_decode_mailbox(data, size, &mb) == 0) {
		if (strnlen(mb.name, sizeof(mb.name)) >= sizeof(mb.name))
			__builtin_trap();
		same(out, mk__store_encode_mailbox(out, sizeof(out), &mb), data, size);
	}

	struct mk_store_msg m;
	memset(&m, 0, sizeof(m));
	if (mk__store_decode_msg(data, size, &m) == 0) {
		if (strnlen(m.keywords, sizeof(m.keywords)) >= sizeof(m.keywords) ||
		    strnlen(m.unique, sizeof(m.unique)) >= sizeof(m.unique))
			__builtin_trap();
		same(out, mk__store_encode_msg(out, sizeof(out), &m), data, size);
	}

	struct mk__store_blob b;
	if (mk__store_decode_blob(data, size, &b) == 0)
		same(out, mk__store_encode_blob(out, sizeof(out), &b), data, size);
	return 0;
}
