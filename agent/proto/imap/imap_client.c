/* SPDX-License-Identifier: MIT */
/*
 * imap_client.c - the IMAP client core: framing, status responses, tags,
 * capabilities, and the commands needed so far (CAPABILITY, STARTTLS,
 * LOGIN, AUTHENTICATE PLAIN, generic AUTHENTICATE (XOAUTH2...), LIST,
 * NOOP, LOGOUT).
 *
 * Security rules enforced here, not left to callers:
 *  - credentials (LOGIN, AUTHENTICATE) are refused until the owner has
 *    declared TLS active: Dovecot on loopback, or a STARTTLS-stripping
 *    attacker, would otherwise get them in clear;
 *  - bytes that follow the tagged OK to STARTTLS in the same read are a
 *    protocol error (an injection), never processed (curl's check);
 *  - capabilities are forgotten after STARTTLS and after login;
 *  - output that held credentials is wiped once handed to the transport.
 */
#include "mk_imap.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"
#include "mk_str.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define IN_MAX (MK_LIMIT_IMAP_LINE + MK_LIMIT_IMAP_LITERAL_INLINE * 4)
/* unconsumed input */
#define IN_P(c) ((const uint8_t *)(c)->in.data + (c)->in_off)
#define IN_N(c) ((c)->in.len - (c)->in_off)

void mk_imap_client_init(struct mk_imap_client *c)
{
	memset(c, 0, sizeof(*c));
	c->state = MK_IMAP_STATE_GREETING;
	mk_buf_init(&c->in, IN_MAX);
	mk_buf_init(&c->out, 1024 * 1024);
	mk_buf_init(&c->ev_text, MK_LIMIT_IMAP_LINE * 2);
	mk_buf_init(&c->sasl_dec, MK_LIMIT_SASL_LINE);
	mk_imap_args_init(&c->args);
	c->next_tag = 1;
	mk_caps_init(&c->caps, MK_IMAP_MAX_CAPS);
}

void mk_imap_client_cleanup(struct mk_imap_client *c)
{
	mk_buf_cleanup(&c->in);
	mk_buf_cleanup_wipe(&c->out);
	mk_buf_cleanup(&c->ev_text);
	mk_buf_cleanup_wipe(&c->sasl_dec);
	mk_imap_args_cleanup(&c->args);
	mk_caps_clear(&c->caps);
	MK_FREE(&c->list_raw);
	MK_FREE(&c->list_name);
}

static int fail(struct mk_imap_client *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct mk_imap_client *c, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errbuf, sizeof(c->errbuf), fmt, ap);
	va_end(ap);
	c->error = c->errbuf;
	c->state = MK_IMAP_STATE_FAILED;
	return err;
}

const char *mk_imap_client_error(const struct mk_imap_client *c)
{
	return c->error ? c->error : "no error";
}

int mk_imap_client_feed(struct mk_imap_client *c, const uint8_t *p, size_t n)
{
	if (c->state == MK_IMAP_STATE_FAILED)
		return MK_EPROTO;
	if (c->state == MK_IMAP_STATE_STARTTLS && n > 0)
		return fail(c, MK_EPROTO, "server sent data in clear after the STARTTLS go-ahead "
					  "(possible injection attack; refused)");
	if (mk_buf_feed(&c->in, &c->in_off, p, n) < 0)
		return fail(c, MK_ETOOBIG, "server response exceeds the size limit of %d bytes", IN_MAX);
	return 0;
}

/* True when the response at the start of c->in is "* <n> FETCH ". */
static bool is_fetch_response(const uint8_t *p, size_t n)
{
	size_t i = 2;
	if (n < 2 || p[0] != '*' || p[1] != ' ')
		return false;
	while (i < n && p[i] >= '0' && p[i] <= '9')
		i++;
	return i > 2 && n - i >= 7 && strncasecmp((const char *)p + i, " FETCH ", 7) == 0;
}

/* True when the item just before the literal announcement at `brace` is a
 * message body (BODY[...], BINARY[...], RFC822, RFC822.TEXT...): those are
 * streamed, never buffered. */
static bool body_item_before(const uint8_t *p, size_t brace)
{
	size_t e = brace;
	while (e > 0 && p[e - 1] == ' ')
		e--;
	size_t s = e;
	while (s > 0 && p[s - 1] != ' ' && p[s - 1] != '(')
		s--;
	/* the atom may contain "[...]" with spaces: look further back */
	if (e > 0 && p[e - 1] == ']') {
		size_t k = e - 1;
		while (k > 0 && p[k] != '[')
			k--;
		s = k;
		while (s > 0 && p[s - 1] != ' ' && p[s - 1] != '(')
			s--;
	}
	size_t l = e - s;
	const char *t = (const char *)p + s;
	return (l >= 5 && strncasecmp(t, "BODY[", 5) == 0) || (l >= 7 && strncasecmp(t, "BINARY[", 7) == 0) ||
	       (l >= 6 && strncasecmp(t, "RFC822", 6) == 0 && (l == 6 || strncasecmp(t + 6, ".TEXT", 5) == 0 ||
							       strncasecmp(t + 6, ".HEADER", 7) == 0));
}

#define NO_STREAM UINT64_MAX

/* Finds the end of one response segment at the start of c->in: a line
 * plus inline literals, ending at the final CRLF -- or, in a FETCH
 * response, at the announcement of a body literal, which is streamed
 * (*stream_r = its size; the segment ends after its CRLF).
 * Returns the segment length, 0 when incomplete, or <0.
 * *line_end_r is the length of the text without the final CRLF / without
 * the "{n}\r\n" announcement. */
