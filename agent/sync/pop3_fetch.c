/* SPDX-License-Identifier: MIT */
/*
 * pop3_fetch.c - the POP3 download engine (see mk_pop3_fetch.h).
 *
 * One session, driven as a small state machine on the session's events.
 * Durability rules, in the order they matter:
 *  - a message counts as stored only when the batch holding its body, its
 *    record in the POP3 folder, the folder's progress (highest synthetic
 *    UID) and its UIDL entry has committed: one LMDB transaction, so a
 *    crash leaves all of them or none;
 *  - DELE is sent only after that commit and after the stored body was
 *    read back and its SHA-256 checked (mk_store_body_read);
 *  - the UIDL table records "deleted on server" only after QUIT's +OK,
 *    because RFC 1939 deletes nothing before the UPDATE state.
 * A body whose RETR ends early (connection cut, hostile server) is
 * aborted: nothing is stored half.
 */
#include "mk_pop3_fetch.h"
#include "mk_login.h"
#include "mk_alloc.h"
#include "mk_conn.h"
#include "mk_err.h"
#include "mk_log.h"
#include "mk_pop3.h"
#include "mk_pop3_session.h"
#include "mk_store.h"
#include "mk_time.h"
#include "mk_str.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Commit a batch at this size, count or age (as imap_sync.c). */
#define BATCH_MAX_BYTES (2u * 1024 * 1024)
#define BATCH_MAX_COUNT 1000
#define BATCH_MAX_MS 1000
/* RETR/DELE commands in flight when the server offers PIPELINING. */
#define PIPELINE_DEPTH 8
/* Messages in one maildrop we are willing to list. */
#define MAX_MESSAGES 1000000

enum fstate {
	F_CONNECTING = 0,
	F_CAPA1,
	F_LOGIN,
	F_CAPA2,
	F_UIDL,
	F_LIST,
	F_RETR,
	F_DELE,
	F_QUIT,
	F_CLOSED,
};

struct srv_msg {
	uint32_t msg;
	char *uidl;
	uint64_t size;
	bool dup;      /* same UIDL earlier in the listing: ignored */
	bool have;     /* in the store (before or during this run) */
	bool retr_ok;  /* stored during this run */
};

struct mk_pop3_fetch {
	struct mk_pop3_fetch_opts o;
	char *secret;
	uint32_t account_id;
	void (*done)(void *ud, struct mk_pop3_fetch *f);
	void *done_ud;
	struct mk_pop3_session *sess;
	enum fstate st;
	struct mk_pop3_fetch_result res;
	bool cancelled, finished, login_sent;
	/* the maildrop */
	struct srv_msg *srv;
	size_t n_srv, cap_srv;
	/* RETR plan: indexes into srv */
	size_t *todo;
	size_t n_todo, todo_next, todo_done;
	size_t retr_q[PIPELINE_DEPTH]; /* in flight, FIFO */
	unsigned retr_head, retr_n;
	bool retr_body; /* the head's +OK came: its text streams */
	/* DELE */
	size_t *dele;
	size_t n_dele, dele_next, dele_replies;
	char **dele_ok;
	size_t n_dele_ok;
	/* store */
	struct mk_store_mailbox mb;
	uint32_t next_uid;
	struct mk_store_batch *batch;
	struct mk_store_body *body;
	int64_t batch_started_ms;
};

#ifdef MK_TEST_HOOKS
static long env_num(const char *name, uint64_t max)
{
	const char *e = getenv(name);
	uint64_t v;
	return e != NULL && mk_str_to_u64(e, 0, max, &v) == 0 ? (long)v : -1;
}
#endif

/* Wall clock; MK_TEST_NOW=unix_seconds overrides it in MK_TEST_HOOKS
 * builds (after_days tests). */
static int64_t wall_s(void)
{
#ifdef MK_TEST_HOOKS
	long t = env_num("MK_TEST_NOW", (uint64_t)1 << 40);
	if (t >= 0)
		return (int64_t)t;
#endif
	return mk_time_wall_s();
}

