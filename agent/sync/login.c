/* SPDX-License-Identifier: MIT */
/*
 * login.c - the login of every engine (see mk_login.h). The secret is
 * handed to the session, which copies it into wiped memory; nothing here
 * keeps or logs it.
 */
#include "mk_login.h"
#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"
#include "mk_imap_session.h"
#include "mk_limits.h"
#include "mk_pop3_session.h"
#include "mk_sasl.h"

#include <stdio.h>
#include <string.h>

int mk_login_imap(struct mk_imap_session *s, const struct mk_config_account *a, const char *secret, unsigned *tag_r)
{
	if (a->auth == MK_CONFIG_AUTH_XOAUTH2)
		return mk_imap_session_authenticate(s, MK_SASL_XOAUTH2, a->user, secret, a->imap.host, a->imap.port,
						    tag_r);
	struct mk_imap_cmd cmd = {.a = a->user, .b = secret};
	/* AUTHENTICATE PLAIN where offered (UTF-8 safe), else LOGIN */
	cmd.kind = a->auth == MK_CONFIG_AUTH_PLAIN && mk_imap_session_has_cap(s, "AUTH=PLAIN")
			   ? MK_IMAP_CMD_AUTHENTICATE_PLAIN
			   : MK_IMAP_CMD_LOGIN;
	return mk_imap_session_submit(s, &cmd, tag_r);
}

void mk_login_imap_failed(struct mk_imap_session *s, const struct mk_config_account *a,
			  const struct mk_imap_event *ev, char *buf, size_t bufsz)
{
	const char *why = a->auth == MK_CONFIG_AUTH_XOAUTH2 ? mk_imap_session_auth_error(s) : "";
	snprintf(buf, bufsz, "login as %s%s failed: %s %s%s%s%s", a->user,
		 a->auth == MK_CONFIG_AUTH_XOAUTH2 ? " (XOAUTH2)" : "", mk_imap_status_name(ev->status), ev->text,
		 why[0] ? " (" : "", why, why[0] ? ")" : "");
}

int mk_login_pop3(struct mk_pop3_session *s, const struct mk_config_account *a, const char *secret)
{
	int r;
	if (a->auth == MK_CONFIG_AUTH_XOAUTH2) {
		struct mk_sasl sasl;
		r = mk_sasl_init(&sasl, MK_SASL_XOAUTH2, a->user, (const uint8_t *)secret, secret ? strlen(secret) : 0,
				 NULL, 0);
		struct mk_buf ir;
		mk_buf_init(&ir, MK_LIMIT_SASL_LINE);
		if (r == 0)
			r = mk_buf_reserve(&ir, MK_LIMIT_SASL_LINE / 2, NULL);
		if (r == 0)
			r = mk_sasl_initial(&sasl, &ir);
		if (r == 0) {
			struct mk_pop3_cmd cmd = {.kind = MK_POP3_CMD_AUTH, .a = "XOAUTH2", .ir = {ir.data, ir.len}};
			r = mk_pop3_session_submit(s, &cmd);
		}
		mk_buf_cleanup_wipe(&ir);
		mk_sasl_cleanup(&sasl);
		return r;
	}
	struct mk_pop3_cmd cmd = {.a = a->user, .b = secret};
	if (a->auth == MK_CONFIG_AUTH_PLAIN && mk_pop3_session_has_sasl(s, "PLAIN")) {
		cmd.kind = MK_POP3_CMD_AUTH_PLAIN;
		return mk_pop3_session_submit(s, &cmd);
	}
	cmd.kind = MK_POP3_CMD_USER;
	r = mk_pop3_session_submit(s, &cmd);
	if (r == 0) {
		struct mk_pop3_cmd pass = {.kind = MK_POP3_CMD_PASS, .a = secret};
		r = mk_pop3_session_submit(s, &pass);
	}
	return r;
}

void mk_login_pop3_failed(const struct mk_config_account *a, const struct mk_pop3_event *ev, char *buf,
			  size_t bufsz)
{
	snprintf(buf, bufsz, "login as %s%s failed: -ERR %s%s%s%s", a->user,
		 a->auth == MK_CONFIG_AUTH_XOAUTH2 ? " (XOAUTH2)" : "", ev->text,
		 ev->challenge ? " (server said: " : "", ev->challenge ? ev->challenge : "", ev->challenge ? ")" : "");
}

bool mk_login_token_expired(const char *text)
{
	return text != NULL && strstr(text, "AccessTokenExpired") != NULL;
}

bool mk_login_unavailable(const char *text)
{
	return text != NULL && strstr(text, "Server Unavailable") != NULL;
}

bool mk_login_false_login(const char *text)
{
	return text != NULL && strstr(text, "User is authenticated but not connected") != NULL;
}
