/* SPDX-License-Identifier: MIT */
/*
 * outbox.c - the sending engine (see mk_outbox.h): one SMTP submission
 * session, the given queue entries sent one after another, every state
 * change committed to the store before the step it guards.
 *
 * Per message the envelope is submitted at once (MAIL, RCPT..., DATA): the
 * core pipelines it when the server offers PIPELINING, else releases one
 * command per reply. Replies come back in order; the DATA reply decides
 * whether the body goes out (354) or the attempt is settled from the
 * envelope's replies. The body is pulled from the store 64 KiB at a time,
 * only while the session's output has room (on_writable), so a 20 MB
 * attachment costs 64 KiB of memory here.
 */
#include "mk_outbox.h"

#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_log.h"
#include "mk_sasl.h"
#include "mk_smtp_session.h"
#include "mk_store.h"
#include "mk_str.h"
#include "mk_time.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define PIECE (64 * 1024)

enum ostate {
	O_CONNECTING = 0,
	O_AUTH,
	O_ENVELOPE, /* MAIL/RCPT/DATA replies outstanding */
	O_BODY,     /* streaming the message */
	O_DOT,      /* waiting for the reply to the final dot */
	O_RSET,
	O_QUIT,
	O_CLOSED,
};

struct mk_outbox {
	struct mk_outbox_opts o;
	uint64_t *ids;
	size_t next_idx;
	char *secret;
	struct mk_sasl sasl;
	bool sasl_active, sasl_initial_sent;
	char sasl_error[512];
	uint32_t account_id;
	void (*done)(void *ud, struct mk_outbox *ob);
	void *done_ud;
	struct mk_smtp_session *sess;
	enum ostate st;
	struct mk_outbox_result res;
	bool finished, cancelled, need_rset, stop_requested;
	/* the entry being sent */
	struct mk_store_outbox cur;
	bool have_cur;
	unsigned *rcpt_order; /* recipients submitted, in order (indexes into cur.rcpt) */
	unsigned n_order, rcpt_replies, rcpt_ok, rcpt_temp;
	int mail_code;
	char mail_reply[512];
	bool empty_data; /* 354 with nobody to send to: "." at once, reply ignored */
	struct mk_store_body_reader *reader;
	uint8_t *piece;
	size_t piece_len, piece_off;
};

static void next_message(struct mk_outbox *ob);

static void fail(struct mk_outbox *ob, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct mk_outbox *ob, int err, const char *fmt, ...)
{
	if (ob->res.err == 0) {
		ob->res.err = err;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(ob->res.error, sizeof(ob->res.error), fmt, ap);
		va_end(ap);
	}
	if (ob->sess != NULL)
		mk_smtp_session_abort(ob->sess, err, ob->res.error);
}

int64_t mk_outbox_retry_delay_s(unsigned attempts, uint64_t rnd)
{
	int64_t d = 60;
	for (unsigned i = 1; i < attempts && d < 3600; i++)
		d *= 2;
	if (d > 3600)
		d = 3600;
	/* +-10 % */
	int64_t span = d / 5;
	return d - d / 10 + (span > 0 ? (int64_t)(rnd % (uint64_t)(span + 1)) : 0);
}

static uint64_t rnd64(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
		v = (uint64_t)mk_time_mono_ms();
	return v;
}

/* ---- planning ---- */

struct plan_ctx {
	const struct mk_config_account *acct;
	int64_t now;
	bool ignore_backoff;
	const uint64_t *only;
	size_t n_only;
	struct mk_outbox_plan *p;
	/* due entries before limits: id, pending recipients */
	uint64_t *due;
	unsigned *due_rcpt;
	size_t n_due, cap_due;
	unsigned minute_count;  /* messages submitted in the last 60 s */
	int64_t minute_oldest;  /* oldest of those */
	uint64_t day_rcpt;      /* recipients served in the last 24 h */
	int64_t day_oldest;
};

static void plan_wake(struct mk_outbox_plan *p, int64_t t)
{
	if (p->next_due == 0 || t < p->next_due)
		p->next_due = t;
}

static int plan_cb(void *ud, const struct mk_store_outbox *o)
{
	struct plan_ctx *pc = ud;
	if (o->attempts > 0 && o->last_attempt > pc->now - 60) {
		pc->minute_count++;
		if (pc->minute_oldest == 0 || o->last_attempt < pc->minute_oldest)
			pc->minute_oldest = o->last_attempt;
	}
	if (o->done_at > pc->now - 86400 || (o->state == MK_STORE_OUTBOX_QUEUED && o->last_attempt > pc->now - 86400)) {
		unsigned served = 0;
		for (unsigned i = 0; i < o->n_rcpt; i++)
			served += o->rcpt[i].state == MK_STORE_RCPT_SENT;
		if (served > 0) {
			pc->day_rcpt += served;
			int64_t t = o->done_at ? o->done_at : o->last_attempt;
			if (pc->day_oldest == 0 || t < pc->day_oldest)
				pc->day_oldest = t;
		}
	}
	if (o->state != MK_STORE_OUTBOX_QUEUED)
		return 0;
	if (pc->n_only > 0) {
		bool want = false;
		for (size_t i = 0; i < pc->n_only && !want; i++)
			want = pc->only[i] == o->id;
		if (!want)
			return 0;
	}
	pc->p->queued++;
	int64_t when = o->send_at;
	if (!pc->ignore_backoff && o->next_attempt > when)
		when = o->next_attempt;
	if (when > pc->now) {
		plan_wake(pc->p, when);
		return 0;
	}
	if (pc->n_due == pc->cap_due) {
		pc->cap_due = pc->cap_due ? pc->cap_due * 2 : 64;
		pc->due = mk_xrealloc(pc->due, pc->cap_due * sizeof(*pc->due));
		pc->due_rcpt = mk_xrealloc(pc->due_rcpt, pc->cap_due * sizeof(*pc->due_rcpt));
	}
	unsigned pending = 0;
	for (unsigned i = 0; i < o->n_rcpt; i++)
		pending += o->rcpt[i].state == MK_STORE_RCPT_PENDING;
	pc->due[pc->n_due] = o->id;
	pc->due_rcpt[pc->n_due++] = pending;
	return 0;
}

