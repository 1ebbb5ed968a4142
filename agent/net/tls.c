/* SPDX-License-Identifier: MIT */
/*
 * tls.c - the TLS engine: BoringSSL driven through two memory BIOs.
 *
 * This file and agent/crypto are the only code that includes OpenSSL-style headers.
 * It never touches a socket: conn.c feeds it ciphertext and drains what it
 * produces. Security reasoning, kept next to the code:
 *  - SSL_VERIFY_PEER is set on every context and there is no API to clear
 *    it; a failed chain or name check fails the handshake.
 *  - The name is checked by the library (SSL_set1_host for DNS names,
 *    X509_VERIFY_PARAM_set1_ip_asc for IP literals), with partial wildcards
 *    refused; SNI is sent for DNS names only (RFC 6066 forbids IP literals).
 *  - TLS 1.2 is the minimum.
 *  - The optional pin is checked after the chain verified, never instead.
 */
#include "mk_tls.h"
#include "mk_alloc.h"
#include "mk_crypto.h"
#include "mk_err.h"
#include "mk_str.h"

#include <openssl/base.h>
#ifndef OPENSSL_IS_BORINGSSL
#error "mailkeep's TLS code requires BoringSSL (android-libboringssl-dev); OpenSSL must not be mixed in"
#endif
#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct mk_tls_ctx {
	SSL_CTX *ssl_ctx;
};

enum mk_tls_state {
	MK_TLS_HANDSHAKE = 0,
	MK_TLS_OPEN,
	MK_TLS_FAILED,
	MK_TLS_CLOSED,
};

struct mk_tls {
	SSL *ssl;
	BIO *rbio; /* ciphertext in (owned by ssl) */
	BIO *wbio; /* ciphertext out (owned by ssl) */
	enum mk_tls_state state;
	char *host;
	uint8_t pin[MK_SHA256_LEN];
	bool has_pin;
	char peer_names[512]; /* leaf SANs, recorded by the verify callback */
	char peer_pin[64];
	char error[768];
};

static int verify_cb(int preverify_ok, X509_STORE_CTX *store);

int mk_tls_ctx_new(const char *extra_ca_file, struct mk_tls_ctx **ctx_r, char **error_r)
{
	SSL_CTX *c = SSL_CTX_new(TLS_method());
	if (c == NULL) {
		*error_r = mk_xstrdup("cannot create TLS context");
		return MK_ETLS;
	}
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, verify_cb);

	const char *sys = getenv("MK_TLS_SYSTEM_CA");
	if (sys == NULL || *sys == '\0')
		sys = MK_TLS_SYSTEM_CA_FILE;
	if (strcmp(sys, "none") != 0) {
		struct stat st;
		if (stat(sys, &st) == 0) {
			if (!SSL_CTX_load_verify_locations(c, sys, NULL)) {
				ERR_clear_error();
				/* fall back to the hashed directory */
				SSL_CTX_set_default_verify_paths(c);
			}
		} else {
			/* /etc/ssl/certs through ca-certificates' hashed links */
			SSL_CTX_set_default_verify_paths(c);
		}
	}
	if (extra_ca_file != NULL) {
		ERR_clear_error();
		if (!SSL_CTX_load_verify_locations(c, extra_ca_file, NULL)) {
			char e[256];
			ERR_error_string_n(ERR_peek_last_error(), e, sizeof(e));
			ERR_clear_error();
			struct stat st;
			if (stat(extra_ca_file, &st) < 0)
				*error_r = mk_xasprintf("tls_ca_file %s: %s", extra_ca_file, strerror(errno));
			else
				*error_r = mk_xasprintf("tls_ca_file %s: no usable PEM certificate (%s)",
							extra_ca_file, e);
			SSL_CTX_free(c);
			return MK_ETLS;
		}
	}
	struct mk_tls_ctx *ctx = mk_xcalloc(1, sizeof(*ctx));
	ctx->ssl_ctx = c;
	*ctx_r = ctx;
	return 0;
}

