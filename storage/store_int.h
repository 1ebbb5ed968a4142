/* SPDX-License-Identifier: MIT */
/*
 * store_int.h - internals shared by the files of storage/: the store and
 * batch structures, the transaction helpers (grow-and-replay on
 * MDB_MAP_FULL), the value codecs of schema.c (exposed for the fuzz
 * target) and a few test-only helpers. Nothing outside storage/ and its
 * tests may include this header: it pulls in <lmdb.h> and <zlib.h>.
 */
#ifndef MK_STORE_INT_H
#define MK_STORE_INT_H

#include "mk_crypto.h"
#include "mk_store.h"

#include <lmdb.h>
#include <pthread.h>
#include <sys/types.h>
#include <zlib.h>

#define MK__STORE_SCHEMA_VERSION 1u
/* Version byte leading every value written by this schema. */
#define MK__STORE_VALUE_V1 1u
/* One chunk holds at most this many stored bytes (LMDB overflow pages). */
#define MK__STORE_CHUNK ((size_t)1024 * 1024)
/* Map size of a new store; grows by doubling on MDB_MAP_FULL. */
#define MK__STORE_INITIAL_MAP ((size_t)64 * 1024 * 1024)
/* Growth stops here: past it MDB_MAP_FULL becomes -ENOSPC. */
#define MK__STORE_MAX_MAP ((size_t)1 << 42)

/* zlib level when mk_store_open() is given 0 (see blob.c for the measured
 * trade-off). */
#define MK__STORE_DEFAULT_ZLEVEL 4
/* Compression threads of a new store (mk_store_set_threads changes it). */
#define MK__STORE_DEFAULT_THREADS 2u
#define MK__STORE_MAX_THREADS 16u
/* Memory (raw buffer plus output buffer) of bodies queued for or being
 * compressed, per store; past it mk_store_body_finish() helps or waits. */
#define MK__STORE_QUEUE_MAX ((size_t)1024 * 1024)

/* Limits of encoded names (an account name is an LMDB key: max 511). */
#define MK__STORE_ACCOUNT_NAME_MAX 255
/* Mailbox names longer than this are keyed by a prefix plus their SHA-256. */
#define MK__STORE_MBNAME_KEY_PREFIX 400
#define MK__STORE_MBNAME_KEY_MAX (4 + MK__STORE_MBNAME_KEY_PREFIX + 1 + MK_STORE_SHA_LEN)

/* Largest encoded values (checked by the encoders). */
#define MK__STORE_MSG_VAL_MAX 1024
#define MK__STORE_MBOX_VAL_MAX 1536
#define MK__STORE_BLOB_VAL_MAX 64

/* Codec of a blob's stored bytes (blobs.codec). Numbers are forever: a
 * store written by any version must stay readable. */
enum mk__store_codec {
	MK__STORE_CODEC_STORED = 0, /* the raw bytes */
	MK__STORE_CODEC_ZLIB = 1,   /* one zlib stream of the raw bytes (old stores) */
	/* One zlib stream with preset dictionary 1 (zdict.c, whose bytes
	 * never change; the stream records its Adler-32) of the "mz1"
	 * transform of the raw bytes (codec.c: base64 lines decoded). What
	 * new bodies are written with. */
	MK__STORE_CODEC_MZ1 = 2,
};

/* ---- codec.c, zdict.c: codec MZ1 ---- */

extern const uint8_t mk__store_zdict1[];
extern const size_t mk__store_zdict1_len;
/* Adler-32 of dictionary 1, as found in every MZ1 stream's header. */
#define MK__STORE_ZDICT1_ADLER 0xfab1b9a9u
#define MK__STORE_ZDICT1_LEN 17810u

/* Limits of the mz1 records (part of the format: never change). */
#define MZ_LIT_MAX 16384u
#define MZ_RUN_MAX 49152u
#define MZ_MIN_L 16u
#define MZ_MAX_L 1020u

/* Where the encoder's output goes: feed() deflates bytes (Z_NO_FLUSH),
 * level() switches the deflate level between records (deflateParams).
 * Both return 0 or a negative error, which the encoder passes on. */
