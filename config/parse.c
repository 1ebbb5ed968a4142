/* SPDX-License-Identifier: MIT */
/*
 * parse.c - the syntax of the configuration file: turns a memory buffer into
 * the raw tree of config_int.h (one verbatim value and its line per key and
 * section), then hands it to validate.c. It reads no files (load.c does) and
 * never prints a value of password or pass_cmd.
 *
 * The dialect: `[defaults]` and `[account NAME]` sections of `key = value`
 * lines; a line whose first non-blank character is ';' or '#' is a comment;
 * a ';' or '#' later in a line is part of the value (pass_cmd is a shell
 * command); values are trimmed and otherwise verbatim (quotes included);
 * there are no continuation lines; ':' is not a separator.
 *
 * Why libinih is driven the way it is (measured on Debian 12, libinih 55-1):
 *  - Debian builds inih with runtime knobs: libinih.so.55 exports
 *    ini_allow_inline_comments, ini_allow_multiline, ini_max_line,
 *    ini_stop_on_first_error ... and /usr/include/ini.h declares them.
 *    Defaults are inline comments ON (`pass_cmd = pass show x ; echo y`
 *    arrives as "pass show x") and multiline ON (an indented line is passed
 *    to the handler again under the previous key). Setting both knobs to
 *    false at runtime works: the whole command is kept, and an indented line
 *    without '=' is a syntax error. The knobs are process-global, so they are
 *    set before every parse here and nowhere else (config is parsed on the
 *    main thread only).
 *  - The line buffer is 200 bytes; a 250-character line came through as a
 *    195-character value plus a bogus line with the rest. Raising
 *    ini_max_line (with ini_use_stack = false) did not change that, so every
 *    line is checked against MK_LIMIT_CONFIG_LINE (190 bytes, which leaves
 *    room for "\r\n\0") before inih sees it, together with NUL bytes and
 *    control characters.
 *  - The handler gets no line number (INI_HANDLER_LINENO is 0) and
 *    ini_parse_string() reports only the first error line, so the buffer is
 *    fed through ini_parse_stream() with a reader that hands over one line
 *    per call and counts lines; the handler runs for the line the reader
 *    returned last.
 *  - The handler is not called for a section header
 *    (INI_CALL_HANDLER_ON_NEW_SECTION is 0), so an [account] without keys
 *    would go unseen, and inih silently accepts text after ']' and cuts
 *    section names at 50 bytes. The reader therefore recognises section
 *    headers itself, with the same rule as inih (first non-blank character
 *    '[' after an optional UTF-8 BOM on line 1), and stops at a bad one.
 *  - inih also splits on ':' ("user: me"); the handler rejects a line whose
 *    first separator is ':' so that only `key = value` is accepted.
 */
#include "config_int.h"

#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"
#include "mk_str.h"

#include <ini.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* inih needs 3 bytes beyond the longest line ('\r', '\n', '\0') in its
 * 200-byte buffer. */
_Static_assert(MK_LIMIT_CONFIG_LINE + 3 <= 200, "MK_LIMIT_CONFIG_LINE must fit inih's line buffer");

/* Account names show up in log prefixes, CLI arguments and storage keys, so
 * they stay short and plain. */
#define ACCOUNT_NAME_MAX 64

struct parser {
	const char *buf;
	size_t len;
	size_t pos;       /* next byte the reader hands out */
	const char *name; /* file name for messages */
	unsigned line;    /* number of the line handed to inih last */
	const char *line_p; /* that line, without its '\n' */
	size_t line_n;
	struct mk__config_raw raw;
	struct mk__config_section *cur; /* NULL before the first section */
	char *error;
};