static long frame(struct mk_imap_client *c, bool fetch_ctx, size_t *line_end_r, uint64_t *stream_r)
{
	const uint8_t *p = IN_P(c);
	size_t n = IN_N(c), i = 0, line_bytes = 0;
	*stream_r = NO_STREAM;
	if (!fetch_ctx)
		fetch_ctx = is_fetch_response(p, n);
	while (i < n) {
		const uint8_t *lf = memchr(p + i, '\n', n - i);
		size_t seg_end = lf ? (size_t)(lf - p) : n;
		line_bytes += seg_end - i;
		if (line_bytes > MK_LIMIT_IMAP_LINE)
			return fail(c, MK_ETOOBIG, "server response line longer than %d bytes", MK_LIMIT_IMAP_LINE);
		if (lf == NULL)
			return 0;
		size_t end = seg_end; /* at '\n' */
		size_t text_end = end > 0 && p[end - 1] == '\r' ? end - 1 : end;
		/* literal announcement "{123}" or "{123+}" at the end? */
		size_t j = text_end;
		if (j > 0 && p[j - 1] == '}') {
			size_t k = j - 1;
			if (k > 0 && p[k - 1] == '+')
				k--;
			size_t d = k;
			while (d > 0 && p[d - 1] >= '0' && p[d - 1] <= '9')
				d--;
			if (d < k && d > 0 && p[d - 1] == '{') {
				bool stream = fetch_ctx && body_item_before(p, d - 1);
				uint64_t limit = stream ? MK_LIMIT_IMAP_LITERAL_STREAM : MK_LIMIT_IMAP_LITERAL_INLINE;
				uint64_t len = 0;
				for (size_t q = d; q < k; q++) {
					len = len * 10 + (uint64_t)(p[q] - '0');
					if (len > limit)
						return fail(c, MK_ETOOBIG,
							    "server announced a literal of more than %llu bytes "
							    "(limit for %s)",
							    (unsigned long long)limit,
							    stream ? "a message body" : "data kept in memory");
				}
				if (p[end - 1] != '\r')
					return fail(c, MK_EPROTO, "literal announcement not ended by CRLF");
				if (stream) {
					*stream_r = len;
					*line_end_r = d - 1;
					return (long)(end + 1);
				}
				size_t lit_start = end + 1;
				if (n - lit_start < len)
					return 0;
				i = lit_start + (size_t)len;
				continue;
			}
		}
		*line_end_r = text_end;
		return (long)(end + 1);
	}
	return 0;
}

static const char *copy_text(struct mk_imap_client *c, const uint8_t *p, size_t n)
{
	/* ev_text is reset per event and reserved to fit; never reallocated
	 * while an event's strings point into it. */
	uint8_t *dst;
	MK_ASSERT(c->ev_text.len + n + 1 < c->ev_text.cap); /* reserved per event */
	if (mk_buf_reserve(&c->ev_text, n + 1, &dst) < 0)
		return "";
	memcpy(dst, p, n);
	dst[n] = '\0';
	mk_buf_commit(&c->ev_text, n + 1);
	return (const char *)dst;
}

static bool parse_status(const uint8_t *p, size_t n, enum mk_imap_status *st_r, size_t *len_r)
{
	static const struct {
		const char *s;
		enum mk_imap_status st;
	} tab[] = {{"OK", MK_IMAP_OK}, {"NO", MK_IMAP_NO}, {"BAD", MK_IMAP_BAD},
		   {"PREAUTH", MK_IMAP_PREAUTH}, {"BYE", MK_IMAP_BYE}};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		size_t l = strlen(tab[i].s);
		if (n >= l && strncasecmp((const char *)p, tab[i].s, l) == 0 && (n == l || p[l] == ' ')) {
			*st_r = tab[i].st;
			*len_r = l;
			return true;
		}
	}
	return false;
}

/* "[CODE ...] text" or "text" after a status word. */
static void split_code_text(struct mk_imap_client *c, const uint8_t *p, size_t n, struct mk_imap_event *ev)
{
	ev->code = NULL;
	while (n > 0 && *p == ' ') {
		p++;
		n--;
	}
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
}

bool mk_imap_client_has_cap(const struct mk_imap_client *c, const char *cap)
{
	return mk_caps_has(&c->caps, cap);
}

/* A "[CAPABILITY ...]" response code updates the capabilities. */
static bool code_caps(struct mk_imap_client *c, const char *code)
{
	if (code != NULL && strncasecmp(code, "CAPABILITY ", 11) == 0) {
		mk_caps_set_words(&c->caps, (const uint8_t *)code + 11, strlen(code + 11));
		return true;
	}
	return false;
}

static int parse_list(struct mk_imap_client *c, struct mk_imap_event *ev)
{
	const struct mk_imap_args *a = &c->args;
	/* args: LIST (flags) delim name */
	if (a->n < 2 || a->a[1].kind != MK_IMAP_ARG_LIST)
		return fail(c, MK_EPROTO, "malformed LIST response");
	uint32_t d = a->a[1].next;
	if (d >= a->n)
		return fail(c, MK_EPROTO, "malformed LIST response");
	uint32_t nm = a->a[d].next;
	if (nm >= a->n || a->a[nm].kind == MK_IMAP_ARG_LIST || a->a[nm].kind == MK_IMAP_ARG_NIL)
		return fail(c, MK_EPROTO, "malformed LIST response (no name)");
	MK_FREE(&c->list_raw);
	MK_FREE(&c->list_name);
	ev->list.flags = &a->a[1];
	ev->list.delimiter = 0;
	if (a->a[d].kind != MK_IMAP_ARG_NIL && a->a[d].v.n >= 1)
		ev->list.delimiter = (char)a->a[d].v.p[0];
	c->list_raw = mk_imap_arg_dup(&a->a[nm]);
	if (mk_imap_utf7_decode(c->list_raw, &c->list_name) < 0)
		c->list_name = mk_xstrdup(c->list_raw);
	ev->list.name_raw = c->list_raw;
	ev->list.name = c->list_name;
	ev->list.noselect = false;
	for (uint32_t k = 2, left = a->a[1].n_children; left > 0 && k < a->n; k = a->a[k].next, left--) {
		if (mk_imap_arg_eq(&a->a[k], "\\Noselect") || mk_imap_arg_eq(&a->a[k], "\\NonExistent"))
			ev->list.noselect = true;
	}
	return 1;
}

static int handle_untagged(struct mk_imap_client *c, const uint8_t *p, size_t n, struct mk_imap_event *ev)
{
	enum mk_imap_status st;
	size_t sl;
	if (parse_status(p, n, &st, &sl)) {
		split_code_text(c, p + sl, n - sl, ev);
		ev->status = st;
		bool capped = code_caps(c, ev->code);
		if (c->state == MK_IMAP_STATE_GREETING) {
			ev->kind = MK_IMAP_EV_GREETING;
			if (st == MK_IMAP_BYE)
				c->state = MK_IMAP_STATE_LOGOUT;
			else if (st == MK_IMAP_PREAUTH)
				c->state = MK_IMAP_STATE_AUTH;
			else if (st == MK_IMAP_OK)
				c->state = MK_IMAP_STATE_NOT_AUTH;
			else
				return fail(c, MK_EPROTO, "unexpected greeting: %s", ev->text);
			return 1;
		}
		if (st == MK_IMAP_BYE) {
			ev->kind = MK_IMAP_EV_BYE;
			c->state = MK_IMAP_STATE_LOGOUT;
			return 1;
		}
		ev->kind = capped ? MK_IMAP_EV_CAPABILITY : MK_IMAP_EV_UNTAGGED;
		return 1;
	}
	if (c->state == MK_IMAP_STATE_GREETING)
		return fail(c, MK_EPROTO, "server did not start with a greeting");
	if (n >= 10 && strncasecmp((const char *)p, "CAPABILITY", 10) == 0 && (n == 10 || p[10] == ' ')) {
		mk_caps_set_words(&c->caps, p + 10, n - 10);
		ev->kind = MK_IMAP_EV_CAPABILITY;
		return 1;
	}
	const char *lerr = "malformed";
	int r = mk_imap_lexer_parse(&c->args, p, n, &lerr);
	if (r < 0)
		return fail(c, r, "cannot parse server response: %s", lerr);
	ev->args = &c->args;
	if (c->args.n > 0 && (mk_imap_arg_eq(&c->args.a[0], "LIST") || mk_imap_arg_eq(&c->args.a[0], "LSUB"))) {
		ev->kind = MK_IMAP_EV_LIST;
		return parse_list(c, ev);
	}
	ev->kind = MK_IMAP_EV_UNTAGGED;
	return 1;
}

