/* SPDX-License-Identifier: MIT */
/*
 * validate.c - the meaning of the configuration: checks each value on its
 * own (called by parse.c as the key is read, so errors come in file order),
 * then resolves the raw tree into the public struct mk_config: [defaults]
 * inheritance, provider presets, default ports and TLS modes, "~/"
 * expansion, and the checks that involve several keys. Also frees, looks up
 * and prints the tree. Never quotes a password or pass_cmd value, and does
 * no I/O except mk_config_dump() on the caller's stream.
 *
 * An empty file (no accounts) resolves fine: `mailkeep check-config` on a
 * fresh file should explain what is missing rather than fail to parse, so
 * mk_config_dump() says "no accounts" and commands that need an account
 * report it themselves.
 */
#include "config_int.h"

#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"
#include "mk_str.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const provider_names[] = {"custom", "outlook", "office365", NULL};
static const enum mk_config_provider provider_values[] = {
	MK_CONFIG_PROVIDER_CUSTOM, MK_CONFIG_PROVIDER_OUTLOOK, MK_CONFIG_PROVIDER_OFFICE365};
static const char *const auth_names[] = {"xoauth2", "plain", "login", NULL};
static const enum mk_config_auth auth_values[] = {MK_CONFIG_AUTH_XOAUTH2, MK_CONFIG_AUTH_PLAIN,
						  MK_CONFIG_AUTH_LOGIN};
static const char *const tls_names[] = {"implicit", "starttls", NULL};
/* issue 7: fetch and pop3_delete */
static const char *const fetch_names[] = {"imap", "pop3", "both", NULL};
static const enum mk_config_fetch fetch_values[] = {MK_CONFIG_FETCH_IMAP, MK_CONFIG_FETCH_POP3, MK_CONFIG_FETCH_BOTH};
static const char *const pop3_delete_names[] = {"never", "after_store", "after_days", NULL};
#define POP3_DELETE_MAX_DAYS 36500

/* "never" | "after_store" | "after_days N" (N days, 0..36500).
 * Returns: 0, MK_EINVAL. */
static int parse_pop3_delete(const char *v, enum mk_config_pop3_delete *mode_r, unsigned *days_r)
{
	*days_r = 0;
	if (strcmp(v, "never") == 0) {
		*mode_r = MK_CONFIG_POP3_DELETE_NEVER;
		return 0;
	}
	if (strcmp(v, "after_store") == 0) {
		*mode_r = MK_CONFIG_POP3_DELETE_AFTER_STORE;
		return 0;
	}
	if (strncmp(v, "after_days", 10) == 0 && (v[10] == ' ' || v[10] == '\t')) {
		const char *n = v + 10;
		while (*n == ' ' || *n == '\t')
			n++;
		uint64_t d;
		if (mk_str_to_u64(n, 0, POP3_DELETE_MAX_DAYS, &d) < 0)
			return MK_EINVAL;
		*mode_r = MK_CONFIG_POP3_DELETE_AFTER_DAYS;
		*days_r = (unsigned)d;
		return 0;
	}
	return MK_EINVAL;
}
static const enum mk_config_tls tls_values[] = {MK_CONFIG_TLS_IMPLICIT, MK_CONFIG_TLS_STARTTLS};

#define SPKI_HINT                                                              \
	"compute it with: openssl x509 -in cert.pem -pubkey -noout | "         \
	"openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"

static int bad_enum(const char *key, const char *value, const char *const *names, const char *expected,
		    char *msg, size_t msgsz)
{
	const char *sugg = mk__config_suggest(names, value);
	if (sugg != NULL)
		snprintf(msg, msgsz, "bad %s \"%s\": expected %s (did you mean \"%s\"?)", key, value, expected, sugg);
	else
		snprintf(msg, msgsz, "bad %s \"%s\": expected %s", key, value, expected);
	return MK_ECONFIG;
}

static int check_host(const char *key, const char *v, char *msg, size_t msgsz)
{
	size_t colons = 0;
	for (const char *s = v; *s != '\0'; s++) {
		if (*s == ':') {
			colons++;
		} else if (!isalnum((unsigned char)*s) && *s != '.' && *s != '-' && *s != '_') {
			snprintf(msg, msgsz, "bad %s \"%s\": expected a host name such as outlook.office365.com", key, v);
			return MK_ECONFIG;
		}
	}
	/* One colon is "host:port"; several are an IPv6 address. */
	if (colons == 1) {
		snprintf(msg, msgsz, "bad %s \"%s\": give the port separately, as %.4s_port", key, v, key);
		return MK_ECONFIG;
	}
	if (strlen(v) > 253) {
		snprintf(msg, msgsz, "bad %s: a host name has at most 253 characters", key);
		return MK_ECONFIG;
	}
	return 0;
}

static int check_email(const char *v, char *msg, size_t msgsz)
{
	const char *at = strrchr(v, '@');
	bool ok = at != NULL && at != v && at[1] != '\0' && strchr(at + 1, '.') != NULL;
	for (const char *s = v; ok && *s != '\0'; s++) {
		if (isspace((unsigned char)*s))
			ok = false;
	}
	if (!ok) {
		snprintf(msg, msgsz, "bad email \"%s\": expected an address like me@outlook.com", v);
		return MK_ECONFIG;
	}
	return 0;
}

