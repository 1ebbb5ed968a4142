/* SPDX-License-Identifier: MIT */
/*
 * oauth.c - the token manager (see mk_oauth.h): a per-account cache of
 * access tokens, one job (refresh or token_cmd) at most per account, and a
 * queue of waiters answered from a zero-delay timer so that no callback
 * ever runs inside mk_oauth_token_get().
 *
 * Jobs copy what they need from the account (the config tree can be
 * replaced by a reload while they run) and may outlive the manager: after
 * mk_oauth_free() they finish on their own and drop their result.
 */
#include "mk_oauth.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"
#include "mk_log.h"
#include "mk_oauth_client.h"
#include "mk_str.h"
#include "mk_time.h"
#include "mk_tls.h"
#include "mk_token.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MARGIN_S 300
#define DEFAULT_LIFETIME_S 3600

struct acct;
struct job;

struct mk_oauth_wait {
	struct mk_oauth_wait *next;
	struct mk_oauth *o;
	struct acct *a; /* while waiting for a job */
	mk_oauth_token_cb *cb;
	void *ud;
	bool ready;
	int err;
	char *msg;
	char *token; /* secret */
	struct mk_oauth_token tok;
};

struct acct {
	struct acct *next;
	char *name;
	char *access_token; /* secret */
	int64_t obtained_ms, expires_ms; /* uv_now() */
	int64_t expires_wall_ms;
	bool from_cmd;
	struct job *job;
	struct mk_oauth_wait *waiters, **waiters_tail;
};

struct tls_entry {
	struct tls_entry *next;
	char *ca_file;
	struct mk_tls_ctx *ctx;
};

struct mk_oauth {
	uv_loop_t *loop;
	char *store;
	struct acct *accts;
	struct tls_entry *tls;
	struct mk_oauth_wait *ready, **ready_tail;
	uv_timer_t kick;
	struct job *jobs; /* in flight, for detaching at free */
};

struct job {
	struct job *next_in_o;
	struct mk_oauth *o; /* NULL once detached */
	struct acct *a;
	char *account, *client_id, *tenant, *authority, *scopes; /* copies */
	unsigned timeout_ms;
	unsigned cmd_cache_s;
	struct mk_oauth_refresh *refresh;
	/* token_cmd */
	uv_process_t proc;
	uv_pipe_t out;
	uv_timer_t timer;
	int open_handles;
	bool exited, eof, timed_out, too_big;
	int64_t exit_status;
	int term_signal;
	struct mk_buf buf; /* secret: sized once */
	int spawn_err;
};

/* ---- waiters ---- */

static void free_str_secret(char **s)
{
	if (*s != NULL) {
		explicit_bzero(*s, strlen(*s));
		MK_FREE(s);
	}
}

static void on_kick(uv_timer_t *t)
{
	struct mk_oauth *o = t->data;
	/* Answer exactly the waiters that are ready now; callbacks may add
	 * more (they are answered on the next turn). */
	struct mk_oauth_wait *list = o->ready;
	o->ready = NULL;
	o->ready_tail = &o->ready;
	while (list != NULL) {
		struct mk_oauth_wait *w = list;
		list = w->next;
		w->tok.access_token = w->token;
		if (w->err == 0)
			w->tok.valid_ms = w->tok.expires_wall_ms - mk_time_wall_ms();
		w->cb(w->err, w->msg ? w->msg : "", w->err == 0 ? &w->tok : NULL, w->ud);
		free_str_secret(&w->token);
		mk_free(w->msg);
		mk_free(w);
	}
}

static void make_ready(struct mk_oauth *o, struct mk_oauth_wait *w)
{
	w->ready = true;
	w->a = NULL;
	w->next = NULL;
	*o->ready_tail = w;
	o->ready_tail = &w->next;
	uv_timer_start(&o->kick, on_kick, 0, 0);
}

/* Gives `w` the account's cached token. */
static void answer_token(struct acct *a, struct mk_oauth_wait *w, bool fresh, int64_t now)
{
	w->err = 0;
	w->token = mk_xstrdup(a->access_token);
	w->tok.expires_wall_ms = a->expires_wall_ms;
	w->tok.fresh = fresh;
	w->tok.from_cmd = a->from_cmd;
	(void)now;
}

/* Completes every waiter of `a` with the account's token (err 0) or an
 * error. */
static void complete_waiters(struct mk_oauth *o, struct acct *a, int err, const char *msg)
{
	int64_t now = (int64_t)uv_now(o->loop);
	while (a->waiters != NULL) {
		struct mk_oauth_wait *w = a->waiters;
		a->waiters = w->next;
		if (err == 0) {
			answer_token(a, w, true, now);
		} else {
			w->err = err;
			w->msg = mk_xstrdup(msg);
		}
		make_ready(o, w);
	}
	a->waiters_tail = &a->waiters;
}

