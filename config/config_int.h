/* SPDX-License-Identifier: MIT */
/*
 * config_int.h - internals shared by the files of config/ (and its tests).
 *
 * parse.c turns the text into a "raw" tree: one slot per known key per
 * section, each holding the verbatim value and its line. validate.c checks
 * single values (called by parse.c as each key is seen, so errors come in
 * file order) and then resolves the raw tree into the public struct
 * mk_config: [defaults] inheritance, presets, default ports and the checks
 * that involve several keys. presets.c holds the tables. Nothing here
 * includes <ini.h>; only parse.c does.
 */
#ifndef MK_CONFIG_INT_H
#define MK_CONFIG_INT_H

#include "mk_config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* Every key the format knows, in the order mk_config_dump() and the
 * did-you-mean search use. */
enum mk__config_key {
	MK__CONFIG_KEY_STORE = 0,
	MK__CONFIG_KEY_PROVIDER,
	MK__CONFIG_KEY_EMAIL,
	MK__CONFIG_KEY_USER,
	MK__CONFIG_KEY_AUTH,
	MK__CONFIG_KEY_PASSWORD,
	MK__CONFIG_KEY_PASS_CMD,
	MK__CONFIG_KEY_IMAP_HOST,
	MK__CONFIG_KEY_IMAP_PORT,
	MK__CONFIG_KEY_IMAP_TLS,
	MK__CONFIG_KEY_POP3_HOST,
	MK__CONFIG_KEY_POP3_PORT,
	MK__CONFIG_KEY_POP3_TLS,
	MK__CONFIG_KEY_SMTP_HOST,
	MK__CONFIG_KEY_SMTP_PORT,
	MK__CONFIG_KEY_SMTP_TLS,
	MK__CONFIG_KEY_TLS_CA_FILE,
	MK__CONFIG_KEY_TLS_FINGERPRINT,
	MK__CONFIG_KEY_TIMEOUT,
	MK__CONFIG_KEY_MAX_CONNECTIONS,
	MK__CONFIG_KEY_FOLDERS,
	MK__CONFIG_KEY_IDLE,
	MK__CONFIG_KEY_POLL_INTERVAL,
	MK__CONFIG_KEY_IDLE_REFRESH,
	MK__CONFIG_KEY_FETCH,       /* issue 7 */
	MK__CONFIG_KEY_POP3_DELETE, /* issue 7 */
	MK__CONFIG_KEY_COMPRESS_LEVEL,
	/* issue 5: the outbox */
	MK__CONFIG_KEY_MAX_PER_MINUTE,
	MK__CONFIG_KEY_MAX_PER_DAY,
	MK__CONFIG_KEY_MAX_SMTP_CONNECTIONS,
	MK__CONFIG_KEY_MAX_QUEUE_AGE,
	MK__CONFIG_KEY_SAVE_SENT,
	MK__CONFIG_KEY_SERVER_SAVES_SENT,
	/* issue 6: OAuth2 */
	MK__CONFIG_KEY_OAUTH_CLIENT_ID,
	MK__CONFIG_KEY_OAUTH_TENANT,
	MK__CONFIG_KEY_OAUTH_AUTHORITY,
	MK__CONFIG_KEY_OAUTH_SCOPES,
	MK__CONFIG_KEY_TOKEN_CMD,
	MK__CONFIG_KEY_TOKEN_CMD_CACHE,
	MK__CONFIG_KEY_COUNT
};

/* Where a key may appear. */
#define MK__CONFIG_IN_DEFAULTS 0x1u
#define MK__CONFIG_IN_ACCOUNT 0x2u

struct mk__config_key_info {
	const char *name;
	unsigned where; /* MK__CONFIG_IN_* */
};

/* Indexed by enum mk__config_key (presets.c). */
extern const struct mk__config_key_info mk__config_keys[MK__CONFIG_KEY_COUNT];

/* The three servers an account may have, and their keys. */
enum mk__config_proto {
	MK__CONFIG_PROTO_IMAP = 0,
	MK__CONFIG_PROTO_POP3,
	MK__CONFIG_PROTO_SMTP,
	MK__CONFIG_PROTO_COUNT
};