static int check_fingerprint(const char *v, char *msg, size_t msgsz)
{
	static const char prefix[] = "sha256/";
	uint8_t digest[48];
	bool ok = false;
	if (mk_str_has_prefix(v, prefix)) {
		const char *b64 = v + strlen(prefix);
		size_t n = strlen(b64);
		/* 32 bytes encode to 44 characters with one '=' of padding. */
		ok = n == MK_BASE64_ENCLEN(32) && mk_base64_decode(b64, n, digest, sizeof(digest)) == 32;
	}
	if (ok)
		return 0;
	if (strchr(v, ':') != NULL && !mk_str_has_prefix(v, prefix))
		snprintf(msg, msgsz,
			 "bad tls_fingerprint \"%s\": this looks like a hex certificate fingerprint, but mailkeep pins "
			 "the server's public key as \"sha256/\" + base64 (44 characters); " SPKI_HINT,
			 v);
	else
		snprintf(msg, msgsz,
			 "bad tls_fingerprint \"%s\": expected \"sha256/\" followed by the base64 SHA-256 of the "
			 "server's public key (44 characters); " SPKI_HINT,
			 v);
	return MK_ECONFIG;
}

/* ---- issue 6: OAuth2 keys ---- */

/* Characters of a client id (a GUID) or a tenant (consumers,
 * organizations, common, a GUID or a domain): they go into a URL path and a
 * form body unescaped in messages, so keep them plain. */
