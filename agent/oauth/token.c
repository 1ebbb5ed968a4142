/* SPDX-License-Identifier: MIT */
/*
 * token.c - parses the identity platform's JSON replies with cJSON and
 * says what their errors mean (see mk_token.h).
 *
 * cJSON allocates through mk_alloc (cJSON_InitHooks), and every block it
 * frees is wiped first: the parsed tree holds the tokens, so a plain free
 * would leave them in the heap. Values are never quoted in a message
 * (error_description comes from the server and holds no secret, but the
 * access_token field of a malformed reply might).
 */
#include "mk_token.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_str.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <string.h>

/* ---- cJSON allocation: mk_alloc, wiped on free ---- */

struct hook_hdr {
	size_t n;
	size_t pad; /* keeps the payload 16-byte aligned */
};

static void *hook_malloc(size_t n)
{
	struct hook_hdr *h = mk_xmalloc(sizeof(*h) + n);
	h->n = n;
	return h + 1;
}

static void hook_free(void *p)
{
	if (p == NULL)
		return;
	struct hook_hdr *h = (struct hook_hdr *)p - 1;
	explicit_bzero(h, sizeof(*h) + h->n);
	mk_free(h);
}

static void init_hooks(void)
{
	static bool done;
	if (done)
		return;
	/* With custom hooks cJSON drops realloc and copies by malloc+free,
	 * so every old copy passes through hook_free. */
	cJSON_Hooks hooks = {hook_malloc, hook_free};
	cJSON_InitHooks(&hooks);
	done = true;
}

static void free_secret(char **s)
{
	if (*s != NULL) {
		explicit_bzero(*s, strlen(*s));
		mk_free(*s);
		*s = NULL;
	}
}

void mk_token_reply_cleanup(struct mk_token_reply *r)
{
	free_secret(&r->access_token);
	free_secret(&r->refresh_token);
	free_secret(&r->device_code);
	MK_FREE(&r->token_type);
	MK_FREE(&r->scope);
	MK_FREE(&r->user_code);
	MK_FREE(&r->verification_uri);
	MK_FREE(&r->message);
	MK_FREE(&r->error);
	MK_FREE(&r->error_description);
	memset(r, 0, sizeof(*r));
	r->expires_in = -1;
	r->interval = -1;
}

static int get_str(const cJSON *root, const char *name, char **out, const char **error_r)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
	if (it == NULL || cJSON_IsNull(it))
		return 0;
	if (!cJSON_IsString(it) || it->valuestring == NULL) {
		*error_r = "a string member has another type";
		return MK_EPROTO;
	}
	size_t n = strlen(it->valuestring);
	if (n > MK_TOKEN_FIELD_MAX) {
		*error_r = "a string member is too long";
		return MK_ETOOBIG;
	}
	*out = mk_xstrndup(it->valuestring, n);
	return 0;
}

/* expires_in and interval: Microsoft sends numbers; older v1 endpoints
 * sent strings of digits. */
static int get_num(const cJSON *root, const char *name, int64_t *out, const char **error_r)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
	if (it == NULL || cJSON_IsNull(it))
		return 0;
	if (cJSON_IsNumber(it)) {
		double d = it->valuedouble;
		if (!(d >= 0 && d <= 100.0 * 365 * 86400)) {
			*error_r = "a number member is out of range";
			return MK_EPROTO;
		}
		*out = (int64_t)d;
		return 0;
	}
	uint64_t v;
	if (cJSON_IsString(it) && it->valuestring != NULL &&
	    mk_str_to_u64(it->valuestring, 0, 100ull * 365 * 86400, &v) == 0) {
		*out = (int64_t)v;
		return 0;
	}
	*error_r = "a number member is not a number";
	return MK_EPROTO;
}