static size_t batch_max_count(void)
{
#ifdef MK_TEST_HOOKS
	long n = env_num("MK_TEST_BATCH_COUNT", 1000000);
	if (n > 0)
		return (size_t)n;
#endif
	return BATCH_MAX_COUNT;
}

static const char *acct_name(const struct mk_pop3_fetch *f)
{
	return f->o.acct->name;
}

static void fail(struct mk_pop3_fetch *f, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct mk_pop3_fetch *f, int err, const char *fmt, ...)
{
	if (f->res.err == 0) {
		f->res.err = err;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(f->res.error, sizeof(f->res.error), fmt, ap);
		va_end(ap);
	}
	if (f->sess != NULL)
		mk_pop3_session_abort(f->sess, err, f->res.error);
}

static int submit(struct mk_pop3_fetch *f, enum mk_pop3_cmd_kind kind, uint32_t msg)
{
	struct mk_pop3_cmd cmd = {.kind = kind, .msg = msg};
	int r = mk_pop3_session_submit(f->sess, &cmd);
	if (r < 0)
		fail(f, MK_EPROTO, "cannot send %s: %s", mk_pop3_cmd_name(kind), mk_strerror(r));
	return r;
}

/* ---- store ---- */

static int commit(struct mk_pop3_fetch *f, bool final)
{
	if (f->batch == NULL || (mk_store_batch_count(f->batch) == 0 && !final))
		return 0;
	f->mb.uidvalidity = MK_STORE_POP3_UIDVALIDITY;
	f->mb.highest_uid = f->next_uid - 1;
	f->mb.uidnext = f->next_uid;
	f->mb.gone = false;
	if (final)
		f->mb.last_sync = wall_s();
	int r = mk_store_batch_put_mailbox(f->batch, &f->mb);
	if (r == 0)
		r = mk_store_batch_commit(f->batch);
	if (r < 0) {
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_STORE, NULL, "account %s, POP3: cannot write the store: %s",
		       acct_name(f), mk_strerror(r));
		fail(f, r, "cannot write the store: %s", mk_strerror(r));
		return r;
	}
	f->batch_started_ms = mk_time_mono_ms();
	return 0;
}

static void maybe_commit(struct mk_pop3_fetch *f)
{
	if (mk_store_batch_bytes(f->batch) >= BATCH_MAX_BYTES || mk_store_batch_count(f->batch) >= batch_max_count() ||
	    mk_time_mono_ms() - f->batch_started_ms >= BATCH_MAX_MS)
		(void)commit(f, false);
}

static void abort_body(struct mk_pop3_fetch *f)
{
	if (f->body != NULL) {
		mk_store_body_abort(f->body);
		f->body = NULL;
	}
}

/* One RETR's text ended: store body, record and UIDL entry in the batch. */
static void retr_finished(struct mk_pop3_fetch *f, struct srv_msg *m)
{
	uint8_t sha[MK_STORE_SHA_LEN];
	uint64_t raw = 0;
	int r = mk_store_body_finish(f->body, sha, &raw);
	f->body = NULL;
	if (r < 0)
		goto store_error;
	int64_t now = wall_s();
	struct mk_store_msg rec;
	memset(&rec, 0, sizeof(rec));
	rec.account = f->account_id;
	rec.mailbox = f->mb.id;
	rec.uidvalidity = MK_STORE_POP3_UIDVALIDITY;
	rec.uid = f->next_uid;
	memcpy(rec.sha, sha, sizeof(sha));
	rec.raw_size = raw;
	rec.server_size = m->size > UINT32_MAX ? UINT32_MAX : (uint32_t)m->size;
	rec.internaldate = now; /* POP3 has no arrival date: when we took it */
	rec.state = MK_STORE_MSG_PRESENT;
	r = mk_store_batch_put_message(f->batch, &rec);
	if (r < 0)
		goto store_error;
	struct mk_store_pop3 pr;
	memset(&pr, 0, sizeof(pr));
	pr.account = f->account_id;
	mk_strlcpy(pr.uidl, m->uidl, sizeof(pr.uidl));
	memcpy(pr.sha, sha, sizeof(sha));
	pr.size = raw;
	pr.first_seen = now;
	pr.uid = f->next_uid;
	r = mk_store_batch_put_pop3(f->batch, &pr);
	if (r < 0)
		goto store_error;
	f->next_uid++;
	m->retr_ok = true;
	m->have = true;
	f->res.new_messages++;
	f->res.new_bytes += raw;
	if (f->o.on_progress != NULL)
		f->o.on_progress(f->o.ud, acct_name(f), MK_STORE_POP3_FOLDER, f->todo_done + 1, f->n_todo,
				 f->res.new_bytes);
	maybe_commit(f);
	return;
store_error:
	fail(f, r, "cannot store message %u (UIDL %s): %s", m->msg, m->uidl, mk_strerror(r));
}

