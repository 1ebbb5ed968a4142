/* SPDX-License-Identifier: MIT */
/*
 * fuzz_sasl.c - libFuzzer target for the SASL step functions: arbitrary
 * challenges (split on '\n' into steps) fed to each mechanism, after or
 * without the initial response; the first byte picks the mechanism and
 * whether the initial response is sent.
 */
#include "mk_err.h"
#include "mk_sasl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	enum mk_sasl_mech mech = (enum mk_sasl_mech)(data[0] % 4 + 1);
	bool initial = data[0] & 4;
	data++;
	size--;
	struct mk_sasl s;
	struct mk_buf out;
	mk_buf_init(&out, 64 * 1024);
	static const char tok[] = "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA";
	if (mk_sasl_init(&s, mech, "user@example.com", (const uint8_t *)tok, sizeof(tok) - 1, "imap.example.com",
			 993) != 0)
		abort();
	if (initial && mk_sasl_has_initial(&s) && mk_sasl_initial(&s, &out) != 0)
		abort();
	size_t off = 0;
	while (off <= size) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t n = nl != NULL ? (size_t)(nl - (data + off)) : size - off;
		mk_buf_reset(&out);
		int r = mk_sasl_step(&s, data + off, n, &out);
		if (r != 0 && r != MK_EAUTH && r != MK_EPROTO)
			abort();
		const char *e = mk_sasl_error(&s);
		if (r == MK_EAUTH && (e[0] == '\0' || strlen(e) >= sizeof(s.error)))
			abort();
		for (; *e; e++)
			if ((unsigned char)*e < 0x20 || (unsigned char)*e >= 0x7f)
				abort();
		off += n + 1;
	}
	mk_sasl_cleanup(&s);
	mk_buf_cleanup_wipe(&out);
	return 0;
}
