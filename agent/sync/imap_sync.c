/* SPDX-License-Identifier: MIT */
/*
 * imap_sync.c - the IMAP backup engine (see mk_sync.h).
 *
 * Workers are sessions. The first logs in and LISTs; then up to
 * max_connections workers take folders from a queue. Per folder a worker
 * runs EXAMINE -> UID FETCH 1:* (UID FLAGS) -> diff with the store ->
 * UID FETCH of the missing UIDs, pipelined two commands deep, each body
 * streamed into the store's batch. Progress and content are committed
 * together; nothing is ever written to the server.
 */
#include "mk_sync.h"
#include "mk_alloc.h"
#include "mk_backoff.h"
#include "mk_conn.h"
#include "mk_err.h"
#include "mk_imap.h"
#include "mk_imap_session.h"
#include "mk_log.h"
#include "mk_login.h"
#include "mk_store.h"
#include "mk_str.h"
#include "mk_time.h"
#include "mk_timer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Commit a batch when it holds this much, this many records, or is this old. */
#define BATCH_MAX_BYTES (512u * 1024) /* per worker: 4 workers, bounded RSS (issue 3) */
#define BATCH_MAX_COUNT 1000
#define BATCH_MAX_MS 1000
/* UIDs per FETCH command, and commands in flight per connection. */
#define FETCH_CHUNK 250
#define FETCH_PIPELINE 2
#define SET_MAX 3000 /* bytes of a UID set (RFC 2683: keep lines < 8000) */

struct job {
	char *name;
	char *raw; /* the name as LIST sent it: EXAMINE sends it back unchanged */
	char delim;
	struct mk_sync_folder_result *res;
};

struct srv_msg {
	uint32_t uid;
	uint32_t flags;
	uint32_t size;
	char *kw; /* NULL: none */
};

struct st_msg {
	uint32_t uid;
	uint32_t flags;
	uint64_t raw_size;
	char *kw;
	uint8_t state;
};

enum wstate {
	W_CONNECTING = 0,
	W_LOGIN,
	W_LIST,
	W_READY,
	W_EXAMINE,
	W_UIDS,
	W_FETCH,
	W_LOGOUT,
	W_CLOSED,
	W_IDLE,    /* IDLE sent; waiting for news or the refresh */
	W_BACKOFF, /* connection lost; a timer restarts it */
};

static const char *const wstate_names[] = {"connecting", "logging in", "listing", "ready", "opening folder",
					   "listing UIDs",  "fetching",   "logging out", "closed", "idle",
					   "backoff"};

struct worker {
	struct mk_sync *s;
	struct mk_imap_session *sess;
	unsigned id;
	enum wstate st;
	unsigned tag_capa, tag_capa2, tag_login, tag_list, tag_examine, tag_uids, tag_logout;
	unsigned fetch_in_flight;
	bool list_done, logged_in;
	struct job *job;
	struct job *resume; /* a folder cut short by a token expiry: taken first after the new login */
	/* folder state */
	struct mk_store_mailbox mb;
	uint32_t exists, uidvalidity, uidnext;
	struct srv_msg *srv;
	size_t n_srv, cap_srv;
	uint32_t *todo;
	bool *todo_done;
	size_t n_todo, todo_next;
	uint32_t committed_high;
	uint32_t pending_high;
	struct mk_store_batch *batch;
	struct mk_store_body *body;
	int64_t batch_started_ms;
	uint64_t job_done;
	/* watch mode */
	struct job *watch;       /* the folder this connection keeps in IDLE */
	bool watch_synced;       /* it has been synced once on this connection */
	unsigned tag_idle;
	bool dirty_exists;       /* EXISTS seen: new mail to fetch */
	bool dirty_other;        /* EXPUNGE or FETCH seen: full rescan */
	bool fast;               /* fetching only UIDs above the stored ones */
	uint32_t fast_last_uid;
	int64_t exists_ms;       /* when the first unhandled EXISTS arrived */
	struct mk_timer *timer;  /* IDLE refresh, or backoff restart */
	struct mk_backoff backoff;
	int64_t state_since, retry_at;
	char last_error[200];
	bool wants_secret;  /* waiting for get_secret to log in */
	bool reconnect_now; /* token expired or due: reconnect without backoff */
};

/* One get_secret request in flight; outlives the engine if need be. */
struct secret_req {
	struct mk_sync *s; /* NULL: the engine is gone, the answer is dropped */
};

struct mk_sync {
	struct mk_sync_opts o;
	char *secret;
	uint32_t account_id;
	void (*done)(void *ud, struct mk_sync *s);
	void *done_ud;
	struct worker *workers;
	unsigned n_workers, max_workers, live_workers;
	struct job *jobs;
	size_t n_jobs, next_job;
	char **listed; /* every name LIST returned, selected or not */
	size_t n_listed;
	struct mk_sync_result res;
	bool cancelled, finished, synced_once;
	int last_err;
	char last_error[400];
	/* issue 6: the secret from get_secret */
	struct secret_req *sreq;
	bool secret_stale;   /* ask for a new one before the next login */
	bool secret_force;   /* ... with force_refresh */
	bool secret_forced;  /* the current one came from a forced refresh */
	bool asked_forced;   /* the request in flight is forced */
	bool false_login_retried; /* Outlook's OK-then-BAD login: retried once with a new token */
	int64_t secret_due_ms; /* mono ms at 85 % of its lifetime (0: unknown) */
};

#ifdef MK_TEST_HOOKS
static long atoi_safe(const char *s)
{
	uint64_t v;
	return mk_str_to_u64(s, 0, 1000000, &v) == 0 ? (long)v : 0;
}
#endif

static const char *acct_name(const struct mk_sync *s)
{
	return s->o.acct->name;
}

static void start_worker(struct mk_sync *s);
static void next_job(struct worker *w);
static void restart_cb(void *ud, bool cancelled);
static int connect_worker(struct worker *w);
static void fetch_more(struct worker *w);
static bool secret_due(const struct mk_sync *s);

static void folder_fail(struct worker *w, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void free_folder_state(struct worker *w)
{
	for (size_t i = 0; i < w->n_srv; i++)
		mk_free(w->srv[i].kw);
	MK_FREE(&w->srv);
	w->n_srv = w->cap_srv = 0;
	MK_FREE(&w->todo);
	MK_FREE(&w->todo_done);
	w->n_todo = w->todo_next = 0;
	if (w->body != NULL) {
		mk_store_body_abort(w->body);
		w->body = NULL;
	}
}

/* Commits the worker's batch with the folder's progress. */
static int commit(struct worker *w, bool final)
{
	struct mk_sync *s = w->s;
	if (w->batch == NULL || w->job == NULL)
		return 0;
	if (w->pending_high > w->committed_high)
		w->mb.highest_uid = w->pending_high;
	if (w->uidvalidity != 0)
		w->mb.uidvalidity = w->uidvalidity;
	if (w->uidnext != 0)
		w->mb.uidnext = w->uidnext;
	w->mb.gone = false;
	if (final) {
		w->mb.last_sync = mk_time_wall_s();
		w->mb.last_flag_scan = w->mb.last_sync;
	}
	int r = mk_store_batch_put_mailbox(w->batch, &w->mb);
	if (r == 0)
		r = mk_store_batch_commit(w->batch);
	if (r < 0) {
		s->res.err = r;
		snprintf(s->res.error, sizeof(s->res.error), "cannot write the store: %s", mk_strerror(r));
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_STORE, NULL, "account %s, folder %s: cannot write the store: %s",
		       acct_name(s), w->job->name, mk_strerror(r));
		mk_sync_cancel(s);
		return r;
	}
	w->committed_high = w->mb.highest_uid;
	w->batch_started_ms = mk_time_mono_ms();
	return 0;
}

static size_t batch_max_count(void)
{
#ifdef MK_TEST_HOOKS
	/* crash tests want many commit points in a small corpus */
	const char *e = getenv("MK_TEST_BATCH_COUNT");
	if (e != NULL && atoi_safe(e) > 0)
		return (size_t)atoi_safe(e);
#endif
	return BATCH_MAX_COUNT;
}

static void maybe_commit(struct worker *w)
{
	if (w->batch == NULL)
		return;
	if (mk_store_batch_bytes(w->batch) >= BATCH_MAX_BYTES || mk_store_batch_count(w->batch) >= batch_max_count() ||
	    mk_time_mono_ms() - w->batch_started_ms >= BATCH_MAX_MS)
		(void)commit(w, false);
}

