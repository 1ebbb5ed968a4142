/* SPDX-License-Identifier: MIT */
/*
 * msg.c - preparing a message for SMTP submission (mk_smtp_msg.h): finds
 * the header block, parses RFC 5322 address lists (display names, quoted
 * strings, nested comments, groups, obsolete routes), collects the
 * envelope the way `sendmail -t` does, drops every Bcc field, and adds
 * Date and Message-ID when they are missing.
 *
 * Pure: no I/O, no clock, no randomness of its own (the caller passes the
 * time, the zone offset and 16 random bytes), so every output is
 * reproducible byte for byte. It never touches the body. Every loop is
 * bounded by the header limit, the recipient limit or the address length
 * (mk_smtp_msg.h), and every address it reports has passed
 * mk_smtp_msg_addr_valid, so nothing it returns can inject a command
 * into the SMTP dialogue (no CR, LF, space or '>' in an envelope address).
 */
#include "mk_smtp_msg.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_str.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Room for CRLF normalisation (LF -> CRLF at most doubles) and the added
 * Date and Message-ID lines. */
#define MSG_OUT_MAX (2 * (size_t)MK_SMTP_MSG_HEADER_MAX + 4096)

/* ---- header end ---- */

long mk_smtp_msg_header_end(const uint8_t *p, size_t n, bool eof)
{
	const size_t lim = MK_SMTP_MSG_HEADER_MAX;
	size_t s = 0; /* start of the current line */
	while (s < n && s < lim) {
		if (p[s] == '\n')
			return (long)(s + 1);
		if (p[s] == '\r') {
			if (s + 1 == n)
				break; /* "\r" then maybe "\n": need more */
			if (p[s + 1] == '\n')
				return s + 2 > lim ? MK_ETOOBIG : (long)(s + 2);
		}
		size_t stop = n < lim ? n : lim;
		const uint8_t *nl = memchr(p + s, '\n', stop - s);
		if (nl == NULL) {
			s = stop;
			break;
		}
		s = (size_t)(nl - p) + 1;
	}
	/* no empty line in p[0..n) */
	if (eof)
		return n <= lim ? (long)n : MK_ETOOBIG;
	return n >= lim ? MK_ETOOBIG : -1;
}

/* ---- lists ---- */

void mk_smtp_msg_free_list(char ***list, unsigned *n)
{
	if (*list != NULL) {
		for (unsigned i = 0; i < *n; i++)
			mk_free((*list)[i]);
		MK_FREE(list);
	}
	*n = 0;
}

void mk_smtp_msg_init(struct mk_smtp_msg *m)
{
	memset(m, 0, sizeof(*m));
	mk_buf_init(&m->header, MSG_OUT_MAX);
}

void mk_smtp_msg_cleanup(struct mk_smtp_msg *m)
{
	mk_buf_cleanup(&m->header);
	mk_smtp_msg_free_list(&m->rcpt, &m->n_rcpt);
	mk_smtp_msg_free_list(&m->from, &m->n_from);
}

/* ---- characters ---- */

static bool is_atext(uint8_t c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80)
		return true; /* 8-bit: UTF-8 (RFC 6532), for SMTPUTF8 */
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool is_label_char(uint8_t c)
{
	/* letters, digits, hyphen; underscore for the intranet hosts that
	 * have one; 8-bit for UTF-8 domain names */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
	       c >= 0x80;
}

static bool is_dot_atom(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)s[i];
		if (c == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!is_atext(c)) {
			return false;
		}
	}
	return true;
}

/* Domain (after '@'): dot-separated labels, or a [literal]. */
static bool domain_valid(const char *d, size_t n)
{
	if (n == 0)
		return false;
	if (d[0] == '[') {
		if (n < 3 || d[n - 1] != ']')
			return false;
		for (size_t i = 1; i + 1 < n; i++) {
			uint8_t c = (uint8_t)d[i];
			if (c <= 0x20 || c >= 0x7f || c == '[' || c == ']' || c == '\\')
				return false;
		}
		return true;
	}
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)d[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (is_label_char(c)) {
			label++;
		} else {
			return false;
		}
	}
	return label > 0;
}