void mk_tls_ctx_free(struct mk_tls_ctx **ctx)
{
	if (*ctx == NULL)
		return;
	SSL_CTX_free((*ctx)->ssl_ctx);
	MK_FREE(ctx);
}

static bool is_ip_literal(const char *host)
{
	uint8_t buf[16];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int mk_tls_new(struct mk_tls_ctx *ctx, const char *host, const char *pin, struct mk_tls **tls_r)
{
	uint8_t pinbuf[MK_SHA256_LEN];
	bool has_pin = false;
	if (pin != NULL) {
		if (!mk_str_has_prefix(pin, "sha256/"))
			return MK_EINVAL;
		const char *b = pin + 7;
		if (mk_base64_decode(b, strlen(b), pinbuf, sizeof(pinbuf)) != MK_SHA256_LEN)
			return MK_EINVAL;
		has_pin = true;
	}
	struct mk_tls *t = mk_xcalloc(1, sizeof(*t));
	t->host = mk_xstrdup(host);
	if (has_pin) {
		memcpy(t->pin, pinbuf, sizeof(pinbuf));
		t->has_pin = true;
	}
	t->ssl = SSL_new(ctx->ssl_ctx);
	if (t->ssl == NULL)
		mk_fatal("SSL_new failed");
	SSL_set_app_data(t->ssl, t);
	SSL_set_connect_state(t->ssl);
	SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (is_ip_literal(host)) {
		if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host))
			mk_fatal("cannot set IP address for verification");
	} else {
		if (!SSL_set1_host(t->ssl, host) || !SSL_set_tlsext_host_name(t->ssl, host))
			mk_fatal("cannot set host name for verification");
	}
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (t->rbio == NULL || t->wbio == NULL)
		mk_fatal("BIO_new failed");
	/* An empty read BIO means "retry later", not EOF. */
	BIO_set_mem_eof_return(t->rbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	t->state = MK_TLS_HANDSHAKE;
	*tls_r = t;
	return 0;
}

void mk_tls_free(struct mk_tls **tls)
{
	struct mk_tls *t = *tls;
	if (t == NULL)
		return;
	SSL_free(t->ssl); /* frees both BIOs */
	mk_free(t->host);
	mk_crypto_wipe(t, sizeof(*t));
	MK_FREE(tls);
}

int mk_tls_feed(struct mk_tls *t, const uint8_t *p, size_t n)
{
	if (n > 0 && BIO_write(t->rbio, p, (int)n) != (int)n)
		mk_fatal("BIO_write to memory BIO failed");
	return 0;
}

/* Appends "a, b" style names of the leaf certificate into t->peer_names. */
static void record_peer_names(struct mk_tls *t, X509 *cert)
{
	char *o = t->peer_names;
	size_t cap = sizeof(t->peer_names), len = 0;
	o[0] = '\0';
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	if (names != NULL) {
		for (size_t i = 0; i < sk_GENERAL_NAME_num(names) && len + 1 < cap; i++) {
			const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
			char tmp[INET6_ADDRSTRLEN + 1];
			const char *s = NULL;
			size_t sl = 0;
			if (gn->type == GEN_DNS) {
				s = (const char *)ASN1_STRING_get0_data(gn->d.dNSName);
				sl = (size_t)ASN1_STRING_length(gn->d.dNSName);
			} else if (gn->type == GEN_IPADD) {
				int l = ASN1_STRING_length(gn->d.iPAddress);
				const unsigned char *d = ASN1_STRING_get0_data(gn->d.iPAddress);
				if ((l == 4 && inet_ntop(AF_INET, d, tmp, sizeof(tmp))) ||
				    (l == 16 && inet_ntop(AF_INET6, d, tmp, sizeof(tmp)))) {
					s = tmp;
					sl = strlen(tmp);
				}
			}
			if (s == NULL)
				continue;
			int w = snprintf(o + len, cap - len, "%s%.*s", len ? ", " : "", (int)sl, s);
			if (w > 0)
				len += (size_t)w;
		}
		GENERAL_NAMES_free(names);
	}
	if (len == 0) {
		X509_NAME *subj = X509_get_subject_name(cert);
		if (subj == NULL || X509_NAME_get_text_by_NID(subj, NID_commonName, o, (int)cap) < 0)
			mk_strlcpy(o, "(no name)", cap);
	}
	/* SPKI pin of the leaf */
	uint8_t *der = NULL;
	int dl = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
	if (dl > 0) {
		uint8_t h[MK_SHA256_LEN];
		char b64[MK_BASE64_ENCLEN(MK_SHA256_LEN) + 1];
		mk_crypto_sha256(der, (size_t)dl, h);
		mk_base64_encode(h, sizeof(h), b64, sizeof(b64));
		snprintf(t->peer_pin, sizeof(t->peer_pin), "sha256/%s", b64);
	}
	OPENSSL_free(der);
}

