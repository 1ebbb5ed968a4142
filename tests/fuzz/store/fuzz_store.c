/* SPDX-License-Identifier: MIT */
/*
 * fuzz_store.c - libFuzzer target for the value decoders of storage/schema.c:
 * every decoder runs on the input as is. A value that decodes must encode
 * back to the same bytes (the format has one spelling per value), and no
 * input may read out of bounds or leave a string unterminated.
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
