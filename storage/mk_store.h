/* SPDX-License-Identifier: MIT */
/*
 * mk_store.h - the message store: Maildir-style records in one LMDB
 * environment, bodies stored once (content-addressed by SHA-256 of the raw
 * RFC 822 bytes), zlib-compressed (with a preset dictionary, base64
 * attachments decoded first: codec MZ1, storage/codec.c).
 *
 * Only storage/ sees LMDB or zlib types. No transaction outlives a
 * mk_store_* call. Writes are collected in a batch (struct mk_store_batch)
 * and applied by mk_store_batch_commit() in ONE LMDB write transaction:
 * bodies, records and folder progress together, so a crash loses at most
 * the uncommitted batch and never leaves a record without its body nor
 * progress beyond what is stored. On MDB_MAP_FULL the commit aborts, grows
 * the map and replays the batch (batches are replayable by design).
 *
 * Bounded memory for big messages: a body is streamed in with
 * mk_store_body_write(). Compressed output is kept in the batch while it
 * is small; past MK_STORE_SPILL_BYTES it is written out in its own small
 * transactions as "staging" chunks (recorded in a staging table), and the
 * batch commit only links them. Staging chunks of a crashed run are freed
 * by mk_store_open(). So a 50 MB message never needs 50 MB of memory.
 *
 * Thread use: one thread (the loop thread) calls into a mk_store. Inside,
 * bodies smaller than MK_STORE_SPILL_BYTES are compressed by a few
 * compression threads of the store (2 by default, see
 * mk_store_set_threads); they never touch LMDB, and mk_store_close()
 * joins them. The SHA-256 is still computed on the caller's thread.
 */
#ifndef MK_STORE_H
#define MK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MK_STORE_SHA_LEN 32
#define MK_STORE_SPILL_BYTES (1024 * 1024)

struct mk_store;
struct mk_store_batch;
struct mk_store_body;

/* System flags as bits; keywords are kept as a string. */
enum mk_store_flag {
	MK_STORE_FLAG_SEEN = 1 << 0,
	MK_STORE_FLAG_ANSWERED = 1 << 1,
	MK_STORE_FLAG_FLAGGED = 1 << 2,
	MK_STORE_FLAG_DELETED = 1 << 3,
	MK_STORE_FLAG_DRAFT = 1 << 4,
	MK_STORE_FLAG_RECENT = 1 << 5,
};

enum mk_store_msg_state {
	MK_STORE_MSG_PRESENT = 0,
	MK_STORE_MSG_GONE = 1,        /* expunged on the server; content kept */
	MK_STORE_MSG_UNFETCHABLE = 2, /* the server keeps answering with no body */
};

struct mk_store_mailbox {
	uint32_t account;
	uint32_t id;        /* per account, from 1 */
	char name[1024];    /* UTF-8 (decoded from modified UTF-7) */
	char delimiter;     /* 0: none */
	uint32_t special_use; /* bitmask, reserved: 0 for now */
	uint32_t uidvalidity; /* 0: never selected */
	uint32_t uidnext;     /* as last seen */
	uint32_t highest_uid; /* highest UID stored for uidvalidity */
	int64_t last_sync;    /* unix seconds, 0: never */
	int64_t last_flag_scan;
	bool gone;            /* no longer listed by the server */
};

struct mk_store_msg {
	uint32_t account, mailbox, uidvalidity, uid;
	uint8_t sha[MK_STORE_SHA_LEN];
	uint64_t raw_size;     /* real byte count of the body */
	uint32_t server_size;  /* RFC822.SIZE as announced (a hint; Exchange differs) */
	int64_t internaldate;  /* unix seconds */
	int32_t internaldate_tz; /* minutes east of UTC */
	uint32_t flags;        /* enum mk_store_flag */
	char keywords[512];    /* space-separated, "" for none */
	char unique[96];       /* Maildir-style unique name, e.g. "1732790000.M12P345Q6.host" */
	uint8_t state;         /* enum mk_store_msg_state */
	int64_t gone_at;       /* unix seconds when seen gone, 0 */
};

struct mk_store_stats {
	uint64_t accounts, mailboxes, messages, messages_gone;
	uint64_t blobs;        /* distinct bodies */
	uint64_t raw_bytes;    /* sum of raw sizes over records (what a Maildir would hold) */
	uint64_t blob_raw_bytes;   /* sum of raw sizes over distinct bodies */
	uint64_t blob_stored_bytes; /* compressed bytes over distinct bodies */
	uint64_t file_bytes;   /* size of the LMDB data file */
};