/* ---- the plan ---- */

static int cmp_uidl(const void *a, const void *b)
{
	const struct srv_msg *x = *(const struct srv_msg *const *)a, *y = *(const struct srv_msg *const *)b;
	int c = strcmp(x->uidl, y->uidl);
	return c ? c : (x->msg < y->msg ? -1 : x->msg > y->msg);
}

static int plan(struct mk_pop3_fetch *f)
{
	/* duplicate UIDLs in one listing: only the first is used */
	struct srv_msg **byu = mk_xcalloc(f->n_srv ? f->n_srv : 1, sizeof(*byu));
	for (size_t i = 0; i < f->n_srv; i++)
		byu[i] = &f->srv[i];
	qsort(byu, f->n_srv, sizeof(*byu), cmp_uidl);
	for (size_t i = 1; i < f->n_srv; i++)
		if (strcmp(byu[i]->uidl, byu[i - 1]->uidl) == 0)
			byu[i]->dup = true;
	mk_free(byu);
	f->todo = mk_xcalloc(f->n_srv ? f->n_srv : 1, sizeof(*f->todo));
	for (size_t i = 0; i < f->n_srv; i++) {
		struct srv_msg *m = &f->srv[i];
		if (m->dup) {
			mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL,
			       "account %s, POP3: message %u repeats UIDL %s; only the first is downloaded", acct_name(f),
			       m->msg, m->uidl);
			continue;
		}
		struct mk_store_pop3 pr;
		int r = mk_store_pop3_get(f->o.store, f->account_id, m->uidl, &pr);
		if (r == 0) {
			m->have = true;
			continue;
		}
		if (r != MK_ENOTFOUND)
			return r;
		f->todo[f->n_todo++] = i;
	}
	return 0;
}

static void start_dele(struct mk_pop3_fetch *f);
static void send_quit(struct mk_pop3_fetch *f);

static void retr_more(struct mk_pop3_fetch *f)
{
	unsigned depth = mk_pop3_session_has_cap(f->sess, "PIPELINING") ? PIPELINE_DEPTH : 1;
	while (f->retr_n < depth && f->todo_next < f->n_todo && f->res.err == 0) {
		size_t idx = f->todo[f->todo_next++];
		if (submit(f, MK_POP3_CMD_RETR, f->srv[idx].msg) < 0)
			return;
		f->retr_q[(f->retr_head + f->retr_n) % PIPELINE_DEPTH] = idx;
		f->retr_n++;
	}
	if (f->retr_n == 0 && f->todo_next >= f->n_todo && f->st == F_RETR) {
		if (commit(f, true) < 0)
			return;
		start_dele(f);
	}
}

/* Policy and proof: committed (it is in the UIDL table), not deleted yet,
 * old enough, and the stored body re-reads with the right hash. */
static int count_cb(void *ud, const uint8_t *p, size_t n)
{
	(void)p;
	*(uint64_t *)ud += n;
	return 0;
}