static void finish_job(struct worker *w)
{
	struct mk_sync *s = w->s;
	struct job *j = w->job;
	if (j == NULL)
		return;
	if (s->o.verify_server)
		; /* read-only on both sides */
	else if (j->res->err == 0 && !s->cancelled)
		(void)commit(w, true);
	else if (w->batch != NULL && !s->cancelled)
		(void)commit(w, false); /* keep the complete messages we have */
	free_folder_state(w);
	if (j->res->err == 0)
		s->res.folders_ok++;
	else
		s->res.folders_failed++;
	if (!s->synced_once && s->res.folders_ok + s->res.folders_failed >= s->n_jobs) {
		s->synced_once = true;
		if (s->o.on_synced != NULL)
			s->o.on_synced(s->o.ud, acct_name(s));
	}
	if (s->o.on_folder != NULL)
		s->o.on_folder(s->o.ud, acct_name(s), j->res);
	w->job = NULL;
}

static void folder_fail(struct worker *w, int err, const char *fmt, ...)
{
	struct job *j = w->job;
	if (j == NULL || j->res->err != 0)
		return;
	j->res->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->res->error, sizeof(j->res->error), fmt, ap);
	va_end(ap);
	mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s, folder %s: %s", acct_name(w->s), j->name,
	       j->res->error);
}

/* ---- server UID list and the diff ---- */

static void srv_add(struct worker *w, const struct mk_imap_fetch *f)
{
	if (w->n_srv == w->cap_srv) {
		w->cap_srv = w->cap_srv ? w->cap_srv * 2 : 256;
		w->srv = mk_xrealloc(w->srv, w->cap_srv * sizeof(*w->srv));
	}
	struct srv_msg *m = &w->srv[w->n_srv++];
	m->uid = f->uid;
	m->size = f->has_size ? f->rfc822_size : 0;
	m->flags = f->flags & ~(uint32_t)MK_IMAP_FLAG_RECENT;
	m->kw = f->keywords[0] ? mk_xstrdup(f->keywords) : NULL;
}

static int cmp_srv(const void *a, const void *b)
{
	uint32_t x = ((const struct srv_msg *)a)->uid, y = ((const struct srv_msg *)b)->uid;
	return x < y ? -1 : x > y;
}

struct st_list {
	struct st_msg *m;
	size_t n, cap;
};

static int collect_stored(void *ud, const struct mk_store_msg *m)
{
	struct st_list *l = ud;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 256;
		l->m = mk_xrealloc(l->m, l->cap * sizeof(*l->m));
	}
	struct st_msg *e = &l->m[l->n++];
	e->uid = m->uid;
	e->flags = m->flags;
	e->raw_size = m->raw_size;
	e->kw = m->keywords[0] ? mk_xstrdup(m->keywords) : NULL;
	e->state = m->state;
	return 0;
}

static void st_list_free(struct st_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		mk_free(l->m[i].kw);
	MK_FREE(&l->m);
	l->n = l->cap = 0;
}

static bool kw_eq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

struct uid_list {
	uint32_t *uid;
	size_t n, cap;
};

/* Present records of a generation (collected first: store callbacks run
 * inside a read transaction and must not call back into the store). */
static int collect_present(void *ud, const struct mk_store_msg *m)
{
	struct uid_list *l = ud;
	if (m->state != MK_STORE_MSG_PRESENT)
		return 0;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 256;
		l->uid = mk_xrealloc(l->uid, l->cap * sizeof(*l->uid));
	}
	l->uid[l->n++] = m->uid;
	return 0;
}

/* Old generation after a UIDVALIDITY change: every present record is gone
 * from the server (its UID means nothing now); content is kept. */
static int mark_generation_gone(struct worker *w, uint32_t uidvalidity)
{
	struct mk_sync *s = w->s;
	struct uid_list l = {0};
	int r = mk_store_messages(s->o.store, s->account_id, w->mb.id, uidvalidity, collect_present, &l);
	for (size_t i = 0; r == 0 && i < l.n; i++) {
		struct mk_store_msg u;
		r = mk_store_message_get(s->o.store, s->account_id, w->mb.id, uidvalidity, l.uid[i], &u);
		if (r == 0) {
			u.state = MK_STORE_MSG_GONE;
			u.gone_at = mk_time_wall_s();
			r = mk_store_batch_update_message(w->batch, &u);
		}
		if (r == 0)
			w->job->res->gone++;
	}
	mk_free(l.uid);
	return r;
}

static int diff_and_plan(struct worker *w)
{
	struct mk_sync *s = w->s;
	struct mk_sync_folder_result *res = w->job->res;
	if (w->mb.uidvalidity != 0 && w->mb.uidvalidity != w->uidvalidity) {
		/* Keep the old generation; its messages are gone from the
		 * server as such. Bodies fetched again cost nothing (dedupe). */
		res->uidvalidity_changed = true;
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL,
		       "account %s, folder %s: UIDVALIDITY changed from %u to %u; keeping the old copy, fetching "
		       "the new one",
		       acct_name(s), w->job->name, w->mb.uidvalidity, w->uidvalidity);
		int r = mark_generation_gone(w, w->mb.uidvalidity);
		if (r < 0)
			return r;
		w->mb.highest_uid = 0;
		w->committed_high = 0;
	}
	struct st_list st = {0};
	int r = mk_store_messages(s->o.store, s->account_id, w->mb.id, w->uidvalidity, collect_stored, &st);
	if (r < 0) {
		st_list_free(&st);
		return r;
	}
	if (w->n_srv > 1)
		qsort(w->srv, w->n_srv, sizeof(*w->srv), cmp_srv);
	w->todo = mk_xcalloc(w->n_srv ? w->n_srv : 1, sizeof(*w->todo));
	w->todo_done = mk_xcalloc(w->n_srv ? w->n_srv : 1, sizeof(*w->todo_done));
	size_t i = 0, j = 0;
	int64_t now = mk_time_wall_s();
	while (i < w->n_srv || j < st.n) {
		if (i < w->n_srv && i > 0 && w->srv[i].uid == w->srv[i - 1].uid) {
			i++; /* duplicate line from the server */
			continue;
		}
		if (j >= st.n || (i < w->n_srv && w->srv[i].uid < st.m[j].uid)) {
			w->todo[w->n_todo++] = w->srv[i].uid;
			i++;
		} else if (i >= w->n_srv || st.m[j].uid < w->srv[i].uid) {
			if (st.m[j].state == MK_STORE_MSG_PRESENT) {
				struct mk_store_msg u;
				r = mk_store_message_get(s->o.store, s->account_id, w->mb.id, w->uidvalidity, st.m[j].uid,
							 &u);
				if (r == 0) {
					u.state = MK_STORE_MSG_GONE;
					u.gone_at = now;
					r = mk_store_batch_update_message(w->batch, &u);
				}
				if (r < 0)
					break;
				res->gone++;
			}
			j++;
		} else {
			const struct srv_msg *sm = &w->srv[i];
			const struct st_msg *tm = &st.m[j];
			if (tm->flags != sm->flags || !kw_eq(tm->kw, sm->kw) || tm->state != MK_STORE_MSG_PRESENT) {
				struct mk_store_msg u;
				r = mk_store_message_get(s->o.store, s->account_id, w->mb.id, w->uidvalidity, tm->uid, &u);
				if (r == 0) {
					u.flags = sm->flags;
					mk_strlcpy(u.keywords, sm->kw ? sm->kw : "", sizeof(u.keywords));
					u.state = MK_STORE_MSG_PRESENT;
					u.gone_at = 0;
					r = mk_store_batch_update_message(w->batch, &u);
				}
				if (r < 0)
					break;
				res->flag_updates++;
			}
			i++;
			j++;
		}
	}
	st_list_free(&st);
	return r < 0 ? r : 0;
}