static uint32_t aadsts_from_text(const char *s)
{
	const char *p = s != NULL ? strstr(s, "AADSTS") : NULL;
	if (p == NULL)
		return 0;
	p += 6;
	uint32_t v = 0;
	int digits = 0;
	while (*p >= '0' && *p <= '9' && digits < 9) {
		v = v * 10 + (uint32_t)(*p - '0');
		p++;
		digits++;
	}
	return digits > 0 ? v : 0;
}

int mk_token_parse(const uint8_t *p, size_t n, struct mk_token_reply *r, const char **error_r)
{
	memset(r, 0, sizeof(*r));
	r->expires_in = -1;
	r->interval = -1;
	*error_r = NULL;
	if (n > MK_TOKEN_JSON_MAX) {
		*error_r = "reply is too large";
		return MK_ETOOBIG;
	}
	init_hooks();
	cJSON *root = cJSON_ParseWithLength((const char *)p, n);
	if (root == NULL) {
		*error_r = "reply is not JSON";
		return MK_EPROTO;
	}
	int ret = 0;
	if (!cJSON_IsObject(root)) {
		*error_r = "reply is not a JSON object";
		ret = MK_EPROTO;
	}
	static const struct {
		const char *name;
		size_t off;
	} strs[] = {
		{"access_token", offsetof(struct mk_token_reply, access_token)},
		{"refresh_token", offsetof(struct mk_token_reply, refresh_token)},
		{"token_type", offsetof(struct mk_token_reply, token_type)},
		{"scope", offsetof(struct mk_token_reply, scope)},
		{"device_code", offsetof(struct mk_token_reply, device_code)},
		{"user_code", offsetof(struct mk_token_reply, user_code)},
		{"verification_uri", offsetof(struct mk_token_reply, verification_uri)},
		{"message", offsetof(struct mk_token_reply, message)},
		{"error", offsetof(struct mk_token_reply, error)},
		{"error_description", offsetof(struct mk_token_reply, error_description)},
	};
	for (size_t i = 0; ret == 0 && i < sizeof(strs) / sizeof(strs[0]); i++)
		ret = get_str(root, strs[i].name, (char **)((char *)r + strs[i].off), error_r);
	/* RFC 8628 names it verification_uri; the old v1 endpoint said
	 * verification_url. */
	if (ret == 0 && r->verification_uri == NULL)
		ret = get_str(root, "verification_url", &r->verification_uri, error_r);
	if (ret == 0)
		ret = get_num(root, "expires_in", &r->expires_in, error_r);
	if (ret == 0)
		ret = get_num(root, "interval", &r->interval, error_r);
	if (ret == 0) {
		const cJSON *codes = cJSON_GetObjectItemCaseSensitive(root, "error_codes");
		if (codes != NULL && !cJSON_IsNull(codes)) {
			if (!cJSON_IsArray(codes)) {
				*error_r = "error_codes is not an array";
				ret = MK_EPROTO;
			} else {
				const cJSON *it;
				cJSON_ArrayForEach(it, codes)
				{
					if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 4294967295.0) {
						*error_r = "error_codes holds something other than a code";
						ret = MK_EPROTO;
						break;
					}
					if (r->n_error_codes < MK_TOKEN_MAX_ERROR_CODES)
						r->error_codes[r->n_error_codes++] = (uint32_t)it->valuedouble;
				}
			}
		}
	}
	cJSON_Delete(root);
	if (ret < 0) {
		mk_token_reply_cleanup(r);
		return ret;
	}
	r->aadsts = r->n_error_codes > 0 ? r->error_codes[0] : aadsts_from_text(r->error_description);
	return 0;
}

/* ---- errors ---- */