int mk_outbox_plan(struct mk_store *st, const struct mk_config_account *acct, uint32_t account_id, int64_t now,
		   bool ignore_backoff, const uint64_t *only, size_t n_only, struct mk_outbox_plan *p)
{
	memset(p, 0, sizeof(*p));
	struct plan_ctx pc = {.acct = acct, .now = now, .ignore_backoff = ignore_backoff, .only = only,
			      .n_only = n_only, .p = p};
	int r = mk_store_outbox_list(st, account_id, plan_cb, &pc);
	if (r < 0) {
		mk_free(pc.due);
		mk_free(pc.due_rcpt);
		return r;
	}
	/* Microsoft counts messages per minute and recipients per day
	 * (OUTLOOK.md §4.2): take entries in queue order while both last. */
	unsigned minute_left = UINT32_MAX;
	if (acct->max_per_minute > 0)
		minute_left = pc.minute_count >= acct->max_per_minute ? 0 : acct->max_per_minute - pc.minute_count;
	uint64_t day_left = UINT64_MAX;
	if (acct->max_per_day > 0)
		day_left = pc.day_rcpt >= acct->max_per_day ? 0 : acct->max_per_day - pc.day_rcpt;
	p->ids = mk_xmalloc((pc.n_due ? pc.n_due : 1) * sizeof(uint64_t));
	for (size_t i = 0; i < pc.n_due; i++) {
		if (minute_left == 0) {
			p->minute_limited = true;
			p->limited++;
			continue;
		}
		if (pc.due_rcpt[i] > day_left) {
			p->day_limited = true;
			p->limited++;
			continue;
		}
		p->ids[p->n++] = pc.due[i];
		if (minute_left != UINT32_MAX)
			minute_left--;
		if (day_left != UINT64_MAX)
			day_left -= pc.due_rcpt[i];
	}
	if (p->minute_limited)
		plan_wake(p, (pc.minute_oldest ? pc.minute_oldest : now) + 60);
	if (p->day_limited)
		plan_wake(p, (pc.day_oldest ? pc.day_oldest : now) + 86400);
	mk_free(pc.due);
	mk_free(pc.due_rcpt);
	return 0;
}

void mk_outbox_plan_free(struct mk_outbox_plan *p)
{
	MK_FREE(&p->ids);
	p->n = 0;
}

/* ---- uncertain entries ---- */

struct unc_ctx {
	int64_t now, settle;
	struct mk_outbox_uncertain *u;
	size_t cap;
};

static int unc_cb(void *ud, const struct mk_store_outbox *o)
{
	struct unc_ctx *uc = ud;
	if (o->state != MK_STORE_OUTBOX_UNCERTAIN || o->message_id[0] == '\0')
		return 0;
	if (o->last_attempt + uc->settle > uc->now) {
		int64_t t = o->last_attempt + uc->settle;
		if (uc->u->wait_until == 0 || t < uc->u->wait_until)
			uc->u->wait_until = t;
		return 0;
	}
	if (uc->u->n == uc->cap) {
		uc->cap = uc->cap ? uc->cap * 2 : 16;
		uc->u->ids = mk_xrealloc(uc->u->ids, uc->cap * sizeof(uint64_t));
		uc->u->msgids = mk_xrealloc(uc->u->msgids, uc->cap * sizeof(char *));
	}
	uc->u->ids[uc->u->n] = o->id;
	uc->u->msgids[uc->u->n++] = mk_xstrdup(o->message_id);
	return 0;
}

int mk_outbox_uncertain_list(struct mk_store *st, uint32_t account_id, int64_t now, int64_t settle_s,
			     struct mk_outbox_uncertain *u)
{
	memset(u, 0, sizeof(*u));
	struct unc_ctx uc = {now, settle_s, u, 0};
	int r = mk_store_outbox_list(st, account_id, unc_cb, &uc);
	if (r < 0)
		mk_outbox_uncertain_free(u);
	return r;
}

void mk_outbox_uncertain_free(struct mk_outbox_uncertain *u)
{
	for (size_t i = 0; i < u->n; i++)
		mk_free(u->msgids[i]);
	MK_FREE(&u->msgids);
	MK_FREE(&u->ids);
	u->n = 0;
}