static struct acct *get_acct(struct mk_oauth *o, const char *name)
{
	for (struct acct *a = o->accts; a != NULL; a = a->next)
		if (strcmp(a->name, name) == 0)
			return a;
	struct acct *a = mk_xcalloc(1, sizeof(*a));
	a->name = mk_xstrdup(name);
	a->waiters_tail = &a->waiters;
	a->next = o->accts;
	o->accts = a;
	return a;
}

static void drop_token(struct acct *a)
{
	free_str_secret(&a->access_token);
	a->expires_ms = 0;
}

static void set_token(struct mk_oauth *o, struct acct *a, char *token, int64_t lifetime_ms, bool from_cmd)
{
	drop_token(a);
	int64_t now = (int64_t)uv_now(o->loop);
	a->access_token = token;
	a->obtained_ms = now;
	a->expires_ms = now + lifetime_ms;
	a->expires_wall_ms = mk_time_wall_ms() + lifetime_ms;
	a->from_cmd = from_cmd;
}

static bool token_usable(struct mk_oauth *o, const struct acct *a)
{
	if (a->access_token == NULL)
		return false;
	int64_t now = (int64_t)uv_now(o->loop);
	int64_t life = a->expires_ms - a->obtained_ms;
	int64_t margin = (int64_t)MARGIN_S * mk_oauth_second_ms();
	if (margin > life / 2)
		margin = life / 2;
	return a->expires_ms - now > margin;
}

/* ---- TLS contexts, one per trust setting ---- */

static int tls_ctx_for(struct mk_oauth *o, const char *ca_file, struct mk_tls_ctx **ctx_r, char **error_r)
{
	for (struct tls_entry *e = o->tls; e != NULL; e = e->next) {
		if ((e->ca_file == NULL && ca_file == NULL) ||
		    (e->ca_file != NULL && ca_file != NULL && strcmp(e->ca_file, ca_file) == 0)) {
			*ctx_r = e->ctx;
			return 0;
		}
	}
	struct mk_tls_ctx *ctx;
	int r = mk_tls_ctx_new(ca_file, &ctx, error_r);
	if (r < 0)
		return r;
	struct tls_entry *e = mk_xcalloc(1, sizeof(*e));
	e->ca_file = ca_file ? mk_xstrdup(ca_file) : NULL;
	e->ctx = ctx;
	e->next = o->tls;
	o->tls = e;
	*ctx_r = ctx;
	return 0;
}

/* ---- jobs ---- */

static void job_free(struct job *j)
{
	mk_free(j->account);
	mk_free(j->client_id);
	mk_free(j->tenant);
	mk_free(j->authority);
	mk_free(j->scopes);
	mk_buf_cleanup_wipe(&j->buf);
	mk_free(j);
}

/* Detaches j from its manager; returns the manager (NULL if already). */
static struct mk_oauth *job_end(struct job *j)
{
	struct mk_oauth *o = j->o;
	if (o == NULL)
		return NULL;
	for (struct job **pp = &o->jobs; *pp != NULL; pp = &(*pp)->next_in_o) {
		if (*pp == j) {
			*pp = j->next_in_o;
			break;
		}
	}
	j->a->job = NULL;
	j->o = NULL;
	return o;
}

static void refresh_done(int err, const char *msg, struct mk_token_reply *tok, void *ud)
{
	struct job *j = ud;
	j->refresh = NULL;
	struct acct *a = j->a;
	struct mk_oauth *o = job_end(j);
	if (o == NULL) {
		job_free(j);
		return;
	}
	struct mk_log_ctx lc = {.account = j->account};
	if (err == 0) {
		char *error = NULL;
		/* Commit the rotated refresh token before the access token is
		 * used: Microsoft keeps the old one valid, so a failure here
		 * loses nothing, but a new token that only lives in memory
		 * would be lost at the next crash (and with it, after 90 idle
		 * days, the sign-in). */
		if (tok->refresh_token != NULL &&
		    (err = mk_token_file_write(o->store, j->account, j->client_id, tok->refresh_token, &error)) < 0) {
			mk_log(MK_LOG_ERROR, MK_LOG_CAT_OAUTH, &lc, "%s", error);
			char m[600];
			snprintf(m, sizeof(m), "the new refresh token could not be saved: %s", error);
			mk_free(error);
			complete_waiters(o, a, MK_EIO, m);
			job_free(j);
			return;
		}
		int64_t life = tok->expires_in > 0 ? tok->expires_in : DEFAULT_LIFETIME_S;
		mk_log(MK_LOG_INFO, MK_LOG_CAT_OAUTH, &lc, "access token refreshed (valid %lld s)%s", (long long)life,
		       tok->refresh_token ? "; refresh token rotated and saved" : "");
		set_token(o, a, tok->access_token, life * mk_oauth_second_ms(), false);
		tok->access_token = NULL;
		complete_waiters(o, a, 0, NULL);
	} else {
		mk_log(MK_LOG_WARN, MK_LOG_CAT_OAUTH, &lc, "token refresh failed: %s", msg);
		complete_waiters(o, a, err, msg);
	}
	job_free(j);
}

