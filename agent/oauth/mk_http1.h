/* SPDX-License-Identifier: MIT */
/*
 * mk_http1.h - a sans-I/O HTTP/1.1 client core, just big enough for the
 * OAuth token endpoint: one POST per connection (`Connection: close`), a
 * response framed by Content-Length, chunked transfer coding (trailers
 * read and dropped) or the end of the connection.
 *
 * Same shape as the protocol cores (mk_pop3.h): bytes go in with
 * mk_http1_client_feed() (and mk_http1_client_feed_eof() when the peer
 * closed), events come out of mk_http1_client_next_event(), the request
 * comes out of mk_http1_client_output(). It never reads a socket or the
 * clock and never calls back; results do not depend on how input is split.
 *
 * Limits: the status line and headers (trailers included) at most
 * MK_HTTP1_HEADERS_MAX bytes and MK_HTTP1_MAX_HEADERS lines; the decoded
 * body at most `body_max` (MK_HTTP1_BODY_MAX by default). Anything over is
 * MK_ETOOBIG; anything malformed, ambiguous (Content-Length together with
 * Transfer-Encoding, differing Content-Lengths) or truncated is MK_EPROTO.
 * Both come with a message from mk_http1_client_error(). An error is final.
 *
 * The request body and the response (token JSON) are secrets: every buffer
 * that held them is wiped when consumed and at cleanup.
 */
#ifndef MK_HTTP1_H
#define MK_HTTP1_H

#include "mk_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MK_HTTP1_HEADERS_MAX (32 * 1024)
#define MK_HTTP1_MAX_HEADERS 100
#define MK_HTTP1_BODY_MAX (1024 * 1024)
/* A chunk-size line ("1a2b;ext=x"). */
#define MK_HTTP1_CHUNK_LINE_MAX 1024

struct mk_http1_request {
	const char *method; /* "POST" (default when NULL) or "GET" */
	const char *host;   /* Host header: "host" or "host:port" */
	const char *path;   /* origin-form, starting with '/' */
	const char *content_type; /* default application/x-www-form-urlencoded */
	struct mk_slice body;     /* may be empty; copied */
};

enum mk_http1_event_kind {
	MK_HTTP1_EV_STATUS = 1, /* status, text (reason phrase); interim 1xx are skipped */
	MK_HTTP1_EV_HEADER,     /* name, text (value, trimmed) */
	MK_HTTP1_EV_BODY,       /* chunk: decoded body bytes (any split) */
	MK_HTTP1_EV_DONE,       /* the response is complete */
};

struct mk_http1_event {
	enum mk_http1_event_kind kind;
	int status;
	const char *name;
	const char *text;
	struct mk_slice chunk;
};

enum mk_http1_state {
	MK_HTTP1_STATE_IDLE = 0, /* no request yet */
	MK_HTTP1_STATE_STATUS,
	MK_HTTP1_STATE_HEADERS,
	MK_HTTP1_STATE_BODY_LENGTH,
	MK_HTTP1_STATE_BODY_CLOSE,
	MK_HTTP1_STATE_CHUNK_SIZE,
	MK_HTTP1_STATE_CHUNK_DATA,
	MK_HTTP1_STATE_CHUNK_CRLF,
	MK_HTTP1_STATE_TRAILERS,
	MK_HTTP1_STATE_DONE,
	MK_HTTP1_STATE_FAILED,
};

struct mk_http1_client {
	enum mk_http1_state state;
	struct mk_buf in; /* unconsumed response bytes (secret) */
	size_t in_off;
	struct mk_buf out; /* the request (secret) */
	struct mk_buf ev;  /* strings of the last event */
	bool eof;
	bool interim;     /* reading the headers of a 1xx response */
	bool done_sent;
	int status;
	size_t header_bytes;
	unsigned n_headers;
	bool have_length, chunked, have_te;
	uint64_t length;    /* Content-Length */
	uint64_t remaining; /* of the body or of the current chunk */
	uint64_t body_len;  /* decoded so far */
	size_t body_max;
	const char *error;
	char errbuf[200];
};

/* Cannot fail. `body_max` starts at MK_HTTP1_BODY_MAX; lower it before
 * feeding if wanted. */
void mk_http1_client_init(struct mk_http1_client *c);
/* Wipes and frees everything; idempotent. */
void mk_http1_client_cleanup(struct mk_http1_client *c);

/* Queues the request. Returns: 0, MK_ESTATE (already sent one), MK_EINVAL
 * (CR, LF or space in host or path, a path not starting with '/'). */
int mk_http1_client_request(struct mk_http1_client *c, const struct mk_http1_request *req);

/* Bytes to send; valid until the next call into the core. */
struct mk_slice mk_http1_client_output(const struct mk_http1_client *c);
/* `n` bytes went out; they are wiped. */
void mk_http1_client_output_done(struct mk_http1_client *c, size_t n);

/* Takes all of `n` bytes. Returns: 0, MK_ETOOBIG (more unconsumed input
 * than MK_HTTP1_HEADERS_MAX + 64 KiB: drain events after every feed),
 * MK_EPROTO (after a failure, before the request, or bytes after the end of
 * the response). */
int mk_http1_client_feed(struct mk_http1_client *c, const uint8_t *p, size_t n);
/* The peer closed the connection (cleanly). Returns 0. A body read "until
 * close" ends here; anywhere else before DONE, next_event reports
 * MK_EPROTO (truncated response). */
int mk_http1_client_feed_eof(struct mk_http1_client *c);

/* Pulls the next event. Returns 1 (event in *ev_r, strings and slices
 * valid until the next call into the core), 0 (need more input), or <0:
 * MK_EPROTO, MK_ETOOBIG (see the top of the file). */
int mk_http1_client_next_event(struct mk_http1_client *c, struct mk_http1_event *ev_r);

bool mk_http1_client_done(const struct mk_http1_client *c);
const char *mk_http1_client_error(const struct mk_http1_client *c);

/* Appends `name=value` to an application/x-www-form-urlencoded body
 * (with '&' when b is not empty). Everything but ALPHA DIGIT "-._~" is
 * percent-encoded (space as %20). Returns: 0, MK_ETOOBIG. */
int mk_http1_form_add(struct mk_buf *b, const char *name, const char *value);

#endif
