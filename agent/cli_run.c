/* SPDX-License-Identifier: MIT */
/*
 * cli_run.c - `mailkeep run`: the agent. One libuv loop for every account:
 * a full sync at start, then the folders matching `idle` stay open in
 * IMAP IDLE (new mail is in the store within a second), the other folders
 * are synced every `poll_interval`. Lost connections come back with
 * backoff, per account; an authentication failure stops that account
 * only, until the configuration is reloaded.
 *
 * Signals: SIGTERM/SIGINT commit what was received, send DONE + LOGOUT,
 * close every handle and exit 0 (forced after 10 s). SIGHUP reloads the
 * configuration: accounts whose settings did not change keep their
 * connections; added, removed and changed accounts are started, stopped
 * and restarted.
 */
#include "cli.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_log.h"
#include "mk_store.h"
#include "mk_sync.h"
#include "mk_time.h"
#include "mk_tls.h"
#include "mk_buf.h"
#include "mk_control.h"
#include "mk_lock.h"
#include "mk_metrics.h"
#include "mk_notify.h"
#include "mk_pop3_fetch.h"
#include "mk_backoff.h"
#include "mk_outbox.h" /* issue 5 */
#include "mk_sentcheck.h"
#include "mk_oauth.h" /* issue 6 */

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

struct agent;

struct acct {
	struct agent *ag;
	struct mk_config_account *cfg; /* points into ag->cfg */
	char *fingerprint;             /* the account's settings, to detect changes on reload */
	struct mk_tls_ctx *tls;
	char *secret;
	struct mk_sync *watch;   /* the IDLE engine */
	struct mk_sync *poll;    /* a periodic sync of the other folders, while it runs */
	struct mk_pop3_fetch *pop3; /* a periodic POP3 download, while it runs */
	int64_t last_sync;
	uv_timer_t poll_timer;
	bool poll_timer_open;
	bool synced;             /* first sync done */
	bool stopping;
	bool failed;             /* stopped until reload (auth failure, config) */
	bool removed;            /* no longer in the configuration: freed once stopped */
	char status[700];
	/* issue 5: the outbox of this account */
	struct mk_outbox *send;       /* a sending run, while it runs */
	struct mk_sentcheck *check;   /* looking for uncertain sends in the server's Sent folder */
	uint64_t *check_ids;
	uv_timer_t send_timer;        /* armed for the next due entry */
	bool send_timer_open;
	bool send_again;              /* asked to look again while a run was going */
	bool send_flush;              /* ... ignoring retry times (`outbox flush`) */
	struct mk_backoff send_backoff; /* connection-level failures (no entry reached MAIL) */
	int64_t send_blocked_until;   /* wall seconds; 0: not blocked */
	char send_status[700];
	/* issue 6: auth = xoauth2 -- `secret` is the access token for the
	 * short runs (POP3, outbox, Sent lookup) while valid until secret_until
	 * (mono ms); the IDLE engine asks the token manager itself */
	int64_t secret_until;
	bool tok_pending;
	unsigned tok_then; /* TOK_THEN_*: what waits for the token */
	uint64_t gen;      /* identifies this acct to a token callback */
	struct acct *next;
};

#define TOK_THEN_POP3 1u
#define TOK_THEN_SEND 2u

struct agent {
	uv_loop_t loop;
	const struct mk_cli *cli;
	struct mk_config *cfg;
	struct mk_store *store;
	struct acct *accts;
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_timer_t force_timer;
	bool stopping;
	bool force_timer_open;
	bool ready_sent;
	int exit_code;
	struct mk_config **old_cfgs; /* trees replaced by reloads; engines may still point into them */
	size_t n_old;
	struct mk_lock *lock;
	struct mk_control *control;
	struct mk_metrics *metrics;
	uv_timer_t watchdog;
	bool watchdog_open;
	uv_timer_t clock;     /* detects wall-clock jumps (suspend/resume) */
	bool clock_open;
	int64_t clock_wall_ms;
	uint64_t clock_mono_ms;
	struct mk_oauth *oauth; /* issue 6: access tokens of the xoauth2 accounts */
	uint64_t next_gen;
};

static void acct_start(struct acct *a);
static void send_schedule(struct acct *a, bool flush);
static void acct_stop(struct acct *a, bool graceful);
static void maybe_finish(struct agent *ag);
static int acct_secret(struct acct *a, unsigned then, char **secret_r, char **error_r); /* issue 6 */
static void send_arm(struct acct *a, int64_t when);

static char *fingerprint(const struct mk_config_account *c)
{
	return mk_xasprintf("%s|%s|%d|%s|%s|%s:%u:%d|%s|%s|%u|%u|%s|%s|%u|%u|%s:%u:%d|%u|%u|%u|%s|%s", c->email,
			    c->user, (int)c->auth, c->password ? c->password : "", c->pass_cmd ? c->pass_cmd : "",
			    c->imap.host ? c->imap.host : "", c->imap.port, (int)c->imap.tls,
			    c->tls_ca_file ? c->tls_ca_file : "", c->tls_fingerprint ? c->tls_fingerprint : "",
			    c->timeout_s, c->max_connections, c->folders, c->idle, c->poll_interval_s,
			    c->idle_refresh_s, c->smtp.host ? c->smtp.host : "", c->smtp.port, (int)c->smtp.tls,
			    c->max_per_minute, c->max_per_day, c->max_queue_age_s, c->save_sent ? c->save_sent : "",
			    c->server_saves_sent ? c->server_saves_sent : "");
}

static void on_synced(void *ud, const char *account)
{
	struct acct *a = ud;
	if (!a->synced) {
		a->synced = true;
		if (!a->failed)
			mk_log(MK_LOG_INFO, MK_LOG_CAT_SCHED, NULL, "account %s: backed up; watching with IDLE", account);
	}
	bool all = true;
	for (struct acct *x = a->ag->accts; x != NULL; x = x->next)
		if (!x->synced && !x->failed)
			all = false;
	if (all && !a->ag->ready_sent) {
		a->ag->ready_sent = true;
		mk_log(MK_LOG_INFO, MK_LOG_CAT_SCHED, NULL, "all accounts backed up; agent ready");
		printf("mailkeep: ready\n");
		fflush(stdout);
		unsigned n = 0, bad = 0;
		for (struct acct *x = a->ag->accts; x != NULL; x = x->next) {
			n++;
			bad += x->failed;
		}
		mk_notify_send("READY=1\nSTATUS=%u account(s) backed up and watched%s", n - bad,
			       bad ? ", some stopped (see mailkeep status)" : "");
	}
}

