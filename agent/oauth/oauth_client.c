/* SPDX-License-Identifier: MIT */
/*
 * oauth_client.c - the device and refresh flows (see mk_oauth_client.h):
 * one HTTPS POST per step, each on its own connection (the endpoint is hit
 * a few times an hour at most, so keep-alive would buy nothing but state).
 *
 * A `post` owns a connection and an HTTP core. It completes from the
 * connection's on_close, which runs exactly once, after which both are
 * gone; the flows above it therefore never free anything a callback of
 * theirs is still inside. Reply bodies are secrets: the body buffer grows
 * by copy-and-wipe, never by realloc, and is wiped at the end.
 */
#include "mk_oauth_client.h"
#include "mk_alloc.h"
#include "mk_conn.h"
#include "mk_err.h"
#include "mk_http1.h"
#include "mk_log.h"
#include "mk_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_AUTHORITY "https://login.microsoftonline.com"
#define DEVICE_GRANT "urn:ietf:params:oauth:grant-type:device_code"
/* RFC 8628 §3.2: default poll interval 5 s; §3.5: slow_down adds 5 s. */
#define DEFAULT_INTERVAL_S 5
#define SLOW_DOWN_S 5
#define MAX_INTERVAL_S 300
/* Microsoft's default device code lifetime (OUTLOOK.md §1.3). */
#define DEFAULT_DEVICE_EXPIRES_S 900

unsigned mk_oauth_second_ms(void)
{
#ifdef MK_TEST_HOOKS
	const char *s = getenv("MK_TEST_OAUTH_SECOND_MS");
	uint64_t v;
	if (s != NULL && mk_str_to_u64(s, 1, 1000, &v) == 0)
		return (unsigned)v;
#endif
	return 1000;
}