/* verify --server: compare, change nothing */
static int compare_only(struct worker *w)
{
	struct mk_sync *s = w->s;
	struct mk_sync_folder_result *res = w->job->res;
	struct st_list st = {0};
	uint32_t uv = w->uidvalidity;
	if (w->mb.uidvalidity != 0 && w->mb.uidvalidity != uv)
		res->uidvalidity_changed = true;
	int r = mk_store_messages(s->o.store, s->account_id, w->mb.id, uv, collect_stored, &st);
	if (r < 0) {
		st_list_free(&st);
		return r;
	}
	if (w->n_srv > 1)
		qsort(w->srv, w->n_srv, sizeof(*w->srv), cmp_srv);
	res->server_count = w->n_srv;
	size_t i = 0, j = 0;
	while (i < w->n_srv || j < st.n) {
		if (j >= st.n || (i < w->n_srv && w->srv[i].uid < st.m[j].uid)) {
			if (res->missing++ == 0)
				res->first_missing = w->srv[i].uid;
			i++;
		} else if (i >= w->n_srv || st.m[j].uid < w->srv[i].uid) {
			if (st.m[j].state == MK_STORE_MSG_PRESENT)
				res->extra++;
			j++;
		} else {
			if (st.m[j].state != MK_STORE_MSG_PRESENT)
				res->extra++;
			else if (w->srv[i].size != 0 && w->srv[i].size != st.m[j].raw_size)
				res->size_mismatch++;
			if (st.m[j].flags != w->srv[i].flags || !kw_eq(st.m[j].kw, w->srv[i].kw))
				res->flag_updates++;
			i++;
			j++;
		}
	}
	st_list_free(&st);
	return 0;
}

/* ---- fetching ---- */

static bool todo_find(const struct worker *w, uint32_t uid, size_t *idx_r)
{
	size_t lo = 0, hi = w->n_todo;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (w->todo[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < w->n_todo && w->todo[lo] == uid) {
		*idx_r = lo;
		return true;
	}
	return false;
}

static void fetch_more(struct worker *w)
{
	while (w->fetch_in_flight < FETCH_PIPELINE && w->todo_next < w->n_todo) {
		char set[SET_MAX + 32];
		size_t len = 0, count = 0;
		set[0] = '\0';
		while (w->todo_next < w->n_todo && count < FETCH_CHUNK && len < SET_MAX) {
			uint32_t first = w->todo[w->todo_next], last = first;
			size_t k = w->todo_next + 1;
			while (k < w->n_todo && w->todo[k] == last + 1 && count + (k - w->todo_next) < FETCH_CHUNK) {
				last = w->todo[k];
				k++;
			}
			int n = first == last ? snprintf(set + len, sizeof(set) - len, "%s%u", len ? "," : "", first)
					      : snprintf(set + len, sizeof(set) - len, "%s%u:%u", len ? "," : "", first, last);
			len += (size_t)n;
			count += k - w->todo_next;
			w->todo_next = k;
		}
		struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_UID_FETCH,
					  .a = set,
					  .b = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"};
		unsigned tag;
		if (mk_imap_session_submit(w->sess, &cmd, &tag) < 0) {
			mk_imap_session_abort(w->sess, MK_EPROTO, "cannot send UID FETCH");
			return;
		}
		w->fetch_in_flight++;
	}
}

static void on_fetch(struct worker *w, const struct mk_imap_event *ev)
{
	struct mk_sync *s = w->s;
	const struct mk_imap_fetch *f = &ev->fetch;
	if (w->st == W_UIDS) {
		if (f->has_uid)
			srv_add(w, f);
		return;
	}
	if (w->st != W_FETCH)
		return;
	size_t idx = 0;
	bool wanted;
	if (w->fast)
		/* UIDs only grow: anything above what we have is new (Exchange
		 * answers "N:*" with the last UID even when it is old) */
		wanted = f->has_uid && f->uid > w->fast_last_uid;
	else
		wanted = f->has_uid && todo_find(w, f->uid, &idx) && !w->todo_done[idx];
	if (!f->has_body) {
		if (w->body != NULL) {
			mk_store_body_abort(w->body);
			w->body = NULL;
		}
		return; /* flags-only or empty FETCH: counted when the command ends */
	}
	uint8_t sha[MK_STORE_SHA_LEN];
	uint64_t raw = 0;
	int r;
	if (w->body == NULL) {
		/* a body sent inline (quoted string) */
		w->body = mk_store_body_begin(w->batch);
		r = mk_store_body_write(w->body, f->inline_body.p, f->inline_body.n);
		if (r < 0)
			goto store_error;
	}
	r = mk_store_body_finish(w->body, sha, &raw);
	w->body = NULL;
	if (r < 0)
		goto store_error;
	if (!wanted)
		return; /* not asked for (Exchange answers last+1:* with the last UID) */
	struct mk_store_msg m;
	memset(&m, 0, sizeof(m));
	m.account = s->account_id;
	m.mailbox = w->mb.id;
	m.uidvalidity = w->uidvalidity;
	m.uid = f->uid;
	memcpy(m.sha, sha, sizeof(sha));
	m.raw_size = raw;
	m.server_size = f->has_size ? f->rfc822_size : 0;
	m.internaldate = f->has_internaldate ? f->internaldate : 0;
	m.internaldate_tz = f->has_internaldate ? f->internaldate_tz : 0;
	m.flags = f->flags & ~(uint32_t)MK_IMAP_FLAG_RECENT;
	mk_strlcpy(m.keywords, f->keywords, sizeof(m.keywords));
	m.state = MK_STORE_MSG_PRESENT;
	r = mk_store_batch_put_message(w->batch, &m);
	if (r < 0)
		goto store_error;
	if (w->fast)
		w->fast_last_uid = f->uid;
	else
		w->todo_done[idx] = true;
	if (f->uid > w->pending_high)
		w->pending_high = f->uid;
	w->job->res->new_messages++;
	w->job->res->new_bytes += raw;
	w->job_done++;
	if (s->o.on_progress != NULL)
		s->o.on_progress(s->o.ud, acct_name(s), w->job->name, w->job_done, w->n_todo,
				 w->job->res->new_bytes);
	maybe_commit(w);
	return;
store_error:
	folder_fail(w, r, "cannot store message UID %u: %s", f->uid, mk_strerror(r));
	s->res.err = r;
	snprintf(s->res.error, sizeof(s->res.error), "cannot write the store: %s", mk_strerror(r));
	mk_sync_cancel(s);
}

/* ---- the worker's state machine ---- */

static void start_folder(struct worker *w)
{
	struct mk_sync *s = w->s;
	struct job *j = w->job;
	int r = mk_store_mailbox_get(s->o.store, s->account_id, j->name, !s->o.verify_server, &w->mb);
	if (r == MK_ENOTFOUND && s->o.verify_server) {
		memset(&w->mb, 0, sizeof(w->mb)); /* not in the store: every message is missing */
		w->mb.id = UINT32_MAX;
		r = 0;
	}
	if (r < 0) {
		folder_fail(w, r, "cannot read the store: %s", mk_strerror(r));
		finish_job(w);
		next_job(w);
		return;
	}
	w->mb.delimiter = j->delim;
	w->exists = w->uidvalidity = w->uidnext = 0;
	w->committed_high = w->pending_high = w->mb.highest_uid;
	w->job_done = 0;
	if (w->batch == NULL)
		w->batch = mk_store_batch_new(s->o.store);
	w->batch_started_ms = mk_time_mono_ms();
	struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_EXAMINE, .a = j->raw, .a_wire = true};
	if (mk_imap_session_submit(w->sess, &cmd, &w->tag_examine) < 0) {
		folder_fail(w, MK_EINVAL, "cannot send EXAMINE for this name");
		finish_job(w);
		next_job(w);
		return;
	}
	w->st = W_EXAMINE;
}

static void start_idle(struct worker *w);
static void run_watch_folder(struct worker *w);

static bool idle_wanted(const struct mk_sync *s, const struct job *j)
{
	return mk_config_folder_match(s->o.acct->idle, j->name, j->delim);
}

/* Watch mode: a connection with nothing left to sync takes a folder to
 * keep in IDLE, if one is unclaimed. */
static struct job *claim_watch(struct worker *w)
{
	struct mk_sync *s = w->s;
	for (size_t i = 0; i < s->n_jobs; i++) {
		struct job *j = &s->jobs[i];
		if (!idle_wanted(s, j))
			continue;
		bool taken = false;
		for (unsigned k = 0; k < s->n_workers; k++)
			if (s->workers[k].watch == j)
				taken = true;
		if (!taken)
			return j;
	}
	return NULL;
}