/* Every account failed at start: say so (the agent keeps running for a
 * reload). */
static void on_synced_check(struct agent *ag)
{
	bool any = false;
	for (struct acct *a = ag->accts; a != NULL; a = a->next)
		if (!a->failed)
			any = true;
	if (!any && ag->accts != NULL)
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_SCHED, NULL, "no account could start; waiting for a reload (SIGHUP)");
}

static void on_push(void *ud, const char *account, const char *folder, uint64_t n, double ms)
{
	struct acct *a = ud;
	struct mk_metrics_labels l = {account, NULL, NULL};
	mk_metrics_hist_observe(a->ag->metrics, MK_METRIC_PUSH_LATENCY, &l, ms / 1000.0);
	mk_log(MK_LOG_INFO, MK_LOG_CAT_SYNC, NULL, "account %s, folder %s: %llu new message(s) stored %.1f ms after "
						    "the server announced them",
	       account, folder, (unsigned long long)n, ms);
}

static void on_folder(void *ud, const char *account, const struct mk_sync_folder_result *fr)
{
	struct acct *a = ud;
	struct mk_metrics_labels l = {account, fr->name, NULL};
	struct mk_metrics_labels lk = {account, fr->name, fr->err ? NULL : "sync"};
	a->last_sync = (int64_t)time(NULL);
	if (fr->err != 0) {
		struct mk_metrics_labels le = {account, NULL, fr->err == MK_EAUTH ? "auth" : "folder"};
		mk_metrics_counter_add(a->ag->metrics, MK_METRIC_ERRORS, &le, 1);
		return; /* logged by the engine */
	}
	mk_metrics_counter_add(a->ag->metrics, MK_METRIC_SYNCS, &lk, 1);
	mk_metrics_counter_add(a->ag->metrics, MK_METRIC_MESSAGES_STORED, &l, fr->new_messages);
	mk_metrics_counter_add(a->ag->metrics, MK_METRIC_BYTES_STORED, &l, fr->new_bytes);
	mk_metrics_gauge_set(a->ag->metrics, MK_METRIC_LAST_SYNC, &l, (double)a->last_sync);
	if (fr->new_messages || fr->flag_updates || fr->gone)
		mk_log(MK_LOG_INFO, MK_LOG_CAT_SYNC, NULL,
		       "account %s, folder %s: %llu new (%.1f MB), %llu flag changes, %llu gone", account, fr->name,
		       (unsigned long long)fr->new_messages, (double)fr->new_bytes / 1e6,
		       (unsigned long long)fr->flag_updates, (unsigned long long)fr->gone);
}

static void watch_done(void *ud, struct mk_sync *s)
{
	struct acct *a = ud;
	const struct mk_sync_result *res = mk_sync_result(s);
	if (!a->stopping) {
		/* the engine gave up: an authentication failure, or the first
		 * connection could never be made */
		a->failed = true;
		snprintf(a->status, sizeof(a->status), "stopped: %s", res->error[0] ? res->error : "unknown error");
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_SCHED, NULL,
		       "account %s: %s; fix the configuration and reload (SIGHUP)", a->cfg->name, a->status);
		on_synced(a, a->cfg->name); /* the others may be ready */
	}
	/* freed from the loop: never inside the engine's own callback chain */
	a->watch = NULL;
	mk_sync_free(&s);
	maybe_finish(a->ag);
}

static void poll_done(void *ud, struct mk_sync *s)
{
	struct acct *a = ud;
	a->poll = NULL;
	mk_sync_free(&s);
	maybe_finish(a->ag);
}

static void pop3_done(void *ud, struct mk_pop3_fetch *f)
{
	struct acct *a = ud;
	const struct mk_pop3_fetch_result *r = mk_pop3_fetch_result(f);
	if (r->err != 0)
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s (POP3): %s", a->cfg->name, r->error);
	else if (r->new_messages)
		mk_log(MK_LOG_INFO, MK_LOG_CAT_SYNC, NULL, "account %s (POP3): %llu new", a->cfg->name,
		       (unsigned long long)r->new_messages);
	a->pop3 = NULL;
	mk_pop3_fetch_free(&f);
	maybe_finish(a->ag);
}

static void start_pop3(struct acct *a)
{
	if (a->pop3 != NULL || a->cfg->fetch == MK_CONFIG_FETCH_IMAP || a->cfg->pop3.host == NULL)
		return;
	char *secret = NULL, *error = NULL;
	int r = a->cfg->auth == MK_CONFIG_AUTH_XOAUTH2 ? acct_secret(a, TOK_THEN_POP3, &secret, &error) : 0;
	if (r != 0) {
		if (r < 0)
			mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s (POP3): %s", a->cfg->name, error);
		mk_free(error);
		return; /* 1: started again when the token arrives */
	}
	struct mk_pop3_fetch_opts po = {
		.loop = &a->ag->loop,
		.acct = a->cfg,
		.store = a->ag->store,
		.tls_ctx = a->tls,
		.secret = secret != NULL ? secret : a->secret,
		.ud = a,
	};
	if (mk_pop3_fetch_start(&po, pop3_done, a, &a->pop3) < 0)
		a->pop3 = NULL;
	mk_config_secret_free(&secret);
}

/* ---- issue 6: access tokens (auth = xoauth2) ----
 *
 * The IDLE and poll engines ask the token manager themselves before each
 * login (mk_sync_opts.get_secret: fresh tokens on reconnect, a forced
 * refresh after AccessTokenExpired, re-authentication at 85 % of the
 * lifetime). The short runs take the account's current token, fetched
 * here asynchronously: they are started again when it arrives. A refused
 * sign-in (MK_EAUTH: "run `mailkeep login NAME`") stops this account only,
 * until a reload. */

struct engine_tok {
	mk_sync_secret_done *done;
	void *req;
};

static void on_engine_token(int err, const char *msg, const struct mk_oauth_token *tok, void *ud)
{
	struct engine_tok *t = ud;
	t->done(t->req, err, msg, err == 0 ? tok->access_token : NULL, err == 0 ? tok->valid_ms : 0);
	mk_free(t);
}

