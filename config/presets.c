/* SPDX-License-Identifier: MIT */
/*
 * presets.c - the static tables of the configuration: known keys and where
 * they may appear, the three server kinds with their standard ports, and the
 * provider presets (outlook, office365, custom). Also the enum <-> name
 * helpers and the did-you-mean search. Pure data and lookups: no I/O, no
 * allocation.
 */
#include "config_int.h"

#include "mk_str.h"

#include <string.h>

#define BOTH (MK__CONFIG_IN_DEFAULTS | MK__CONFIG_IN_ACCOUNT)

/* email, user, password and pass_cmd identify one mailbox, so they make no
 * sense as defaults for every account; store is one per process. */
const struct mk__config_key_info mk__config_keys[MK__CONFIG_KEY_COUNT] = {
	[MK__CONFIG_KEY_STORE] = {"store", MK__CONFIG_IN_DEFAULTS},
	[MK__CONFIG_KEY_PROVIDER] = {"provider", BOTH},
	[MK__CONFIG_KEY_EMAIL] = {"email", MK__CONFIG_IN_ACCOUNT},
	[MK__CONFIG_KEY_USER] = {"user", MK__CONFIG_IN_ACCOUNT},
	[MK__CONFIG_KEY_AUTH] = {"auth", BOTH},
	[MK__CONFIG_KEY_PASSWORD] = {"password", MK__CONFIG_IN_ACCOUNT},
	[MK__CONFIG_KEY_PASS_CMD] = {"pass_cmd", MK__CONFIG_IN_ACCOUNT},
	[MK__CONFIG_KEY_IMAP_HOST] = {"imap_host", BOTH},
	[MK__CONFIG_KEY_IMAP_PORT] = {"imap_port", BOTH},
	[MK__CONFIG_KEY_IMAP_TLS] = {"imap_tls", BOTH},
	[MK__CONFIG_KEY_POP3_HOST] = {"pop3_host", BOTH},
	[MK__CONFIG_KEY_POP3_PORT] = {"pop3_port", BOTH},
	[MK__CONFIG_KEY_POP3_TLS] = {"pop3_tls", BOTH},
	[MK__CONFIG_KEY_SMTP_HOST] = {"smtp_host", BOTH},
	[MK__CONFIG_KEY_SMTP_PORT] = {"smtp_port", BOTH},
	[MK__CONFIG_KEY_SMTP_TLS] = {"smtp_tls", BOTH},
	[MK__CONFIG_KEY_TLS_CA_FILE] = {"tls_ca_file", BOTH},
	[MK__CONFIG_KEY_TLS_FINGERPRINT] = {"tls_fingerprint", BOTH},
	[MK__CONFIG_KEY_TIMEOUT] = {"timeout", BOTH},
	[MK__CONFIG_KEY_MAX_CONNECTIONS] = {"max_connections", BOTH},
	[MK__CONFIG_KEY_FOLDERS] = {"folders", BOTH},
	[MK__CONFIG_KEY_FETCH] = {"fetch", BOTH},             /* issue 7 */
	[MK__CONFIG_KEY_POP3_DELETE] = {"pop3_delete", BOTH}, /* issue 7 */
	[MK__CONFIG_KEY_IDLE] = {"idle", BOTH},
	[MK__CONFIG_KEY_POLL_INTERVAL] = {"poll_interval", BOTH},
	[MK__CONFIG_KEY_IDLE_REFRESH] = {"idle_refresh", BOTH},
	[MK__CONFIG_KEY_COMPRESS_LEVEL] = {"compress_level", MK__CONFIG_IN_DEFAULTS},
	/* issue 5: the outbox */
	[MK__CONFIG_KEY_MAX_PER_MINUTE] = {"max_per_minute", BOTH},
	[MK__CONFIG_KEY_MAX_PER_DAY] = {"max_per_day", BOTH},
	[MK__CONFIG_KEY_MAX_SMTP_CONNECTIONS] = {"max_smtp_connections", BOTH},
	[MK__CONFIG_KEY_MAX_QUEUE_AGE] = {"max_queue_age", BOTH},
	[MK__CONFIG_KEY_SAVE_SENT] = {"save_sent", BOTH},
	[MK__CONFIG_KEY_SERVER_SAVES_SENT] = {"server_saves_sent", BOTH},
	/* issue 6: one app registration usually serves every account, so the
	 * OAuth keys may be defaults; token_cmd prints one mailbox's token. */
	[MK__CONFIG_KEY_OAUTH_CLIENT_ID] = {"oauth_client_id", BOTH},
	[MK__CONFIG_KEY_OAUTH_TENANT] = {"oauth_tenant", BOTH},
	[MK__CONFIG_KEY_OAUTH_AUTHORITY] = {"oauth_authority", BOTH},
	[MK__CONFIG_KEY_OAUTH_SCOPES] = {"oauth_scopes", BOTH},
	[MK__CONFIG_KEY_TOKEN_CMD] = {"token_cmd", MK__CONFIG_IN_ACCOUNT},
	[MK__CONFIG_KEY_TOKEN_CMD_CACHE] = {"token_cmd_cache", BOTH},
};

/* The IANA ports: implicit TLS (RFC 8314) and the plain ports that upgrade
 * with STARTTLS. SMTP defaults to submission on 587 with STARTTLS, which is
 * what Outlook.com offers. */