struct mk__store_zsink {
	int (*feed)(void *ud, const uint8_t *p, size_t n);
	int (*level)(void *ud, int level);
	void *ud;
};
struct mk__store_mzenc;
/* ~66 KiB: a line, a literal and a run buffer (never more per body). */
struct mk__store_mzenc *mk__store_mzenc_new(void);
void mk__store_mzenc_free(struct mk__store_mzenc **ep);
/* Starts a body at `level`, the stream being at `level` already. */
void mk__store_mzenc_begin(struct mk__store_mzenc *e, int level, const struct mk__store_zsink *sink);
int mk__store_mzenc_write(struct mk__store_mzenc *e, const uint8_t *p, size_t n);
/* Feeds whatever is pending; then the caller runs deflate(Z_FINISH). */
int mk__store_mzenc_finish(struct mk__store_mzenc *e);
/* Counters: base64 runs and runs stored (level 0) as incompressible. */
void mk__store_mzenc_stats(const struct mk__store_mzenc *e, uint64_t *runs_r, uint64_t *stored_runs_r);
/* Bench only, single-threaded: incompressible-run detection on/off. */
void mk__store_test_mz_detect(bool on);
/* A deflate state straight after deflateInit2/deflateReset becomes the
 * start of an MZ1 stream at `level` (dictionary set). 0 or MK_EIO. */
int mk__store_zstart(z_stream *zs, int level);

/* The transform's decoder: a few bytes of state. */
struct mk__store_mzdec {
	uint8_t state, vshift, ngrp, npend, pend_off;
	uint8_t grp[3];
	uint8_t pend[8];
	uint32_t v, bpl, line_left, lines;
	size_t left;
};
void mk__store_mzdec_init(struct mk__store_mzdec *d);
/* Between records with nothing pending (the only valid end). */
bool mk__store_mzdec_idle(const struct mk__store_mzdec *d);
/* Consumes in (*used_r bytes), writes up to cap bytes (*made_r).
 * Returns 0 or MK_ECORRUPT. */
int mk__store_mzdec_run(struct mk__store_mzdec *d, const uint8_t *in, size_t in_n, size_t *used_r, uint8_t *out,
			size_t cap, size_t *made_r);

/* Stored bytes -> raw bytes for codec ZLIB or MZ1 (STORED: nothing to
 * do, the callers copy). Pull-style: dec_input() a piece of stored bytes,
 * then dec_out() until it gives 0 bytes: then either `done` (the stream
 * ended; any stored byte left is corruption) or it needs more input. */
struct mk__store_dec {
	uint8_t codec;
	bool z_active, z_end, done;
	z_stream zs;
	struct mk__store_mzdec md;
	uint8_t *zbuf; /* MZ1: inflated, not yet decoded */
	size_t zlen, zoff;
};
/* 0, MK_ECORRUPT (unknown codec), MK_EIO. */
int mk__store_dec_init(struct mk__store_dec *d, uint8_t codec);
void mk__store_dec_end(struct mk__store_dec *d);
void mk__store_dec_input(struct mk__store_dec *d, const uint8_t *p, size_t n);
/* 0 (bytes in *n_r, possibly 0) or MK_ECORRUPT (why in *why_r, static). */
int mk__store_dec_out(struct mk__store_dec *d, uint8_t *out, size_t cap, size_t *n_r, const char **why_r);

struct mk__store_blob {
	uint64_t refcount;
	uint64_t raw_size;
	uint64_t stored_size;
	uint64_t owner; /* chunk owner id */
	uint32_t n_chunks;
	uint8_t codec; /* enum mk__store_codec */
};

/* A compression thread: its own deflate state, set up (and torn down) by
 * the caller's thread so a worker never allocates. */
struct mk__store_worker {
	struct mk_store *st;
	pthread_t tid;
	z_stream zs;
	bool z_active;
	bool started;
	struct mk__store_mzenc *enc; /* made and freed by the caller's thread */
};

enum mk__store_job_state {
	MK__STORE_JOB_NONE = 0,
	MK__STORE_JOB_QUEUED,
	MK__STORE_JOB_RUNNING,
	MK__STORE_JOB_DONE,
};

