/* SPDX-License-Identifier: MIT */
/*
 * mk_login.h - how an engine logs in, shared by the IMAP engines
 * (imap_sync.c, sentcheck.c), the POP3 download and `mailkeep folders`:
 * the account's `auth` picks the mechanism, so every place that
 * authenticates does it the same way.
 *
 *  - auth = xoauth2: SASL XOAUTH2 with the access token as the secret
 *    (IMAP: AUTHENTICATE with SASL-IR when offered; POP3: AUTH XOAUTH2 in
 *    two steps, OUTLOOK.md §1.2);
 *  - auth = plain: AUTHENTICATE PLAIN / AUTH PLAIN where offered, else
 *    LOGIN / USER+PASS;
 *  - auth = login: LOGIN / USER+PASS.
 * No I/O of its own: it submits on the session it is given.
 */
#ifndef MK_LOGIN_H
#define MK_LOGIN_H

#include "mk_config.h"

#include <stdbool.h>
#include <stddef.h>

struct mk_imap_session;
struct mk_imap_event;
struct mk_pop3_session;
struct mk_pop3_event;

/* Submits the login. Returns: 0 (*tag_r is the command whose TAGGED
 * answer ends it), MK_ESTATE, MK_EINVAL (a token mk_sasl refuses),
 * MK_ETOOBIG. */
int mk_login_imap(struct mk_imap_session *s, const struct mk_config_account *a, const char *secret, unsigned *tag_r);
/* "login as USER (XOAUTH2) failed: NO text (token refused: status 401)". */
void mk_login_imap_failed(struct mk_imap_session *s, const struct mk_config_account *a,
			  const struct mk_imap_event *ev, char *buf, size_t bufsz);

/* Submits the POP3 login (one or two commands). Returns: 0, MK_ESTATE,
 * MK_EINVAL, MK_ETOOBIG. */
int mk_login_pop3(struct mk_pop3_session *s, const struct mk_config_account *a, const char *secret);
/* "login as USER (XOAUTH2) failed: -ERR text (server said: {json})". */
void mk_login_pop3_failed(const struct mk_config_account *a, const struct mk_pop3_event *ev, char *buf,
			  size_t bufsz);

/* True when a server's text says the access token of the session expired
 * (Outlook: "* BYE Session invalidated - AccessTokenExpired", OUTLOOK.md
 * §1.6): the session is to be re-established with a new token. */
bool mk_login_token_expired(const char *text);

/* Outlook's false login (OUTLOOK.md §2.7): AUTHENTICATE said OK, the next
 * command is answered "BAD User is authenticated but not connected." (a token
 * of another user or tenant). True for that text. */
bool mk_login_false_login(const char *text);

/* Exchange's "NO Server Unavailable. 15" (IMAP) / "-ERR Server
 * Unavailable. 21" (POP3), at login or SELECT: the mailbox's back end is
 * busy or moving (OUTLOOK.md §2.6). Temporary, not a refused login. */
bool mk_login_unavailable(const char *text);

#endif