static void next_job(struct worker *w)
{
	struct mk_sync *s = w->s;
	if (w->resume != NULL && !s->cancelled && w->st != W_LOGOUT && w->st != W_CLOSED) {
		w->job = w->resume;
		w->resume = NULL;
		start_folder(w);
		return;
	}
	if (!s->cancelled && s->next_job >= s->n_jobs && s->o.watch && w->st != W_LOGOUT && w->st != W_CLOSED) {
		if (w->watch == NULL)
			w->watch = claim_watch(w);
		if (w->watch != NULL) {
			if (!mk_imap_session_has_cap(w->sess, "IDLE")) {
				mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL,
				       "account %s: the server does not offer IDLE; %s is polled instead",
				       acct_name(s), w->watch->name);
				w->watch = NULL;
			} else if (!w->watch_synced) {
				/* sync it on this connection first: the state it idles on */
				w->watch_synced = true;
				run_watch_folder(w);
				return;
			} else {
				start_idle(w);
				return;
			}
		}
	}
	if (s->cancelled || s->next_job >= s->n_jobs) {
		if (w->st != W_LOGOUT && w->st != W_CLOSED) {
			struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_LOGOUT};
			if (mk_imap_session_submit(w->sess, &cmd, &w->tag_logout) < 0)
				mk_imap_session_close(w->sess);
			else
				w->st = W_LOGOUT;
		}
		return;
	}
	w->job = &s->jobs[s->next_job++];
	start_folder(w);
}

static void idle_timer_cb(void *ud, bool cancelled)
{
	struct worker *w = ud;
	if (cancelled)
		return;
	w->timer = NULL;
	/* refresh: leave IDLE; its tagged OK re-enters it (or, if the
	 * connection is dead, the read timeout closes it) */
	if (w->st == W_IDLE && w->sess != NULL)
		mk_imap_session_idle_done(w->sess);
}

static void start_idle(struct worker *w)
{
	struct mk_sync *s = w->s;
	struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_IDLE};
	if (s->o.get_secret != NULL && secret_due(s)) {
		/* re-authenticate before the token expires (DESIGN.md §8): the
		 * new session resyncs the folder from where the store is */
		w->reconnect_now = true;
		mk_imap_session_abort(w->sess, MK_ETIMEDOUT, "re-authenticating before the access token expires");
		return;
	}
	if (mk_imap_session_submit(w->sess, &cmd, &w->tag_idle) < 0) {
		mk_imap_session_abort(w->sess, MK_EPROTO, "cannot send IDLE");
		return;
	}
	w->st = W_IDLE;
	w->state_since = mk_time_wall_s();
	mk_backoff_reset(&w->backoff); /* the connection works: next failure starts over */
	mk_timer_cancel(&w->timer);
	uint64_t ms = (uint64_t)s->o.acct->idle_refresh_s * 1000;
	if (s->o.get_secret != NULL && s->secret_due_ms != 0) {
		/* wake up for the re-authentication (the refresh's tagged OK
		 * comes back to start_idle, which reconnects) */
		int64_t left = s->secret_due_ms - mk_time_mono_ms();
		if (left >= 0 && (uint64_t)left + 50 < ms)
			ms = (uint64_t)left + 50;
	}
	if (mk_timer_start(s->o.loop, (unsigned)ms, idle_timer_cb, w, &w->timer) < 0)
		w->timer = NULL;
}

/* Re-sync the watched folder: the fast way (only UIDs above what is
 * stored) when the server announced new mail and nothing else, else the
 * full way (UID list, flags, expunges). */
static void run_watch_folder(struct worker *w)
{
	w->job = w->watch;
	/* each push is reported on its own */
	struct mk_sync_folder_result *fr = w->job->res;
	fr->err = 0;
	fr->error[0] = '\0';
	fr->new_messages = fr->new_bytes = fr->flag_updates = fr->gone = fr->no_body = 0;
	fr->uidvalidity_changed = false;
	bool fast = w->dirty_exists && !w->dirty_other && w->mb.id != 0 && w->uidvalidity != 0;
	w->dirty_exists = w->dirty_other = false;
	if (!fast) {
		start_folder(w);
		return;
	}
	/* still selected (EXAMINE); fetch everything above the highest stored UID */
	struct mk_sync *s = w->s;
	if (w->batch == NULL)
		w->batch = mk_store_batch_new(s->o.store);
	w->batch_started_ms = mk_time_mono_ms();
	w->fast = true;
	w->fast_last_uid = w->mb.highest_uid;
	w->job_done = 0;
	char set[32];
	snprintf(set, sizeof(set), "%u:*", w->mb.highest_uid + 1);
	struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_UID_FETCH,
				  .a = set,
				  .b = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"};
	unsigned tag;
	if (mk_imap_session_submit(w->sess, &cmd, &tag) < 0) {
		mk_imap_session_abort(w->sess, MK_EPROTO, "cannot send UID FETCH");
		return;
	}
	w->st = W_FETCH;
	w->fetch_in_flight = 1;
}

static int add_job(struct mk_sync *s, const struct mk_imap_list *l)
{
	if (l->noselect)
		return 0;
	if (!mk_config_folder_match(s->o.acct->folders, l->name, l->delimiter)) {
		/* said once per sync (the Outlook presets leave out the
		 * non-mail folders: Calendar, Contacts, ...) */
		size_t n = strlen(s->res.excluded);
		if (n + strlen(l->name) + 8 < sizeof(s->res.excluded))
			snprintf(s->res.excluded + n, sizeof(s->res.excluded) - n, "%s%s", n ? ", " : "", l->name);
		else if (n + 5 < sizeof(s->res.excluded) && (n < 4 || strcmp(s->res.excluded + n - 3, "...") != 0))
			snprintf(s->res.excluded + n, sizeof(s->res.excluded) - n, ", ...");
		s->res.n_excluded++;
		return 0;
	}
	if (s->o.skip_idle && mk_config_folder_match(s->o.acct->idle, l->name, l->delimiter))
		return 0;
	if (s->n_jobs >= 100000)
		return MK_ETOOBIG;
	s->jobs = mk_xrealloc(s->jobs, (s->n_jobs + 1) * sizeof(*s->jobs));
	struct job *j = &s->jobs[s->n_jobs++];
	j->name = mk_xstrdup(l->name);
	j->raw = mk_xstrdup(l->name_raw != NULL ? l->name_raw : l->name);
	j->delim = l->delimiter;
	j->res = NULL;
	return 0;
}