static bool may_delete(struct mk_pop3_fetch *f, const struct srv_msg *m, int64_t now)
{
	const struct mk_config_account *a = f->o.acct;
	if (a->pop3_delete == MK_CONFIG_POP3_DELETE_NEVER || m->dup || !m->have)
		return false;
	struct mk_store_pop3 pr;
	if (mk_store_pop3_get(f->o.store, f->account_id, m->uidl, &pr) != 0)
		return false;
	if (pr.deleted_at != 0 && a->pop3_delete == MK_CONFIG_POP3_DELETE_NEVER)
		return false;
	if (a->pop3_delete == MK_CONFIG_POP3_DELETE_AFTER_DAYS &&
	    now - pr.first_seen < (int64_t)a->pop3_delete_days * 86400)
		return false;
	uint64_t n = 0;
	int r = mk_store_body_read(f->o.store, pr.sha, count_cb, &n);
	if (r < 0 || n != pr.size) {
		f->res.not_verified++;
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_STORE, NULL,
		       "account %s, POP3: stored copy of UIDL %s does not read back (%s); not deleting it from the "
		       "server",
		       acct_name(f), m->uidl, r < 0 ? mk_strerror(r) : "size differs");
		return false;
	}
	return true;
}

static void dele_more(struct mk_pop3_fetch *f)
{
	unsigned depth = mk_pop3_session_has_cap(f->sess, "PIPELINING") ? PIPELINE_DEPTH : 1;
	while (f->dele_next - f->dele_replies < depth && f->dele_next < f->n_dele && f->res.err == 0) {
		if (submit(f, MK_POP3_CMD_DELE, f->srv[f->dele[f->dele_next]].msg) < 0)
			return;
		f->dele_next++;
	}
	if (f->dele_replies == f->n_dele && f->res.err == 0)
		send_quit(f);
}

static void start_dele(struct mk_pop3_fetch *f)
{
	f->st = F_DELE;
	int64_t now = wall_s();
	f->dele = mk_xcalloc(f->n_srv ? f->n_srv : 1, sizeof(*f->dele));
	for (size_t i = 0; i < f->n_srv; i++)
		if (may_delete(f, &f->srv[i], now))
			f->dele[f->n_dele++] = i;
	f->dele_ok = mk_xcalloc(f->n_dele ? f->n_dele : 1, sizeof(*f->dele_ok));
	dele_more(f);
}

static void send_quit(struct mk_pop3_fetch *f)
{
	if (f->st == F_QUIT)
		return;
	f->st = F_QUIT;
	(void)submit(f, MK_POP3_CMD_QUIT, 0);
}

/* ---- events ---- */

static void login(struct mk_pop3_fetch *f)
{
	const struct mk_config_account *a = f->o.acct;
	f->st = F_LOGIN;
	f->login_sent = true;
	/* XOAUTH2 in two steps (OUTLOOK.md §1.2), PLAIN, or USER/PASS */
	int r = mk_login_pop3(f->sess, a, f->secret);
	if (r == MK_EINVAL && a->auth == MK_CONFIG_AUTH_XOAUTH2) {
		fail(f, MK_EAUTH, "cannot log in as %s with XOAUTH2: the access token is malformed", a->user);
		return;
	}
	if (r < 0)
		fail(f, r == MK_ESTATE ? MK_ETLS : MK_EINVAL, "cannot send the login: %s",
		     r == MK_ESTATE ? "TLS is not active (credentials are never sent in clear)" : mk_strerror(r));
}

static void on_ready(struct mk_pop3_session *s, void *ud)
{
	struct mk_pop3_fetch *f = ud;
	(void)s;
	f->st = F_CAPA1;
	(void)submit(f, MK_POP3_CMD_CAPA, 0);
}

static void srv_add(struct mk_pop3_fetch *f, const struct mk_pop3_event *ev)
{
	if (f->n_srv >= MAX_MESSAGES) {
		fail(f, MK_ETOOBIG, "the server lists more than %d messages", MAX_MESSAGES);
		return;
	}
	if (f->n_srv == f->cap_srv) {
		f->cap_srv = f->cap_srv ? f->cap_srv * 2 : 256;
		f->srv = mk_xrealloc(f->srv, f->cap_srv * sizeof(*f->srv));
	}
	struct srv_msg *m = &f->srv[f->n_srv++];
	memset(m, 0, sizeof(*m));
	m->msg = ev->msg;
	m->uidl = mk_xstrdup(ev->uidl);
}

