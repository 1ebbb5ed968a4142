/* SPDX-License-Identifier: MIT */
/*
 * conn.c - struct mk_conn: libuv TCP plus the TLS engine of tls.c.
 *
 * libuv rules kept here (DESIGN.md §7): handles are embedded in the conn
 * with `data` pointing back at it; memory is freed only once every close
 * callback (which may run in any order) and the resolver callback have
 * run; a call that fails synchronously never calls back. One timer follows
 * the current phase's deadline (connect, handshake, or read inactivity).
 *
 * The TLS pump runs after every read and write: feed ciphertext, step the
 * handshake or read out all plaintext, then drain the engine's output to
 * uv_write. A memory BIO never says WANT_WRITE, so back-pressure is the
 * stream's write-queue size.
 */
#include "mk_conn.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"
#include "mk_log.h"
#include "mk_str.h"
#include "mk_tls.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum mk_conn_state {
	MK_CONN_RESOLVING = 0,
	MK_CONN_CONNECTING,
	MK_CONN_HANDSHAKE,
	MK_CONN_OPEN,
	MK_CONN_CLOSING,
};

struct mk_conn {
	uv_loop_t *loop;
	enum mk_conn_state state;
	struct mk_conn_cbs cbs;
	void *ud;
	struct mk_log_ctx log;

	char *host;
	uint16_t port;
	bool implicit_tls;
	struct mk_tls_ctx *tls_ctx;
	char *fingerprint;
	unsigned connect_timeout_ms, handshake_timeout_ms, idle_timeout_ms;

	uv_getaddrinfo_t gai;
	bool gai_pending;
	struct addrinfo *ai_list, *ai_cur;
	int last_connect_err;

	uv_tcp_t tcp;
	uv_connect_t connect_req;
	uv_timer_t timer;
	int handles_open; /* handles initialised and not yet closed back */
	bool tcp_open;
	bool reading;

	struct mk_tls *tls;
	bool expect_eof;
	bool graceful; /* closing after owner's mk_conn_close() */

	int close_err;
	char close_msg[800];
	bool close_reported;

	char peer_addr[64];
	char tls_summary[96];
	uint8_t rbuf[MK_LIMIT_NET_READ];
	uint8_t pbuf[MK_LIMIT_NET_READ];
};

struct conn_write {
	uv_write_t req;
	struct mk_conn *conn;
	uv_buf_t buf;
	/* data follows */
};

static void conn_finish(struct mk_conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void try_next_addr(struct mk_conn *c);
static void on_tcp_retry_closed(uv_handle_t *h);
static void tls_pump(struct mk_conn *c);

static void maybe_free(struct mk_conn *c)
{
	if (c->state != MK_CONN_CLOSING || c->handles_open > 0 || c->gai_pending)
		return;
	if (!c->close_reported) {
		c->close_reported = true;
		if (c->cbs.on_close != NULL)
			c->cbs.on_close(c, c->close_err, c->close_msg, c->ud);
	}
	if (c->ai_list != NULL)
		uv_freeaddrinfo(c->ai_list);
	mk_tls_free(&c->tls);
	mk_free(c->host);
	mk_free(c->fingerprint);
	mk_free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct mk_conn *c = h->data;
	c->handles_open--;
	if (h == (uv_handle_t *)&c->tcp)
		c->tcp_open = false;
	maybe_free(c);
}

static void close_handles(struct mk_conn *c)
{
	if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&c->timer))
		uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	if (c->gai_pending)
		uv_cancel((uv_req_t *)&c->gai);
}

static void conn_finish(struct mk_conn *c, int err, const char *fmt, ...)
{
	if (c->state == MK_CONN_CLOSING)
		return;
	c->state = MK_CONN_CLOSING;
	c->close_err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->close_msg, sizeof(c->close_msg), fmt, ap);
	va_end(ap);
	if (err != 0)
		mk_log(MK_LOG_DEBUG, MK_LOG_CAT_NET, &c->log, "closing: %s", c->close_msg);
	uv_timer_stop(&c->timer);
	close_handles(c);
	maybe_free(c);
}

static void arm_timer(struct mk_conn *c, unsigned ms);

static void on_timer(uv_timer_t *t)
{
	struct mk_conn *c = t->data;
	switch (c->state) {
	case MK_CONN_RESOLVING:
	case MK_CONN_CONNECTING:
		conn_finish(c, MK_ETIMEDOUT, "timed out after %u s connecting to %s:%u",
			    (c->connect_timeout_ms + 999) / 1000, c->host, c->port);
		break;
	case MK_CONN_HANDSHAKE:
		conn_finish(c, MK_ETIMEDOUT, "timed out after %u s in TLS handshake with %s:%u",
			    (c->handshake_timeout_ms + 999) / 1000, c->host, c->port);
		break;
	case MK_CONN_OPEN:
		conn_finish(c, MK_ETIMEDOUT, "timed out: no data from %s:%u for %u s", c->host, c->port,
			    (c->idle_timeout_ms + 999) / 1000);
		break;
	case MK_CONN_CLOSING:
		break;
	}
}