static void job_fail(struct mk_oauth *o, struct job *j, int err, const char *msg)
{
	struct acct *a = j->a;
	job_end(j);
	complete_waiters(o, a, err, msg);
	job_free(j);
}

static void start_refresh(struct mk_oauth *o, struct job *j, const struct mk_config_account *acct)
{
	struct mk_token_file tf;
	char *error = NULL;
	int r = mk_token_file_read(o->store, j->account, &tf, &error);
	if (r < 0) {
		/* No file or a corrupt one: only a new login helps. */
		job_fail(o, j, r == MK_ENOTFOUND || r == MK_ECORRUPT ? MK_EAUTH : r, error);
		mk_free(error);
		return;
	}
	if (tf.client_id != NULL && tf.client_id[0] != '\0' && strcmp(tf.client_id, j->client_id) != 0) {
		char m[600];
		snprintf(m, sizeof(m),
			 "the saved sign-in of account %s belongs to another oauth_client_id (%s); run `mailkeep login %s`",
			 j->account, tf.client_id, j->account);
		mk_token_file_cleanup(&tf);
		job_fail(o, j, MK_EAUTH, m);
		return;
	}
	struct mk_tls_ctx *ctx;
	r = tls_ctx_for(o, acct->tls_ca_file, &ctx, &error);
	if (r < 0) {
		mk_token_file_cleanup(&tf);
		job_fail(o, j, MK_ECONFIG, error);
		mk_free(error);
		return;
	}
	struct mk_oauth_client_opts co = {
		.authority = j->authority,
		.tenant = j->tenant,
		.client_id = j->client_id,
		.scopes = j->scopes,
		.account = j->account,
		.tls_ctx = ctx,
		.timeout_ms = j->timeout_ms,
	};
	r = mk_oauth_refresh_start(o->loop, &co, tf.refresh_token, refresh_done, j, &j->refresh);
	mk_token_file_cleanup(&tf);
	if (r < 0) {
		char m[300];
		snprintf(m, sizeof(m), "account %s: cannot start the token refresh: %s", j->account, mk_strerror(r));
		job_fail(o, j, r == MK_EINVAL ? MK_ECONFIG : r, m);
	}
}

/* ---- token_cmd ---- */

static void cmd_finish(struct job *j)
{
	struct mk_oauth *o = job_end(j);
	if (o == NULL) {
		job_free(j);
		return;
	}
	struct acct *a = j->a;
	char m[400];
	int err = MK_ECMD;
	if (j->spawn_err < 0) {
		snprintf(m, sizeof(m), "account %s: cannot run token_cmd: %s", j->account, uv_strerror(j->spawn_err));
	} else if (j->timed_out) {
		snprintf(m, sizeof(m), "account %s: token_cmd timed out after %u s", j->account,
			 MK_LIMIT_CMD_TIMEOUT_MS / 1000);
	} else if (j->too_big) {
		snprintf(m, sizeof(m), "account %s: token_cmd output exceeds %d bytes", j->account, MK_LIMIT_SECRET);
	} else if (j->term_signal != 0) {
		snprintf(m, sizeof(m), "account %s: token_cmd was killed by signal %d", j->account, j->term_signal);
	} else if (j->exit_status != 0) {
		snprintf(m, sizeof(m), "account %s: token_cmd exited with status %lld", j->account,
			 (long long)j->exit_status);
	} else {
		const char *p = j->buf.data ? (const char *)j->buf.data : "";
		size_t line = 0;
		while (line < j->buf.len && p[line] != '\n')
			line++;
		if (line > 0 && p[line - 1] == '\r')
			line--;
		if (line == 0) {
			snprintf(m, sizeof(m), "account %s: token_cmd printed nothing", j->account);
		} else if (memchr(p, '\0', line) != NULL) {
			snprintf(m, sizeof(m), "account %s: token_cmd printed a NUL byte", j->account);
		} else {
			err = 0;
			int64_t life = (int64_t)(j->cmd_cache_s ? j->cmd_cache_s : 300) * mk_oauth_second_ms();
			/* The margin is half the cache time at most, so the
			 * token is reused for at least half of it. */
			set_token(o, a, mk_xstrndup(p, line), life, true);
		}
	}
	complete_waiters(o, a, err, err == 0 ? NULL : m);
	job_free(j);
}