static int cmp_job(const void *a, const void *b)
{
	/* INBOX first, then by name: a stable order users can follow */
	const struct job *x = a, *y = b;
	bool xi = strcasecmp(x->name, "INBOX") == 0, yi = strcasecmp(y->name, "INBOX") == 0;
	if (xi != yi)
		return xi ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void list_done(struct worker *w)
{
	struct mk_sync *s = w->s;
	if (s->n_jobs > 1)
		qsort(s->jobs, s->n_jobs, sizeof(*s->jobs), cmp_job);
	s->res.folders = mk_xcalloc(s->n_jobs ? s->n_jobs : 1, sizeof(*s->res.folders));
	s->res.n_folders = s->n_jobs;
	for (size_t i = 0; i < s->n_jobs; i++) {
		s->jobs[i].res = &s->res.folders[i];
		mk_strlcpy(s->res.folders[i].name, s->jobs[i].name, sizeof(s->res.folders[i].name));
	}
	/* Folders no longer on the server keep their records; mark them. */
	/* (done by mark_unlisted below) */
	w->list_done = true;
	if (s->n_jobs == 0 && !s->synced_once) {
		s->synced_once = true;
		if (s->o.on_synced != NULL)
			s->o.on_synced(s->o.ud, acct_name(s));
	}
	/* more connections, one per folder, up to the budget */
	unsigned want = s->max_workers;
	if (want > s->n_jobs)
		want = (unsigned)s->n_jobs;
	if (s->o.watch) {
		unsigned n_idle = 0;
		for (size_t i = 0; i < s->n_jobs; i++)
			n_idle += idle_wanted(s, &s->jobs[i]);
		if (n_idle > s->max_workers)
			mk_log(MK_LOG_WARN, MK_LOG_CAT_SCHED, NULL,
			       "account %s: %u folders to watch with IDLE but max_connections = %u; the rest are "
			       "polled every %u s",
			       acct_name(s), n_idle, s->max_workers, s->o.acct->poll_interval_s);
		if (want < n_idle)
			want = n_idle < s->max_workers ? n_idle : s->max_workers;
	}
	while (s->n_workers < want)
		start_worker(s);
	w->st = W_READY;
	next_job(w);
}

struct unlisted_ctx {
	struct mk_sync *s;
	struct mk_store_batch *b;
	int err;
	struct mk_store_mailbox *mbs;
	size_t n;
};

static int collect_mailbox(void *ud, const struct mk_store_mailbox *mb)
{
	struct unlisted_ctx *u = ud;
	u->mbs = mk_xrealloc(u->mbs, (u->n + 1) * sizeof(*u->mbs));
	u->mbs[u->n++] = *mb;
	return 0;
}

static int mark_unlisted(struct unlisted_ctx *u, const struct mk_store_mailbox *mb)
{
	struct mk_sync *s = u->s;
	if (mb->gone)
		return 0;
	/* the POP3 download's folder is not an IMAP folder */
	if (strcmp(mb->name, MK_STORE_POP3_FOLDER) == 0 && s->o.acct->fetch != MK_CONFIG_FETCH_IMAP)
		return 0;
	for (size_t i = 0; i < s->n_jobs; i++)
		if (strcmp(s->jobs[i].name, mb->name) == 0)
			return 0;
	/* not listed (or excluded now): keep it, marked gone if not listed */
	for (size_t i = 0; i < s->n_listed; i++)
		if (strcmp(s->listed[i], mb->name) == 0)
			return 0;
	struct mk_store_mailbox g = *mb;
	g.gone = true;
	int r = mk_store_batch_put_mailbox(u->b, &g);
	if (r < 0) {
		u->err = r;
		return 1;
	}
	mk_log(MK_LOG_INFO, MK_LOG_CAT_SYNC, NULL, "account %s: folder %s is no longer on the server; its copy is kept",
	       acct_name(s), mb->name);
	return 0;
}

/* ---- issue 6: the secret from get_secret, token expiry ---- */

static void send_login(struct worker *w)
{
	struct mk_sync *s = w->s;
	int r = mk_login_imap(w->sess, s->o.acct, s->secret, &w->tag_login);
	if (r == MK_EINVAL && s->o.acct->auth == MK_CONFIG_AUTH_XOAUTH2)
		mk_imap_session_abort(w->sess, MK_EAUTH, "cannot log in with XOAUTH2: the access token is malformed");
	else if (r < 0)
		mk_imap_session_abort(w->sess, MK_EPROTO, "cannot send login");
}

static bool secret_due(const struct mk_sync *s)
{
	return s->secret_due_ms != 0 && mk_time_mono_ms() >= s->secret_due_ms;
}

static void secret_done(void *req, int err, const char *msg, const char *secret, int64_t valid_ms)
{
	struct secret_req *q = req;
	struct mk_sync *s = q->s;
	mk_free(q);
	if (s == NULL)
		return; /* the engine is gone */
	s->sreq = NULL;
	if (err == 0 && (secret == NULL || secret[0] == '\0')) {
		err = MK_EAUTH;
		msg = "no access token";
	}
	if (err == 0) {
		explicit_bzero(s->secret, strlen(s->secret));
		mk_free(s->secret);
		s->secret = mk_xstrdup(secret);
		s->secret_stale = s->secret_force = false;
		s->secret_forced = s->asked_forced;
		s->secret_due_ms = valid_ms > 0 ? mk_time_mono_ms() + valid_ms * 85 / 100 : 0;
	}
	char m[400];
	snprintf(m, sizeof(m), "cannot get an access token: %s", msg != NULL ? msg : mk_strerror(err));
	if (err == MK_EAUTH && !s->cancelled) {
		/* the user must sign in again: this account stops, whole */
		if (s->res.err == 0) {
			s->res.err = MK_EAUTH;
			mk_strlcpy(s->res.error, msg != NULL ? msg : m, sizeof(s->res.error));
		}
		mk_sync_cancel(s);
		return;
	}
	for (unsigned i = 0; i < s->n_workers; i++) {
		struct worker *w = &s->workers[i];
		if (!w->wants_secret)
			continue;
		w->wants_secret = false;
		if (w->sess == NULL || w->st != W_LOGIN)
			continue;
		if (err != 0)
			mk_imap_session_abort(w->sess, err == MK_ECANCELED ? MK_ECANCELED : MK_ESERVER, m);
		else
			send_login(w);
	}
}

/* Logs in now, or first asks the owner for a (new) secret. */
static void login_or_wait(struct worker *w)
{
	struct mk_sync *s = w->s;
	if (s->o.get_secret == NULL || (!s->secret_stale && !secret_due(s))) {
		send_login(w);
		return;
	}
	w->wants_secret = true;
	if (s->sreq != NULL)
		return; /* one request for every waiting connection */
	struct secret_req *q = mk_xcalloc(1, sizeof(*q));
	q->s = s;
	s->sreq = q;
	s->asked_forced = s->secret_force || secret_due(s);
	int r = s->o.get_secret(s->o.secret_ud, s->asked_forced, secret_done, q);
	if (r < 0) {
		s->sreq = NULL;
		mk_free(q);
		w->wants_secret = false;
		char m[200];
		snprintf(m, sizeof(m), "cannot get an access token: %s", mk_strerror(r));
		mk_imap_session_abort(w->sess, MK_EAUTH, m);
	}
}

/* Outlook ends a session whose token expired ("* BYE Session invalidated
 * - AccessTokenExpired", then NO/BAD to everything): reconnect at once
 * with a new token. True when the session was aborted for that. */
static bool token_expired(struct worker *w, const char *text)
{
	struct mk_sync *s = w->s;
	if (!mk_login_token_expired(text) || w->sess == NULL || w->st == W_LOGOUT)
		return false;
	s->secret_stale = s->secret_force = true;
	w->reconnect_now = s->o.get_secret != NULL;
	char msg[300];
	snprintf(msg, sizeof(msg), "the access token expired (server: %s)%s", text,
		 w->reconnect_now ? "; reconnecting with a new one" : "");
	mk_imap_session_abort(w->sess, MK_ESERVER, msg);
	return true;
}

static void on_ready(struct mk_imap_session *sess, void *ud)
{
	struct worker *w = ud;
	struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_CAPABILITY};
	w->st = W_LOGIN;
	if (mk_imap_session_submit(sess, &cmd, &w->tag_capa) < 0)
		mk_imap_session_abort(sess, MK_EPROTO, "cannot send CAPABILITY");
}

static void after_login(struct worker *w)
{
	struct mk_sync *s = w->s;
	if (w->id == 1 && s->res.folders == NULL) {
		struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_LIST, .a = "", .b = "*"};
		w->st = W_LIST;
		if (mk_imap_session_submit(w->sess, &cmd, &w->tag_list) < 0)
			mk_imap_session_abort(w->sess, MK_EPROTO, "cannot send LIST");
	} else {
		w->st = W_READY;
		next_job(w);
	}
}