static int engine_get_secret(void *ud, bool force, mk_sync_secret_done *done, void *req)
{
	struct acct *a = ud;
	struct engine_tok *t = mk_xcalloc(1, sizeof(*t));
	t->done = done;
	t->req = req;
	int r = a->ag->oauth != NULL ? mk_oauth_token_get(a->ag->oauth, a->cfg, force, on_engine_token, t, NULL)
				     : MK_ECANCELED;
	if (r < 0)
		mk_free(t);
	return r;
}

/* The account cannot get tokens until the user signs in again. */
static void acct_auth_failed(struct acct *a, const char *msg)
{
	if (a->failed)
		return;
	a->failed = true;
	snprintf(a->status, sizeof(a->status), "stopped: %s", msg);
	mk_log(MK_LOG_ERROR, MK_LOG_CAT_SCHED, NULL, "account %s: %s; then reload (SIGHUP)", a->cfg->name, a->status);
	acct_stop(a, false);
	on_synced(a, a->cfg->name); /* the others may be ready */
}

struct acct_tok {
	struct agent *ag;
	uint64_t gen;
};

static void start_pop3(struct acct *a);
static void on_acct_token(int err, const char *msg, const struct mk_oauth_token *tok, void *ud)
{
	struct acct_tok *t = ud;
	struct acct *a = t->ag->accts;
	while (a != NULL && a->gen != t->gen)
		a = a->next;
	mk_free(t);
	if (a == NULL)
		return; /* the account is gone */
	a->tok_pending = false;
	unsigned then = a->tok_then;
	a->tok_then = 0;
	if (a->stopping || a->ag->stopping || err == MK_ECANCELED)
		return;
	if (err == MK_EAUTH) {
		acct_auth_failed(a, msg);
		return;
	}
	if (err != 0) {
		mk_log(MK_LOG_WARN, MK_LOG_CAT_OAUTH, NULL, "account %s: cannot get an access token: %s", a->cfg->name,
		       msg);
		if ((then & TOK_THEN_SEND) != 0) {
			snprintf(a->send_status, sizeof(a->send_status), "last error: cannot get an access token: %s", msg);
			uint64_t ms = mk_backoff_next_ms(&a->send_backoff);
			a->send_blocked_until = mk_time_wall_s() + (int64_t)(ms / 1000);
			send_arm(a, a->send_blocked_until);
		}
		return;
	}
	mk_config_secret_free(&a->secret);
	a->secret = mk_xstrdup(tok->access_token);
	a->secret_until = mk_time_mono_ms() + tok->valid_ms;
	if ((then & TOK_THEN_POP3) != 0)
		start_pop3(a);
	if ((then & TOK_THEN_SEND) != 0)
		send_schedule(a, false);
}

/* The secret for a short run: 0 and a copy in *secret_r (the password,
 * or the access token while valid for one more minute); 1 when a token
 * is on its way (`then` runs again when it arrives); <0 and *error_r. */
static int acct_secret(struct acct *a, unsigned then, char **secret_r, char **error_r)
{
	*secret_r = NULL;
	*error_r = NULL;
	if (a->cfg->auth != MK_CONFIG_AUTH_XOAUTH2)
		return mk_config_get_secret(a->cfg, secret_r, error_r);
	if (a->secret != NULL && a->secret_until > mk_time_mono_ms() + 60000) {
		*secret_r = mk_xstrdup(a->secret);
		return 0;
	}
	a->tok_then |= then;
	if (a->tok_pending)
		return 1;
	struct acct_tok *t = mk_xcalloc(1, sizeof(*t));
	t->ag = a->ag;
	t->gen = a->gen;
	int r = mk_oauth_token_get(a->ag->oauth, a->cfg, false, on_acct_token, t, NULL);
	if (r < 0) {
		mk_free(t);
		a->tok_then = 0;
		*error_r = mk_xasprintf("account %s: auth = xoauth2 needs oauth_client_id (then `mailkeep login %s`) "
					"or token_cmd",
					a->cfg->name, a->cfg->name);
		return r;
	}
	a->tok_pending = true;
	return 1;
}

static void on_poll_timer(uv_timer_t *t)
{
	struct acct *a = t->data;
	if (a->stopping || a->failed || a->ag->stopping)
		return;
	start_pop3(a); /* POP3 has no push: it is polled */
	if (a->poll != NULL || a->cfg->fetch == MK_CONFIG_FETCH_POP3)
		return;
	struct mk_sync_opts so = {
		.loop = &a->ag->loop,
		.acct = a->cfg,
		.store = a->ag->store,
		.tls_ctx = a->tls,
		.secret = a->secret,
		.get_secret = a->cfg->auth == MK_CONFIG_AUTH_XOAUTH2 ? engine_get_secret : NULL, /* issue 6 */
		.secret_ud = a,
		.skip_idle = true,
		.on_folder = on_folder,
		.ud = a,
	};
	if (mk_sync_start(&so, poll_done, a, &a->poll) < 0)
		a->poll = NULL;
}

/* ---- issue 5: the outbox in the agent ----
 *
 * One sending run at a time per account, started when something is due:
 * at start-up, when a command queued a message (control request
 * "outbox"), and on a timer armed for the earliest scheduled, deferred or
 * rate-limited entry. No polling: between those, nothing runs. A run that
 * could not reach any message (connection refused, TLS, login) backs the
 * account's outbox off (30 s doubling to 30 min) so a dead server is not
 * hammered; entries it did reach carry their own retry times. */

static void on_send_timer(uv_timer_t *t)
{
	send_schedule(t->data, false);
}

static void send_arm(struct acct *a, int64_t when)
{
	if (!a->send_timer_open) {
		uv_timer_init(&a->ag->loop, &a->send_timer);
		a->send_timer.data = a;
		a->send_timer_open = true;
	}
	int64_t now = mk_time_wall_s();
	/* Wall-clock times, re-planned on every wake-up: a timer that fires
	 * early after a clock change just plans again. */
	uint64_t ms = when > now ? (uint64_t)(when - now) * 1000 : 0;
	uv_timer_start(&a->send_timer, on_send_timer, ms + 50, 0);
}

