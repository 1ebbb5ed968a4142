/* SPDX-License-Identifier: MIT */
/*
 * mk_tls.h - a sans-I/O TLS client engine over BoringSSL memory BIOs.
 *
 * The caller moves bytes: ciphertext read from the socket goes in with
 * mk_tls_feed(), ciphertext to send comes out of mk_tls_take_output().
 * Every SSL_* call lives in tls.c; nothing above agent/net sees OpenSSL
 * types. Verification is always on and cannot be turned off: the trust
 * store, the host name (or IP address) and TLS >= 1.2, plus an optional
 * SPKI SHA-256 pin.
 */
#ifndef MK_TLS_H
#define MK_TLS_H

#include "mk_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mk_tls_ctx;
struct mk_tls;

/* Default system trust file (Debian's ca-certificates). */
#define MK_TLS_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

/* One context per trust setting. The system store is always loaded (the
 * file above, else BoringSSL's default paths); `extra_ca_file` (may be NULL)
 * adds private CAs. MK_TLS_SYSTEM_CA_FILE can be replaced for tests with
 * the environment variable MK_TLS_SYSTEM_CA (a file, or "none").
 * Returns: 0, MK_ETLS (error_r: new string naming the file). */
int mk_tls_ctx_new(const char *extra_ca_file, struct mk_tls_ctx **ctx_r, char **error_r);
void mk_tls_ctx_free(struct mk_tls_ctx **ctx);

/* Starts a client session for `host` (DNS name or IP literal). `pin` is
 * NULL or "sha256/BASE64" of the server's SubjectPublicKeyInfo.
 * Returns: 0, MK_EINVAL (bad pin syntax). */
int mk_tls_new(struct mk_tls_ctx *ctx, const char *host, const char *pin, struct mk_tls **tls_r);
void mk_tls_free(struct mk_tls **tls);

/* Ciphertext from the peer. Returns: 0. */
int mk_tls_feed(struct mk_tls *t, const uint8_t *p, size_t n);

/* Drives the handshake. Returns 0 when it completed (and verification and
 * pinning passed), MK_EAGAIN_MORE when it needs more input, MK_ECERT or
 * MK_ETLS on failure (see mk_tls_error()). Call mk_tls_take_output() after
 * every call. */
int mk_tls_handshake(struct mk_tls *t);
bool mk_tls_is_open(const struct mk_tls *t);

/* Reads decrypted bytes. Returns 0 with *n_r > 0, MK_EAGAIN_MORE (nothing
 * buffered), MK_EEOF (peer sent close_notify), or MK_ETLS. */
int mk_tls_read(struct mk_tls *t, uint8_t *buf, size_t cap, size_t *n_r);

/* Encrypts all of p. Returns: 0, MK_ETLS, MK_ESTATE (not open). */
int mk_tls_write(struct mk_tls *t, const uint8_t *p, size_t n);

/* Queues close_notify. */
void mk_tls_shutdown(struct mk_tls *t);

/* Moves pending ciphertext into out. Returns: 0, MK_ETOOBIG. */
int mk_tls_take_output(struct mk_tls *t, struct mk_buf *out);
bool mk_tls_has_output(const struct mk_tls *t);

/* Plain-words description of the last failure, valid until the next call. */
const char *mk_tls_error(const struct mk_tls *t);
/* After the handshake: "TLSv1.3", the cipher name, and the server's SPKI
 * pin "sha256/BASE64" (for users who want to set tls_fingerprint). */
const char *mk_tls_version(const struct mk_tls *t);
const char *mk_tls_cipher(const struct mk_tls *t);
const char *mk_tls_peer_pin(const struct mk_tls *t);
/* Subject CN / first SAN of the peer's leaf, for messages. */
const char *mk_tls_peer_name(const struct mk_tls *t);

#endif