enum mk_token_error_kind mk_token_classify(const struct mk_token_reply *r)
{
	const char *e = r->error;
	if (e == NULL)
		return MK_TOKEN_ERR_NONE;
	if (strcmp(e, "authorization_pending") == 0)
		return MK_TOKEN_ERR_PENDING;
	if (strcmp(e, "slow_down") == 0)
		return MK_TOKEN_ERR_SLOW_DOWN;
	if (strcmp(e, "authorization_declined") == 0 || strcmp(e, "access_denied") == 0)
		return MK_TOKEN_ERR_DECLINED;
	if (strcmp(e, "expired_token") == 0 || strcmp(e, "code_expired") == 0)
		return MK_TOKEN_ERR_EXPIRED;
	if (strcmp(e, "bad_verification_code") == 0)
		return MK_TOKEN_ERR_BAD_CODE;
	if (strcmp(e, "invalid_grant") == 0) {
		/* AADSTS65001 (consent missing) also arrives as invalid_grant,
		 * but logging in again does not fix it. */
		if (r->aadsts == 65001)
			return MK_TOKEN_ERR_CONFIG;
		return MK_TOKEN_ERR_RELOGIN;
	}
	if (strcmp(e, "interaction_required") == 0 || strcmp(e, "consent_required") == 0)
		return MK_TOKEN_ERR_RELOGIN;
	if (strcmp(e, "invalid_client") == 0 || strcmp(e, "unauthorized_client") == 0 ||
	    strcmp(e, "invalid_scope") == 0 || strcmp(e, "invalid_request") == 0 ||
	    strcmp(e, "unsupported_grant_type") == 0)
		return MK_TOKEN_ERR_CONFIG;
	if (strcmp(e, "server_error") == 0 || strcmp(e, "temporarily_unavailable") == 0)
		return MK_TOKEN_ERR_TEMP;
	return MK_TOKEN_ERR_OTHER;
}

int mk_token_error_code(enum mk_token_error_kind kind)
{
	switch (kind) {
	case MK_TOKEN_ERR_NONE:
		return 0;
	case MK_TOKEN_ERR_CONFIG:
		return MK_ECONFIG;
	case MK_TOKEN_ERR_TEMP:
		return MK_ESERVER;
	case MK_TOKEN_ERR_PENDING:
	case MK_TOKEN_ERR_SLOW_DOWN:
	case MK_TOKEN_ERR_DECLINED:
	case MK_TOKEN_ERR_EXPIRED:
	case MK_TOKEN_ERR_BAD_CODE:
	case MK_TOKEN_ERR_RELOGIN:
	case MK_TOKEN_ERR_OTHER:
		break;
	}
	return MK_EAUTH;
}

/* The AADSTS codes a mailkeep user is likely to meet, in plain words
 * (Microsoft's list: learn.microsoft.com/entra/identity-platform/
 * reference-error-codes). %s is the account name where used. */
static const struct {
	uint32_t code;
	const char *text;
} aadsts_texts[] = {
	{700082, "the refresh token expired because it was not used for 90 days"},
	{70000, "the sign-in grant is invalid or was revoked (for example after a password change or \"sign out "
		"everywhere\")"},
	{70008, "the refresh token or code has expired or was revoked"},
	{70043, "the refresh token expired under a Conditional Access sign-in frequency policy"},
	{50173, "the sign-in grant was revoked because the password changed"},
	{50126, "the user name or password is wrong"},
	{50076, "multi-factor authentication is required"},
	{65001, "the user or an administrator has not consented to the application's permissions; grant consent "
		"for offline_access, IMAP.AccessAsUser.All, POP.AccessAsUser.All and SMTP.Send in the app "
		"registration (or ask your administrator)"},
	{700016, "the application (oauth_client_id) was not found in the directory: check oauth_client_id, and "
		 "that oauth_tenant matches the kinds of account the app registration allows"},
	{7000218, "the app registration does not allow public client flows: set \"Allow public client flows\" "
		  "to Yes under Authentication"},
	{7000112, "the application (oauth_client_id) is disabled"},
	{9002313, "the request was malformed (invalid request); check oauth_scopes and oauth_client_id"},
	{900144, "the request is missing a required parameter"},
	{50059, "no tenant was found for this sign-in: check oauth_tenant (consumers for Outlook.com, "
		"organizations or the tenant id for Microsoft 365)"},
	{90002, "the tenant (oauth_tenant) does not exist"},
	{50020, "the account is not in this tenant: check oauth_tenant"},
	{70011, "the requested scope is invalid: check oauth_scopes"},
	{70016, "the user has not entered the code yet"},
	{70019, "the code expired before it was entered"},
	{70020, "the code expired before it was entered"},
	{700003, "the device was removed from the directory"},
	{50034, "the account does not exist in this directory"},
	{53003, "a Conditional Access policy blocked the sign-in"},
};