int mk_outbox_settle_uncertain(struct mk_store *st, uint64_t id, bool found, const char *folder)
{
	struct mk_store_outbox o;
	mk_store_outbox_init(&o);
	int r = mk_store_outbox_get(st, id, &o);
	if (r == 0 && o.state != MK_STORE_OUTBOX_UNCERTAIN)
		r = MK_ESTATE;
	if (r == 0) {
		int64_t now = mk_time_wall_s();
		o.phase = MK_STORE_OUTBOX_PHASE_NONE;
		if (found) {
			o.state = MK_STORE_OUTBOX_SENT;
			o.done_at = now;
			for (unsigned i = 0; i < o.n_rcpt; i++)
				if (o.rcpt[i].state == MK_STORE_RCPT_PENDING)
					o.rcpt[i].state = MK_STORE_RCPT_SENT;
			snprintf(o.last_reply, sizeof(o.last_reply),
				 "found in \"%s\" after an interrupted send: the server has it (not sent again)", folder);
		} else {
			o.state = MK_STORE_OUTBOX_QUEUED;
			o.next_attempt = 0;
			/* accepted by RCPT in the lost attempt, but never delivered */
			mk_store_outbox_rcpt_retry(&o);
			snprintf(o.last_reply, sizeof(o.last_reply),
				 "not in \"%s\" after an interrupted send: it did not get through, sending again", folder);
		}
		r = mk_store_outbox_update(st, &o, MK_STORE_OUTBOX_UNCERTAIN);
	}
	mk_store_outbox_cleanup(&o);
	return r;
}

struct unsaved_ctx {
	uint64_t *ids;
	size_t n, max;
};

static int unsaved_cb(void *ud, const struct mk_store_outbox *o)
{
	struct unsaved_ctx *uc = ud;
	if (o->state != MK_STORE_OUTBOX_SENT || (o->flags & MK_STORE_OUTBOX_SAVED) != 0)
		return 0;
	uc->ids[uc->n++] = o->id;
	return uc->n >= uc->max ? 1 : 0;
}

int mk_outbox_unsaved_list(struct mk_store *st, uint32_t account_id, size_t max, uint64_t **ids_r, size_t *n_r)
{
	struct unsaved_ctx uc = {mk_xmalloc((max ? max : 1) * sizeof(uint64_t)), 0, max ? max : 1};
	int r = mk_store_outbox_list(st, account_id, unsaved_cb, &uc);
	if (r < 0) {
		mk_free(uc.ids);
		return r;
	}
	*ids_r = uc.ids;
	*n_r = uc.n;
	return 0;
}

/* ---- settling an attempt ---- */

enum outcome {
	OUT_SENT = 0, /* accepted after the dot */
	OUT_TEMP,     /* try again later */
	OUT_PERM,     /* give up */
	OUT_UNCERTAIN,
};

static void release_body(struct mk_outbox *ob)
{
	mk_store_body_close(&ob->reader);
	ob->piece_len = ob->piece_off = 0;
}

/* Records the attempt's result durably and reports it. `reply` is the
 * server's reply (or the transport error) that decided it. */
static void settle(struct mk_outbox *ob, enum outcome oc, const char *reply)
{
	if (!ob->have_cur)
		return;
	struct mk_store_outbox *c = &ob->cur;
	int64_t now = mk_time_wall_s();
	release_body(ob);
	if (reply != NULL && reply[0] != '\0')
		mk_strlcpy(c->last_reply, reply, sizeof(c->last_reply));
	unsigned pending = 0, refused = 0;
	for (unsigned i = 0; i < c->n_rcpt; i++) {
		if (c->rcpt[i].state == MK_STORE_RCPT_PENDING)
			pending++;
		else if (c->rcpt[i].state == MK_STORE_RCPT_REFUSED)
			refused++;
	}
	switch (oc) {
	case OUT_SENT:
		if (pending > 0) {
			/* Some recipients were deferred (4xx to RCPT): they get the
			 * message on a later attempt, the others already have it. */
			oc = OUT_TEMP;
		} else {
			c->state = MK_STORE_OUTBOX_SENT;
			c->done_at = now;
			ob->res.sent++;
		}
		break;
	case OUT_PERM:
		c->state = MK_STORE_OUTBOX_FAILED;
		c->done_at = now;
		ob->res.failed++;
		/* the message as a whole was refused (e.g. 554 5.2.252 SendAsDenied
		 * after the dot): every recipient still pending shares the reply */
		for (unsigned i = 0; i < c->n_rcpt; i++)
			if (c->rcpt[i].state == MK_STORE_RCPT_PENDING) {
				c->rcpt[i].state = MK_STORE_RCPT_REFUSED;
				mk_strlcpy(c->rcpt[i].reply, c->last_reply, sizeof(c->rcpt[i].reply));
			}
		break;
	case OUT_UNCERTAIN:
		c->state = MK_STORE_OUTBOX_UNCERTAIN;
		ob->res.uncertain++;
		break;
	case OUT_TEMP:
		break;
	}
	if (oc == OUT_TEMP) {
		if (pending == 0 && refused == c->n_rcpt) {
			c->state = MK_STORE_OUTBOX_FAILED;
			c->done_at = now;
			ob->res.failed++;
		} else if (now - c->created >= (int64_t)ob->o.acct->max_queue_age_s) {
			char why[700];
			snprintf(why, sizeof(why), "gave up after %u attempts over %lld h: %s", c->attempts,
				 (long long)((now - c->created) / 3600), c->last_reply);
			mk_strlcpy(c->last_reply, why, sizeof(c->last_reply));
			c->state = MK_STORE_OUTBOX_FAILED;
			c->done_at = now;
			ob->res.failed++;
		} else {
			c->state = MK_STORE_OUTBOX_QUEUED;
			c->next_attempt = now + mk_outbox_retry_delay_s(c->attempts, rnd64());
			ob->res.deferred++;
		}
	}
	c->phase = MK_STORE_OUTBOX_PHASE_NONE;
	if (c->state == MK_STORE_OUTBOX_UNCERTAIN)
		c->phase = MK_STORE_OUTBOX_PHASE_DOT_SENT;
	int r = mk_store_outbox_update(ob->o.store, c, MK_STORE_OUTBOX_SENDING);
	if (r < 0)
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_SYNC, NULL, "account %s: outbox entry %llu: cannot record the result: %s",
		       ob->o.acct->name, (unsigned long long)c->id, mk_strerror(r));
	if (ob->o.on_entry != NULL)
		ob->o.on_entry(ob->o.ud, c);
	ob->have_cur = false;
}

