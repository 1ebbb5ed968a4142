/* SPDX-License-Identifier: MIT */
/*
 * pool.c - compression of small bodies off the caller's (loop) thread.
 *
 * A body whose raw size stays below MK_STORE_SPILL_BYTES is buffered raw
 * by blob.c; mk_store_body_finish() hashes it (synchronously: the sha is
 * returned at once) and hands it here. With workers, the raw bytes go to
 * a FIFO served by a few pthreads, each with its own deflate state
 * (deflateReset per job, so the output is byte-identical to the inline
 * path); without workers (mk_store_set_threads(st, 0)) it is compressed at
 * once on the caller's thread with the same function.
 *
 * Rules kept here:
 *  - a worker touches nothing but the queue (under `mu`), the raw bytes it
 *    reads and the output buffer it writes: no LMDB, no allocation (the
 *    caller allocates the output buffer, 95 % of the raw size, before
 *    queueing; the deflate states are made and freed on the caller's
 *    thread), no logging;
 *  - memory is bounded: the raw plus output buffers of queued and running
 *    jobs stay under pool.queue_max (2 MiB) per store; past it the caller
 *    compresses the oldest queued job itself, or waits for a running one
 *    (back-pressure, never unbounded growth);
 *  - finished jobs are reaped (codec chosen, buffers trimmed) on the
 *    caller's thread at the next body_begin/body_finish, and
 *    mk_store_batch_commit() waits for (or helps with) the jobs of its own
 *    batch before opening its one write transaction, so LMDB is only
 *    touched by the caller's thread and a MAP_FULL replay sees final data;
 *  - the stored bytes do not depend on the thread count: one MZ1 stream
 *    per body (codec.c) from a reset state, the same codec rule (stored
 *    when the output exceeds 95 % of the input) as the streaming path;
 *    each worker's mz1 encoder (~66 KiB), like its deflate state, is made
 *    and freed by the caller's thread.
 *  - mk_store_close() lets the workers drain the queue, joins them and
 *    reaps every body: no thread outlives the store.
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "store_int.h"

#include <signal.h>
#include <string.h>

/* The pool's sink: one fixed output buffer. Full means the body does
 * not pay (finalize() stores it raw), so "no room" is an error here. */
static int pool_feed(void *ud, const uint8_t *p, size_t n)
{
	z_stream *zs = ud;
	zs->next_in = (Bytef *)(uintptr_t)p;
	zs->avail_in = (uInt)n;
	int zr = deflate(zs, Z_NO_FLUSH);
	if (zr == Z_STREAM_ERROR)
		return MK_EIO;
	return zs->avail_in == 0 ? 0 : MK_ETOOBIG;
}

static int pool_level(void *ud, int level)
{
	int zr = deflateParams(ud, level, Z_DEFAULT_STRATEGY);
	return zr == Z_OK ? 0 : zr == Z_BUF_ERROR ? MK_ETOOBIG : MK_EIO;
}

/* One body in one go (codec MZ1); identical bytes whichever thread runs
 * it. */
static int compress_one(struct mk_store *st, z_stream *zs, struct mk__store_mzenc *enc, const uint8_t *in, size_t n,
			uint8_t *out, size_t cap, size_t *len_r)
{
	*len_r = 0;
	if (deflateReset(zs) != Z_OK || mk__store_zstart(zs, st->zlevel) < 0)
		return MK_EIO;
	zs->next_out = out;
	zs->avail_out = (uInt)cap;
	struct mk__store_zsink sink = {pool_feed, pool_level, zs};
	mk__store_mzenc_begin(enc, st->zlevel, &sink);
	int ret = mk__store_mzenc_write(enc, in, n);
	if (ret == 0)
		ret = mk__store_mzenc_finish(enc);
	if (ret < 0)
		return ret;
	zs->next_in = NULL;
	zs->avail_in = 0;
	int zr = deflate(zs, Z_FINISH);
	if (zr != Z_STREAM_END)
		return MK_ETOOBIG;
	*len_r = cap - zs->avail_out;
	return 0;
}