static void on_tagged(struct worker *w, const struct mk_imap_event *ev)
{
	struct mk_sync *s = w->s;
	char msg[400];
	uint64_t hint;
	if (ev->status != MK_IMAP_OK && ev->text != NULL && mk_backoff_parse_outlook_hint(ev->text, &hint) == 0) {
		/* Outlook: "NO Request is throttled. Suggested Backoff Time: N
		 * milliseconds" - stop hammering; the agent reconnects after
		 * that long, a one-shot sync reports it */
		snprintf(msg, sizeof(msg), "throttled by the server: %s", ev->text);
		mk_imap_session_abort(w->sess, MK_ESERVER, msg);
		return;
	}
	if (ev->status != MK_IMAP_OK && token_expired(w, ev->text))
		return;
	if (ev->status == MK_IMAP_OK && w->logged_in && ev->tag != w->tag_login)
		s->false_login_retried = false; /* the session works */
	if (ev->status != MK_IMAP_OK && w->logged_in && mk_login_false_login(ev->text)) {
		/* not a protocol error: the login was no login at all */
		snprintf(msg, sizeof(msg),
			 "login as %s%s was accepted, then refused (server: %s %s): the access token is for another "
			 "user; run `mailkeep login %s` and sign in as %s",
			 s->o.acct->user, s->o.acct->auth == MK_CONFIG_AUTH_XOAUTH2 ? " (XOAUTH2)" : "",
			 mk_imap_status_name(ev->status), ev->text, acct_name(s), s->o.acct->user);
		if (s->o.get_secret != NULL && !s->false_login_retried && !s->cancelled) {
			/* once with a new token (it may be a one-off); then it is final */
			s->false_login_retried = true;
			s->secret_stale = s->secret_force = true;
			w->reconnect_now = true;
			mk_log(MK_LOG_INFO, MK_LOG_CAT_SYNC, NULL, "account %s: %s; retrying with a new access token",
			       acct_name(s), msg);
			mk_imap_session_abort(w->sess, MK_ESERVER, msg);
			return;
		}
		mk_imap_session_abort(w->sess, MK_EAUTH, msg);
		return;
	}
	if (ev->tag == w->tag_capa && w->st == W_LOGIN && !w->logged_in) {
		login_or_wait(w);
		return;
	}
	if (ev->tag == w->tag_login) {
		if (ev->status != MK_IMAP_OK) {
			mk_login_imap_failed(w->sess, s->o.acct, ev, msg, sizeof(msg));
			if (mk_login_unavailable(ev->text)) {
				/* not the credentials: try again later, with backoff */
				mk_imap_session_abort(w->sess, MK_EUNAVAIL, msg);
				return;
			}
			if (s->o.get_secret != NULL && !s->secret_forced && !s->cancelled) {
				/* the token may have expired or been revoked since it
				 * was issued: once more with a new one */
				s->secret_stale = s->secret_force = true;
				w->reconnect_now = true;
				mk_log(MK_LOG_INFO, MK_LOG_CAT_SYNC, NULL,
				       "account %s: %s; retrying with a new access token", acct_name(s), msg);
				mk_imap_session_abort(w->sess, MK_ESERVER, msg);
				return;
			}
			mk_imap_session_abort(w->sess, MK_EAUTH, msg);
			return;
		}
		w->logged_in = true;
		s->secret_forced = false; /* a later refusal may again be an expiry */
		if (!mk_imap_session_caps_known(w->sess)) {
			/* capabilities change at login (IDLE, MOVE...): ask again */
			struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_CAPABILITY};
			if (mk_imap_session_submit(w->sess, &cmd, &w->tag_capa2) < 0)
				mk_imap_session_abort(w->sess, MK_EPROTO, "cannot send CAPABILITY");
			return;
		}
		after_login(w);
		return;
	}
	if (ev->tag == w->tag_capa2 && w->tag_capa2 != 0) {
		after_login(w);
		return;
	}
	if (ev->tag == w->tag_list && w->st == W_LIST) {
		if (ev->status != MK_IMAP_OK) {
			snprintf(msg, sizeof(msg), "LIST failed: %s %s", mk_imap_status_name(ev->status), ev->text);
			mk_imap_session_abort(w->sess, MK_ESERVER, msg);
			return;
		}
		if (s->o.verify_server) {
			list_done(w);
			return;
		}
		struct unlisted_ctx u = {s, mk_store_batch_new(s->o.store), 0, NULL, 0};
		int r = mk_store_mailboxes(s->o.store, s->account_id, collect_mailbox, &u);
		for (size_t i = 0; r == 0 && i < u.n && u.err == 0; i++)
			mark_unlisted(&u, &u.mbs[i]);
		mk_free(u.mbs);
		if (r == 0 && u.err == 0)
			r = mk_store_batch_commit(u.b);
		mk_store_batch_free(&u.b);
		if (r < 0 || u.err < 0) {
			snprintf(msg, sizeof(msg), "cannot write the store: %s", mk_strerror(r < 0 ? r : u.err));
			mk_imap_session_abort(w->sess, r < 0 ? r : u.err, msg);
			return;
		}
		list_done(w);
		return;
	}
	if (ev->tag == w->tag_examine && w->st == W_EXAMINE) {
		if (ev->status == MK_IMAP_NO && ev->text != NULL && strstr(ev->text, "Folder name is reserved") != NULL) {
			/* Outlook's "Files" (OUTLOOK.md §2.3): listed, never
			 * selectable, not mail. Not a failure. */
			w->job->res->skipped = true;
			snprintf(w->job->res->error, sizeof(w->job->res->error), "not a mail folder (server: NO %s)",
				 ev->text);
			mk_log(MK_LOG_INFO, MK_LOG_CAT_SYNC, NULL, "account %s, folder %s: skipped, %s", acct_name(s),
			       w->job->name, w->job->res->error);
			finish_job(w);
			next_job(w);
			return;
		}
		if (ev->status != MK_IMAP_OK) {
			folder_fail(w, mk_login_unavailable(ev->text) ? MK_EUNAVAIL : MK_ESERVER, "EXAMINE failed: %s %s",
				    mk_imap_status_name(ev->status), ev->text);
			finish_job(w);
			next_job(w);
			return;
		}
		if (w->uidvalidity == 0) {
			folder_fail(w, MK_EPROTO, "server sent no UIDVALIDITY");
			finish_job(w);
			next_job(w);
			return;
		}
		if (w->exists == 0) {
			w->st = W_FETCH;
			int r = s->o.verify_server ? compare_only(w) : diff_and_plan(w);
			if (r < 0)
				folder_fail(w, r, "cannot read the store: %s", mk_strerror(r));
			finish_job(w);
			next_job(w);
			return;
		}
		struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_UID_FETCH,
					  .a = "1:*",
					  .b = s->o.verify_server ? "(UID FLAGS RFC822.SIZE)" : "(UID FLAGS)"};
		w->st = W_UIDS;
		if (mk_imap_session_submit(w->sess, &cmd, &w->tag_uids) < 0)
			mk_imap_session_abort(w->sess, MK_EPROTO, "cannot send UID FETCH");
		return;
	}
	if (ev->tag == w->tag_uids && w->st == W_UIDS) {
		if (ev->status != MK_IMAP_OK) {
			folder_fail(w, MK_ESERVER, "UID FETCH failed: %s %s", mk_imap_status_name(ev->status),
				    ev->text);
			finish_job(w);
			next_job(w);
			return;
		}
		if (w->n_srv < w->exists) {
			/* Exchange sometimes answers FETCH with nothing for a
			 * message it has: those are unknown this run. */
			w->job->res->no_body += w->exists - w->n_srv;
			mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL,
			       "account %s, folder %s: the server listed %zu of its %u messages; the others will be "
			       "asked for again on the next run",
			       acct_name(s), w->job->name, w->n_srv, w->exists);
		}
		if (s->o.verify_server) {
			int r = compare_only(w);
			if (r < 0)
				folder_fail(w, r, "cannot read the store: %s", mk_strerror(r));
			finish_job(w);
			next_job(w);
			return;
		}
		int r = diff_and_plan(w);
		if (r < 0) {
			folder_fail(w, r, "cannot read the store: %s", mk_strerror(r));
			finish_job(w);
			next_job(w);
			return;
		}
		w->st = W_FETCH;
		w->fetch_in_flight = 0;
		if (w->n_todo == 0) {
			finish_job(w);
			next_job(w);
			return;
		}
		fetch_more(w);
		return;
	}
	if (w->st == W_IDLE && ev->tag == w->tag_idle) {
		mk_timer_cancel(&w->timer);
		if (ev->status != MK_IMAP_OK) {
			snprintf(msg, sizeof(msg), "IDLE refused: %s %s", mk_imap_status_name(ev->status), ev->text);
			mk_imap_session_abort(w->sess, MK_ESERVER, msg);
			return;
		}
		if (w->dirty_exists || w->dirty_other)
			run_watch_folder(w);
		else
			start_idle(w); /* a refresh */
		return;
	}
	if (w->st == W_FETCH && w->fast && w->fetch_in_flight > 0) {
		w->fetch_in_flight = 0;
		w->fast = false;
		if (w->body != NULL) {
			mk_store_body_abort(w->body);
			w->body = NULL;
		}
		if (ev->status != MK_IMAP_OK) {
			folder_fail(w, MK_ESERVER, "UID FETCH failed: %s %s", mk_imap_status_name(ev->status),
				    ev->text);
			w->dirty_other = true; /* next time the full way */
		}
		uint64_t n = w->job->res->new_messages;
		int64_t t0 = w->exists_ms;
		finish_job(w);
		if (s->o.on_push != NULL && w->job_done > 0)
			s->o.on_push(s->o.ud, acct_name(s), w->watch->name, w->job_done, t0 ? (double)(mk_time_mono_ms() - t0) : 0);
		(void)n;
		w->exists_ms = 0;
		next_job(w);
		return;
	}
	if (w->st == W_FETCH && w->fetch_in_flight > 0) {
		w->fetch_in_flight--;
		if (ev->status != MK_IMAP_OK)
			folder_fail(w, MK_ESERVER, "UID FETCH failed: %s %s", mk_imap_status_name(ev->status),
				    ev->text);
		if (w->body != NULL) {
			mk_store_body_abort(w->body);
			w->body = NULL;
		}
		fetch_more(w);
		if (w->fetch_in_flight == 0) {
			/* UIDs the server answered without a body (Exchange's
			 * empty FETCH): not stored; the next run asks again. */
			uint64_t missing = 0;
			for (size_t i = 0; i < w->n_todo; i++)
				if (!w->todo_done[i])
					missing++;
			w->job->res->no_body += missing;
			if (missing > 0)
				mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL,
				       "account %s, folder %s: the server sent no content for %llu message(s); "
				       "they will be asked for again on the next run",
				       acct_name(s), w->job->name, (unsigned long long)missing);
			finish_job(w);
			next_job(w);
		}
		return;
	}
	if (ev->tag == w->tag_logout && w->tag_logout != 0)
		mk_imap_session_close(w->sess);
}