static void on_send_entry(void *ud, const struct mk_store_outbox *o)
{
	struct acct *a = ud;
	const char *acc = a->cfg->name;
	switch (o->state) {
	case MK_STORE_OUTBOX_SENT:
		mk_log(MK_LOG_INFO, MK_LOG_CAT_SYNC, NULL, "account %s: outbox %llu sent (%s)", acc,
		       (unsigned long long)o->id, o->last_reply);
		break;
	case MK_STORE_OUTBOX_FAILED:
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_SYNC, NULL, "account %s: outbox %llu failed: %s", acc,
		       (unsigned long long)o->id, o->last_reply);
		break;
	case MK_STORE_OUTBOX_UNCERTAIN:
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s: outbox %llu uncertain: %s", acc,
		       (unsigned long long)o->id, o->last_reply);
		break;
	default:
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s: outbox %llu deferred: %s", acc,
		       (unsigned long long)o->id, o->last_reply);
		break;
	}
}

static void send_done(void *ud, struct mk_outbox *ob)
{
	struct acct *a = ud;
	const struct mk_outbox_result *r = mk_outbox_result(ob);
	if (r->err != 0 && r->err != MK_ECANCELED) {
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s: outbox: %s", a->cfg->name, r->error);
		snprintf(a->send_status, sizeof(a->send_status), "last error: %s", r->error);
	} else if (r->err == 0) {
		a->send_status[0] = '\0';
	}
	if (r->err != 0 && r->err != MK_ECANCELED && r->attempted == 0) {
		uint64_t ms = mk_backoff_next_ms(&a->send_backoff);
		a->send_blocked_until = mk_time_wall_s() + (int64_t)(ms / 1000);
	} else if (r->err == 0) {
		mk_backoff_reset(&a->send_backoff);
		a->send_blocked_until = 0;
	}
	a->send = NULL;
	mk_outbox_free(&ob);
	if (!a->stopping && !a->ag->stopping) {
		bool flush = a->send_flush;
		a->send_flush = false;
		a->send_again = false;
		send_schedule(a, flush);
	}
	maybe_finish(a->ag);
}

static void check_done(void *ud, struct mk_sentcheck *c)
{
	struct acct *a = ud;
	const struct mk_sentcheck_result *res = mk_sentcheck_result(c);
	const char *folder = a->cfg->server_saves_sent ? a->cfg->server_saves_sent : a->cfg->save_sent;
	if (res->saved > 0)
		mk_log(MK_LOG_INFO, MK_LOG_CAT_SYNC, NULL, "account %s: %u sent message(s) saved in \"%s\"", a->cfg->name,
		       res->saved, folder);
	if (res->err != 0) {
		if (res->err != MK_ECANCELED)
			mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s: \"%s\": %s (retrying later)", a->cfg->name,
			       folder, res->error);
		uint64_t ms = mk_backoff_next_ms(&a->send_backoff);
		a->send_blocked_until = mk_time_wall_s() + (int64_t)(ms / 1000);
	} else {
		for (size_t i = 0; i < res->n; i++) {
			int r = mk_outbox_settle_uncertain(a->ag->store, a->check_ids[i], res->found[i], folder);
			if (r == 0)
				mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s: outbox %llu: %s in \"%s\" (of %u "
									   "messages): %s",
				       a->cfg->name, (unsigned long long)a->check_ids[i], res->found[i] ? "found" : "not found",
				       folder, res->scanned, res->found[i] ? "it was sent" : "sending it again");
		}
	}
	a->check = NULL;
	MK_FREE(&a->check_ids);
	mk_sentcheck_free(&c);
	if (!a->stopping && !a->ag->stopping)
		send_schedule(a, false);
	maybe_finish(a->ag);
}

/* How long after an interrupted send its server copy may still be on its
 * way to Sent (tests shorten it). */
static int64_t settle_seconds(void)
{
#ifdef MK_TEST_HOOKS
	const char *e = getenv("MK_TEST_SETTLE_S");
	if (e != NULL)
		return strtol(e, NULL, 10);
#endif
	return MK_OUTBOX_SETTLE_S;
}

/* Uncertain entries are looked up in the server's Sent folder before
 * anything else is sent. Returns true when a lookup runs (or must wait). */
static bool check_uncertain(struct acct *a, int64_t *wait_r)
{
	struct agent *ag = a->ag;
	if (a->check != NULL)
		return true;
	if ((a->cfg->server_saves_sent == NULL && a->cfg->save_sent == NULL) || a->cfg->imap.host == NULL)
		return false; /* no way to know: left to the user (`outbox retry`/`cancel`) */
	int64_t now = mk_time_wall_s();
	if (a->send_blocked_until > now)
		return false;
	uint32_t aid = 0;
	struct mk_outbox_uncertain u;
	memset(&u, 0, sizeof(u));
	uint64_t *save_ids = NULL;
	size_t n_save = 0;
	if (mk_store_account(ag->store, a->cfg->name, true, &aid) < 0)
		return false;
	if (a->cfg->server_saves_sent != NULL && mk_outbox_uncertain_list(ag->store, aid, now, settle_seconds(), &u) < 0)
		return false;
	/* save_sent: copies of what was sent, over the same connection */
	if (a->cfg->save_sent != NULL && mk_outbox_unsaved_list(ag->store, aid, 100, &save_ids, &n_save) < 0)
		return false;
	if (u.n == 0 && n_save == 0) {
		*wait_r = u.wait_until;
		mk_outbox_uncertain_free(&u);
		mk_free(save_ids);
		return false;
	}
	char *secret = NULL, *error = NULL;
	struct mk_tls_ctx *tls = NULL;
	int r = acct_secret(a, TOK_THEN_SEND, &secret, &error); /* issue 6 */
	if (r > 0) {
		mk_outbox_uncertain_free(&u);
		mk_free(save_ids);
		return true; /* send_schedule runs again with the token */
	}
	if (r == 0)
		r = mk_cli_tls_ctx(a->cfg->tls_ca_file, &tls, &error);
	if (r == 0) {
		struct mk_sentcheck_opts co = {
			.loop = &ag->loop,
			.acct = a->cfg,
			.tls_ctx = tls,
			.secret = secret,
			.folder = a->cfg->server_saves_sent ? a->cfg->server_saves_sent : a->cfg->save_sent,
			.msgids = (const char *const *)u.msgids,
			.n = u.n,
			.store = ag->store,
			.append_ids = save_ids,
			.n_append = n_save,
		};
		r = mk_sentcheck_start(&co, check_done, a, &a->check);
	}
	mk_free(save_ids);
	mk_config_secret_free(&secret);
	if (r < 0) {
		a->check = NULL;
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SYNC, NULL, "account %s: outbox: %s", a->cfg->name,
		       error ? error : mk_strerror(r));
		mk_free(error);
		mk_outbox_uncertain_free(&u);
		return false;
	}
	if (u.n > 0)
		mk_log(MK_LOG_INFO, MK_LOG_CAT_SYNC, NULL, "account %s: looking for %zu uncertain send(s) in \"%s\"",
		       a->cfg->name, u.n, a->cfg->server_saves_sent);
	a->check_ids = u.ids;
	u.ids = NULL;
	mk_outbox_uncertain_free(&u);
	return true;
}

