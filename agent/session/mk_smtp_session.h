/* SPDX-License-Identifier: MIT */
/*
 * mk_smtp_session.h - one SMTP core (mk_smtp.h) on one connection: feeds
 * the core, drains its events, writes its output, and does the TLS part of
 * submission itself so no caller can get it wrong: greeting, EHLO,
 * STARTTLS (mandatory unless the connection is implicit TLS: a server
 * that does not offer it, or refuses it, is abandoned before anything
 * else is sent; RFC 3207 and OUTLOOK.md §4.1), handshake with verification,
 * EHLO again (capabilities learned in clear are forgotten), then on_ready.
 * No policy: AUTH, the envelope and the data are the owner's.
 *
 * Traces hide AUTH arguments and every SASL response line, and never log
 * message content (only its size).
 *
 * Lifetime: like mk_conn: start fails synchronously or on_close runs
 * exactly once, after which the session is freed. The owner may call
 * mk_smtp_session_close() or _abort() from any callback.
 */
#ifndef MK_SMTP_SESSION_H
#define MK_SMTP_SESSION_H

#include "mk_conn.h"
#include "mk_smtp.h"

struct mk_smtp_session;

struct mk_smtp_session_opts {
	struct mk_conn_opts conn; /* conn.implicit_tls false means STARTTLS, mandatory */
	const char *ehlo_name;    /* our name in EHLO (a FQDN or an address literal) */
	bool trace;               /* log protocol lines (credentials and content hidden) at TRACE level */
};

struct mk_smtp_session_cbs {
	/* EHLO answered over verified TLS: mk_smtp_session_ehlo() is valid. */
	void (*on_ready)(struct mk_smtp_session *s, void *ud);
	/* Every event after on_ready; valid during the call. */
	void (*on_event)(struct mk_smtp_session *s, const struct mk_smtp_event *ev, void *ud);
	/* Optional: in the DATA_BODY state, the output drained: write more. */
	void (*on_writable)(struct mk_smtp_session *s, void *ud);
	/* Exactly once; err 0 after QUIT's reply or mk_smtp_session_close(). */
	void (*on_close)(struct mk_smtp_session *s, int err, const char *msg, void *ud);
};

/* Returns: 0, or the error of mk_conn_start() (no callback then). */
int mk_smtp_session_start(uv_loop_t *loop, const struct mk_smtp_session_opts *opts,
			  const struct mk_smtp_session_cbs *cbs, void *ud, struct mk_smtp_session **s_r);
/* Returns: 0, MK_ESTATE, MK_EINVAL, MK_ENOTSUP, MK_ETOOBIG (see mk_smtp_client_submit). */
int mk_smtp_session_submit(struct mk_smtp_session *s, const struct mk_smtp_cmd *cmd);
/* Returns: 0, MK_ESTATE, MK_ETOOBIG (see mk_smtp_client_auth_respond). */
int mk_smtp_session_auth_respond(struct mk_smtp_session *s, const uint8_t *p, size_t n);
int mk_smtp_session_auth_cancel(struct mk_smtp_session *s);
/* DATA_BODY: queues up to n bytes, *taken_r says how many; 0 taken means
 * wait for on_writable. Returns: 0, MK_ESTATE. */
int mk_smtp_session_data_write(struct mk_smtp_session *s, const uint8_t *p, size_t n, size_t *taken_r);
/* Returns: 0, MK_ESTATE. */
int mk_smtp_session_data_end(struct mk_smtp_session *s);
/* While corked, submitted commands are queued but not written: a
 * pipelined group (MAIL, RCPT..., DATA) then leaves in one write, one TLS
 * record, one TCP segment -- sent one by one, the server's replies run
 * into Nagle's algorithm against our delayed ACKs (40 ms a message,
 * measured against Postfix). Uncorking writes what is queued. */
void mk_smtp_session_cork(struct mk_smtp_session *s, bool cork);
/* True when the bytes written so far have all been handed to the socket
 * (used to place the "dot sent" mark as late as possible). */
bool mk_smtp_session_output_empty(const struct mk_smtp_session *s);
const struct mk_smtp_ehlo *mk_smtp_session_ehlo(const struct mk_smtp_session *s);
bool mk_smtp_session_has_auth(const struct mk_smtp_session *s, const char *mech);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" */
const char *mk_smtp_session_tls_summary(struct mk_smtp_session *s);
/* Closes now (no QUIT); on_close(0). */
void mk_smtp_session_close(struct mk_smtp_session *s);
/* Fails the session with the owner's reason; on_close(err, msg). */
void mk_smtp_session_abort(struct mk_smtp_session *s, int err, const char *msg);

#endif
