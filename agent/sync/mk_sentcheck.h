/* SPDX-License-Identifier: MIT */
/*
 * mk_sentcheck.h - settling uncertain sends: does the folder where the
 * server files every submission (Outlook: "Sent Items", OUTLOOK.md §4.4)
 * hold a message with one of these Message-IDs?
 *
 * One IMAP connection: CAPABILITY, login, EXAMINE (read-only), then
 * UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID
 * X-MICROSOFT-ORIGINAL-MESSAGE-ID)]) -- Outlook.com rewrites the
 * Message-ID of submitted mail and keeps ours in
 * X-Microsoft-Original-Message-ID, so both are compared -- then LOGOUT.
 * About 100 bytes per message in the folder; header values beyond 2 KiB
 * are ignored.
 *
 * The same connection also saves copies of sent mail for servers that do
 * not (save_sent): for each given outbox entry in state SENT without the
 * SAVED flag, APPEND folder (\Seen) {size} with the message streamed
 * from the store at the socket's pace, then the flag is committed. A
 * crash between the server's OK and that commit makes the next run save
 * it again (a duplicate copy in Sent, never a lost one).
 * The engine calls no uv_* function itself.
 */
#ifndef MK_SENTCHECK_H
#define MK_SENTCHECK_H

#include "mk_config.h"

#include <stdbool.h>
#include <stddef.h>

struct mk_tls_ctx;
struct mk_sentcheck;
typedef struct uv_loop_s uv_loop_t;

struct mk_sentcheck_opts {
	uv_loop_t *loop;
	const struct mk_config_account *acct;
	struct mk_tls_ctx *tls_ctx;
	const char *secret; /* copied and wiped */
	const char *folder; /* UTF-8 */
	const char *const *msgids; /* "<...>" each; copied */
	size_t n;
	bool trace;
	/* save_sent: outbox entries to APPEND to `folder` (copied) */
	struct mk_store *store;
	const uint64_t *append_ids;
	size_t n_append;
};

struct mk_sentcheck_result {
	int err; /* 0: the whole folder was searched */
	char error[600];
	bool *found; /* n entries */
	size_t n;
	unsigned scanned; /* messages looked at */
	unsigned saved;   /* copies APPENDed */
};

/* done runs exactly once unless this fails synchronously.
 * Returns: 0, MK_ENOTFOUND (no IMAP server), the session's start error. */
int mk_sentcheck_start(const struct mk_sentcheck_opts *o, void (*done)(void *ud, struct mk_sentcheck *c), void *ud,
		       struct mk_sentcheck **c_r);
const struct mk_sentcheck_result *mk_sentcheck_result(const struct mk_sentcheck *c);
void mk_sentcheck_cancel(struct mk_sentcheck *c);
void mk_sentcheck_free(struct mk_sentcheck **c);

#endif
