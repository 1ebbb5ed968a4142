/* SPDX-License-Identifier: MIT */
/*
 * http1.c - the HTTP/1.1 client core (see mk_http1.h): builds one request,
 * then frames the response: status line, headers, and a body delimited by
 * Content-Length, by chunked transfer coding, or by the end of the
 * connection (RFC 9112 §6.3, in that order of preference).
 *
 * It must not: read a socket or the clock, call back, grow a buffer that
 * holds a secret by realloc (the input buffer is allocated once, at its
 * maximum), or guess at ambiguous framing. A response with both
 * Transfer-Encoding and Content-Length, or two different Content-Lengths,
 * is the shape of request smuggling and is refused, as is an obsolete line
 * fold. Limits are in mk_http1.h.
 */
#include "mk_http1.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#ifndef MK_VERSION
#define MK_VERSION "0"
#endif

/* One network read plus a partial header section: the owner drains events
 * after every feed, so unconsumed input never exceeds this. */
#define IN_MAX (MK_LIMIT_NET_READ + MK_HTTP1_HEADERS_MAX)
#define IN_P(c) ((c)->in.data != NULL ? (const uint8_t *)(c)->in.data + (c)->in_off : (const uint8_t *)"")
#define IN_N(c) ((c)->in.len - (c)->in_off)

void mk_http1_client_init(struct mk_http1_client *c)
{
	memset(c, 0, sizeof(*c));
	mk_buf_init(&c->in, IN_MAX);
	mk_buf_init(&c->out, MK_HTTP1_HEADERS_MAX + MK_HTTP1_BODY_MAX);
	mk_buf_init(&c->ev, MK_HTTP1_HEADERS_MAX + 64);
	c->body_max = MK_HTTP1_BODY_MAX;
}

void mk_http1_client_cleanup(struct mk_http1_client *c)
{
	mk_buf_cleanup_wipe(&c->in);
	mk_buf_cleanup_wipe(&c->out);
	mk_buf_cleanup_wipe(&c->ev);
}

static int fail(struct mk_http1_client *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct mk_http1_client *c, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errbuf, sizeof(c->errbuf), fmt, ap);
	va_end(ap);
	c->error = c->errbuf;
	c->state = MK_HTTP1_STATE_FAILED;
	return err;
}

const char *mk_http1_client_error(const struct mk_http1_client *c)
{
	return c->error ? c->error : "no error";
}

bool mk_http1_client_done(const struct mk_http1_client *c)
{
	return c->state == MK_HTTP1_STATE_DONE;
}

/* ---- request ---- */

static bool clean_token(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return false;
	return true;
}

int mk_http1_form_add(struct mk_buf *b, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t mark = b->len;
	const char *parts[2] = {name, value};
	int r = b->len > 0 ? mk_buf_append(b, "&", 1) : 0;
	for (int i = 0; i < 2 && r == 0; i++) {
		if (i == 1)
			r = mk_buf_append(b, "=", 1);
		for (const unsigned char *p = (const unsigned char *)parts[i]; r == 0 && *p; p++) {
			if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			    *p == '-' || *p == '.' || *p == '_' || *p == '~') {
				r = mk_buf_append(b, p, 1);
			} else {
				char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
				r = mk_buf_append(b, e, 3);
			}
		}
	}
	if (r < 0)
		mk_buf_truncate(b, mark, true);
	return r;
}

