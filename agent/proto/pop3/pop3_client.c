/* SPDX-License-Identifier: MIT */
/*
 * pop3_client.c - the POP3 client core (see mk_pop3.h): response framing,
 * the in-order command queue (with PIPELINING when offered), the
 * multi-line state machine with streamed dot-unstuffing, CAPA, STLS and
 * AUTH as a held SASL exchange.
 *
 * Security rules enforced here, not left to callers:
 *  - credentials (USER, PASS, AUTH) are refused until the owner has
 *    declared TLS active;
 *  - bytes after the +OK to STLS are a protocol error (an injection),
 *    never processed (curl's check);
 *  - capabilities are forgotten after STLS and after login;
 *  - output that held credentials is wiped once handed to the transport,
 *    and a SASL response is only released on the server's "+".
 * Hostile input is bounded: a status or listing line longer than
 * MK_POP3_LINE_MAX, a UIDL outside RFC 1939's shape, or a response nobody
 * asked for end the session with an error naming what was wrong.
 */
#include "mk_pop3.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"
#include "mk_str.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* A network read plus a partial line: the owner drains after each feed. */
#define IN_MAX (4 * MK_LIMIT_NET_READ + MK_POP3_LINE_MAX)
#define IN_P(c) ((const uint8_t *)(c)->in.data + (c)->in_off)
#define IN_N(c) ((c)->in.len - (c)->in_off)

void mk_pop3_client_init(struct mk_pop3_client *c)
{
	memset(c, 0, sizeof(*c));
	c->state = MK_POP3_STATE_GREETING;
	mk_buf_init(&c->in, IN_MAX);
	mk_buf_init(&c->out, MK_POP3_OUT_MAX + MK_LIMIT_SASL_LINE);
	mk_buf_init(&c->queued, MK_POP3_OUT_MAX);
	mk_buf_init(&c->sasl, MK_LIMIT_SASL_LINE);
	mk_buf_init(&c->challenge, MK_POP3_LINE_MAX);
	mk_buf_init(&c->ev_text, MK_POP3_LINE_MAX * 2 + 64);
	mk_caps_init(&c->caps, MK_POP3_MAX_CAPS);
}

void mk_pop3_client_cleanup(struct mk_pop3_client *c)
{
	mk_buf_cleanup(&c->in);
	mk_buf_cleanup_wipe(&c->out);
	mk_buf_cleanup_wipe(&c->queued);
	mk_buf_cleanup_wipe(&c->sasl);
	mk_buf_cleanup(&c->challenge);
	mk_buf_cleanup(&c->ev_text);
	mk_caps_clear(&c->caps);
}

static int fail(struct mk_pop3_client *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct mk_pop3_client *c, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errbuf, sizeof(c->errbuf), fmt, ap);
	va_end(ap);
	c->error = c->errbuf;
	c->state = MK_POP3_STATE_FAILED;
	return err;
}

const char *mk_pop3_client_error(const struct mk_pop3_client *c)
{
	return c->error ? c->error : "no error";
}