static void on_event(struct mk_imap_session *sess, const struct mk_imap_event *ev, void *ud)
{
	struct worker *w = ud;
	struct mk_sync *s = w->s;
	int r;
	switch (ev->kind) {
	case MK_IMAP_EV_LIST:
		if (w->st == W_LIST) {
			if (s->n_listed < 100000) {
				s->listed = mk_xrealloc(s->listed, (s->n_listed + 1) * sizeof(*s->listed));
				s->listed[s->n_listed++] = mk_xstrdup(ev->list.name);
			}
			if (add_job(s, &ev->list) < 0)
				mk_imap_session_abort(sess, MK_ETOOBIG, "too many folders");
		}
		return;
	case MK_IMAP_EV_UNTAGGED:
		if (w->watch != NULL && w->st != W_EXAMINE && ev->args != NULL && ev->args->n >= 2) {
			/* news on a watched folder */
			bool exists = mk_imap_arg_eq(&ev->args->a[1], "EXISTS");
			bool expunge = mk_imap_arg_eq(&ev->args->a[1], "EXPUNGE");
			if (exists || expunge) {
				if (exists) {
					if (!w->dirty_exists)
						w->exists_ms = mk_time_mono_ms();
					w->dirty_exists = true;
				} else {
					w->dirty_other = true;
				}
				if (w->st == W_IDLE)
					mk_imap_session_idle_done(sess);
				return;
			}
		}
		if (w->st == W_EXAMINE && ev->args != NULL && ev->args->n >= 2 &&
		    mk_imap_arg_eq(&ev->args->a[1], "EXISTS")) {
			char num[16];
			size_t n = ev->args->a[0].v.n < sizeof(num) - 1 ? ev->args->a[0].v.n : sizeof(num) - 1;
			memcpy(num, ev->args->a[0].v.p, n);
			num[n] = '\0';
			uint64_t v;
			if (mk_str_to_u64(num, 0, UINT32_MAX, &v) == 0)
				w->exists = (uint32_t)v;
		} else if (w->st == W_EXAMINE && ev->code != NULL) {
			(void)mk_imap_code_u32(ev->code, "UIDVALIDITY", &w->uidvalidity);
			(void)mk_imap_code_u32(ev->code, "UIDNEXT", &w->uidnext);
		}
		return;
	case MK_IMAP_EV_BODY_BEGIN:
		if (w->st != W_FETCH)
			return;
		if (w->body != NULL)
			mk_store_body_abort(w->body);
		w->body = mk_store_body_begin(w->batch);
		return;
	case MK_IMAP_EV_BODY_CHUNK:
		if (w->body == NULL)
			return;
		r = mk_store_body_write(w->body, ev->chunk.p, ev->chunk.n);
		if (r < 0) {
			folder_fail(w, r, "cannot store a message: %s", mk_strerror(r));
			s->res.err = r;
			snprintf(s->res.error, sizeof(s->res.error), "cannot write the store: %s", mk_strerror(r));
			mk_sync_cancel(s);
		}
		return;
	case MK_IMAP_EV_FETCH:
		if (w->st == W_IDLE) {
			/* a flag change announced during IDLE */
			w->dirty_other = true;
			mk_imap_session_idle_done(sess);
			return;
		}
		on_fetch(w, ev);
		return;
	case MK_IMAP_EV_TAGGED:
		on_tagged(w, ev);
		return;
	case MK_IMAP_EV_BYE:
		if (token_expired(w, ev->text))
			return;
		if (w->st != W_LOGOUT) {
			char msg[300];
			snprintf(msg, sizeof(msg), "server closed the session: BYE %s", ev->text);
			mk_imap_session_abort(sess, MK_ESERVER, msg);
		}
		return;
	default:
		return;
	}
}

static void maybe_done(struct mk_sync *s)
{
	if (s->live_workers > 0 || s->finished)
		return;
	/* jobs nobody could take */
	for (size_t i = s->next_job; i < s->n_jobs; i++) {
		struct mk_sync_folder_result *fr = s->jobs[i].res;
		if (fr->err == 0) {
			fr->err = s->cancelled ? MK_ECANCELED : (s->last_err ? s->last_err : MK_ECANCELED);
			snprintf(fr->error, sizeof(fr->error), "not synced: %.380s",
				 s->last_error[0] ? s->last_error : "cancelled");
		}
		s->res.folders_failed++;
		if (s->o.on_folder != NULL)
			s->o.on_folder(s->o.ud, acct_name(s), fr);
	}
	s->next_job = s->n_jobs;
	for (size_t i = 0; i < s->res.n_folders; i++) {
		const struct mk_sync_folder_result *fr = &s->res.folders[i];
		s->res.new_messages += fr->new_messages;
		s->res.new_bytes += fr->new_bytes;
		s->res.flag_updates += fr->flag_updates;
		s->res.gone += fr->gone;
		s->res.no_body += fr->no_body;
	}
	s->finished = true;
	s->done(s->done_ud, s);
}

static void on_close(struct mk_imap_session *sess, int err, const char *msg, void *ud)
{
	struct worker *w = ud;
	struct mk_sync *s = w->s;
	w->sess = NULL;
	if (w->job != NULL) {
		if (w->body != NULL) {
			mk_store_body_abort(w->body);
			w->body = NULL;
		}
		if (s->o.watch && !s->cancelled && w->reconnect_now && w->job != w->watch) {
			/* the token expired mid-folder (or is being renewed): keep
			 * what is complete and carry on with this folder after the
			 * new login, instead of leaving it for the next poll */
			if (w->batch != NULL)
				(void)commit(w, false);
			free_folder_state(w);
			w->resume = w->job;
			w->job = NULL;
		} else {
			folder_fail(w, err ? err : MK_EEOF, "%s", err ? msg : "connection closed");
			finish_job(w);
		}
	}
	if (w->batch != NULL)
		mk_store_batch_free(&w->batch);
	if (err != 0) {
		s->last_err = err;
		mk_strlcpy(s->last_error, msg, sizeof(s->last_error));
		if (!w->list_done && w->id == 1 && s->res.err == 0) {
			/* connect, TLS, login or LIST failed: the account failed */
			s->res.err = err;
			mk_strlcpy(s->res.error, msg, sizeof(s->res.error));
		} else if (w->id != 1 && !w->logged_in) {
			mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s: extra connection %u failed: %s",
			       acct_name(s), w->id, msg);
		}
	}
	mk_timer_cancel(&w->timer);
	if (err != 0)
		mk_strlcpy(w->last_error, msg, sizeof(w->last_error));
	bool auth_failed = err == MK_EAUTH;
	bool meant = w->st == W_LOGOUT && err == 0; /* we logged out: nothing to watch here */
	if (s->o.watch && !s->cancelled && !auth_failed && !meant) {
		/* reconnect with exponential backoff and jitter: 1 s doubling
		 * to 5 min, or what Outlook asks for ("Request is throttled.
		 * Suggested Backoff Time: N milliseconds"); the worker keeps its
		 * watched folder */
		uint64_t hint;
		if (err != 0 && mk_backoff_parse_outlook_hint(msg, &hint) == 0) {
			mk_backoff_server_hint_ms(&w->backoff, hint);
			mk_log(MK_LOG_WARN, MK_LOG_CAT_SCHED, NULL, "account %s: the server asks to wait %llu ms",
			       acct_name(s), (unsigned long long)hint);
		}
		unsigned delay = w->reconnect_now ? 0 : (unsigned)mk_backoff_next_ms(&w->backoff);
		if (w->reconnect_now)
			mk_backoff_reset(&w->backoff);
		w->st = W_BACKOFF;
		w->state_since = mk_time_wall_s();
		w->retry_at = mk_time_wall_s() + delay / 1000;
		mk_log(w->reconnect_now ? MK_LOG_INFO : MK_LOG_WARN, MK_LOG_CAT_SCHED, NULL,
		       "account %s: connection %u %s (%s); reconnecting in %.1f s", acct_name(s), w->id,
		       w->reconnect_now ? "ended" : "lost", err ? msg : "closed", delay / 1000.0);
		w->watch_synced = false;
		if (mk_timer_start(s->o.loop, delay, restart_cb, w, &w->timer) == 0)
			return; /* still counted live */
	}
	if (auth_failed && s->res.err != MK_EAUTH) {
		s->res.err = err;
		mk_strlcpy(s->res.error, msg, sizeof(s->res.error));
	}
	if (auth_failed && s->o.watch)
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_SCHED, NULL,
		       "account %s: %s; this account stops until the configuration is reloaded", acct_name(s), msg);
	w->st = W_CLOSED;
	s->live_workers--;
	maybe_done(s);
}