int mk_http1_client_request(struct mk_http1_client *c, const struct mk_http1_request *req)
{
	if (c->state != MK_HTTP1_STATE_IDLE)
		return MK_ESTATE;
	const char *method = req->method ? req->method : "POST";
	if (!clean_token(method) || !clean_token(req->host) || !clean_token(req->path) || req->path[0] != '/')
		return MK_EINVAL;
	const char *ct = req->content_type ? req->content_type : "application/x-www-form-urlencoded";
	if (strpbrk(ct, "\r\n") != NULL || req->body.n > MK_HTTP1_BODY_MAX)
		return MK_EINVAL;
	/* Sized once, so the body (a secret) is never left behind by a
	 * realloc. */
	size_t need = strlen(method) + strlen(req->host) + strlen(req->path) + strlen(ct) + 256 + req->body.n;
	if (mk_buf_reserve(&c->out, need, NULL) < 0)
		return MK_EINVAL;
	int r = mk_buf_printf(&c->out,
			      "%s %s HTTP/1.1\r\n"
			      "Host: %s\r\n"
			      "User-Agent: mailkeep/%s\r\n"
			      "Accept: application/json\r\n"
			      "Connection: close\r\n",
			      method, req->path, req->host, MK_VERSION);
	if (r == 0 && (req->body.n > 0 || strcmp(method, "POST") == 0))
		r = mk_buf_printf(&c->out, "Content-Type: %s\r\nContent-Length: %zu\r\n", ct, req->body.n);
	if (r == 0)
		r = mk_buf_append(&c->out, "\r\n", 2);
	if (r == 0 && req->body.n > 0)
		r = mk_buf_append(&c->out, req->body.p, req->body.n);
	if (r < 0) {
		mk_buf_truncate(&c->out, 0, true);
		return MK_EINVAL;
	}
	c->state = MK_HTTP1_STATE_STATUS;
	return 0;
}

struct mk_slice mk_http1_client_output(const struct mk_http1_client *c)
{
	return mk_buf_slice(&c->out);
}

void mk_http1_client_output_done(struct mk_http1_client *c, size_t n)
{
	if (n > c->out.len)
		n = c->out.len;
	explicit_bzero(c->out.data, n);
	mk_buf_consume(&c->out, n);
}

/* ---- input ---- */

int mk_http1_client_feed(struct mk_http1_client *c, const uint8_t *p, size_t n)
{
	if (c->state == MK_HTTP1_STATE_FAILED)
		return MK_EPROTO;
	if (n == 0)
		return 0;
	if (c->state == MK_HTTP1_STATE_IDLE)
		return fail(c, MK_EPROTO, "server sent data before the request");
	if (c->state == MK_HTTP1_STATE_DONE)
		return fail(c, MK_EPROTO, "server sent %zu bytes after the end of the response", n);
	if (c->eof)
		return fail(c, MK_EPROTO, "data after the end of the connection");
	if (c->in.data == NULL && mk_buf_reserve(&c->in, IN_MAX, NULL) < 0)
		return fail(c, MK_ETOOBIG, "input buffer");
	if (c->in_off > 0) {
		/* Compact: the consumed bytes may be a secret, and
		 * mk_buf_consume moves the rest down over them; wipe the tail
		 * it leaves behind. */
		size_t old = c->in.len;
		mk_buf_consume(&c->in, c->in_off);
		explicit_bzero(c->in.data + c->in.len, old - c->in.len);
		c->in_off = 0;
	}
	if (n > c->in.max - c->in.len)
		return fail(c, MK_ETOOBIG, "server sent more than %d bytes without a complete header line",
			    MK_HTTP1_HEADERS_MAX);
	(void)mk_buf_append(&c->in, p, n); /* fits: reserved at its maximum */
	return 0;
}

int mk_http1_client_feed_eof(struct mk_http1_client *c)
{
	c->eof = true;
	return 0;
}

/* A line of the header section: returns its length without the line end
 * (CRLF, or a bare LF, which RFC 9112 §2.2 lets a recipient accept) and
 * sets *adv_r to the bytes to consume; 0 when incomplete (-1 returned). */
static long take_line(struct mk_http1_client *c, size_t limit, const char *what, size_t *adv_r, int *err_r)
{
	const uint8_t *p = IN_P(c);
	size_t n = IN_N(c);
	size_t look = n < limit + 2 ? n : limit + 2;
	const uint8_t *nl = memchr(p, '\n', look);
	*err_r = 0;
	if (nl == NULL) {
		if (n > limit + 1)
			*err_r = fail(c, MK_ETOOBIG, "%s is longer than %zu bytes", what, limit);
		return -1;
	}
	size_t len = (size_t)(nl - p);
	*adv_r = len + 1;
	if (len > 0 && p[len - 1] == '\r')
		len--;
	if (len > limit) {
		*err_r = fail(c, MK_ETOOBIG, "%s is longer than %zu bytes", what, limit);
		return -1;
	}
	return (long)len;
}

static const char *ev_str(struct mk_http1_client *c, const uint8_t *p, size_t n)
{
	mk_buf_reset(&c->ev);
	/* ev is sized for the header section; header lines are bounded by it. */
	if (mk_buf_append(&c->ev, p, n) < 0 || c->ev.data == NULL)
		return "";
	return (const char *)c->ev.data;
}