/* Opens (creating if needed) the store at `dir`: the directory is created
 * 0700, files 0600. Checks the schema version (running migrations where
 * one exists; refusing a newer store), frees staging chunks left by a
 * crash. `zlevel` is the zlib level for new bodies (1..9; 0: the
 * default, 4: see storage/blob.c for the measured trade-off).
 * Returns: 0, MK_EIO, MK_EPERM, MK_ECONFIG (newer schema), MK_ECORRUPT;
 * *error_r is a new string naming the path on failure. */
int mk_store_open(const char *dir, int zlevel, struct mk_store **st_r, char **error_r);
/* Finishes queued compression, joins the store's threads, closes. */
void mk_store_close(struct mk_store **st);

/* Compression threads of the store (0..16; 0: every body is compressed on
 * the caller's thread inside mk_store_body_finish, as a single-threaded
 * store does). Waits for the queued work first. The stored bytes are the
 * same whatever the number. Returns: 0, MK_EINVAL. */
int mk_store_set_threads(struct mk_store *st, unsigned n);
unsigned mk_store_threads(const struct mk_store *st);

/* Accounts are identified by name (the config's [account NAME]).
 * With create, a missing one is added (own transaction).
 * Returns: 0, MK_ENOTFOUND, storage errors. */
int mk_store_account(struct mk_store *st, const char *name, bool create, uint32_t *id_r);
/* All accounts: cb(name, id); a nonzero return stops. */
int mk_store_accounts(struct mk_store *st, int (*cb)(void *ud, const char *name, uint32_t id), void *ud);

/* Mailboxes by name within an account; with create, a missing one is
 * added with a new id (own transaction). */
int mk_store_mailbox_get(struct mk_store *st, uint32_t account, const char *name, bool create,
			 struct mk_store_mailbox *mb_r);
int mk_store_mailbox_by_id(struct mk_store *st, uint32_t account, uint32_t id, struct mk_store_mailbox *mb_r);
/* All mailboxes of an account in id order. */
int mk_store_mailboxes(struct mk_store *st, uint32_t account,
		       int (*cb)(void *ud, const struct mk_store_mailbox *mb), void *ud);

/* Messages of one mailbox (uidvalidity 0: every generation), in
 * (uidvalidity, uid) order. The callback runs inside a read transaction:
 * it must not call back into the store. */
int mk_store_messages(struct mk_store *st, uint32_t account, uint32_t mailbox, uint32_t uidvalidity,
		      int (*cb)(void *ud, const struct mk_store_msg *m), void *ud);
int mk_store_message_get(struct mk_store *st, uint32_t account, uint32_t mailbox, uint32_t uidvalidity,
			 uint32_t uid, struct mk_store_msg *m_r);
/* Every record with this body (any account/mailbox), to re-match after a
 * UIDVALIDITY change. */
bool mk_store_have_body(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN]);

/* Streams a body out, decompressed, in pieces; the SHA-256 of what was
 * produced is checked at the end (MK_ECORRUPT on mismatch, after the data
 * went out: callers that must not emit bad data buffer or verify first).
 * Not inside a transaction: chunks are read in separate short read txns,
 * so the callback may do I/O.
 * Returns: 0, MK_ENOTFOUND, MK_ECORRUPT, or the callback's negative value. */
int mk_store_body_read(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN],
		       int (*cb)(void *ud, const uint8_t *p, size_t n), void *ud);

/* A body read piece by piece at the reader's pace (the outbox streams a
 * message into SMTP DATA only as fast as the socket takes it). Each chunk
 * is read in its own short read transaction; memory is one stored chunk
 * plus the caller's buffer. The SHA-256 and sizes are checked at the end:
 * the last call returns MK_ECORRUPT instead of end-of-body on a mismatch,
 * so a caller sending the body must not end the transfer successfully
 * before it saw end-of-body (*n_r == 0 with 0 returned). */
struct mk_store_body_reader;
/* Returns: 0, MK_ENOTFOUND, MK_EIO, storage errors. */
int mk_store_body_open(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], struct mk_store_body_reader **r_r);
/* Up to cap bytes into out; *n_r 0 means the end (verified).
 * Returns: 0, MK_ECORRUPT, storage errors. */
int mk_store_body_next(struct mk_store_body_reader *r, uint8_t *out, size_t cap, size_t *n_r);
void mk_store_body_close(struct mk_store_body_reader **r);