static void arm_timer(struct mk_conn *c, unsigned ms)
{
	uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_write_done(uv_write_t *req, int status)
{
	struct conn_write *w = (struct conn_write *)req;
	struct mk_conn *c = w->conn;
	mk_free(w);
	if (status < 0 && status != UV_ECANCELED) {
		conn_finish(c, status, "write to %s:%u failed: %s", c->host, c->port, uv_strerror(status));
		return;
	}
	if (status < 0 || c->state != MK_CONN_OPEN)
		return;
	/* Bytes leaving count as progress: a long upload (SMTP DATA) gets no
	 * reply until its end, and must not look like a dead server. */
	arm_timer(c, c->idle_timeout_ms);
	if (c->cbs.on_drain != NULL &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <= MK_CONN_DRAIN_LOW)
		c->cbs.on_drain(c, c->ud);
}

/* Queues raw bytes on the socket (ciphertext or plain). */
static int raw_write(struct mk_conn *c, const uint8_t *p, size_t n)
{
	if (n == 0)
		return 0;
	struct conn_write *w = mk_xmalloc(sizeof(*w) + n);
	memcpy(w + 1, p, n);
	w->conn = c;
	w->buf = uv_buf_init((char *)(w + 1), (unsigned)n);
	int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_write_done);
	if (r < 0) {
		mk_free(w);
		return r;
	}
	return 0;
}

static int tls_flush(struct mk_conn *c)
{
	if (c->tls == NULL || !mk_tls_has_output(c->tls))
		return 0;
	struct mk_buf out;
	mk_buf_init(&out, SIZE_MAX / 2);
	int r = mk_tls_take_output(c->tls, &out);
	if (r == 0)
		r = raw_write(c, out.data, out.len);
	mk_buf_cleanup(&out);
	return r;
}

static void became_ready(struct mk_conn *c)
{
	c->state = MK_CONN_OPEN;
	arm_timer(c, c->idle_timeout_ms);
	if (c->tls != NULL) {
		snprintf(c->tls_summary, sizeof(c->tls_summary), "%s %s", mk_tls_version(c->tls),
			 mk_tls_cipher(c->tls));
		mk_log(MK_LOG_DEBUG, MK_LOG_CAT_TLS, &c->log, "%s verified: %s, key %s", c->host,
		       c->tls_summary, mk_tls_peer_pin(c->tls));
	}
	if (c->cbs.on_ready != NULL)
		c->cbs.on_ready(c, c->ud);
}

static void tls_pump(struct mk_conn *c)
{
	if (c->state == MK_CONN_HANDSHAKE) {
		int r = mk_tls_handshake(c->tls);
		if (tls_flush(c) < 0 && r == 0)
			r = MK_ETLS;
		if (r == MK_EAGAIN_MORE)
			return;
		if (r < 0) {
			conn_finish(c, r, "%s", mk_tls_error(c->tls));
			return;
		}
		became_ready(c);
	}
	while (c->state == MK_CONN_OPEN) {
		size_t n;
		int r = mk_tls_read(c->tls, c->pbuf, sizeof(c->pbuf), &n);
		if (r == MK_EAGAIN_MORE)
			break;
		if (r == MK_EEOF) {
			/* close_notify: a clean end from the server's side */
			if (c->expect_eof)
				conn_finish(c, 0, "closed");
			else
				conn_finish(c, MK_EEOF, "%s:%u closed the connection", c->host, c->port);
			return;
		}
		if (r < 0) {
			conn_finish(c, r, "%s", mk_tls_error(c->tls));
			return;
		}
		if (c->cbs.on_data != NULL)
			c->cbs.on_data(c, c->pbuf, n, c->ud);
	}
	if (c->state != MK_CONN_CLOSING && tls_flush(c) < 0)
		conn_finish(c, MK_ETLS, "cannot write to %s:%u", c->host, c->port);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct mk_conn *c = h->data;
	*buf = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct mk_conn *c = s->data;
	if (c->state == MK_CONN_CLOSING || nread == 0)
		return;
	if (nread < 0) {
		if (nread != UV_EOF) {
			conn_finish(c, (int)nread, "reading from %s:%u: %s", c->host, c->port,
				    uv_strerror((int)nread));
		} else if (c->expect_eof) {
			conn_finish(c, 0, "closed");
		} else if (c->tls != NULL) {
			conn_finish(c, MK_ETRUNC,
				    "%s:%u closed the connection without TLS close_notify (truncated)",
				    c->host, c->port);
		} else {
			conn_finish(c, MK_EEOF, "%s:%u closed the connection", c->host, c->port);
		}
		return;
	}
	if (c->state == MK_CONN_OPEN)
		arm_timer(c, c->idle_timeout_ms);
	if (c->tls != NULL) {
		mk_tls_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread);
		tls_pump(c);
	} else if (c->state == MK_CONN_OPEN && c->cbs.on_data != NULL) {
		c->cbs.on_data(c, (const uint8_t *)buf->base, (size_t)nread, c->ud);
	}
}