const char *mk_pop3_cmd_name(enum mk_pop3_cmd_kind kind)
{
	static const char *const names[] = {"CAPA", "STLS", "USER", "PASS", "AUTH", "STAT", "UIDL",
					    "LIST", "RETR", "TOP",  "DELE", "RSET", "NOOP", "QUIT", "AUTH"};
	return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

bool mk_pop3_uidl_valid(const char *p, size_t n)
{
	if (n < 1 || n > MK_POP3_UIDL_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return false;
	return true;
}

int mk_pop3_client_feed(struct mk_pop3_client *c, const uint8_t *p, size_t n)
{
	if (c->state == MK_POP3_STATE_FAILED)
		return MK_EPROTO;
	if (c->state == MK_POP3_STATE_STLS && n > 0)
		return fail(c, MK_EPROTO, "server sent data in clear after the +OK to STLS "
					  "(possible injection attack; refused)");
	if (mk_buf_feed(&c->in, &c->in_off, p, n) < 0)
		return fail(c, MK_ETOOBIG, "server sent more than %d bytes without a line end", IN_MAX);
	return 0;
}

/* ---- capabilities ---- */

bool mk_pop3_client_has_cap(const struct mk_pop3_client *c, const char *cap)
{
	return mk_caps_has_keyword(&c->caps, cap);
}

bool mk_pop3_client_has_sasl(const struct mk_pop3_client *c, const char *mech)
{
	size_t l = strlen(mech);
	for (unsigned i = 0; i < c->caps.n; i++) {
		if (strncasecmp(c->caps.item[i], "SASL ", 5) != 0)
			continue;
		for (const char *p = c->caps.item[i] + 5; *p != '\0';) {
			while (*p == ' ')
				p++;
			const char *e = p;
			while (*e != '\0' && *e != ' ')
				e++;
			if ((size_t)(e - p) == l && strncasecmp(p, mech, l) == 0)
				return true;
			p = e;
		}
	}
	return false;
}

unsigned mk_pop3_client_pending(const struct mk_pop3_client *c)
{
	return c->n_pending;
}

/* ---- output queue ---- */

/* Moves commands from `queued` to `out` as the pipelining rules allow:
 * without PIPELINING one command at a time; with it, every command up to
 * and including a barrier (STLS, USER, PASS, AUTH), which also waits for
 * everything before it. */
static void release(struct mk_pop3_client *c)
{
	bool pipe = mk_pop3_client_has_cap(c, "PIPELINING");
	for (unsigned i = 0; i < c->n_pending; i++) {
		struct mk_pop3_pending *p = &c->pending[i];
		if (p->released) {
			if (!pipe || p->barrier)
				return;
			continue;
		}
		if (i > 0 && (!pipe || p->barrier))
			return;
		/* out has room: it is sized for the whole queue */
		(void)mk_buf_append(&c->out, c->queued.data, p->len);
		explicit_bzero(c->queued.data, p->len);
		mk_buf_consume(&c->queued, p->len);
		p->released = true;
		if (p->barrier || !pipe)
			return;
	}
}

static void pop_pending(struct mk_pop3_client *c)
{
	MK_ASSERT(c->n_pending > 0);
	memmove(&c->pending[0], &c->pending[1], (c->n_pending - 1) * sizeof(c->pending[0]));
	c->n_pending--;
	c->in_multi = false;
	release(c);
}

static bool has_multi(const struct mk_pop3_pending *p)
{
	switch (p->kind) {
	case MK_POP3_CMD_CAPA:
	case MK_POP3_CMD_RETR:
	case MK_POP3_CMD_TOP:
		return true;
	case MK_POP3_CMD_UIDL:
	case MK_POP3_CMD_LIST:
		return p->msg == 0;
	default:
		return false;
	}
}

static bool clean_arg(const char *s, size_t max)
{
	if (s == NULL || s[0] == '\0' || strlen(s) > max)
		return false;
	for (const char *p = s; *p != '\0'; p++)
		if (*p == '\r' || *p == '\n')
			return false;
	return true;
}

int mk_pop3_client_submit(struct mk_pop3_client *c, const struct mk_pop3_cmd *cmd)
{
	if (c->state == MK_POP3_STATE_FAILED || c->state == MK_POP3_STATE_QUIT || c->state == MK_POP3_STATE_STLS ||
	    c->state == MK_POP3_STATE_GREETING)
		return MK_ESTATE;
	if (c->n_pending >= MK_POP3_MAX_PENDING)
		return MK_ETOOBIG;
	for (unsigned i = 0; i < c->n_pending; i++)
		if (c->pending[i].kind == MK_POP3_CMD_QUIT || c->pending[i].kind == MK_POP3_CMD_STLS)
			return MK_ESTATE; /* nothing may follow these */
	bool auth_state = c->state == MK_POP3_STATE_AUTH;
	bool barrier = false;
	size_t start = c->queued.len;
	int r = 0;
	switch (cmd->kind) {
	case MK_POP3_CMD_USER:
	case MK_POP3_CMD_PASS:
	case MK_POP3_CMD_AUTH_PLAIN:
	case MK_POP3_CMD_AUTH:
		/* Never send credentials in clear, whatever the server allows. */
		if (!c->tls_active || !auth_state)
			return MK_ESTATE;
		barrier = true;
		break;
	case MK_POP3_CMD_STLS:
		if (c->tls_active || !auth_state)
			return MK_ESTATE;
		barrier = true;
		break;
	case MK_POP3_CMD_STAT:
	case MK_POP3_CMD_UIDL:
	case MK_POP3_CMD_LIST:
	case MK_POP3_CMD_RETR:
	case MK_POP3_CMD_TOP:
	case MK_POP3_CMD_DELE:
	case MK_POP3_CMD_RSET:
		if (c->state != MK_POP3_STATE_TRANSACTION)
			return MK_ESTATE;
		break;
	case MK_POP3_CMD_CAPA:
	case MK_POP3_CMD_NOOP:
	case MK_POP3_CMD_QUIT:
		break;
	default:
		return MK_EINVAL;
	}
	switch (cmd->kind) {
	case MK_POP3_CMD_CAPA:
	case MK_POP3_CMD_STLS:
	case MK_POP3_CMD_STAT:
	case MK_POP3_CMD_RSET:
	case MK_POP3_CMD_NOOP:
	case MK_POP3_CMD_QUIT:
		r = mk_buf_printf(&c->queued, "%s\r\n", mk_pop3_cmd_name(cmd->kind));
		break;
	case MK_POP3_CMD_USER:
	case MK_POP3_CMD_PASS:
		if (!clean_arg(cmd->a, MK_POP3_CMD_MAX - 7))
			return MK_EINVAL;
		r = mk_buf_printf(&c->queued, "%s %s\r\n", mk_pop3_cmd_name(cmd->kind), cmd->a);
		break;
	case MK_POP3_CMD_UIDL:
	case MK_POP3_CMD_LIST:
		r = cmd->msg == 0 ? mk_buf_printf(&c->queued, "%s\r\n", mk_pop3_cmd_name(cmd->kind))
				  : mk_buf_printf(&c->queued, "%s %u\r\n", mk_pop3_cmd_name(cmd->kind), cmd->msg);
		break;
	case MK_POP3_CMD_RETR:
	case MK_POP3_CMD_DELE:
		if (cmd->msg == 0)
			return MK_EINVAL;
		r = mk_buf_printf(&c->queued, "%s %u\r\n", mk_pop3_cmd_name(cmd->kind), cmd->msg);
		break;
	case MK_POP3_CMD_TOP:
		if (cmd->msg == 0)
			return MK_EINVAL;
		r = mk_buf_printf(&c->queued, "TOP %u %u\r\n", cmd->msg, cmd->lines);
		break;
	case MK_POP3_CMD_AUTH_PLAIN: {
		/* RFC 5034 + RFC 4616: "AUTH PLAIN", then the response after "+".
		 * Two steps, as Outlook requires for XOAUTH2 (OUTLOOK.md §1.2):
		 * an XOAUTH2 mechanism only needs another response builder. */
		if (c->sasl.len > 0 || cmd->a == NULL || cmd->b == NULL)
			return c->sasl.len > 0 ? MK_ESTATE : MK_EINVAL;
		size_t ul = strlen(cmd->a), pl = strlen(cmd->b);
		if (ul + pl + 2 > MK_LIMIT_SASL_LINE / 2)
			return MK_ETOOBIG;
		struct mk_buf raw;
		mk_buf_init(&raw, MK_LIMIT_SASL_LINE);
		(void)mk_buf_append(&raw, "", 1);
		(void)mk_buf_append(&raw, cmd->a, ul);
		(void)mk_buf_append(&raw, "", 1);
		(void)mk_buf_append(&raw, cmd->b, pl);
		size_t b64len = MK_BASE64_ENCLEN(raw.len);
		uint8_t *dst;
		r = mk_buf_reserve(&c->sasl, b64len + 3, &dst);
		if (r == 0) {
			mk_base64_encode(raw.data, raw.len, (char *)dst, b64len + 1);
			memcpy(dst + b64len, "\r\n", 2);
			mk_buf_commit(&c->sasl, b64len + 2);
		}
		mk_buf_cleanup_wipe(&raw);
		c->sasl_sent = false;
		if (r == 0)
			r = mk_buf_append_str(&c->queued, "AUTH PLAIN\r\n");
		memcpy(c->sasl_fail_answer, "*\r\n", 4);
		mk_buf_reset(&c->challenge);
		break;
	}
	case MK_POP3_CMD_AUTH: {
		if (c->sasl.len > 0)
			return MK_ESTATE;
		/* the mechanism is an atom (RFC 4422 §3.1 names) */
		size_t ml = cmd->a != NULL ? strlen(cmd->a) : 0;
		bool ok = ml >= 1 && ml <= 20 && cmd->ir.p != NULL;
		for (size_t i = 0; ok && i < ml; i++)
			ok = (cmd->a[i] >= 'A' && cmd->a[i] <= 'Z') || (cmd->a[i] >= 'a' && cmd->a[i] <= 'z') ||
			     (cmd->a[i] >= '0' && cmd->a[i] <= '9') || cmd->a[i] == '-' || cmd->a[i] == '_';
		if (!ok)
			return MK_EINVAL;
		size_t b64len = MK_BASE64_ENCLEN(cmd->ir.n);
		if (b64len + 3 > MK_LIMIT_SASL_LINE)
			return MK_ETOOBIG;
		uint8_t *dst;
		/* sized once before the secret goes in: no realloc leaves a copy */
		r = mk_buf_reserve(&c->sasl, b64len + 3, &dst);
		if (r == 0) {
			if (cmd->ir.n == 0)
				dst[0] = '\0';
			else
				mk_base64_encode(cmd->ir.p, cmd->ir.n, (char *)dst, b64len + 1);
			memcpy(dst + b64len, "\r\n", 2);
			mk_buf_commit(&c->sasl, b64len + 2);
			r = mk_buf_printf(&c->queued, "AUTH %s\r\n", cmd->a);
		}
		c->sasl_sent = false;
		/* what a failure challenge gets (OUTLOOK.md §1.2, RFC 7628 §3.2.3) */
		if (strcasecmp(cmd->a, "XOAUTH2") == 0)
			memcpy(c->sasl_fail_answer, "\r\n", 3);
		else if (strcasecmp(cmd->a, "OAUTHBEARER") == 0)
			memcpy(c->sasl_fail_answer, "AQ==\r\n", 7);
		else
			memcpy(c->sasl_fail_answer, "*\r\n", 4);
		mk_buf_reset(&c->challenge);
		break;
	}
	}
	if (r < 0) {
		mk_buf_truncate(&c->queued, start, true);
		if (cmd->kind == MK_POP3_CMD_AUTH_PLAIN || cmd->kind == MK_POP3_CMD_AUTH)
			mk_buf_truncate(&c->sasl, 0, true);
		return MK_ETOOBIG;
	}
	struct mk_pop3_pending *p = &c->pending[c->n_pending++];
	memset(p, 0, sizeof(*p));
	p->kind = cmd->kind;
	p->msg = cmd->msg;
	p->len = c->queued.len - start;
	p->barrier = barrier;
	release(c);
	return 0;
}

struct mk_slice mk_pop3_client_output(const struct mk_pop3_client *c)
{
	struct mk_slice s = {c->out.data, c->out.len};
	return s;
}

void mk_pop3_client_output_done(struct mk_pop3_client *c, size_t n)
{
	MK_ASSERT(n <= c->out.len);
	if (n == 0)
		return;
	explicit_bzero(c->out.data, n); /* it may have been a password */
	mk_buf_consume(&c->out, n);
	explicit_bzero(c->out.data + c->out.len, n);
}

void mk_pop3_client_tls_started(struct mk_pop3_client *c)
{
	c->tls_active = true;
	if (c->state == MK_POP3_STATE_STLS)
		c->state = MK_POP3_STATE_AUTH;
	mk_caps_clear(&c->caps);
}

/* ---- input ---- */

static const char *copy_text(struct mk_pop3_client *c, const uint8_t *p, size_t n)
{
	uint8_t *dst;
	/* reserved per event, so never reallocated under earlier strings */
	MK_ASSERT(c->ev_text.len + n + 1 <= c->ev_text.cap);
	if (mk_buf_reserve(&c->ev_text, n + 1, &dst) < 0)
		return "";
	memcpy(dst, p, n);
	dst[n] = '\0';
	mk_buf_commit(&c->ev_text, n + 1);
	return (const char *)dst;
}

/* Shows up to 40 bytes of a bad line, escaped, for error messages. */
static void shown(const uint8_t *p, size_t n, char *out, size_t outsz)
{
	size_t o = 0;
	for (size_t i = 0; i < n && i < 40 && o + 5 < outsz; i++)
		o += (size_t)snprintf(out + o, outsz - o, p[i] >= 0x20 && p[i] < 0x7f ? "%c" : "\\x%02x", p[i]);
	out[o] = '\0';
}

static bool parse_u64(const uint8_t **pp, const uint8_t *e, uint64_t max, uint64_t *v_r)
{
	const uint8_t *p = *pp;
	uint64_t v = 0;
	if (p >= e || *p < '0' || *p > '9')
		return false;
	while (p < e && *p >= '0' && *p <= '9') {
		v = v * 10 + (uint64_t)(*p++ - '0');
		if (v > max)
			return false;
	}
	*pp = p;
	*v_r = v;
	return true;
}

/* "n uidl" or "n size" (a UIDL/LIST listing line or single reply). */
static int parse_item(struct mk_pop3_client *c, enum mk_pop3_cmd_kind kind, const uint8_t *p, size_t n,
		      struct mk_pop3_event *ev)
{
	const uint8_t *e = p + n, *q = p;
	uint64_t msg, v;
	char sh[200];
	if (!parse_u64(&q, e, UINT32_MAX, &msg) || msg == 0 || q >= e || *q != ' ')
		goto bad;
	while (q < e && *q == ' ')
		q++;
	ev->msg = (uint32_t)msg;
	if (kind == MK_POP3_CMD_UIDL) {
		const uint8_t *s = q;
		while (q < e && *q != ' ')
			q++;
		if (!mk_pop3_uidl_valid((const char *)s, (size_t)(q - s))) {
			shown(p, n, sh, sizeof(sh));
			return fail(c, MK_EPROTO, "server sent an invalid UIDL (RFC 1939: 1-70 characters 0x21-0x7E): %s",
				    sh);
		}
		memcpy(c->uidl, s, (size_t)(q - s));
		c->uidl[q - s] = '\0';
		ev->uidl = c->uidl;
		return 0;
	}
	if (!parse_u64(&q, e, UINT64_MAX / 16, &v))
		goto bad;
	ev->size = v;
	return 0;
bad:
	shown(p, n, sh, sizeof(sh));
	return fail(c, MK_EPROTO, "malformed %s line from the server: %s", mk_pop3_cmd_name(kind), sh);
}

/* The text of a multi-line response: hands out what is here, unstuffed,
 * up to (not including) the terminating ".". */
static int body_event(struct mk_pop3_client *c, struct mk_pop3_event *ev)
{
	const uint8_t *p = IN_P(c);
	size_t n = IN_N(c), i = 0;
	if (n == 0)
		return 0;
	while (i < n) {
		if (c->bol && p[i] == '.') {
			if (i > 0)
				break; /* hand out what precedes the dot first */
			if (n < 2)
				return 0;
			if (p[1] == '\n' || (p[1] == '\r' && n >= 3 && p[2] == '\n')) {
				/* ".CRLF": the end (a bare LF is tolerated) */
				ev->kind = MK_POP3_EV_END;
				ev->cmd = c->pending[0].kind;
				c->consume_next = p[1] == '\n' ? 2 : 3;
				pop_pending(c);
				return 1;
			}
			if (p[1] == '\r' && n < 3)
				return 0;
			/* a stuffed dot: drop it */
			c->in_off++;
			p++;
			n--;
			c->bol = false;
			continue;
		}
		const uint8_t *lf = memchr(p + i, '\n', n - i);
		if (lf == NULL) {
			i = n;
			c->bol = false;
			break;
		}
		i = (size_t)(lf - p) + 1;
		c->bol = true;
	}
	if (i == 0)
		return 0;
	ev->kind = MK_POP3_EV_BODY_CHUNK;
	ev->cmd = c->pending[0].kind;
	ev->chunk.p = p;
	ev->chunk.n = i;
	c->consume_next = i;
	return 1;
}

/* "+OK text" / "-ERR text" -> ok, code, text. */
static bool parse_status(struct mk_pop3_client *c, const uint8_t *p, size_t n, struct mk_pop3_event *ev)
{
	size_t l;
	if (n >= 3 && memcmp(p, "+OK", 3) == 0 && (n == 3 || p[3] == ' ')) {
		ev->ok = true;
		l = 3;
	} else if (n >= 4 && strncasecmp((const char *)p, "-ERR", 4) == 0 && (n == 4 || p[4] == ' ')) {
		ev->ok = false;
		l = 4;
	} else {
		return false;
	}
	p += l;
	n -= l;
	while (n > 0 && *p == ' ') {
		p++;
		n--;
	}
	ev->code = NULL;
	if (n > 0 && *p == '[') {
		const uint8_t *close = memchr(p, ']', n);
		if (close != NULL) {
			ev->code = copy_text(c, p + 1, (size_t)(close - p - 1));
			n -= (size_t)(close - p) + 1;
			p = close + 1;
			while (n > 0 && *p == ' ') {
				p++;
				n--;
			}
		}
	}
	ev->text = copy_text(c, p, n);
	return true;
}

static int handle_reply(struct mk_pop3_client *c, const uint8_t *p, size_t n, struct mk_pop3_event *ev)
{
	char sh[200];
	if (c->n_pending == 0 || !c->pending[0].released) {
		shown(p, n, sh, sizeof(sh));
		return fail(c, MK_EPROTO, "unexpected response from the server (no command pending): %s", sh);
	}
	struct mk_pop3_pending *pd = &c->pending[0];
	bool auth = pd->kind == MK_POP3_CMD_AUTH_PLAIN || pd->kind == MK_POP3_CMD_AUTH;
	if (auth && n >= 1 && p[0] == '+' && (n == 1 || p[1] == ' ')) {
		/* SASL continuation: the response once; any further challenge is
		 * a failure (the mechanisms here have one step): answered as the
		 * mechanism requires, or "*" (cancel, RFC 5034 §4). No event. */
		if (!c->sasl_sent) {
			(void)mk_buf_append(&c->out, c->sasl.data, c->sasl.len);
			mk_buf_truncate(&c->sasl, 0, true);
			c->sasl_sent = true;
		} else {
			(void)mk_buf_append_str(&c->out, c->sasl_fail_answer);
			/* keep what the server said (decoded) for the -ERR */
			const char *t = (const char *)p + (n > 1 ? 2 : 1);
			size_t tn = n > 1 ? n - 2 : 0;
			mk_buf_reset(&c->challenge);
			uint8_t *dst;
			if (tn > 0 && mk_buf_reserve(&c->challenge, tn + 1, &dst) == 0) {
				long dl = mk_base64_decode(t, tn, dst, tn + 1);
				if (dl < 0) {
					memcpy(dst, t, tn);
					dl = (long)tn;
				}
				for (long i = 0; i < dl; i++)
					if (dst[i] < 0x20 || dst[i] == 0x7f)
						dst[i] = ' '; /* shown in messages: no control bytes */
				dst[dl] = '\0';
				mk_buf_commit(&c->challenge, (size_t)dl + 1);
			}
		}
		return 0;
	}
	if (!parse_status(c, p, n, ev)) {
		shown(p, n, sh, sizeof(sh));
		return fail(c, MK_EPROTO, "malformed response to %s (expected +OK or -ERR): %s",
			    mk_pop3_cmd_name(pd->kind), sh);
	}
	ev->kind = MK_POP3_EV_REPLY;
	ev->cmd = pd->kind;
	if (ev->ok) {
		const uint8_t *t = (const uint8_t *)ev->text;
		size_t tn = strlen(ev->text);
		int r;
		switch (pd->kind) {
		case MK_POP3_CMD_STAT: {
			const uint8_t *q = t, *e = t + tn;
			uint64_t cnt, sz;
			if (!parse_u64(&q, e, UINT32_MAX, &cnt) || q >= e || *q != ' ' || (q++, !parse_u64(&q, e, UINT64_MAX / 16, &sz)))
				return fail(c, MK_EPROTO, "malformed STAT response");
			ev->msg = (uint32_t)cnt;
			ev->size = sz;
			break;
		}
		case MK_POP3_CMD_UIDL:
		case MK_POP3_CMD_LIST:
			if (pd->msg != 0 && (r = parse_item(c, pd->kind, t, tn, ev)) < 0)
				return r;
			break;
		case MK_POP3_CMD_PASS:
		case MK_POP3_CMD_AUTH_PLAIN:
		case MK_POP3_CMD_AUTH:
			c->state = MK_POP3_STATE_TRANSACTION;
			mk_caps_clear(&c->caps); /* RFC 2449: they may change after login */
			break;
		case MK_POP3_CMD_STLS:
			c->state = MK_POP3_STATE_STLS;
			mk_caps_clear(&c->caps);
			break;
		case MK_POP3_CMD_QUIT:
			c->state = MK_POP3_STATE_QUIT;
			break;
		case MK_POP3_CMD_CAPA:
			mk_caps_clear(&c->caps);
			c->caps.known = true;
			break;
		default:
			break;
		}
	}
	if (auth) {
		mk_buf_truncate(&c->sasl, 0, true); /* refused before "+": drop the secret */
		c->sasl_sent = false;
		if (c->challenge.len > 0)
			ev->challenge = (const char *)c->challenge.data;
	}
	if (ev->ok && has_multi(pd)) {
		c->in_multi = true;
		c->bol = true;
	} else {
		pop_pending(c);
	}
	return 1;
}

int mk_pop3_client_next_event(struct mk_pop3_client *c, struct mk_pop3_event *ev_r)
{
	if (c->state == MK_POP3_STATE_FAILED)
		return MK_EPROTO;
	mk_buf_reset(&c->ev_text);
	if (c->consume_next > 0) {
		c->in_off += c->consume_next;
		c->consume_next = 0;
	}
	for (;;) {
		memset(ev_r, 0, sizeof(*ev_r));
		if (c->in_multi && (c->pending[0].kind == MK_POP3_CMD_RETR || c->pending[0].kind == MK_POP3_CMD_TOP))
			return body_event(c, ev_r);
		const uint8_t *p = IN_P(c);
		size_t avail = IN_N(c);
		size_t look = avail < MK_POP3_LINE_MAX + 1 ? avail : MK_POP3_LINE_MAX + 1;
		const uint8_t *lf = memchr(p, '\n', look);
		if (lf == NULL) {
			if (avail > MK_POP3_LINE_MAX)
				return fail(c, MK_ETOOBIG, "server response line longer than %d bytes", MK_POP3_LINE_MAX);
			return 0;
		}
		size_t fl = (size_t)(lf - p) + 1;
		size_t n = fl - 1;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (mk_buf_reserve(&c->ev_text, n + 64, NULL) < 0)
			return fail(c, MK_ETOOBIG, "server response too long");
		int r;
		if (c->state == MK_POP3_STATE_GREETING) {
			if (!parse_status(c, p, n, ev_r)) {
				char sh[200];
				shown(p, n, sh, sizeof(sh));
				return fail(c, MK_EPROTO, "not a POP3 server (greeting: %s)", sh);
			}
			ev_r->kind = MK_POP3_EV_GREETING;
			c->state = ev_r->ok ? MK_POP3_STATE_AUTH : MK_POP3_STATE_QUIT;
			r = 1;
		} else if (c->in_multi) {
			/* a listing line (CAPA, UIDL, LIST) */
			if (n == 1 && p[0] == '.') {
				ev_r->kind = MK_POP3_EV_END;
				ev_r->cmd = c->pending[0].kind;
				pop_pending(c);
				r = 1;
			} else {
				const uint8_t *q = p;
				size_t qn = n;
				if (qn > 0 && q[0] == '.') {
					q++;
					qn--;
				}
				ev_r->cmd = c->pending[0].kind;
				r = 1;
				switch (c->pending[0].kind) {
				case MK_POP3_CMD_CAPA:
					mk_caps_add(&c->caps, q, qn);
					ev_r->kind = MK_POP3_EV_CAPA;
					ev_r->text = copy_text(c, q, qn);
					break;
				case MK_POP3_CMD_UIDL:
				case MK_POP3_CMD_LIST:
					ev_r->kind = c->pending[0].kind == MK_POP3_CMD_UIDL ? MK_POP3_EV_UIDL : MK_POP3_EV_LIST;
					if (parse_item(c, c->pending[0].kind, q, qn, ev_r) < 0)
						return MK_EPROTO;
					break;
				default:
					return fail(c, MK_EPROTO, "internal: multi-line state for %s",
						    mk_pop3_cmd_name(c->pending[0].kind));
				}
			}
		} else {
			r = handle_reply(c, p, n, ev_r);
			if (r < 0)
				return r;
		}
		c->consume_next = fl;
		if (r == 0) {
			/* consumed without an event (SASL continuation) */
			c->in_off += fl;
			c->consume_next = 0;
			continue;
		}
		if (c->state == MK_POP3_STATE_STLS && IN_N(c) > fl)
			return fail(c, MK_EPROTO, "server sent data in clear after the +OK to STLS "
						  "(possible injection attack; refused)");
		return 1;
	}
}