static void send_schedule(struct acct *a, bool flush)
{
	struct agent *ag = a->ag;
	if (a->stopping || ag->stopping || a->cfg->smtp.host == NULL)
		return;
	if (a->check != NULL)
		return; /* check_done schedules */
	int64_t unc_wait = 0;
	if (a->send == NULL && check_uncertain(a, &unc_wait))
		return;
	if (a->send != NULL) {
		a->send_again = true;
		a->send_flush |= flush;
		return;
	}
	int64_t now = mk_time_wall_s();
	if (flush)
		a->send_blocked_until = 0;
	uint32_t aid = 0;
	int r = mk_store_account(ag->store, a->cfg->name, true, &aid);
	struct mk_outbox_plan plan;
	memset(&plan, 0, sizeof(plan));
	if (r == 0)
		r = mk_outbox_plan(ag->store, a->cfg, aid, now, flush, NULL, 0, &plan);
	if (r < 0) {
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_SYNC, NULL, "account %s: outbox: %s", a->cfg->name, mk_strerror(r));
		send_arm(a, now + 60);
		return;
	}
	if (plan.n > 0 && a->send_blocked_until > now) {
		send_arm(a, a->send_blocked_until);
	} else if (plan.n > 0) {
		char *error = NULL, *secret = NULL;
		struct mk_tls_ctx *tls = NULL;
		r = acct_secret(a, TOK_THEN_SEND, &secret, &error); /* issue 6 */
		if (r > 0) {
			mk_outbox_plan_free(&plan);
			return; /* send_schedule runs again with the token */
		}
		if (r == 0)
			r = mk_cli_tls_ctx(a->cfg->tls_ca_file, &tls, &error);
		if (r == 0) {
			struct mk_outbox_opts oo = {
				.loop = &ag->loop,
				.acct = a->cfg,
				.store = ag->store,
				.tls_ctx = tls,
				.secret = secret,
				.ids = plan.ids,
				.n_ids = plan.n,
				.on_entry = on_send_entry,
				.ud = a,
			};
			r = mk_outbox_start(&oo, send_done, a, &a->send);
		}
		mk_config_secret_free(&secret);
		if (r < 0) {
			a->send = NULL;
			snprintf(a->send_status, sizeof(a->send_status), "last error: %s", error ? error : mk_strerror(r));
			mk_log(MK_LOG_ERROR, MK_LOG_CAT_SYNC, NULL, "account %s: outbox: %s", a->cfg->name,
			       error ? error : mk_strerror(r));
			uint64_t ms = mk_backoff_next_ms(&a->send_backoff);
			a->send_blocked_until = now + (int64_t)(ms / 1000);
			send_arm(a, a->send_blocked_until);
		}
		mk_free(error);
	} else if (plan.next_due != 0 || unc_wait != 0) {
		send_arm(a, plan.next_due == 0 ? unc_wait : unc_wait == 0 || plan.next_due < unc_wait ? plan.next_due : unc_wait);
	} else if (a->send_timer_open) {
		uv_timer_stop(&a->send_timer);
	}
	mk_outbox_plan_free(&plan);
}

static void acct_start(struct acct *a)
{
	struct agent *ag = a->ag;
	char *error = NULL;
	a->stopping = a->failed = a->synced = false;
	bool receive = !(a->cfg->imap.host == NULL && (a->cfg->fetch == MK_CONFIG_FETCH_IMAP || a->cfg->pop3.host == NULL));
	if (!receive && a->cfg->smtp.host == NULL) {
		a->failed = true;
		snprintf(a->status, sizeof(a->status), "no IMAP server configured");
		return;
	}
	/* xoauth2: tokens come from the token manager when needed (issue 6) */
	int r = a->cfg->auth == MK_CONFIG_AUTH_XOAUTH2 ? 0 : mk_config_get_secret(a->cfg, &a->secret, &error);
	if (r == 0 && a->tls == NULL)
		r = mk_cli_tls_ctx(a->cfg->tls_ca_file, &a->tls, &error);
	if (r < 0) {
		a->failed = true;
		snprintf(a->status, sizeof(a->status), "%s", error ? error : mk_strerror(r));
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_SCHED, NULL, "account %s: %s", a->cfg->name, a->status);
		mk_free(error);
		return;
	}
	if (a->cfg->smtp.host != NULL) {
		/* issue 5: the outbox runs beside the backup */
		mk_backoff_init(&a->send_backoff, 30000, 30 * 60 * 1000, MK_BACKOFF_JITTER_EQUAL, NULL, NULL);
		send_schedule(a, false);
	}
	if (!receive) {
		snprintf(a->status, sizeof(a->status), "running (outbox only)");
		a->synced = true;
		on_synced(a, a->cfg->name);
		return;
	}
	start_pop3(a);
	if (a->cfg->fetch == MK_CONFIG_FETCH_POP3) {
		snprintf(a->status, sizeof(a->status), "running (POP3, polled)");
		a->synced = true;
		goto timers;
	}
	struct mk_sync_opts so = {
		.loop = &ag->loop,
		.acct = a->cfg,
		.store = ag->store,
		.tls_ctx = a->tls,
		.secret = a->secret,
		.get_secret = a->cfg->auth == MK_CONFIG_AUTH_XOAUTH2 ? engine_get_secret : NULL, /* issue 6 */
		.secret_ud = a,
		.watch = true,
		.on_synced = on_synced,
		.on_push = on_push,
		.on_folder = on_folder,
		.ud = a,
	};
	r = mk_sync_start(&so, watch_done, a, &a->watch);
	if (r < 0) {
		a->failed = true;
		snprintf(a->status, sizeof(a->status), "%s", mk_strerror(r));
		return;
	}
	snprintf(a->status, sizeof(a->status), "running");