static void start_tls(struct mk_conn *c)
{
	int r = mk_tls_new(c->tls_ctx, c->host, c->fingerprint, &c->tls);
	if (r < 0) {
		conn_finish(c, r, "bad tls_fingerprint");
		return;
	}
	c->state = MK_CONN_HANDSHAKE;
	arm_timer(c, c->handshake_timeout_ms);
	tls_pump(c);
}

static void on_connected(uv_connect_t *req, int status)
{
	struct mk_conn *c = req->data;
	if (c->state == MK_CONN_CLOSING)
		return;
	if (status < 0) {
		c->last_connect_err = status;
		c->ai_cur = c->ai_cur->ai_next;
		/* close this socket, then try the next address */
		uv_close((uv_handle_t *)&c->tcp, on_tcp_retry_closed);
		return;
	}
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char ip[48] = "?";
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET)
			uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
		else
			uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
	}
	snprintf(c->peer_addr, sizeof(c->peer_addr), ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip,
		 c->port);
	mk_log(MK_LOG_DEBUG, MK_LOG_CAT_NET, &c->log, "connected to %s (%s)", c->peer_addr, c->host);
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, 60);
	int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (r < 0) {
		conn_finish(c, r, "cannot read from %s: %s", c->peer_addr, uv_strerror(r));
		return;
	}
	c->reading = true;
	if (c->implicit_tls)
		start_tls(c);
	else
		became_ready(c);
}

/* A failed attempt's socket is closed; move on to the next address (or
 * finish, when the owner closed meanwhile). */
static void on_tcp_retry_closed(uv_handle_t *h)
{
	struct mk_conn *c = h->data;
	c->handles_open--;
	c->tcp_open = false;
	if (c->state == MK_CONN_CLOSING)
		maybe_free(c);
	else
		try_next_addr(c);
}

static void try_next_addr(struct mk_conn *c)
{
	if (c->state == MK_CONN_CLOSING)
		return;
	if (c->ai_cur == NULL) {
		int e = c->last_connect_err ? c->last_connect_err : UV_ECONNREFUSED;
		if (e == UV_ECONNREFUSED)
			conn_finish(c, e, "connection to %s:%u refused", c->host, c->port);
		else
			conn_finish(c, e, "cannot connect to %s:%u: %s", c->host, c->port, uv_strerror(e));
		return;
	}
	int r = uv_tcp_init(c->loop, &c->tcp);
	if (r < 0) {
		conn_finish(c, r, "cannot create socket: %s", uv_strerror(r));
		return;
	}
	c->tcp.data = c;
	c->tcp_open = true;
	c->handles_open++;
	c->connect_req.data = c;
	r = uv_tcp_connect(&c->connect_req, &c->tcp, c->ai_cur->ai_addr, on_connected);
	if (r < 0) {
		c->last_connect_err = r;
		c->ai_cur = c->ai_cur->ai_next;
		uv_close((uv_handle_t *)&c->tcp, on_tcp_retry_closed);
		return;
	}
	arm_timer(c, c->connect_timeout_ms);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct mk_conn *c = req->data;
	c->gai_pending = false;
	if (c->state == MK_CONN_CLOSING) {
		if (res != NULL)
			uv_freeaddrinfo(res);
		maybe_free(c);
		return;
	}
	if (status < 0) {
		conn_finish(c, status, "cannot resolve %s: %s", c->host, mk_strerror(status));
		return;
	}
	c->ai_list = res;
	c->ai_cur = res;
	c->state = MK_CONN_CONNECTING;
	try_next_addr(c);
}