/* The transport went away while an entry was in flight. */
static void settle_lost(struct mk_outbox *ob, const char *why)
{
	if (!ob->have_cur)
		return;
	if (ob->cur.phase == MK_STORE_OUTBOX_PHASE_DOT_SENT) {
		char msg[512];
		snprintf(msg, sizeof(msg), "connection lost after the message was sent, before the server's reply (%s)",
			 why);
		settle(ob, OUT_UNCERTAIN, msg);
		return;
	}
	/* Nothing was accepted: recipients accepted by RCPT did not get it. */
	mk_store_outbox_rcpt_retry(&ob->cur);
	settle(ob, OUT_TEMP, why);
}

/* ---- the envelope ---- */

static int submit(struct mk_outbox *ob, const struct mk_smtp_cmd *cmd)
{
	int r = mk_smtp_session_submit(ob->sess, cmd);
	if (r < 0)
		fail(ob, r, "account %s: cannot send %s: %s", ob->o.acct->name, mk_smtp_cmd_name(cmd->kind),
		     mk_strerror(r));
	return r;
}

/* Loads the next QUEUED entry and marks it SENDING. Returns 1 (have one),
 * 0 (none left), <0 (store error: run failed). */
static int take_next(struct mk_outbox *ob)
{
	while (ob->next_idx < ob->o.n_ids) {
		uint64_t id = ob->ids[ob->next_idx++];
		struct mk_store_outbox *c = &ob->cur;
		int r = mk_store_outbox_get(ob->o.store, id, c);
		if (r == MK_ENOTFOUND) {
			ob->res.skipped++;
			continue;
		}
		if (r < 0)
			return r;
		if (c->state != MK_STORE_OUTBOX_QUEUED || c->account != ob->account_id) {
			ob->res.skipped++; /* canceled or settled meanwhile */
			continue;
		}
		c->state = MK_STORE_OUTBOX_SENDING;
		c->phase = MK_STORE_OUTBOX_PHASE_NONE;
		c->attempts++;
		c->last_attempt = mk_time_wall_s();
		r = mk_store_outbox_update(ob->o.store, c, MK_STORE_OUTBOX_QUEUED);
		if (r == MK_ESTATE) {
			ob->res.skipped++;
			continue;
		}
		if (r < 0)
			return r;
		ob->have_cur = true;
		return 1;
	}
	return 0;
}

static void start_envelope(struct mk_outbox *ob)
{
	struct mk_store_outbox *c = &ob->cur;
	const struct mk_smtp_ehlo *e = mk_smtp_session_ehlo(ob->sess);
	char msg[512];
	if (e->size > 0 && c->size > e->size) {
		snprintf(msg, sizeof(msg), "message is %llu bytes; the server accepts at most %llu (EHLO SIZE)",
			 (unsigned long long)c->size, (unsigned long long)e->size);
		settle(ob, OUT_PERM, msg);
		next_message(ob);
		return;
	}
	if ((c->flags & MK_STORE_OUTBOX_SMTPUTF8) && !e->smtputf8) {
		settle(ob, OUT_PERM, "an address is not ASCII and the server does not offer SMTPUTF8");
		next_message(ob);
		return;
	}
	ob->n_order = ob->rcpt_replies = ob->rcpt_ok = ob->rcpt_temp = 0;
	ob->mail_code = 0;
	ob->mail_reply[0] = '\0';
	ob->empty_data = false;
	ob->rcpt_order = mk_xrealloc(ob->rcpt_order, (c->n_rcpt ? c->n_rcpt : 1) * sizeof(unsigned));
	ob->st = O_ENVELOPE;
	ob->res.attempted++;
	struct mk_smtp_cmd mail = {
		.kind = MK_SMTP_CMD_MAIL,
		.arg = c->from,
		.size = c->size,
		.body_8bit = (c->flags & MK_STORE_OUTBOX_8BIT) != 0,
		.smtputf8 = (c->flags & MK_STORE_OUTBOX_SMTPUTF8) != 0,
	};
	/* One write for the group (see mk_smtp_session_cork). */
	mk_smtp_session_cork(ob->sess, true);
	if (submit(ob, &mail) < 0)
		return;
	for (unsigned i = 0; i < c->n_rcpt; i++) {
		if (c->rcpt[i].state != MK_STORE_RCPT_PENDING)
			continue;
		struct mk_smtp_cmd rcpt = {.kind = MK_SMTP_CMD_RCPT, .arg = c->rcpt[i].addr};
		if (submit(ob, &rcpt) < 0)
			return;
		ob->rcpt_order[ob->n_order++] = i;
	}
	struct mk_smtp_cmd data = {.kind = MK_SMTP_CMD_DATA};
	if (submit(ob, &data) == 0 && ob->sess != NULL)
		mk_smtp_session_cork(ob->sess, false);
}

