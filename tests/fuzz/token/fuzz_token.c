/* SPDX-License-Identifier: MIT */
/*
 * fuzz_token.c - libFuzzer target for the token endpoint's JSON (cJSON
 * through mk_alloc with wiping hooks) and the plain-words error text.
 */
#include "mk_token.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mk_token_reply r;
	const char *err;
	if (mk_token_parse(data, size, &r, &err) == 0) {
		char buf[600];
		mk_token_explain(&r, "acct", buf, sizeof(buf));
		if (strlen(buf) >= sizeof(buf))
			abort();
		(void)mk_token_error_code(mk_token_classify(&r));
	} else if (err == NULL || r.access_token != NULL) {
		abort();
	}
	mk_token_reply_cleanup(&r);
	return 0;
}
