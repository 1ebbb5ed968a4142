/* SPDX-License-Identifier: MIT */
/*
 * smtp_client.c - the SMTP submission client core (see mk_smtp.h): reply
 * framing (multi-line replies, enhanced status codes), the in-order
 * command queue with RFC 2920 pipelining, EHLO capabilities, STARTTLS,
 * AUTH as a generic SASL exchange, and DATA streaming (dot.c encodes).
 *
 * Security rules enforced here, not left to callers:
 *  - AUTH is refused until the owner has declared TLS active;
 *  - bytes after the 220 to STARTTLS are a protocol error (an injection),
 *    never processed (curl's check), and EHLO knowledge is forgotten once
 *    TLS is up (RFC 3207 §4.2);
 *  - output that held credentials is wiped once handed to the transport,
 *    and buffers that may hold them are wiped when they grow or shrink;
 *  - nothing is pipelined across STARTTLS or AUTH.
 * Hostile input is bounded: a line over MK_SMTP_LINE_MAX, a reply over
 * MK_SMTP_REPLY_LINES lines or MK_SMTP_REPLY_MAX bytes, a malformed or
 * changing code, or a reply nobody asked for (but a 421) end the session
 * with an error naming what was wrong. No I/O, no clock, no logging.
 */
#include "mk_smtp.h"
#include "mk_err.h"
#include "mk_limits.h"
#include "mk_str.h"
#include "smtp_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* A network read or four plus a partial line: the owner drains after each feed. */
#define IN_MAX (4 * MK_LIMIT_NET_READ + MK_SMTP_LINE_MAX + 2)
#define IN_P(c) ((const uint8_t *)(c)->in.data + (c)->in_off)
#define IN_N(c) ((c)->in.len - (c)->in_off)
/* Data up to MK_SMTP_OUT_MAX, plus room for one SASL line or the final dot. */
#define OUT_CAP (MK_SMTP_OUT_MAX + MK_LIMIT_SASL_LINE + 16)
/* RFC 4954 leaves mechanism names at 20 characters. */
#define MECH_MAX 20

static int fail(struct mk_smtp_client *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct mk_smtp_client *c, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errbuf, sizeof(c->errbuf), fmt, ap);
	va_end(ap);
	c->error = c->errbuf;
	c->err = err;
	c->state = MK_SMTP_STATE_FAILED;
	return err;
}

void mk_smtp_client_init(struct mk_smtp_client *c)
{
	memset(c, 0, sizeof(*c));
	c->state = MK_SMTP_STATE_GREETING;
	mk_buf_init(&c->in, IN_MAX);
	mk_buf_init(&c->out, OUT_CAP);
	mk_buf_init(&c->queued, MK_SMTP_OUT_MAX);
	mk_buf_init(&c->text, MK_SMTP_REPLY_MAX);
	mk_buf_init(&c->chal, MK_SMTP_REPLY_MAX);
	/* The greeting is the reply to an implicit first command: commands
	 * may be queued before it arrives and wait behind it. */
	c->pending[0].kind = MK_SMTP_CMD_GREETING;
	c->pending[0].released = true;
	c->pending[0].waits = true;
	c->pending[0].blocks = true;
	c->n_pending = 1;
}

void mk_smtp_client_cleanup(struct mk_smtp_client *c)
{
	mk_buf_cleanup(&c->in);
	mk_buf_cleanup_wipe(&c->out);
	mk_buf_cleanup_wipe(&c->queued);
	mk_buf_cleanup(&c->text);
	mk_buf_cleanup(&c->chal);
	c->n_pending = 0;
	c->chal_waiting = false;
}

const char *mk_smtp_client_error(const struct mk_smtp_client *c)
{
	return c->error ? c->error : "no error";
}

