/* SPDX-License-Identifier: MIT */
/*
 * mk_token.h - the JSON replies of the Microsoft identity platform's
 * /devicecode and /token endpoints (OUTLOOK.md §1.3), their errors in plain
 * words, and the per-account refresh token file.
 *
 * Tokens, device codes and every buffer that held the JSON are secrets:
 * they are wiped before they are freed and never appear in a message.
 */
#ifndef MK_TOKEN_H
#define MK_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A token endpoint reply is a few KiB; refuse anything absurd. */
#define MK_TOKEN_JSON_MAX (1024 * 1024)
/* One string field (Microsoft tokens are 1.5-6 KB; room to grow). */
#define MK_TOKEN_FIELD_MAX (32 * 1024)
#define MK_TOKEN_MAX_ERROR_CODES 8

/* A parsed reply. Absent strings are NULL; absent numbers are -1. */
struct mk_token_reply {
	char *access_token;  /* secret */
	char *refresh_token; /* secret */
	char *token_type;
	char *scope;
	int64_t expires_in; /* seconds (a number or a string of digits) */
	char *device_code;  /* secret */
	char *user_code;
	char *verification_uri;
	char *message;
	int64_t interval; /* seconds */
	char *error;
	char *error_description;
	uint32_t error_codes[MK_TOKEN_MAX_ERROR_CODES];
	unsigned n_error_codes;
	/* The first AADSTS code: error_codes[0], else the number after
	 * "AADSTS" in error_description; 0 when none. */
	uint32_t aadsts;
};

/* Parses one JSON object (`n` bytes, need not be NUL-terminated). Unknown
 * members are ignored; a known member of the wrong type is an error.
 * Returns: 0, MK_EPROTO (not a JSON object, wrong types; *error_r says
 * what, without quoting values), MK_ETOOBIG (over MK_TOKEN_JSON_MAX or a
 * field over MK_TOKEN_FIELD_MAX). On error *r is left empty. */
int mk_token_parse(const uint8_t *p, size_t n, struct mk_token_reply *r, const char **error_r);
/* Wipes the secrets and frees everything; idempotent. */
void mk_token_reply_cleanup(struct mk_token_reply *r);

/* What an error reply means for the caller. */
enum mk_token_error_kind {
	MK_TOKEN_ERR_NONE = 0,
	MK_TOKEN_ERR_PENDING,   /* authorization_pending: poll again */
	MK_TOKEN_ERR_SLOW_DOWN, /* slow_down: poll again, 5 s slower */
	MK_TOKEN_ERR_DECLINED,  /* authorization_declined / access_denied */
	MK_TOKEN_ERR_EXPIRED,   /* expired_token: the device code expired */
	MK_TOKEN_ERR_BAD_CODE,  /* bad_verification_code */
	MK_TOKEN_ERR_RELOGIN,   /* invalid_grant: the refresh token is dead */
	MK_TOKEN_ERR_CONFIG,    /* the client id, tenant, scopes or app registration */
	MK_TOKEN_ERR_TEMP,      /* server_error, temporarily_unavailable */
	MK_TOKEN_ERR_OTHER,
};

/* Classifies r->error (and r->aadsts). */
enum mk_token_error_kind mk_token_classify(const struct mk_token_reply *r);
/* Maps a kind to an error code: RELOGIN/DECLINED/EXPIRED/BAD_CODE ->
 * MK_EAUTH, CONFIG -> MK_ECONFIG, TEMP -> MK_ESERVER, OTHER -> MK_EAUTH,
 * NONE -> 0. */
int mk_token_error_code(enum mk_token_error_kind kind);

/* Writes into buf a plain-words explanation of an error reply for
 * `account`, ending in what to do (e.g. "run `mailkeep login NAME`"); the
 * server's own error and AADSTS code are kept for searching. Returns buf. */
const char *mk_token_explain(const struct mk_token_reply *r, const char *account, char *buf, size_t bufsz);

/* ---- the refresh token file (token_file.c) ----
 *
 * STORE/oauth/ACCOUNT.token, directory 0700, file 0600, owned by the user.
 * Content: "mailkeep-oauth 1\nclient_id=ID\nrefresh_token=TOKEN\n". */

/* The file's path (new string). */
char *mk_token_file_path(const char *store, const char *account);

struct mk_token_file {
	char *client_id;     /* the client the token was issued to */
	char *refresh_token; /* secret */
};

/* Reads the file. A file that is not a regular file owned by the user
 * with mode 0600 or stricter is refused (*error_r names the chmod to run).
 * Returns: 0, MK_ENOTFOUND (no file: "run `mailkeep login NAME`"),
 * MK_EPERM, MK_ECORRUPT (not our format), MK_EIO. *error_r is a new string
 * on error (mk_free it), never containing the token. */
int mk_token_file_read(const char *store, const char *account, struct mk_token_file *tf, char **error_r);

/* Replaces the file atomically and durably: creates STORE and STORE/oauth
 * (0700) if needed, writes a 0600 temporary file in the same directory,
 * fsyncs it, renames it over the old one and fsyncs the directory. After a
 * crash the file holds the old token or the new one, never a mix.
 * Returns: 0, MK_EIO, MK_EINVAL (a CR/LF in a value); *error_r as above. */
int mk_token_file_write(const char *store, const char *account, const char *client_id, const char *refresh_token,
			char **error_r);

/* Wipes and frees; idempotent. */
void mk_token_file_cleanup(struct mk_token_file *tf);

#endif