static void restart_cb(void *ud, bool cancelled)
{
	struct worker *w = ud;
	struct mk_sync *s = w->s;
	w->timer = NULL;
	if (!cancelled && !s->cancelled) {
		w->list_done = w->id != 1 || s->res.folders != NULL;
		if (connect_worker(w) == 0)
			return;
	}
	w->st = W_CLOSED;
	s->live_workers--;
	maybe_done(s);
}

static int connect_worker(struct worker *w);

static void start_worker(struct mk_sync *s)
{
	if (s->n_workers >= s->max_workers)
		return;
	struct worker *w = &s->workers[s->n_workers];
	memset(w, 0, sizeof(*w));
	w->s = s;
	w->id = ++s->n_workers;
	mk_backoff_init(&w->backoff, MK_BACKOFF_BASE_MS, MK_BACKOFF_CAP_MS, MK_BACKOFF_JITTER_EQUAL, NULL, NULL);
	int r = connect_worker(w);
	if (r < 0) {
		s->n_workers--;
		s->last_err = r;
		snprintf(s->last_error, sizeof(s->last_error), "cannot connect: %s", mk_strerror(r));
		if (s->n_workers == 0 && s->res.err == 0) {
			s->res.err = r;
			mk_strlcpy(s->res.error, s->last_error, sizeof(s->res.error));
		}
		return;
	}
	s->live_workers++;
}

static int connect_worker(struct worker *w)
{
	struct mk_sync *s = w->s;
	const struct mk_config_account *a = s->o.acct;
	/* an IDLE connection is silent for idle_refresh; it is dead when the
	 * refresh gets no answer within `timeout` */
	unsigned idle_ms = a->timeout_s * 1000 * 4;
	if (s->o.watch && (a->idle_refresh_s + a->timeout_s) * 1000 > idle_ms)
		idle_ms = (a->idle_refresh_s + a->timeout_s) * 1000;
	struct mk_imap_session_opts so = {
		.conn =
			{
				.host = a->imap.host,
				.port = a->imap.port,
				.implicit_tls = a->imap.tls == MK_CONFIG_TLS_IMPLICIT,
				.tls_ctx = s->o.tls_ctx,
				.tls_fingerprint = a->tls_fingerprint,
				.connect_timeout_ms = a->timeout_s * 1000,
				.handshake_timeout_ms = a->timeout_s * 1000,
				.idle_timeout_ms = idle_ms,
				.id = w->id,
				.log_account = a->name,
			},
		.trace = s->o.trace,
	};
	static const struct mk_imap_session_cbs cbs = {on_ready, on_event, on_close, NULL};
	/* a new session numbers its tags from 1 again */
	w->tag_capa = w->tag_capa2 = w->tag_login = w->tag_list = w->tag_examine = w->tag_uids = w->tag_logout =
		w->tag_idle = 0;
	w->fetch_in_flight = 0;
	w->fast = false;
	w->st = W_CONNECTING;
	w->state_since = mk_time_wall_s();
	w->logged_in = false;
	w->reconnect_now = false;
	return mk_imap_session_start(s->o.loop, &so, &cbs, w, &w->sess);
}

int mk_sync_start(const struct mk_sync_opts *opts, void (*done)(void *ud, struct mk_sync *s), void *ud,
		  struct mk_sync **s_r)
{
	if (opts->acct->imap.host == NULL)
		return MK_ENOTFOUND;
	struct mk_sync *s = mk_xcalloc(1, sizeof(*s));
	s->o = *opts;
	s->secret = mk_xstrdup(opts->secret ? opts->secret : "");
	s->secret_stale = opts->get_secret != NULL; /* asked for at the first login */
	s->done = done;
	s->done_ud = ud;
	int r = mk_store_account(opts->store, opts->acct->name, !opts->verify_server, &s->account_id);
	if (r < 0) {
		mk_free(s->secret);
		mk_free(s);
		return r;
	}
	s->max_workers = opts->acct->max_connections ? opts->acct->max_connections : 1;
	s->workers = mk_xcalloc(s->max_workers, sizeof(*s->workers));
	start_worker(s);
	if (s->live_workers == 0) {
		r = s->res.err ? s->res.err : MK_EINVAL;
		s->finished = true;
		mk_sync_free(&s);
		return r;
	}
	*s_r = s;
	return 0;
}

const struct mk_sync_result *mk_sync_result(const struct mk_sync *s)
{
	return &s->res;
}

void mk_sync_cancel(struct mk_sync *s)
{
	s->cancelled = true;
	for (unsigned i = 0; i < s->n_workers; i++) {
		struct worker *w = &s->workers[i];
		if (w->timer != NULL)
			mk_timer_cancel(&w->timer); /* a pending restart ends */
		if (w->sess != NULL)
			mk_imap_session_abort(w->sess, MK_ECANCELED, s->res.error[0] ? s->res.error : "cancelled");
	}
}

void mk_sync_stop(struct mk_sync *s)
{
	if (s->cancelled)
		return;
	s->cancelled = true;
	for (unsigned i = 0; i < s->n_workers; i++) {
		struct worker *w = &s->workers[i];
		if (w->timer != NULL)
			mk_timer_cancel(&w->timer);
		if (w->sess == NULL || w->st == W_LOGOUT)
			continue;
		/* keep every complete message received so far */
		if (w->body != NULL) {
			mk_store_body_abort(w->body);
			w->body = NULL;
		}
		if (w->job != NULL && w->batch != NULL && !s->o.verify_server)
			(void)commit(w, false);
		/* DONE (if idling) and LOGOUT; the server's answer closes it */
		struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_LOGOUT};
		if (mk_imap_session_submit(w->sess, &cmd, &w->tag_logout) < 0)
			mk_imap_session_close(w->sess);
		else
			w->st = W_LOGOUT;
	}
}

void mk_sync_reconnect(struct mk_sync *s, const char *why)
{
	if (s->cancelled)
		return;
	for (unsigned i = 0; i < s->n_workers; i++) {
		struct worker *w = &s->workers[i];
		mk_backoff_reset(&w->backoff);
		if (w->sess != NULL && w->st != W_LOGOUT)
			mk_imap_session_abort(w->sess, MK_ETIMEDOUT, why);
	}
}

size_t mk_sync_status(const struct mk_sync *s, struct mk_sync_conn_status *out, size_t max)
{
	size_t n = 0;
	for (unsigned i = 0; i < s->n_workers && n < max; i++) {
		const struct worker *w = &s->workers[i];
		struct mk_sync_conn_status *o = &out[n++];
		o->id = w->id;
		o->folder = w->job ? w->job->name : (w->watch ? w->watch->name : NULL);
		o->state = wstate_names[w->st];
		o->since = w->state_since;
		o->retry_at = w->st == W_BACKOFF ? w->retry_at : 0;
		o->last_error = w->last_error[0] ? w->last_error : NULL;
	}
	return n;
}

void mk_sync_free(struct mk_sync **sp)
{
	struct mk_sync *s = *sp;
	if (s == NULL)
		return;
	MK_ASSERT(s->live_workers == 0);
	for (size_t i = 0; i < s->n_jobs; i++) {
		mk_free(s->jobs[i].name);
		mk_free(s->jobs[i].raw);
	}
	mk_free(s->jobs);
	for (size_t i = 0; i < s->n_listed; i++)
		mk_free(s->listed[i]);
	mk_free(s->listed);
	mk_free(s->res.folders);
	mk_free(s->workers);
	if (s->sreq != NULL)
		s->sreq->s = NULL; /* its answer arrives later and is dropped */
	if (s->secret != NULL) {
		explicit_bzero(s->secret, strlen(s->secret));
		mk_free(s->secret);
	}
	MK_FREE(sp);
}