bool mk_smtp_msg_addr_valid(const char *addr)
{
	if (addr == NULL)
		return false;
	size_t len = strlen(addr);
	if (len == 0 || len > MK_SMTP_MSG_ADDR_MAX)
		return false;
	size_t i;
	if (addr[0] == '"') {
		for (i = 1;; i++) {
			uint8_t c = (uint8_t)addr[i];
			if (c == '\0')
				return false;
			if (c == '"')
				break;
			if (c == '\\') {
				uint8_t e = (uint8_t)addr[i + 1];
				if (e < 0x20 || e == 0x7f)
					return false;
				i++;
			} else if (c < 0x20 || c == 0x7f) {
				return false;
			}
		}
		i++;
		if (addr[i] != '@')
			return false;
	} else {
		const char *at = strchr(addr, '@');
		if (at == NULL)
			return false;
		i = (size_t)(at - addr);
		if (!is_dot_atom(addr, i))
			return false;
	}
	return domain_valid(addr + i + 1, len - i - 1);
}

bool mk_smtp_msg_addr_equal(const char *a, const char *b)
{
	/* RFC 5321 lets the local part be case-sensitive, but Exchange (and
	 * practically every server) is not: two spellings are one mailbox,
	 * and sending twice would only duplicate the message. */
	return strcasecmp(a, b) == 0;
}

/* ---- address-list lexer ---- */

struct perr {
	char msg[220];
	size_t off; /* offset in the value where the problem is */
	int code;
};

