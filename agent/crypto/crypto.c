/* SPDX-License-Identifier: MIT */
/*
 * crypto.c - mk_crypto over BoringSSL's libcrypto. BoringSSL picks the
 * hardware SHA-256 (SHA-NI / AVX2) itself. This file must not be compiled
 * against OpenSSL: their SHA/CRYPTO symbols collide in one process.
 */
#include "mk_crypto.h"
#include "mk_err.h"

#include <openssl/base.h>
#ifndef OPENSSL_IS_BORINGSSL
#error "mailkeep must be built against BoringSSL (android-libboringssl-dev)"
#endif
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <assert.h>

static_assert(sizeof(struct mk_sha256) >= sizeof(SHA256_CTX), "mk_sha256 too small");
static_assert(_Alignof(struct mk_sha256) >= _Alignof(SHA256_CTX), "mk_sha256 misaligned");

void mk_crypto_sha256(const void *data, size_t len, uint8_t out[MK_SHA256_LEN])
{
	SHA256(data, len, out);
}

void mk_sha256_init(struct mk_sha256 *ctx)
{
	SHA256_Init((SHA256_CTX *)ctx);
}

void mk_sha256_update(struct mk_sha256 *ctx, const void *data, size_t len)
{
	SHA256_Update((SHA256_CTX *)ctx, data, len);
}

void mk_sha256_final(struct mk_sha256 *ctx, uint8_t out[MK_SHA256_LEN])
{
	SHA256_Final(out, (SHA256_CTX *)ctx);
	OPENSSL_cleanse(ctx, sizeof(*ctx));
}

void mk_crypto_random(void *buf, size_t len)
{
	/* BoringSSL's RAND_bytes cannot fail (it aborts internally). */
	RAND_bytes(buf, len);
}

bool mk_crypto_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

void mk_crypto_wipe(void *p, size_t len)
{
	OPENSSL_cleanse(p, len);
}