const char *mk_smtp_cmd_name(enum mk_smtp_cmd_kind kind)
{
	static const char *const names[] = {"NONE", "GREETING", "EHLO",     "HELO", "STARTTLS", "AUTH", "MAIL",
					    "RCPT", "DATA",     "DATA-END", "RSET", "NOOP",     "QUIT"};
	return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

enum mk_smtp_state mk_smtp_client_state(const struct mk_smtp_client *c)
{
	return c->state;
}

unsigned mk_smtp_client_pending(const struct mk_smtp_client *c)
{
	unsigned n = 0;
	for (unsigned i = 0; i < c->n_pending; i++)
		if (c->pending[i].kind != MK_SMTP_CMD_GREETING)
			n++;
	return n;
}

const struct mk_smtp_ehlo *mk_smtp_client_ehlo(const struct mk_smtp_client *c)
{
	return &c->ehlo;
}

bool mk_smtp_client_has_auth(const struct mk_smtp_client *c, const char *mech)
{
	size_t l = strlen(mech);
	for (const char *p = c->ehlo.auth; *p != '\0';) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e != '\0' && *e != ' ')
			e++;
		if (l > 0 && (size_t)(e - p) == l && strncasecmp(p, mech, l) == 0)
			return true;
		p = e;
	}
	return false;
}

/* ---- buffers that may hold credentials ---- */

/* Makes room for `n` more bytes without leaving a copy of the old contents
 * in freed memory (realloc would). Returns 0 or MK_ETOOBIG. */
static int grow_wipe(struct mk_buf *b, size_t n)
{
	if (n > b->max || b->len > b->max - n)
		return MK_ETOOBIG;
	if (b->len + n + 1 <= b->cap)
		return 0;
	struct mk_buf nb;
	mk_buf_init(&nb, b->max);
	size_t want = b->cap ? b->cap : 256;
	while (want < b->len + n + 1)
		want *= 2;
	if (want > b->max + 1)
		want = b->max + 1;
	(void)mk_buf_reserve(&nb, want - 1, NULL);
	(void)mk_buf_append(&nb, b->data, b->len);
	mk_buf_cleanup_wipe(b);
	*b = nb;
	return 0;
}

/* Drops `n` bytes from the front, leaving no stale copy behind the end. */
static void consume_wipe(struct mk_buf *b, size_t n)
{
	if (n == 0)
		return;
	size_t old = b->len;
	explicit_bzero(b->data, n);
	mk_buf_consume(b, n);
	explicit_bzero(b->data + b->len, old - b->len);
}

/* ---- output queue ---- */

/* Moves commands from `queued` to `out` as RFC 2920 allows: without
 * PIPELINING one at a time; with it, every command up to one that blocks
 * (EHLO, HELO, STARTTLS, AUTH, DATA, NOOP, QUIT), and a command that waits
 * (EHLO, HELO, STARTTLS, AUTH) only once everything before it completed. */
static void release(struct mk_smtp_client *c)
{
	if (c->state != MK_SMTP_STATE_READY && c->state != MK_SMTP_STATE_AUTH && c->state != MK_SMTP_STATE_GREETING)
		return;
	bool pipe = c->ehlo.known && c->ehlo.pipelining;
	for (unsigned i = 0; i < c->n_pending; i++) {
		struct mk_smtp_pending *p = &c->pending[i];
		if (p->released) {
			if (!pipe || p->blocks)
				return;
			continue;
		}
		if (i > 0 && (!pipe || p->waits))
			return;
		if (grow_wipe(&c->out, p->len) < 0)
			return; /* output full: again after output_done */
		(void)mk_buf_append(&c->out, c->queued.data, p->len);
		consume_wipe(&c->queued, p->len);
		p->released = true;
		if (!pipe || p->blocks)
			return;
	}
}

static void pop_pending(struct mk_smtp_client *c)
{
	MK_ASSERT(c->n_pending > 0);
	memmove(&c->pending[0], &c->pending[1], (c->n_pending - 1) * sizeof(c->pending[0]));
	c->n_pending--;
	release(c);
}

/* The session is over (221, a 421, a refused greeting): nothing queued
 * will ever be sent. */
static void end_session(struct mk_smtp_client *c)
{
	c->state = MK_SMTP_STATE_QUIT;
	c->n_pending = 0;
	c->chal_waiting = false;
	mk_buf_truncate(&c->queued, 0, true);
}

/* An argument is one token of a command line: no line ends (command
 * injection) and no angle brackets (we add them). */