static int perr_set(struct perr *e, int code, size_t off, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int perr_set(struct perr *e, int code, size_t off, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	e->off = off;
	e->code = code;
	return code;
}

/* A short printable rendering of v[off..off+n) for messages. */
static void show(const char *v, size_t n, char *out, size_t outsz)
{
	size_t w = 0, i = 0;
	for (; i < n && w + 4 < outsz; i++) {
		uint8_t c = (uint8_t)v[i];
		out[w++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	if (i < n) {
		memcpy(out + w, "...", 3);
		w += 3;
	}
	out[w] = '\0';
}

enum tok_kind { TOK_END, TOK_ATOM, TOK_QUOTED, TOK_LITERAL, TOK_SPECIAL };

struct tok {
	enum tok_kind kind;
	char c; /* TOK_SPECIAL: one of < > @ , ; : . */
	size_t off, len;
};

struct lex {
	const char *v;
	size_t n, pos;
};

/* Skips white space, folding and (nested) comments. */
static int skip_cfws(struct lex *lx, struct perr *e)
{
	while (lx->pos < lx->n) {
		char c = lx->v[lx->pos];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			lx->pos++;
			continue;
		}
		if (c != '(')
			break;
		size_t start = lx->pos;
		unsigned depth = 0;
		for (;;) {
			if (lx->pos >= lx->n)
				return perr_set(e, MK_EINVAL, start, "unterminated comment");
			c = lx->v[lx->pos++];
			if (c == '\\') {
				if (lx->pos >= lx->n)
					return perr_set(e, MK_EINVAL, start, "unterminated comment");
				lx->pos++;
			} else if (c == '(') {
				depth++;
			} else if (c == ')') {
				if (--depth == 0)
					break;
			}
		}
	}
	return 0;
}

static int next_tok(struct lex *lx, struct tok *t, struct perr *e)
{
	int r = skip_cfws(lx, e);
	if (r < 0)
		return r;
	t->off = lx->pos;
	t->len = 0;
	t->c = 0;
	if (lx->pos >= lx->n) {
		t->kind = TOK_END;
		return 0;
	}
	uint8_t c = (uint8_t)lx->v[lx->pos];
	if (c == '"' || c == '[') {
		char close = c == '"' ? '"' : ']';
		size_t i = lx->pos + 1;
		for (;; i++) {
			if (i >= lx->n)
				return perr_set(e, MK_EINVAL, lx->pos,
						c == '"' ? "unterminated quoted string"
							 : "unterminated domain literal");
			if (lx->v[i] == '\\') {
				i++;
				if (i >= lx->n)
					return perr_set(e, MK_EINVAL, lx->pos,
							c == '"' ? "unterminated quoted string"
								 : "unterminated domain literal");
			} else if (lx->v[i] == close) {
				break;
			} else if (c == '[' && lx->v[i] == '[') {
				return perr_set(e, MK_EINVAL, i, "'[' inside a domain literal");
			}
		}
		t->kind = c == '"' ? TOK_QUOTED : TOK_LITERAL;
		t->len = i + 1 - lx->pos;
		lx->pos = i + 1;
		return 0;
	}
	if (strchr("<>@,;:.", c) != NULL && c != 0) {
		t->kind = TOK_SPECIAL;
		t->c = (char)c;
		t->len = 1;
		lx->pos++;
		return 0;
	}
	if (is_atext(c)) {
		size_t i = lx->pos;
		while (i < lx->n && is_atext((uint8_t)lx->v[i]))
			i++;
		t->kind = TOK_ATOM;
		t->len = i - lx->pos;
		lx->pos = i;
		return 0;
	}
	if (c == ')')
		return perr_set(e, MK_EINVAL, lx->pos, "')' without '('");
	if (c == ']')
		return perr_set(e, MK_EINVAL, lx->pos, "']' without '['");
	if (c == '\\')
		return perr_set(e, MK_EINVAL, lx->pos, "backslash outside a quoted string");
	return perr_set(e, MK_EINVAL, lx->pos, "invalid character 0x%02x", c);
}

static int peek_tok(const struct lex *lx, struct tok *t, struct perr *e)
{
	struct lex copy = *lx;
	return next_tok(&copy, t, e);
}

static bool is_special(const struct tok *t, char c)
{
	return t->kind == TOK_SPECIAL && t->c == c;
}

static bool is_word(const struct tok *t)
{
	return t->kind == TOK_ATOM || t->kind == TOK_QUOTED;
}

/* ---- addr-spec ---- */

struct abuf {
	char s[MK_SMTP_MSG_ADDR_MAX + 1];
	size_t n;
	bool over;
};

static void ab_put(struct abuf *b, char c)
{
	if (b->n + 1 >= sizeof(b->s)) {
		b->over = true;
		return;
	}
	b->s[b->n++] = c;
	b->s[b->n] = '\0';
}

/* Reads a local part from the tokens at lx (word *("." word), obs-local-part
 * with CFWS around the dots), up to and including '@'. The result is the
 * canonical SMTP form: a dot-string when the content is one, else a single
 * quoted string ("a b".c becomes "a b.c"). */
static int read_local(struct lex *lx, struct abuf *out, struct perr *e)
{
	struct abuf content = {.n = 0};
	struct tok t;
	bool want_word = true;
	size_t start = lx->pos;
	int r;
	for (;;) {
		if ((r = next_tok(lx, &t, e)) < 0)
			return r;
		if (want_word) {
			if (!is_word(&t)) {
				if (is_special(&t, '@') && content.n == 0)
					return perr_set(e, MK_EINVAL, t.off, "missing local part before '@'");
				return perr_set(e, MK_EINVAL, t.off, "invalid local part");
			}
			if (t.kind == TOK_ATOM) {
				for (size_t i = 0; i < t.len; i++)
					ab_put(&content, lx->v[t.off + i]);
			} else {
				for (size_t i = t.off + 1; i + 1 < t.off + t.len; i++) {
					uint8_t c = (uint8_t)lx->v[i];
					if (c == '\\')
						c = (uint8_t)lx->v[++i];
					/* SMTP's quoted-string holds no
					 * controls (RFC 5321 qtextSMTP) */
					if (c < 0x20 || c == 0x7f)
						return perr_set(e, MK_EINVAL, t.off,
								"control character in quoted local part");
					ab_put(&content, (char)c);
				}
			}
			want_word = false;
		} else if (is_special(&t, '.')) {
			ab_put(&content, '.');
			want_word = true;
		} else if (is_special(&t, '@')) {
			break;
		} else {
			return perr_set(e, MK_EINVAL, t.off, "invalid local part");
		}
	}
	if (content.over)
		return perr_set(e, MK_ETOOBIG, start, "address longer than %d octets", MK_SMTP_MSG_ADDR_MAX);
	if (content.n == 0)
		return perr_set(e, MK_EINVAL, start, "empty local part");
	out->n = 0;
	out->over = false;
	if (is_dot_atom(content.s, content.n)) {
		for (size_t i = 0; i < content.n; i++)
			ab_put(out, content.s[i]);
	} else {
		ab_put(out, '"');
		for (size_t i = 0; i < content.n; i++) {
			if (content.s[i] == '"' || content.s[i] == '\\')
				ab_put(out, '\\');
			ab_put(out, content.s[i]);
		}
		ab_put(out, '"');
	}
	ab_put(out, '@');
	if (out->over)
		return perr_set(e, MK_ETOOBIG, start, "address longer than %d octets", MK_SMTP_MSG_ADDR_MAX);
	return 0;
}

/* Reads a domain (dot-atom, obs-domain, or a literal) and appends it. */
static int read_domain(struct lex *lx, struct abuf *out, struct perr *e)
{
	struct tok t;
	int r;
	size_t start = out->n;
	if ((r = next_tok(lx, &t, e)) < 0)
		return r;
	if (t.kind == TOK_LITERAL) {
		for (size_t i = 0; i < t.len; i++) {
			char c = lx->v[t.off + i];
			if (c != ' ' && c != '\t' && c != '\r' && c != '\n') /* FWS inside is not content */
				ab_put(out, c);
		}
	} else {
		for (;;) {
			if (t.kind != TOK_ATOM)
				return perr_set(e, MK_EINVAL, t.off,
						t.kind == TOK_END ? "missing domain after '@'" : "invalid domain");
			for (size_t i = 0; i < t.len; i++)
				ab_put(out, lx->v[t.off + i]);
			struct tok dot;
			if ((r = peek_tok(lx, &dot, e)) < 0)
				return r;
			if (!is_special(&dot, '.'))
				break;
			(void)next_tok(lx, &dot, e);
			ab_put(out, '.');
			if ((r = next_tok(lx, &t, e)) < 0)
				return r;
		}
	}
	if (out->over)
		return perr_set(e, MK_ETOOBIG, t.off, "address longer than %d octets", MK_SMTP_MSG_ADDR_MAX);
	if (!domain_valid(out->s + start, out->n - start)) {
		char d[64];
		show(out->s + start, out->n - start, d, sizeof(d));
		return perr_set(e, MK_EINVAL, t.off, "invalid domain \"%s\"", d);
	}
	return 0;
}

/* Appends addr unless an equal one is there already. */
static int list_add(char ***list, unsigned *n_list, const char *addr, size_t off, struct perr *e)
{
	for (unsigned i = 0; i < *n_list; i++)
		if (mk_smtp_msg_addr_equal((*list)[i], addr))
			return 0;
	if (*n_list >= MK_SMTP_MSG_RCPT_MAX)
		return perr_set(e, MK_ETOOBIG, off, "more than %d addresses", MK_SMTP_MSG_RCPT_MAX);
	*list = mk_xrealloc(*list, sizeof(char *) * (*n_list + 1));
	(*list)[(*n_list)++] = mk_xstrdup(addr);
	return 0;
}

/* After an address: ',' or the end, or ';' (closing the group; outside
 * one the caller reports it). */
static int expect_separator(struct lex *lx, struct perr *e)
{
	struct tok t;
	int r = peek_tok(lx, &t, e);
	if (r < 0)
		return r;
	if (t.kind == TOK_END || is_special(&t, ',') || is_special(&t, ';'))
		return 0;
	char s[40];
	show(lx->v + t.off, lx->n - t.off, s, sizeof(s));
	return perr_set(e, MK_EINVAL, t.off, "expected ',' between addresses at \"%s\"", s);
}

static int parse_list(const char *v, size_t n, char ***list, unsigned *n_list, struct perr *e)
{
	struct lex lx = {v, n, 0};
	struct tok t;
	bool in_group = false;
	size_t group_off = 0;
	int r;
	for (;;) {
		if ((r = next_tok(&lx, &t, e)) < 0)
			return r;
		if (t.kind == TOK_END)
			break;
		if (is_special(&t, ','))
			continue; /* empty list element (obs-addr-list) */
		if (is_special(&t, ';')) {
			if (!in_group)
				return perr_set(e, MK_EINVAL, t.off, "';' outside a group");
			in_group = false;
			if ((r = expect_separator(&lx, e)) < 0)
				return r;
			continue;
		}
		/* a phrase (display name, group name, or the local part) */
		size_t start = t.off;
		size_t words = 0;
		struct lex at_start = lx;
		at_start.pos = start;
		while (is_word(&t) || is_special(&t, '.')) {
			words++;
			if ((r = next_tok(&lx, &t, e)) < 0)
				return r;
		}
		struct abuf a = {.n = 0};
		if (is_special(&t, '<')) {
			/* angle-addr, with an obsolete route to drop */
			struct tok p;
			if ((r = peek_tok(&lx, &p, e)) < 0)
				return r;
			if (is_special(&p, '>'))
				return perr_set(e, MK_EINVAL, t.off, "empty address <>");
			if (is_special(&p, '@')) {
				for (;;) {
					if ((r = next_tok(&lx, &p, e)) < 0)
						return r;
					if (is_special(&p, ':'))
						break;
					if (is_special(&p, ','))
						continue;
					if (!is_special(&p, '@'))
						return perr_set(e, MK_EINVAL, p.off, "invalid route in <...>");
					struct abuf scratch = {.n = 0};
					if ((r = read_domain(&lx, &scratch, e)) < 0)
						return r;
				}
			}
			if ((r = read_local(&lx, &a, e)) < 0)
				return r;
			if ((r = read_domain(&lx, &a, e)) < 0)
				return r;
			if ((r = next_tok(&lx, &p, e)) < 0)
				return r;
			if (!is_special(&p, '>'))
				return perr_set(e, MK_EINVAL, t.off, "missing '>' after the address");
		} else if (is_special(&t, ':')) {
			if (in_group)
				return perr_set(e, MK_EINVAL, t.off, "group inside a group");
			if (words == 0)
				return perr_set(e, MK_EINVAL, t.off, "group without a name");
			in_group = true;
			group_off = start;
			continue;
		} else if (is_special(&t, '@')) {
			/* addr-spec: the phrase was the local part */
			lx = at_start;
			if ((r = read_local(&lx, &a, e)) < 0)
				return r;
			if ((r = read_domain(&lx, &a, e)) < 0)
				return r;
		} else if (words > 0 && (t.kind == TOK_END || is_special(&t, ',') || is_special(&t, ';'))) {
			char s[48];
			show(v + start, t.off - start, s, sizeof(s));
			/* trailing blanks of the phrase are not part of the name */
			size_t k = strlen(s);
			while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t' || s[k - 1] == '?'))
				s[--k] = '\0';
			return perr_set(e, MK_EINVAL, start, "\"%s\" is not an address (no '@')", s);
		} else {
			char s[40];
			show(v + t.off, t.len ? t.len : 1, s, sizeof(s));
			return perr_set(e, MK_EINVAL, t.off, "unexpected \"%s\"", t.kind == TOK_END ? "end" : s);
		}
		if (MK_NEVER(!mk_smtp_msg_addr_valid(a.s)))
			return perr_set(e, MK_EINVAL, start, "invalid address");
		if ((r = list_add(list, n_list, a.s, start, e)) < 0)
			return r;
		if ((r = expect_separator(&lx, e)) < 0)
			return r;
	}
	if (in_group)
		return perr_set(e, MK_EINVAL, group_off, "group not closed with ';'");
	return 0;
}

int mk_smtp_msg_parse_addresses(const char *value, size_t n, char ***list, unsigned *n_list, char *error, size_t errsz)
{
	struct perr e = {.code = 0};
	int r = parse_list(value, n, list, n_list, &e);
	if (r < 0 && error != NULL && errsz > 0)
		snprintf(error, errsz, "%s", e.msg);
	return r;
}

/* ---- Date ---- */

static void civil_from_days(int64_t z, int64_t *y_r, unsigned *m_r, unsigned *d_r)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d_r = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m_r = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y_r = yoe + era * 400 + (*m_r <= 2);
}

void mk_smtp_msg_format_date(int64_t t, int tz_minutes, char *buf, size_t n)
{
	static const char *const wd[7] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
	static const char *const mon[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	if (tz_minutes > 99 * 60 + 59 || tz_minutes < -(99 * 60 + 59))
		tz_minutes = 0;
	int64_t l = t + (int64_t)tz_minutes * 60;
	int64_t days = l >= 0 ? l / 86400 : -((-l + 86399) / 86400);
	int64_t secs = l - days * 86400;
	int64_t y;
	unsigned m, d;
	civil_from_days(days, &y, &m, &d);
	int off = tz_minutes < 0 ? -tz_minutes : tz_minutes;
	snprintf(buf, n, "%s, %02u %s %04lld %02d:%02d:%02d %c%02d%02d", wd[((days % 7) + 7) % 7], d, mon[m - 1],
		 (long long)y, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60), tz_minutes < 0 ? '-' : '+',
		 off / 60, off % 60);
}

/* ---- prepare ---- */

enum fkind { F_OTHER, F_FROM, F_SENDER, F_TO, F_CC, F_BCC, F_RESENT_BCC, F_DATE, F_MSGID };

static const char *const fnames[] = {"", "From", "Sender", "To", "Cc", "Bcc", "Resent-Bcc", "Date", "Message-ID"};

static enum fkind field_kind(const uint8_t *name, size_t n)
{
	for (int k = F_FROM; k <= F_MSGID; k++)
		if (strlen(fnames[k]) == n && strncasecmp((const char *)name, fnames[k], n) == 0)
			return (enum fkind)k;
	return F_OTHER;
}

struct field {
	size_t start, end; /* the raw field, all its lines with their ends */
	size_t value;	   /* first byte after the colon */
	unsigned line;
	enum fkind kind;
};

struct prep {
	struct mk_smtp_msg *m;
	const uint8_t *p;
	const struct mk_smtp_msg_opts *o;
	struct mk_buf unfolded;
	unsigned seen[F_MSGID + 1]; /* line of the first such field */
};

static int msg_fail(struct mk_smtp_msg *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int msg_fail(struct mk_smtp_msg *m, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->error, sizeof(m->error), fmt, ap);
	va_end(ap);
	return code;
}

/* The field's value without its line breaks (RFC 5322 §2.2.3 unfolding). */
static int unfold(struct prep *pp, const struct field *f)
{
	mk_buf_reset(&pp->unfolded);
	for (size_t i = f->value; i < f->end; i++) {
		uint8_t c = pp->p[i];
		if (c == '\n' || (c == '\r' && i + 1 < f->end && pp->p[i + 1] == '\n'))
			continue;
		if (mk_buf_append(&pp->unfolded, &c, 1) < 0)
			return MK_ETOOBIG;
	}
	return 0;
}

/* The input line holding byte `off` of the unfolded value. */
static unsigned line_of(const struct prep *pp, const struct field *f, size_t off)
{
	unsigned line = f->line;
	size_t k = 0;
	for (size_t i = f->value; i < f->end; i++) {
		uint8_t c = pp->p[i];
		if (c == '\n') {
			if (i + 1 < f->end) /* not the field's own final line end */
				line++;
			continue;
		}
		if (c == '\r' && i + 1 < f->end && pp->p[i + 1] == '\n')
			continue;
		if (k++ == off)
			break;
	}
	return line;
}

static int emit(struct prep *pp, const struct field *f)
{
	struct mk_buf *h = &pp->m->header;
	size_t s = f->start;
	while (s < f->end) {
		const uint8_t *nl = memchr(pp->p + s, '\n', f->end - s);
		size_t le = nl ? (size_t)(nl - pp->p) : f->end;
		size_t ce = le > s && pp->p[le - 1] == '\r' ? le - 1 : le;
		if (mk_buf_append(h, pp->p + s, ce - s) < 0 || mk_buf_append(h, "\r\n", 2) < 0)
			return msg_fail(pp->m, MK_ETOOBIG, "header longer than %zu bytes", (size_t)MSG_OUT_MAX);
		s = nl ? le + 1 : f->end;
	}
	return 0;
}

static int addr_field(struct prep *pp, const struct field *f, char ***list, unsigned *n)
{
	struct perr e = {.code = 0};
	int r = parse_list((const char *)pp->unfolded.data, pp->unfolded.len, list, n, &e);
	if (r < 0)
		return msg_fail(pp->m, r, "line %u: %s in %s", line_of(pp, f, e.off), e.msg, fnames[f->kind]);
	return 0;
}

static int finish_field(struct prep *pp, const struct field *f)
{
	struct mk_smtp_msg *m = pp->m;
	int r;
	if (f->kind == F_FROM || f->kind == F_SENDER || f->kind == F_DATE || f->kind == F_MSGID) {
		if (pp->seen[f->kind] != 0)
			return msg_fail(m, MK_EINVAL, "line %u: a second %s field (the first is on line %u)", f->line,
					fnames[f->kind], pp->seen[f->kind]);
	}
	if (pp->seen[f->kind] == 0)
		pp->seen[f->kind] = f->line;
	if (f->kind != F_OTHER && f->kind != F_DATE && (r = unfold(pp, f)) < 0)
		return msg_fail(m, r, "line %u: %s too long", f->line, fnames[f->kind]);
	switch (f->kind) {
	case F_FROM:
		if ((r = addr_field(pp, f, &m->from, &m->n_from)) < 0)
			return r;
		if (m->n_from == 0)
			return msg_fail(m, MK_EINVAL, "line %u: no address in From", f->line);
		break;
	case F_SENDER: {
		char **l = NULL;
		unsigned n = 0;
		r = addr_field(pp, f, &l, &n);
		if (r == 0 && n != 1)
			r = msg_fail(m, MK_EINVAL, "line %u: Sender must hold exactly one address", f->line);
		if (r == 0)
			mk_strlcpy(m->sender, l[0], sizeof(m->sender));
		mk_smtp_msg_free_list(&l, &n);
		if (r < 0)
			return r;
		break;
	}
	case F_TO:
	case F_CC:
	case F_BCC:
		if (pp->o->rcpt_from_header && (r = addr_field(pp, f, &m->rcpt, &m->n_rcpt)) < 0)
			return r;
		break;
	case F_MSGID: {
		const char *v = (const char *)pp->unfolded.data;
		size_t a = 0, b = pp->unfolded.len;
		while (a < b && (v[a] == ' ' || v[a] == '\t'))
			a++;
		while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
			b--;
		bool ok = b - a >= 3 && v[a] == '<' && v[b - 1] == '>' && b - a < sizeof(m->message_id);
		for (size_t i = a; ok && i < b; i++)
			if ((uint8_t)v[i] <= 0x20 || (uint8_t)v[i] == 0x7f || (i > a && i + 1 < b && v[i] == '>'))
				ok = false;
		if (!ok)
			return msg_fail(m, MK_EINVAL, "line %u: Message-ID is not of the form <id@domain>", f->line);
		memcpy(m->message_id, v + a, b - a);
		m->message_id[b - a] = '\0';
		break;
	}
	default:
		break;
	}
	if (f->kind == F_BCC || f->kind == F_RESENT_BCC) {
		/* blind copies stay blind: the whole field, continuation
		 * lines included, is left out of what is sent */
		m->removed_bcc = true;
		return 0;
	}
	return emit(pp, f);
}

static const char *msgid_domain(const struct mk_smtp_msg *m, const struct mk_smtp_msg_opts *o)
{
	if (o->msgid_domain != NULL && domain_valid(o->msgid_domain, strlen(o->msgid_domain)) &&
	    o->msgid_domain[0] != '[')
		return o->msgid_domain;
	const char *at = strrchr(m->from[0], '@');
	if (at != NULL && at[1] != '[')
		return at + 1;
	return "localhost";
}

static bool has_8bit(const char *s)
{
	for (; *s; s++)
		if ((uint8_t)*s >= 0x80)
			return true;
	return false;
}

static int prepare(struct prep *pp, size_t hlen)
{
	struct mk_smtp_msg *m = pp->m;
	const uint8_t *p = pp->p;
	struct field f = {0};
	bool in_field = false;
	unsigned line = 0;
	int r;
	for (size_t pos = 0; pos < hlen;) {
		line++;
		const uint8_t *nl = memchr(p + pos, '\n', hlen - pos);
		size_t le = nl ? (size_t)(nl - p) : hlen;
		size_t next = nl ? le + 1 : hlen;
		size_t ce = le > pos && p[le - 1] == '\r' ? le - 1 : le;
		if (ce == pos)
			break; /* the empty line: end of the header */
		for (size_t i = pos; i < ce; i++) {
			if (p[i] == '\0')
				return msg_fail(m, MK_EINVAL, "line %u: NUL byte in the header", line);
			if (p[i] == '\r')
				return msg_fail(m, MK_EINVAL, "line %u: CR without LF in the header", line);
			if (p[i] >= 0x80)
				m->header_8bit = true;
		}
		if (p[pos] == ' ' || p[pos] == '\t') {
			if (!in_field)
				return msg_fail(m, MK_EINVAL,
						"line %u: the header starts with white space (a continuation line)",
						line);
			f.end = next;
			pos = next;
			continue;
		}
		if (in_field && (r = finish_field(pp, &f)) < 0)
			return r;
		const uint8_t *colon = memchr(p + pos, ':', ce - pos);
		if (line == 1 && ce - pos >= 5 && memcmp(p + pos, "From ", 5) == 0)
			return msg_fail(m, MK_EINVAL, "line 1: an mbox \"From \" line, not a header field");
		if (colon == NULL)
			return msg_fail(m, MK_EINVAL, "line %u: header line without a colon", line);
		size_t ne = (size_t)(colon - p);
		while (ne > pos && (p[ne - 1] == ' ' || p[ne - 1] == '\t'))
			ne--; /* obs-optional: "Subject :" */
		if (ne == pos)
			return msg_fail(m, MK_EINVAL, "line %u: header field without a name", line);
		for (size_t i = pos; i < ne; i++)
			if (p[i] <= 0x20 || p[i] >= 0x7f)
				return msg_fail(m, MK_EINVAL, "line %u: invalid character in a header field name",
						line);
		f.start = pos;
		f.end = next;
		f.value = (size_t)(colon - p) + 1;
		f.line = line;
		f.kind = field_kind(p + pos, ne - pos);
		in_field = true;
		pos = next;
	}
	if (in_field && (r = finish_field(pp, &f)) < 0)
		return r;

	if (m->n_from == 0)
		return msg_fail(m, MK_EINVAL, "no From field in the header");
	if (pp->o->rcpt_from_header && m->n_rcpt == 0)
		return msg_fail(m, MK_EINVAL, "no recipient in To, Cc or Bcc");
	struct mk_buf *h = &m->header;
	if (pp->seen[F_DATE] == 0) {
		char d[64];
		mk_smtp_msg_format_date(pp->o->now, pp->o->tz_minutes, d, sizeof(d));
		if (mk_buf_printf(h, "Date: %s\r\n", d) < 0)
			return msg_fail(m, MK_ETOOBIG, "header too long");
		m->added_date = true;
	}
	if (pp->seen[F_MSGID] == 0) {
		if (MK_NEVER(pp->o->random == NULL))
			return msg_fail(m, MK_EINVAL, "no random bytes for a Message-ID");
		char hex[33];
		for (int i = 0; i < 16; i++) {
			hex[2 * i] = "0123456789abcdef"[pp->o->random[i] >> 4];
			hex[2 * i + 1] = "0123456789abcdef"[pp->o->random[i] & 15];
		}
		hex[32] = '\0';
		snprintf(m->message_id, sizeof(m->message_id), "<%s@%s>", hex, msgid_domain(m, pp->o));
		if (mk_buf_printf(h, "Message-ID: %s\r\n", m->message_id) < 0)
			return msg_fail(m, MK_ETOOBIG, "header too long");
		m->added_message_id = true;
	}
	if (mk_buf_append(h, "\r\n", 2) < 0)
		return msg_fail(m, MK_ETOOBIG, "header too long");
	for (unsigned i = 0; i < m->n_rcpt; i++)
		m->smtputf8 |= has_8bit(m->rcpt[i]);
	for (unsigned i = 0; i < m->n_from; i++)
		m->smtputf8 |= has_8bit(m->from[i]);
	m->smtputf8 |= has_8bit(m->sender);
	return 0;
}

int mk_smtp_msg_prepare(struct mk_smtp_msg *m, const uint8_t *p, size_t n, const struct mk_smtp_msg_opts *opts)
{
	MK_ASSERT(opts != NULL);
	/* a second call starts over */
	mk_smtp_msg_cleanup(m);
	mk_smtp_msg_init(m);
	long he = mk_smtp_msg_header_end(p, n, true);
	if (he < 0)
		return msg_fail(m, MK_ETOOBIG, "header block longer than %d bytes", MK_SMTP_MSG_HEADER_MAX);
	m->body_offset = (size_t)he;
	struct prep pp = {.m = m, .p = p, .o = opts};
	mk_buf_init(&pp.unfolded, MK_SMTP_MSG_HEADER_MAX);
	int r = prepare(&pp, (size_t)he);
	mk_buf_cleanup(&pp.unfolded);
	if (r < 0) {
		/* nothing half-made is left for a caller that ignores r */
		mk_buf_reset(&m->header);
		mk_smtp_msg_free_list(&m->rcpt, &m->n_rcpt);
	}
	return r;
}