/* ---- batches ---- */

struct mk_store_batch *mk_store_batch_new(struct mk_store *st);
/* Bytes held in memory by the batch (to decide when to commit). A body
 * still waiting for its compression thread counts as half its raw size;
 * that queue is bounded per store (2 MiB), mk_store_body_finish() waits
 * or helps when it is full. */
size_t mk_store_batch_bytes(const struct mk_store_batch *b);
size_t mk_store_batch_count(const struct mk_store_batch *b);

/* Starts a body within the batch. */
struct mk_store_body *mk_store_body_begin(struct mk_store_batch *b);
/* Returns: 0, storage errors (staging writes). */
int mk_store_body_write(struct mk_store_body *w, const uint8_t *p, size_t n);
/* Finishes: *sha_r and *raw_size_r. The body is part of the batch until a
 * record references it in the same batch (else the commit drops it). */
int mk_store_body_finish(struct mk_store_body *w, uint8_t sha_r[MK_STORE_SHA_LEN], uint64_t *raw_size_r);
/* Drops an unfinished body (e.g. connection lost mid-literal). */
void mk_store_body_abort(struct mk_store_body *w);

/* Adds or replaces a record. A new record referencing a body increments
 * the body's refcount; replacing keeps it balanced. The body must exist
 * (earlier commit) or be finished in this batch. */
int mk_store_batch_put_message(struct mk_store_batch *b, const struct mk_store_msg *m);
/* Updates flags/keywords/state of an existing record (no body change). */
int mk_store_batch_update_message(struct mk_store_batch *b, const struct mk_store_msg *m);
/* Writes a mailbox's state (progress); applied after the records. */
int mk_store_batch_put_mailbox(struct mk_store_batch *b, const struct mk_store_mailbox *mb);

/* Waits for the batch's bodies still being compressed (compressing the
 * ones no thread has started yet itself), then applies everything in one
 * write transaction (durable: full fsync), then
 * empties the batch for reuse. MDB_MAP_FULL: grows and retries.
 * Returns: 0, MK_EIO, MK_ENOSPC-style libc errors (negative errno). */
int mk_store_batch_commit(struct mk_store_batch *b);
void mk_store_batch_free(struct mk_store_batch **b);

/* ---- checks ---- */

int mk_store_stats(struct mk_store *st, struct mk_store_stats *s);

struct mk_store_verify_report {
	uint64_t blobs_ok, blobs_bad;         /* decompress + hash check */
	uint64_t records_ok, records_missing_body;
	uint64_t refcount_errors;             /* blob refcount != referencing records */
	uint64_t orphan_blobs;
	uint64_t orphan_chunks;               /* chunks no blob or staging mark owns */
};
/* Reads every body and checks every record; problems are reported
 * through cb (a line of text each; may be NULL).
 * Returns 0 (report filled; check the counts), or a storage error. */
int mk_store_verify(struct mk_store *st, struct mk_store_verify_report *rep,
		    void (*cb)(void *ud, const char *problem), void *ud);

/* Test hook (MK_TEST_HOOKS builds): with MK_TEST_CRASH_AT=N in the
 * environment, the process _exit(99)s right after the Nth batch commit
 * (MK_TEST_CRASH_BEFORE=N: just before it). */


/* ---- POP3 UIDL table (storage/pop3.c; issue 7) ----
 *
 * Which POP3 messages of an account are stored, keyed by (account, UIDL):
 * the body's hash and size, when it was first stored, its record in the
 * account's "POP3" folder (messages table, UIDVALIDITY
 * MK_STORE_POP3_UIDVALIDITY, a synthetic per-account UID) and when the
 * server confirmed its deletion (QUIT's +OK after DELE). Entries are
 * written by the same batch commit as the body and the record, so a UIDL
 * is in the table exactly when its message is durably stored. The table
 * holds no body reference of its own (the folder's record does), so
 * refcounts and `verify` are unchanged. */

#define MK_STORE_POP3_FOLDER "POP3"
#define MK_STORE_POP3_UIDVALIDITY 1u
#define MK_STORE_POP3_UIDL_MAX 70