static void next_message(struct mk_outbox *ob)
{
	if (ob->res.err != 0 || ob->sess == NULL)
		return;
	int r = ob->stop_requested ? 0 : take_next(ob);
	if (r < 0) {
		fail(ob, r, "account %s: outbox: %s", ob->o.acct->name, mk_strerror(r));
		return;
	}
	if (r == 0) {
		ob->st = O_QUIT;
		struct mk_smtp_cmd q = {.kind = MK_SMTP_CMD_QUIT};
		(void)submit(ob, &q);
		return;
	}
	if (ob->need_rset) {
		ob->need_rset = false;
		ob->st = O_RSET;
		struct mk_smtp_cmd rs = {.kind = MK_SMTP_CMD_RSET};
		(void)submit(ob, &rs);
		return;
	}
	start_envelope(ob);
}

/* ---- the body ---- */

static void pump(struct mk_outbox *ob)
{
	while (ob->st == O_BODY && ob->sess != NULL) {
		if (ob->piece_off == ob->piece_len) {
			size_t n = 0;
			int r = mk_store_body_next(ob->reader, ob->piece, PIECE, &n);
			if (r < 0) {
				/* The stored copy is damaged: sending it would deliver
				 * garbage. Stop before the dot; nothing is accepted. */
				char msg[200];
				snprintf(msg, sizeof(msg), "the stored message is damaged (%s); run `mailkeep verify`",
					 mk_strerror(r));
				settle(ob, OUT_PERM, msg);
				fail(ob, r, "account %s: %s", ob->o.acct->name, msg);
				return;
			}
			if (n == 0) {
				/* All data is out: mark DOT_SENT durably, then the dot. */
				ob->cur.phase = MK_STORE_OUTBOX_PHASE_DOT_SENT;
				r = mk_store_outbox_update(ob->o.store, &ob->cur, MK_STORE_OUTBOX_SENDING);
				if (r < 0) {
					ob->cur.phase = MK_STORE_OUTBOX_PHASE_NONE;
					fail(ob, r, "account %s: cannot record progress: %s", ob->o.acct->name,
					     mk_strerror(r));
					return;
				}
				release_body(ob);
				ob->st = O_DOT;
				r = mk_smtp_session_data_end(ob->sess);
				if (r < 0)
					fail(ob, r, "account %s: cannot end the message: %s", ob->o.acct->name,
					     mk_strerror(r));
				return;
			}
			ob->piece_len = n;
			ob->piece_off = 0;
		}
		size_t taken = 0;
		int r = mk_smtp_session_data_write(ob->sess, ob->piece + ob->piece_off, ob->piece_len - ob->piece_off,
						   &taken);
		if (r < 0) {
			fail(ob, r, "account %s: cannot send the message: %s", ob->o.acct->name, mk_strerror(r));
			return;
		}
		ob->piece_off += taken;
		if (taken == 0)
			return; /* on_writable resumes */
	}
}

static void start_body(struct mk_outbox *ob)
{
	int r = mk_store_body_open(ob->o.store, ob->cur.sha, &ob->reader);
	if (r < 0) {
		/* Without its body the message cannot be sent: end the data at
		 * once would send an empty message, so drop the connection. */
		char msg[200];
		snprintf(msg, sizeof(msg), "the stored message cannot be read (%s); run `mailkeep verify`",
			 mk_strerror(r));
		settle(ob, OUT_PERM, msg);
		fail(ob, r, "account %s: %s", ob->o.acct->name, msg);
		return;
	}
	if (ob->piece == NULL)
		ob->piece = mk_xmalloc(PIECE);
	ob->piece_len = ob->piece_off = 0;
	ob->st = O_BODY;
	pump(ob);
}

/* ---- events ---- */