static void zs_init(struct mk_store *st, z_stream *zs)
{
	memset(zs, 0, sizeof(*zs));
	zs->zalloc = mk__store_zalloc;
	zs->zfree = mk__store_zfree;
	/* deflateInit2 only fails on bad parameters or memory (which aborts). */
	MK_ASSERT(deflateInit2(zs, st->zlevel, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
}

static void *worker_main(void *arg)
{
	struct mk__store_worker *wk = arg;
	struct mk__store_pool *p = &wk->st->pool;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while ((p->q_head == NULL || p->paused) && !p->stop)
			pthread_cond_wait(&p->work_cv, &p->mu);
		struct mk_store_body *w = p->q_head;
		if (w == NULL)
			break; /* stopping and drained */
		p->q_head = w->q_next;
		if (p->q_head == NULL)
			p->q_tail = &p->q_head;
		w->q_next = NULL;
		w->job_state = MK__STORE_JOB_RUNNING;
		pthread_mutex_unlock(&p->mu);
		size_t len = 0;
		int err = compress_one(wk->st, &wk->zs, wk->enc, w->raw, w->raw_len, w->zout, w->zout_cap, &len);
		pthread_mutex_lock(&p->mu);
		w->zout_len = len;
		w->job_err = err;
		w->job_state = MK__STORE_JOB_DONE;
		p->queued_bytes -= w->job_bytes;
		p->jobs++;
		pthread_cond_broadcast(&p->done_cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int mk__store_pool_init(struct mk_store *st)
{
	struct mk__store_pool *p = &st->pool;
	p->q_tail = &p->q_head;
	p->queue_max = MK__STORE_QUEUE_MAX;
	if (pthread_mutex_init(&p->mu, NULL) != 0)
		return MK_EIO;
	if (pthread_cond_init(&p->work_cv, NULL) != 0) {
		pthread_mutex_destroy(&p->mu);
		return MK_EIO;
	}
	if (pthread_cond_init(&p->done_cv, NULL) != 0) {
		pthread_cond_destroy(&p->work_cv);
		pthread_mutex_destroy(&p->mu);
		return MK_EIO;
	}
	p->sync_ready = true;
	return 0;
}

void mk__store_pool_start(struct mk_store *st, unsigned n)
{
	struct mk__store_pool *p = &st->pool;
	MK_ASSERT(p->sync_ready && p->n_workers == 0 && p->pending == NULL);
	/* Started by the first body that needs them: a store that only reads
	 * (stats, export, a sync with nothing new) never pays for them. */
	p->want_workers = n;
}

static void start_workers(struct mk_store *st)
{
	struct mk__store_pool *p = &st->pool;
	unsigned n = p->want_workers;
	p->want_workers = 0;
	p->stop = false;
	p->workers = mk_xcalloc(n, sizeof(*p->workers));
	/* Workers take no signals: they stay with the loop thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned i = 0; i < n; i++) {
		struct mk__store_worker *wk = &p->workers[i];
		wk->st = st;
		zs_init(st, &wk->zs);
		wk->z_active = true;
		wk->enc = mk__store_mzenc_new();
		if (pthread_create(&wk->tid, NULL, worker_main, wk) != 0) {
			/* Fewer workers (or none: inline) is slower, not wrong. */
			deflateEnd(&wk->zs);
			wk->z_active = false;
			mk__store_mzenc_free(&wk->enc);
			break;
		}
		wk->started = true;
		p->n_workers++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (p->n_workers == 0)
		MK_FREE(&p->workers);
}

/* Caller side, after DONE: picks the codec and keeps one buffer. A deflate
 * that did not end within zout_cap (95 % of the raw size: it would not pay)
 * or failed falls back to the stored codec, which is always valid. */
static void finalize(struct mk_store_body *w, int err, size_t zlen)
{
	/* Incompressible (already-compressed attachments, tiny mails): store
	 * the raw bytes, which saves the inflate on every read. */
	if (err != 0 || (uint64_t)zlen * 100 > (uint64_t)w->raw_len * 95) {
		mk_free(w->zout);
		w->mem = w->raw;
		w->mem_len = w->mem_cap = w->raw_len;
		w->codec = MK__STORE_CODEC_STORED;
	} else {
		mk_free(w->raw);
		/* Drop the slack: a batch holds many small bodies. */
		w->mem = mk_xrealloc(w->zout, zlen ? zlen : 1);
		w->mem_len = w->mem_cap = zlen;
		w->codec = MK__STORE_CODEC_MZ1;
	}
	w->raw = NULL;
	w->raw_len = w->raw_cap = 0;
	w->zout = NULL;
	w->zout_cap = 0;
	w->stored_size = w->mem_len;
}

static void pending_unlink(struct mk_store_body *w)
{
	*w->pend_pprev = w->pend_next;
	if (w->pend_next != NULL)
		w->pend_next->pend_pprev = w->pend_pprev;
	w->pend_next = NULL;
	w->pend_pprev = NULL;
	w->in_pool = false;
}

/* Under mu: takes a queued job off the queue to run it on this thread. */
static void dequeue_locked(struct mk__store_pool *p, struct mk_store_body *w)
{
	for (struct mk_store_body **pp = &p->q_head; *pp != NULL; pp = &(*pp)->q_next) {
		if (*pp != w)
			continue;
		*pp = w->q_next;
		if (p->q_tail == &w->q_next)
			p->q_tail = pp;
		w->q_next = NULL;
		w->job_state = MK__STORE_JOB_RUNNING;
		return;
	}
	MK_ASSERT(!"queued job not in the queue");
}

static z_stream *caller_zs(struct mk_store *st)
{
	struct mk__store_pool *p = &st->pool;
	if (!p->z_active) {
		zs_init(st, &p->zs);
		p->z_active = true;
		p->enc = mk__store_mzenc_new();
	}
	return &p->zs;
}

/* Under mu, entered and left locked: runs a job taken off the queue on
 * the caller's thread. */
static void help_locked(struct mk_store *st, struct mk_store_body *w)
{
	struct mk__store_pool *p = &st->pool;
	dequeue_locked(p, w);
	pthread_mutex_unlock(&p->mu);
	size_t len = 0;
	z_stream *zs = caller_zs(st);
	int err = compress_one(st, zs, p->enc, w->raw, w->raw_len, w->zout, w->zout_cap, &len);
	pthread_mutex_lock(&p->mu);
	w->zout_len = len;
	w->job_err = err;
	w->job_state = MK__STORE_JOB_DONE;
	p->queued_bytes -= w->job_bytes;
	p->jobs++;
	p->jobs_helped++;
	pthread_cond_broadcast(&p->done_cv);
}

void mk__store_pool_submit(struct mk_store_body *w)
{
	struct mk_store *st = w->b->st;
	struct mk__store_pool *p = &st->pool;
	/* No slack in the raw buffer while it waits. */
	if (w->raw_cap > w->raw_len) {
		w->raw = mk_xrealloc(w->raw, w->raw_len ? w->raw_len : 1);
		w->raw_cap = w->raw_len;
	}
	/* Output that does not fit in 95 % of the input is not kept anyway
	 * (stored codec), so a buffer of that size is enough: deflate simply
	 * stops short of Z_STREAM_END and finalize() stores the raw bytes. */
	w->zout_cap = (size_t)((uint64_t)w->raw_len * 95 / 100);
	w->zout = mk_xmalloc(w->zout_cap ? w->zout_cap : 1);
	if (p->want_workers > 0)
		start_workers(st);
	if (p->n_workers == 0) {
		size_t len = 0;
		z_stream *zs = caller_zs(st);
		int err = compress_one(st, zs, p->enc, w->raw, w->raw_len, w->zout, w->zout_cap, &len);
		finalize(w, err, len);
		return;
	}
	w->job_bytes = w->raw_cap + w->zout_cap;
	w->job_state = MK__STORE_JOB_QUEUED;
	w->job_err = 0;
	w->zout_len = 0;
	w->in_pool = true;
	w->pend_next = p->pending;
	if (p->pending != NULL)
		p->pending->pend_pprev = &w->pend_next;
	p->pending = w;
	w->pend_pprev = &p->pending;
	pthread_mutex_lock(&p->mu);
	/* Back-pressure: over the limit, run the oldest queued job here (or
	 * wait for a running one); an empty queue always takes one job. */
	bool waited = false;
	while (p->queued_bytes > 0 && p->queued_bytes + w->job_bytes > p->queue_max) {
		waited = true;
		if (p->q_head != NULL)
			help_locked(st, p->q_head);
		else
			pthread_cond_wait(&p->done_cv, &p->mu);
	}
	if (waited)
		p->backpressure_waits++;
	p->queued_bytes += w->job_bytes;
	*p->q_tail = w;
	p->q_tail = &w->q_next;
	w->q_next = NULL;
	pthread_cond_signal(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
}

void mk__store_pool_wait(struct mk_store_body *w)
{
	if (!w->in_pool)
		return;
	struct mk__store_pool *p = &w->b->st->pool;
	pthread_mutex_lock(&p->mu);
	if (w->job_state == MK__STORE_JOB_QUEUED)
		help_locked(w->b->st, w);
	while (w->job_state != MK__STORE_JOB_DONE)
		pthread_cond_wait(&p->done_cv, &p->mu);
	int err = w->job_err;
	size_t len = w->zout_len;
	pthread_mutex_unlock(&p->mu);
	pending_unlink(w);
	finalize(w, err, len);
}

void mk__store_pool_reap(struct mk_store *st)
{
	struct mk__store_pool *p = &st->pool;
	if (p->pending == NULL)
		return;
	struct mk_store_body *done = NULL;
	pthread_mutex_lock(&p->mu);
	for (struct mk_store_body *w = p->pending, *next; w != NULL; w = next) {
		next = w->pend_next;
		if (w->job_state != MK__STORE_JOB_DONE)
			continue;
		/* Copy what finalize needs while holding the lock. */
		w->job_state = MK__STORE_JOB_NONE;
		pending_unlink(w);
		w->pend_next = done; /* reused as the local list */
		done = w;
	}
	pthread_mutex_unlock(&p->mu);
	while (done != NULL) {
		struct mk_store_body *w = done;
		done = w->pend_next;
		w->pend_next = NULL;
		/* DONE was seen under mu, so job_err/zout_len are final. */
		finalize(w, w->job_err, w->zout_len);
	}
}

void mk__store_pool_stop(struct mk_store *st)
{
	struct mk__store_pool *p = &st->pool;
	if (!p->sync_ready)
		return;
	if (p->n_workers > 0) {
		pthread_mutex_lock(&p->mu);
		p->stop = true;
		p->paused = false;
		pthread_cond_broadcast(&p->work_cv);
		pthread_mutex_unlock(&p->mu);
		for (unsigned i = 0; i < p->n_workers; i++) {
			struct mk__store_worker *wk = &p->workers[i];
			if (wk->started)
				pthread_join(wk->tid, NULL);
			if (wk->z_active)
				deflateEnd(&wk->zs);
			mk__store_mzenc_free(&wk->enc);
		}
		MK_FREE(&p->workers);
		p->n_workers = 0;
		p->stop = false;
	}
	p->want_workers = 0;
	/* Every job ran (the workers drain the queue before leaving). */
	mk__store_pool_reap(st);
	MK_ASSERT(p->pending == NULL && p->q_head == NULL && p->queued_bytes == 0);
}

void mk__store_pool_cleanup(struct mk_store *st)
{
	struct mk__store_pool *p = &st->pool;
	if (p->z_active) {
		deflateEnd(&p->zs);
		p->z_active = false;
	}
	mk__store_mzenc_free(&p->enc);
	if (p->sync_ready) {
		pthread_cond_destroy(&p->done_cv);
		pthread_cond_destroy(&p->work_cv);
		pthread_mutex_destroy(&p->mu);
		p->sync_ready = false;
	}
}

/* ---- test helpers ---- */

void mk__store_test_set_queue_max(struct mk_store *st, size_t bytes)
{
	st->pool.queue_max = bytes ? bytes : MK__STORE_QUEUE_MAX;
}

void mk__store_test_pause(struct mk_store *st, bool paused)
{
	struct mk__store_pool *p = &st->pool;
	pthread_mutex_lock(&p->mu);
	p->paused = paused;
	pthread_cond_broadcast(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
}

void mk__store_test_pool_stats(struct mk_store *st, uint64_t *jobs_r, uint64_t *helped_r, uint64_t *waits_r)
{
	struct mk__store_pool *p = &st->pool;
	pthread_mutex_lock(&p->mu);
	*jobs_r = p->jobs;
	*helped_r = p->jobs_helped;
	*waits_r = p->backpressure_waits;
	pthread_mutex_unlock(&p->mu);
}
