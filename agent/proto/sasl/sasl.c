/* SPDX-License-Identifier: MIT */
/*
 * sasl.c - SASL mechanisms as pure step functions (see mk_sasl.h): PLAIN
 * (RFC 4616), LOGIN, XOAUTH2 (OUTLOOK.md §1.2) and OAUTHBEARER (RFC 7628).
 * Raw response bytes only: the protocol cores base64 and frame them.
 *
 * Secrets (password, token) live in s->secret and in the caller's output
 * buffer; both are sized once before being written, so no realloc leaves
 * a copy behind, and s->user/s->secret are wiped on cleanup. The failure
 * challenge of the bearer mechanisms is a small JSON object read by a
 * bounded scanner here (three string fields), not by a JSON library:
 * proto cores link mk_util only. No I/O, no clock.
 */
#include "mk_sasl.h"
#include "mk_err.h"
#include "mk_limits.h"
#include "mk_str.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* LOGIN: which answers went out (s->step is a bit set for it). */
#define LOGIN_SENT_USER 1u
#define LOGIN_SENT_PASS 2u

const char *mk_sasl_mech_name(enum mk_sasl_mech mech)
{
	switch (mech) {
	case MK_SASL_PLAIN:
		return "PLAIN";
	case MK_SASL_LOGIN:
		return "LOGIN";
	case MK_SASL_XOAUTH2:
		return "XOAUTH2";
	case MK_SASL_OAUTHBEARER:
		return "OAUTHBEARER";
	}
	return "?";
}

int mk_sasl_mech_parse(const char *name, enum mk_sasl_mech *mech_r)
{
	static const enum mk_sasl_mech all[] = {MK_SASL_PLAIN, MK_SASL_LOGIN, MK_SASL_XOAUTH2, MK_SASL_OAUTHBEARER};
	for (size_t i = 0; name != NULL && i < sizeof(all) / sizeof(all[0]); i++)
		if (strcasecmp(name, mk_sasl_mech_name(all[i])) == 0) {
			*mech_r = all[i];
			return 0;
		}
	return MK_ENOTSUP;
}

/* RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
 * "+" / "/" ) *"=". A token outside it would break the bearer framing. */