static void cmd_handle_closed(uv_handle_t *h)
{
	struct job *j = h->data;
	if (--j->open_handles == 0)
		cmd_finish(j);
}

static void cmd_close_all(struct job *j)
{
	if (!uv_is_closing((uv_handle_t *)&j->out))
		uv_close((uv_handle_t *)&j->out, cmd_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&j->timer))
		uv_close((uv_handle_t *)&j->timer, cmd_handle_closed);
}

static void cmd_kill(struct job *j)
{
	/* UV_PROCESS_DETACHED made the shell a process group leader: kill
	 * the whole tree (dash does not exec the last command). */
	if (!j->exited && j->proc.pid > 0 && kill(-j->proc.pid, SIGKILL) < 0)
		kill(j->proc.pid, SIGKILL);
}

static void cmd_on_exit(uv_process_t *p, int64_t status, int sig)
{
	struct job *j = p->data;
	j->exited = true;
	j->exit_status = status;
	j->term_signal = sig;
	uv_close((uv_handle_t *)&j->proc, cmd_handle_closed);
	/* The exit can be seen before the last output is read: finish at
	 * EOF. (A child left holding stdout runs into the timeout.) */
	if (j->eof)
		cmd_close_all(j);
}

static void cmd_on_timer(uv_timer_t *t)
{
	struct job *j = t->data;
	j->timed_out = true;
	cmd_kill(j);
	if (j->exited)
		cmd_close_all(j);
}

static void cmd_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct job *j = h->data;
	size_t room = j->buf.cap - 1 - j->buf.len;
	*b = uv_buf_init((char *)j->buf.data + j->buf.len, (unsigned)room);
}

static void cmd_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct job *j = s->data;
	if (n > 0) {
		mk_buf_commit(&j->buf, (size_t)n);
		if (j->buf.len >= j->buf.cap - 1) {
			j->too_big = true;
			uv_read_stop(s);
			j->eof = true;
			cmd_kill(j);
			if (j->exited)
				cmd_close_all(j);
		}
		return;
	}
	if (n < 0) {
		uv_read_stop(s);
		j->eof = true;
		if (j->exited)
			cmd_close_all(j);
	}
}

static void start_cmd(struct mk_oauth *o, struct job *j, const char *cmd)
{
	/* One fixed buffer: no realloc leaves a copy of the token. */
	mk_buf_init(&j->buf, MK_LIMIT_SECRET + 1);
	(void)mk_buf_reserve(&j->buf, MK_LIMIT_SECRET + 1, NULL);
	uv_pipe_init(o->loop, &j->out, 0);
	uv_timer_init(o->loop, &j->timer);
	j->out.data = j->timer.data = j->proc.data = j;
	j->open_handles = 2;
	uv_stdio_container_t stdio[3] = {
		{.flags = UV_IGNORE},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&j->out},
		{.flags = UV_INHERIT_FD, .data.fd = 2},
	};
	char *args[] = {(char *)"sh", (char *)"-c", (char *)cmd, NULL};
	uv_process_options_t po = {
		.exit_cb = cmd_on_exit,
		.file = "/bin/sh",
		.args = args,
		.stdio_count = 3,
		.stdio = stdio,
		.flags = UV_PROCESS_DETACHED,
	};
	int r = uv_spawn(o->loop, &j->proc, &po);
	if (r < 0) {
		j->spawn_err = r;
		/* uv_spawn failures still need the handle closed. */
		if (!uv_is_closing((uv_handle_t *)&j->proc)) {
			j->open_handles++;
			uv_close((uv_handle_t *)&j->proc, cmd_handle_closed);
		}
		cmd_close_all(j);
		return;
	}
	j->open_handles++;
	uv_read_start((uv_stream_t *)&j->out, cmd_alloc, cmd_on_read);
	uv_timer_start(&j->timer, cmd_on_timer, MK_LIMIT_CMD_TIMEOUT_MS, 0);
}

/* ---- the API ---- */

static void o_on_kick_closed(uv_handle_t *h)
{
	mk_free(h->data);
}

