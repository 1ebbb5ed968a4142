/* SPDX-License-Identifier: MIT */
/*
 * mk_oauth.h - the token manager: hands the engines an access token for an
 * account with auth = xoauth2, refreshing it ahead of expiry.
 *
 * Sources, per account:
 *  - oauth_client_id: the refresh token in STORE/oauth/ACCOUNT.token
 *    (written by `mailkeep login`) is exchanged at the token endpoint. The
 *    reply's rotated refresh token is committed to that file (atomically,
 *    durably) BEFORE the new access token is handed out; the old refresh
 *    token stays valid at Microsoft, so a crash in between loses nothing.
 *  - token_cmd: the first line of the command's stdout (/bin/sh -c, stdin
 *    /dev/null, output and time bounded, never logged), cached for
 *    token_cmd_cache seconds.
 * Access tokens live in memory only; every copy is wiped when dropped.
 *
 * Caching: a token is reused while it stays valid for more than the margin
 * (5 minutes, at most half the token's lifetime; scaled by
 * MK_TEST_OAUTH_SECOND_MS in tests, see mk_oauth_client.h). One refresh at
 * most is in flight per account; callers that ask meanwhile wait for it.
 *
 * Everything runs on the loop thread; nothing here blocks except the small
 * token file read and its fsync'd write.
 */
#ifndef MK_OAUTH_H
#define MK_OAUTH_H

#include "mk_config.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct mk_oauth;
struct mk_oauth_wait;

struct mk_oauth_token {
	const char *access_token; /* valid during the callback only: copy it into the SASL buffer */
	int64_t expires_wall_ms;  /* mk_time_wall_ms() clock; an estimate */
	int64_t valid_ms;         /* how long it stays valid from now */
	bool fresh;               /* obtained for this call (not from the cache) */
	bool from_cmd;            /* from token_cmd */
};

/* Runs exactly once for every mk_oauth_token_get() that returned 0, on the
 * loop thread and never from inside mk_oauth_token_get() itself.
 * err 0: *tok is set. Errors (msg in plain words, never a token):
 *   MK_EAUTH     the user must sign in again: no token file, a refused
 *                refresh token (invalid_grant, AADSTS700082...), a token
 *                issued to another client id; msg ends in
 *                "run `mailkeep login NAME`" (mk_err class FINAL);
 *   MK_ECONFIG   the account's OAuth settings are wrong (AADSTS700016 ...);
 *   MK_EPERM     the token file has unsafe owner or mode;
 *   MK_EIO       the rotated refresh token could not be committed (the
 *                new access token is then NOT handed out);
 *   MK_ECMD      token_cmd failed (status, timeout, empty output);
 *   MK_ESERVER, MK_EPROTO, MK_ETIMEDOUT, MK_ECERT, MK_ETLS, -ECONNREFUSED,
 *   UV_EAI_*     the token endpoint could not be used: temporary;
 *   MK_ECANCELED mk_oauth_token_cancel() or mk_oauth_free().
 */
typedef void mk_oauth_token_cb(int err, const char *msg, const struct mk_oauth_token *tok, void *ud);

/* A manager for `loop`; `store` is the store directory (the token files
 * live in STORE/oauth/). Cannot fail. */
struct mk_oauth *mk_oauth_new(uv_loop_t *loop, const char *store);

/* Cancels everything: pending callbacks run with MK_ECANCELED before this
 * returns; requests in flight finish on their own with their results
 * dropped. Handles close asynchronously, so run the loop afterwards (as at
 * every shutdown). Sets *o to NULL; NULL is fine. */
void mk_oauth_free(struct mk_oauth **o);

/* Asks for an access token for `acct` (copied: the config may be reloaded
 * meanwhile). A cached token that is valid for longer than the margin is
 * delivered (on the next loop turn) unless `force_refresh` (use it after
 * the server refused the token, or after "* BYE ... AccessTokenExpired").
 * *w_r (may be NULL) identifies the request for mk_oauth_token_cancel()
 * until the callback has run.
 * Returns: 0, MK_EINVAL (acct->auth is not xoauth2, or it has neither
 * oauth_client_id nor token_cmd); no callback then. */
int mk_oauth_token_get(struct mk_oauth *o, const struct mk_config_account *acct, bool force_refresh,
		       mk_oauth_token_cb *cb, void *ud, struct mk_oauth_wait **w_r);

/* The callback runs with MK_ECANCELED (on the next loop turn). Only
 * before the callback ran. */
void mk_oauth_token_cancel(struct mk_oauth_wait *w);

/* Drops the cached access token of `account` (e.g. the server refused it). */
void mk_oauth_forget(struct mk_oauth *o, const char *account);

#endif