static bool oauth_word(const char *v)
{
	if (strlen(v) > 128)
		return false;
	for (const char *s = v; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
			return false;
	return true;
}

static int check_oauth_value(enum mk__config_key key, const char *kn, const char *v, char *msg, size_t msgsz)
{
	unsigned secs;
	switch (key) {
	case MK__CONFIG_KEY_OAUTH_CLIENT_ID:
		if (!oauth_word(v)) {
			snprintf(msg, msgsz,
				 "bad %s \"%s\": expected the Application (client) ID of your app registration, "
				 "a GUID like 00000000-0000-0000-0000-000000000000",
				 kn, v);
			return MK_ECONFIG;
		}
		return 0;
	case MK__CONFIG_KEY_OAUTH_TENANT:
		if (!oauth_word(v)) {
			snprintf(msg, msgsz,
				 "bad %s \"%s\": expected consumers (Outlook.com), organizations, common, a tenant id "
				 "or a domain like contoso.onmicrosoft.com",
				 kn, v);
			return MK_ECONFIG;
		}
		return 0;
	case MK__CONFIG_KEY_OAUTH_AUTHORITY: {
		bool ok = mk_str_has_prefix(v, "https://") && v[8] != '\0' && v[8] != '/' && v[8] != ':' &&
			  strpbrk(v, "?#@ \t") == NULL;
		if (!ok) {
			snprintf(msg, msgsz, "bad %s \"%s\": expected an https:// URL such as %s%s", kn, v,
				 MK_CONFIG_OAUTH_AUTHORITY,
				 mk_str_has_prefix(v, "http://") ? " (tokens never travel over plain http)" : "");
			return MK_ECONFIG;
		}
		return 0;
	}
	case MK__CONFIG_KEY_OAUTH_SCOPES:
		return 0;
	case MK__CONFIG_KEY_TOKEN_CMD_CACHE:
		if (mk_config_duration(v, 1, 86400, &secs) < 0) {
			snprintf(msg, msgsz, "bad %s \"%s\": expected a duration like 90s, 5m, 1h (1 s to 1 day)", kn, v);
			return MK_ECONFIG;
		}
		return 0;
	default:
		return 0;
	}
}

int mk__config_check_value(enum mk__config_key key, const char *v, char *msg, size_t msgsz)
{
	const char *kn = mk__config_keys[key].name;
	uint64_t port;
	switch (key) {
	case MK__CONFIG_KEY_COMPRESS_LEVEL:
		if (mk_str_to_u64(v, 1, 9, &port) < 0) {
			snprintf(msg, msgsz,
				 "bad %s \"%s\": expected a zlib level from 1 (fastest) to 9 (smallest); 6 is the "
				 "default",
				 kn, v);
			return MK_ECONFIG;
		}
		return 0;
	case MK__CONFIG_KEY_STORE:
	case MK__CONFIG_KEY_TLS_CA_FILE:
		/* A relative path would depend on the daemon's working
		 * directory. */
		if (v[0] != '/' && !mk_str_has_prefix(v, "~/")) {
			snprintf(msg, msgsz, "bad %s \"%s\": expected an absolute path or one starting with ~/", kn,
				 v);
			return MK_ECONFIG;
		}
		return 0;
	case MK__CONFIG_KEY_PROVIDER:
		if (mk__config_lookup(provider_names, v) < 0)
			return bad_enum(kn, v, provider_names, "outlook, office365 or custom", msg, msgsz);
		return 0;
	case MK__CONFIG_KEY_AUTH:
		if (mk__config_lookup(auth_names, v) < 0)
			return bad_enum(kn, v, auth_names, "xoauth2, plain or login", msg, msgsz);
		return 0;
	case MK__CONFIG_KEY_IMAP_TLS:
	case MK__CONFIG_KEY_POP3_TLS:
	case MK__CONFIG_KEY_SMTP_TLS:
		if (mk__config_lookup(tls_names, v) < 0)
			return bad_enum(kn, v, tls_names, "implicit or starttls", msg, msgsz);
		return 0;
	case MK__CONFIG_KEY_IMAP_PORT:
	case MK__CONFIG_KEY_POP3_PORT:
	case MK__CONFIG_KEY_SMTP_PORT:
		if (mk_str_to_u64(v, 1, 65535, &port) < 0) {
			snprintf(msg, msgsz, "bad %s \"%s\": expected a port number from 1 to 65535", kn, v);
			return MK_ECONFIG;
		}
		return 0;
	case MK__CONFIG_KEY_IMAP_HOST:
	case MK__CONFIG_KEY_POP3_HOST:
	case MK__CONFIG_KEY_SMTP_HOST:
		return check_host(kn, v, msg, msgsz);
	case MK__CONFIG_KEY_EMAIL:
		return check_email(v, msg, msgsz);
	case MK__CONFIG_KEY_TLS_FINGERPRINT:
		return check_fingerprint(v, msg, msgsz);
	case MK__CONFIG_KEY_TIMEOUT:
		if (mk_str_to_u64(v, 1, 3600, &port) < 0) {
			snprintf(msg, msgsz, "bad %s \"%s\": expected seconds from 1 to 3600", kn, v);
			return MK_ECONFIG;
		}
		return 0;
	case MK__CONFIG_KEY_MAX_CONNECTIONS:
		if (mk_str_to_u64(v, 1, MK_CONFIG_MAX_CONNECTIONS, &port) < 0) {
			snprintf(msg, msgsz, "bad %s \"%s\": expected a number from 1 to %d", kn, v,
				 MK_CONFIG_MAX_CONNECTIONS);
			return MK_ECONFIG;
		}
		return 0;
	case MK__CONFIG_KEY_FOLDERS:
	case MK__CONFIG_KEY_IDLE:
		return mk_config_folders_check(v, msg, msgsz);
	case MK__CONFIG_KEY_POLL_INTERVAL:
	case MK__CONFIG_KEY_IDLE_REFRESH: {
		unsigned secs;
		if (mk_config_duration(v, 1, 7 * 86400, &secs) < 0) {
			snprintf(msg, msgsz, "bad %s \"%s\": expected a duration like 90s, 15m, 2h (1 s to 7 days)", kn, v);
			return MK_ECONFIG;
		}
		return 0;
	}
	case MK__CONFIG_KEY_FETCH: /* issue 7 */
		if (mk__config_lookup(fetch_names, v) < 0)
			return bad_enum(kn, v, fetch_names, "imap, pop3 or both", msg, msgsz);
		return 0;
	case MK__CONFIG_KEY_POP3_DELETE: { /* issue 7 */
		enum mk_config_pop3_delete mode;
		unsigned days;
		if (parse_pop3_delete(v, &mode, &days) < 0) {
			if (strncmp(v, "after_days", 10) == 0)
				snprintf(msg, msgsz, "bad %s \"%s\": after_days needs a number of days from 0 to %d, as in "
						     "\"after_days 30\"", kn, v, POP3_DELETE_MAX_DAYS);
			else
				return bad_enum(kn, v, pop3_delete_names, "never, after_store or after_days N", msg, msgsz);
			return MK_ECONFIG;
		}
		return 0;
	}
	/* issue 5: the outbox */
	case MK__CONFIG_KEY_MAX_PER_MINUTE:
	case MK__CONFIG_KEY_MAX_PER_DAY:
		if (mk_str_to_u64(v, 0, key == MK__CONFIG_KEY_MAX_PER_MINUTE ? 10000 : 10000000, &port) < 0) {
			snprintf(msg, msgsz, "bad %s \"%s\": expected a number (0 for no limit)", kn, v);
			return MK_ECONFIG;
		}
		return 0;
	case MK__CONFIG_KEY_MAX_SMTP_CONNECTIONS:
		if (mk_str_to_u64(v, 1, MK_CONFIG_MAX_CONNECTIONS, &port) < 0) {
			snprintf(msg, msgsz, "bad %s \"%s\": expected a number from 1 to %d", kn, v,
				 MK_CONFIG_MAX_CONNECTIONS);
			return MK_ECONFIG;
		}
		return 0;
	case MK__CONFIG_KEY_MAX_QUEUE_AGE: {
		unsigned secs;
		if (mk_config_duration(v, 60, 365 * 86400, &secs) < 0) {
			snprintf(msg, msgsz, "bad %s \"%s\": expected a duration like 12h or 5d (1 min to 365 days)", kn,
				 v);
			return MK_ECONFIG;
		}
		return 0;
	}
	case MK__CONFIG_KEY_SAVE_SENT:
	case MK__CONFIG_KEY_SERVER_SAVES_SENT:
		if (v[0] == '\0' || strlen(v) > 200) {
			snprintf(msg, msgsz, "bad %s: expected a folder name, or \"no\"", kn);
			return MK_ECONFIG;
		}
		return 0;
	case MK__CONFIG_KEY_OAUTH_CLIENT_ID: /* issue 6 */
	case MK__CONFIG_KEY_OAUTH_TENANT:
	case MK__CONFIG_KEY_OAUTH_AUTHORITY:
	case MK__CONFIG_KEY_OAUTH_SCOPES:
	case MK__CONFIG_KEY_TOKEN_CMD_CACHE:
		return check_oauth_value(key, kn, v, msg, msgsz);
	case MK__CONFIG_KEY_USER:
	case MK__CONFIG_KEY_PASSWORD:
	case MK__CONFIG_KEY_PASS_CMD:
	case MK__CONFIG_KEY_TOKEN_CMD:
	case MK__CONFIG_KEY_COUNT:
		break;
	}
	return 0;
}

/* ---- resolution ---- */

struct resolver {
	const struct mk__config_raw *raw;
	const struct mk__config_resolve_ctx *ctx;
	char *error;
};

static void rfail(struct resolver *r, unsigned line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void rfail(struct resolver *r, unsigned line, const char *fmt, ...)
{
	if (r->error != NULL)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		r->error = mk_xasprintf("%s:%u: %s", r->ctx->name, line, msg);
	else
		r->error = mk_xasprintf("%s: %s", r->ctx->name, msg);
}

/* The account's own value, else the one from [defaults], else NULL. */
static const struct mk__config_value *get(const struct resolver *r, const struct mk__config_section *a,
					  enum mk__config_key k)
{
	if (a->v[k].text != NULL)
		return &a->v[k];
	if (r->raw->have_defaults && r->raw->defaults.v[k].text != NULL)
		return &r->raw->defaults.v[k];
	return NULL;
}

static bool usable_home(const char *home)
{
	return home != NULL && home[0] == '/';
}

/* "~/x" -> HOME/x; anything else is copied. */
static int expand_path(struct resolver *r, const struct mk__config_value *v, const char *key, char **out_r)
{
	if (!mk_str_has_prefix(v->text, "~/")) {
		*out_r = mk_xstrdup(v->text);
		return 0;
	}
	const char *home = r->ctx->home;
	if (!usable_home(home)) {
		rfail(r, v->line, "cannot expand \"~/\" in %s: HOME is not set to an absolute path", key);
		return MK_ECONFIG;
	}
	size_t hl = strlen(home);
	while (hl > 1 && home[hl - 1] == '/')
		hl--;
	*out_r = mk_xasprintf("%.*s%s", (int)hl, home, v->text + 1);
	return 0;
}

static int resolve_store(struct resolver *r, struct mk_config *cfg)
{
	uint64_t lvl;
	cfg->compress_level = 4; /* measured in storage/blob.c */
	if (r->raw->have_defaults && r->raw->defaults.v[MK__CONFIG_KEY_COMPRESS_LEVEL].text != NULL &&
	    mk_str_to_u64(r->raw->defaults.v[MK__CONFIG_KEY_COMPRESS_LEVEL].text, 1, 9, &lvl) == 0)
		cfg->compress_level = (int)lvl;
	if (r->raw->have_defaults && r->raw->defaults.v[MK__CONFIG_KEY_STORE].text != NULL)
		return expand_path(r, &r->raw->defaults.v[MK__CONFIG_KEY_STORE], "store", &cfg->store);
	/* XDG Base Directory: an empty or relative XDG_DATA_HOME is ignored. */
	const char *xdg = r->ctx->env->get(r->ctx->env->ctx, "XDG_DATA_HOME");
	if (xdg != NULL && xdg[0] == '/') {
		cfg->store = mk_xasprintf("%s/mailkeep", xdg);
		return 0;
	}
	if (!usable_home(r->ctx->home)) {
		rfail(r, 0, "neither XDG_DATA_HOME nor HOME is set, so there is no default store; "
			    "set store in [defaults]");
		return MK_ECONFIG;
	}
	size_t hl = strlen(r->ctx->home);
	while (hl > 1 && r->ctx->home[hl - 1] == '/')
		hl--;
	cfg->store = mk_xasprintf("%.*s/.local/share/mailkeep", (int)hl, r->ctx->home);
	return 0;
}

static int resolve_server(struct resolver *r, const struct mk__config_section *a, const struct mk__config_preset *pre,
			  enum mk__config_proto proto, struct mk_config_server *out)
{
	const struct mk__config_proto_info *pi = &mk__config_protos[proto];
	const struct mk__config_value *hv = get(r, a, pi->host_key);
	const struct mk__config_value *pv = get(r, a, pi->port_key);
	const struct mk__config_value *tv = get(r, a, pi->tls_key);
	const char *host = hv != NULL ? hv->text : pre->server[proto].host;

	if (host == NULL) {
		/* A port or TLS mode in the account itself but no host is
		 * most likely a typo in the host key. ([defaults] may carry
		 * them for accounts that do have the server.) */
		const struct mk__config_value *stray = a->v[pi->port_key].text != NULL ? &a->v[pi->port_key]
						       : a->v[pi->tls_key].text != NULL ? &a->v[pi->tls_key]
											 : NULL;
		if (stray != NULL) {
			const char *k = mk__config_keys[stray == &a->v[pi->port_key] ? pi->port_key : pi->tls_key].name;
			rfail(r, stray->line, "%s is set but account \"%s\" has no %s_host", k, a->name, pi->name);
			return MK_ECONFIG;
		}
		out->host = NULL;
		out->port = 0;
		out->tls = pi->default_tls;
		return 0;
	}

	uint64_t port = 0;
	if (pv != NULL && mk_str_to_u64(pv->text, 1, 65535, &port) < 0) {
		rfail(r, pv->line, "bad %s", mk__config_keys[pi->port_key].name); /* checked at parse */
		return MK_ECONFIG;
	}
	enum mk_config_tls tls;
	if (tv != NULL) {
		tls = tls_values[mk__config_lookup(tls_names, tv->text)];
		/* An explicit mode picks its standard port, not the preset's. */
		if (pv == NULL)
			port = mk__config_default_port(proto, tls);
	} else if (pv != NULL) {
		/* An explicit standard port implies its mode (465 is implicit
		 * TLS whatever the preset says); other ports keep the preset's
		 * mode. */
		if (port == pi->implicit_port)
			tls = MK_CONFIG_TLS_IMPLICIT;
		else if (port == pi->starttls_port)
			tls = MK_CONFIG_TLS_STARTTLS;
		else
			tls = pre->server[proto].tls;
	} else {
		tls = pre->server[proto].tls;
		port = pre->server[proto].port;
	}

	/* Both given and contradicting: a STARTTLS client on an implicit-TLS
	 * port (or the reverse) only hangs or fails the handshake, with a
	 * confusing error far from the cause. */
	if (tv != NULL && pv != NULL) {
		const char *tk = mk__config_keys[pi->tls_key].name;
		const char *pk = mk__config_keys[pi->port_key].name;
		if (tls == MK_CONFIG_TLS_STARTTLS && port == pi->implicit_port) {
			rfail(r, tv->line,
			      "%s = starttls does not work with %s = %u (line %u): port %u speaks TLS from the first "
			      "byte; set %s = implicit, or use port %u for STARTTLS",
			      tk, pk, (unsigned)port, pv->line, (unsigned)port, tk, pi->starttls_port);
			return MK_ECONFIG;
		}
		if (tls == MK_CONFIG_TLS_IMPLICIT && port == pi->starttls_port) {
			rfail(r, tv->line,
			      "%s = implicit does not work with %s = %u (line %u): port %u starts in plain text and "
			      "needs STARTTLS; set %s = starttls, or use port %u for implicit TLS",
			      tk, pk, (unsigned)port, pv->line, (unsigned)port, tk, pi->implicit_port);
			return MK_ECONFIG;
		}
	}
	out->host = mk_xstrdup(host);
	out->port = (uint16_t)port;
	out->tls = tls;
	return 0;
}

static int resolve_outbox(struct resolver *r, const struct mk__config_section *a, struct mk_config_account *out);
/* issue 6: the OAuth2 keys, checked last so that other errors of the
 * account come first. */
static int resolve_oauth(struct resolver *r, const struct mk__config_section *a, const struct mk__config_preset *pre,
			 const struct mk__config_value *auth_v, struct mk_config_account *out)
{
	const struct mk__config_value *cid = get(r, a, MK__CONFIG_KEY_OAUTH_CLIENT_ID);
	const struct mk__config_value *tcmd = &a->v[MK__CONFIG_KEY_TOKEN_CMD];
	const struct mk__config_value *v;
	if (out->auth != MK_CONFIG_AUTH_XOAUTH2) {
		/* Only the account's own keys: [defaults] may serve other
		 * accounts that do use OAuth. */
		static const enum mk__config_key oauth_keys[] = {MK__CONFIG_KEY_OAUTH_CLIENT_ID, MK__CONFIG_KEY_TOKEN_CMD};
		for (size_t i = 0; i < sizeof(oauth_keys) / sizeof(oauth_keys[0]); i++) {
			v = &a->v[oauth_keys[i]];
			if (v->text != NULL) {
				rfail(r, v->line, "%s is set but account \"%s\" uses auth = %s; set auth = xoauth2 to sign in "
						  "with OAuth, or remove %s",
				      mk__config_keys[oauth_keys[i]].name, a->name, mk_config_auth_name(out->auth),
				      mk__config_keys[oauth_keys[i]].name);
				return MK_ECONFIG;
			}
		}
		return 0;
	}
	if (tcmd->text != NULL && a->v[MK__CONFIG_KEY_OAUTH_CLIENT_ID].text != NULL) {
		const struct mk__config_value *c = &a->v[MK__CONFIG_KEY_OAUTH_CLIENT_ID];
		rfail(r, tcmd->line > c->line ? tcmd->line : c->line,
		      "account \"%s\" sets both oauth_client_id (line %u) and token_cmd (line %u); keep only one",
		      a->name, c->line, tcmd->line);
		return MK_ECONFIG;
	}
	if (tcmd->text == NULL && cid == NULL) {
		unsigned line = auth_v != NULL && auth_v == &a->v[MK__CONFIG_KEY_AUTH] ? auth_v->line : a->line;
		rfail(r, line,
		      "account \"%s\" uses auth = xoauth2 but has no oauth_client_id: register your own app in "
		      "Microsoft Entra (see `mailkeep help config`) and set oauth_client_id = <its Application (client) "
		      "ID>, or set token_cmd = <command that prints an access token>",
		      a->name);
		return MK_ECONFIG;
	}
	if (tcmd->text != NULL)
		out->token_cmd = mk_xstrdup(tcmd->text);
	else
		out->oauth_client_id = mk_xstrdup(cid->text);
	v = get(r, a, MK__CONFIG_KEY_OAUTH_TENANT);
	out->oauth_tenant = mk_xstrdup(v != NULL ? v->text : pre->oauth_tenant);
	v = get(r, a, MK__CONFIG_KEY_OAUTH_AUTHORITY);
	out->oauth_authority = mk_xstrdup(v != NULL ? v->text : MK_CONFIG_OAUTH_AUTHORITY);
	v = get(r, a, MK__CONFIG_KEY_OAUTH_SCOPES);
	out->oauth_scopes = mk_xstrdup(v != NULL ? v->text : MK_CONFIG_OAUTH_SCOPES);
	if (v != NULL && out->token_cmd == NULL) {
		/* Without offline_access there is no refresh token, and the
		 * sign-in would die with the first access token. */
		bool found = false;
		for (const char *p = v->text; *p != '\0';) {
			size_t n = strcspn(p, " \t");
			if (n == strlen("offline_access") && strncmp(p, "offline_access", n) == 0)
				found = true;
			p += n;
			p += strspn(p, " \t");
		}
		if (!found) {
			rfail(r, v->line,
			      "oauth_scopes of account \"%s\" lacks offline_access, without which no refresh token is "
			      "issued and the sign-in ends within the hour",
			      a->name);
			return MK_ECONFIG;
		}
	}
	unsigned secs;
	out->token_cmd_cache_s = 300;
	if ((v = get(r, a, MK__CONFIG_KEY_TOKEN_CMD_CACHE)) != NULL && mk_config_duration(v->text, 1, 86400, &secs) == 0)
		out->token_cmd_cache_s = secs;
	return 0;
}

static int resolve_account(struct resolver *r, const struct mk__config_section *a, struct mk_config_account *out)
{
	const struct mk__config_value *v;
	out->name = mk_xstrdup(a->name);
	out->line = a->line;

	out->provider = MK_CONFIG_PROVIDER_CUSTOM;
	if ((v = get(r, a, MK__CONFIG_KEY_PROVIDER)) != NULL)
		out->provider = provider_values[mk__config_lookup(provider_names, v->text)];
	const struct mk__config_preset *pre = mk__config_preset_get(out->provider);

	const struct mk__config_value *email = &a->v[MK__CONFIG_KEY_EMAIL];
	if (email->text == NULL) {
		rfail(r, a->line, "account \"%s\" has no email; add a line like: email = me@outlook.com", a->name);
		return MK_ECONFIG;
	}
	out->email = mk_xstrdup(email->text);
	v = &a->v[MK__CONFIG_KEY_USER];
	out->user = mk_xstrdup(v->text != NULL ? v->text : email->text);

	const struct mk__config_value *auth_v = get(r, a, MK__CONFIG_KEY_AUTH);
	out->auth = auth_v != NULL ? auth_values[mk__config_lookup(auth_names, auth_v->text)] : pre->auth;

	const struct mk__config_value *pw = &a->v[MK__CONFIG_KEY_PASSWORD];
	const struct mk__config_value *cmd = &a->v[MK__CONFIG_KEY_PASS_CMD];
	if (pw->text != NULL && cmd->text != NULL) {
		rfail(r, pw->line > cmd->line ? pw->line : cmd->line,
		      "account \"%s\" sets both password (line %u) and pass_cmd (line %u); keep only one", a->name,
		      pw->line, cmd->line);
		return MK_ECONFIG;
	}
	if (out->auth == MK_CONFIG_AUTH_XOAUTH2 && (pw->text != NULL || cmd->text != NULL)) {
		/* Outlook.com and Microsoft 365 have turned basic auth off: a
		 * password would only fail at the server, after a round trip,
		 * with a vague "authentication failed". */
		const struct mk__config_value *bad = pw->text != NULL ? pw : cmd;
		rfail(r, bad->line,
		      "account \"%s\" uses auth = xoauth2, which takes no %s: Outlook.com and Microsoft 365 no longer "
		      "accept passwords, and XOAUTH2 signs in with OAuth tokens that mailkeep obtains and refreshes "
		      "itself; remove \"%s\" (or set auth = plain for a server that takes passwords)",
		      a->name, bad == pw ? "password" : "pass_cmd", bad == pw ? "password" : "pass_cmd");
		return MK_ECONFIG;
	}
	if (out->auth != MK_CONFIG_AUTH_XOAUTH2 && pw->text == NULL && cmd->text == NULL) {
		unsigned line = auth_v != NULL && auth_v == &a->v[MK__CONFIG_KEY_AUTH] ? auth_v->line : a->line;
		rfail(r, line,
		      "account \"%s\" uses auth = %s but has no password or pass_cmd; add pass_cmd = <command that "
		      "prints the password> (or password = ... in a file only you can read)",
		      a->name, mk_config_auth_name(out->auth));
		return MK_ECONFIG;
	}
	if (pw->text != NULL)
		out->password = mk_xstrdup(pw->text);
	if (cmd->text != NULL)
		out->pass_cmd = mk_xstrdup(cmd->text);

	struct mk_config_server *servers[MK__CONFIG_PROTO_COUNT] = {&out->imap, &out->pop3, &out->smtp};
	for (int i = 0; i < MK__CONFIG_PROTO_COUNT; i++) {
		if (resolve_server(r, a, pre, (enum mk__config_proto)i, servers[i]) < 0)
			return MK_ECONFIG;
	}
	if (out->imap.host == NULL && out->pop3.host == NULL && out->smtp.host == NULL) {
		rfail(r, a->line,
		      "account \"%s\" has no server: a custom account needs at least one of imap_host, pop3_host, "
		      "smtp_host (or set provider = outlook or office365)",
		      a->name);
		return MK_ECONFIG;
	}

	if ((v = get(r, a, MK__CONFIG_KEY_TLS_CA_FILE)) != NULL &&
	    expand_path(r, v, "tls_ca_file", &out->tls_ca_file) < 0)
		return MK_ECONFIG;
	if ((v = get(r, a, MK__CONFIG_KEY_TLS_FINGERPRINT)) != NULL)
		out->tls_fingerprint = mk_xstrdup(v->text);
	uint64_t n;
	out->timeout_s = 30;
	if ((v = get(r, a, MK__CONFIG_KEY_TIMEOUT)) != NULL && mk_str_to_u64(v->text, 1, 3600, &n) == 0)
		out->timeout_s = (unsigned)n;
	out->max_connections = 4;
	if ((v = get(r, a, MK__CONFIG_KEY_MAX_CONNECTIONS)) != NULL &&
	    mk_str_to_u64(v->text, 1, MK_CONFIG_MAX_CONNECTIONS, &n) == 0)
		out->max_connections = (unsigned)n;
	v = get(r, a, MK__CONFIG_KEY_FOLDERS);
	/* Outlook's non-mail folders (OUTLOOK.md §2.3: calendar, contacts,
	 * ... items, "break sync"; "Files" is reserved) are not mail: the
	 * presets leave them out unless `folders` says otherwise. */
	out->folders = mk_xstrdup(v != NULL ? v->text
				  : out->provider != MK_CONFIG_PROVIDER_CUSTOM ? MK_CONFIG_OUTLOOK_FOLDERS
									       : "*");
	/* issue 7: what to fetch, and the POP3 delete policy */
	const struct mk__config_value *fv = get(r, a, MK__CONFIG_KEY_FETCH);
	out->fetch = fv != NULL ? fetch_values[mk__config_lookup(fetch_names, fv->text)] : MK_CONFIG_FETCH_IMAP;
	if (fv != NULL && out->fetch != MK_CONFIG_FETCH_IMAP && out->pop3.host == NULL) {
		rfail(r, fv->line, "fetch = %s but account \"%s\" has no POP3 server; add pop3_host (or set provider = "
				   "outlook or office365)",
		      fv->text, a->name);
		return MK_ECONFIG;
	}
	if (fv != NULL && out->fetch != MK_CONFIG_FETCH_POP3 && out->imap.host == NULL) {
		rfail(r, fv->line, "fetch = %s but account \"%s\" has no IMAP server; add imap_host, or set fetch = pop3",
		      fv->text, a->name);
		return MK_ECONFIG;
	}
	if ((v = get(r, a, MK__CONFIG_KEY_POP3_DELETE)) != NULL &&
	    parse_pop3_delete(v->text, &out->pop3_delete, &out->pop3_delete_days) < 0) {
		rfail(r, v->line, "bad pop3_delete"); /* checked at parse */
		return MK_ECONFIG;
	}
	v = get(r, a, MK__CONFIG_KEY_IDLE);
	out->idle = mk_xstrdup(v != NULL ? v->text : "INBOX");
	unsigned secs;
	out->poll_interval_s = 900;
	if ((v = get(r, a, MK__CONFIG_KEY_POLL_INTERVAL)) != NULL && mk_config_duration(v->text, 1, 7 * 86400, &secs) == 0)
		out->poll_interval_s = secs;
	/* Outlook stops pushing on long IDLEs without saying so (OUTLOOK.md
	 * §2.5): 10 minutes; RFC 2177 allows 29. */
	out->idle_refresh_s = 600;
	if ((v = get(r, a, MK__CONFIG_KEY_IDLE_REFRESH)) != NULL && mk_config_duration(v->text, 1, 7 * 86400, &secs) == 0)
		out->idle_refresh_s = secs;
	if (resolve_outbox(r, a, out) < 0)
		return MK_ECONFIG;
	return resolve_oauth(r, a, pre, auth_v, out);
}

/* issue 5: the outbox. Microsoft's limits are the presets' defaults
 * (OUTLOOK.md §4.2): 30 messages a minute, 3 connections, 300 (consumer)
 * or 10,000 (Microsoft 365) recipients a day; both servers file every
 * submission in Sent Items themselves (§4.4), so mailkeep never APPENDs
 * there and uses that copy to settle an uncertain send. */
static int resolve_outbox(struct resolver *r, const struct mk__config_section *a, struct mk_config_account *out)
{
	const struct mk__config_value *v;
	uint64_t n;
	bool ms = out->provider != MK_CONFIG_PROVIDER_CUSTOM;
	out->max_per_minute = ms ? 30 : 0;
	out->max_per_day = out->provider == MK_CONFIG_PROVIDER_OUTLOOK ? 300
			   : out->provider == MK_CONFIG_PROVIDER_OFFICE365 ? 10000
									    : 0;
	out->max_smtp_connections = 3;
	out->max_queue_age_s = 5 * 86400;
	if ((v = get(r, a, MK__CONFIG_KEY_MAX_PER_MINUTE)) != NULL && mk_str_to_u64(v->text, 0, 10000, &n) == 0)
		out->max_per_minute = (unsigned)n;
	if ((v = get(r, a, MK__CONFIG_KEY_MAX_PER_DAY)) != NULL && mk_str_to_u64(v->text, 0, 10000000, &n) == 0)
		out->max_per_day = (unsigned)n;
	if ((v = get(r, a, MK__CONFIG_KEY_MAX_SMTP_CONNECTIONS)) != NULL &&
	    mk_str_to_u64(v->text, 1, MK_CONFIG_MAX_CONNECTIONS, &n) == 0)
		out->max_smtp_connections = (unsigned)n;
	unsigned secs;
	if ((v = get(r, a, MK__CONFIG_KEY_MAX_QUEUE_AGE)) != NULL && mk_config_duration(v->text, 60, 365 * 86400, &secs) == 0)
		out->max_queue_age_s = secs;
	const struct mk__config_value *ss = get(r, a, MK__CONFIG_KEY_SERVER_SAVES_SENT);
	if (ss != NULL)
		out->server_saves_sent = strcmp(ss->text, "no") == 0 ? NULL : mk_xstrdup(ss->text);
	else if (ms)
		out->server_saves_sent = mk_xstrdup("Sent Items");
	v = get(r, a, MK__CONFIG_KEY_SAVE_SENT);
	if (v != NULL && strcmp(v->text, "no") != 0) {
		if (out->imap.host == NULL) {
			rfail(r, v->line, "save_sent = %s needs an IMAP server; account \"%s\" has none (add imap_host)",
			      v->text, a->name);
			return MK_ECONFIG;
		}
		if (out->server_saves_sent != NULL) {
			/* Outlook would then hold every sent message twice. */
			rfail(r, v->line,
			      "save_sent = %s: the server of account \"%s\" already files sent mail in \"%s\" "
			      "(server_saves_sent); set one of them to no",
			      v->text, a->name, out->server_saves_sent);
			return MK_ECONFIG;
		}
		out->save_sent = mk_xstrdup(v->text);
	}
	return 0;
}

int mk__config_resolve(const struct mk__config_raw *raw, const struct mk__config_resolve_ctx *ctx,
		       struct mk_config **cfg_r, char **error_r)
{
	struct resolver r = {raw, ctx, NULL};
	struct mk_config *cfg = mk_xcalloc(1, sizeof(*cfg));
	cfg->path = mk_xstrdup(ctx->name);
	*cfg_r = NULL;
	*error_r = NULL;

	if (resolve_store(&r, cfg) == 0 && raw->n_accounts > 0) {
		cfg->accounts = mk_xcalloc(raw->n_accounts, sizeof(*cfg->accounts));
		cfg->n_accounts = raw->n_accounts;
		for (size_t i = 0; i < raw->n_accounts; i++) {
			if (resolve_account(&r, &raw->accounts[i], &cfg->accounts[i]) < 0)
				break;
		}
	}
	if (r.error != NULL) {
		mk_config_free(&cfg);
		*error_r = r.error;
		return MK_ECONFIG;
	}
	*cfg_r = cfg;
	return 0;
}

/* ---- the tree ---- */

static void account_cleanup(struct mk_config_account *a)
{
	mk_free(a->name);
	mk_free(a->email);
	mk_free(a->user);
	mk__config_free_secret_str(a->password);
	mk_free(a->pass_cmd);
	mk_free(a->imap.host);
	mk_free(a->pop3.host);
	mk_free(a->smtp.host);
	mk_free(a->tls_ca_file);
	mk_free(a->tls_fingerprint);
	mk_free(a->folders);
	mk_free(a->idle);
	mk_free(a->save_sent);
	mk_free(a->server_saves_sent);
	mk_free(a->oauth_client_id); /* issue 6 */
	mk_free(a->oauth_tenant);
	mk_free(a->oauth_authority);
	mk_free(a->oauth_scopes);
	mk_free(a->token_cmd);
}

void mk_config_free(struct mk_config **cfgp)
{
	struct mk_config *cfg = *cfgp;
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->n_accounts; i++)
		account_cleanup(&cfg->accounts[i]);
	mk_free(cfg->accounts);
	mk_free(cfg->path);
	mk_free(cfg->store);
	mk_free(cfg);
	*cfgp = NULL;
}

const struct mk_config_account *mk_config_find_account(const struct mk_config *cfg, const char *name)
{
	if (cfg == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		if (strcmp(cfg->accounts[i].name, name) == 0)
			return &cfg->accounts[i];
	}
	return NULL;
}

static void dump_server(FILE *out, const char *label, const struct mk_config_server *s)
{
	if (s->host == NULL)
		fprintf(out, "  %-9s none\n", label);
	else
		fprintf(out, "  %-9s %s:%u %s\n", label, s->host, (unsigned)s->port,
			s->tls == MK_CONFIG_TLS_IMPLICIT ? "implicit TLS" : "STARTTLS");
}

void mk_config_dump(const struct mk_config *cfg, FILE *out)
{
	fprintf(out, "config: %s\n", cfg->path);
	fprintf(out, "store:  %s\n", cfg->store);
	if (cfg->n_accounts == 0)
		fprintf(out, "no accounts: add an [account NAME] section\n");
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		const struct mk_config_account *a = &cfg->accounts[i];
		fprintf(out, "account %s (line %u)\n", a->name, a->line);
		fprintf(out, "  %-9s %s\n", "provider", mk_config_provider_name(a->provider));
		fprintf(out, "  %-9s %s\n", "email", a->email);
		fprintf(out, "  %-9s %s\n", "user", a->user);
		fprintf(out, "  %-9s %s\n", "auth", mk_config_auth_name(a->auth));
		/* The password itself is never printed; the command is not a
		 * secret and helps to debug it. */
		if (a->password != NULL)
			fprintf(out, "  %-9s password (set, hidden)\n", "secret");
		else if (a->pass_cmd != NULL)
			fprintf(out, "  %-9s pass_cmd: %s\n", "secret", a->pass_cmd);
		else if (a->auth == MK_CONFIG_AUTH_XOAUTH2)
			fprintf(out, "  %-9s none (OAuth tokens)\n", "secret");
		else
			fprintf(out, "  %-9s none\n", "secret");
		dump_server(out, "imap", &a->imap);
		dump_server(out, "pop3", &a->pop3);
		dump_server(out, "smtp", &a->smtp);
		if (a->tls_ca_file != NULL)
			fprintf(out, "  %-9s %s\n", "tls_ca_file", a->tls_ca_file);
		if (a->tls_fingerprint != NULL)
			fprintf(out, "  %-9s %s\n", "tls_fingerprint", a->tls_fingerprint);
		fprintf(out, "  %-9s %s\n", "folders", a->folders);
		/* issue 7: shown only when not the default (IMAP only) */
		if (a->fetch != MK_CONFIG_FETCH_IMAP) {
			fprintf(out, "  %-9s %s\n", "fetch", mk_config_fetch_name(a->fetch));
			if (a->pop3_delete == MK_CONFIG_POP3_DELETE_AFTER_DAYS)
				fprintf(out, "  %-9s after_days %u\n", "pop3_delete", a->pop3_delete_days);
			else
				fprintf(out, "  %-9s %s\n", "pop3_delete",
					a->pop3_delete == MK_CONFIG_POP3_DELETE_NEVER ? "never" : "after_store");
		}
		fprintf(out, "  %-9s %u s, %u connections at most\n", "timeout", a->timeout_s, a->max_connections);
		fprintf(out, "  %-9s %s (refreshed every %u s; other folders every %u s)\n", "idle", a->idle,
			a->idle_refresh_s, a->poll_interval_s);
		if (a->smtp.host != NULL) { /* issue 5 */
			char per_min[40], per_day[40];
			if (a->max_per_minute)
				snprintf(per_min, sizeof(per_min), "%u messages/min", a->max_per_minute);
			else
				mk_strlcpy(per_min, "no rate limit", sizeof(per_min));
			if (a->max_per_day)
				snprintf(per_day, sizeof(per_day), "%u recipients/day", a->max_per_day);
			else
				mk_strlcpy(per_day, "no daily limit", sizeof(per_day));
			fprintf(out, "  %-9s %s, %s, %u connections, retried for %u h\n", "outbox", per_min, per_day,
				a->max_smtp_connections, a->max_queue_age_s / 3600);
			if (a->server_saves_sent != NULL)
				fprintf(out, "  %-9s filed by the server in \"%s\"\n", "sent", a->server_saves_sent);
			else if (a->save_sent != NULL)
				fprintf(out, "  %-9s saved by mailkeep in \"%s\"\n", "sent", a->save_sent);
			else
				fprintf(out, "  %-9s not kept\n", "sent");
		}
		/* issue 6: where the OAuth tokens come from (none is secret) */
		if (a->token_cmd != NULL)
			fprintf(out, "  %-9s token_cmd: %s (output reused for %u s)\n", "oauth", a->token_cmd,
				a->token_cmd_cache_s);
		else if (a->oauth_client_id != NULL)
			fprintf(out, "  %-9s client %s, tenant %s, %s\n  %-9s %s\n", "oauth", a->oauth_client_id,
				a->oauth_tenant, a->oauth_authority, "scopes", a->oauth_scopes);
	}
}