static bool b64token(const uint8_t *p, size_t n)
{
	size_t i = 0;
	for (; i < n; i++) {
		uint8_t ch = p[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		      ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/'))
			break;
	}
	if (i == 0)
		return false;
	for (; i < n; i++)
		if (p[i] != '=')
			return false;
	return true;
}

/* The raw initial response's length (see build_initial). */
static size_t initial_len(const struct mk_sasl *s)
{
	size_t u = s->user.len, t = s->secret.len;
	switch (s->mech) {
	case MK_SASL_PLAIN:
		return 1 + u + 1 + t;
	case MK_SASL_XOAUTH2:
		return 5 + u + 13 + t + 2;
	case MK_SASL_OAUTHBEARER: {
		size_t a = 0;
		for (size_t i = 0; i < u; i++)
			a += s->user.data[i] == ',' || s->user.data[i] == '=' ? 3 : 1;
		size_t n = 2 + (u > 0 ? 2 + a : 0) + 1; /* "n," "a=" user "," */
		if (s->host[0] != '\0')
			n += 6 + strlen(s->host); /* "\x01host=" */
		if (s->port != 0)
			n += 6 + 10; /* "\x01port=" digits (at most) */
		return n + 13 + t + 2;
	}
	case MK_SASL_LOGIN:
		break;
	}
	return u > t ? u : t;
}

/* Appends p[0..n) to a buffer already reserved for it. */
static void put(struct mk_buf *out, const void *p, size_t n)
{
	int r = mk_buf_append(out, p, n);
	MK_ASSERT(r == 0);
}

static int build_initial(struct mk_sasl *s, struct mk_buf *out)
{
	size_t need = initial_len(s);
	if (mk_buf_reserve(out, need, NULL) < 0)
		return MK_ETOOBIG;
	const uint8_t *u = s->user.data != NULL ? s->user.data : (const uint8_t *)"";
	switch (s->mech) {
	case MK_SASL_PLAIN:
		/* RFC 4616: [authzid] NUL authcid NUL passwd; no authzid */
		put(out, "", 1);
		put(out, u, s->user.len);
		put(out, "", 1);
		put(out, s->secret.data, s->secret.len);
		break;
	case MK_SASL_XOAUTH2:
		put(out, "user=", 5);
		put(out, u, s->user.len);
		put(out, "\x01" "auth=Bearer ", 13);
		put(out, s->secret.data, s->secret.len);
		put(out, "\x01\x01", 2);
		break;
	case MK_SASL_OAUTHBEARER:
		/* RFC 7628 §3.1: gs2-header "n,a=" saslname "," then kvpairs;
		 * saslname escapes ',' as =2C and '=' as =3D (RFC 5801). */
		put(out, "n,", 2);
		if (s->user.len > 0) {
			put(out, "a=", 2);
			for (size_t i = 0; i < s->user.len; i++) {
				if (u[i] == ',')
					put(out, "=2C", 3);
				else if (u[i] == '=')
					put(out, "=3D", 3);
				else
					put(out, &u[i], 1);
			}
		}
		put(out, ",", 1);
		if (s->host[0] != '\0') {
			put(out, "\x01" "host=", 6);
			put(out, s->host, strlen(s->host));
		}
		if (s->port != 0) {
			char num[16];
			int l = snprintf(num, sizeof(num), "%u", s->port);
			put(out, "\x01" "port=", 6);
			put(out, num, (size_t)l);
		}
		put(out, "\x01" "auth=Bearer ", 13);
		put(out, s->secret.data, s->secret.len);
		put(out, "\x01\x01", 2);
		break;
	case MK_SASL_LOGIN:
		return MK_ESTATE;
	}
	return 0;
}

void mk_sasl_cleanup(struct mk_sasl *s)
{
	mk_buf_cleanup_wipe(&s->user);
	mk_buf_cleanup_wipe(&s->secret);
	s->step = 0;
}

int mk_sasl_init(struct mk_sasl *s, enum mk_sasl_mech mech, const char *user, const uint8_t *secret,
		 size_t secret_len, const char *host, unsigned port)
{
	memset(s, 0, sizeof(*s));
	s->mech = mech;
	mk_buf_init(&s->user, MK_LIMIT_SASL_LINE);
	mk_buf_init(&s->secret, MK_LIMIT_SASL_LINE);
	if (mech < MK_SASL_PLAIN || mech > MK_SASL_OAUTHBEARER)
		return MK_EINVAL;
	size_t ul = user != NULL ? strlen(user) : 0;
	/* only OAUTHBEARER may leave the user out (gs2 "n,,") */
	if ((ul == 0 && mech != MK_SASL_OAUTHBEARER) || (user != NULL && memchr(user, '\x01', ul) != NULL))
		return MK_EINVAL;
	if (secret == NULL || secret_len == 0)
		return MK_EINVAL;
	bool bearer = mech == MK_SASL_XOAUTH2 || mech == MK_SASL_OAUTHBEARER;
	if (bearer && !b64token(secret, secret_len))
		return MK_EINVAL;
	if (mech == MK_SASL_PLAIN && memchr(secret, '\0', secret_len) != NULL)
		return MK_EINVAL; /* would end the password early */
	if (host != NULL && mech == MK_SASL_OAUTHBEARER) {
		size_t hl = strlen(host);
		if (hl >= sizeof(s->host))
			return MK_EINVAL;
		for (size_t i = 0; i < hl; i++)
			if ((unsigned char)host[i] <= 0x20 || host[i] == 0x7f)
				return MK_EINVAL;
		memcpy(s->host, host, hl + 1);
	}
	if (mech == MK_SASL_OAUTHBEARER)
		s->port = port;
	if (ul > MK_LIMIT_SASL_LINE || secret_len > MK_LIMIT_SASL_LINE)
		return MK_ETOOBIG;
	/* sized once: no realloc leaves a copy of a secret in freed memory */
	if (mk_buf_reserve(&s->user, ul, NULL) < 0 || mk_buf_reserve(&s->secret, secret_len, NULL) < 0)
		return MK_ETOOBIG;
	(void)mk_buf_append(&s->user, user != NULL ? user : "", ul);
	(void)mk_buf_append(&s->secret, secret, secret_len);
	/* the response must fit one protocol line once base64'd (+ CRLF) */
	if (MK_BASE64_ENCLEN(initial_len(s)) + 2 > MK_LIMIT_SASL_LINE) {
		mk_sasl_cleanup(s);
		return MK_ETOOBIG;
	}
	return 0;
}

bool mk_sasl_has_initial(const struct mk_sasl *s)
{
	return s->mech != MK_SASL_LOGIN;
}

int mk_sasl_initial(struct mk_sasl *s, struct mk_buf *out)
{
	if (s->mech == MK_SASL_LOGIN || s->step != 0 || s->failed || s->secret.len == 0)
		return MK_ESTATE;
	int r = build_initial(s, out);
	if (r == 0)
		s->step = 1;
	return r;
}

/* ---- the failure challenge ({"status":"401","schemes":"bearer","scope":"..."}) ---- */

struct json_scan {
	const uint8_t *p;
	size_t n, i;
};

static void ws(struct json_scan *j)
{
	while (j->i < j->n && (j->p[j->i] == ' ' || j->p[j->i] == '\t' || j->p[j->i] == '\r' || j->p[j->i] == '\n'))
		j->i++;
}

/* A JSON string at j->i into dst (printable ASCII kept, anything else
 * shown as '?', truncated to dstsz-1). Returns false when malformed. */
static bool jstring(struct json_scan *j, char *dst, size_t dstsz)
{
	size_t o = 0;
	if (j->i >= j->n || j->p[j->i] != '"')
		return false;
	j->i++;
	while (j->i < j->n) {
		uint8_t ch = j->p[j->i++];
		if (ch == '"') {
			if (dstsz > 0)
				dst[o] = '\0';
			return true;
		}
		if (ch == '\\') {
			if (j->i >= j->n)
				return false;
			ch = j->p[j->i++];
			if (ch == 'u') {
				unsigned v = 0;
				for (int k = 0; k < 4; k++, j->i++) {
					if (j->i >= j->n)
						return false;
					uint8_t h = j->p[j->i];
					int d = h >= '0' && h <= '9' ? h - '0'
						: (h | 0x20) >= 'a' && (h | 0x20) <= 'f' ? (h | 0x20) - 'a' + 10 : -1;
					if (d < 0)
						return false;
					v = v * 16 + (unsigned)d;
				}
				ch = v >= 0x20 && v < 0x7f ? (uint8_t)v : '?';
			} else if (ch == 'n' || ch == 't' || ch == 'r' || ch == 'b' || ch == 'f') {
				ch = ' ';
			}
		}
		if (ch < 0x20 || ch >= 0x7f)
			ch = '?';
		if (o + 1 < dstsz)
			dst[o++] = (char)ch;
	}
	return false;
}

/* Skips any JSON value (nested objects and arrays bounded by depth). */
static bool jskip(struct json_scan *j, char *num, size_t numsz)
{
	char tmp[2];
	ws(j);
	if (j->i >= j->n)
		return false;
	if (j->p[j->i] == '"')
		return jstring(j, num != NULL ? num : tmp, num != NULL ? numsz : sizeof(tmp));
	if (j->p[j->i] == '{' || j->p[j->i] == '[') {
		unsigned depth = 0;
		while (j->i < j->n) {
			uint8_t ch = j->p[j->i];
			if (ch == '"') {
				if (!jstring(j, tmp, sizeof(tmp)))
					return false;
				continue;
			}
			j->i++;
			if (ch == '{' || ch == '[') {
				if (++depth > 16)
					return false;
			} else if ((ch == '}' || ch == ']') && --depth == 0) {
				return true;
			}
		}
		return false;
	}
	/* number, true, false, null: a bare token (a numeric status is kept) */
	size_t s = j->i, o = 0;
	while (j->i < j->n && j->p[j->i] != ',' && j->p[j->i] != '}' && j->p[j->i] != ']' && j->p[j->i] != ' ')
		j->i++;
	for (size_t k = s; num != NULL && k < j->i && o + 1 < numsz; k++)
		num[o++] = j->p[k] >= 0x20 && j->p[k] < 0x7f ? (char)j->p[k] : '?';
	if (num != NULL && numsz > 0)
		num[o] = '\0';
	return j->i > s;
}

struct bearer_error {
	char status[64];
	char schemes[64];
	char scope[256];
};

/* Tolerant: reads the top-level members it knows, skips the others.
 * Returns false when the text is not a JSON object. */
static bool parse_bearer_error(const uint8_t *p, size_t n, struct bearer_error *e)
{
	struct json_scan j = {p, n, 0};
	memset(e, 0, sizeof(*e));
	ws(&j);
	if (j.i >= j.n || p[j.i] != '{')
		return false;
	j.i++;
	for (;;) {
		char key[32];
		ws(&j);
		if (j.i < j.n && p[j.i] == '}')
			return true;
		if (!jstring(&j, key, sizeof(key)))
			return false;
		ws(&j);
		if (j.i >= j.n || p[j.i] != ':')
			return false;
		j.i++;
		char *dst = NULL;
		size_t dsz = 0;
		if (strcmp(key, "status") == 0) {
			dst = e->status;
			dsz = sizeof(e->status);
		} else if (strcmp(key, "schemes") == 0) {
			dst = e->schemes;
			dsz = sizeof(e->schemes);
		} else if (strcmp(key, "scope") == 0) {
			dst = e->scope;
			dsz = sizeof(e->scope);
		}
		if (!jskip(&j, dst, dsz))
			return false;
		ws(&j);
		if (j.i < j.n && p[j.i] == ',') {
			j.i++;
			continue;
		}
		return j.i < j.n && p[j.i] == '}';
	}
}

/* A challenge after the bearer token went out: the token was refused. */
static int bearer_failure(struct mk_sasl *s, const uint8_t *ch, size_t n, struct mk_buf *out)
{
	struct bearer_error e;
	s->failed = true;
	if (parse_bearer_error(ch, n, &e)) {
		size_t o = (size_t)snprintf(s->error, sizeof(s->error), "token refused: status %s",
					    e.status[0] != '\0' ? e.status : "(none given)");
		if (e.scope[0] != '\0' && o < sizeof(s->error))
			snprintf(s->error + o, sizeof(s->error) - o, ", scope %s", e.scope);
	} else {
		snprintf(s->error, sizeof(s->error), "token refused (the server's challenge was not the expected JSON)");
	}
	/* XOAUTH2: an empty response (Google/Microsoft); OAUTHBEARER: a single
	 * %x01 (RFC 7628 §3.2.3). The server's final refusal follows. */
	if (s->mech == MK_SASL_OAUTHBEARER && mk_buf_append(out, "\x01", 1) < 0)
		return MK_ETOOBIG;
	return MK_EAUTH;
}

/* LOGIN prompts: "Username:"/"Password:" (case-insensitive, trailing
 * blanks ignored); 0 when the text is something else. */
static unsigned login_prompt(const uint8_t *p, size_t n)
{
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == '\0'))
		n--;
	if (n == 9 && strncasecmp((const char *)p, "Username:", 9) == 0)
		return LOGIN_SENT_USER;
	if (n == 10 && strncasecmp((const char *)p, "User Name:", 10) == 0)
		return LOGIN_SENT_USER;
	if (n == 9 && strncasecmp((const char *)p, "Password:", 9) == 0)
		return LOGIN_SENT_PASS;
	return 0;
}