struct mk__config_proto_info {
	const char *name;             /* "imap" */
	enum mk__config_key host_key; /* MK__CONFIG_KEY_IMAP_HOST ... */
	enum mk__config_key port_key;
	enum mk__config_key tls_key;
	uint16_t implicit_port;   /* 993, 995, 465 */
	uint16_t starttls_port;   /* 143, 110, 587 */
	enum mk_config_tls default_tls; /* for custom servers */
};

extern const struct mk__config_proto_info mk__config_protos[MK__CONFIG_PROTO_COUNT];

struct mk__config_preset_server {
	const char *host; /* NULL: none preset */
	uint16_t port;
	enum mk_config_tls tls;
};

struct mk__config_preset {
	enum mk_config_provider provider;
	enum mk_config_auth auth;
	const char *oauth_tenant; /* issue 6 */
	struct mk__config_preset_server server[MK__CONFIG_PROTO_COUNT];
};

const struct mk__config_preset *mk__config_preset_get(enum mk_config_provider p);
/* Default port of a server for a TLS mode (993 implicit, 143 STARTTLS...). */
uint16_t mk__config_default_port(enum mk__config_proto proto, enum mk_config_tls tls);

/* One value as written: `text` is NULL when the key is absent. */
struct mk__config_value {
	char *text;
	unsigned line;
};

/* One section: [defaults] or [account NAME]. */
struct mk__config_section {
	char *name; /* account name; NULL for [defaults] */
	unsigned line;
	struct mk__config_value v[MK__CONFIG_KEY_COUNT];
};

struct mk__config_raw {
	bool have_defaults;
	struct mk__config_section defaults;
	size_t n_accounts;
	size_t cap_accounts;
	struct mk__config_section *accounts;
};

void mk__config_raw_cleanup(struct mk__config_raw *raw);

/* Environment lookup, injectable so tests control HOME and XDG_*. */
struct mk__config_env {
	/* Returns the variable's value or NULL. */
	const char *(*get)(void *ctx, const char *name);
	void *ctx;
};

/* mk_config_parse() with an explicit environment (env NULL: getenv()).
 * Returns: 0, MK_ECONFIG. */
int mk__config_parse_env(const char *buf, size_t len, const char *name, const char *home,
			 const struct mk__config_env *env, struct mk_config **cfg_r, char **error_r);

/* Checks one value of `key` on its own (enum names, port range, email and
 * fingerprint shape, path form). On failure writes a message without the
 * "FILE:LINE: " prefix into msg (size msgsz) and returns MK_ECONFIG.
 * Never quotes the value of password or pass_cmd.
 * Returns: 0, MK_ECONFIG. */
int mk__config_check_value(enum mk__config_key key, const char *value, char *msg, size_t msgsz);

/* Context for resolving: the file name for messages, the home directory for
 * "~/" and the environment for XDG_DATA_HOME. */
struct mk__config_resolve_ctx {
	const char *name;
	const char *home; /* NULL or "": unknown */
	const struct mk__config_env *env;
};

/* Builds the public tree from a syntactically valid raw tree (which it
 * leaves untouched). On error *error_r is "NAME:LINE: message".
 * Returns: 0, MK_ECONFIG. */
int mk__config_resolve(const struct mk__config_raw *raw, const struct mk__config_resolve_ctx *ctx,
		       struct mk_config **cfg_r, char **error_r);

/* Looks a name up in a NULL-terminated list; returns its index or -1. */
int mk__config_lookup(const char *const *names, const char *s);
/* The closest of a NULL-terminated list within a small edit distance, or
 * NULL (for "did you mean" hints). */
const char *mk__config_suggest(const char *const *names, const char *s);

/* The pass_cmd time limit in ms (MK_LIMIT_CMD_TIMEOUT_MS unless a test
 * lowered it); 0 restores the default. */
void mk__config_set_cmd_timeout_ms(unsigned ms);
unsigned mk__config_cmd_timeout_ms(void);

/* Overwrites and frees a string that may hold a secret; NULL is fine. */
void mk__config_free_secret_str(char *s);

#endif
