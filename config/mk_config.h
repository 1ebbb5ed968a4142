/* SPDX-License-Identifier: MIT */
/*
 * mk_config.h - the configuration: an immutable tree of plain structs with
 * every default filled in.
 *
 * The file is INI (libinih): a [defaults] section, then [account NAME]
 * sections of `key = value`. mk_config_parse() works on a memory buffer (so
 * it can be fuzzed); only load.c touches files. Errors read
 * "FILE:LINE: message". Secrets (password, pass_cmd output) are never
 * printed: mk_config_dump() masks them.
 *
 * Only config/ includes <ini.h> or touches inih's process-global knobs.
 */
#ifndef MK_CONFIG_H
#define MK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The outlook/office365 default of `folders`: every folder but Exchange's
 * non-mail ones (OUTLOOK.md §2.3). */
#define MK_CONFIG_OUTLOOK_FOLDERS                                                                                  \
	"* !Calendar !Calendar/* !Contacts !Contacts/* !Tasks !Tasks/* !Notes !Notes/* !Journal !Journal/* "      \
	"!\"Conversation History\" !\"Conversation History/*\" !\"RSS Feeds\" !\"RSS Feeds/*\" !\"Sync Issues\" "      \
	"!\"Sync Issues/*\" !Files"

enum mk_config_provider {
	MK_CONFIG_PROVIDER_CUSTOM = 0,
	MK_CONFIG_PROVIDER_OUTLOOK,
	MK_CONFIG_PROVIDER_OFFICE365,
};

enum mk_config_auth {
	MK_CONFIG_AUTH_XOAUTH2 = 0,
	MK_CONFIG_AUTH_PLAIN,
	MK_CONFIG_AUTH_LOGIN,
};

enum mk_config_tls {
	MK_CONFIG_TLS_IMPLICIT = 0, /* TLS from the first byte (993, 995, 465) */
	MK_CONFIG_TLS_STARTTLS,     /* plain connect, then mandatory upgrade */
};

/* What `mailkeep sync` fetches for an account (key `fetch`; issue 7). */
enum mk_config_fetch {
	MK_CONFIG_FETCH_IMAP = 0, /* default */
	MK_CONFIG_FETCH_POP3,
	MK_CONFIG_FETCH_BOTH,
};

/* When POP3 messages are deleted from the server (key `pop3_delete`). */
enum mk_config_pop3_delete {
	MK_CONFIG_POP3_DELETE_NEVER = 0,   /* default */
	MK_CONFIG_POP3_DELETE_AFTER_STORE, /* once durably stored and re-read */
	MK_CONFIG_POP3_DELETE_AFTER_DAYS,  /* ... and stored at least pop3_delete_days ago */
};

struct mk_config_server {
	char *host; /* NULL when the account has no such server */
	uint16_t port;
	enum mk_config_tls tls;
};

struct mk_config_account {
	char *name;  /* the [account NAME] */
	unsigned line; /* line of the section header, for messages */
	enum mk_config_provider provider;
	char *email;
	char *user;     /* defaults to email */
	enum mk_config_auth auth;
	char *password; /* inline secret, or NULL */
	char *pass_cmd; /* run through /bin/sh at connect time, or NULL */
	struct mk_config_server imap;
	struct mk_config_server pop3;
	struct mk_config_server smtp;
	char *tls_ca_file;     /* extra trusted CA file, or NULL */
	char *tls_fingerprint; /* "sha256/BASE64" of the SPKI, or NULL */
	unsigned timeout_s;       /* connect, TLS handshake and read inactivity (default 30) */
	unsigned max_connections; /* per account and protocol (default 4) */
	char *folders;            /* folder patterns, default "*" (see mk_config_folder_match);
				   * outlook/office365: MK_CONFIG_OUTLOOK_FOLDERS */
	enum mk_config_fetch fetch;             /* issue 7: imap (default), pop3, both */
	enum mk_config_pop3_delete pop3_delete; /* issue 7: never (default), after_store, after_days */
	unsigned pop3_delete_days;              /* after_days N: N (0..36500) */
	char *idle;               /* folders watched with IMAP IDLE (patterns), default "INBOX" */
	unsigned poll_interval_s; /* other folders are synced this often (default 900) */
	unsigned idle_refresh_s;  /* IDLE re-issued this often (default 600: Outlook goes quiet) */
	/* issue 5: the outbox (0 means no limit for the rate keys) */
	unsigned max_per_minute;       /* messages per minute (outlook/office365: 30) */
	unsigned max_per_day;          /* recipients per 24 h (outlook 300, office365 10000) */
	unsigned max_smtp_connections; /* at once (default 3, Microsoft's cap) */
	unsigned max_queue_age_s;      /* temporary failures retried this long (default 5 days) */
	char *save_sent;         /* folder mailkeep APPENDs sent mail to, or NULL */
	char *server_saves_sent; /* folder where the server files each submission itself
				  * (outlook/office365: "Sent Items"), or NULL */
	/* issue 6: OAuth2 (auth = xoauth2). The user's own Entra app: no
	 * client id is shipped (OUTLOOK.md §1.5). */
	char *oauth_client_id;  /* or NULL when token_cmd is used */
	char *oauth_tenant;     /* default: consumers (outlook), organizations (office365), else common */
	char *oauth_authority;  /* https URL, default https://login.microsoftonline.com */
	char *oauth_scopes;     /* space-separated, default MK_CONFIG_OAUTH_SCOPES */
	char *token_cmd;        /* prints an access token; instead of oauth_client_id */
	unsigned token_cmd_cache_s; /* its output is reused this long (default 300) */
};