static bool clean_arg(const char *s, bool allow_empty, bool allow_space)
{
	if (s == NULL || (!allow_empty && s[0] == '\0'))
		return false;
	for (const char *p = s; *p != '\0'; p++)
		if (*p == '\r' || *p == '\n' || *p == '<' || *p == '>' || (!allow_space && (*p == ' ' || *p == '\t')))
			return false;
	return true;
}

static bool valid_mech(const char *m)
{
	size_t n = m != NULL ? strlen(m) : 0;
	if (n == 0 || n > MECH_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = m[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		      ch == '_'))
			return false;
	}
	return true;
}

/* "AUTH MECH[ initial]\r\n" into `queued` (wiped buffer: it may hold a
 * credential). RFC 4954 §4: an empty initial response is sent as "=". */
static int queue_auth(struct mk_smtp_client *c, const struct mk_smtp_cmd *cmd)
{
	size_t ml = strlen(cmd->mech);
	size_t b64 = cmd->initial != NULL ? (cmd->initial_len > 0 ? MK_BASE64_ENCLEN(cmd->initial_len) : 1) : 0;
	if (cmd->initial != NULL && cmd->initial_len > MK_LIMIT_SASL_LINE)
		return MK_ETOOBIG;
	size_t line = 5 + ml + (cmd->initial != NULL ? 1 + b64 : 0) + 2;
	if (line > MK_LIMIT_SASL_LINE)
		return MK_ETOOBIG;
	if (grow_wipe(&c->queued, line) < 0)
		return MK_ETOOBIG;
	uint8_t *dst;
	(void)mk_buf_reserve(&c->queued, line, &dst);
	memcpy(dst, "AUTH ", 5);
	for (size_t i = 0; i < ml; i++) {
		char ch = cmd->mech[i];
		dst[5 + i] = (uint8_t)(ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch); /* Outlook wants upper case */
	}
	size_t o = 5 + ml;
	if (cmd->initial != NULL) {
		dst[o++] = ' ';
		if (cmd->initial_len == 0)
			dst[o] = '=';
		else
			mk_base64_encode(cmd->initial, cmd->initial_len, (char *)dst + o, b64 + 1);
		o += b64;
	}
	dst[o++] = '\r';
	dst[o++] = '\n';
	mk_buf_commit(&c->queued, o);
	return 0;
}