static struct srv_msg *by_msg(struct mk_pop3_fetch *f, uint32_t msg)
{
	/* UIDL lists in message-number order: try the direct slot first */
	if (msg >= 1 && msg <= f->n_srv && f->srv[msg - 1].msg == msg)
		return &f->srv[msg - 1];
	for (size_t i = 0; i < f->n_srv; i++)
		if (f->srv[i].msg == msg)
			return &f->srv[i];
	return NULL;
}

static void on_reply(struct mk_pop3_fetch *f, const struct mk_pop3_event *ev)
{
	const struct mk_config_account *a = f->o.acct;
	switch (ev->cmd) {
	case MK_POP3_CMD_CAPA:
		if (!ev->ok) { /* no CAPA (RFC 1939-only server): go on without */
			if (f->st == F_CAPA1)
				login(f);
			else if (f->st == F_CAPA2 && (f->st = F_UIDL, true))
				(void)submit(f, MK_POP3_CMD_UIDL, 0);
		}
		return;
	case MK_POP3_CMD_USER:
		if (!ev->ok)
			fail(f, MK_EAUTH, "login as %s failed: USER refused: -ERR %s", a->user, ev->text);
		return;
	case MK_POP3_CMD_PASS:
	case MK_POP3_CMD_AUTH_PLAIN:
	case MK_POP3_CMD_AUTH:
		if (!ev->ok) {
			char msg[600];
			mk_login_pop3_failed(a, ev, msg, sizeof(msg));
			/* "-ERR Server Unavailable. 21": busy, not refused */
			fail(f, mk_login_unavailable(ev->text) ? MK_EUNAVAIL : MK_EAUTH, "%s", msg);
			return;
		}
		f->st = F_CAPA2; /* RFC 2449: capabilities may change after login */
		(void)submit(f, MK_POP3_CMD_CAPA, 0);
		return;
	case MK_POP3_CMD_UIDL:
		if (!ev->ok)
			fail(f, MK_ESERVER,
			     "the POP3 server does not support UIDL (-ERR %s): mailkeep identifies POP3 messages only by "
			     "UIDL and will not guess, so nothing was downloaded; use fetch = imap for this account",
			     ev->text);
		return;
	case MK_POP3_CMD_LIST:
		if (!ev->ok)
			fail(f, MK_ESERVER, "LIST failed: -ERR %s", ev->text);
		return;
	case MK_POP3_CMD_RETR: {
		MK_ASSERT(f->retr_n > 0);
		struct srv_msg *m = &f->srv[f->retr_q[f->retr_head]];
		if (ev->ok) {
			abort_body(f);
			f->body = mk_store_body_begin(f->batch);
			f->retr_body = true;
			return;
		}
		/* -ERR to RETR: not stored, asked again next run */
		f->res.retr_failed++;
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s, POP3: RETR %u (UIDL %s) refused: -ERR %s",
		       acct_name(f), m->msg, m->uidl, ev->text);
		f->retr_head = (f->retr_head + 1) % PIPELINE_DEPTH;
		f->retr_n--;
		f->todo_done++;
		retr_more(f);
		return;
	}
	case MK_POP3_CMD_DELE: {
		struct srv_msg *m = &f->srv[f->dele[f->dele_replies]];
		f->dele_replies++;
		if (ev->ok)
			f->dele_ok[f->n_dele_ok++] = m->uidl;
		else
			mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s, POP3: DELE %u (UIDL %s) refused: -ERR %s",
			       acct_name(f), m->msg, m->uidl, ev->text);
		dele_more(f);
		return;
	}
	case MK_POP3_CMD_QUIT:
		if (!ev->ok) {
			/* RFC 1939: -ERR to QUIT means some deletions failed; the
			 * next run sees what is still there. */
			mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL,
			       "account %s, POP3: the server reported a failure at QUIT (-ERR %s); deletions are not "
			       "recorded",
			       acct_name(f), ev->text);
		} else if (f->n_dele_ok > 0) {
			int r = mk_store_pop3_mark_deleted(f->o.store, f->account_id, (const char *const *)f->dele_ok,
							   f->n_dele_ok, wall_s());
			if (r < 0) {
				fail(f, r, "cannot write the store: %s", mk_strerror(r));
				return;
			}
			f->res.deleted = f->n_dele_ok;
		}
		mk_pop3_session_close(f->sess);
		return;
	default:
		return;
	}
}

