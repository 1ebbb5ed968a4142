/* SPDX-License-Identifier: MIT */
/*
 * mk_pop3_session.h - one POP3 core on one connection: feeds the core,
 * drains its events, writes its output, and performs the TLS part of the
 * protocol (CAPA + STLS when the connection is not implicit TLS) so no
 * caller can get it wrong. No policy.
 *
 * Lifetime: like mk_conn: start fails synchronously or on_close runs
 * exactly once, after which the session is freed. The owner may call
 * mk_pop3_session_close() or _abort() from any callback.
 */
#ifndef MK_POP3_SESSION_H
#define MK_POP3_SESSION_H

#include "mk_conn.h"
#include "mk_pop3.h"

struct mk_pop3_session;

struct mk_pop3_session_opts {
	struct mk_conn_opts conn; /* conn.implicit_tls false means STLS, mandatory */
	bool trace;               /* log protocol lines (credentials hidden) at TRACE level */
};

struct mk_pop3_session_cbs {
	/* Greeting received and TLS verified (after STLS if used); the core's
	 * capabilities are unknown then (ask CAPA). */
	void (*on_ready)(struct mk_pop3_session *s, void *ud);
	/* Every event after on_ready; valid during the call. */
	void (*on_event)(struct mk_pop3_session *s, const struct mk_pop3_event *ev, void *ud);
	/* Exactly once; err 0 after QUIT's +OK or mk_pop3_session_close(). */
	void (*on_close)(struct mk_pop3_session *s, int err, const char *msg, void *ud);
};

/* Returns: 0, or the error of mk_conn_start() (no callback then). */
int mk_pop3_session_start(uv_loop_t *loop, const struct mk_pop3_session_opts *opts,
			  const struct mk_pop3_session_cbs *cbs, void *ud, struct mk_pop3_session **s_r);
/* Returns: 0, MK_ESTATE, MK_EINVAL, MK_ETOOBIG (see mk_pop3_client_submit). */
int mk_pop3_session_submit(struct mk_pop3_session *s, const struct mk_pop3_cmd *cmd);
bool mk_pop3_session_has_cap(const struct mk_pop3_session *s, const char *cap);
bool mk_pop3_session_has_sasl(const struct mk_pop3_session *s, const char *mech);
/* True when CAPA was answered (since the last STLS/login). */
bool mk_pop3_session_caps_known(const struct mk_pop3_session *s);
/* Closes now (no QUIT); on_close(0). */
void mk_pop3_session_close(struct mk_pop3_session *s);
/* Fails the session with the owner's reason; on_close(err, msg). */
void mk_pop3_session_abort(struct mk_pop3_session *s, int err, const char *msg);

#endif