int mk_smtp_client_submit(struct mk_smtp_client *c, const struct mk_smtp_cmd *cmd)
{
	if (c->state == MK_SMTP_STATE_FAILED || c->state == MK_SMTP_STATE_QUIT || c->state == MK_SMTP_STATE_STARTTLS ||
	    c->state == MK_SMTP_STATE_DATA_BODY)
		return MK_ESTATE;
	for (unsigned i = 0; i < c->n_pending; i++)
		if (c->pending[i].kind == MK_SMTP_CMD_QUIT || c->pending[i].kind == MK_SMTP_CMD_STARTTLS)
			return MK_ESTATE; /* nothing may follow these */
	if (c->n_pending >= MK_SMTP_MAX_PENDING)
		return MK_ETOOBIG;
	bool waits = false, blocks = false;
	size_t start = c->queued.len;
	int r;
	switch (cmd->kind) {
	case MK_SMTP_CMD_EHLO:
	case MK_SMTP_CMD_HELO:
		if (!clean_arg(cmd->arg, false, false))
			return MK_EINVAL;
		waits = blocks = true;
		r = mk_buf_printf(&c->queued, "%s %s\r\n", mk_smtp_cmd_name(cmd->kind), cmd->arg);
		break;
	case MK_SMTP_CMD_STARTTLS:
		if (c->tls_active)
			return MK_ESTATE;
		waits = blocks = true;
		r = mk_buf_append_str(&c->queued, "STARTTLS\r\n");
		break;
	case MK_SMTP_CMD_AUTH:
		/* Never send a credential in clear, whatever the server offers. */
		if (!c->tls_active)
			return MK_ESTATE;
		if (!valid_mech(cmd->mech))
			return MK_EINVAL;
		waits = blocks = true;
		r = queue_auth(c, cmd);
		break;
	case MK_SMTP_CMD_MAIL:
		if (!clean_arg(cmd->arg, true, true))
			return MK_EINVAL;
		if (cmd->smtputf8 && !c->ehlo.smtputf8)
			return MK_ENOTSUP;
		r = mk_buf_printf(&c->queued, "MAIL FROM:<%s>", cmd->arg);
		if (r == 0 && cmd->size > 0 && c->ehlo.size_offered)
			r = mk_buf_printf(&c->queued, " SIZE=%llu", (unsigned long long)cmd->size);
		if (r == 0 && cmd->body_8bit && c->ehlo.eightbitmime)
			r = mk_buf_append_str(&c->queued, " BODY=8BITMIME");
		if (r == 0 && cmd->smtputf8)
			r = mk_buf_append_str(&c->queued, " SMTPUTF8");
		if (r == 0)
			r = mk_buf_append_str(&c->queued, "\r\n");
		break;
	case MK_SMTP_CMD_RCPT:
		if (!clean_arg(cmd->arg, false, true))
			return MK_EINVAL;
		r = mk_buf_printf(&c->queued, "RCPT TO:<%s>\r\n", cmd->arg);
		break;
	case MK_SMTP_CMD_DATA:
		blocks = true; /* the message follows the 354, not commands */
		r = mk_buf_append_str(&c->queued, "DATA\r\n");
		break;
	case MK_SMTP_CMD_RSET:
		r = mk_buf_append_str(&c->queued, "RSET\r\n");
		break;
	case MK_SMTP_CMD_NOOP:
		blocks = true; /* RFC 2920 §3.1: last in a group */
		r = mk_buf_append_str(&c->queued, "NOOP\r\n");
		break;
	case MK_SMTP_CMD_QUIT:
		blocks = true;
		r = mk_buf_append_str(&c->queued, "QUIT\r\n");
		break;
	default:
		return MK_EINVAL;
	}
	if (r < 0) {
		mk_buf_truncate(&c->queued, start, true);
		return MK_ETOOBIG;
	}
	if (cmd->kind != MK_SMTP_CMD_AUTH && c->queued.len - start > MK_SMTP_CMD_MAX) {
		mk_buf_truncate(&c->queued, start, true);
		return MK_EINVAL;
	}
	struct mk_smtp_pending *p = &c->pending[c->n_pending++];
	memset(p, 0, sizeof(*p));
	p->kind = cmd->kind;
	p->len = c->queued.len - start;
	p->waits = waits;
	p->blocks = blocks;
	release(c);
	return 0;
}

int mk_smtp_client_auth_respond(struct mk_smtp_client *c, const uint8_t *p, size_t n)
{
	if (!c->chal_waiting || c->state != MK_SMTP_STATE_AUTH)
		return MK_ESTATE;
	if (n > MK_LIMIT_SASL_LINE || MK_BASE64_ENCLEN(n) + 2 > MK_LIMIT_SASL_LINE)
		return MK_ETOOBIG;
	size_t b64 = MK_BASE64_ENCLEN(n);
	uint8_t *dst;
	if (grow_wipe(&c->out, b64 + 2) < 0 || mk_buf_reserve(&c->out, b64 + 2, &dst) < 0)
		return MK_ETOOBIG;
	if (n > 0)
		mk_base64_encode(p, n, (char *)dst, b64 + 1);
	dst[b64] = '\r';
	dst[b64 + 1] = '\n';
	mk_buf_commit(&c->out, b64 + 2);
	c->chal_waiting = false;
	return 0;
}

int mk_smtp_client_auth_cancel(struct mk_smtp_client *c)
{
	if (!c->chal_waiting || c->state != MK_SMTP_STATE_AUTH)
		return MK_ESTATE;
	if (grow_wipe(&c->out, 3) < 0)
		return MK_ETOOBIG;
	(void)mk_buf_append(&c->out, "*\r\n", 3); /* RFC 4954 §4: cancels the exchange */
	c->chal_waiting = false;
	return 0;
}

int mk_smtp_client_data_write(struct mk_smtp_client *c, const uint8_t *p, size_t n, size_t *taken_r)
{
	*taken_r = 0;
	if (c->state != MK_SMTP_STATE_DATA_BODY)
		return MK_ESTATE;
	size_t room = c->out.len < MK_SMTP_OUT_MAX ? MK_SMTP_OUT_MAX - c->out.len : 0;
	size_t want = n > room / 2 ? room : n * 2; /* at most two bytes out per byte in */
	if (n == 0 || want == 0)
		return 0;
	uint8_t *dst;
	if (grow_wipe(&c->out, want) < 0 || mk_buf_reserve(&c->out, want, &dst) < 0)
		return 0;
	size_t w = 0;
	*taken_r = mk__smtp_dot_encode_some(&c->dot_state, p, n, dst, want, &w);
	mk_buf_commit(&c->out, w);
	return 0;
}