int mk_conn_start(uv_loop_t *loop, const struct mk_conn_opts *opts, const struct mk_conn_cbs *cbs,
		  void *ud, struct mk_conn **conn_r)
{
	if (opts->host == NULL || *opts->host == '\0' || opts->port == 0 || opts->tls_ctx == NULL)
		return MK_EINVAL;
	if (opts->tls_fingerprint != NULL) {
		/* validate the pin now, so a bad one fails synchronously */
		struct mk_tls *probe = NULL;
		if (mk_tls_new(opts->tls_ctx, opts->host, opts->tls_fingerprint, &probe) < 0)
			return MK_EINVAL;
		mk_tls_free(&probe);
	}
	struct mk_conn *c = mk_xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->cbs = *cbs;
	c->ud = ud;
	c->host = mk_xstrdup(opts->host);
	c->port = opts->port;
	c->implicit_tls = opts->implicit_tls;
	c->tls_ctx = opts->tls_ctx;
	c->fingerprint = opts->tls_fingerprint ? mk_xstrdup(opts->tls_fingerprint) : NULL;
	c->connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : MK_TIMEOUT_CONNECT_MS;
	c->handshake_timeout_ms =
		opts->handshake_timeout_ms ? opts->handshake_timeout_ms : MK_TIMEOUT_HANDSHAKE_MS;
	c->idle_timeout_ms = opts->idle_timeout_ms ? opts->idle_timeout_ms : MK_TIMEOUT_IDLE_MS;
	c->log.account = opts->log_account;
	c->log.conn_id = opts->id;
	mk_strlcpy(c->tls_summary, "plain", sizeof(c->tls_summary));

	int r = uv_timer_init(loop, &c->timer);
	if (r < 0) {
		mk_free(c->host);
		mk_free(c->fingerprint);
		mk_free(c);
		return r;
	}
	c->timer.data = c;
	c->handles_open = 1;

	char port[8];
	snprintf(port, sizeof(port), "%u", opts->port);
	struct addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = AI_ADDRCONFIG;
	c->gai.data = c;
	r = uv_getaddrinfo(loop, &c->gai, on_resolved, c->host, port, &hints);
	if (r < 0) {
		/* fail synchronously: close the timer without calling back */
		c->close_reported = true;
		c->state = MK_CONN_CLOSING;
		uv_close((uv_handle_t *)&c->timer, on_handle_closed);
		return r;
	}
	c->gai_pending = true;
	c->state = MK_CONN_RESOLVING;
	arm_timer(c, c->connect_timeout_ms);
	*conn_r = c;
	return 0;
}

size_t mk_conn_write_queue_size(const struct mk_conn *c)
{
	return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

int mk_conn_write(struct mk_conn *c, const void *p, size_t n)
{
	if (c->state != MK_CONN_OPEN)
		return MK_ESTATE;
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > MK_LIMIT_NET_WRITE_QUEUE)
		return MK_ETOOBIG;
	int r;
	if (c->tls != NULL) {
		r = mk_tls_write(c->tls, p, n);
		if (r == 0)
			r = tls_flush(c);
	} else {
		r = raw_write(c, p, n);
	}
	if (r < 0 && r != MK_ETOOBIG) {
		conn_finish(c, r, "write to %s:%u failed", c->host, c->port);
		return MK_ESTATE;
	}
	return r;
}

int mk_conn_starttls(struct mk_conn *c)
{
	if (c->state != MK_CONN_OPEN || c->tls != NULL)
		return MK_ESTATE;
	start_tls(c);
	return 0;
}

void mk_conn_expect_eof(struct mk_conn *c)
{
	c->expect_eof = true;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	mk_free(req);
}

void mk_conn_close(struct mk_conn *c)
{
	if (c->state == MK_CONN_CLOSING)
		return;
	if (c->state == MK_CONN_OPEN) {
		if (c->tls != NULL) {
			mk_tls_shutdown(c->tls);
			(void)tls_flush(c);
		}
		/* let queued writes go out before the FIN; uv_close then cancels
		 * nothing that is still needed */
		uv_shutdown_t *sreq = mk_xmalloc(sizeof(*sreq));
		if (uv_shutdown(sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
			mk_free(sreq);
	}
	conn_finish(c, 0, "closed");
}

void mk_conn_abort(struct mk_conn *c, int err, const char *msg)
{
	conn_finish(c, err, "%s", msg);
}

bool mk_conn_is_tls(const struct mk_conn *c)
{
	return c->tls != NULL && mk_tls_is_open(c->tls);
}

const char *mk_conn_tls_summary(struct mk_conn *c)
{
	return c->tls_summary;
}

const char *mk_conn_peer_pin(const struct mk_conn *c)
{
	return c->tls ? mk_tls_peer_pin(c->tls) : "";
}

const char *mk_conn_peer_addr(const struct mk_conn *c)
{
	return c->peer_addr;
}