static void on_auth_reply(struct mk_outbox *ob, const struct mk_smtp_event *ev)
{
	char rt[500];
	if (ev->kind == MK_SMTP_EV_AUTH_CHALLENGE) {
		struct mk_buf out;
		mk_buf_init(&out, 64 * 1024);
		int r;
		if (!ob->sasl_initial_sent && mk_sasl_has_initial(&ob->sasl)) {
			r = mk_sasl_initial(&ob->sasl, &out);
			ob->sasl_initial_sent = true;
		} else {
			r = mk_sasl_step(&ob->sasl, ev->challenge.p, ev->challenge.n, &out);
		}
		if (r == MK_EAUTH) {
			mk_strlcpy(ob->sasl_error, mk_sasl_error(&ob->sasl), sizeof(ob->sasl_error));
			r = 0; /* the answer the mechanism requires is in out */
		}
		if (r == 0)
			r = mk_smtp_session_auth_respond(ob->sess, out.data, out.len);
		else
			(void)mk_smtp_session_auth_cancel(ob->sess);
		mk_buf_cleanup_wipe(&out);
		if (r < 0)
			fail(ob, MK_EAUTH, "account %s: authentication failed: unexpected challenge", ob->o.acct->name);
		return;
	}
	if (ev->kind != MK_SMTP_EV_REPLY || ev->cmd != MK_SMTP_CMD_AUTH)
		return;
	mk_sasl_cleanup(&ob->sasl);
	ob->sasl_active = false;
	if (ev->reply.code / 100 == 4) {
		/* "432 4.3.2 Concurrent connections limit exceeded", "454 4.7.0
		 * Temporary authentication failure": not a wrong credential, so
		 * not a login error; the queue waits and tries again. */
		mk_smtp_reply_format(&ev->reply, rt, sizeof(rt));
		fail(ob, MK_EUNAVAIL, "account %s: the server refused to log in for now: %s", ob->o.acct->name, rt);
		return;
	}
	if (ev->reply.code != 235) {
		mk_smtp_reply_format(&ev->reply, rt, sizeof(rt));
		fail(ob, MK_EAUTH, "account %s: authentication failed: %s%s%s", ob->o.acct->name, rt,
		     ob->sasl_error[0] ? " -- " : "", ob->sasl_error);
		return;
	}
	next_message(ob);
}

static void rcpt_reply(struct mk_outbox *ob, const struct mk_smtp_event *ev)
{
	if (ob->rcpt_replies >= ob->n_order) {
		fail(ob, MK_EPROTO, "account %s: more RCPT replies than recipients", ob->o.acct->name);
		return;
	}
	struct mk_store_outbox_rcpt *r = &ob->cur.rcpt[ob->rcpt_order[ob->rcpt_replies++]];
	int cls = ev->reply.code / 100;
	if (cls == 2) {
		r->state = MK_STORE_RCPT_SENT; /* tentatively: undone unless the dot is accepted */
		ob->rcpt_ok++;
	} else if (cls == 5 && ob->mail_code / 100 == 2) {
		r->state = MK_STORE_RCPT_REFUSED;
		mk_smtp_reply_format(&ev->reply, r->reply, sizeof(r->reply));
	} else {
		ob->rcpt_temp++;
		mk_smtp_reply_format(&ev->reply, r->reply, sizeof(r->reply));
	}
}

/* The envelope failed (no 354): settle from the replies collected. */
static void envelope_failed(struct mk_outbox *ob, const struct mk_smtp_reply *data_reply)
{
	char rt[1000];
	ob->need_rset = true;
	mk_store_outbox_rcpt_retry(&ob->cur);
	if (ob->mail_code / 100 != 2) {
		snprintf(rt, sizeof(rt), "MAIL FROM:<%s> refused: %s", ob->cur.from, ob->mail_reply);
		settle(ob, ob->mail_code / 100 == 5 ? OUT_PERM : OUT_TEMP, rt);
		return;
	}
	if (ob->rcpt_ok == 0 && ob->rcpt_temp == 0) {
		settle(ob, OUT_PERM, "every recipient was refused");
		return;
	}
	mk_smtp_reply_format(data_reply, rt, sizeof(rt));
	if (ob->rcpt_ok == 0) {
		char msg[600];
		snprintf(msg, sizeof(msg), "no recipient accepted now (%s)", ob->cur.rcpt[ob->rcpt_order[0]].reply);
		settle(ob, OUT_TEMP, msg);
		return;
	}
	settle(ob, data_reply->code / 100 == 5 ? OUT_PERM : OUT_TEMP, rt);
}

#ifdef MK_TEST_HOOKS
/* MK_TEST_OUTBOX_CRASH_REPLY=N: _exit(99) when the N-th reply to a final
 * dot arrives, before it is recorded (the server has the message; we do
 * not know it): the crash-after-dot case of the exactly-once tests. */
static void hook_reply(void)
{
	static unsigned seen;
	const char *e = getenv("MK_TEST_OUTBOX_CRASH_REPLY");
	if (e != NULL && strtoul(e, NULL, 10) == ++seen)
		_exit(99);
}
#endif