int mk_sasl_step(struct mk_sasl *s, const uint8_t *challenge, size_t n, struct mk_buf *out)
{
	if (s->failed)
		return MK_EPROTO;
	switch (s->mech) {
	case MK_SASL_PLAIN:
		/* the server asked for the response that was not sent initially */
		if (s->step != 0)
			return MK_EPROTO;
		return mk_sasl_initial(s, out);
	case MK_SASL_XOAUTH2:
	case MK_SASL_OAUTHBEARER:
		if (s->step == 0)
			return mk_sasl_initial(s, out); /* two steps: the empty 334/"+" */
		if (s->step == 1) {
			s->step = 2;
			return bearer_failure(s, challenge, n, out);
		}
		return MK_EPROTO;
	case MK_SASL_LOGIN: {
		/* The prompt names what is wanted; odd prompts are answered in
		 * order (user, then password), as many servers word them freely. */
		unsigned want = login_prompt(challenge, n);
		if (want == 0 || (s->step & want) != 0)
			want = (s->step & LOGIN_SENT_USER) == 0 ? LOGIN_SENT_USER : LOGIN_SENT_PASS;
		if ((s->step & want) != 0)
			return MK_EPROTO; /* a third prompt */
		const struct mk_buf *src = want == LOGIN_SENT_USER ? &s->user : &s->secret;
		if (mk_buf_reserve(out, src->len, NULL) < 0)
			return MK_ETOOBIG;
		put(out, src->data, src->len);
		s->step |= want;
		return 0;
	}
	}
	return MK_EPROTO;
}

const char *mk_sasl_error(const struct mk_sasl *s)
{
	return s->failed ? s->error : "";
}
