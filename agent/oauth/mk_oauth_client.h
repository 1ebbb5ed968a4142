/* SPDX-License-Identifier: MIT */
/*
 * mk_oauth_client.h - the OAuth 2.0 flows against the Microsoft identity
 * platform (OUTLOOK.md §1.3), over mailkeep's own TLS (mk_conn, BoringSSL,
 * verification always on) and the sans-I/O HTTP/1.1 core (mk_http1.h):
 *  - the device authorization grant (RFC 8628): POST
 *    {authority}/{tenant}/oauth2/v2.0/devicecode, show the code, poll
 *    .../token at the given interval (authorization_pending: again;
 *    slow_down: 5 s slower) until approval, refusal or expiry;
 *  - the refresh grant: POST .../token with grant_type=refresh_token.
 *
 * Every operation completes exactly once through its callback, on the loop
 * thread; a start call that fails returns an error and never calls back.
 * Tokens are never logged; the replies' buffers are wiped.
 *
 * Time: intervals and lifetimes come in seconds. With MK_TEST_HOOKS, the
 * environment variable MK_TEST_OAUTH_SECOND_MS=N makes one of those seconds
 * N ms, so tests can run a 5 s poll interval or a one-hour token quickly
 * (tests/sim/fake_idp.py takes the same factor).
 */
#ifndef MK_OAUTH_CLIENT_H
#define MK_OAUTH_CLIENT_H

#include "mk_token.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct mk_tls_ctx;

/* An https authority URL, split. */
struct mk_oauth_url {
	char host[256]; /* without brackets for IPv6 literals */
	uint16_t port;  /* 443 unless given */
	char path[512]; /* prefix without a trailing '/', may be "" */
	char hostport[270]; /* the Host header: host, or host:port */
};

/* Parses "https://host[:port][/prefix]". Only https: the token endpoint
 * carries secrets both ways. Returns: 0, MK_EINVAL (msg says why). */
int mk_oauth_url_parse(const char *url, struct mk_oauth_url *u, char *msg, size_t msgsz);

/* Milliseconds per "second" of the flows (1000 unless a test hook says
 * otherwise, see above). */
unsigned mk_oauth_second_ms(void);

struct mk_oauth_client_opts {
	const char *authority; /* NULL: https://login.microsoftonline.com */
	const char *tenant;    /* "consumers", "organizations", "common" or an id */
	const char *client_id;
	const char *scopes;  /* space-separated */
	const char *account; /* for messages and log lines */
	struct mk_tls_ctx *tls_ctx; /* required; borrowed until completion */
	unsigned timeout_ms;        /* per HTTPS exchange; 0: 30 s */
};

/* ---- device flow ---- */

struct mk_oauth_device;

struct mk_oauth_device_cbs {
	/* The code to show: dc->user_code, dc->verification_uri, dc->message
	 * (the server's own sentence), dc->expires_in, dc->interval. Valid
	 * during the call. */
	void (*on_code)(const struct mk_token_reply *dc, void *ud);
	/* Optional: a poll said authorization_pending or slow_down; the next
	 * poll is in interval_s seconds. */
	void (*on_wait)(enum mk_token_error_kind kind, unsigned interval_s, void *ud);
	/* Exactly once. err 0: tok holds access_token, refresh_token (NULL
	 * without offline_access), expires_in; the callee may take strings out
	 * of *tok (setting them NULL), the rest is wiped after the call.
	 * Errors: MK_EAUTH (declined, code expired or refused: msg in plain
	 * words), MK_ECONFIG (client id, tenant, scopes, app registration;
	 * AADSTS explained), MK_ESERVER (the endpoint failed: HTTP 5xx,
	 * temporarily_unavailable), MK_EPROTO (not the expected HTTP or JSON),
	 * MK_ECANCELED, or a transport error (MK_ECERT, MK_ETLS,
	 * MK_ETIMEDOUT, -ECONNREFUSED, UV_EAI_*). tok is then NULL or the
	 * error reply. */
	void (*on_done)(int err, const char *msg, struct mk_token_reply *tok, void *ud);
};

/* Starts the flow. Returns: 0, MK_EINVAL (bad authority URL, missing
 * client id or tenant; nothing runs). */
int mk_oauth_device_start(uv_loop_t *loop, const struct mk_oauth_client_opts *opts,
			  const struct mk_oauth_device_cbs *cbs, void *ud, struct mk_oauth_device **d_r);
/* Stops it: on_done(MK_ECANCELED) follows from the loop. No-op once
 * on_done has run (the handle is then gone: do not call it after). */
void mk_oauth_device_cancel(struct mk_oauth_device *d);

/* ---- refresh ---- */

struct mk_oauth_refresh;

/* Exactly once; err and tok as for the device flow's on_done (MK_EAUTH
 * with "run `mailkeep login NAME`" when the refresh token was refused). */
typedef void mk_oauth_refresh_cb(int err, const char *msg, struct mk_token_reply *tok, void *ud);

/* Starts one refresh. `refresh_token` is copied (and wiped after use).
 * Returns: 0, MK_EINVAL. */
int mk_oauth_refresh_start(uv_loop_t *loop, const struct mk_oauth_client_opts *opts, const char *refresh_token,
			   mk_oauth_refresh_cb *cb, void *ud, struct mk_oauth_refresh **r_r);
/* cb(MK_ECANCELED) follows from the loop; only before cb ran. */
void mk_oauth_refresh_cancel(struct mk_oauth_refresh *r);

#endif