timers:
	if (!a->poll_timer_open) {
		uv_timer_init(&ag->loop, &a->poll_timer);
		a->poll_timer.data = a;
		a->poll_timer_open = true;
	}
	uint64_t every = (uint64_t)a->cfg->poll_interval_s * 1000;
	uv_timer_start(&a->poll_timer, on_poll_timer, every, every);
}

static void poll_timer_closed(uv_handle_t *h)
{
	struct acct *a = h->data;
	a->poll_timer_open = false;
	maybe_finish(a->ag);
}

static void send_timer_closed(uv_handle_t *h)
{
	struct acct *a = h->data;
	a->send_timer_open = false;
	maybe_finish(a->ag);
}

static void acct_stop(struct acct *a, bool graceful)
{
	a->stopping = true;
	if (a->send_timer_open) {
		uv_timer_stop(&a->send_timer);
		if (!uv_is_closing((uv_handle_t *)&a->send_timer))
			uv_close((uv_handle_t *)&a->send_timer, send_timer_closed);
	}
	if (a->send != NULL)
		graceful ? mk_outbox_stop(a->send) : mk_outbox_cancel(a->send);
	if (a->check != NULL)
		mk_sentcheck_cancel(a->check);
	if (a->poll_timer_open) {
		uv_timer_stop(&a->poll_timer);
		if (!uv_is_closing((uv_handle_t *)&a->poll_timer))
			uv_close((uv_handle_t *)&a->poll_timer, poll_timer_closed);
	}
	if (a->watch != NULL)
		graceful ? mk_sync_stop(a->watch) : mk_sync_cancel(a->watch);
	if (a->poll != NULL)
		graceful ? mk_sync_stop(a->poll) : mk_sync_cancel(a->poll);
	if (a->pop3 != NULL)
		mk_pop3_fetch_cancel(a->pop3); /* nothing is deleted without its QUIT: safe */
}

static bool acct_idle(const struct acct *a)
{
	return a->watch == NULL && a->poll == NULL && a->pop3 == NULL && !a->poll_timer_open && a->send == NULL &&
	       !a->send_timer_open && a->check == NULL;
}

static void acct_free(struct acct *a)
{
	mk_config_secret_free(&a->secret);
	a->tls = NULL; /* owned by the shared cache */
	mk_free(a->fingerprint);
	mk_free(a);
}

static void close_agent_handles(struct agent *ag)
{
	uv_handle_t *hs[] = {(uv_handle_t *)&ag->sig_term, (uv_handle_t *)&ag->sig_int, (uv_handle_t *)&ag->sig_hup};
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		if (!uv_is_closing(hs[i]))
			uv_close(hs[i], NULL);
	if (ag->force_timer_open && !uv_is_closing((uv_handle_t *)&ag->force_timer))
		uv_close((uv_handle_t *)&ag->force_timer, NULL);
	if (ag->watchdog_open && !uv_is_closing((uv_handle_t *)&ag->watchdog))
		uv_close((uv_handle_t *)&ag->watchdog, NULL);
	if (ag->clock_open && !uv_is_closing((uv_handle_t *)&ag->clock))
		uv_close((uv_handle_t *)&ag->clock, NULL);
	if (ag->control != NULL) {
		mk_control_close(ag->control, NULL);
		ag->control = NULL;
	}
	mk_oauth_free(&ag->oauth); /* pending requests end with MK_ECANCELED */
}

/* Removes accounts that finished stopping; ends the agent when stopping
 * and nothing is left. */
static void maybe_finish(struct agent *ag)
{
	struct acct **pp = &ag->accts;
	while (*pp != NULL) {
		struct acct *a = *pp;
		if (a->stopping && acct_idle(a) && (ag->stopping || a->removed)) {
			*pp = a->next;
			acct_free(a);
			continue;
		}
		pp = &a->next;
	}
	if (ag->stopping && ag->accts == NULL)
		close_agent_handles(ag);
}

static void on_force(uv_timer_t *t)
{
	struct agent *ag = t->data;
	mk_log(MK_LOG_WARN, MK_LOG_CAT_SCHED, NULL, "servers did not answer LOGOUT in time; closing");
	for (struct acct *a = ag->accts; a != NULL; a = a->next)
		acct_stop(a, false);
}

static void on_term(uv_signal_t *h, int signum)
{
	struct agent *ag = h->data;
	if (ag->stopping) {
		on_force(&ag->force_timer);
		return;
	}
	mk_log(MK_LOG_INFO, MK_LOG_CAT_SCHED, NULL, "signal %d: committing, logging out, stopping", signum);
	mk_notify_send("STOPPING=1");
	ag->stopping = true;
	uv_timer_init(&ag->loop, &ag->force_timer);
	ag->force_timer.data = ag;
	ag->force_timer_open = true;
	uv_timer_start(&ag->force_timer, on_force, 10000, 0);
	for (struct acct *a = ag->accts; a != NULL; a = a->next)
		acct_stop(a, true);
	maybe_finish(ag);
}

static struct acct *acct_new(struct agent *ag, struct mk_config_account *c)
{
	struct acct *a = mk_xcalloc(1, sizeof(*a));
	a->ag = ag;
	a->cfg = c;
	a->fingerprint = fingerprint(c);
	a->gen = ++ag->next_gen;
	a->next = ag->accts;
	ag->accts = a;
	return a;
}