struct mk_store_pop3 {
	uint32_t account;
	char uidl[MK_STORE_POP3_UIDL_MAX + 1]; /* 1..70 chars 0x21..0x7E, NUL-terminated */
	uint8_t sha[MK_STORE_SHA_LEN];
	uint64_t size;       /* raw bytes stored */
	int64_t first_seen;  /* unix seconds when stored */
	uint32_t uid;        /* record in the POP3 folder */
	int64_t deleted_at;  /* unix seconds when the server confirmed DELE at QUIT, 0: not deleted */
};

/* Looks up one UIDL. Returns: 0, MK_ENOTFOUND, MK_EINVAL (malformed
 * UIDL), MK_ECORRUPT, storage errors. */
int mk_store_pop3_get(struct mk_store *st, uint32_t account, const char *uidl, struct mk_store_pop3 *rec_r);
/* Every entry of an account in UIDL byte order; cb runs inside a read
 * transaction (it must not call into the store); nonzero stops.
 * Returns: 0, MK_ECORRUPT, storage errors. */
int mk_store_pop3_list(struct mk_store *st, uint32_t account,
		       int (*cb)(void *ud, const struct mk_store_pop3 *rec), void *ud);
/* Adds or replaces an entry within the batch (applied by its commit, in
 * the same transaction as the bodies and records). The body must exist or
 * be finished in this batch. Returns: 0, MK_EINVAL. */
int mk_store_batch_put_pop3(struct mk_store_batch *b, const struct mk_store_pop3 *rec);
/* Records that the server deleted these UIDLs at `when` (own durable
 * transaction). Unknown UIDLs are skipped. Returns: 0, MK_EINVAL, storage
 * errors. */
int mk_store_pop3_mark_deleted(struct mk_store *st, uint32_t account, const char *const *uidls, size_t n,
			       int64_t when);

/* ---- the outbox (storage/outbox.c; issue 5) ----
 *
 * Messages queued for SMTP submission, keyed by a queue id (u64, from 1,
 * never reused). The message itself is a body (blob) like any other:
 * written through a batch and referenced by its outbox entry, so verify
 * counts outbox entries among a blob's references and a body is stored
 * once even when it is also in a backed-up folder. Every state change is
 * its own durable transaction (a crash test hook point), made with a
 * compare-and-set on the state so the agent and a command (`outbox
 * cancel`) never both win.
 *
 * States: QUEUED -> SENDING -> SENT | FAILED | UNCERTAIN; CANCELED by the
 * user from QUEUED, FAILED or UNCERTAIN. SENDING is committed before MAIL
 * FROM; phase DOT_SENT just before the final ".". After a crash an entry
 * in SENDING short of DOT_SENT goes back to QUEUED; one at DOT_SENT
 * becomes UNCERTAIN and is never resent on its own. */

enum mk_store_outbox_state {
	MK_STORE_OUTBOX_QUEUED = 0,
	MK_STORE_OUTBOX_SENDING = 1,
	MK_STORE_OUTBOX_SENT = 2,
	MK_STORE_OUTBOX_FAILED = 3,
	MK_STORE_OUTBOX_UNCERTAIN = 4,
	MK_STORE_OUTBOX_CANCELED = 5,
};

enum mk_store_outbox_phase {
	MK_STORE_OUTBOX_PHASE_NONE = 0,
	MK_STORE_OUTBOX_PHASE_DOT_SENT = 1, /* the final "." may have reached the server */
};

enum mk_store_outbox_rcpt_state {
	MK_STORE_RCPT_PENDING = 0,
	MK_STORE_RCPT_SENT = 1,    /* accepted by RCPT and the message accepted after "." */
	MK_STORE_RCPT_REFUSED = 2, /* 5xx to RCPT: permanent for this recipient */
};

#define MK_STORE_OUTBOX_ADDR_MAX 320
#define MK_STORE_OUTBOX_RCPT_MAX 1000

struct mk_store_outbox_rcpt {
	char addr[MK_STORE_OUTBOX_ADDR_MAX + 1];
	uint8_t state;   /* enum mk_store_outbox_rcpt_state */
	char reply[256]; /* the server's reply when refused */
};

enum mk_store_outbox_flag {
	MK_STORE_OUTBOX_8BIT = 1 << 0,     /* BODY=8BITMIME */
	MK_STORE_OUTBOX_SMTPUTF8 = 1 << 1, /* non-ASCII address */
	MK_STORE_OUTBOX_SAVED = 1 << 2,    /* save_sent: the copy was APPENDed to the Sent folder */
};