static void fail(struct parser *p, unsigned line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(struct parser *p, unsigned line, const char *fmt, ...)
{
	if (p->error != NULL)
		return; /* the first error is the one to fix */
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->error = mk_xasprintf("%s:%u: %s", p->name, line, msg);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Before inih sees anything: every line must fit inih's buffer and hold no
 * NUL (inih would end the line there and drop the rest) and no control
 * characters (they would end up in host names and messages). A CR is fine
 * at the end of a line (CRLF files). */
static int prescan(struct parser *p)
{
	unsigned line = 1;
	size_t start = 0;
	for (size_t i = 0; i <= p->len; i++) {
		if (i == p->len || p->buf[i] == '\n') {
			size_t n = i - start;
			if (n > MK_LIMIT_CONFIG_LINE) {
				fail(p, line, "line is too long (%zu bytes; the limit is %d)", n, MK_LIMIT_CONFIG_LINE);
				return MK_ECONFIG;
			}
			line++;
			start = i + 1;
			continue;
		}
		unsigned char c = (unsigned char)p->buf[i];
		if (c == '\0') {
			fail(p, line, "line contains a NUL byte");
			return MK_ECONFIG;
		}
		bool eol_cr = c == '\r' && (i + 1 == p->len || p->buf[i + 1] == '\n');
		if ((c < 0x20 && c != '\t' && !eol_cr) || c == 0x7f) {
			fail(p, line, "line contains the control character 0x%02x", c);
			return MK_ECONFIG;
		}
	}
	return 0;
}

static void copy_trimmed(char *dst, size_t dstsz, const char *s, size_t n)
{
	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	if (n >= dstsz)
		n = dstsz - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

static bool account_name_ok(const char *s)
{
	for (; *s != '\0'; s++) {
		if (!isalnum((unsigned char)*s) && strchr("._-@+", *s) == NULL)
			return false;
	}
	return true;
}

static struct mk__config_section *find_account(struct parser *p, const char *name)
{
	for (size_t i = 0; i < p->raw.n_accounts; i++) {
		if (strcmp(p->raw.accounts[i].name, name) == 0)
			return &p->raw.accounts[i];
	}
	return NULL;
}

/* `inner` is the trimmed text between '[' and ']'. */
static int open_section(struct parser *p, const char *inner)
{
	unsigned line = p->line;
	if (strcmp(inner, "defaults") == 0) {
		if (p->raw.have_defaults) {
			fail(p, line, "duplicate section [defaults] (first on line %u); merge them",
			     p->raw.defaults.line);
			return MK_ECONFIG;
		}
		p->raw.have_defaults = true;
		p->raw.defaults.line = line;
		p->cur = &p->raw.defaults;
		return 0;
	}

	size_t wl = strcspn(inner, " \t");
	if (wl == strlen("account") && strncmp(inner, "account", wl) == 0) {
		const char *acct = inner + wl;
		while (is_blank(*acct))
			acct++;
		if (*acct == '\0') {
			fail(p, line, "section [account] needs a name, e.g. [account personal]");
			return MK_ECONFIG;
		}
		if (strlen(acct) > ACCOUNT_NAME_MAX) {
			fail(p, line, "account name is longer than %d characters", ACCOUNT_NAME_MAX);
			return MK_ECONFIG;
		}
		if (!account_name_ok(acct)) {
			fail(p, line, "bad account name \"%s\": use only letters, digits and . _ - @ +", acct);
			return MK_ECONFIG;
		}
		const struct mk__config_section *prev = find_account(p, acct);
		if (prev != NULL) {
			fail(p, line, "duplicate account \"%s\" (first defined on line %u)", acct, prev->line);
			return MK_ECONFIG;
		}
		if (p->raw.n_accounts >= MK_LIMIT_ACCOUNTS) {
			fail(p, line, "too many accounts (the limit is %d)", MK_LIMIT_ACCOUNTS);
			return MK_ECONFIG;
		}
		if (p->raw.n_accounts == p->raw.cap_accounts) {
			size_t cap = p->raw.cap_accounts ? p->raw.cap_accounts * 2 : 4;
			p->raw.accounts = mk_xrealloc(p->raw.accounts, cap * sizeof(*p->raw.accounts));
			p->raw.cap_accounts = cap;
		}
		struct mk__config_section *s = &p->raw.accounts[p->raw.n_accounts++];
		memset(s, 0, sizeof(*s));
		s->name = mk_xstrdup(acct);
		s->line = line;
		p->cur = s;
		return 0;
	}

	/* A typo in the section word: suggest the corrected header. */
	char word[MK_LIMIT_CONFIG_LINE + 1];
	copy_trimmed(word, sizeof(word), inner, wl);
	static const char *const kinds[] = {"defaults", "account", NULL};
	const char *sugg = mk__config_suggest(kinds, word);
	char hint[MK_LIMIT_CONFIG_LINE + 32] = "";
	if (sugg != NULL && strcmp(sugg, "defaults") == 0) {
		snprintf(hint, sizeof(hint), " (did you mean [defaults]?)");
	} else if (sugg != NULL) {
		const char *rest = inner + wl;
		while (is_blank(*rest))
			rest++;
		snprintf(hint, sizeof(hint), " (did you mean [account %s]?)", *rest ? rest : "NAME");
	}
	fail(p, line, "unknown section [%s]; expected [defaults] or [account NAME]%s", inner, hint);
	return MK_ECONFIG;
}

/* Recognises a section header exactly where inih will (first non-blank
 * character '[', after a BOM on line 1) and opens the section. */
static int section_line(struct parser *p)
{
	const char *s = p->line_p;
	size_t n = p->line_n;
	if (p->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
		s += 3;
		n -= 3;
	}
	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	if (n == 0 || *s != '[')
		return 0;
	const char *close = memchr(s, ']', n);
	if (close == NULL) {
		fail(p, p->line, "section header has no closing \"]\"");
		return MK_ECONFIG;
	}
	for (const char *t = close + 1; t < s + n; t++) {
		if (*t == ';' || *t == '#')
			break; /* a comment after the header is fine */
		if (!isspace((unsigned char)*t)) {
			fail(p, p->line, "unexpected text after \"]\" in section header");
			return MK_ECONFIG;
		}
	}
	char inner[MK_LIMIT_CONFIG_LINE + 1];
	copy_trimmed(inner, sizeof(inner), s + 1, (size_t)(close - s - 1));
	return open_section(p, inner);
}

/* inih's fgets-like reader: one line per call, counted. */
static char *reader(char *str, int num, void *stream)
{
	struct parser *p = stream;
	if (p->error != NULL || p->pos >= p->len)
		return NULL;
	const char *s = p->buf + p->pos;
	size_t left = p->len - p->pos;
	const char *nl = memchr(s, '\n', left);
	size_t n = nl != NULL ? (size_t)(nl - s) : left;
	size_t take = nl != NULL ? n + 1 : n;
	p->line++;
	p->line_p = s;
	p->line_n = n;
	p->pos += take;
	/* prescan() bounded every line, so this holds unless inih's buffer
	 * shrank; stop cleanly instead of letting inih split the line. */
	if (num <= 0 || take + 1 > (size_t)num) {
		fail(p, p->line, "line is too long for the INI parser");
		return NULL;
	}
	memcpy(str, s, take);
	str[take] = '\0';
	if (section_line(p) < 0)
		return NULL;
	return str;
}

static int key_index(const char *name)
{
	for (int k = 0; k < MK__CONFIG_KEY_COUNT; k++) {
		if (strcmp(mk__config_keys[k].name, name) == 0)
			return k;
	}
	return -1;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	unsigned line = p->line;
	if (p->error != NULL)
		return 0;

	/* inih splits on the first '=' or ':'; only '=' is ours. */
	for (size_t i = 0; i < p->line_n; i++) {
		if (p->line_p[i] == '=')
			break;
		if (p->line_p[i] == ':') {
			fail(p, line, "expected \"key = value\" (\":\" is not a separator)");
			return 0;
		}
	}
	if (*name == '\0') {
		fail(p, line, "missing key name before \"=\"");
		return 0;
	}
	if (p->cur == NULL) {
		fail(p, line, "key \"%s\" is outside any section; put it under [defaults] or [account NAME]", name);
		return 0;
	}
	int k = key_index(name);
	if (k < 0) {
		const char *names[MK__CONFIG_KEY_COUNT + 1];
		for (int i = 0; i < MK__CONFIG_KEY_COUNT; i++)
			names[i] = mk__config_keys[i].name;
		names[MK__CONFIG_KEY_COUNT] = NULL;
		const char *sugg = mk__config_suggest(names, name);
		if (sugg != NULL)
			fail(p, line, "unknown key \"%s\" (did you mean \"%s\"?)", name, sugg);
		else
			fail(p, line, "unknown key \"%s\"", name);
		return 0;
	}
	bool in_defaults = p->cur == &p->raw.defaults;
	unsigned where = mk__config_keys[k].where;
	if (in_defaults && !(where & MK__CONFIG_IN_DEFAULTS)) {
		fail(p, line, "\"%s\" cannot be set in [defaults]; set it in each [account NAME]", name);
		return 0;
	}
	if (!in_defaults && !(where & MK__CONFIG_IN_ACCOUNT)) {
		fail(p, line, "\"%s\" can only be set in [defaults]", name);
		return 0;
	}
	struct mk__config_value *v = &p->cur->v[k];
	if (v->text != NULL) {
		fail(p, line, "duplicate key \"%s\" (first set on line %u)", name, v->line);
		return 0;
	}
	if (*value == '\0') {
		fail(p, line, "\"%s\" has an empty value", name);
		return 0;
	}
	char msg[768];
	if (mk__config_check_value((enum mk__config_key)k, value, msg, sizeof(msg)) < 0) {
		fail(p, line, "%s", msg);
		return 0;
	}
	v->text = mk_xstrdup(value);
	v->line = line;
	return 1;
}

static void section_cleanup(struct mk__config_section *s)
{
	mk_free(s->name);
	for (int k = 0; k < MK__CONFIG_KEY_COUNT; k++) {
		/* Any value may be a password; wiping all is simplest. */
		mk__config_free_secret_str(s->v[k].text);
	}
	memset(s, 0, sizeof(*s));
}

void mk__config_raw_cleanup(struct mk__config_raw *raw)
{
	section_cleanup(&raw->defaults);
	for (size_t i = 0; i < raw->n_accounts; i++)
		section_cleanup(&raw->accounts[i]);
	mk_free(raw->accounts);
	memset(raw, 0, sizeof(*raw));
}

static const char *real_getenv(void *ctx, const char *name)
{
	return getenv(name);
}

int mk__config_parse_env(const char *buf, size_t len, const char *name, const char *home,
			 const struct mk__config_env *env, struct mk_config **cfg_r, char **error_r)
{
	static const struct mk__config_env default_env = {real_getenv, NULL};
	*cfg_r = NULL;
	*error_r = NULL;
	if (name == NULL)
		name = "config";
	if (env == NULL)
		env = &default_env;
	if (len > MK_LIMIT_CONFIG_FILE) {
		*error_r = mk_xasprintf("%s: file is larger than %d bytes", name, MK_LIMIT_CONFIG_FILE);
		return MK_ECONFIG;
	}

	struct parser p;
	memset(&p, 0, sizeof(p));
	p.buf = buf;
	p.len = len;
	p.name = name;

	if (prescan(&p) == 0) {
		/* See the top of the file for why each knob is set. */
		ini_allow_inline_comments = false;
		ini_allow_multiline = false;
		ini_allow_bom = true;
		ini_allow_no_value = false;
		ini_stop_on_first_error = true;
		ini_use_stack = true;
		int r = ini_parse_stream(reader, &p, handler, &p);
		if (p.error == NULL && r > 0) {
			/* inih's own complaint; with stop_on_first_error it is
			 * about the line just read. */
			if (p.line_n > 0 && is_blank(p.line_p[0]))
				fail(&p, (unsigned)r,
				     "expected \"key = value\"; a value cannot continue on an indented line");
			else
				fail(&p, (unsigned)r, "expected \"key = value\", a [section] header or a comment");
		} else if (p.error == NULL && r < 0) {
			fail(&p, p.line, "the INI parser failed (%d)", r);
		}
	}

	int ret = 0;
	if (p.error == NULL) {
		if (home == NULL || *home == '\0')
			home = env->get(env->ctx, "HOME");
		struct mk__config_resolve_ctx rctx = {name, home, env};
		ret = mk__config_resolve(&p.raw, &rctx, cfg_r, error_r);
	} else {
		*error_r = p.error;
		ret = MK_ECONFIG;
	}
	mk__config_raw_cleanup(&p.raw);
	return ret;
}

int mk_config_parse(const char *buf, size_t len, const char *name, const char *home,
		    struct mk_config **cfg_r, char **error_r)
{
	return mk__config_parse_env(buf, len, name, home, NULL, cfg_r, error_r);
}