static void on_event(struct mk_smtp_session *s, const struct mk_smtp_event *ev, void *ud)
{
	struct mk_outbox *ob = ud;
	(void)s;
	char rt[500];
	if (ev->kind == MK_SMTP_EV_REPLY && ev->cmd == MK_SMTP_CMD_NONE) {
		/* 421: the server is closing the channel (RFC 5321 §3.8). */
		mk_smtp_reply_format(&ev->reply, rt, sizeof(rt));
		fail(ob, MK_ESERVER, "account %s: server closed the session: %s", ob->o.acct->name, rt);
		return;
	}
	switch (ob->st) {
	case O_AUTH:
		on_auth_reply(ob, ev);
		return;
	case O_ENVELOPE:
		if (ev->kind != MK_SMTP_EV_REPLY)
			return;
		if (ev->cmd == MK_SMTP_CMD_MAIL) {
			ob->mail_code = ev->reply.code;
			mk_smtp_reply_format(&ev->reply, ob->mail_reply, sizeof(ob->mail_reply));
		} else if (ev->cmd == MK_SMTP_CMD_RCPT) {
			rcpt_reply(ob, ev);
		} else if (ev->cmd == MK_SMTP_CMD_DATA) {
			if (ev->reply.code != 354) {
				envelope_failed(ob, &ev->reply);
				next_message(ob);
				return;
			}
			if (ob->mail_code / 100 != 2 || ob->rcpt_ok == 0) {
				/* RFC 2920 §3.1: DATA accepted with no valid
				 * recipient; end it empty and settle as refused. */
				ob->empty_data = true;
				ob->st = O_DOT;
				(void)mk_smtp_session_data_end(ob->sess);
				return;
			}
			start_body(ob);
		}
		return;
	case O_DOT:
		if (ev->kind != MK_SMTP_EV_REPLY || ev->cmd != MK_SMTP_CMD_DATA_END)
			return;
		if (ob->empty_data) {
			envelope_failed(ob, &ev->reply);
			next_message(ob);
			return;
		}
#ifdef MK_TEST_HOOKS
		hook_reply();
#endif
		mk_smtp_reply_format(&ev->reply, rt, sizeof(rt));
		if (ev->reply.code / 100 == 2) {
			/* "250 2.0.0 OK <id> [Hostname=...]" (Outlook) or
			 * "250 2.0.0 Ok: queued as 4Xyz" (Postfix). */
			mk_strlcpy(ob->cur.server_id, ev->reply.text, sizeof(ob->cur.server_id));
			settle(ob, OUT_SENT, rt);
		} else {
			ob->need_rset = false; /* the transaction is over either way */
			mk_store_outbox_rcpt_retry(&ob->cur);
			settle(ob, ev->reply.code / 100 == 5 ? OUT_PERM : OUT_TEMP, rt);
		}
		next_message(ob);
		return;
	case O_RSET:
		if (ev->kind == MK_SMTP_EV_REPLY && ev->cmd == MK_SMTP_CMD_RSET)
			start_envelope(ob);
		return;
	case O_QUIT:
		if (ev->kind == MK_SMTP_EV_REPLY && ev->cmd == MK_SMTP_CMD_QUIT)
			mk_smtp_session_close(ob->sess);
		return;
	case O_CONNECTING:
	case O_BODY:
	case O_CLOSED:
		return;
	}
}

static void on_writable(struct mk_smtp_session *s, void *ud)
{
	(void)s;
	pump(ud);
}

static int sasl_mech(enum mk_config_auth a, enum mk_sasl_mech *m_r)
{
	switch (a) {
	case MK_CONFIG_AUTH_PLAIN:
		*m_r = MK_SASL_PLAIN;
		return 0;
	case MK_CONFIG_AUTH_LOGIN:
		*m_r = MK_SASL_LOGIN;
		return 0;
	case MK_CONFIG_AUTH_XOAUTH2:
		*m_r = MK_SASL_XOAUTH2;
		return 0;
	}
	return MK_EINVAL;
}

static void on_ready(struct mk_smtp_session *s, void *ud)
{
	struct mk_outbox *ob = ud;
	const struct mk_config_account *a = ob->o.acct;
	enum mk_sasl_mech mech;
	if (sasl_mech(a->auth, &mech) < 0) {
		fail(ob, MK_ECONFIG, "account %s: unknown auth", a->name);
		return;
	}
	const char *name = mk_sasl_mech_name(mech);
	const struct mk_smtp_ehlo *e = mk_smtp_session_ehlo(s);
	if (!mk_smtp_session_has_auth(s, name)) {
		if (e->auth[0] == '\0')
			fail(ob, MK_EAUTH,
			     "account %s: the server offers no authentication (EHLO has no AUTH); submission needs it",
			     a->name);
		else
			fail(ob, MK_EAUTH, "account %s: the server offers AUTH %s, but the account uses %s", a->name,
			     e->auth, name);
		return;
	}
	int r = mk_sasl_init(&ob->sasl, mech, a->user, (const uint8_t *)ob->secret, strlen(ob->secret),
			     a->smtp.host, a->smtp.port);
	if (r < 0) {
		fail(ob, MK_EAUTH, "account %s: cannot build the %s response: %s", a->name, name, mk_strerror(r));
		return;
	}
	ob->sasl_active = true;
	ob->st = O_AUTH;
	/* PLAIN goes with the command when it fits RFC 4954's 512 octets;
	 * XOAUTH2 always in two steps (Outlook, OUTLOOK.md §1.2). */
	struct mk_buf ir;
	mk_buf_init(&ir, 64 * 1024);
	struct mk_smtp_cmd cmd = {.kind = MK_SMTP_CMD_AUTH, .mech = name};
	if (mech == MK_SASL_PLAIN && mk_sasl_initial(&ob->sasl, &ir) == 0 && ir.len * 4 / 3 + 20 < 500) {
		cmd.initial = ir.data;
		cmd.initial_len = ir.len;
		ob->sasl_initial_sent = true;
	}
	(void)submit(ob, &cmd);
	mk_buf_cleanup_wipe(&ir);
}