/* pool.c: compression of small bodies off the caller's thread. Fields
 * marked (mu) are read and written under `mu` only; the others belong to
 * the caller's thread. */
struct mk__store_pool {
	pthread_mutex_t mu;
	pthread_cond_t work_cv; /* workers: a job was queued, or stop */
	pthread_cond_t done_cv; /* caller: a job finished */
	bool sync_ready;        /* mu and the conds exist */
	struct mk__store_worker *workers;
	unsigned n_workers;
	unsigned want_workers; /* configured, not started yet */
	struct mk_store_body *q_head, **q_tail; /* (mu) queued, FIFO */
	size_t queued_bytes;                     /* (mu) memory of queued + running jobs */
	bool stop;                               /* (mu) workers exit once the queue is empty */
	bool paused;                             /* (mu) test hook: workers take no job */
	size_t queue_max;
	/* Bodies whose job is not yet reaped (caller's list, any batch). */
	struct mk_store_body *pending;
	/* The caller's own deflate state (threads 0, helping). */
	z_stream zs;
	bool z_active;
	struct mk__store_mzenc *enc;
	/* Counters (tests, bench). */
	uint64_t jobs, jobs_helped, backpressure_waits;
};

struct mk_store {
	MDB_env *env;
	MDB_dbi meta, accounts, account_names, mailboxes, mailbox_names, messages, blobs, chunks, staging;
	MDB_dbi pop3_uidl; /* POP3 UIDL table (pop3.c; issue 7) */
	MDB_dbi outbox;    /* the outbox (outbox.c; issue 5) */
	char *dir;
	int zlevel;
	pid_t pid;         /* LMDB handles must not be used after fork() */
	bool counted;       /* in store.c open_handles */
	uint64_t starttime; /* the process start time (/proc/self/stat), for staging marks */
	int open_txns;     /* set_mapsize is legal only at 0 */
	uint64_t growths;  /* map doublings (tests, bench) */
	char *data_path;   /* realpath of data.mdb, to find the map in /proc/self/maps */
	uintptr_t map_lo, map_hi; /* the map, once found; 0 after it may have moved */
	uint32_t unique_seq;
	char host[64];     /* for unique names, '/' and ':' escaped */
	struct mk__store_pool pool;
};

struct mk_store_body {
	struct mk_store_batch *b;
	struct mk_store_body *next;
	/* While raw_size < MK_STORE_SPILL_BYTES the raw bytes are kept and
	 * compressed in one go at finish (inline or by the pool); past it the
	 * body is `streaming`: deflated as written, spilled in chunks. */
	bool streaming;
	uint8_t *raw;
	size_t raw_len, raw_cap;
	/* Pool job (pool.c). zout is allocated by the caller before queueing;
	 * while queued or running the worker reads raw and writes zout. */
	bool in_pool;                      /* has a job not yet reaped */
	struct mk_store_body *pend_next, **pend_pprev; /* pool.pending */
	struct mk_store_body *q_next;      /* (pool.mu) */
	uint8_t job_state;                 /* (pool.mu) enum mk__store_job_state */
	int job_err;                       /* (pool.mu) */
	size_t zout_len;                   /* (pool.mu) */
	size_t job_bytes;                  /* counted in pool.queued_bytes */
	uint8_t *zout;
	size_t zout_cap;
	z_stream zs;
	bool z_active;
	struct mk__store_mzenc *enc; /* while streaming */
	bool finished;
	bool failed;
	struct mk_sha256 sha_ctx;
	uint8_t sha[MK_STORE_SHA_LEN];
	uint64_t raw_size;
	uint8_t codec;
	/* Stored bytes not yet written (the whole body while it is small). */
	uint8_t *mem;
	size_t mem_len, mem_cap;
	/* Spilled: chunks 0..spilled_chunks-1 are committed under `owner`,
	 * which has a staging mark until a batch commit links or drops them. */
	uint64_t owner;
	uint32_t spilled_chunks;
	uint64_t stored_size; /* spilled + pending */
};