static void on_end(struct mk_pop3_fetch *f, const struct mk_pop3_event *ev)
{
	int r;
	switch (ev->cmd) {
	case MK_POP3_CMD_CAPA:
		if (f->st == F_CAPA1) {
			login(f);
		} else if (f->st == F_CAPA2) {
			f->st = F_UIDL;
			(void)submit(f, MK_POP3_CMD_UIDL, 0);
		}
		return;
	case MK_POP3_CMD_UIDL:
		f->res.server_count = f->n_srv;
		f->st = F_LIST;
		(void)submit(f, MK_POP3_CMD_LIST, 0);
		return;
	case MK_POP3_CMD_LIST:
		r = plan(f);
		if (r < 0) {
			fail(f, r, "cannot read the store: %s", mk_strerror(r));
			return;
		}
		f->st = F_RETR;
		f->batch_started_ms = mk_time_mono_ms();
		retr_more(f);
		return;
	case MK_POP3_CMD_RETR: {
		MK_ASSERT(f->retr_n > 0 && f->body != NULL);
		struct srv_msg *m = &f->srv[f->retr_q[f->retr_head]];
		f->retr_head = (f->retr_head + 1) % PIPELINE_DEPTH;
		f->retr_n--;
		f->retr_body = false;
		retr_finished(f, m);
		f->todo_done++;
		if (f->res.err == 0)
			retr_more(f);
		return;
	}
	default:
		return;
	}
}

static void on_event(struct mk_pop3_session *s, const struct mk_pop3_event *ev, void *ud)
{
	struct mk_pop3_fetch *f = ud;
	(void)s;
	if (f->res.err != 0)
		return;
	switch (ev->kind) {
	case MK_POP3_EV_REPLY:
		on_reply(f, ev);
		return;
	case MK_POP3_EV_UIDL:
		if (f->st == F_UIDL)
			srv_add(f, ev);
		return;
	case MK_POP3_EV_LIST:
		if (f->st == F_LIST) {
			struct srv_msg *m = by_msg(f, ev->msg);
			if (m != NULL)
				m->size = ev->size;
		}
		return;
	case MK_POP3_EV_BODY_CHUNK:
		if (f->body != NULL) {
			int r = mk_store_body_write(f->body, ev->chunk.p, ev->chunk.n);
			if (r < 0)
				fail(f, r, "cannot store a message: %s", mk_strerror(r));
		}
		return;
	case MK_POP3_EV_END:
		on_end(f, ev);
		return;
	default:
		return;
	}
}

static void on_close(struct mk_pop3_session *s, int err, const char *msg, void *ud)
{
	struct mk_pop3_fetch *f = ud;
	(void)s;
	f->sess = NULL;
	abort_body(f); /* a body cut short is never stored */
	if (err != 0 && f->res.err == 0) {
		f->res.err = err;
		if (f->st == F_RETR && f->retr_n > 0)
			snprintf(f->res.error, sizeof(f->res.error), "%s (while downloading message %u)", msg,
				 f->srv[f->retr_q[f->retr_head]].msg);
		else
			mk_strlcpy(f->res.error, msg, sizeof(f->res.error));
	}
	if (err == 0 && f->res.err == 0 && f->st != F_QUIT) {
		f->res.err = MK_ECANCELED;
		mk_strlcpy(f->res.error, "connection closed before QUIT", sizeof(f->res.error));
	}
	/* Complete messages of an unfinished batch are kept: they are whole,
	 * and committing them saves downloading them again. Nothing was
	 * deleted on the server (no QUIT). */
	if (f->batch != NULL && mk_store_batch_count(f->batch) > 0 && f->res.err != MK_EIO)
		(void)commit(f, false);
	mk_store_batch_free(&f->batch);
	f->st = F_CLOSED;
	struct mk_sync_folder_result *fr = &f->res.folder;
	mk_strlcpy(fr->name, MK_STORE_POP3_FOLDER, sizeof(fr->name));
	fr->new_messages = f->res.new_messages;
	fr->new_bytes = f->res.new_bytes;
	fr->gone = f->res.deleted;
	fr->no_body = f->res.retr_failed;
	fr->server_count = f->res.server_count;
	fr->err = f->res.err;
	mk_strlcpy(fr->error, f->res.error, sizeof(fr->error));
	if (f->res.err != 0)
		mk_log(MK_LOG_DEBUG, MK_LOG_CAT_SYNC, NULL, "account %s, POP3: %s", acct_name(f), f->res.error);
	f->finished = true;
	f->done(f->done_ud, f);
}

