/* SPDX-License-Identifier: MIT */
/*
 * mk_conn.h - one client connection on a libuv loop: resolve, TCP connect,
 * optional implicit TLS, a later STARTTLS upgrade, timeouts, and a clean
 * close. It is a filter chain tcp -> tls -> owner: the owner sees only
 * plaintext.
 *
 * Lifetime: mk_conn_start() either fails synchronously (no callback ever
 * runs) or returns a conn whose on_close runs exactly once, after which the
 * conn is freed: the owner must not touch it after on_close returns.
 * Callbacks run on the loop thread. The owner may call mk_conn_close() from
 * inside any callback; no further on_data runs after it.
 */
#ifndef MK_CONN_H
#define MK_CONN_H

#include "mk_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct mk_conn;
struct mk_tls_ctx;

struct mk_conn_opts {
	const char *host; /* DNS name or IP literal; also the name verified */
	uint16_t port;
	bool implicit_tls;           /* TLS from the first byte */
	struct mk_tls_ctx *tls_ctx;  /* required: used for implicit TLS and STARTTLS */
	const char *tls_fingerprint; /* NULL or "sha256/BASE64" */
	unsigned connect_timeout_ms;   /* 0: MK_TIMEOUT_CONNECT_MS */
	unsigned handshake_timeout_ms; /* 0: MK_TIMEOUT_HANDSHAKE_MS */
	unsigned idle_timeout_ms;      /* no bytes from the server for this long; 0: default */
	unsigned id;                   /* for log lines */
	const char *log_account;       /* for log lines, may be NULL */
};

struct mk_conn_cbs {
	/* Connected; with TLS, after the handshake verified. Runs again after a
	 * successful mk_conn_starttls(). */
	void (*on_ready)(struct mk_conn *c, void *ud);
	/* Plaintext from the server, valid during the call. */
	void (*on_data)(struct mk_conn *c, const uint8_t *p, size_t n, void *ud);
	/* Exactly once. err is 0 after mk_conn_close(), else why the connection
	 * ended (MK_ECERT, MK_ETLS, MK_ETIMEDOUT, MK_EEOF, MK_ETRUNC, -ECONNREFUSED,
	 * UV_EAI_NONAME, ...), and msg says it in plain words (never NULL). */
	void (*on_close)(struct mk_conn *c, int err, const char *msg, void *ud);
	/* Optional: a write completed and the queue is at or below
	 * MK_CONN_DRAIN_LOW bytes, so a streaming writer may queue more. */
	void (*on_drain)(struct mk_conn *c, void *ud);
};

#define MK_CONN_DRAIN_LOW (256 * 1024)

/* Returns: 0, MK_EINVAL (bad options or fingerprint syntax), or a libuv
 * error from starting the resolver. */
int mk_conn_start(uv_loop_t *loop, const struct mk_conn_opts *opts, const struct mk_conn_cbs *cbs,
		  void *ud, struct mk_conn **conn_r);

/* Queues bytes (copied). Through TLS once it is up.
 * Returns: 0, MK_ESTATE (closing or not connected), MK_ETOOBIG (the write
 * queue is over MK_LIMIT_NET_WRITE_QUEUE). */
int mk_conn_write(struct mk_conn *c, const void *p, size_t n);

/* Upgrades a plain connection to TLS. Call it once the protocol has seen
 * the server's go-ahead and has no unconsumed bytes after it (the protocol
 * core refuses those: cleartext after STARTTLS is an injection). on_ready
 * runs again when the handshake verified.
 * Returns: 0, MK_ESTATE (already TLS or not connected). */
int mk_conn_starttls(struct mk_conn *c);

/* The protocol has ended (e.g. after LOGOUT/QUIT): a following EOF is
 * normal rather than a truncation. */
void mk_conn_expect_eof(struct mk_conn *c);

/* Sends close_notify when TLS is up, flushes, and closes; on_close(0). */
void mk_conn_close(struct mk_conn *c);
/* Aborts with an error of the owner's: on_close(err, msg). */
void mk_conn_abort(struct mk_conn *c, int err, const char *msg);

bool mk_conn_is_tls(const struct mk_conn *c);
/* Bytes queued for the socket and not yet written (for streaming
 * writers: write more only below MK_CONN_DRAIN_LOW, on_drain says when). */
size_t mk_conn_write_queue_size(const struct mk_conn *c);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384", or "plain". */
const char *mk_conn_tls_summary(struct mk_conn *c);
const char *mk_conn_peer_pin(const struct mk_conn *c);
/* The address actually connected to ("127.0.0.1:993"). */
const char *mk_conn_peer_addr(const struct mk_conn *c);

#endif