static const char *aadsts_text(uint32_t code)
{
	for (size_t i = 0; i < sizeof(aadsts_texts) / sizeof(aadsts_texts[0]); i++)
		if (aadsts_texts[i].code == code)
			return aadsts_texts[i].text;
	return NULL;
}

const char *mk_token_explain(const struct mk_token_reply *r, const char *account, char *buf, size_t bufsz)
{
	enum mk_token_error_kind kind = mk_token_classify(r);
	/* The device-flow errors say more than their AADSTS code (Microsoft
	 * sends the generic 70000 with authorization_declined). */
	bool device = kind == MK_TOKEN_ERR_DECLINED || kind == MK_TOKEN_ERR_EXPIRED || kind == MK_TOKEN_ERR_BAD_CODE ||
		      kind == MK_TOKEN_ERR_PENDING || kind == MK_TOKEN_ERR_SLOW_DOWN;
	const char *what = r->aadsts && !device ? aadsts_text(r->aadsts) : NULL;
	const char *todo = "";
	char todo_buf[160];
	if (what == NULL) {
		switch (kind) {
		case MK_TOKEN_ERR_DECLINED:
			what = "the sign-in was declined";
			break;
		case MK_TOKEN_ERR_EXPIRED:
			what = "the code expired before it was entered";
			break;
		case MK_TOKEN_ERR_BAD_CODE:
			what = "the identity platform did not recognise the device code";
			break;
		case MK_TOKEN_ERR_RELOGIN:
			what = "the refresh token was refused (expired or revoked)";
			break;
		case MK_TOKEN_ERR_CONFIG:
			what = "the identity platform refused the request";
			break;
		case MK_TOKEN_ERR_TEMP:
			what = "the identity platform is temporarily unavailable";
			break;
		case MK_TOKEN_ERR_PENDING:
		case MK_TOKEN_ERR_SLOW_DOWN:
			what = "the sign-in is not finished";
			break;
		case MK_TOKEN_ERR_NONE:
		case MK_TOKEN_ERR_OTHER:
			what = "the identity platform refused the request";
			break;
		}
	}
	switch (kind) {
	case MK_TOKEN_ERR_RELOGIN:
	case MK_TOKEN_ERR_DECLINED:
	case MK_TOKEN_ERR_EXPIRED:
	case MK_TOKEN_ERR_BAD_CODE:
	case MK_TOKEN_ERR_OTHER:
		snprintf(todo_buf, sizeof(todo_buf), " — run `mailkeep login %s`", account ? account : "NAME");
		todo = todo_buf;
		break;
	case MK_TOKEN_ERR_CONFIG:
		todo = " — fix the account's OAuth settings (see `mailkeep help config`), then run `mailkeep login`";
		break;
	case MK_TOKEN_ERR_TEMP:
		todo = " — try again later";
		break;
	case MK_TOKEN_ERR_NONE:
	case MK_TOKEN_ERR_PENDING:
	case MK_TOKEN_ERR_SLOW_DOWN:
		break;
	}
	char code[24] = "";
	if (r->aadsts)
		snprintf(code, sizeof(code), ", AADSTS%u", (unsigned)r->aadsts);
	snprintf(buf, bufsz, "%s%s (%s%s)", what, todo, r->error ? r->error : "error", code);
	return buf;
}