static void shown(const uint8_t *p, size_t n, char *out, size_t outsz)
{
	size_t k = 0;
	for (size_t i = 0; i < n && k + 5 < outsz; i++)
		k += (size_t)snprintf(out + k, outsz - k, (p[i] >= 0x20 && p[i] < 0x7f) ? "%c" : "\\x%02x", p[i]);
	out[k] = '\0';
}

static int parse_status(struct mk_http1_client *c, const uint8_t *p, size_t n, struct mk_http1_event *ev)
{
	char s[64];
	/* "HTTP/1.1 200 OK": version, SP, 3 digits, then SP reason (may be empty). */
	if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ' ||
	    p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
	    (n > 12 && p[12] != ' ')) {
		shown(p, n < 40 ? n : 40, s, sizeof(s));
		return fail(c, MK_EPROTO, "not an HTTP/1.1 status line: \"%s\"", s);
	}
	for (size_t i = 13; i < n; i++)
		if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
			return fail(c, MK_EPROTO, "control character in the status line");
	c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	c->interim = c->status < 200;
	if (c->status == 101)
		return fail(c, MK_EPROTO, "server switched protocols (101), which was not asked for");
	c->state = MK_HTTP1_STATE_HEADERS;
	if (c->interim)
		return 0; /* 100 Continue and friends: skipped */
	ev->kind = MK_HTTP1_EV_STATUS;
	ev->status = c->status;
	ev->text = ev_str(c, n > 13 ? p + 13 : p, n > 13 ? n - 13 : 0);
	return 1;
}