int mk_smtp_client_data_end(struct mk_smtp_client *c)
{
	if (c->state != MK_SMTP_STATE_DATA_BODY)
		return MK_ESTATE;
	/* out keeps slack beyond MK_SMTP_OUT_MAX for this */
	if (grow_wipe(&c->out, 5) < 0 || mk_smtp_dot_finish(&c->dot_state, &c->out) < 0)
		return fail(c, MK_ETOOBIG, "internal: no room for the end of data");
	/* The reply to "." comes before those of commands queued behind DATA
	 * (the DATA entry left the queue when its 354 arrived, so there is room). */
	MK_ASSERT(c->n_pending < MK_SMTP_MAX_PENDING);
	memmove(&c->pending[1], &c->pending[0], c->n_pending * sizeof(c->pending[0]));
	c->n_pending++;
	memset(&c->pending[0], 0, sizeof(c->pending[0]));
	c->pending[0].kind = MK_SMTP_CMD_DATA_END;
	c->pending[0].released = true;
	c->pending[0].blocks = true;
	c->state = MK_SMTP_STATE_READY;
	return 0;
}

struct mk_slice mk_smtp_client_output(const struct mk_smtp_client *c)
{
	struct mk_slice s = {c->out.data, c->out.len};
	return s;
}

void mk_smtp_client_output_done(struct mk_smtp_client *c, size_t n)
{
	MK_ASSERT(n <= c->out.len);
	consume_wipe(&c->out, n); /* it may have been a credential */
	release(c);
}

void mk_smtp_client_tls_started(struct mk_smtp_client *c)
{
	c->tls_active = true;
	if (c->state == MK_SMTP_STATE_STARTTLS)
		c->state = MK_SMTP_STATE_READY;
	/* RFC 3207 §4.2: discard any knowledge obtained from the server */
	memset(&c->ehlo, 0, sizeof(c->ehlo));
}

int mk_smtp_client_feed(struct mk_smtp_client *c, const uint8_t *p, size_t n)
{
	if (c->state == MK_SMTP_STATE_FAILED)
		return MK_EPROTO;
	if (c->state == MK_SMTP_STATE_STARTTLS && n > 0)
		return fail(c, MK_EPROTO, "server sent data in clear after the 220 to STARTTLS "
					  "(possible injection attack; refused)");
	if (mk_buf_feed(&c->in, &c->in_off, p, n) < 0)
		return fail(c, MK_ETOOBIG, "server sent more than %d bytes without a line end", IN_MAX);
	return 0;
}

/* ---- replies ---- */

/* Shows up to 40 bytes of a bad line, escaped, for error messages. */
static void shown(const uint8_t *p, size_t n, char *out, size_t outsz)
{
	size_t o = 0;
	for (size_t i = 0; i < n && i < 40 && o + 5 < outsz; i++)
		o += (size_t)snprintf(out + o, outsz - o, p[i] >= 0x20 && p[i] < 0x7f ? "%c" : "\\x%02x", p[i]);
	out[o] = '\0';
}

static bool is_digit(uint8_t ch)
{
	return ch >= '0' && ch <= '9';
}

/* RFC 3463/2034: "class.subject.detail" (d.d{1,3}.d{1,3}) then a space or
 * the end. Returns its length, 0 when the text does not start with one. */