int mk_oauth_url_parse(const char *url, struct mk_oauth_url *u, char *msg, size_t msgsz)
{
	memset(u, 0, sizeof(*u));
	if (url == NULL || !mk_str_has_prefix(url, "https://")) {
		snprintf(msg, msgsz, "the OAuth authority must be an https:// URL");
		return MK_EINVAL;
	}
	const char *h = url + 8;
	const char *end = h + strcspn(h, "/");
	if (strpbrk(url, "?#@ \t\r\n") != NULL) {
		snprintf(msg, msgsz, "the OAuth authority may not contain a query, fragment, user or blanks");
		return MK_EINVAL;
	}
	const char *hs = h, *he, *portp = NULL;
	if (*h == '[') {
		hs = h + 1;
		he = memchr(hs, ']', (size_t)(end - hs));
		if (he == NULL) {
			snprintf(msg, msgsz, "unclosed [ in the OAuth authority");
			return MK_EINVAL;
		}
		if (he + 1 < end) {
			if (he[1] != ':') {
				snprintf(msg, msgsz, "bad text after ] in the OAuth authority");
				return MK_EINVAL;
			}
			portp = he + 2;
		}
	} else {
		he = memchr(h, ':', (size_t)(end - h));
		if (he != NULL)
			portp = he + 1;
		else
			he = end;
	}
	size_t hl = (size_t)(he - hs);
	if (hl == 0 || hl >= sizeof(u->host)) {
		snprintf(msg, msgsz, "the OAuth authority has no host name");
		return MK_EINVAL;
	}
	for (size_t i = 0; i < hl; i++) {
		char ch = hs[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			  ch == '.' || ch == '-' || ch == '_' || (*h == '[' && ch == ':');
		if (!ok) {
			snprintf(msg, msgsz, "bad character in the OAuth authority's host name");
			return MK_EINVAL;
		}
	}
	memcpy(u->host, hs, hl);
	u->port = 443;
	if (portp != NULL) {
		char pb[8];
		size_t pl = (size_t)(end - portp);
		uint64_t port;
		if (pl == 0 || pl >= sizeof(pb)) {
			snprintf(msg, msgsz, "bad port in the OAuth authority");
			return MK_EINVAL;
		}
		memcpy(pb, portp, pl);
		pb[pl] = '\0';
		if (mk_str_to_u64(pb, 1, 65535, &port) < 0) {
			snprintf(msg, msgsz, "bad port in the OAuth authority");
			return MK_EINVAL;
		}
		u->port = (uint16_t)port;
	}
	size_t pl = strlen(end);
	while (pl > 0 && end[pl - 1] == '/')
		pl--;
	if (pl >= sizeof(u->path)) {
		snprintf(msg, msgsz, "the OAuth authority's path is too long");
		return MK_EINVAL;
	}
	memcpy(u->path, end, pl);
	if (*h == '[')
		snprintf(u->hostport, sizeof(u->hostport), u->port == 443 ? "[%s]" : "[%s]:%u", u->host,
			 (unsigned)u->port);
	else
		snprintf(u->hostport, sizeof(u->hostport), u->port == 443 ? "%s" : "%s:%u", u->host,
			 (unsigned)u->port);
	return 0;
}

/* ---- one HTTPS POST ---- */

struct post;
typedef void post_done_fn(struct post *p, int err, const char *msg);

struct post {
	struct mk_conn *conn;
	struct mk_http1_client http;
	struct mk_buf body; /* secret */
	int status;
	bool finished; /* the response is complete */
	int err;       /* our own reason to close */
	char msg[400];
	post_done_fn *done;
	void *owner;
	struct mk_log_ctx log;
};

static void post_fail(struct post *p, int err, const char *msg)
{
	if (p->err == 0) {
		p->err = err;
		mk_strlcpy(p->msg, msg, sizeof(p->msg));
	}
	mk_conn_abort(p->conn, err, msg);
}

/* Appends to the secret body without leaving copies behind. */
static int body_append(struct post *p, const uint8_t *d, size_t n)
{
	if (n > p->body.max - p->body.len)
		return MK_ETOOBIG;
	if (p->body.len + n + 1 > p->body.cap) {
		struct mk_buf nb;
		mk_buf_init(&nb, p->body.max);
		size_t want = p->body.cap ? p->body.cap * 2 : 8192;
		while (want < p->body.len + n + 1)
			want *= 2;
		if (want > p->body.max)
			want = p->body.max;
		if (mk_buf_reserve(&nb, want, NULL) < 0)
			return MK_ETOOBIG;
		(void)mk_buf_append(&nb, p->body.data, p->body.len);
		mk_buf_cleanup_wipe(&p->body);
		p->body = nb;
	}
	return mk_buf_append(&p->body, d, n);
}

static void post_drain(struct post *p)
{
	for (;;) {
		struct mk_http1_event ev;
		int r = mk_http1_client_next_event(&p->http, &ev);
		if (r == 0)
			return;
		if (r < 0) {
			char m[300];
			snprintf(m, sizeof(m), "bad HTTP response from the token endpoint: %s",
				 mk_http1_client_error(&p->http));
			post_fail(p, r, m);
			return;
		}
		switch (ev.kind) {
		case MK_HTTP1_EV_STATUS:
			p->status = ev.status;
			break;
		case MK_HTTP1_EV_HEADER:
			break;
		case MK_HTTP1_EV_BODY:
			if (body_append(p, ev.chunk.p, ev.chunk.n) < 0) {
				post_fail(p, MK_ETOOBIG, "the token endpoint's reply is too large");
				return;
			}
			break;
		case MK_HTTP1_EV_DONE:
			p->finished = true;
			mk_conn_expect_eof(p->conn);
			mk_conn_close(p->conn);
			return;
		}
	}
}

static void post_on_ready(struct mk_conn *c, void *ud)
{
	struct post *p = ud;
	struct mk_slice out = mk_http1_client_output(&p->http);
	int r = mk_conn_write(c, out.p, out.n);
	if (r < 0) {
		post_fail(p, r, "cannot send the request");
		return;
	}
	mk_http1_client_output_done(&p->http, out.n);
}

static void post_on_data(struct mk_conn *c, const uint8_t *d, size_t n, void *ud)
{
	struct post *p = ud;
	if (p->finished || p->err != 0)
		return;
	int r = mk_http1_client_feed(&p->http, d, n);
	if (r < 0) {
		char m[300];
		snprintf(m, sizeof(m), "bad HTTP response from the token endpoint: %s", mk_http1_client_error(&p->http));
		post_fail(p, r, m);
		return;
	}
	post_drain(p);
}

static void post_on_close(struct mk_conn *c, int err, const char *msg, void *ud)
{
	struct post *p = ud;
	p->conn = NULL;
	if (!p->finished && p->err == 0 && err == MK_EEOF) {
		/* A clean close (TLS close_notify) ends a body read until
		 * close; anywhere else the core reports the truncation. */
		mk_http1_client_feed_eof(&p->http);
		struct mk_http1_event ev;
		int r;
		while ((r = mk_http1_client_next_event(&p->http, &ev)) == 1) {
			if (ev.kind == MK_HTTP1_EV_BODY && body_append(p, ev.chunk.p, ev.chunk.n) < 0) {
				r = MK_ETOOBIG;
				break;
			}
			if (ev.kind == MK_HTTP1_EV_STATUS)
				p->status = ev.status;
			if (ev.kind == MK_HTTP1_EV_DONE)
				p->finished = true;
		}
		if (r < 0) {
			p->err = r;
			snprintf(p->msg, sizeof(p->msg), "bad HTTP response from the token endpoint: %s",
				 mk_http1_client_error(&p->http));
		}
	}
	int e = 0;
	const char *m = "";
	if (!p->finished) {
		e = p->err != 0 ? p->err : err != 0 ? err : MK_EEOF;
		m = p->err != 0 ? p->msg : msg;
	}
	mk_http1_client_cleanup(&p->http);
	p->done(p, e, m);
	mk_buf_cleanup_wipe(&p->body);
	mk_free(p);
}

/* Starts a POST of `form` to authority-path + `path`. On success the post
 * completes through done(p, err, msg) exactly once; p->body and p->status
 * are valid during that call. */
static int post_start(uv_loop_t *loop, const struct mk_oauth_url *u, const char *path, struct mk_buf *form,
		      const struct mk_oauth_client_opts *o, post_done_fn *done, void *owner, struct post **p_r)
{
	struct post *p = mk_xcalloc(1, sizeof(*p));
	mk_http1_client_init(&p->http);
	mk_buf_init(&p->body, MK_HTTP1_BODY_MAX);
	p->done = done;
	p->owner = owner;
	p->log.account = o->account;
	char full[700];
	snprintf(full, sizeof(full), "%s%s", u->path, path);
	struct mk_http1_request req = {.host = u->hostport, .path = full, .body = mk_buf_slice(form)};
	int r = mk_http1_client_request(&p->http, &req);
	if (r == 0) {
		unsigned t = o->timeout_ms ? o->timeout_ms : 30000;
		struct mk_conn_opts co = {
			.host = u->host,
			.port = u->port,
			.implicit_tls = true,
			.tls_ctx = o->tls_ctx,
			.connect_timeout_ms = t,
			.handshake_timeout_ms = t,
			.idle_timeout_ms = t,
			.log_account = o->account,
		};
		static const struct mk_conn_cbs cbs = {post_on_ready, post_on_data, post_on_close, NULL};
		r = mk_conn_start(loop, &co, &cbs, p, &p->conn);
	}
	if (r < 0) {
		mk_http1_client_cleanup(&p->http);
		mk_buf_cleanup_wipe(&p->body);
		mk_free(p);
		return r;
	}
	mk_log(MK_LOG_DEBUG, MK_LOG_CAT_OAUTH, &p->log, "POST https://%s%s", u->hostport, full);
	*p_r = p;
	return 0;
}

/* Turns a finished POST into (err, msg, reply). reply is filled whenever
 * the body was JSON. */
static int interpret(struct post *p, int err, const char *msg, const char *account, struct mk_token_reply *rep,
		     char *out, size_t outsz)
{
	memset(rep, 0, sizeof(*rep));
	rep->expires_in = rep->interval = -1;
	if (err != 0) {
		snprintf(out, outsz, "%s", msg);
		return err;
	}
	const char *perr = NULL;
	int r = mk_token_parse(p->body.data ? p->body.data : (const uint8_t *)"", p->body.len, rep, &perr);
	if (r < 0) {
		if (p->status >= 500) {
			snprintf(out, outsz, "the token endpoint failed (HTTP %d); try again later", p->status);
			return MK_ESERVER;
		}
		snprintf(out, outsz, "unexpected reply from the token endpoint (HTTP %d): %s", p->status, perr);
		return MK_EPROTO;
	}
	if (rep->error != NULL) {
		mk_token_explain(rep, account, out, outsz);
		return mk_token_error_code(mk_token_classify(rep));
	}
	if (p->status >= 500) {
		snprintf(out, outsz, "the token endpoint failed (HTTP %d); try again later", p->status);
		return MK_ESERVER;
	}
	if (p->status != 200) {
		snprintf(out, outsz, "the token endpoint answered HTTP %d without an error code", p->status);
		return MK_EPROTO;
	}
	out[0] = '\0';
	return 0;
}

static int build_url(const struct mk_oauth_client_opts *o, struct mk_oauth_url *u)
{
	char msg[200];
	if (o->client_id == NULL || o->client_id[0] == '\0' || o->tenant == NULL || o->tenant[0] == '\0' ||
	    strpbrk(o->tenant, "/?#% \t\r\n") != NULL || o->tls_ctx == NULL)
		return MK_EINVAL;
	return mk_oauth_url_parse(o->authority ? o->authority : DEFAULT_AUTHORITY, u, msg, sizeof(msg));
}

/* ---- device flow ---- */

enum dev_phase { DEV_CODE = 0, DEV_WAIT, DEV_POLL, DEV_DONE };

struct mk_oauth_device {
	uv_loop_t *loop;
	enum dev_phase phase;
	struct mk_oauth_url url;
	char *tenant, *client_id, *scopes, *account;
	struct mk_tls_ctx *tls_ctx;
	unsigned timeout_ms;
	struct mk_oauth_device_cbs cbs;
	void *ud;
	char *device_code; /* secret */
	unsigned interval_s;
	uint64_t deadline_ms; /* uv_now() */
	uv_timer_t timer;
	struct post *post;
	bool canceled;
	struct mk_log_ctx log;
};

static void dev_opts(const struct mk_oauth_device *d, struct mk_oauth_client_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->tenant = d->tenant;
	o->client_id = d->client_id;
	o->scopes = d->scopes;
	o->account = d->account;
	o->tls_ctx = d->tls_ctx;
	o->timeout_ms = d->timeout_ms;
}

static void dev_on_timer_closed(uv_handle_t *h)
{
	struct mk_oauth_device *d = h->data;
	if (d->device_code != NULL) {
		explicit_bzero(d->device_code, strlen(d->device_code));
		mk_free(d->device_code);
	}
	mk_free(d->tenant);
	mk_free(d->client_id);
	mk_free(d->scopes);
	mk_free(d->account);
	mk_free(d);
}

static void dev_finish(struct mk_oauth_device *d, int err, const char *msg, struct mk_token_reply *tok)
{
	MK_ASSERT(d->phase != DEV_DONE);
	d->phase = DEV_DONE;
	uv_timer_stop(&d->timer);
	d->cbs.on_done(err, msg, tok, d->ud);
	uv_close((uv_handle_t *)&d->timer, dev_on_timer_closed);
}

static void dev_post_done(struct post *p, int err, const char *msg);

static void dev_send(struct mk_oauth_device *d, bool code)
{
	struct mk_buf form;
	mk_buf_init(&form, 64 * 1024);
	struct mk_oauth_client_opts o;
	dev_opts(d, &o);
	char path[300];
	int r = mk_http1_form_add(&form, "client_id", d->client_id);
	if (code) {
		snprintf(path, sizeof(path), "/%s/oauth2/v2.0/devicecode", d->tenant);
		if (r == 0)
			r = mk_http1_form_add(&form, "scope", d->scopes);
	} else {
		snprintf(path, sizeof(path), "/%s/oauth2/v2.0/token", d->tenant);
		if (r == 0)
			r = mk_http1_form_add(&form, "grant_type", DEVICE_GRANT);
		if (r == 0)
			r = mk_http1_form_add(&form, "device_code", d->device_code);
	}
	if (r == 0)
		r = post_start(d->loop, &d->url, path, &form, &o, dev_post_done, d, &d->post);
	mk_buf_cleanup_wipe(&form);
	d->phase = code ? DEV_CODE : DEV_POLL;
	if (r < 0) {
		char m[200];
		snprintf(m, sizeof(m), "cannot reach the token endpoint: %s", mk_strerror(r));
		dev_finish(d, r, m, NULL);
	}
}

static void dev_on_timer(uv_timer_t *t)
{
	struct mk_oauth_device *d = t->data;
	if (d->phase != DEV_WAIT)
		return;
	if (d->canceled) {
		dev_finish(d, MK_ECANCELED, "canceled", NULL);
		return;
	}
	if (uv_now(d->loop) >= d->deadline_ms) {
		char m[200];
		snprintf(m, sizeof(m), "the code expired before the sign-in was approved — run `mailkeep login %s` again",
			 d->account);
		dev_finish(d, MK_EAUTH, m, NULL);
		return;
	}
	dev_send(d, false);
}

static void dev_wait(struct mk_oauth_device *d)
{
	d->phase = DEV_WAIT;
	uint64_t ms = (uint64_t)d->interval_s * mk_oauth_second_ms();
	uint64_t now = uv_now(d->loop);
	/* Poll once more right at the deadline rather than after it. */
	if (now + ms > d->deadline_ms)
		ms = d->deadline_ms > now ? d->deadline_ms - now : 0;
	uv_timer_start(&d->timer, dev_on_timer, ms, 0);
}

static void dev_post_done(struct post *p, int err, const char *msg)
{
	struct mk_oauth_device *d = p->owner;
	d->post = NULL;
	struct mk_token_reply rep;
	char m[600];
	if (d->canceled) {
		dev_finish(d, MK_ECANCELED, "canceled", NULL);
		return;
	}
	int r = interpret(p, err, msg, d->account, &rep, m, sizeof(m));
	bool parsed = err == 0 && (rep.error != NULL || rep.access_token != NULL || rep.device_code != NULL);
	if (d->phase == DEV_CODE) {
		if (r == 0 && (rep.device_code == NULL || rep.user_code == NULL || rep.verification_uri == NULL)) {
			snprintf(m, sizeof(m), "the devicecode reply lacks device_code, user_code or verification_uri");
			r = MK_EPROTO;
		}
		if (r < 0) {
			dev_finish(d, r, m, parsed ? &rep : NULL);
			mk_token_reply_cleanup(&rep);
			return;
		}
		d->device_code = rep.device_code;
		rep.device_code = NULL;
		d->interval_s = rep.interval > 0 && rep.interval <= MAX_INTERVAL_S ? (unsigned)rep.interval
										    : DEFAULT_INTERVAL_S;
		int64_t exp = rep.expires_in > 0 && rep.expires_in < 86400 ? rep.expires_in : DEFAULT_DEVICE_EXPIRES_S;
		d->deadline_ms = uv_now(d->loop) + (uint64_t)exp * mk_oauth_second_ms();
		mk_log(MK_LOG_INFO, MK_LOG_CAT_OAUTH, &d->log, "device code issued; polling every %u s for %lld s",
		       d->interval_s, (long long)exp);
		d->cbs.on_code(&rep, d->ud);
		mk_token_reply_cleanup(&rep);
		if (d->canceled) {
			dev_finish(d, MK_ECANCELED, "canceled", NULL);
			return;
		}
		dev_wait(d);
		return;
	}
	/* a poll */
	enum mk_token_error_kind kind = parsed ? mk_token_classify(&rep) : MK_TOKEN_ERR_NONE;
	if (r != 0 && (kind == MK_TOKEN_ERR_PENDING || kind == MK_TOKEN_ERR_SLOW_DOWN)) {
		if (kind == MK_TOKEN_ERR_SLOW_DOWN && d->interval_s + SLOW_DOWN_S <= MAX_INTERVAL_S)
			d->interval_s += SLOW_DOWN_S;
		mk_token_reply_cleanup(&rep);
		if (d->cbs.on_wait != NULL)
			d->cbs.on_wait(kind, d->interval_s, d->ud);
		if (d->canceled) {
			dev_finish(d, MK_ECANCELED, "canceled", NULL);
			return;
		}
		dev_wait(d);
		return;
	}
	if (r == 0 && rep.access_token == NULL) {
		snprintf(m, sizeof(m), "the token reply lacks an access_token");
		r = MK_EPROTO;
	}
	dev_finish(d, r, m, parsed ? &rep : NULL);
	mk_token_reply_cleanup(&rep);
}

int mk_oauth_device_start(uv_loop_t *loop, const struct mk_oauth_client_opts *opts,
			  const struct mk_oauth_device_cbs *cbs, void *ud, struct mk_oauth_device **d_r)
{
	struct mk_oauth_url u;
	int r = build_url(opts, &u);
	if (r < 0 || opts->scopes == NULL || cbs->on_code == NULL || cbs->on_done == NULL)
		return MK_EINVAL;
	struct mk_oauth_device *d = mk_xcalloc(1, sizeof(*d));
	d->loop = loop;
	d->url = u;
	d->tenant = mk_xstrdup(opts->tenant);
	d->client_id = mk_xstrdup(opts->client_id);
	d->scopes = mk_xstrdup(opts->scopes);
	d->account = mk_xstrdup(opts->account ? opts->account : "NAME");
	d->tls_ctx = opts->tls_ctx;
	d->timeout_ms = opts->timeout_ms;
	d->cbs = *cbs;
	d->ud = ud;
	d->log.account = d->account;
	uv_timer_init(loop, &d->timer);
	d->timer.data = d;
	struct mk_buf form;
	mk_buf_init(&form, 64 * 1024);
	char path[300];
	snprintf(path, sizeof(path), "/%s/oauth2/v2.0/devicecode", d->tenant);
	struct mk_oauth_client_opts o;
	dev_opts(d, &o);
	r = mk_http1_form_add(&form, "client_id", d->client_id);
	if (r == 0)
		r = mk_http1_form_add(&form, "scope", d->scopes);
	if (r == 0)
		r = post_start(loop, &d->url, path, &form, &o, dev_post_done, d, &d->post);
	mk_buf_cleanup_wipe(&form);
	if (r < 0) {
		/* No callback: close the timer and free from its callback. */
		d->phase = DEV_DONE;
		uv_close((uv_handle_t *)&d->timer, dev_on_timer_closed);
		return r;
	}
	d->phase = DEV_CODE;
	*d_r = d;
	return 0;
}

void mk_oauth_device_cancel(struct mk_oauth_device *d)
{
	if (d == NULL || d->phase == DEV_DONE || d->canceled)
		return;
	d->canceled = true;
	if (d->post != NULL) {
		post_fail(d->post, MK_ECANCELED, "canceled");
		return;
	}
	/* Waiting between polls: finish from the loop, not from inside the
	 * caller. */
	uv_timer_stop(&d->timer);
	d->phase = DEV_WAIT;
	d->deadline_ms = 0;
	uv_timer_start(&d->timer, dev_on_timer, 0, 0);
}

/* ---- refresh ---- */

struct mk_oauth_refresh {
	struct post *post;
	mk_oauth_refresh_cb *cb;
	void *ud;
	char *account;
	bool canceled;
};

static void refresh_post_done(struct post *p, int err, const char *msg)
{
	struct mk_oauth_refresh *rf = p->owner;
	struct mk_token_reply rep;
	char m[600];
	if (rf->canceled) {
		rf->cb(MK_ECANCELED, "canceled", NULL, rf->ud);
	} else {
		int r = interpret(p, err, msg, rf->account, &rep, m, sizeof(m));
		bool parsed = err == 0 && (rep.error != NULL || rep.access_token != NULL);
		if (r == 0 && rep.access_token == NULL) {
			snprintf(m, sizeof(m), "the token reply lacks an access_token");
			r = MK_EPROTO;
		}
		rf->cb(r, m, parsed ? &rep : NULL, rf->ud);
		mk_token_reply_cleanup(&rep);
	}
	mk_free(rf->account);
	mk_free(rf);
}

int mk_oauth_refresh_start(uv_loop_t *loop, const struct mk_oauth_client_opts *opts, const char *refresh_token,
			   mk_oauth_refresh_cb *cb, void *ud, struct mk_oauth_refresh **r_r)
{
	struct mk_oauth_url u;
	int r = build_url(opts, &u);
	if (r < 0 || refresh_token == NULL || refresh_token[0] == '\0' || cb == NULL)
		return MK_EINVAL;
	struct mk_buf form;
	mk_buf_init(&form, 64 * 1024);
	r = mk_http1_form_add(&form, "client_id", opts->client_id);
	if (r == 0)
		r = mk_http1_form_add(&form, "grant_type", "refresh_token");
	if (r == 0)
		r = mk_http1_form_add(&form, "refresh_token", refresh_token);
	if (r == 0 && opts->scopes != NULL)
		r = mk_http1_form_add(&form, "scope", opts->scopes);
	struct mk_oauth_refresh *rf = mk_xcalloc(1, sizeof(*rf));
	rf->cb = cb;
	rf->ud = ud;
	rf->account = mk_xstrdup(opts->account ? opts->account : "NAME");
	char path[300];
	snprintf(path, sizeof(path), "/%s/oauth2/v2.0/token", opts->tenant);
	if (r == 0)
		r = post_start(loop, &u, path, &form, opts, refresh_post_done, rf, &rf->post);
	mk_buf_cleanup_wipe(&form);
	if (r < 0) {
		mk_free(rf->account);
		mk_free(rf);
		return r == MK_ETOOBIG ? MK_EINVAL : r;
	}
	*r_r = rf;
	return 0;
}

void mk_oauth_refresh_cancel(struct mk_oauth_refresh *rf)
{
	if (rf == NULL || rf->canceled)
		return;
	rf->canceled = true;
	post_fail(rf->post, MK_ECANCELED, "canceled");
}