#define MK_CONFIG_OAUTH_AUTHORITY "https://login.microsoftonline.com"
/* OUTLOOK.md §1.4: one token covers the three protocols; offline_access
 * brings the refresh token. */
#define MK_CONFIG_OAUTH_SCOPES                                                 \
	"offline_access https://outlook.office.com/IMAP.AccessAsUser.All "   \
	"https://outlook.office.com/POP.AccessAsUser.All https://outlook.office.com/SMTP.Send"

#define MK_CONFIG_MAX_CONNECTIONS 16

struct mk_config {
	char *path;  /* file name as given, for messages */
	char *store; /* LMDB environment directory, ~ expanded */
	int compress_level; /* zlib level for new bodies (codec MZ1), 1..9 (default 4) */
	size_t n_accounts;
	struct mk_config_account *accounts;
};

/* Parses `len` bytes (need not be NUL-terminated) named `name` (used in
 * messages). On success *cfg_r is a new tree (mk_config_free it). On error
 * *error_r is a new string "NAME:LINE: message" (mk_free it).
 * `home` expands a leading "~/" in paths (NULL: $HOME).
 * Returns: 0, MK_ECONFIG. */
int mk_config_parse(const char *buf, size_t len, const char *name, const char *home,
		    struct mk_config **cfg_r, char **error_r);

/* Reads and parses a file. With path == NULL uses $MAILKEEP_CONFIG, else
 * $XDG_CONFIG_HOME/mailkeep/config, else ~/.config/mailkeep/config.
 * A file that holds `password` must be a regular file owned by the user with
 * no group/other permissions; otherwise the error names the chmod to run.
 * Returns: 0, MK_ECONFIG, MK_EPERM, MK_ENOTFOUND (error_r set in each case). */
int mk_config_load(const char *path, struct mk_config **cfg_r, char **error_r);

/* The default path (new string). */
char *mk_config_default_path(void);

void mk_config_free(struct mk_config **cfg);

/* Finds an account by name, or NULL. */
const struct mk_config_account *mk_config_find_account(const struct mk_config *cfg, const char *name);

/* Writes the resolved configuration, secrets masked, for check-config. */
void mk_config_dump(const struct mk_config *cfg, FILE *out);

/* Obtains the account's secret: `password`, or the first line of
 * `pass_cmd`'s stdout (run via /bin/sh -c, stdin /dev/null, bounded output
 * and time). *secret_r is a new string the caller must wipe and free with
 * mk_config_secret_free(). On failure *error_r is a new string naming the
 * account and what went wrong (exit status, empty output, timeout), never
 * the secret. Returns: 0, MK_ECMD, MK_ENOTFOUND (no secret configured). */
int mk_config_get_secret(const struct mk_config_account *acct, char **secret_r, char **error_r);
void mk_config_secret_free(char **secret);

/* Folder selection. `patterns` is a blank-separated list of IMAP LIST
 * patterns (`*` matches anything, `%` anything but the delimiter), each
 * optionally prefixed with `!` to exclude; quote a name with spaces in
 * double quotes ("Sent Items"). The last pattern that matches decides;
 * a list of only exclusions starts from everything. INBOX matches
 * case-insensitively. */
bool mk_config_folder_match(const char *patterns, const char *name, char delimiter);
/* Parses a duration: "90", "90s", "15m", "2h", "1d". Returns: 0, MK_EINVAL. */
int mk_config_duration(const char *s, unsigned min_s, unsigned max_s, unsigned *seconds_r);
/* Syntax check for the folders key. Returns: 0, MK_ECONFIG (msg set). */
int mk_config_folders_check(const char *patterns, char *msg, size_t msgsz);

const char *mk_config_tls_name(enum mk_config_tls tls);
const char *mk_config_auth_name(enum mk_config_auth auth);
const char *mk_config_provider_name(enum mk_config_provider p);
const char *mk_config_fetch_name(enum mk_config_fetch f);

#endif