static void drop_pending(struct mk_imap_client *c, unsigned idx)
{
	memmove(&c->pending[idx], &c->pending[idx + 1], (c->n_pending - idx - 1) * sizeof(c->pending[0]));
	c->n_pending--;
}

/* Releases output held back for a continuation request. */
static bool release_held(struct mk_imap_client *c)
{
	if (c->out_ready >= c->out.len)
		return false;
	/* the next hold point is the next CRLF that ends a "{n}" or the end */
	const uint8_t *p = c->out.data;
	size_t i = c->out_ready;
	for (;;) {
		const uint8_t *lf = memchr(p + i, '\n', c->out.len - i);
		if (lf == NULL) {
			c->out_ready = c->out.len;
			break;
		}
		size_t e = (size_t)(lf - p) + 1;
		if (e >= 3 && p[e - 2] == '\r' && p[e - 3] == '}' && e < c->out.len) {
			/* ends with a synchronising literal announcement: hold after */
			size_t k = e - 4;
			while (k > 0 && p[k] >= '0' && p[k] <= '9')
				k--;
			if (p[k] == '{') {
				c->out_ready = e;
				break;
			}
		}
		if (c->held_sasl && e < c->out.len && e > c->out_ready) {
			c->out_ready = e;
			break;
		}
		i = e;
		if (i >= c->out.len) {
			c->out_ready = c->out.len;
			break;
		}
	}
	return true;
}

static int handle_tagged(struct mk_imap_client *c, const uint8_t *p, size_t n, size_t taglen,
			 struct mk_imap_event *ev)
{
	uint64_t tag = 0;
	char tagbuf[24];
	if (taglen < 2 || taglen >= sizeof(tagbuf) || (p[0] != 'A' && p[0] != 'a'))
		goto unknown;
	memcpy(tagbuf, p + 1, taglen - 1);
	tagbuf[taglen - 1] = '\0';
	if (mk_str_to_u64(tagbuf, 1, UINT32_MAX, &tag) < 0)
		goto unknown;
	unsigned idx;
	for (idx = 0; idx < c->n_pending; idx++)
		if (c->pending[idx].tag == tag)
			break;
	if (idx == c->n_pending)
		goto unknown;
	enum mk_imap_status st;
	size_t sl;
	const uint8_t *rest = p + taglen + 1;
	size_t rn = n > taglen ? n - taglen - 1 : 0;
	if (!parse_status(rest, rn, &st, &sl) || st == MK_IMAP_PREAUTH || st == MK_IMAP_BYE)
		return fail(c, MK_EPROTO, "malformed tagged response");
	ev->kind = MK_IMAP_EV_TAGGED;
	ev->tag = (unsigned)tag;
	ev->cmd = c->pending[idx].kind;
	ev->status = st;
	split_code_text(c, rest + sl, rn - sl, ev);
	drop_pending(c, idx);
	if (c->idle_tag == tag) {
		c->idle_tag = 0;
		c->idling = false;
		c->idle_done_sent = false;
	}
	/* A command that was waiting for "+" and got a final answer instead:
	 * drop what it still held (it may be a password). */
	if (c->held_tag == tag && c->out_ready < c->out.len)
		mk_buf_truncate(&c->out, c->out_ready, true);
	if (c->held_tag == tag) {
		c->held_tag = 0;
		c->held_sasl = false;
	}
	if (c->auth_tag == tag) {
		c->auth_tag = 0;
		c->auth_cont = false;
	}
	if (c->append_tag == tag) {
		/* done, or refused before the literal (NO [TRYCREATE], too big):
		 * nothing more of it may be sent */
		if (c->append_left > 0 && c->append_ready)
			return fail(c, MK_EPROTO, "APPEND answered while its message was being sent");
		c->append_tag = 0;
		c->append_left = 0;
		c->append_ready = false;
	}
	bool capped = code_caps(c, ev->code);
	if (st == MK_IMAP_OK) {
		switch (ev->cmd) {
		case MK_IMAP_CMD_STARTTLS:
			mk_caps_clear(&c->caps);
			c->state = MK_IMAP_STATE_STARTTLS;
			return 1;
		case MK_IMAP_CMD_LOGIN:
		case MK_IMAP_CMD_AUTHENTICATE_PLAIN:
		case MK_IMAP_CMD_AUTHENTICATE:
			c->state = MK_IMAP_STATE_AUTH;
			if (!capped)
				mk_caps_clear(&c->caps); /* ask again: they change after login */
			break;
		case MK_IMAP_CMD_LOGOUT:
			c->state = MK_IMAP_STATE_LOGOUT;
			break;
		default:
			break;
		}
	}
	return 1;
unknown:;
	/* the "tag" may be binary junk: show it escaped */
	char shown[48];
	size_t o = 0;
	for (size_t i = 0; i < taglen && o + 5 < sizeof(shown); i++)
		o += (size_t)snprintf(shown + o, sizeof(shown) - o, p[i] >= 0x21 && p[i] < 0x7f ? "%c" : "\\x%02x",
				      p[i]);
	return fail(c, MK_EPROTO, "unexpected response from the server (not a known tag: %s)", shown);
}


/* ---- FETCH items ---- */

static const struct {
	const char *name;
	uint32_t bit;
} sys_flags[] = {
	{"\\Seen", MK_IMAP_FLAG_SEEN},     {"\\Answered", MK_IMAP_FLAG_ANSWERED},
	{"\\Flagged", MK_IMAP_FLAG_FLAGGED}, {"\\Deleted", MK_IMAP_FLAG_DELETED},
	{"\\Draft", MK_IMAP_FLAG_DRAFT},   {"\\Recent", MK_IMAP_FLAG_RECENT},
};