enum mk__store_op_kind {
	MK__STORE_OP_PUT = 1,
	MK__STORE_OP_UPDATE,
	MK__STORE_OP_MAILBOX,
	MK__STORE_OP_POP3, /* a POP3 UIDL entry (pop3.c; issue 7) */
	MK__STORE_OP_OUTBOX, /* an outbox entry (outbox.c; issue 5): u.outbox is borrowed */
};

struct mk__store_op {
	uint8_t kind;
	bool unique_generated; /* an existing record's unique wins */
	union {
		struct mk_store_msg msg;
		struct mk_store_mailbox mb;
		struct mk_store_pop3 pop3; /* MK__STORE_OP_POP3 */
		const struct mk_store_outbox *outbox; /* MK__STORE_OP_OUTBOX */
	} u;
};

struct mk_store_batch {
	struct mk_store *st;
	struct mk_store_body *bodies; /* in begin order */
	struct mk_store_body **bodies_tail;
	struct mk__store_op *ops;
	size_t n_ops, cap_ops;
	size_t n_msgs;
};

/* ---- store.c: errors, transactions ---- */

/* LMDB rc -> our sign convention (errno values negated; MDB_* kept). */
int mk__store_err(int mdb_rc);
/* A read transaction (retrying over MDB_MAP_RESIZED). */
int mk__store_rtxn(struct mk_store *st, MDB_txn **txn_r);
void mk__store_txn_abort(struct mk_store *st, MDB_txn *txn);

/* Runs fn in a write transaction and commits it. On MDB_MAP_FULL (from fn
 * or the commit) the transaction is aborted, the map doubled and fn run
 * again from scratch, so fn must be replayable. fn returns 0 or a
 * negative error (MDB codes as returned by mk__store_err). With
 * `batch_commit`, the MK_TEST_HOOKS crash points apply. */
typedef int (*mk__store_txn_fn)(struct mk_store *st, MDB_txn *txn, void *ud);
int mk__store_write(struct mk_store *st, mk__store_txn_fn fn, void *ud, bool batch_commit);

/* blob.c: copies chunk `no` of `owner` into *buf (grown as needed) in its
 * own short read transaction. Returns: 0, MK_ENOTFOUND, storage errors. */
int mk__store_read_chunk_copy(struct mk_store *st, uint64_t owner, uint32_t no, uint8_t **buf, size_t *cap,
			      size_t *len_r);

/* outbox.c: applies an outbox op inside the batch commit. */
struct mk__store_commit_refs;
int mk__store_outbox_apply(struct mk_store *st, MDB_txn *txn, const struct mk_store_outbox *o);
/* outbox.c (verify): every body sha the outbox references, appended. */
int mk__store_outbox_shas(struct mk_store *st, MDB_txn *txn,
			  void (*add)(void *ud, const uint8_t sha[MK_STORE_SHA_LEN]), void *ud);
/* batch.c: +1/-1 on a blob's refcount inside a write txn; a blob whose
 * count reaches 0 is deleted with its chunks. */
int mk__store_blob_ref(struct mk_store *st, MDB_txn *txn, const uint8_t sha[MK_STORE_SHA_LEN], int delta);
/* meta counters (store.c). */
int mk__store_meta_next(struct mk_store *st, MDB_txn *txn, const char *name, uint64_t *v_r);

/* Next chunk owner id (meta "owner_seq"), inside a write txn. */
int mk__store_alloc_owner(struct mk_store *st, MDB_txn *txn, uint64_t *owner_r);
/* Deletes every chunk of `owner` and its staging mark. */
int mk__store_drop_owner(struct mk_store *st, MDB_txn *txn, uint64_t owner);
int mk__store_get_blob(struct mk_store *st, MDB_txn *txn, const uint8_t sha[MK_STORE_SHA_LEN],
		       struct mk__store_blob *blob_r);
/* The same in its own short read transaction. Returns: 0, MK_ENOTFOUND,
 * MK_ECORRUPT, storage errors. */
int mk__store_lookup_blob(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], struct mk__store_blob *blob_r);
int mk__store_put_blob(struct mk_store *st, MDB_txn *txn, const uint8_t sha[MK_STORE_SHA_LEN],
		       const struct mk__store_blob *blob);