const struct mk__config_proto_info mk__config_protos[MK__CONFIG_PROTO_COUNT] = {
	[MK__CONFIG_PROTO_IMAP] = {"imap", MK__CONFIG_KEY_IMAP_HOST, MK__CONFIG_KEY_IMAP_PORT,
				   MK__CONFIG_KEY_IMAP_TLS, 993, 143, MK_CONFIG_TLS_IMPLICIT},
	[MK__CONFIG_PROTO_POP3] = {"pop3", MK__CONFIG_KEY_POP3_HOST, MK__CONFIG_KEY_POP3_PORT,
				   MK__CONFIG_KEY_POP3_TLS, 995, 110, MK_CONFIG_TLS_IMPLICIT},
	[MK__CONFIG_PROTO_SMTP] = {"smtp", MK__CONFIG_KEY_SMTP_HOST, MK__CONFIG_KEY_SMTP_PORT,
				   MK__CONFIG_KEY_SMTP_TLS, 465, 587, MK_CONFIG_TLS_STARTTLS},
};

/* Outlook.com (consumer) and Microsoft 365 share the IMAP/POP3 endpoint;
 * submission differs. Both refuse basic auth, hence XOAUTH2. */
static const struct mk__config_preset presets[] = {
	{MK_CONFIG_PROVIDER_CUSTOM, MK_CONFIG_AUTH_PLAIN, "common",
	 {{NULL, 993, MK_CONFIG_TLS_IMPLICIT}, {NULL, 995, MK_CONFIG_TLS_IMPLICIT}, {NULL, 587, MK_CONFIG_TLS_STARTTLS}}},
	{MK_CONFIG_PROVIDER_OUTLOOK, MK_CONFIG_AUTH_XOAUTH2, "consumers",
	 {{"outlook.office365.com", 993, MK_CONFIG_TLS_IMPLICIT},
	  {"outlook.office365.com", 995, MK_CONFIG_TLS_IMPLICIT},
	  {"smtp-mail.outlook.com", 587, MK_CONFIG_TLS_STARTTLS}}},
	{MK_CONFIG_PROVIDER_OFFICE365, MK_CONFIG_AUTH_XOAUTH2, "organizations",
	 {{"outlook.office365.com", 993, MK_CONFIG_TLS_IMPLICIT},
	  {"outlook.office365.com", 995, MK_CONFIG_TLS_IMPLICIT},
	  {"smtp.office365.com", 587, MK_CONFIG_TLS_STARTTLS}}},
};

const struct mk__config_preset *mk__config_preset_get(enum mk_config_provider p)
{
	for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
		if (presets[i].provider == p)
			return &presets[i];
	}
	return &presets[0];
}

uint16_t mk__config_default_port(enum mk__config_proto proto, enum mk_config_tls tls)
{
	const struct mk__config_proto_info *pi = &mk__config_protos[proto];
	return tls == MK_CONFIG_TLS_IMPLICIT ? pi->implicit_port : pi->starttls_port;
}

const char *mk_config_tls_name(enum mk_config_tls tls)
{
	switch (tls) {
	case MK_CONFIG_TLS_IMPLICIT:
		return "implicit";
	case MK_CONFIG_TLS_STARTTLS:
		return "starttls";
	}
	return "?";
}

const char *mk_config_auth_name(enum mk_config_auth auth)
{
	switch (auth) {
	case MK_CONFIG_AUTH_XOAUTH2:
		return "xoauth2";
	case MK_CONFIG_AUTH_PLAIN:
		return "plain";
	case MK_CONFIG_AUTH_LOGIN:
		return "login";
	}
	return "?";
}

const char *mk_config_provider_name(enum mk_config_provider p)
{
	switch (p) {
	case MK_CONFIG_PROVIDER_CUSTOM:
		return "custom";
	case MK_CONFIG_PROVIDER_OUTLOOK:
		return "outlook";
	case MK_CONFIG_PROVIDER_OFFICE365:
		return "office365";
	}
	return "?";
}

const char *mk_config_fetch_name(enum mk_config_fetch f)
{
	switch (f) {
	case MK_CONFIG_FETCH_IMAP:
		return "imap";
	case MK_CONFIG_FETCH_POP3:
		return "pop3";
	case MK_CONFIG_FETCH_BOTH:
		return "both";
	}
	return "?";
}

int mk__config_lookup(const char *const *names, const char *s)
{
	for (int i = 0; names[i] != NULL; i++) {
		if (strcmp(names[i], s) == 0)
			return i;
	}
	return -1;
}

const char *mk__config_suggest(const char *const *names, const char *s)
{
	/* Two edits catch a typo or a swap; on short words allow only one so
	 * "pop" does not suggest "port". mk_str_distance ignores case, so
	 * "IMAP_HOST" suggests "imap_host". */
	size_t len = strlen(s);
	size_t limit = len <= 4 ? 1 : 2;
	const char *best = NULL;
	size_t best_d = limit + 1;
	for (size_t i = 0; names[i] != NULL; i++) {
		size_t d = mk_str_distance(s, names[i], limit + 1);
		if (d < best_d) {
			best_d = d;
			best = names[i];
		}
	}
	return best;
}
