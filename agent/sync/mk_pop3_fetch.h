/* SPDX-License-Identifier: MIT */
/*
 * mk_pop3_fetch.h - the POP3 download engine: one account, one
 * connection, into the same store as the IMAP backup.
 *
 * connect -> CAPA -> STLS (mandatory with pop3_tls = starttls, done by the
 * session) -> login (AUTH PLAIN when offered and auth = plain, else
 * USER/PASS) -> CAPA -> UIDL (a server without UIDL is refused: no
 * guessing) -> LIST -> RETR of every UIDL the store's POP3 UIDL table lacks
 * (pipelined when PIPELINING is offered), each body streamed into the
 * store, recorded in the account's "POP3" folder (synthetic increasing
 * UIDs, UIDVALIDITY 1) and in the UIDL table, committed in batches ->
 * DELE per pop3_delete -> QUIT.
 *
 * Deletion is only asked for messages whose batch is committed and whose
 * stored body re-reads with the right SHA-256; POP3 deletes happen at
 * QUIT, so "deleted on server" is recorded only after QUIT's +OK. A
 * connection lost at any point deletes nothing on the server and loses
 * nothing in the store; the next run neither duplicates nor misses.
 *
 * The engine calls no uv_* function itself; it drives a session.
 */
#ifndef MK_POP3_FETCH_H
#define MK_POP3_FETCH_H

#include "mk_config.h"
#include "mk_sync.h"

#include <stdbool.h>
#include <stdint.h>

struct mk_store;
struct mk_tls_ctx;
struct mk_pop3_fetch;
typedef struct uv_loop_s uv_loop_t;

struct mk_pop3_fetch_result {
	int err; /* 0, or why the run failed (connect, TLS, login, no UIDL, hostile server, store) */
	char error[600];
	uint64_t server_count;  /* messages listed by UIDL */
	uint64_t new_messages, new_bytes;
	uint64_t deleted;       /* confirmed by QUIT's +OK */
	uint64_t retr_failed;   /* -ERR to RETR (retried next run) */
	uint64_t not_verified;  /* stored body failed the re-read check: not deleted */
	/* the same counts in the shape of an IMAP folder line ("POP3"):
	 * new_messages, new_bytes; gone = deleted on the server */
	struct mk_sync_folder_result folder;
};

struct mk_pop3_fetch_opts {
	uv_loop_t *loop;
	const struct mk_config_account *acct;
	struct mk_store *store;
	struct mk_tls_ctx *tls_ctx;
	const char *secret; /* password; copied and wiped by the engine */
	bool trace;
	/* progress after each message; may be NULL */
	void (*on_progress)(void *ud, const char *account, const char *folder, uint64_t done, uint64_t total,
			    uint64_t bytes);
	void *ud;
};

/* Starts; `done` runs exactly once (unless this fails synchronously) with
 * the result, owned by the engine until mk_pop3_fetch_free().
 * Returns: 0, MK_ENOTFOUND (no POP3 server), MK_EINVAL, storage errors,
 * or the session's start error. */
int mk_pop3_fetch_start(const struct mk_pop3_fetch_opts *opts, void (*done)(void *ud, struct mk_pop3_fetch *f),
			void *ud, struct mk_pop3_fetch **f_r);
const struct mk_pop3_fetch_result *mk_pop3_fetch_result(const struct mk_pop3_fetch *f);
/* Stops the session (no QUIT, so nothing is deleted): done runs with
 * MK_ECANCELED. */
void mk_pop3_fetch_cancel(struct mk_pop3_fetch *f);
void mk_pop3_fetch_free(struct mk_pop3_fetch **f);

#endif