static bool is_tchar(uint8_t ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool ieq(const uint8_t *p, size_t n, const char *s)
{
	return strlen(s) == n && strncasecmp((const char *)p, s, n) == 0;
}

/* Framing headers; returns 0 or an error. */
static int framing_header(struct mk_http1_client *c, const uint8_t *name, size_t nl, const uint8_t *v, size_t vl)
{
	if (ieq(name, nl, "Content-Length")) {
		uint64_t len = 0;
		if (vl == 0)
			return fail(c, MK_EPROTO, "empty Content-Length");
		for (size_t i = 0; i < vl; i++) {
			if (v[i] < '0' || v[i] > '9')
				return fail(c, MK_EPROTO, "bad Content-Length");
			if (len > (UINT64_MAX - 9) / 10)
				return fail(c, MK_ETOOBIG, "Content-Length overflows");
			len = len * 10 + (uint64_t)(v[i] - '0');
		}
		if (c->have_length && len != c->length)
			return fail(c, MK_EPROTO, "two different Content-Length headers");
		c->have_length = true;
		c->length = len;
		return 0;
	}
	if (ieq(name, nl, "Transfer-Encoding")) {
		/* The last coding must be chunked (RFC 9112 §6.3): anything
		 * else cannot be framed by a client that reads one response. */
		size_t e = vl;
		while (e > 0 && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		size_t s = e;
		while (s > 0 && v[s - 1] != ',')
			s--;
		while (s < e && (v[s] == ' ' || v[s] == '\t'))
			s++;
		c->have_te = true;
		if (!ieq(v + s, e - s, "chunked"))
			return fail(c, MK_EPROTO, "unsupported Transfer-Encoding (not ending in chunked)");
		/* Codings before chunked (gzip) were not asked for. */
		if (s != 0)
			return fail(c, MK_EPROTO, "unsupported Transfer-Encoding (a coding before chunked)");
		c->chunked = true;
		return 0;
	}
	return 0;
}

/* One header (or trailer) line; n > 0. */
static int parse_header(struct mk_http1_client *c, const uint8_t *p, size_t n, bool trailer, struct mk_http1_event *ev)
{
	if (p[0] == ' ' || p[0] == '\t')
		return fail(c, MK_EPROTO, "obsolete header line folding");
	if (++c->n_headers > MK_HTTP1_MAX_HEADERS)
		return fail(c, MK_ETOOBIG, "more than %d header lines", MK_HTTP1_MAX_HEADERS);
	const uint8_t *colon = memchr(p, ':', n);
	if (colon == NULL || colon == p)
		return fail(c, MK_EPROTO, "header line without a name and \":\"");
	size_t nl = (size_t)(colon - p);
	for (size_t i = 0; i < nl; i++)
		if (!is_tchar(p[i]))
			return fail(c, MK_EPROTO, "bad character in a header name");
	const uint8_t *v = colon + 1;
	size_t vl = n - nl - 1;
	while (vl > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vl--;
	}
	while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	for (size_t i = 0; i < vl; i++)
		if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
			return fail(c, MK_EPROTO, "control character in a header value");
	if (trailer || c->interim)
		return 0; /* trailers and 1xx headers are read and dropped */
	int r = framing_header(c, p, nl, v, vl);
	if (r < 0)
		return r;
	/* name NUL value NUL, in the event buffer */
	mk_buf_reset(&c->ev);
	if (mk_buf_append(&c->ev, p, nl) < 0 || mk_buf_append(&c->ev, "", 1) < 0 || mk_buf_append(&c->ev, v, vl) < 0)
		return fail(c, MK_ETOOBIG, "header too long");
	ev->kind = MK_HTTP1_EV_HEADER;
	ev->status = c->status;
	ev->name = (const char *)c->ev.data;
	ev->text = (const char *)c->ev.data + nl + 1;
	return 1;
}

/* The empty line ending the headers: picks the body framing. */
static int end_headers(struct mk_http1_client *c, struct mk_http1_event *ev)
{
	if (c->interim) {
		c->interim = false;
		c->state = MK_HTTP1_STATE_STATUS;
		return 0;
	}
	if (c->have_te && c->have_length)
		return fail(c, MK_EPROTO, "both Transfer-Encoding and Content-Length (ambiguous framing; refused)");
	if (c->status == 204 || c->status == 304) {
		c->state = MK_HTTP1_STATE_DONE;
	} else if (c->chunked) {
		c->state = MK_HTTP1_STATE_CHUNK_SIZE;
	} else if (c->have_length) {
		if (c->length > c->body_max)
			return fail(c, MK_ETOOBIG, "response body of %llu bytes is over the limit of %zu",
				    (unsigned long long)c->length, c->body_max);
		c->remaining = c->length;
		c->state = c->length == 0 ? MK_HTTP1_STATE_DONE : MK_HTTP1_STATE_BODY_LENGTH;
	} else {
		c->state = MK_HTTP1_STATE_BODY_CLOSE;
	}
	return 0;
}

static int parse_chunk_size(struct mk_http1_client *c, const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	size_t i = 0;
	for (; i < n; i++) {
		int d;
		if (p[i] >= '0' && p[i] <= '9')
			d = p[i] - '0';
		else if (p[i] >= 'a' && p[i] <= 'f')
			d = p[i] - 'a' + 10;
		else if (p[i] >= 'A' && p[i] <= 'F')
			d = p[i] - 'A' + 10;
		else
			break;
		if (v > (UINT64_MAX >> 4))
			return fail(c, MK_ETOOBIG, "chunk size overflows");
		v = (v << 4) | (uint64_t)d;
	}
	if (i == 0)
		return fail(c, MK_EPROTO, "bad chunk size line");
	/* whitespace, then extensions after ';' (ignored) */
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i < n && p[i] != ';')
		return fail(c, MK_EPROTO, "bad chunk size line");
	for (; i < n; i++)
		if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
			return fail(c, MK_EPROTO, "control character in a chunk extension");
	if (v > c->body_max - c->body_len)
		return fail(c, MK_ETOOBIG, "response body is over the limit of %zu bytes", c->body_max);
	c->remaining = v;
	c->state = v == 0 ? MK_HTTP1_STATE_TRAILERS : MK_HTTP1_STATE_CHUNK_DATA;
	return 0;
}

static int body_event(struct mk_http1_client *c, size_t n, struct mk_http1_event *ev)
{
	ev->kind = MK_HTTP1_EV_BODY;
	ev->status = c->status;
	ev->chunk.p = IN_P(c);
	ev->chunk.n = n;
	c->in_off += n;
	c->body_len += n;
	return 1;
}

int mk_http1_client_next_event(struct mk_http1_client *c, struct mk_http1_event *ev_r)
{
	memset(ev_r, 0, sizeof(*ev_r));
	for (;;) {
		size_t adv = 0;
		int err = 0;
		long len;
		int r;
		switch (c->state) {
		case MK_HTTP1_STATE_IDLE:
			return 0;
		case MK_HTTP1_STATE_FAILED:
			return MK_EPROTO;
		case MK_HTTP1_STATE_DONE:
			/* DONE first, whatever follows, so that the events do
			 * not depend on where the input was split. */
			if (c->done_sent) {
				if (IN_N(c) > 0)
					return fail(c, MK_EPROTO, "server sent %zu bytes after the end of the response",
						    IN_N(c));
				return 0;
			}
			c->done_sent = true;
			ev_r->kind = MK_HTTP1_EV_DONE;
			ev_r->status = c->status;
			return 1;
		case MK_HTTP1_STATE_STATUS:
		case MK_HTTP1_STATE_HEADERS:
		case MK_HTTP1_STATE_TRAILERS:
			len = take_line(c, MK_HTTP1_HEADERS_MAX, "a header line", &adv, &err);
			if (err < 0)
				return err;
			if (len < 0)
				goto need_more;
			c->header_bytes += adv;
			if (c->header_bytes > MK_HTTP1_HEADERS_MAX)
				return fail(c, MK_ETOOBIG, "response headers are longer than %d bytes",
					    MK_HTTP1_HEADERS_MAX);
			{
				const uint8_t *p = IN_P(c);
				c->in_off += adv;
				if (c->state == MK_HTTP1_STATE_STATUS) {
					if (len == 0 && c->status != 0)
						continue; /* tolerate a blank line after a 1xx */
					r = parse_status(c, p, (size_t)len, ev_r);
				} else if (len == 0) {
					if (c->state == MK_HTTP1_STATE_TRAILERS) {
						c->state = MK_HTTP1_STATE_DONE;
						continue;
					}
					r = end_headers(c, ev_r);
				} else {
					r = parse_header(c, p, (size_t)len, c->state == MK_HTTP1_STATE_TRAILERS, ev_r);
				}
			}
			if (r != 0)
				return r;
			continue;
		case MK_HTTP1_STATE_CHUNK_SIZE:
			len = take_line(c, MK_HTTP1_CHUNK_LINE_MAX, "a chunk size line", &adv, &err);
			if (err < 0)
				return err;
			if (len < 0)
				goto need_more;
			r = parse_chunk_size(c, IN_P(c), (size_t)len);
			c->in_off += adv;
			if (r < 0)
				return r;
			continue;
		case MK_HTTP1_STATE_CHUNK_CRLF:
			if (IN_N(c) < 1)
				goto need_more;
			if (IN_P(c)[0] == '\n') {
				c->in_off += 1;
			} else if (IN_P(c)[0] == '\r') {
				if (IN_N(c) < 2)
					goto need_more;
				if (IN_P(c)[1] != '\n')
					return fail(c, MK_EPROTO, "chunk data not followed by CRLF");
				c->in_off += 2;
			} else {
				return fail(c, MK_EPROTO, "chunk data not followed by CRLF");
			}
			c->state = MK_HTTP1_STATE_CHUNK_SIZE;
			continue;
		case MK_HTTP1_STATE_CHUNK_DATA:
		case MK_HTTP1_STATE_BODY_LENGTH: {
			if (IN_N(c) == 0)
				goto need_more;
			size_t n = IN_N(c) < c->remaining ? IN_N(c) : (size_t)c->remaining;
			c->remaining -= n;
			if (c->remaining == 0)
				c->state = c->state == MK_HTTP1_STATE_CHUNK_DATA ? MK_HTTP1_STATE_CHUNK_CRLF
										 : MK_HTTP1_STATE_DONE;
			return body_event(c, n, ev_r);
		}
		case MK_HTTP1_STATE_BODY_CLOSE: {
			if (IN_N(c) == 0) {
				if (c->eof) {
					c->state = MK_HTTP1_STATE_DONE;
					continue;
				}
				return 0;
			}
			size_t n = IN_N(c);
			if (n > c->body_max - c->body_len)
				return fail(c, MK_ETOOBIG, "response body is over the limit of %zu bytes",
					    c->body_max);
			return body_event(c, n, ev_r);
		}
		}
		return fail(c, MK_EPROTO, "bad state");
	need_more:
		if (c->eof)
			return fail(c, MK_EPROTO, "the server closed the connection before the response was complete");
		return 0;
	}
}
