/* SPDX-License-Identifier: MIT */
/*
 * mk_crypto.h - hashing, random bytes, constant-time compare and wiping: a
 * thin face over BoringSSL's libcrypto, so storage/ can hash bodies without
 * linking libssl or libuv, and nothing above this layer includes an OpenSSL header.
 */
#ifndef MK_CRYPTO_H
#define MK_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MK_SHA256_LEN 32

struct mk_sha256 {
	/* Large enough for BoringSSL's SHA256_CTX (112 bytes); checked by a
	 * static_assert in crypto.c. */
	uint64_t opaque[16];
};

void mk_crypto_sha256(const void *data, size_t len, uint8_t out[MK_SHA256_LEN]);
void mk_sha256_init(struct mk_sha256 *ctx);
void mk_sha256_update(struct mk_sha256 *ctx, const void *data, size_t len);
void mk_sha256_final(struct mk_sha256 *ctx, uint8_t out[MK_SHA256_LEN]);

/* Fills buf with cryptographically secure random bytes (aborts on failure). */
void mk_crypto_random(void *buf, size_t len);
/* Constant-time comparison; true when equal. */
bool mk_crypto_equal(const void *a, const void *b, size_t len);
/* Overwrites memory in a way the compiler cannot elide. */
void mk_crypto_wipe(void *p, size_t len);

#endif