int mk_pop3_fetch_start(const struct mk_pop3_fetch_opts *opts, void (*done)(void *ud, struct mk_pop3_fetch *f),
			void *ud, struct mk_pop3_fetch **f_r)
{
	const struct mk_config_account *a = opts->acct;
	if (a->pop3.host == NULL)
		return MK_ENOTFOUND;
	struct mk_pop3_fetch *f = mk_xcalloc(1, sizeof(*f));
	f->o = *opts;
	f->secret = mk_xstrdup(opts->secret ? opts->secret : "");
	f->done = done;
	f->done_ud = ud;
	int r = mk_store_account(opts->store, a->name, true, &f->account_id);
	if (r == 0)
		r = mk_store_mailbox_get(opts->store, f->account_id, MK_STORE_POP3_FOLDER, true, &f->mb);
	if (r < 0) {
		f->finished = true;
		mk_pop3_fetch_free(&f);
		return r;
	}
	f->next_uid = f->mb.highest_uid + 1;
	f->batch = mk_store_batch_new(opts->store);
	struct mk_pop3_session_opts so = {
		.conn =
			{
				.host = a->pop3.host,
				.port = a->pop3.port,
				.implicit_tls = a->pop3.tls == MK_CONFIG_TLS_IMPLICIT,
				.tls_ctx = opts->tls_ctx,
				.tls_fingerprint = a->tls_fingerprint,
				.connect_timeout_ms = a->timeout_s * 1000,
				.handshake_timeout_ms = a->timeout_s * 1000,
				.idle_timeout_ms = a->timeout_s * 1000 * 4,
				.id = 100,
				.log_account = a->name,
			},
		.trace = opts->trace,
	};
	static const struct mk_pop3_session_cbs cbs = {on_ready, on_event, on_close};
	r = mk_pop3_session_start(opts->loop, &so, &cbs, f, &f->sess);
	if (r < 0) {
		f->finished = true;
		mk_pop3_fetch_free(&f);
		return r;
	}
	*f_r = f;
	return 0;
}

const struct mk_pop3_fetch_result *mk_pop3_fetch_result(const struct mk_pop3_fetch *f)
{
	return &f->res;
}

void mk_pop3_fetch_cancel(struct mk_pop3_fetch *f)
{
	if (f->cancelled || f->sess == NULL)
		return;
	f->cancelled = true;
	fail(f, MK_ECANCELED, "cancelled");
}

void mk_pop3_fetch_free(struct mk_pop3_fetch **fp)
{
	struct mk_pop3_fetch *f = *fp;
	if (f == NULL)
		return;
	MK_ASSERT(f->sess == NULL);
	abort_body(f);
	mk_store_batch_free(&f->batch);
	for (size_t i = 0; i < f->n_srv; i++)
		mk_free(f->srv[i].uidl);
	mk_free(f->srv);
	mk_free(f->todo);
	mk_free(f->dele);
	mk_free(f->dele_ok);
	if (f->secret != NULL) {
		explicit_bzero(f->secret, strlen(f->secret));
		mk_free(f->secret);
	}
	MK_FREE(fp);
}