static void on_close(struct mk_smtp_session *s, int err, const char *msg, void *ud)
{
	struct mk_outbox *ob = ud;
	(void)s;
	ob->sess = NULL;
	if (err != 0 && ob->res.err == 0) {
		ob->res.err = err;
		snprintf(ob->res.error, sizeof(ob->res.error), "account %s: %s", ob->o.acct->name, msg);
	}
	if (err == 0 && ob->res.err == 0 && ob->st != O_QUIT) {
		ob->res.err = MK_ECANCELED;
		mk_strlcpy(ob->res.error, "connection closed before QUIT", sizeof(ob->res.error));
	}
	settle_lost(ob, ob->res.error[0] ? ob->res.error : "connection closed");
	ob->st = O_CLOSED;
	ob->finished = true;
	if (ob->done != NULL)
		ob->done(ob->done_ud, ob);
}

int mk_outbox_start(const struct mk_outbox_opts *opts, void (*done)(void *ud, struct mk_outbox *ob), void *ud,
		    struct mk_outbox **ob_r)
{
	const struct mk_config_account *a = opts->acct;
	if (a->smtp.host == NULL)
		return MK_ENOTFOUND;
	struct mk_outbox *ob = mk_xcalloc(1, sizeof(*ob));
	ob->o = *opts;
	ob->ids = mk_xmalloc((opts->n_ids ? opts->n_ids : 1) * sizeof(uint64_t));
	if (opts->n_ids)
		memcpy(ob->ids, opts->ids, opts->n_ids * sizeof(uint64_t));
	ob->o.ids = ob->ids;
	ob->secret = mk_xstrdup(opts->secret ? opts->secret : "");
	ob->done = done;
	ob->done_ud = ud;
	mk_store_outbox_init(&ob->cur);
	int r = mk_store_account(opts->store, a->name, true, &ob->account_id);
	if (r < 0) {
		ob->finished = true;
		mk_outbox_free(&ob);
		return r;
	}
	char host[256] = "";
	const char *ehlo = opts->ehlo_name;
	if (ehlo == NULL) {
		/* A FQDN if the system has one; else "localhost", as msmtp does. */
		if (gethostname(host, sizeof(host) - 1) == 0 && strchr(host, '.') != NULL)
			ehlo = host;
		else
			ehlo = "localhost";
	}
	struct mk_smtp_session_opts so = {
		.conn =
			{
				.host = a->smtp.host,
				.port = a->smtp.port,
				.implicit_tls = a->smtp.tls == MK_CONFIG_TLS_IMPLICIT,
				.tls_ctx = opts->tls_ctx,
				.tls_fingerprint = a->tls_fingerprint,
				.connect_timeout_ms = a->timeout_s * 1000,
				.handshake_timeout_ms = a->timeout_s * 1000,
				/* RFC 5321 §4.5.3.2.6: up to 10 minutes for the reply to
				 * the dot; uploads keep the timer alive (mk_conn). */
				.idle_timeout_ms = a->timeout_s * 1000 * 4 > 600000 ? a->timeout_s * 1000 * 4 : 600000,
				.id = 200,
				.log_account = a->name,
			},
		.ehlo_name = ehlo,
		.trace = opts->trace,
	};
	static const struct mk_smtp_session_cbs cbs = {on_ready, on_event, on_writable, on_close};
	r = mk_smtp_session_start(opts->loop, &so, &cbs, ob, &ob->sess);
	if (r < 0) {
		ob->finished = true;
		mk_outbox_free(&ob);
		return r;
	}
	*ob_r = ob;
	return 0;
}

const struct mk_outbox_result *mk_outbox_result(const struct mk_outbox *ob)
{
	return &ob->res;
}

void mk_outbox_cancel(struct mk_outbox *ob)
{
	if (ob->cancelled || ob->sess == NULL)
		return;
	ob->cancelled = true;
	fail(ob, MK_ECANCELED, "cancelled");
}

void mk_outbox_stop(struct mk_outbox *ob)
{
	ob->stop_requested = true;
	/* Not yet sending (connecting, logging in): nothing to finish. */
	if (ob->sess != NULL && !ob->have_cur && ob->st != O_QUIT)
		fail(ob, MK_ECANCELED, "stopped");
}

void mk_outbox_free(struct mk_outbox **obp)
{
	struct mk_outbox *ob = *obp;
	if (ob == NULL)
		return;
	MK_ASSERT(ob->sess == NULL);
	release_body(ob);
	if (ob->sasl_active)
		mk_sasl_cleanup(&ob->sasl);
	mk_store_outbox_cleanup(&ob->cur);
	mk_free(ob->rcpt_order);
	mk_free(ob->piece);
	mk_free(ob->ids);
	if (ob->secret != NULL) {
		explicit_bzero(ob->secret, strlen(ob->secret));
		mk_free(ob->secret);
	}
	MK_FREE(obp);
}