/* Puts a staging mark for owner (created now). */
int mk__store_put_staging(struct mk_store *st, MDB_txn *txn, uint64_t owner);
int mk__store_put_chunk(struct mk_store *st, MDB_txn *txn, uint64_t owner, uint32_t no, const uint8_t *p,
			size_t n);
/* A new Maildir-style unique name into out. */
void mk__store_unique(struct mk_store *st, char *out, size_t outsz);
/* Hex of a sha for messages: the first `nbytes` bytes, then an ellipsis. */
void mk__store_hex(const uint8_t *p, size_t n, char *out, size_t outsz);

/* ---- blob.c ---- */

/* Streams a blob's decoded bytes to cb (may be NULL), checking the stored
 * size, raw size and SHA-256. With txn NULL each chunk is read in its own
 * short read transaction; else within txn. Returns: 0, MK_ECORRUPT (why
 * in *why_r, static), cb's negative value, storage errors. */
int mk__store_blob_stream(struct mk_store *st, MDB_txn *txn, const uint8_t sha[MK_STORE_SHA_LEN],
			  const struct mk__store_blob *blob, int (*cb)(void *ud, const uint8_t *p, size_t n),
			  void *ud, const char **why_r);
/* zlib allocation through mk_alloc. */
void *mk__store_zalloc(void *opaque, unsigned items, unsigned size);
void mk__store_zfree(void *opaque, void *p);
void mk__store_body_release(struct mk_store_body *w);

/* ---- pool.c ---- */

/* Mutex and conditions (at open; cannot fail but for resources: MK_EIO). */
int mk__store_pool_init(struct mk_store *st);
/* n workers (0: none), started by the first submit; none pending. */
void mk__store_pool_start(struct mk_store *st, unsigned n);
/* Finishes every queued job, joins the workers and reaps every body. */
void mk__store_pool_stop(struct mk_store *st);
/* Frees the mutex, conditions and the caller's deflate state. */
void mk__store_pool_cleanup(struct mk_store *st);
/* A finished small body (raw bytes in w->raw): compresses it inline
 * (no workers) or queues it, waiting or helping while the queue is full.
 * Sets codec/mem/stored_size (now or when reaped). */
void mk__store_pool_submit(struct mk_store_body *w);
/* Waits for w's job (helping if it is still queued) and reaps it. */
void mk__store_pool_wait(struct mk_store_body *w);
/* Reaps every body whose job is done (cheap; on the caller's thread). */
void mk__store_pool_reap(struct mk_store *st);

/* ---- pop3.c (issue 7): the POP3 UIDL table ---- */

/* A new op at the end of the batch (batch.c's op_add, for pop3.c). */
struct mk__store_op *mk__store_batch_op(struct mk_store_batch *b, uint8_t kind);
/* Writes one UIDL entry inside the batch commit's transaction. */
int mk__store_pop3_apply(struct mk_store *st, MDB_txn *txn, const struct mk_store_pop3 *rec);

/* ---- migrate.c ---- */

/* Brings a store at schema `from` (< current) up to date inside txn.
 * Returns: 0, MK_ECONFIG (no path from `from`; message in *error_r). */
int mk__store_migrate(struct mk_store *st, MDB_txn *txn, uint32_t from, char **error_r);

/* ---- schema.c: keys (fixed-width big-endian) and values ---- */

void mk__store_be32(uint8_t *p, uint32_t v);
void mk__store_be64(uint8_t *p, uint64_t v);
uint32_t mk__store_rd32(const uint8_t *p);
uint64_t mk__store_rd64(const uint8_t *p);

void mk__store_key_mailbox(uint8_t out[8], uint32_t account, uint32_t id);
/* Key of mailbox_names; returns its length (<= MK__STORE_MBNAME_KEY_MAX). */
size_t mk__store_key_mbname(uint8_t out[MK__STORE_MBNAME_KEY_MAX], uint32_t account, const char *name);
void mk__store_key_msg(uint8_t out[16], uint32_t account, uint32_t mailbox, uint32_t uidvalidity, uint32_t uid);
void mk__store_key_chunk(uint8_t out[12], uint64_t owner, uint32_t no);