struct mk_oauth *mk_oauth_new(uv_loop_t *loop, const char *store)
{
	struct mk_oauth *o = mk_xcalloc(1, sizeof(*o));
	o->loop = loop;
	o->store = mk_xstrdup(store);
	o->ready_tail = &o->ready;
	uv_timer_init(loop, &o->kick);
	o->kick.data = o;
	return o;
}

void mk_oauth_free(struct mk_oauth **op)
{
	struct mk_oauth *o = *op;
	if (o == NULL)
		return;
	*op = NULL;
	/* Jobs finish on their own and drop their results. */
	while (o->jobs != NULL) {
		struct job *j = o->jobs;
		if (j->refresh != NULL)
			mk_oauth_refresh_cancel(j->refresh);
		if (j->open_handles > 0)
			cmd_kill(j);
		job_end(j);
	}
	/* Waiters: canceled, answered now. */
	for (struct acct *a = o->accts; a != NULL; a = a->next)
		complete_waiters(o, a, MK_ECANCELED, "canceled");
	for (struct mk_oauth_wait *w = o->ready; w != NULL; w = w->next) {
		if (w->err == 0) {
			free_str_secret(&w->token);
			w->err = MK_ECANCELED;
			w->msg = mk_xstrdup("canceled");
		}
	}
	uv_timer_stop(&o->kick);
	on_kick(&o->kick);
	while (o->accts != NULL) {
		struct acct *a = o->accts;
		o->accts = a->next;
		drop_token(a);
		mk_free(a->name);
		mk_free(a);
	}
	while (o->tls != NULL) {
		struct tls_entry *e = o->tls;
		o->tls = e->next;
		mk_tls_ctx_free(&e->ctx);
		mk_free(e->ca_file);
		mk_free(e);
	}
	mk_free(o->store);
	uv_close((uv_handle_t *)&o->kick, o_on_kick_closed);
}

int mk_oauth_token_get(struct mk_oauth *o, const struct mk_config_account *acct, bool force_refresh,
		       mk_oauth_token_cb *cb, void *ud, struct mk_oauth_wait **w_r)
{
	if (acct->auth != MK_CONFIG_AUTH_XOAUTH2 || (acct->oauth_client_id == NULL && acct->token_cmd == NULL) ||
	    cb == NULL)
		return MK_EINVAL;
	struct acct *a = get_acct(o, acct->name);
	struct mk_oauth_wait *w = mk_xcalloc(1, sizeof(*w));
	w->o = o;
	w->cb = cb;
	w->ud = ud;
	if (w_r != NULL)
		*w_r = w;
	if (!force_refresh && a->job == NULL && token_usable(o, a)) {
		answer_token(a, w, false, (int64_t)uv_now(o->loop));
		make_ready(o, w);
		return 0;
	}
	w->a = a;
	*a->waiters_tail = w;
	a->waiters_tail = &w->next;
	if (a->job != NULL)
		return 0; /* one job per account: wait for it */
	drop_token(a);
	struct job *j = mk_xcalloc(1, sizeof(*j));
	j->o = o;
	j->a = a;
	j->account = mk_xstrdup(acct->name);
	j->timeout_ms = acct->timeout_s * 1000;
	j->cmd_cache_s = acct->token_cmd_cache_s;
	j->next_in_o = o->jobs;
	o->jobs = j;
	a->job = j;
	if (acct->token_cmd != NULL) {
		start_cmd(o, j, acct->token_cmd);
		return 0;
	}
	j->client_id = mk_xstrdup(acct->oauth_client_id);
	j->tenant = mk_xstrdup(acct->oauth_tenant ? acct->oauth_tenant : "common");
	j->authority = acct->oauth_authority ? mk_xstrdup(acct->oauth_authority) : NULL;
	j->scopes = acct->oauth_scopes ? mk_xstrdup(acct->oauth_scopes) : NULL;
	start_refresh(o, j, acct);
	return 0;
}

void mk_oauth_token_cancel(struct mk_oauth_wait *w)
{
	if (w->ready) {
		if (w->err == 0) {
			free_str_secret(&w->token);
			w->err = MK_ECANCELED;
			w->msg = mk_xstrdup("canceled");
		}
		return;
	}
	struct acct *a = w->a;
	for (struct mk_oauth_wait **pp = &a->waiters; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			if (a->waiters_tail == &w->next)
				a->waiters_tail = pp;
			break;
		}
	}
	w->err = MK_ECANCELED;
	w->msg = mk_xstrdup("canceled");
	make_ready(w->o, w);
}

void mk_oauth_forget(struct mk_oauth *o, const char *account)
{
	for (struct acct *a = o->accts; a != NULL; a = a->next)
		if (strcmp(a->name, account) == 0)
			drop_token(a);
}