static void on_hup(uv_signal_t *h, int signum)
{
	struct agent *ag = h->data;
	if (ag->stopping)
		return;
	struct mk_config *ncfg = NULL;
	char *error = NULL;
	mk_notify_reloading();
	int r = mk_config_load(ag->cli->config_path, &ncfg, &error);
	if (r < 0) {
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_CFG, NULL, "reload refused, keeping the running configuration: %s",
		       error ? error : mk_strerror(r));
		mk_free(error);
		mk_notify_send("READY=1\nSTATUS=reload refused (configuration error)");
		return;
	}
	if (strcmp(ncfg->store, ag->cfg->store) != 0)
		mk_log(MK_LOG_WARN, MK_LOG_CAT_CFG, NULL, "reload: a new store path takes effect only after a restart");
	/* Unchanged accounts keep their connections: only their config
	 * pointer moves to the new tree (same values). Changed, removed and
	 * failed accounts are stopped; new and changed ones started. */
	unsigned kept = 0, started = 0, stopped = 0;
	struct mk_buf names;
	mk_buf_init(&names, 4096);
	for (struct acct *a = ag->accts; a != NULL; a = a->next) {
		if (a->removed)
			continue;
		struct mk_config_account *nc = (struct mk_config_account *)mk_config_find_account(ncfg, a->cfg->name);
		char *fp = nc ? fingerprint(nc) : NULL;
		if (nc != NULL && !a->failed && strcmp(fp, a->fingerprint) == 0) {
			a->cfg = nc; /* same settings; engines read the account through this pointer */
			kept++;
		} else {
			mk_buf_printf(&names, " %s%s", a->cfg->name, nc == NULL ? " (removed)" : a->failed ? " (was stopped)" : " (changed)");
			acct_stop(a, true);
			a->removed = true; /* freed once stopped; the old tree stays alive */
			stopped++;
		}
		mk_free(fp);
	}
	for (size_t i = 0; i < ncfg->n_accounts; i++) {
		bool have = false;
		for (struct acct *a = ag->accts; a != NULL; a = a->next)
			if (!a->removed && a->cfg == &ncfg->accounts[i])
				have = true;
		if (!have) {
			acct_start(acct_new(ag, &ncfg->accounts[i]));
			started++;
		}
	}
	mk_log(MK_LOG_INFO, MK_LOG_CAT_CFG, NULL, "configuration reloaded: %u accounts kept, %u started, %u stopped%s%s",
	       kept, started, stopped, names.len ? ":" : "", names.len ? (const char *)names.data : "");
	mk_buf_cleanup(&names);
	mk_notify_send("READY=1\nSTATUS=configuration reloaded");
	/* The old tree stays alive: engines of kept and stopping accounts still
	 * point into it. */
	ag->old_cfgs = mk_xrealloc(ag->old_cfgs, (ag->n_old + 1) * sizeof(*ag->old_cfgs));
	ag->old_cfgs[ag->n_old++] = ag->cfg;
	ag->cfg = ncfg;
	maybe_finish(ag);
}

static void render_status(struct agent *ag, bool json, struct mk_buf *out)
{
	if (json)
		mk_buf_append_str(out, "{\"accounts\":[");
	bool first = true;
	for (struct acct *a = ag->accts; a != NULL; a = a->next) {
		if (a->removed)
			continue;
		struct mk_sync_conn_status cs[32];
		size_t n = a->watch ? mk_sync_status(a->watch, cs, 32) : 0;
		if (json) {
			mk_buf_append_str(out, first ? "{\"name\":" : ",{\"name\":");
			mk_buf_append_json_str(out, a->cfg->name);
			mk_buf_append_str(out, ",\"status\":");
			mk_buf_append_json_str(out, a->status);
			mk_buf_printf(out, ",\"synced\":%s,\"last_sync\":%lld,\"connections\":[", a->synced ? "true" : "false",
				      (long long)a->last_sync);
			for (size_t i = 0; i < n; i++) {
				mk_buf_printf(out, "%s{\"id\":%u,\"folder\":", i ? "," : "", cs[i].id);
				mk_buf_append_json_str(out, cs[i].folder);
				mk_buf_append_str(out, ",\"state\":");
				mk_buf_append_json_str(out, cs[i].state);
				mk_buf_printf(out, ",\"since\":%lld,\"retry_at\":%lld,\"last_error\":", (long long)cs[i].since,
					      (long long)cs[i].retry_at);
				mk_buf_append_json_str(out, cs[i].last_error);
				mk_buf_append_str(out, "}");
			}
			mk_buf_append_str(out, "]}");
		} else {
			mk_buf_printf(out, "account %s: %s%s\n", a->cfg->name, a->status,
				      a->synced ? "" : " (first sync running)");
			if (a->cfg->smtp.host != NULL) /* issue 5 */
				mk_buf_printf(out, "  outbox: %s\n", a->send != NULL ? "sending" : "idle");
			if (a->cfg->smtp.host != NULL && a->send_status[0])
				mk_buf_printf(out, "  outbox %s\n", a->send_status);
			for (size_t i = 0; i < n; i++) {
				char when[32] = "";
				time_t t = (time_t)cs[i].since;
				struct tm tm;
				if (t)
					strftime(when, sizeof(when), "%H:%M:%S", localtime_r(&t, &tm));
				mk_buf_printf(out, "  #%u %-12s %-20s since %s", cs[i].id, cs[i].state,
					      cs[i].folder ? cs[i].folder : "-", when);
				if (cs[i].retry_at)
					mk_buf_printf(out, ", retry in %lld s", (long long)(cs[i].retry_at - (int64_t)time(NULL)));
				if (cs[i].last_error)
					mk_buf_printf(out, ", last error: %s", cs[i].last_error);
				mk_buf_append_str(out, "\n");
			}
		}
		first = false;
	}
	if (json)
		mk_buf_append_str(out, "]}\n");
}

static int control_handler(void *ud, const char *request, struct mk_buf *reply)
{
	struct agent *ag = ud;
	if (strcmp(request, "ping") == 0)
		return mk_buf_append_str(reply, "pong\n");
	if (strcmp(request, "status") == 0 || strcmp(request, "status json") == 0) {
		render_status(ag, strcmp(request, "status json") == 0, reply);
		return 0;
	}
	if (strcmp(request, "metrics") == 0)
		return mk_metrics_render(ag->metrics, reply);
	if (strcmp(request, "outbox") == 0 || strcmp(request, "outbox flush") == 0) {
		/* issue 5: a command queued mail (or asks to send now) */
		bool flush = strcmp(request, "outbox flush") == 0;
		for (struct acct *a = ag->accts; a != NULL; a = a->next)
			if (!a->removed)
				send_schedule(a, flush);
		return mk_buf_append_str(reply, "ok\n");
	}
	mk_buf_append_str(reply, "unknown request");
	return MK_EINVAL;
}

