/* SPDX-License-Identifier: MIT */
/*
 * mk_outbox.h - the sending engine: one account, one SMTP submission
 * connection, a list of queued messages sent one after another over it.
 *
 * connect -> EHLO -> STARTTLS (mandatory unless implicit TLS; done by the
 * session) -> EHLO -> AUTH (PLAIN, LOGIN or XOAUTH2 in two steps) -> per
 * message: state SENDING committed -> MAIL FROM (SIZE=, BODY=8BITMIME) ->
 * RCPT TO per pending recipient -> DATA (pipelined when offered) -> the
 * body streamed from the store at the socket's pace -> phase DOT_SENT
 * committed -> "." -> the reply recorded (SENT, QUEUED for a retry, or
 * FAILED) -> next message ... -> QUIT.
 *
 * Exactly once: an entry is SENDING (durably) before its MAIL FROM, and
 * DOT_SENT before the final dot. A connection lost before DOT_SENT puts
 * the entry back to QUEUED (nothing was accepted); after it, the entry
 * becomes UNCERTAIN and is never resent on its own (mk_store.h, outbox).
 *
 * Replies: 2xx after the dot -> SENT (recipients refused by RCPT are kept
 * with their reply; recipients deferred with 4xx stay pending, the entry
 * QUEUED for them). 4xx (or a lost connection before the dot) -> QUEUED
 * with the next attempt after an exponential backoff, until max_queue_age,
 * then FAILED. 5xx -> FAILED at once. A 535 to AUTH leaves every entry
 * QUEUED and fails the run with MK_EAUTH.
 *
 * The engine calls no uv_* function itself; it drives a session. Rate
 * limits are the caller's: it passes only the entries it may send now.
 */
#ifndef MK_OUTBOX_H
#define MK_OUTBOX_H

#include "mk_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mk_store;
struct mk_store_outbox;
struct mk_tls_ctx;
struct mk_outbox;
typedef struct uv_loop_s uv_loop_t;

struct mk_outbox_result {
	int err; /* 0, or why the run stopped early (connect, TLS, auth, hostile server, store) */
	char error[600];
	unsigned sent, failed, deferred, uncertain, skipped;
	unsigned attempted; /* entries that reached MAIL FROM */
};

struct mk_outbox_opts {
	uv_loop_t *loop;
	const struct mk_config_account *acct;
	struct mk_store *store;
	struct mk_tls_ctx *tls_ctx;
	const char *secret;    /* password, or the access token for xoauth2; copied and wiped */
	const char *ehlo_name; /* NULL: this host's name */
	bool trace;
	const uint64_t *ids; /* entries to send, in this order (copied); not QUEUED ones are skipped */
	size_t n_ids;
	/* After each entry's attempt, with its new stored state; may be NULL. */
	void (*on_entry)(void *ud, const struct mk_store_outbox *o);
	void *ud;
};

/* Starts; `done` runs exactly once (unless this fails synchronously), with
 * the result owned by the engine until mk_outbox_free().
 * Returns: 0, MK_ENOTFOUND (no SMTP server), MK_EINVAL, storage errors,
 * or the session's start error. */
int mk_outbox_start(const struct mk_outbox_opts *opts, void (*done)(void *ud, struct mk_outbox *ob), void *ud,
		    struct mk_outbox **ob_r);
const struct mk_outbox_result *mk_outbox_result(const struct mk_outbox *ob);
/* Stops now (no QUIT): an entry being sent is settled as for a lost
 * connection; done runs with MK_ECANCELED. */
void mk_outbox_cancel(struct mk_outbox *ob);
/* Finishes the message in flight (its reply is awaited and recorded),
 * then QUITs instead of starting the next one; done runs as usual. */
void mk_outbox_stop(struct mk_outbox *ob);
void mk_outbox_free(struct mk_outbox **ob);

/* What may be sent now for one account: entries QUEUED whose send_at and
 * next_attempt have come (with `ignore_backoff`, next_attempt is not
 * waited for: `outbox flush`), in queue order, within the account's rate
 * limits -- max_per_minute counts messages submitted (MAIL FROM) in the
 * last 60 s, max_per_day counts recipients that got a message in the last
 * 24 h. `only` (n_only > 0) restricts the plan to those ids.
 * next_due is the earliest time at which more becomes sendable (a
 * scheduled or deferred entry comes due, or a limit frees up), 0 when
 * nothing is waiting; limited counts entries held back by a limit now. */
struct mk_outbox_plan {
	uint64_t *ids;
	size_t n;
	int64_t next_due;
	unsigned queued, limited;
	bool minute_limited, day_limited;
};
/* Returns: 0, storage errors. */
int mk_outbox_plan(struct mk_store *st, const struct mk_config_account *acct, uint32_t account_id, int64_t now,
		   bool ignore_backoff, const uint64_t *only, size_t n_only, struct mk_outbox_plan *p);
void mk_outbox_plan_free(struct mk_outbox_plan *p);

/* Uncertain entries (state UNCERTAIN) of an account, to be looked up in
 * the folder where the server files submissions: ids and Message-IDs of
 * those whose last attempt is at least `settle_s` old (the server may
 * file its copy a little after its reply); *wait_until_r is the earliest
 * time a younger one becomes checkable (0: none). Free with
 * mk_outbox_uncertain_free(). Returns: 0, storage errors. */
struct mk_outbox_uncertain {
	uint64_t *ids;
	char **msgids;
	size_t n;
	int64_t wait_until;
};
int mk_outbox_uncertain_list(struct mk_store *st, uint32_t account_id, int64_t now, int64_t settle_s,
			     struct mk_outbox_uncertain *u);
void mk_outbox_uncertain_free(struct mk_outbox_uncertain *u);
/* Settles an uncertain entry from the search: found -> SENT (the server
 * has it; never sent again), not found -> QUEUED again (it did not get
 * through). Returns: 0, MK_ESTATE (no longer uncertain), storage errors. */
int mk_outbox_settle_uncertain(struct mk_store *st, uint64_t id, bool found, const char *folder);
#define MK_OUTBOX_SETTLE_S 120

/* save_sent: ids of SENT entries whose copy is not yet saved (no SAVED
 * flag), oldest first, at most `max`. *ids_r is mk_alloc'd.
 * Returns: 0, storage errors. */
int mk_outbox_unsaved_list(struct mk_store *st, uint32_t account_id, size_t max, uint64_t **ids_r, size_t *n_r);

/* The retry delay after the n-th failed attempt (1-based): 1 min, 2, 4 ...
 * capped at 1 h, with +-10% jitter from `rnd` (0..UINT64_MAX; tests pass a
 * constant). Seconds. */
int64_t mk_outbox_retry_delay_s(unsigned attempts, uint64_t rnd);

#endif