size_t mk__store_encode_u32(uint8_t out[5], uint32_t v);
size_t mk__store_encode_u64(uint8_t out[9], uint64_t v);
size_t mk__store_encode_i64(uint8_t out[9], int64_t v);
/* Account value: the name. out holds 3 + MK__STORE_ACCOUNT_NAME_MAX. */
size_t mk__store_encode_account(uint8_t *out, size_t outsz, const char *name);
size_t mk__store_encode_mailbox(uint8_t *out, size_t outsz, const struct mk_store_mailbox *mb);
size_t mk__store_encode_msg(uint8_t *out, size_t outsz, const struct mk_store_msg *m);
size_t mk__store_encode_blob(uint8_t *out, size_t outsz, const struct mk__store_blob *b);

/* Decoders: Returns 0 or MK_ECORRUPT (wrong version byte, truncated,
 * trailing bytes, out-of-range field, NUL inside a string). Key fields
 * (account, mailbox ids, uids) are not part of values and are left as is. */
int mk__store_decode_u32(const uint8_t *p, size_t n, uint32_t *v_r);
int mk__store_decode_u64(const uint8_t *p, size_t n, uint64_t *v_r);
int mk__store_decode_i64(const uint8_t *p, size_t n, int64_t *v_r);
int mk__store_decode_account(const uint8_t *p, size_t n, char *name, size_t namesz);
int mk__store_decode_mailbox(const uint8_t *p, size_t n, struct mk_store_mailbox *mb);
int mk__store_decode_msg(const uint8_t *p, size_t n, struct mk_store_msg *m);
int mk__store_decode_blob(const uint8_t *p, size_t n, struct mk__store_blob *b);

/* ---- test helpers (used by tests/unit/test_store.c and the bench) ---- */

/* Initial map size for the next mk_store_open() (0: the default). */
void mk__store_test_set_initial_map(size_t bytes);
uint64_t mk__store_test_growths(const struct mk_store *st);
/* Entries in the staging table. */
/* Test: puts a staging mark for `owner` as if process pid (started at
 * `starttime`, 0: read from /proc) had written it, with one chunk. */
int mk__store_test_put_foreign_staging(struct mk_store *st, uint64_t owner, pid_t pid, uint64_t starttime);
int mk__store_test_staging_count(struct mk_store *st, uint64_t *n_r);
/* Number of chunks in the chunks table. */
int mk__store_test_chunk_count(struct mk_store *st, uint64_t *n_r);
/* Flips a byte of chunk `no` of the blob (at offset % chunk length). */
int mk__store_test_corrupt_chunk(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], uint32_t no,
				 size_t offset);
/* Overwrites meta.schema_version. */
int mk__store_test_set_schema(struct mk_store *st, uint32_t version);
/* Refcount of a blob (MK_ENOTFOUND if none). */
int mk__store_test_refcount(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], uint64_t *ref_r);
/* Queue memory limit (0: the default) and pausing of the workers. */
void mk__store_test_set_queue_max(struct mk_store *st, size_t bytes);
void mk__store_test_pause(struct mk_store *st, bool paused);
/* Jobs run, jobs run on the caller's thread, waits for queue space. */
void mk__store_test_pool_stats(struct mk_store *st, uint64_t *jobs_r, uint64_t *helped_r, uint64_t *waits_r);
/* SHA-256 of a blob's stored bytes (its chunks, in order) and their count. */
int mk__store_test_stored_digest(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN],
				 uint8_t digest_r[MK_STORE_SHA_LEN], uint64_t *stored_r);
/* Test: writes a blob as an older version would have (one chunk of the
 * given stored bytes, refcount 0: a record must follow). */
int mk__store_test_put_raw_blob(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], int codec,
				const uint8_t *p, size_t n, uint64_t raw_size);
/* Codec and chunk count of a blob. */
int mk__store_test_blob_info(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], int *codec_r,
			     uint32_t *n_chunks_r);

/* After a commit: drops the read-only map's clean pages from our RSS. */
void mk__store_release_map(struct mk_store *st);

#endif