/* A suspended laptop's monotonic clock stops while the wall clock runs
 * on: a gap between the two means the TCP sessions are probably dead
 * (the server dropped them) although nothing told us. Reconnect now and
 * catch up, rather than wait for the read timeouts. */
static void on_clock(uv_timer_t *t)
{
	struct agent *ag = t->data;
	int64_t w = mk_time_wall_ms();
	uint64_t m = uv_hrtime() / 1000000;
	int64_t drift = (w - ag->clock_wall_ms) - (int64_t)(m - ag->clock_mono_ms);
	ag->clock_wall_ms = w;
	ag->clock_mono_ms = m;
	if (drift > 60000 || drift < -60000) {
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SCHED, NULL,
		       "the clock jumped %+.0f s (suspend/resume?): reconnecting every account", drift / 1000.0);
		for (struct acct *a = ag->accts; a != NULL; a = a->next)
			if (a->watch != NULL && !a->stopping)
				mk_sync_reconnect(a->watch, "clock jump (suspend/resume?): reconnecting");
	}
}

static void on_watchdog(uv_timer_t *t)
{
	mk_notify_send("WATCHDOG=1");
}

static void usage_run(FILE *f)
{
	fprintf(f, "usage: mailkeep [-c FILE] [-v|-q] run\n"
		   "The agent: backs up every account, then keeps the folders matching `idle`\n"
		   "(default INBOX) open with IMAP IDLE so new mail is stored as it arrives, and\n"
		   "syncs the other folders every `poll_interval`. SIGTERM/SIGINT stop it cleanly;\n"
		   "SIGHUP reloads the configuration. Logs go to stderr.\n");
}

int mk_cli_run(const struct mk_cli *cli, int argc, char **argv)
{
	if (argc > 1) {
		bool help = strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0;
		usage_run(help ? stdout : stderr);
		return help ? MK_EXIT_OK : MK_EXIT_USAGE;
	}
	struct agent *ag = mk_xcalloc(1, sizeof(*ag));
	ag->cli = cli;
	/* an agent reports what it does unless told to be quiet */
	if (!cli->quiet && mk_log_get_level() < MK_LOG_INFO)
		mk_log_set_level(MK_LOG_INFO);
	int ex = mk_cli_open_store(cli, &ag->cfg, &ag->store);
	if (ex != 0) {
		mk_free(ag);
		return ex;
	}
	char *error = NULL;
	int r = mk_lock_acquire(ag->cfg->store, &ag->lock, &error);
	if (r < 0) {
		fprintf(stderr, "mailkeep: %s\n", error ? error : mk_strerror(r));
		mk_free(error);
		mk_store_close(&ag->store);
		mk_config_free(&ag->cfg);
		mk_free(ag);
		return MK_EXIT_TEMPFAIL;
	}
	/* issue 5: entries a crash left in SENDING: back to the queue, or
	 * uncertain when their final dot may have reached the server. */
	unsigned requeued = 0, uncertain = 0;
	r = mk_store_outbox_recover(ag->store, &requeued, &uncertain);
	if (r < 0)
		mk_log(MK_LOG_ERROR, MK_LOG_CAT_STORE, NULL, "outbox recovery: %s", mk_strerror(r));
	else if (requeued + uncertain > 0)
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SCHED, NULL,
		       "outbox: %u interrupted message(s) queued again, %u uncertain (sent before the crash, reply "
		       "unknown: see `mailkeep outbox ls`)",
		       requeued, uncertain);
	mk_notify_init();
	ag->metrics = mk_metrics_new(0);
	mk_metrics_define_std(ag->metrics);
	uv_loop_init(&ag->loop);
	char *cpath = mk_control_default_path(ag->cfg->store);
	r = mk_control_start(&ag->loop, cpath, control_handler, ag, &ag->control, &error);
	if (r < 0) {
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SCHED, NULL, "no control socket (mailkeep status will not work): %s",
		       error ? error : mk_strerror(r));
		MK_FREE(&error);
		ag->control = NULL;
	}
	mk_free(cpath);
	ag->oauth = mk_oauth_new(&ag->loop, ag->cfg->store); /* issue 6 */
	uv_timer_init(&ag->loop, &ag->clock);
	ag->clock.data = ag;
	ag->clock_open = true;
	ag->clock_wall_ms = mk_time_wall_ms();
	ag->clock_mono_ms = uv_hrtime() / 1000000;
	uv_timer_start(&ag->clock, on_clock, 10000, 10000);
	uint64_t wd = mk_notify_watchdog_usec();
	if (wd > 0) {
		uv_timer_init(&ag->loop, &ag->watchdog);
		ag->watchdog_open = true;
		uv_timer_start(&ag->watchdog, on_watchdog, wd / 2000, wd / 2000);
	}
	uv_signal_init(&ag->loop, &ag->sig_term);
	uv_signal_init(&ag->loop, &ag->sig_int);
	uv_signal_init(&ag->loop, &ag->sig_hup);
	ag->sig_term.data = ag->sig_int.data = ag->sig_hup.data = ag;
	uv_signal_start(&ag->sig_term, on_term, SIGTERM);
	uv_signal_start(&ag->sig_int, on_term, SIGINT);
	uv_signal_start(&ag->sig_hup, on_hup, SIGHUP);
	for (size_t i = 0; i < ag->cfg->n_accounts; i++)
		acct_start(acct_new(ag, &ag->cfg->accounts[i]));
	if (ag->accts == NULL)
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SCHED, NULL, "%s has no accounts; waiting for a reload (SIGHUP)",
		       ag->cfg->path);
	on_synced_check(ag);
	uv_run(&ag->loop, UV_RUN_DEFAULT);
	int lc = uv_loop_close(&ag->loop);
	MK_ASSERT(lc == 0); /* every handle closed */
	mk_store_close(&ag->store);
	mk_lock_release(&ag->lock);
	mk_metrics_free(&ag->metrics);
	mk_notify_cleanup();
	for (size_t i = 0; i < ag->n_old; i++)
		mk_config_free(&ag->old_cfgs[i]);
	mk_free(ag->old_cfgs);
	mk_config_free(&ag->cfg);
	ex = ag->exit_code;
	mk_free(ag);
	mk_log(MK_LOG_INFO, MK_LOG_CAT_SCHED, NULL, "stopped");
	return ex;
}