static void parse_flags(struct mk_imap_fetch *f, const struct mk_imap_args *a, uint32_t list)
{
	f->flags = 0;
	f->keywords[0] = '\0';
	size_t kl = 0;
	uint32_t k = list + 1;
	for (uint32_t left = a->a[list].n_children; left > 0 && k < a->n; left--, k = a->a[k].next) {
		const struct mk_imap_arg *fl = &a->a[k];
		if (fl->kind != MK_IMAP_ARG_ATOM)
			continue;
		bool sys = false;
		for (size_t i = 0; i < sizeof(sys_flags) / sizeof(sys_flags[0]); i++) {
			if (mk_imap_arg_eq(fl, sys_flags[i].name)) {
				f->flags |= sys_flags[i].bit;
				sys = true;
			}
		}
		if (sys || fl->v.n == 0 || (fl->v.p[0] == '\\' && fl->v.n > 1))
			continue; /* unknown system flags are dropped */
		if (kl + fl->v.n + 2 < sizeof(f->keywords)) {
			if (kl > 0)
				f->keywords[kl++] = ' ';
			memcpy(f->keywords + kl, fl->v.p, fl->v.n);
			kl += fl->v.n;
			f->keywords[kl] = '\0';
		}
	}
}

static bool arg_u32(const struct mk_imap_arg *a, uint32_t *v_r)
{
	if (a->kind != MK_IMAP_ARG_ATOM || a->v.n == 0 || a->v.n > 10)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < a->v.n; i++) {
		if (a->v.p[i] < '0' || a->v.p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(a->v.p[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*v_r = (uint32_t)v;
	return true;
}

/* Reads "NAME value" pairs from args[k..] (siblings), into c->fetch.
 * `body_name_at_end`: the last item name has its value streamed. */
static int parse_items(struct mk_imap_client *c, const struct mk_imap_args *a, uint32_t k, uint32_t end,
		       bool body_name_at_end)
{
	struct mk_imap_fetch *f = &c->fetch;
	while (k < end) {
		const struct mk_imap_arg *name = &a->a[k];
		uint32_t vk = name->next;
		if (name->kind != MK_IMAP_ARG_ATOM)
			return fail(c, MK_EPROTO, "malformed FETCH response (item name expected)");
		if (vk >= end) {
			if (body_name_at_end)
				return 0; /* its value is the streamed literal */
			return fail(c, MK_EPROTO, "malformed FETCH response (no value for %.*s)",
				    (int)(name->v.n < 40 ? name->v.n : 40), (const char *)name->v.p);
		}
		const struct mk_imap_arg *val = &a->a[vk];
		if (mk_imap_arg_eq(name, "UID")) {
			if (!arg_u32(val, &f->uid) || f->uid == 0)
				return fail(c, MK_EPROTO, "malformed FETCH response (bad UID)");
			f->has_uid = true;
		} else if (mk_imap_arg_eq(name, "RFC822.SIZE")) {
			if (!arg_u32(val, &f->rfc822_size))
				return fail(c, MK_EPROTO, "malformed FETCH response (bad RFC822.SIZE)");
			f->has_size = true;
		} else if (mk_imap_arg_eq(name, "FLAGS")) {
			if (val->kind != MK_IMAP_ARG_LIST)
				return fail(c, MK_EPROTO, "malformed FETCH response (FLAGS is not a list)");
			parse_flags(f, a, vk);
			f->has_flags = true;
		} else if (mk_imap_arg_eq(name, "INTERNALDATE")) {
			if (val->kind != MK_IMAP_ARG_STRING ||
			    mk_imap_parse_datetime((const char *)val->v.p, val->v.n, &f->internaldate,
						   &f->internaldate_tz) < 0)
				return fail(c, MK_EPROTO, "malformed FETCH response (bad INTERNALDATE)");
			f->has_internaldate = true;
		} else if (name->v.n >= 5 && (strncasecmp((const char *)name->v.p, "BODY[", 5) == 0 ||
					      strncasecmp((const char *)name->v.p, "RFC822", 6) == 0 ||
					      strncasecmp((const char *)name->v.p, "BINARY[", 7) == 0)) {
			/* a body not streamed: a quoted string (NIL means no body:
			 * Exchange's "empty FETCH") */
			if (val->kind != MK_IMAP_ARG_NIL && val->kind != MK_IMAP_ARG_LIST) {
				f->has_body = true;
				f->inline_body = val->v;
				f->body_size += val->v.n;
			}
		}
		/* other items (ENVELOPE, BODYSTRUCTURE, MODSEQ...) are skipped */
		k = val->next;
	}
	return 0;
}

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int mk_imap_parse_datetime(const char *s, size_t n, int64_t *t_r, int32_t *tz_r)
{
	/* "dd-Mon-yyyy hh:mm:ss +zzzz", day possibly space-padded */
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char b[32];
	if (n < 25 || n >= sizeof(b))
		return MK_EINVAL;
	memcpy(b, s, n);
	b[n] = '\0';
	const char *p = b;
	if (*p == ' ')
		p++;
	int day = 0, i = 0;
	while (i < 2 && p[i] >= '0' && p[i] <= '9')
		day = day * 10 + (p[i++] - '0');
	if (i == 0 || p[i] != '-')
		return MK_EINVAL;
	p += i + 1;
	int mon = -1;
	for (int m = 0; m < 12; m++)
		if (strncasecmp(p, months + m * 3, 3) == 0)
			mon = m;
	if (mon < 0 || p[3] != '-')
		return MK_EINVAL;
	p += 4;
	int v[4] = {0};
	/* yyyy hh:mm:ss */
	for (i = 0; i < 4; i++) {
		if (p[i] < '0' || p[i] > '9')
			return MK_EINVAL;
		v[0] = v[0] * 10 + (p[i] - '0');
	}
	p += 4;
	for (int f = 1; f <= 3; f++) {
		if (*p != (f == 1 ? ' ' : ':') || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
			return MK_EINVAL;
		v[f] = (p[1] - '0') * 10 + (p[2] - '0');
		p += 3;
	}
	if (p[0] != ' ' || (p[1] != '+' && p[1] != '-'))
		return MK_EINVAL;
	int zh = 0, zm = 0;
	for (i = 2; i < 6; i++)
		if (p[i] < '0' || p[i] > '9')
			return MK_EINVAL;
	zh = (p[2] - '0') * 10 + (p[3] - '0');
	zm = (p[4] - '0') * 10 + (p[5] - '0');
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int year = v[0];
	if (year < 1970 || year > 9999 || day < 1 || day > mdays[mon] + (mon == 1 && is_leap(year)) || v[1] > 23 ||
	    v[2] > 59 || v[3] > 60 || zh > 23 || zm > 59)
		return MK_EINVAL;
	int64_t days = 0;
	for (int y = 1970; y < year; y++)
		days += is_leap(y) ? 366 : 365;
	for (int m = 0; m < mon; m++)
		days += mdays[m] + (m == 1 && is_leap(year));
	days += day - 1;
	int32_t tz = (zh * 60 + zm) * (p[1] == '-' ? -1 : 1);
	*t_r = days * 86400 + v[1] * 3600 + v[2] * 60 + v[3] - (int64_t)tz * 60;
	*tz_r = tz;
	return 0;
}

bool mk_imap_code_u32(const char *code, const char *name, uint32_t *v_r)
{
	size_t l = strlen(name);
	if (code == NULL || strncasecmp(code, name, l) != 0 || code[l] != ' ')
		return false;
	uint64_t v = 0;
	const char *p = code + l + 1;
	if (*p < '0' || *p > '9')
		return false;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (uint64_t)(*p++ - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*v_r = (uint32_t)v;
	return true;
}

/* A FETCH segment: "* n FETCH (items..." up to the end or a streamed
 * body literal (first = true), or the items after a streamed literal up
 * to the closing ")" (first = false). Fills ev as FETCH or BODY_BEGIN. */
static int handle_fetch_segment(struct mk_imap_client *c, const uint8_t *p, size_t n, bool first, uint64_t stream,
				struct mk_imap_event *ev)
{
	const char *lerr = "malformed";
	size_t off = 0;
	if (first) {
		memset(&c->fetch, 0, sizeof(c->fetch));
		/* "* " seq " FETCH (" */
		size_t i = 2;
		uint64_t seq = 0;
		while (i < n && p[i] >= '0' && p[i] <= '9') {
			seq = seq * 10 + (uint64_t)(p[i] - '0');
			if (seq > UINT32_MAX)
				return fail(c, MK_EPROTO, "malformed FETCH response (sequence number)");
			i++;
		}
		c->fetch.seq = (uint32_t)seq;
		i += 7; /* " FETCH " */
		if (i >= n || p[i] != '(')
			return fail(c, MK_EPROTO, "malformed FETCH response (no item list)");
		off = i + 1;
	}
	size_t used = 0;
	int r = mk_imap_lexer_parse_until_close(&c->args, p + off, n - off, &used, &lerr);
	if (r < 0)
		return fail(c, r, "cannot parse FETCH response: %s", lerr);
	bool closed = off + used < n; /* stopped at the final ')' */
	if (stream != NO_STREAM && closed)
		return fail(c, MK_EPROTO, "malformed FETCH response (literal after the item list)");
	if (stream == NO_STREAM && !closed)
		return fail(c, MK_EPROTO, "malformed FETCH response (unterminated item list)");
	/* top-level args only: walk siblings */
	r = parse_items(c, &c->args, 0, c->args.n, stream != NO_STREAM);
	if (r < 0)
		return r;
	if (stream != NO_STREAM) {
		/* the section name is the last top-level atom */
		uint32_t last = 0;
		for (uint32_t k = 0; k < c->args.n; k = c->args.a[k].next)
			last = k;
		c->fetch.has_body = true;
		c->fetch.body_size += stream;
		c->stream_left = stream;
		c->in_fetch_tail = true;
		ev->kind = MK_IMAP_EV_BODY_BEGIN;
		ev->body_size = stream;
		ev->text = c->args.n ? copy_text(c, c->args.a[last].v.p, c->args.a[last].v.n) : "";
		ev->fetch = c->fetch;
		return 1;
	}
	c->in_fetch_tail = false;
	ev->kind = MK_IMAP_EV_FETCH;
	ev->fetch = c->fetch;
	return 1;
}

int mk_imap_client_next_event(struct mk_imap_client *c, struct mk_imap_event *ev_r)
{
	if (c->state == MK_IMAP_STATE_FAILED)
		return MK_EPROTO;
	mk_buf_reset(&c->ev_text);
	if (c->consume_next > 0) {
		/* consumed lazily: an offset, compacted when input arrives, so
		 * many small responses in one read cost no memmove each */
		c->in_off += c->consume_next;
		c->consume_next = 0;
	}
	for (;;) {
		if (c->stream_left > 0) {
			/* the body literal of a FETCH: hand out what is here */
			if (IN_N(c) == 0)
				return 0;
			size_t take = IN_N(c) < c->stream_left ? IN_N(c) : (size_t)c->stream_left;
			memset(ev_r, 0, sizeof(*ev_r));
			ev_r->kind = MK_IMAP_EV_BODY_CHUNK;
			ev_r->chunk.p = IN_P(c);
			ev_r->chunk.n = take;
			ev_r->fetch = c->fetch;
			c->stream_left -= take;
			c->consume_next = take;
			return 1;
		}
		size_t line_end = 0;
		uint64_t stream;
		long fl = frame(c, c->in_fetch_tail, &line_end, &stream);
		if (fl <= 0)
			return (int)fl;
		memset(ev_r, 0, sizeof(*ev_r));
		if (c->in_fetch_tail || stream != NO_STREAM || is_fetch_response(IN_P(c), line_end)) {
			if (mk_buf_reserve(&c->ev_text, line_end + 64, NULL) < 0)
				return fail(c, MK_ETOOBIG, "server response too long");
			int r = handle_fetch_segment(c, IN_P(c), line_end, !c->in_fetch_tail, stream, ev_r);
			if (r < 0)
				return r;
			c->consume_next = (size_t)fl;
			return 1;
		}
		/* Room for every string of this event (code + text <= line), so
		 * copy_text() never reallocates under earlier pointers. */
		if (mk_buf_reserve(&c->ev_text, line_end + 64, NULL) < 0)
			return fail(c, MK_ETOOBIG, "server response too long");
		const uint8_t *p = IN_P(c);
		int r;
		if (line_end >= 1 && p[0] == '+' && (line_end == 1 || p[1] == ' ')) {
			/* continuation request */
			if (c->idle_tag != 0 && !c->idling && c->held_tag == 0) {
				c->idling = true; /* "+ idling": IDLE accepted */
				ev_r->kind = MK_IMAP_EV_CONTINUATION;
				ev_r->tag = c->idle_tag;
				ev_r->cmd = MK_IMAP_CMD_IDLE;
				ev_r->text = copy_text(c, p + (line_end > 1 ? 2 : 1), line_end > 1 ? line_end - 2 : 0);
				c->consume_next = (size_t)fl;
				return 1;
			}
			if (c->held_tag != 0 && release_held(c)) {
				c->in_off += (size_t)fl;
				continue;
			}
			if (c->append_tag != 0 && !c->append_ready) {
				/* the go-ahead for the message literal: the owner streams it */
				c->append_ready = true;
				c->held_tag = 0;
				ev_r->kind = MK_IMAP_EV_CONTINUATION;
				ev_r->tag = c->append_tag;
				ev_r->cmd = MK_IMAP_CMD_APPEND;
				ev_r->text = copy_text(c, p + (line_end > 1 ? 2 : 1), line_end > 1 ? line_end - 2 : 0);
				c->consume_next = (size_t)fl;
				return 1;
			}
			ev_r->kind = MK_IMAP_EV_CONTINUATION;
			ev_r->text = copy_text(c, p + (line_end > 1 ? 2 : 1), line_end > 1 ? line_end - 2 : 0);
			if (c->auth_tag != 0) {
				/* a SASL challenge: the owner answers it (or cancels) */
				if (c->auth_cont)
					return fail(c, MK_EPROTO, "server sent a second SASL challenge before the answer "
								  "to the first");
				ev_r->tag = c->auth_tag;
				ev_r->cmd = MK_IMAP_CMD_AUTHENTICATE;
				c->auth_cont = true;
				size_t tl = strlen(ev_r->text);
				mk_buf_reset(&c->sasl_dec);
				uint8_t *dst;
				if (mk_buf_reserve(&c->sasl_dec, tl + 1, &dst) < 0)
					return fail(c, MK_ETOOBIG, "SASL challenge longer than %d bytes", MK_LIMIT_SASL_LINE);
				long dl = mk_base64_decode(ev_r->text, tl, dst, tl + 1);
				if (dl < 0) {
					/* not base64 (a server's plain text): hand it over as is */
					memcpy(dst, ev_r->text, tl);
					dl = (long)tl;
				}
				mk_buf_commit(&c->sasl_dec, (size_t)dl);
				ev_r->chunk.p = c->sasl_dec.data;
				ev_r->chunk.n = c->sasl_dec.len;
			}
			r = 1;
		} else if (line_end >= 2 && p[0] == '*' && p[1] == ' ') {
			r = handle_untagged(c, p + 2, line_end - 2, ev_r);
		} else {
			const uint8_t *sp = memchr(p, ' ', line_end);
			if (sp == NULL)
				return fail(c, MK_EPROTO, "malformed server response");
			r = handle_tagged(c, p, line_end, (size_t)(sp - p), ev_r);
		}
		if (r < 0)
			return r;
		/* args/strings point into c->in: copy what must outlive the
		 * consume. Events are valid until the next call, and c->in is
		 * only consumed at the start of the next call. */
		c->consume_next = (size_t)fl;
		if (c->state == MK_IMAP_STATE_STARTTLS && ev_r->kind == MK_IMAP_EV_TAGGED) {
			if (IN_N(c) > (size_t)fl)
				return fail(c, MK_EPROTO,
					    "server sent data in clear after the STARTTLS go-ahead "
					    "(possible injection attack; refused)");
		}
		return 1;
	}
}

/* ---- commands ---- */

static bool quotable(const char *s)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
		if (*p == '\r' || *p == '\n' || *p >= 0x80 || n > 1000)
			return false;
	return true;
}

/* Appends an astring: quoted when possible, else a literal (non-
 * synchronising with LITERAL+, otherwise synchronising: the rest of the
 * command is held until the server's "+"). */
static int put_astring(struct mk_imap_client *c, const char *s, bool *sync_r)
{
	int r = 0;
	if (quotable(s)) {
		r |= mk_buf_append(&c->out, "\"", 1);
		for (const char *p = s; *p; p++) {
			if (*p == '"' || *p == '\\')
				r |= mk_buf_append(&c->out, "\\", 1);
			r |= mk_buf_append(&c->out, p, 1);
		}
		r |= mk_buf_append(&c->out, "\"", 1);
		return r < 0 ? MK_ETOOBIG : 0;
	}
	bool plus = mk_imap_client_has_cap(c, "LITERAL+");
	if (mk_buf_printf(&c->out, "{%zu%s}\r\n", strlen(s), plus ? "+" : "") < 0)
		return MK_ETOOBIG;
	if (!plus)
		*sync_r = true;
	return mk_buf_append_str(&c->out, s) < 0 ? MK_ETOOBIG : 0;
}

int mk_imap_client_submit(struct mk_imap_client *c, const struct mk_imap_cmd *cmd, unsigned *tag_r)
{
	if (c->state == MK_IMAP_STATE_FAILED || c->state == MK_IMAP_STATE_LOGOUT ||
	    c->state == MK_IMAP_STATE_STARTTLS)
		return MK_ESTATE;
	if (c->n_pending >= MK_IMAP_MAX_PENDING)
		return MK_ETOOBIG;
	bool secret = cmd->kind == MK_IMAP_CMD_LOGIN || cmd->kind == MK_IMAP_CMD_AUTHENTICATE_PLAIN ||
		      cmd->kind == MK_IMAP_CMD_AUTHENTICATE;
	if (secret) {
		/* Never send credentials in clear, whatever the server allows. */
		if (!c->tls_active || c->state != MK_IMAP_STATE_NOT_AUTH || cmd->a == NULL ||
		    (cmd->b == NULL && cmd->kind != MK_IMAP_CMD_AUTHENTICATE))
			return MK_ESTATE;
	}
	if (c->auth_tag != 0)
		return MK_ESTATE; /* RFC 3501 §6.2.2: nothing else during a SASL exchange */
	if (cmd->kind == MK_IMAP_CMD_STARTTLS && (c->tls_active || c->state != MK_IMAP_STATE_NOT_AUTH))
		return MK_ESTATE;
	if (c->held_tag != 0)
		return MK_ESTATE; /* one command waiting for "+" at a time */
	if (c->append_tag != 0 && c->append_left > 0)
		return MK_ESTATE; /* the message literal must come next on the wire */
	if (cmd->kind == MK_IMAP_CMD_IDLE && c->idle_tag != 0)
		return MK_ESTATE;
	if (c->idle_tag != 0)
		mk_imap_client_idle_done(c); /* RFC 2177: DONE before anything else */
	unsigned tag = c->next_tag++;
	size_t start = c->out.len;
	bool sync = false;
	int r = mk_buf_printf(&c->out, "A%u ", tag) < 0 ? MK_ETOOBIG : 0;
	switch (cmd->kind) {
	case MK_IMAP_CMD_CAPABILITY:
		r = r ? r : mk_buf_append_str(&c->out, "CAPABILITY\r\n");
		break;
	case MK_IMAP_CMD_NOOP:
		r = r ? r : mk_buf_append_str(&c->out, "NOOP\r\n");
		break;
	case MK_IMAP_CMD_STARTTLS:
		r = r ? r : mk_buf_append_str(&c->out, "STARTTLS\r\n");
		break;
	case MK_IMAP_CMD_LOGOUT:
		r = r ? r : mk_buf_append_str(&c->out, "LOGOUT\r\n");
		break;
	case MK_IMAP_CMD_IDLE:
		r = r ? r : mk_buf_append_str(&c->out, "IDLE\r\n");
		break;
	case MK_IMAP_CMD_LOGIN:
		r = r ? r : mk_buf_append_str(&c->out, "LOGIN ");
		r = r ? r : put_astring(c, cmd->a, &sync);
		r = r ? r : mk_buf_append_str(&c->out, " ");
		r = r ? r : put_astring(c, cmd->b, &sync);
		r = r ? r : mk_buf_append_str(&c->out, "\r\n");
		break;
	case MK_IMAP_CMD_AUTHENTICATE_PLAIN: {
		/* RFC 4616: authzid NUL authcid NUL passwd */
		size_t ul = strlen(cmd->a), pl = strlen(cmd->b);
		if (ul + pl + 2 > MK_LIMIT_SASL_LINE / 2) {
			r = MK_ETOOBIG;
			break;
		}
		struct mk_buf raw;
		mk_buf_init(&raw, MK_LIMIT_SASL_LINE);
		(void)mk_buf_append(&raw, "", 1);
		(void)mk_buf_append(&raw, cmd->a, ul);
		(void)mk_buf_append(&raw, "", 1);
		(void)mk_buf_append(&raw, cmd->b, pl);
		size_t b64len = MK_BASE64_ENCLEN(raw.len);
		char *b64 = mk_xmalloc(b64len + 1);
		mk_base64_encode(raw.data, raw.len, b64, b64len + 1);
		mk_buf_cleanup_wipe(&raw);
		bool ir = mk_imap_client_has_cap(c, "SASL-IR");
		r = r ? r : mk_buf_append_str(&c->out, ir ? "AUTHENTICATE PLAIN " : "AUTHENTICATE PLAIN\r\n");
		r = r ? r : mk_buf_append(&c->out, b64, b64len);
		r = r ? r : mk_buf_append_str(&c->out, "\r\n");
		explicit_bzero(b64, b64len);
		mk_free(b64);
		if (!ir) {
			sync = true;
			c->held_sasl = true;
		}
		break;
	}
	case MK_IMAP_CMD_AUTHENTICATE: {
		/* the mechanism is an atom: RFC 4422 §3.1 names */
		size_t ml = strlen(cmd->a);
		bool ok = ml >= 1 && ml <= 20;
		for (size_t i = 0; ok && i < ml; i++)
			ok = (cmd->a[i] >= 'A' && cmd->a[i] <= 'Z') || (cmd->a[i] >= 'a' && cmd->a[i] <= 'z') ||
			     (cmd->a[i] >= '0' && cmd->a[i] <= '9') || cmd->a[i] == '-' || cmd->a[i] == '_';
		if (!ok) {
			r = MK_EINVAL;
			break;
		}
		bool has_ir = cmd->ir.p != NULL;
		size_t b64len = has_ir ? MK_BASE64_ENCLEN(cmd->ir.n) : 0;
		if (b64len + 2 > MK_LIMIT_SASL_LINE) {
			r = MK_ETOOBIG;
			break;
		}
		bool ir = has_ir && mk_imap_client_has_cap(c, "SASL-IR");
		/* sized once before the secret goes in: no realloc leaves a copy */
		r = r ? r : mk_buf_reserve(&c->out, 48 + ml + b64len + 4, NULL) < 0 ? MK_ETOOBIG : 0;
		r = r ? r : mk_buf_printf(&c->out, "AUTHENTICATE %s", cmd->a) < 0 ? MK_ETOOBIG : 0;
		if (r == 0 && has_ir) {
			uint8_t *dst;
			(void)mk_buf_append_str(&c->out, ir ? " " : "\r\n");
			if (mk_buf_reserve(&c->out, b64len + 3, &dst) < 0) {
				r = MK_ETOOBIG;
				break;
			}
			if (b64len == 0) {
				/* RFC 4959: an empty initial response is "=" on the command
				 * line, an empty line after "+" */
				if (ir)
					dst[b64len++] = '=';
			} else {
				mk_base64_encode(cmd->ir.p, cmd->ir.n, (char *)dst, b64len + 1);
			}
			mk_buf_commit(&c->out, b64len);
		}
		r = r ? r : mk_buf_append_str(&c->out, "\r\n") < 0 ? MK_ETOOBIG : 0;
		if (has_ir && !ir) {
			sync = true;
			c->held_sasl = true;
		}
		break;
	}
	case MK_IMAP_CMD_EXAMINE:
	case MK_IMAP_CMD_SELECT: {
		char *enc = NULL;
		if (cmd->a != NULL && cmd->a_wire && cmd->a[0] != '\0' && strpbrk(cmd->a, "\r\n") == NULL)
			enc = mk_xstrdup(cmd->a);
		else if (cmd->a == NULL || cmd->a_wire || mk_imap_utf7_encode(cmd->a, &enc) < 0) {
			r = MK_EINVAL;
			break;
		}
		r = r ? r : mk_buf_append_str(&c->out, cmd->kind == MK_IMAP_CMD_EXAMINE ? "EXAMINE " : "SELECT ");
		r = r ? r : put_astring(c, enc, &sync);
		r = r ? r : mk_buf_append_str(&c->out, "\r\n");
		mk_free(enc);
		break;
	}
	case MK_IMAP_CMD_UID_FETCH:
		if (cmd->a == NULL || cmd->b == NULL || strpbrk(cmd->a, " \r\n") != NULL ||
		    strpbrk(cmd->b, "\r\n") != NULL) {
			r = MK_EINVAL;
			break;
		}
		r = r ? r : mk_buf_printf(&c->out, "UID FETCH %s %s\r\n", cmd->a, cmd->b);
		break;
	case MK_IMAP_CMD_APPEND: {
		char *enc = NULL;
		if (c->state != MK_IMAP_STATE_AUTH || cmd->a == NULL || cmd->size == 0 ||
		    (cmd->b != NULL && (cmd->b[0] != '(' || strpbrk(cmd->b, "\r\n{}\"") != NULL)) ||
		    mk_imap_utf7_encode(cmd->a, &enc) < 0) {
			mk_free(enc);
			r = r ? r : (c->state != MK_IMAP_STATE_AUTH ? MK_ESTATE : MK_EINVAL);
			break;
		}
		bool plus = mk_imap_client_has_cap(c, "LITERAL+");
		r = r ? r : mk_buf_append_str(&c->out, "APPEND ");
		r = r ? r : put_astring(c, enc, &sync);
		if (cmd->b != NULL)
			r = r ? r : mk_buf_printf(&c->out, " %s", cmd->b);
		r = r ? r : mk_buf_printf(&c->out, " {%llu%s}\r\n", (unsigned long long)cmd->size, plus ? "+" : "");
		mk_free(enc);
		break;
	}
	case MK_IMAP_CMD_LIST:
		r = r ? r : mk_buf_append_str(&c->out, "LIST ");
		r = r ? r : put_astring(c, cmd->a ? cmd->a : "", &sync);
		r = r ? r : mk_buf_append_str(&c->out, " ");
		r = r ? r : put_astring(c, cmd->b ? cmd->b : "*", &sync);
		r = r ? r : mk_buf_append_str(&c->out, "\r\n");
		break;
	}
	if (r < 0) {
		mk_buf_truncate(&c->out, start, true);
		c->held_sasl = false;
		c->next_tag--;
		return r == MK_EINVAL || r == MK_ESTATE ? r : MK_ETOOBIG;
	}
	if (sync) {
		/* Send up to the first hold point now. */
		c->held_tag = tag;
		size_t keep = c->out_ready;
		c->out_ready = start;
		release_held(c);
		if (c->out_ready < keep)
			c->out_ready = keep;
	} else if (c->held_tag == 0) {
		c->out_ready = c->out.len;
	}
	c->pending[c->n_pending].tag = tag;
	c->pending[c->n_pending].kind = cmd->kind;
	c->n_pending++;
	if (cmd->kind == MK_IMAP_CMD_IDLE) {
		c->idle_tag = tag;
		c->idling = false;
		c->idle_done_sent = false;
	}
	if (cmd->kind == MK_IMAP_CMD_AUTHENTICATE) {
		c->auth_tag = tag;
		c->auth_cont = false;
	}
	if (cmd->kind == MK_IMAP_CMD_APPEND) {
		c->append_tag = tag;
		c->append_left = cmd->size;
		c->append_ready = mk_imap_client_has_cap(c, "LITERAL+");
	}
	*tag_r = tag;
	return 0;
}

bool mk_imap_client_append_ready(const struct mk_imap_client *c)
{
	return c->append_tag != 0 && c->append_ready && c->append_left > 0 && c->state != MK_IMAP_STATE_FAILED;
}

int mk_imap_client_append_write(struct mk_imap_client *c, const uint8_t *p, size_t n, size_t *taken_r)
{
	*taken_r = 0;
	if (!mk_imap_client_append_ready(c))
		return MK_ESTATE;
	size_t room = c->out.len >= MK_IMAP_APPEND_OUT_MAX ? 0 : MK_IMAP_APPEND_OUT_MAX - c->out.len;
	size_t k = n < room ? n : room;
	if (k > c->append_left)
		k = (size_t)c->append_left;
	if (k > 0 && mk_buf_append(&c->out, p, k) < 0)
		return MK_ESTATE;
	c->append_left -= k;
	if (c->append_left == 0 && mk_buf_append(&c->out, "\r\n", 2) < 0)
		return MK_ESTATE;
	c->out_ready = c->out.len;
	*taken_r = k;
	return 0;
}

/* Queues one answer line to the pending challenge: ready at once. */
static int auth_line(struct mk_imap_client *c, const uint8_t *p, size_t n, bool cancel)
{
	if (c->auth_tag == 0 || !c->auth_cont || c->state == MK_IMAP_STATE_FAILED)
		return MK_ESTATE;
	size_t b64len = cancel ? 1 : MK_BASE64_ENCLEN(n);
	if (b64len + 2 > MK_LIMIT_SASL_LINE)
		return MK_ETOOBIG;
	uint8_t *dst;
	if (mk_buf_reserve(&c->out, b64len + 3, &dst) < 0)
		return MK_ETOOBIG;
	if (cancel)
		dst[0] = '*';
	else if (n > 0)
		mk_base64_encode(p, n, (char *)dst, b64len + 1);
	memcpy(dst + b64len, "\r\n", 2);
	mk_buf_commit(&c->out, b64len + 2);
	c->auth_cont = false;
	/* nothing else may be held during a SASL exchange: send it now */
	if (c->held_tag == 0 || c->held_tag == c->auth_tag)
		c->out_ready = c->out.len;
	return 0;
}

int mk_imap_client_auth_respond(struct mk_imap_client *c, const uint8_t *p, size_t n)
{
	return auth_line(c, p, n, false);
}

int mk_imap_client_auth_cancel(struct mk_imap_client *c)
{
	return auth_line(c, NULL, 0, true);
}

void mk_imap_client_idle_done(struct mk_imap_client *c)
{
	if (c->idle_tag == 0 || c->idle_done_sent || c->state == MK_IMAP_STATE_FAILED)
		return;
	if (mk_buf_append_str(&c->out, "DONE\r\n") < 0)
		return;
	c->idle_done_sent = true;
	if (c->held_tag == 0)
		c->out_ready = c->out.len;
}

bool mk_imap_client_idling(const struct mk_imap_client *c)
{
	return c->idle_tag != 0 && !c->idle_done_sent;
}

struct mk_slice mk_imap_client_output(const struct mk_imap_client *c)
{
	struct mk_slice s = {c->out.data, c->out_ready};
	return s;
}

void mk_imap_client_output_done(struct mk_imap_client *c, size_t n)
{
	MK_ASSERT(n <= c->out_ready);
	if (n == 0)
		return;
	/* wipe what left: it may have been a password */
	explicit_bzero(c->out.data, n);
	mk_buf_consume(&c->out, n);
	explicit_bzero(c->out.data + c->out.len, n);
	c->out_ready -= n;
}

void mk_imap_client_tls_started(struct mk_imap_client *c)
{
	c->tls_active = true;
	if (c->state == MK_IMAP_STATE_STARTTLS) {
		c->state = MK_IMAP_STATE_NOT_AUTH;
		mk_caps_clear(&c->caps);
	}
}

const char *mk_imap_status_name(enum mk_imap_status s)
{
	switch (s) {
	case MK_IMAP_OK:
		return "OK";
	case MK_IMAP_NO:
		return "NO";
	case MK_IMAP_BAD:
		return "BAD";
	case MK_IMAP_PREAUTH:
		return "PREAUTH";
	case MK_IMAP_BYE:
		return "BYE";
	}
	return "?";
}
