/* SPDX-License-Identifier: MIT */
/*
 * mk_imap_session.h - one IMAP core on one connection: feeds the core,
 * drains its events, writes its output, and performs the TLS part of the
 * protocol (STARTTLS when asked) so no caller can get it wrong. No policy.
 *
 * Lifetime: like mk_conn: start fails synchronously or on_close runs
 * exactly once, after which the session is freed. The owner may call
 * mk_imap_session_close() from any callback.
 */
#ifndef MK_IMAP_SESSION_H
#define MK_IMAP_SESSION_H

#include "mk_conn.h"
#include "mk_imap.h"
#include "mk_sasl.h"

struct mk_imap_session;

struct mk_imap_session_opts {
	struct mk_conn_opts conn; /* conn.implicit_tls false means STARTTLS, mandatory */
	bool trace;               /* log protocol lines (credentials hidden) at TRACE level */
};

struct mk_imap_session_cbs {
	/* Greeting received and TLS verified (after STARTTLS if used). */
	void (*on_ready)(struct mk_imap_session *s, void *ud);
	/* Every event after on_ready; valid during the call. */
	void (*on_event)(struct mk_imap_session *s, const struct mk_imap_event *ev, void *ud);
	/* Exactly once; err 0 after a clean LOGOUT or mk_imap_session_close(). */
	void (*on_close)(struct mk_imap_session *s, int err, const char *msg, void *ud);
	/* Optional: during an APPEND's literal, the output drained: write more. */
	void (*on_writable)(struct mk_imap_session *s, void *ud);
};

/* Returns: 0, or the error of mk_conn_start() (no callback then). */
int mk_imap_session_start(uv_loop_t *loop, const struct mk_imap_session_opts *opts,
			  const struct mk_imap_session_cbs *cbs, void *ud, struct mk_imap_session **s_r);
/* Returns: 0, MK_ESTATE, MK_ETOOBIG (see mk_imap_client_submit). */
int mk_imap_session_submit(struct mk_imap_session *s, const struct mk_imap_cmd *cmd, unsigned *tag_r);
/* Logs in with SASL through AUTHENTICATE (SASL-IR when offered): the
 * responses are built by mk_sasl from `user` and the secret (a password,
 * or the access token for XOAUTH2/OAUTHBEARER; copied into wiped memory,
 * the caller wipes its own copy), the server's challenges are answered
 * here -- a failure challenge of XOAUTH2/OAUTHBEARER gets the answer the
 * mechanism requires (an empty line / "AQ==") -- and the owner sees only
 * the TAGGED result (cmd MK_IMAP_CMD_AUTHENTICATE). The response lines are
 * never traced. host/port are OAUTHBEARER's (may be NULL/0).
 * Returns: 0, MK_ESTATE (not now, or TLS is not active), MK_EINVAL (a user
 * or token mk_sasl refuses), MK_ETOOBIG. */
int mk_imap_session_authenticate(struct mk_imap_session *s, enum mk_sasl_mech mech, const char *user,
				 const char *secret, const char *host, unsigned port, unsigned *tag_r);
/* After a refused AUTHENTICATE: what the server's failure challenge said,
 * in plain words ("token refused: status 401, scope ..."), or "". Valid
 * until the next mk_imap_session_authenticate(). */
const char *mk_imap_session_auth_error(const struct mk_imap_session *s);
bool mk_imap_session_has_cap(const struct mk_imap_session *s, const char *cap);
/* False after login until the capabilities were read again. */
bool mk_imap_session_caps_known(const struct mk_imap_session *s);
/* Closes now (no LOGOUT); on_close(0). */
void mk_imap_session_close(struct mk_imap_session *s);
/* Fails the session with the owner's reason; on_close(err, msg). */
void mk_imap_session_abort(struct mk_imap_session *s, int err, const char *msg);
struct mk_conn *mk_imap_session_conn(struct mk_imap_session *s);
/* Ends an IDLE (sends DONE) and flushes. */
void mk_imap_session_idle_done(struct mk_imap_session *s);
uv_loop_t *mk_imap_session_loop(struct mk_imap_session *s);
/* APPEND's message literal, paced by the socket (like SMTP DATA): queues
 * up to n bytes, *taken_r says how many (0: wait for on_writable). The
 * data is traced by its size only. Returns: 0, MK_ESTATE. */
/* True while an APPEND's literal may be written (LITERAL+ at once, else
 * after the server's "+"). */
bool mk_imap_session_append_ready(const struct mk_imap_session *s);
int mk_imap_session_append_write(struct mk_imap_session *s, const uint8_t *p, size_t n, size_t *taken_r);

#endif
