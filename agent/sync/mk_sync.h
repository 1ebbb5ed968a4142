/* SPDX-License-Identifier: MIT */
/*
 * mk_sync.h - the IMAP backup engine: one account, every selected folder,
 * into the store, over up to max_connections sessions.
 *
 * A backup never changes the server: folders are opened with EXAMINE and
 * bodies fetched with BODY.PEEK[]. Per folder: learn UIDVALIDITY, list the
 * server's UIDs and flags (`UID FETCH 1:* (UID FLAGS)`: Outlook has no
 * CONDSTORE), diff against the store, fetch only UIDs the store lacks
 * (streamed through SHA-256 and zlib, never buffered whole), update
 * flags, and mark UIDs that vanished as gone (content kept). Batches
 * commit bodies, records and folder progress together.
 *
 * The engine calls no uv_* function itself; it drives sessions.
 */
#ifndef MK_SYNC_H
#define MK_SYNC_H

#include "mk_config.h"

#include <stdbool.h>
#include <stdint.h>

struct mk_store;
struct mk_tls_ctx;
struct mk_sync;
typedef struct uv_loop_s uv_loop_t;

struct mk_sync_folder_result {
	char name[256];
	uint64_t new_messages, new_bytes, flag_updates, gone, no_body;
	bool uidvalidity_changed;
	/* verify_server mode: differences between the server and the store */
	uint64_t server_count, missing, extra, size_mismatch;
	uint32_t first_missing;
	int err; /* 0 or why this folder failed */
	char error[400];
	bool skipped; /* not a mail folder after all (Outlook's "NO Folder name is reserved"): error says why */
};

struct mk_sync_result {
	int err; /* 0, or the account-level failure (connect, login, LIST) */
	char error[600];
	uint64_t folders_ok, folders_failed;
	uint64_t new_messages, new_bytes, flag_updates, gone, no_body;
	struct mk_sync_folder_result *folders; /* n_folders entries */
	size_t n_folders;
	/* folders LIST returned that `folders` excludes (Outlook presets: the
	 * non-mail folders), "Calendar, Contacts, ..." (cut at the end) */
	size_t n_excluded;
	char excluded[600];
};

/* issue 6: the answer to get_secret (below): err 0 and the secret (valid
 * during the call; copied), how long it stays valid (ms, 0: unknown);
 * or an error and a message in plain words. */
typedef void mk_sync_secret_done(void *req, int err, const char *msg, const char *secret, int64_t valid_ms);

struct mk_sync_opts {
	uv_loop_t *loop;
	const struct mk_config_account *acct;
	struct mk_store *store;
	struct mk_tls_ctx *tls_ctx;
	const char *secret; /* password (or access token); copied and wiped by the engine */
	/* Optional (auth = xoauth2 in the agent): the engine asks for the
	 * secret before each login instead of using `secret`, reusing it while
	 * it has more than 15 % of its lifetime left. It calls
	 * get_secret(secret_ud, force_refresh, done, req); the owner calls
	 * done(req, ...) exactly once, never from inside get_secret, even after
	 * the engine is freed (the answer is then dropped); get_secret returns
	 * 0, or <0 (no call then). force_refresh: the server refused or expired
	 * the last token, or it is past 85 % of its lifetime. With it:
	 *  - "* BYE ... AccessTokenExpired" (or such a NO/BAD) reconnects the
	 *    session at once with a fresh token, resuming where it was;
	 *  - IDLE sessions reconnect by themselves at 85 % of the lifetime;
	 *  - a refused XOAUTH2 login is retried once with a forced refresh;
	 *  - done with MK_EAUTH stops the engine (res.err MK_EAUTH, res.error
	 *    the owner's message, e.g. "run `mailkeep login NAME`"); other
	 *    errors are retried with backoff. */
	int (*get_secret)(void *secret_ud, bool force_refresh, mk_sync_secret_done *done, void *req);
	void *secret_ud;
	bool trace;
	/* compare the store with the server (UID lists, flags, sizes) and
	 * change nothing: no fetch, no store writes */
	bool verify_server;
	/* agent mode: after the sync, folders matching the account's `idle`
	 * patterns stay open in IMAP IDLE (one connection each); new mail is
	 * fetched as it is announced; lost connections are re-established with
	 * backoff. `done` runs only after mk_sync_cancel(). */
	bool watch;
	/* skip folders matching the account's `idle` patterns (the agent's
	 * periodic poll of the other folders) */
	bool skip_idle;
	/* every folder has been synced once (agent mode: before IDLE begins) */
	void (*on_synced)(void *ud, const char *account);
	/* a pushed message was stored: ms from the server's EXISTS to the
	 * durable commit (for the push-latency metric); may be NULL */
	void (*on_push)(void *ud, const char *account, const char *folder, uint64_t messages, double exists_to_commit_ms);
	/* progress: called after each message and folder; may be NULL */
	void (*on_progress)(void *ud, const char *account, const char *folder, uint64_t done, uint64_t total,
			    uint64_t bytes);
	/* a folder finished (ok or not); may be NULL */
	void (*on_folder)(void *ud, const char *account, const struct mk_sync_folder_result *fr);
	void *ud;
};

/* Starts the sync; `done` runs exactly once (unless this fails
 * synchronously) with the result, owned by the engine until
 * mk_sync_free(). Returns: 0, MK_ENOTFOUND (no IMAP server), storage errors. */
int mk_sync_start(const struct mk_sync_opts *opts, void (*done)(void *ud, struct mk_sync *s), void *ud,
		  struct mk_sync **s_r);
const struct mk_sync_result *mk_sync_result(const struct mk_sync *s);

/* Agent status, one line per connection, for `mailkeep status`. */
struct mk_sync_conn_status {
	unsigned id;
	const char *folder; /* NULL while not on a folder */
	const char *state;  /* "connecting", "syncing", "idle", "backoff", "closed" */
	int64_t since;      /* unix seconds of the last state change */
	int64_t retry_at;   /* backoff: unix seconds of the next attempt */
	const char *last_error;
};
/* Agent mode: drop every connection and reconnect at once (after a
 * suspend/resume or a network change, when TCP sessions are likely dead). */
void mk_sync_reconnect(struct mk_sync *s, const char *why);
size_t mk_sync_status(const struct mk_sync *s, struct mk_sync_conn_status *out, size_t max);
/* Stops every session now (no LOGOUT); done runs. */
void mk_sync_cancel(struct mk_sync *s);
/* Graceful stop: commits the complete messages already received, sends
 * DONE + LOGOUT on every connection and lets the server close them; done
 * runs when all are closed (call mk_sync_cancel() if that takes too long). */
void mk_sync_stop(struct mk_sync *s);
void mk_sync_free(struct mk_sync **s);

#endif