static int verify_cb(int preverify_ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct mk_tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
	/* The leaf is the first certificate of the chain as sent. */
	if (t != NULL && t->peer_names[0] == '\0') {
		X509 *leaf = X509_STORE_CTX_get0_cert(store);
		if (leaf != NULL)
			record_peer_names(t, leaf);
	}
	return preverify_ok;
}

static void describe_verify_error(struct mk_tls *t, long v)
{
	const char *names = t->peer_names[0] ? t->peer_names : "(unknown)";
	switch (v) {
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		snprintf(t->error, sizeof(t->error),
			 "host name mismatch: certificate is for %s, connected to %s", names, t->host);
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		snprintf(t->error, sizeof(t->error), "certificate for %s has expired", t->host);
		break;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		snprintf(t->error, sizeof(t->error), "certificate for %s is not yet valid (check the clock)",
			 t->host);
		break;
	default:
		snprintf(t->error, sizeof(t->error), "certificate for %s is not trusted (%s)", t->host,
			 X509_verify_cert_error_string(v));
		break;
	}
}

static void describe_ssl_error(struct mk_tls *t, const char *what)
{
	uint32_t e = ERR_peek_last_error();
	int reason = ERR_GET_REASON(e);
	char buf[256];
	ERR_error_string_n(e, buf, sizeof(buf));
	if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
		snprintf(t->error, sizeof(t->error),
			 "%s: %s offers only TLS versions older than 1.2, which mailkeep refuses (%s)",
			 what, t->host, buf);
	else if (reason == SSL_R_WRONG_VERSION_NUMBER)
		snprintf(t->error, sizeof(t->error),
			 "%s: %s did not answer with TLS (plain-text service, or wrong port/TLS mode?) (%s)",
			 what, t->host, buf);
	else if (e == 0)
		snprintf(t->error, sizeof(t->error), "%s failed", what);
	else
		snprintf(t->error, sizeof(t->error), "%s failed: %s", what, buf);
	ERR_clear_error();
}