struct mk_store_outbox {
	uint64_t id;
	uint32_t account;      /* store account id */
	uint8_t state;         /* enum mk_store_outbox_state */
	uint8_t phase;         /* enum mk_store_outbox_phase */
	uint32_t flags;        /* enum mk_store_outbox_flag */
	int64_t created;       /* unix seconds */
	int64_t send_at;       /* not before this (unix seconds) */
	int64_t next_attempt;  /* retry time after a temporary failure, 0: send_at */
	int64_t last_attempt;
	int64_t done_at;       /* SENT/FAILED/CANCELED */
	uint32_t attempts;
	uint8_t sha[MK_STORE_SHA_LEN];
	uint64_t size;         /* raw bytes of the message */
	char from[MK_STORE_OUTBOX_ADDR_MAX + 1]; /* envelope sender */
	char message_id[1000];  /* as sent, with <> */
	char server_id[256];    /* queue id / Message-ID from the 250 after "." */
	char last_reply[512];   /* last server reply or transport error */
	struct mk_store_outbox_rcpt *rcpt; /* mk_alloc'd, owned */
	unsigned n_rcpt;
};

void mk_store_outbox_init(struct mk_store_outbox *o);
/* Frees the recipient array; idempotent. */
void mk_store_outbox_cleanup(struct mk_store_outbox *o);
/* Deep copy into an initialised `dst` (its old contents are freed). */
void mk_store_outbox_copy(struct mk_store_outbox *dst, const struct mk_store_outbox *src);
/* Appends a recipient (PENDING). Returns: 0, MK_EINVAL (empty, too long,
 * control characters), MK_ETOOBIG (more than MK_STORE_OUTBOX_RCPT_MAX). */
int mk_store_outbox_add_rcpt(struct mk_store_outbox *o, const char *addr);
const char *mk_store_outbox_state_name(uint8_t state);
/* An attempt that did not deliver (lost, deferred, or resolved as not
 * received): recipients its RCPT accepted go back to PENDING; refused
 * ones stay refused. */
void mk_store_outbox_rcpt_retry(struct mk_store_outbox *o);

/* A new queue id (own small transaction; gaps after a crash are harmless).
 * Returns: 0, storage errors. */
int mk_store_outbox_new_id(struct mk_store *st, uint64_t *id_r);
/* Adds the entry `o` (o->id from mk_store_outbox_new_id, body finished in
 * this batch or already stored) to the batch: the commit writes it in the
 * same transaction as the body. `o` is read at commit time: keep it alive
 * and unchanged until mk_store_batch_commit() returns.
 * Returns: 0, MK_EINVAL (no recipient, id 0, bad state). */
int mk_store_batch_put_outbox(struct mk_store_batch *b, const struct mk_store_outbox *o);
/* Reads one entry (o initialised; replaced). Returns: 0, MK_ENOTFOUND,
 * MK_ECORRUPT, storage errors. */
int mk_store_outbox_get(struct mk_store *st, uint64_t id, struct mk_store_outbox *o);
/* Every entry in id order (account 0: all accounts). cb runs inside a read
 * transaction (it must not call into the store); nonzero stops.
 * Returns: 0, MK_ECORRUPT, storage errors. */
int mk_store_outbox_list(struct mk_store *st, uint32_t account,
			 int (*cb)(void *ud, const struct mk_store_outbox *o), void *ud);
/* Replaces entry o->id in its own durable transaction if its stored state
 * is `expect_state` (the body reference is kept: sha/size are not
 * changed). A crash-test hook point (MK_TEST_CRASH_AT counts it).
 * Returns: 0, MK_ENOTFOUND, MK_ESTATE (state changed meanwhile),
 * MK_ECORRUPT, storage errors. */
int mk_store_outbox_update(struct mk_store *st, const struct mk_store_outbox *o, uint8_t expect_state);
/* Deletes an entry in a final state (SENT, FAILED, CANCELED) and drops its
 * body reference (the body goes when nothing else names it).
 * Returns: 0, MK_ENOTFOUND, MK_ESTATE, storage errors. */
int mk_store_outbox_delete(struct mk_store *st, uint64_t id);
/* Start-up recovery (the agent, or a command about to send, holding the
 * store lock): SENDING short of DOT_SENT -> QUEUED; SENDING at DOT_SENT ->
 * UNCERTAIN. *requeued_r and *uncertain_r count them (may be NULL).
 * Returns: 0, storage errors. */
int mk_store_outbox_recover(struct mk_store *st, unsigned *requeued_r, unsigned *uncertain_r);

#endif