static size_t enh_len(const uint8_t *p, size_t n)
{
	size_t i = 0;
	if (n < 5 || !is_digit(p[0]) || p[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t s = i;
		while (i < n && i - s < 4 && is_digit(p[i]))
			i++;
		if (i == s || i - s > 3)
			return 0;
		if (part == 0) {
			if (i >= n || p[i] != '.')
				return 0;
			i++;
		}
	}
	return i == n || p[i] == ' ' ? i : 0;
}

/* One EHLO keyword line: "PIPELINING", "SIZE 157286400", "AUTH LOGIN
 * XOAUTH2" or the pre-RFC "AUTH=LOGIN PLAIN". */
static void add_mech(struct mk_smtp_ehlo *e, const char *p, size_t n)
{
	char m[MECH_MAX + 1];
	if (n == 0 || n > MECH_MAX)
		return;
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if (ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return;
		m[i] = ch;
	}
	m[n] = '\0';
	/* duplicates (both AUTH forms listed) once */
	for (const char *q = e->auth; (q = strstr(q, m)) != NULL; q += n)
		if ((q == e->auth || q[-1] == ' ') && (q[n] == '\0' || q[n] == ' '))
			return;
	size_t l = strlen(e->auth);
	if (l + (l > 0) + n + 1 > sizeof(e->auth))
		return; /* bounded: further mechanisms dropped */
	if (l > 0)
		e->auth[l++] = ' ';
	memcpy(e->auth + l, m, n + 1);
}

static void parse_keyword(struct mk_smtp_ehlo *e, const char *p, size_t n)
{
	size_t k = 0;
	while (k < n && p[k] != ' ' && p[k] != '=')
		k++;
	const char *a = p + k, *end = p + n;
#define KW(s) (k == sizeof(s) - 1 && strncasecmp(p, s, k) == 0)
	if (KW("PIPELINING"))
		e->pipelining = true;
	else if (KW("STARTTLS"))
		e->starttls = true;
	else if (KW("8BITMIME"))
		e->eightbitmime = true;
	else if (KW("SMTPUTF8"))
		e->smtputf8 = true;
	else if (KW("CHUNKING"))
		e->chunking = true;
	else if (KW("DSN"))
		e->dsn = true;
	else if (KW("ENHANCEDSTATUSCODES"))
		e->enhancedstatuscodes = true;
	else if (KW("BINARYMIME"))
		e->binarymime = true;
	else if (KW("SIZE")) {
		/* RFC 1870: "SIZE" alone or "SIZE n" (0: no fixed limit) */
		e->size_offered = true;
		uint64_t v = 0;
		while (a < end && *a == ' ')
			a++;
		for (; a < end && is_digit((uint8_t)*a); a++) {
			if (v > (UINT64_MAX - 9) / 10) {
				v = 0; /* absurd: treat as no limit announced */
				break;
			}
			v = v * 10 + (uint64_t)(*a - '0');
		}
		e->size = v;
	} else if (KW("AUTH")) {
		while (a < end) {
			while (a < end && (*a == ' ' || *a == '='))
				a++;
			const char *w = a;
			while (a < end && *a != ' ')
				a++;
			add_mech(e, w, (size_t)(a - w));
		}
	}
#undef KW
}

static void parse_ehlo(struct mk_smtp_client *c)
{
	memset(&c->ehlo, 0, sizeof(c->ehlo));
	c->ehlo.known = true;
	const char *t = c->text.data != NULL ? (const char *)c->text.data : "";
	const char *nl = strchr(t, '\n'); /* the first line is the server's name */
	while (nl != NULL) {
		const char *s = nl + 1;
		nl = strchr(s, '\n');
		size_t n = nl != NULL ? (size_t)(nl - s) : strlen(s);
		parse_keyword(&c->ehlo, s, n);
	}
}

/* A 334 challenge: base64 (RFC 4954 §4); the raw text when it is not. */
static void set_challenge(struct mk_smtp_client *c, struct mk_smtp_event *ev)
{
	const char *t = c->text.data != NULL ? (const char *)c->text.data : "";
	size_t n = strlen(t);
	uint8_t *dst;
	mk_buf_reset(&c->chal);
	if (mk_buf_reserve(&c->chal, n, &dst) < 0)
		return; /* cannot happen: both are bounded by MK_SMTP_REPLY_MAX */
	long d = mk_base64_decode(t, n, dst, n);
	if (d < 0) {
		memcpy(dst, t, n);
		d = (long)n;
	}
	mk_buf_commit(&c->chal, (size_t)d);
	ev->challenge.p = c->chal.data;
	ev->challenge.n = (size_t)d;
}

/* The last line of a reply arrived: match it to its command. */
static int finish_reply(struct mk_smtp_client *c, struct mk_smtp_event *ev)
{
	int code = c->r_code;
	ev->kind = MK_SMTP_EV_REPLY;
	ev->reply.code = code;
	memcpy(ev->reply.enh, c->r_enh, sizeof(ev->reply.enh));
	ev->reply.text = c->text.data != NULL ? (const char *)c->text.data : "";
	ev->reply.lines = c->r_lines;
	c->r_lines = 0;
	c->delivered = true;
	if (c->r_nocmd) {
		/* RFC 5321 §3.8: 421 may come at any time; the server closes */
		ev->cmd = MK_SMTP_CMD_NONE;
		end_session(c);
		return 1;
	}
	struct mk_smtp_pending *pd = &c->pending[0];
	ev->cmd = pd->kind;
	if (code == 421) {
		/* "Service not available, closing transmission channel": the
		 * reply to this command, and the end (nothing more is sent) */
		end_session(c);
		return 1;
	}
	switch (pd->kind) {
	case MK_SMTP_CMD_GREETING:
		if (code == 220) {
			c->state = MK_SMTP_STATE_READY;
			pop_pending(c);
		} else {
			end_session(c); /* RFC 5321 §3.1: 554 = no service here */
		}
		break;
	case MK_SMTP_CMD_EHLO:
		if (code / 100 == 2)
			parse_ehlo(c);
		pop_pending(c);
		break;
	case MK_SMTP_CMD_HELO:
		if (code / 100 == 2) {
			memset(&c->ehlo, 0, sizeof(c->ehlo));
			c->ehlo.known = true; /* no extensions at all */
		}
		pop_pending(c);
		break;
	case MK_SMTP_CMD_STARTTLS:
		if (code == 220) {
			c->state = MK_SMTP_STATE_STARTTLS;
			ev->kind = MK_SMTP_EV_STARTTLS_READY;
		}
		pop_pending(c);
		break;
	case MK_SMTP_CMD_AUTH:
		if (code == 334) {
			c->state = MK_SMTP_STATE_AUTH;
			c->chal_waiting = true;
			ev->kind = MK_SMTP_EV_AUTH_CHALLENGE;
			set_challenge(c, ev);
			return 1; /* the AUTH stays pending until 235/4xx/5xx */
		}
		c->chal_waiting = false;
		if (c->state == MK_SMTP_STATE_AUTH)
			c->state = MK_SMTP_STATE_READY;
		pop_pending(c);
		break;
	case MK_SMTP_CMD_DATA:
		if (code == 354) {
			c->state = MK_SMTP_STATE_DATA_BODY;
			c->dot_state = 0;
		}
		pop_pending(c);
		break;
	case MK_SMTP_CMD_QUIT:
		pop_pending(c);
		end_session(c);
		break;
	default:
		pop_pending(c);
		break;
	}
	return 1;
}

/* One reply line (without its line end). Returns 1 (event), 0 (more lines
 * to come) or an error. */
static int handle_line(struct mk_smtp_client *c, const uint8_t *p, size_t n, struct mk_smtp_event *ev)
{
	char sh[200];
	if (n < 3 || p[0] < '2' || p[0] > '5' || !is_digit(p[1]) || !is_digit(p[2]) || (n > 3 && p[3] != ' ' && p[3] != '-')) {
		shown(p, n, sh, sizeof(sh));
		return fail(c, MK_EPROTO, "malformed reply line from the server: %s", sh);
	}
	int code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	bool last = n == 3 || p[3] == ' ';
	if (c->r_lines == 0) {
		c->r_nocmd = c->n_pending == 0 || !c->pending[0].released;
		if (c->r_nocmd && code != 421) {
			shown(p, n, sh, sizeof(sh));
			return fail(c, MK_EPROTO, "reply from the server with no command waiting: %s", sh);
		}
		c->r_code = code;
		c->r_enh[0] = '\0';
		mk_buf_reset(&c->text);
	} else if (code != c->r_code) {
		return fail(c, MK_EPROTO, "reply code changed within a multi-line reply (%d, then %d)", c->r_code, code);
	}
	if (++c->r_lines > MK_SMTP_REPLY_LINES)
		return fail(c, MK_ETOOBIG, "server reply longer than %d lines", MK_SMTP_REPLY_LINES);
	const uint8_t *q = p + (n > 3 ? 4 : 3);
	size_t qn = n > 3 ? n - 4 : 0;
	/* RFC 2034 §3: no enhanced codes in the greeting and EHLO/HELO
	 * lists (whose keywords could look like one); a 334 carries base64. */
	enum mk_smtp_cmd_kind kind = c->r_nocmd ? MK_SMTP_CMD_NONE : c->pending[0].kind;
	bool listing = code / 100 == 2 &&
		       (kind == MK_SMTP_CMD_GREETING || kind == MK_SMTP_CMD_EHLO || kind == MK_SMTP_CMD_HELO);
	if (!listing && !(kind == MK_SMTP_CMD_AUTH && code == 334)) {
		size_t el = enh_len(q, qn);
		if (el > 0) {
			if (c->r_lines == 1) {
				memcpy(c->r_enh, q, el);
				c->r_enh[el] = '\0';
			}
			q += el;
			qn -= el;
			while (qn > 0 && *q == ' ') {
				q++;
				qn--;
			}
		}
	}
	size_t at = c->text.len;
	if ((c->r_lines > 1 && mk_buf_append(&c->text, "\n", 1) < 0) || mk_buf_append(&c->text, q, qn) < 0)
		return fail(c, MK_ETOOBIG, "server reply longer than %d bytes", MK_SMTP_REPLY_MAX);
	/* the text is a C string: a NUL from the server must not cut it */
	for (size_t i = at; i < c->text.len; i++)
		if (c->text.data[i] == '\0')
			c->text.data[i] = '?';
	if (!last)
		return 0;
	return finish_reply(c, ev);
}

int mk_smtp_client_next_event(struct mk_smtp_client *c, struct mk_smtp_event *ev_r)
{
	if (c->state == MK_SMTP_STATE_FAILED)
		return c->err < 0 ? c->err : MK_EPROTO;
	if (c->delivered) {
		mk_buf_reset(&c->text);
		c->delivered = false;
	}
	for (;;) {
		memset(ev_r, 0, sizeof(*ev_r));
		const uint8_t *p = IN_P(c);
		size_t avail = IN_N(c);
		size_t look = avail < MK_SMTP_LINE_MAX + 2 ? avail : MK_SMTP_LINE_MAX + 2;
		const uint8_t *lf = look > 0 ? memchr(p, '\n', look) : NULL;
		if (lf == NULL) {
			if (avail >= MK_SMTP_LINE_MAX + 2)
				return fail(c, MK_ETOOBIG, "server reply line longer than %d bytes", MK_SMTP_LINE_MAX);
			return 0;
		}
		size_t fl = (size_t)(lf - p) + 1;
		size_t n = fl - 1;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > MK_SMTP_LINE_MAX)
			return fail(c, MK_ETOOBIG, "server reply line longer than %d bytes", MK_SMTP_LINE_MAX);
		int r = handle_line(c, p, n, ev_r);
		c->in_off += fl;
		if (r < 0)
			return r;
		if (r == 0)
			continue;
		if (c->state == MK_SMTP_STATE_STARTTLS && IN_N(c) > 0)
			return fail(c, MK_EPROTO, "server sent data in clear after the 220 to STARTTLS "
						  "(possible injection attack; refused)");
		return 1;
	}
}

void mk_smtp_reply_format(const struct mk_smtp_reply *r, char *buf, size_t n)
{
	if (n == 0)
		return;
	size_t o = 0;
	int w = snprintf(buf, n, "%d%s%s", r->code, r->enh[0] != '\0' ? " " : "", r->enh);
	o = w < 0 ? 0 : (size_t)w;
	const char *t = r->text != NULL ? r->text : "";
	if (*t != '\0' && o + 1 < n)
		buf[o++] = ' ';
	for (; *t != '\0' && o + 1 < n; t++) {
		if (*t == '\n') {
			if (o + 3 >= n)
				break;
			memcpy(buf + o, " / ", 3);
			o += 3;
		} else {
			buf[o++] = *t;
		}
	}
	if (o >= n)
		o = n - 1;
	buf[o] = '\0';
}