int mk_tls_handshake(struct mk_tls *t)
{
	if (t->state == MK_TLS_OPEN)
		return 0;
	if (t->state != MK_TLS_HANDSHAKE)
		return MK_ETLS;
	ERR_clear_error();
	int r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		/* Chain and name verified by the library; now the optional pin. */
		if (t->has_pin) {
			X509 *leaf = SSL_get_peer_certificate(t->ssl);
			uint8_t h[MK_SHA256_LEN] = {0};
			bool ok = false;
			if (leaf != NULL) {
				uint8_t *der = NULL;
				int dl = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(leaf), &der);
				if (dl > 0) {
					mk_crypto_sha256(der, (size_t)dl, h);
					ok = mk_crypto_equal(h, t->pin, sizeof(h));
				}
				OPENSSL_free(der);
				X509_free(leaf);
			}
			if (!ok) {
				snprintf(t->error, sizeof(t->error),
					 "certificate for %s does not match tls_fingerprint (server's key is %s)",
					 t->host, t->peer_pin[0] ? t->peer_pin : "unknown");
				t->state = MK_TLS_FAILED;
				return MK_ECERT;
			}
		}
		t->state = MK_TLS_OPEN;
		return 0;
	}
	int err = SSL_get_error(t->ssl, r);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return MK_EAGAIN_MORE;
	t->state = MK_TLS_FAILED;
	/* Only a failed certificate check leaves a meaningful verify result;
	 * before the certificate arrives it reads X509_V_ERR_INVALID_CALL. */
	long v = SSL_get_verify_result(t->ssl);
	if (v != X509_V_OK && v != X509_V_ERR_INVALID_CALL &&
	    ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
		describe_verify_error(t, v);
		ERR_clear_error();
		return MK_ECERT;
	}
	describe_ssl_error(t, "TLS handshake");
	return MK_ETLS;
}

bool mk_tls_is_open(const struct mk_tls *t)
{
	return t->state == MK_TLS_OPEN;
}

int mk_tls_read(struct mk_tls *t, uint8_t *buf, size_t cap, size_t *n_r)
{
	*n_r = 0;
	if (t->state == MK_TLS_CLOSED)
		return MK_EEOF;
	if (t->state != MK_TLS_OPEN)
		return MK_ETLS;
	ERR_clear_error();
	int r = SSL_read(t->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
	if (r > 0) {
		*n_r = (size_t)r;
		return 0;
	}
	int err = SSL_get_error(t->ssl, r);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return MK_EAGAIN_MORE;
	if (err == SSL_ERROR_ZERO_RETURN) {
		t->state = MK_TLS_CLOSED;
		return MK_EEOF;
	}
	t->state = MK_TLS_FAILED;
	describe_ssl_error(t, "TLS read");
	return MK_ETLS;
}

int mk_tls_write(struct mk_tls *t, const uint8_t *p, size_t n)
{
	if (t->state != MK_TLS_OPEN)
		return MK_ESTATE;
	while (n > 0) {
		ERR_clear_error();
		int chunk = n > 16384 ? 16384 : (int)n;
		int r = SSL_write(t->ssl, p, chunk);
		if (r <= 0) {
			/* memory BIOs never block on write */
			t->state = MK_TLS_FAILED;
			describe_ssl_error(t, "TLS write");
			return MK_ETLS;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

void mk_tls_shutdown(struct mk_tls *t)
{
	if (t->state == MK_TLS_OPEN || t->state == MK_TLS_CLOSED) {
		ERR_clear_error();
		(void)SSL_shutdown(t->ssl);
		ERR_clear_error();
	}
}

bool mk_tls_has_output(const struct mk_tls *t)
{
	return BIO_pending(t->wbio) > 0;
}

int mk_tls_take_output(struct mk_tls *t, struct mk_buf *out)
{
	size_t pending;
	while ((pending = BIO_pending(t->wbio)) > 0) {
		uint8_t *dst;
		int ret = mk_buf_reserve(out, pending, &dst);
		if (ret < 0)
			return ret;
		int r = BIO_read(t->wbio, dst, (int)pending);
		if (r <= 0)
			break;
		mk_buf_commit(out, (size_t)r);
	}
	return 0;
}

const char *mk_tls_error(const struct mk_tls *t)
{
	return t->error[0] ? t->error : "TLS error";
}

const char *mk_tls_version(const struct mk_tls *t)
{
	return SSL_get_version(t->ssl);
}

const char *mk_tls_cipher(const struct mk_tls *t)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
	return c ? SSL_CIPHER_get_name(c) : "none";
}

const char *mk_tls_peer_pin(const struct mk_tls *t)
{
	return t->peer_pin;
}

const char *mk_tls_peer_name(const struct mk_tls *t)
{
	return t->peer_names;
}
