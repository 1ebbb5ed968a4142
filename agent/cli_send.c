/* SPDX-License-Identifier: MIT */
/*
 * cli_send.c - the outbox commands:
 *   mailkeep send [-a ACCOUNT] [--at TIME | --in DURATION] [-t] [-f FROM] [--queue-only] [RCPT...] < MESSAGE
 *   mailkeep sendmail [sendmail(8) options] [RCPT...] < MESSAGE
 *   mailkeep outbox [ls [--json] | show ID | cancel ID | retry ID | flush | rm ID]
 *
 * A message is committed to the queue (body and entry in one store
 * transaction) before anything is sent. Then, unless it is scheduled for
 * later: if an agent (`mailkeep run`) holds the store, it is told over the
 * control socket and sends it; otherwise this command sends it itself,
 * holding the agent lock meanwhile so no agent can start sending the same
 * entries. Either way a temporary failure leaves the message queued for a
 * retry, and the exit status is 0 once the message is safely queued
 * (sendmail(8) semantics), unless it failed permanently at once.
 */
#include "cli.h"
#include "mk_alloc.h"
#include "mk_control.h"
#include "mk_err.h"
#include "mk_lock.h"
#include "mk_log.h"
#include "mk_mime.h"
#include "mk_outbox.h"
#include "mk_sentcheck.h"
#include "mk_smtp_msg.h"
#include "mk_store.h"
#include "mk_str.h"
#include "mk_time.h"
#include "mk_tls.h"
#include "mk_when.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define READ_PIECE (64 * 1024)

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* ---- reading and queueing a message ---- */

struct queue_req {
	const struct mk_config_account *acct; /* NULL: pick by From */
	const char *account_name;
	bool rcpt_from_header; /* -t */
	const char *env_from;  /* -f, or NULL: the account's address */
	char **rcpt;           /* from the command line (parsed) */
	unsigned n_rcpt;
	int64_t send_at;       /* 0: now */
	bool allow_foreign_from;
	bool wait; /* --now: report the result even when the agent sends */
};

/* Streams LF / CR / CRLF line ends as CRLF into the body (the stored copy
 * is what goes on the wire, so its size is the SIZE= we announce). */
struct crlf {
	bool prev_cr;
	bool eight_bit;
	uint8_t out[2 * READ_PIECE + 2];
};

static int body_put(struct mk_store_body *w, struct crlf *c, const uint8_t *p, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t b = p[i];
		if (b >= 0x80)
			c->eight_bit = true;
		if (c->prev_cr && b != '\n')
			c->out[o++] = '\n';
		if (b == '\n' && !c->prev_cr)
			c->out[o++] = '\r';
		c->out[o++] = b;
		c->prev_cr = b == '\r';
		if (o >= sizeof(c->out) - 3) {
			int r = mk_store_body_write(w, c->out, o);
			if (r < 0)
				return r;
			o = 0;
		}
	}
	return o ? mk_store_body_write(w, c->out, o) : 0;
}

static int body_end(struct mk_store_body *w, struct crlf *c)
{
	if (c->prev_cr) {
		c->prev_cr = false;
		return mk_store_body_write(w, (const uint8_t *)"\n", 1);
	}
	return 0;
}

static const struct mk_config_account *account_by_from(const struct mk_config *cfg, char **from, unsigned n_from)
{
	for (unsigned i = 0; i < n_from; i++)
		for (size_t j = 0; j < cfg->n_accounts; j++)
			if (cfg->accounts[j].smtp.host != NULL && cfg->accounts[j].email != NULL &&
			    mk_smtp_msg_addr_equal(cfg->accounts[j].email, from[i]))
				return &cfg->accounts[j];
	const struct mk_config_account *only = NULL;
	for (size_t j = 0; j < cfg->n_accounts; j++) {
		if (cfg->accounts[j].smtp.host == NULL)
			continue;
		if (only != NULL)
			return NULL;
		only = &cfg->accounts[j];
	}
	return only;
}

/* Reads the message from fd, prepares it and commits it to the queue.
 * Returns 0 and *id_r, or an exit code (message printed). */
static int queue_message(const struct mk_config *cfg, struct mk_store *st, struct queue_req *q, int fd,
			 uint64_t *id_r, const struct mk_config_account **acct_r)
{
	uint8_t *buf = mk_xmalloc(MK_SMTP_MSG_HEADER_MAX + READ_PIECE);
	size_t len = 0;
	long hend = -1;
	bool eof = false;
	while (hend < 0 && !eof) {
		ssize_t n = read(fd, buf + len, MK_SMTP_MSG_HEADER_MAX + READ_PIECE - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "mailkeep: reading the message: %s\n", strerror(errno));
			mk_free(buf);
			return MK_EXIT_IOERR;
		}
		eof = n == 0;
		len += (size_t)n;
		hend = mk_smtp_msg_header_end(buf, len, eof);
		if (hend == MK_ETOOBIG || (hend < 0 && len >= MK_SMTP_MSG_HEADER_MAX)) {
			fprintf(stderr, "mailkeep: the message header is larger than %d bytes\n", MK_SMTP_MSG_HEADER_MAX);
			mk_free(buf);
			return MK_EXIT_DATAERR;
		}
	}
	if (len == 0) {
		fprintf(stderr, "mailkeep: no message on standard input\n");
		mk_free(buf);
		return MK_EXIT_DATAERR;
	}
	uint8_t rnd[16];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		fprintf(stderr, "mailkeep: no random bytes for a Message-ID\n");
		mk_free(buf);
		return MK_EXIT_OSERR;
	}
	time_t now = time(NULL);
	struct tm lt;
	localtime_r(&now, &lt);
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	const char *domain = "localhost";
	if (q->acct != NULL && q->acct->email != NULL && strchr(q->acct->email, '@') != NULL)
		domain = strchr(q->acct->email, '@') + 1;
	struct mk_smtp_msg_opts mo = {
		.rcpt_from_header = q->rcpt_from_header,
		.now = (int64_t)now,
		.tz_minutes = (int)(lt.tm_gmtoff / 60),
		.msgid_domain = domain,
		.random = rnd,
	};
	int r = mk_smtp_msg_prepare(&m, buf, (size_t)hend, &mo);
	if (r < 0) {
		fprintf(stderr, "mailkeep: the message cannot be sent: %s\n", m.error[0] ? m.error : mk_strerror(r));
		mk_smtp_msg_cleanup(&m);
		mk_free(buf);
		return MK_EXIT_DATAERR;
	}
	const struct mk_config_account *a = q->acct;
	if (a == NULL) {
		a = account_by_from(cfg, m.from, m.n_from);
		if (a == NULL) {
			fprintf(stderr, "mailkeep: which account sends this? None has the From address and several have "
					"an SMTP server: use -a ACCOUNT\n");
			mk_smtp_msg_cleanup(&m);
			mk_free(buf);
			return MK_EXIT_USAGE;
		}
		if (m.added_message_id && a->email != NULL && strchr(a->email, '@') != NULL) {
			/* The Message-ID we add names the account's domain. */
			mo.msgid_domain = strchr(a->email, '@') + 1;
			r = mk_smtp_msg_prepare(&m, buf, (size_t)hend, &mo);
			MK_ASSERT(r == 0);
		}
	}
	*acct_r = a;
	const char *env_from = q->env_from != NULL ? q->env_from : a->email;
	/* Outlook.com and Microsoft 365 refuse a From that is not the
	 * mailbox's, and only after the whole message went up (OUTLOOK.md
	 * §4.3: 554 5.2.252 SendAsDenied): say it now instead. */
	if (a->provider != MK_CONFIG_PROVIDER_CUSTOM && !q->allow_foreign_from) {
		for (unsigned i = 0; i < m.n_from; i++) {
			if (!mk_smtp_msg_addr_equal(m.from[i], a->email)) {
				fprintf(stderr,
					"mailkeep: From: %s is not the address of account %s (%s); %s would refuse it "
					"(554 5.2.252 SendAsDenied). Use --allow-foreign-from if this mailbox has "
					"Send-As rights for it.\n",
					m.from[i], a->name, a->email, mk_config_provider_name(a->provider));
				mk_smtp_msg_cleanup(&m);
				mk_free(buf);
				return MK_EXIT_DATAERR;
			}
		}
	}
	struct mk_store_outbox o;
	mk_store_outbox_init(&o);
	r = 0;
	for (unsigned i = 0; i < q->n_rcpt && r == 0; i++)
		r = mk_store_outbox_add_rcpt(&o, q->rcpt[i]);
	for (unsigned i = 0; i < m.n_rcpt && r == 0; i++) {
		bool dup = false;
		for (unsigned j = 0; j < o.n_rcpt && !dup; j++)
			dup = mk_smtp_msg_addr_equal(o.rcpt[j].addr, m.rcpt[i]);
		if (!dup)
			r = mk_store_outbox_add_rcpt(&o, m.rcpt[i]);
	}
	if (r < 0 || o.n_rcpt == 0) {
		fprintf(stderr, "mailkeep: %s\n",
			r == MK_ETOOBIG ? "too many recipients"
			: r < 0		? "a recipient address is not valid"
					: "no recipients: give them as arguments, or use -t to take To, Cc and Bcc");
		mk_store_outbox_cleanup(&o);
		mk_smtp_msg_cleanup(&m);
		mk_free(buf);
		return r == MK_ETOOBIG || r < 0 ? MK_EXIT_DATAERR : MK_EXIT_USAGE;
	}
	uint32_t account_id = 0;
	r = mk_store_account(st, a->name, true, &account_id);
	uint64_t id = 0;
	if (r == 0)
		r = mk_store_outbox_new_id(st, &id);
	struct mk_store_batch *b = mk_store_batch_new(st);
	struct mk_store_body *w = r == 0 ? mk_store_body_begin(b) : NULL;
	struct crlf *c = mk_xcalloc(1, sizeof(*c));
	if (w != NULL) {
		r = mk_store_body_write(w, m.header.data, m.header.len);
		if (r == 0 && (size_t)hend < len)
			r = body_put(w, c, buf + hend, len - (size_t)hend);
		while (r == 0 && !eof) {
			ssize_t n = read(fd, buf, READ_PIECE);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				r = -errno;
				break;
			}
			if (n == 0)
				break;
			r = body_put(w, c, buf, (size_t)n);
		}
		if (r == 0)
			r = body_end(w, c);
		uint64_t raw = 0;
		if (r == 0)
			r = mk_store_body_finish(w, o.sha, &raw);
		else
			mk_store_body_abort(w);
		o.size = raw;
	}
	if (r == 0) {
		int64_t t = mk_time_wall_s();
		o.id = id;
		o.account = account_id;
		o.created = t;
		o.send_at = q->send_at > 0 ? q->send_at : t;
		mk_strlcpy(o.from, env_from, sizeof(o.from));
		mk_strlcpy(o.message_id, m.message_id, sizeof(o.message_id));
		if (c->eight_bit || m.header_8bit)
			o.flags |= MK_STORE_OUTBOX_8BIT;
		if (m.smtputf8 || !is_ascii(env_from))
			o.flags |= MK_STORE_OUTBOX_SMTPUTF8;
		for (unsigned i = 0; i < o.n_rcpt; i++)
			if (!is_ascii(o.rcpt[i].addr))
				o.flags |= MK_STORE_OUTBOX_SMTPUTF8;
		r = mk_store_batch_put_outbox(b, &o);
		if (r == 0)
			r = mk_store_batch_commit(b);
	}
	mk_store_batch_free(&b);
	mk_free(c);
	mk_store_outbox_cleanup(&o);
	mk_smtp_msg_cleanup(&m);
	mk_free(buf);
	if (r < 0) {
		fprintf(stderr, "mailkeep: cannot queue the message: %s\n", mk_strerror(r));
		return r == -ENOSPC ? MK_EXIT_CANTCREAT : MK_EXIT_IOERR;
	}
	*id_r = id;
	return 0;
}

/* ---- sending now ---- */

struct flush_acct {
	const struct mk_config_account *acct;
	struct mk_outbox *ob;
	struct mk_outbox_plan plan;
	char *secret;
	bool done;
	int err;
};

struct flush_run {
	bool quiet;
	unsigned sent, failed, deferred, uncertain, limited;
	int exit_code;
	int64_t next_due;
};

static void print_refused(const struct mk_store_outbox *o)
{
	for (unsigned i = 0; i < o->n_rcpt; i++)
		if (o->rcpt[i].state == MK_STORE_RCPT_REFUSED)
			fprintf(stderr, "mailkeep: outbox %llu: %s refused: %s\n", (unsigned long long)o->id,
				o->rcpt[i].addr, o->rcpt[i].reply);
}

static void on_entry(void *ud, const struct mk_store_outbox *o)
{
	struct flush_run *fr = ud;
	unsigned refused = 0;
	for (unsigned i = 0; i < o->n_rcpt; i++)
		refused += o->rcpt[i].state == MK_STORE_RCPT_REFUSED;
	switch (o->state) {
	case MK_STORE_OUTBOX_SENT:
		fr->sent++;
		if (!fr->quiet)
			printf("outbox %llu: sent to %u recipient%s%s (%s)\n", (unsigned long long)o->id,
			       o->n_rcpt - refused, o->n_rcpt - refused == 1 ? "" : "s", refused ? ", some refused" : "",
			       o->last_reply);
		print_refused(o);
		break;
	case MK_STORE_OUTBOX_FAILED:
		fr->failed++;
		fprintf(stderr, "mailkeep: outbox %llu: failed: %s\n", (unsigned long long)o->id, o->last_reply);
		print_refused(o);
		break;
	case MK_STORE_OUTBOX_UNCERTAIN:
		fr->uncertain++;
		fprintf(stderr, "mailkeep: outbox %llu: uncertain: %s\n", (unsigned long long)o->id, o->last_reply);
		break;
	default: {
		fr->deferred++;
		char when[64];
		struct mk_when_clock clk;
		mk_when_clock_system(&clk);
		mk_when_format_local(o->next_attempt, &clk, when, sizeof(when));
		fprintf(stderr, "mailkeep: outbox %llu: deferred (%s); next attempt %s\n", (unsigned long long)o->id,
			o->last_reply, when);
		break;
	}
	}
	fflush(stdout);
}

static void on_flush_done(void *ud, struct mk_outbox *ob)
{
	struct flush_acct *fa = ud;
	fa->done = true;
	fa->err = mk_outbox_result(ob)->err;
}

static int worse(int a, int b)
{
	return a != 0 ? a : b;
}

/* Sends what is due for the accounts (acct NULL: all with an SMTP server),
 * restricted to `only` when n_only > 0. The caller holds the agent lock
 * and has run mk_store_outbox_recover(). */
static int flush_accounts(const struct mk_config *cfg, struct mk_store *st, const struct mk_config_account *acct,
			  const uint64_t *only, size_t n_only, bool ignore_backoff, bool trace, struct flush_run *fr)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct flush_acct *fa = mk_xcalloc(cfg->n_accounts ? cfg->n_accounts : 1, sizeof(*fa));
	size_t n_fa = 0;
	int64_t now = mk_time_wall_s();
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		const struct mk_config_account *a = &cfg->accounts[i];
		if (a->smtp.host == NULL || (acct != NULL && a != acct))
			continue;
		uint32_t account_id = 0;
		int r = mk_store_account(st, a->name, false, &account_id);
		if (r == MK_ENOTFOUND)
			continue; /* never queued anything */
		struct flush_acct *f = &fa[n_fa];
		f->acct = a;
		if (r == 0)
			r = mk_outbox_plan(st, a, account_id, now, ignore_backoff, only, n_only, &f->plan);
		if (r < 0) {
			fprintf(stderr, "mailkeep: account %s: outbox: %s\n", a->name, mk_strerror(r));
			fr->exit_code = worse(fr->exit_code, MK_EXIT_IOERR);
			continue;
		}
		n_fa++;
		fr->limited += f->plan.limited;
		if (f->plan.next_due != 0 && (fr->next_due == 0 || f->plan.next_due < fr->next_due))
			fr->next_due = f->plan.next_due;
		if (f->plan.limited > 0)
			fprintf(stderr, "mailkeep: account %s: %u message%s held back by the %s limit\n", a->name,
				f->plan.limited, f->plan.limited == 1 ? "" : "s",
				f->plan.minute_limited ? "max_per_minute" : "max_per_day");
		if (f->plan.n == 0) {
			f->done = true;
			continue;
		}
		char *error = NULL;
		struct mk_tls_ctx *tls = NULL;
		/* issue 6: for xoauth2, an access token from the token manager */
		r = mk_cli_get_secret(cfg->store, a, &f->secret, &error);
		if (r == 0)
			r = mk_cli_tls_ctx(a->tls_ca_file, &tls, &error);
		if (r == 0) {
			struct mk_outbox_opts oo = {
				.loop = &loop,
				.acct = a,
				.store = st,
				.tls_ctx = tls,
				.secret = f->secret,
				.trace = trace,
				.ids = f->plan.ids,
				.n_ids = f->plan.n,
				.on_entry = on_entry,
				.ud = fr,
			};
			r = mk_outbox_start(&oo, on_flush_done, f, &f->ob);
		}
		mk_config_secret_free(&f->secret);
		if (r < 0) {
			fprintf(stderr, "mailkeep: account %s: %s\n", a->name, error ? error : mk_strerror(r));
			mk_free(error);
			fr->exit_code = worse(fr->exit_code, mk_cli_exit_for(r));
			f->done = true;
		}
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	for (size_t i = 0; i < n_fa; i++) {
		struct flush_acct *f = &fa[i];
		if (f->ob != NULL) {
			const struct mk_outbox_result *res = mk_outbox_result(f->ob);
			if (res->err != 0 && res->err != MK_ECANCELED) {
				fprintf(stderr, "mailkeep: %s\n", res->error);
				fr->exit_code = worse(fr->exit_code, mk_cli_exit_for(res->err));
			}
			mk_outbox_free(&f->ob);
		}
		mk_outbox_plan_free(&f->plan);
	}
	mk_free(fa);
	int lc = uv_loop_close(&loop);
	MK_ASSERT(lc == 0);
	return fr->exit_code;
}

static void on_save_done(void *ud, struct mk_sentcheck *c)
{
	(void)c;
	*(bool *)ud = true;
}

/* save_sent: APPENDs the copies of sent messages not saved yet, for the
 * accounts that ask for it (acct NULL: all). The caller holds the lock.
 * Returns an exit code (a failure to save is reported, not fatal: the
 * agent or the next command retries). */
static int save_copies(const struct mk_config *cfg, struct mk_store *st, const struct mk_config_account *acct,
		       bool quiet, bool trace)
{
	int ex = 0;
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		const struct mk_config_account *a = &cfg->accounts[i];
		if (a->save_sent == NULL || a->imap.host == NULL || (acct != NULL && a != acct))
			continue;
		uint32_t aid = 0;
		uint64_t *ids = NULL;
		size_t n = 0;
		if (mk_store_account(st, a->name, false, &aid) < 0 || mk_outbox_unsaved_list(st, aid, 1000, &ids, &n) < 0 ||
		    n == 0) {
			mk_free(ids);
			continue;
		}
		char *secret = NULL, *error = NULL;
		struct mk_tls_ctx *tls = NULL;
		int r = mk_cli_get_secret(cfg->store, a, &secret, &error);
		if (r == 0)
			r = mk_cli_tls_ctx(a->tls_ca_file, &tls, &error);
		uv_loop_t loop;
		uv_loop_init(&loop);
		struct mk_sentcheck *job = NULL;
		bool done = false;
		if (r == 0) {
			struct mk_sentcheck_opts co = {
				.loop = &loop,
				.acct = a,
				.tls_ctx = tls,
				.secret = secret,
				.folder = a->save_sent,
				.trace = trace,
				.store = st,
				.append_ids = ids,
				.n_append = n,
			};
			r = mk_sentcheck_start(&co, on_save_done, &done, &job);
		}
		mk_config_secret_free(&secret);
		if (r == 0) {
			uv_run(&loop, UV_RUN_DEFAULT);
			const struct mk_sentcheck_result *res = mk_sentcheck_result(job);
			if (res->saved > 0 && !quiet)
				printf("outbox: %u cop%s saved in \"%s\" (account %s)\n", res->saved,
				       res->saved == 1 ? "y" : "ies", a->save_sent, a->name);
			if (res->err != 0) {
				fprintf(stderr, "mailkeep: %s (the copy is saved later)\n", res->error);
				ex = ex ? ex : mk_cli_exit_for(res->err);
			}
			mk_sentcheck_free(&job);
		} else {
			fprintf(stderr, "mailkeep: account %s: cannot save sent copies: %s\n", a->name,
				error ? error : mk_strerror(r));
			ex = ex ? ex : mk_cli_exit_for(r);
		}
		mk_free(error);
		mk_free(ids);
		int lc = uv_loop_close(&loop);
		MK_ASSERT(lc == 0);
	}
	return ex;
}

/* Tells a running agent to look at the outbox. Returns 1 (told), 0 (no
 * agent), <0 (an agent runs but did not answer). */
static int kick_agent(const struct mk_config *cfg, pid_t *pid_r)
{
	pid_t pid = 0;
	if (mk_lock_probe(cfg->store, &pid) != 1)
		return 0;
	*pid_r = pid;
	char *path = mk_control_default_path(cfg->store);
	struct mk_buf reply;
	mk_buf_init(&reply, MK_CONTROL_REPLY_MAX);
	char *error = NULL;
	int r = mk_control_request(path, "outbox", &reply, &error);
	mk_free(error);
	mk_buf_cleanup(&reply);
	mk_free(path);
	return r < 0 ? r : 1;
}

/* Sends `only` (or everything due) now, in this process, unless an agent
 * holds the store. Returns an exit code. */
/* --now with an agent running: follow the entry in the store until the
 * agent's attempt is over (or 2 minutes), and report it like our own. */
static void wait_for_agent(struct mk_store *st, uint64_t id, struct flush_run *fr)
{
	struct mk_store_outbox o;
	mk_store_outbox_init(&o);
	uint32_t attempts = 0;
	if (mk_store_outbox_get(st, id, &o) == 0)
		attempts = o.attempts;
	for (int i = 0; i < 1200; i++) {
		if (mk_store_outbox_get(st, id, &o) < 0)
			break;
		bool over = o.state != MK_STORE_OUTBOX_QUEUED && o.state != MK_STORE_OUTBOX_SENDING;
		if (over || (o.state == MK_STORE_OUTBOX_QUEUED && o.attempts > attempts)) {
			on_entry(fr, &o);
			mk_store_outbox_cleanup(&o);
			return;
		}
		usleep(100 * 1000);
	}
	fprintf(stderr, "mailkeep: outbox %llu: the agent has not sent it yet (`mailkeep outbox show %llu`)\n",
		(unsigned long long)id, (unsigned long long)id);
	mk_store_outbox_cleanup(&o);
}

static int send_now(const struct mk_cli *cli, const struct mk_config *cfg, struct mk_store *st,
		    const struct mk_config_account *acct, const uint64_t *only, size_t n_only, bool ignore_backoff,
		    bool trace, bool wait, struct flush_run *fr)
{
	pid_t pid = 0;
	int k = kick_agent(cfg, &pid);
	if (k != 0) {
		if (!cli->quiet)
			printf("the agent (mailkeep run, pid %ld) sends %s\n", (long)pid, n_only == 1 ? "it" : "the queue");
		if (k < 0)
			fprintf(stderr, "mailkeep: warning: the agent did not answer; it will send at its next timer\n");
		else if (wait && n_only == 1)
			wait_for_agent(st, only[0], fr);
		return 0;
	}
	struct mk_lock *lock = NULL;
	char *error = NULL;
	int r = mk_lock_acquire(cfg->store, &lock, &error);
	if (r < 0) {
		/* An agent (or another send) started meanwhile: it will send. */
		fprintf(stderr, "mailkeep: %s; the message stays queued\n", error ? error : mk_strerror(r));
		mk_free(error);
		return 0;
	}
	unsigned requeued = 0, uncertain = 0;
	r = mk_store_outbox_recover(st, &requeued, &uncertain);
	if (r == 0 && uncertain > 0)
		fprintf(stderr,
			"mailkeep: %u message%s interrupted after sending and before the server's reply: "
			"`mailkeep outbox ls` shows them as uncertain\n",
			uncertain, uncertain == 1 ? " was" : "s were");
	int ex = flush_accounts(cfg, st, acct, only, n_only, ignore_backoff, trace, fr);
	/* copies of what went out, for servers that keep none (save_sent) */
	(void)save_copies(cfg, st, acct, fr->quiet, trace);
	mk_lock_release(&lock);
	return ex;
}

/* ---- send / sendmail ---- */

static void send_usage(FILE *f)
{
	fprintf(f, "usage: mailkeep send [-a ACCOUNT] [--now | --at TIME | --in DURATION | --queue-only] [-t] [-f FROM]\n"
		   "                     [--allow-foreign-from] [--trace] [RCPT...] < MESSAGE\n"
		   "Queues an RFC 5322 message in the store's outbox and sends it: now (unless --at/--in or\n"
		   "--queue-only), by the running agent if there is one, else by this command.\n"
		   "  -a, --account NAME   the sending account (default: the one whose email is the From\n"
		   "                       address, or the only account with an SMTP server)\n"
		   "  -t                   take recipients from To, Cc and Bcc (Bcc is removed before sending)\n"
		   "  -f, --from ADDR      envelope sender (default: the account's email)\n"
		   "  --at TIME            send at TIME: 2026-12-24T09:00, \"2026-12-24 09:00\", 09:00,\n"
		   "                       \"tomorrow 09:00\", \"mon 08:30\", with Z or +01:00 for a zone\n"
		   "  --in DURATION        send after DURATION: 90s, 15m, 2h, 1d, 1h30m\n"
		   "  --now                send now and report the result, also when the agent sends it\n"
		   "  --queue-only         queue, do not send now (the agent or `outbox flush` will)\n"
		   "  --allow-foreign-from allow a From that is not the account's address (Send-As rights)\n"
		   "Date and Message-ID are added when missing. The message is in the queue when the\n"
		   "command returns; exit 0 means queued (and sent, or deferred for a retry).\n"
		   "Exit codes: 0 queued/sent, 64 usage, 65 bad message or permanent refusal, 73/74 store,\n"
		   "77 login failed, 78 configuration.\n");
}

static void free_rcpts(struct queue_req *q)
{
	mk_smtp_msg_free_list(&q->rcpt, &q->n_rcpt);
}

static int add_rcpt_arg(struct queue_req *q, const char *arg)
{
	char err[300] = "";
	int r = mk_smtp_msg_parse_addresses(arg, strlen(arg), &q->rcpt, &q->n_rcpt, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "mailkeep: recipient \"%s\": %s\n", arg, err[0] ? err : mk_strerror(r));
		return MK_EXIT_USAGE;
	}
	return 0;
}

/* The common tail of send and sendmail: queue, then send now or not. */
static int queue_and_send(const struct mk_cli *cli, struct queue_req *q, bool queue_only, bool trace,
			  bool sendmail_mode)
{
	struct mk_config *cfg = NULL;
	struct mk_store *st = NULL;
	int ex = mk_cli_open_store(cli, &cfg, &st);
	if (ex != 0)
		return ex;
	if (q->account_name != NULL) {
		q->acct = mk_cli_pick_account(cfg, q->account_name);
		if (q->acct == NULL) {
			mk_store_close(&st);
			mk_config_free(&cfg);
			return MK_EXIT_CONFIG;
		}
		if (q->acct->smtp.host == NULL) {
			fprintf(stderr, "mailkeep: account %s has no SMTP server (set smtp_host, or provider)\n",
				q->acct->name);
			mk_store_close(&st);
			mk_config_free(&cfg);
			return MK_EXIT_CONFIG;
		}
	}
	uint64_t id = 0;
	const struct mk_config_account *a = NULL;
	ex = queue_message(cfg, st, q, 0, &id, &a);
	if (ex == 0) {
		struct mk_when_clock clk;
		mk_when_clock_system(&clk);
		if (q->send_at > mk_time_wall_s()) {
			char when[64];
			mk_when_format_local(q->send_at, &clk, when, sizeof(when));
			if (!cli->quiet)
				printf("outbox %llu: queued for %s (account %s)\n", (unsigned long long)id, when, a->name);
			pid_t pid = 0;
			int k = kick_agent(cfg, &pid);
			if (k == 0 && !cli->quiet)
				printf("no agent is running: start `mailkeep run` (or a systemd unit) so it goes out on time\n");
		} else if (queue_only) {
			if (!cli->quiet)
				printf("outbox %llu: queued (account %s)\n", (unsigned long long)id, a->name);
			pid_t pid = 0;
			(void)kick_agent(cfg, &pid);
		} else {
			if (!cli->quiet && !sendmail_mode)
				printf("outbox %llu: queued (account %s)\n", (unsigned long long)id, a->name);
			struct flush_run fr = {.quiet = cli->quiet || sendmail_mode};
			int sx = send_now(cli, cfg, st, a, &id, 1, false, trace, q->wait, &fr);
			if (fr.failed > 0)
				ex = MK_EXIT_DATAERR; /* refused for good: the sender must know */
			else if (fr.limited > 0 && !cli->quiet)
				printf("outbox %llu: waits for the rate limit; the agent or `mailkeep outbox flush` sends "
				       "it later\n",
				       (unsigned long long)id);
			else if (sx != 0 && sx != MK_EXIT_TEMPFAIL && sx != MK_EXIT_PROTOCOL && sx != MK_EXIT_NOPERM)
				ex = sx;
			else if (sx != 0)
				fprintf(stderr, "mailkeep: outbox %llu stays queued and will be retried\n",
					(unsigned long long)id);
			if (sx == MK_EXIT_NOPERM || sx == MK_EXIT_CONFIG)
				ex = sx; /* the user must fix the login or the config */
		}
	}
	mk_store_close(&st);
	mk_config_free(&cfg);
	return ex;
}

/* argv[first..] are recipients; then queue and send. */
static int rcpts_then_send(const struct mk_cli *cli, struct queue_req *q, int argc, char **argv, int first,
			   bool queue_only, bool trace, bool sendmail_mode)
{
	int ex = 0;
	for (int i = first; i < argc && ex == 0; i++)
		ex = add_rcpt_arg(q, argv[i]);
	if (ex == 0)
		ex = queue_and_send(cli, q, queue_only, trace, sendmail_mode);
	free_rcpts(q);
	return ex;
}

int mk_cli_send(const struct mk_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"account", required_argument, NULL, 'a'},
		{"from", required_argument, NULL, 'f'},
		{"at", required_argument, NULL, 'A'},
		{"in", required_argument, NULL, 'I'},
		{"queue-only", no_argument, NULL, 'Q'},
		{"now", no_argument, NULL, 'N'},
		{"allow-foreign-from", no_argument, NULL, 'F'},
		{"trace", no_argument, NULL, 'T'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct queue_req q = {0};
	const char *at = NULL, *in = NULL;
	bool queue_only = false, trace = false;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "a:f:th", opts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			q.account_name = optarg;
			break;
		case 'f':
			q.env_from = optarg;
			break;
		case 't':
			q.rcpt_from_header = true;
			break;
		case 'A':
			at = optarg;
			break;
		case 'I':
			in = optarg;
			break;
		case 'Q':
			queue_only = true;
			break;
		case 'N':
			q.wait = true;
			break;
		case 'F':
			q.allow_foreign_from = true;
			break;
		case 'T':
			trace = true;
			break;
		case 'h':
			send_usage(stdout);
			return MK_EXIT_OK;
		default:
			send_usage(stderr);
			return MK_EXIT_USAGE;
		}
	}
	if (at != NULL && in != NULL) {
		fprintf(stderr, "mailkeep: send: give --at or --in, not both\n");
		return MK_EXIT_USAGE;
	}
	if (q.wait && (at != NULL || in != NULL || queue_only)) {
		fprintf(stderr, "mailkeep: send: --now sends at once: not with --at, --in or --queue-only\n");
		return MK_EXIT_USAGE;
	}
	char err[300] = "";
	if (at != NULL) {
		struct mk_when_clock clk;
		mk_when_clock_system(&clk);
		if (mk_when_parse_time(at, &clk, &q.send_at, err, sizeof(err)) < 0) {
			fprintf(stderr, "mailkeep: send: %s\n", err);
			return MK_EXIT_USAGE;
		}
		if (q.send_at < mk_time_wall_s() - 60) {
			fprintf(stderr, "mailkeep: send: --at %s is in the past\n", at);
			return MK_EXIT_USAGE;
		}
	}
	if (in != NULL) {
		int64_t secs = 0;
		if (mk_when_parse_duration(in, &secs, err, sizeof(err)) < 0) {
			fprintf(stderr, "mailkeep: send: %s\n", err);
			return MK_EXIT_USAGE;
		}
		q.send_at = mk_time_wall_s() + secs;
	}
	if (q.env_from != NULL && !mk_smtp_msg_addr_valid(q.env_from)) {
		fprintf(stderr, "mailkeep: send: -f %s is not an address\n", q.env_from);
		return MK_EXIT_USAGE;
	}
	return rcpts_then_send(cli, &q, argc, argv, optind, queue_only, trace, false);
}

/* sendmail(8) for MUAs and scripts: -t, -f FROM / -fFROM, -F NAME, -i,
 * -oi, -odb/-odi/-oem..., -B 8BITMIME, -N ..., -v, -bm, and -a ACCOUNT
 * (msmtp's). Unknown options are refused rather than guessed. */
int mk_cli_sendmail(const struct mk_cli *cli, int argc, char **argv)
{
	struct queue_req q = {0};
	int i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == '\0')
			break;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			printf("usage: mailkeep sendmail [-t] [-f FROM] [-a ACCOUNT] [-i] [-oi] [RCPT...] < MESSAGE\n"
			       "sendmail(8)-compatible: for neomutt/mutt (set sendmail=\"mailkeep sendmail\"), git\n"
			       "send-email (--sendmail-cmd=\"mailkeep sendmail\"), cron and scripts. The message is\n"
			       "queued, then sent (by the agent if it runs). Exit 0 once it is queued.\n");
			return MK_EXIT_OK;
		}
		char opt = a[1];
		const char *val = a[2] ? a + 2 : NULL;
		switch (opt) {
		case 't':
			q.rcpt_from_header = true;
			break;
		case 'i':
			break; /* a lone "." does not end the message: never does here */
		case 'v':
			break;
		case 'o':
		case 'B':
		case 'N':
		case 'F':
		case 'f':
		case 'a':
		case 'b':
		case 'X':
		case 'O':
		case 'R':
		case 'V':
			if ((opt == 'f' || opt == 'a' || opt == 'F' || opt == 'N' || opt == 'B' || opt == 'R' ||
			     opt == 'V' || opt == 'X') &&
			    val == NULL) {
				if (i + 1 >= argc) {
					fprintf(stderr, "mailkeep: sendmail: option -%c needs a value\n", opt);
					return MK_EXIT_USAGE;
				}
				val = argv[++i];
			}
			if (opt == 'f')
				q.env_from = val;
			else if (opt == 'a')
				q.account_name = val;
			else if (opt == 'b' && val != NULL && strcmp(val, "m") != 0) {
				fprintf(stderr, "mailkeep: sendmail: -b%s is not supported (only -bm)\n", val);
				return MK_EXIT_USAGE;
			}
			break;
		default:
			fprintf(stderr, "mailkeep: sendmail: unknown option %s\n", a);
			return MK_EXIT_USAGE;
		}
	}
	if (q.env_from != NULL && (q.env_from[0] == '\0' || strcmp(q.env_from, "<>") == 0))
		q.env_from = NULL;
	if (q.env_from != NULL && !mk_smtp_msg_addr_valid(q.env_from)) {
		fprintf(stderr, "mailkeep: sendmail: -f %s is not an address\n", q.env_from);
		return MK_EXIT_USAGE;
	}
	return rcpts_then_send(cli, &q, argc, argv, i, false, false, true);
}

/* ---- outbox ---- */

struct ls_ctx {
	struct mk_cli_outbox_list *list;
};

struct mk_cli_outbox_list {
	struct mk_store_outbox *o;
	size_t n, cap;
};

static int collect_cb(void *ud, const struct mk_store_outbox *o)
{
	struct mk_cli_outbox_list *l = ud;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 32;
		l->o = mk_xrealloc(l->o, l->cap * sizeof(*l->o));
	}
	mk_store_outbox_init(&l->o[l->n]);
	mk_store_outbox_copy(&l->o[l->n], o);
	l->n++;
	return 0;
}

static void list_free(struct mk_cli_outbox_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		mk_store_outbox_cleanup(&l->o[i]);
	mk_free(l->o);
	l->o = NULL;
	l->n = l->cap = 0;
}

/* The Subject of a queued message (decoded, for display). */
static void subject_of(struct mk_store *st, const struct mk_store_outbox *o, char *out, size_t n)
{
	out[0] = '\0';
	struct mk_store_body_reader *r = NULL;
	if (mk_store_body_open(st, o->sha, &r) < 0)
		return;
	uint8_t buf[8192];
	size_t len = 0, k = 0;
	while (len < sizeof(buf) - 1 && mk_store_body_next(r, buf + len, sizeof(buf) - 1 - len, &k) == 0 && k > 0)
		len += k;
	mk_store_body_close(&r);
	buf[len] = '\0';
	const char *p = (const char *)buf;
	for (;;) {
		if (strncasecmp(p, "Subject:", 8) == 0) {
			p += 8;
			char raw[1000];
			size_t o_ = 0;
			/* unfold */
			while (*p && o_ < sizeof(raw) - 1) {
				if (p[0] == '\r' || p[0] == '\n') {
					const char *q = p + (p[0] == '\r' && p[1] == '\n' ? 2 : 1);
					if (*q == ' ' || *q == '\t') {
						p = q;
						continue;
					}
					break;
				}
				raw[o_++] = *p++;
			}
			raw[o_] = '\0';
			const char *s = raw;
			while (*s == ' ' || *s == '\t')
				s++;
			mk_mime_decode_header(s, out, n);
			return;
		}
		const char *nl = strchr(p, '\n');
		if (nl == NULL || nl[1] == '\r' || nl[1] == '\n' || nl[1] == '\0')
			return; /* end of the header */
		p = nl + 1;
	}
}

static const char *account_name(const struct mk_config *cfg, struct mk_store *st, uint32_t id, char *buf, size_t n)
{
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		uint32_t aid = 0;
		if (mk_store_account(st, cfg->accounts[i].name, false, &aid) == 0 && aid == id)
			return cfg->accounts[i].name;
	}
	snprintf(buf, n, "#%u", id);
	return buf;
}

static void json_entry(FILE *f, const struct mk_config *cfg, struct mk_store *st, const struct mk_store_outbox *o)
{
	char ab[32], subj[300];
	subject_of(st, o, subj, sizeof(subj));
	fprintf(f, "{\"id\":%llu,\"account\":", (unsigned long long)o->id);
	mk_cli_json_str(f, account_name(cfg, st, o->account, ab, sizeof(ab)));
	fprintf(f, ",\"state\":\"%s\",\"dot_sent\":%s,\"created\":%lld,\"send_at\":%lld,\"next_attempt\":%lld,"
		   "\"last_attempt\":%lld,\"done_at\":%lld,\"attempts\":%u,\"size\":%llu,\"from\":",
		mk_store_outbox_state_name(o->state), o->phase == MK_STORE_OUTBOX_PHASE_DOT_SENT ? "true" : "false",
		(long long)o->created, (long long)o->send_at, (long long)o->next_attempt, (long long)o->last_attempt,
		(long long)o->done_at, o->attempts, (unsigned long long)o->size);
	mk_cli_json_str(f, o->from);
	fputs(",\"subject\":", f);
	mk_cli_json_str(f, subj);
	fputs(",\"message_id\":", f);
	mk_cli_json_str(f, o->message_id);
	fputs(",\"server_id\":", f);
	mk_cli_json_str(f, o->server_id);
	fputs(",\"last_reply\":", f);
	mk_cli_json_str(f, o->last_reply);
	fputs(",\"recipients\":[", f);
	for (unsigned i = 0; i < o->n_rcpt; i++) {
		static const char *const rs[] = {"pending", "sent", "refused"};
		fputs(i ? ",{\"address\":" : "{\"address\":", f);
		mk_cli_json_str(f, o->rcpt[i].addr);
		fprintf(f, ",\"state\":\"%s\",\"reply\":", o->rcpt[i].state < 3 ? rs[o->rcpt[i].state] : "?");
		mk_cli_json_str(f, o->rcpt[i].reply);
		fputc('}', f);
	}
	fputs("]}", f);
}

static void fmt_time(int64_t t, char *buf, size_t n)
{
	if (t == 0) {
		mk_strlcpy(buf, "-", n);
		return;
	}
	struct mk_when_clock clk;
	mk_when_clock_system(&clk);
	mk_when_format_local(t, &clk, buf, n);
}

static int outbox_ls(const struct mk_config *cfg, struct mk_store *st, const struct mk_config_account *acct, bool json)
{
	uint32_t aid = 0;
	if (acct != NULL && mk_store_account(st, acct->name, false, &aid) < 0) {
		if (json)
			printf("[]\n");
		else
			printf("the outbox of %s is empty\n", acct->name);
		return MK_EXIT_OK;
	}
	struct mk_cli_outbox_list l = {0};
	int r = mk_store_outbox_list(st, aid, collect_cb, &l);
	if (r < 0) {
		fprintf(stderr, "mailkeep: outbox: %s\n", mk_strerror(r));
		list_free(&l);
		return MK_EXIT_IOERR;
	}
	if (json) {
		fputc('[', stdout);
		for (size_t i = 0; i < l.n; i++) {
			if (i)
				fputc(',', stdout);
			json_entry(stdout, cfg, st, &l.o[i]);
		}
		fputs("]\n", stdout);
		list_free(&l);
		return MK_EXIT_OK;
	}
	if (l.n == 0)
		printf("the outbox is empty\n");
	else
		printf("%6s  %-9s  %-25s  %-12s  %-28s  %s\n", "ID", "STATE", "WHEN", "ACCOUNT", "TO", "SUBJECT");
	for (size_t i = 0; i < l.n; i++) {
		const struct mk_store_outbox *o = &l.o[i];
		char when[64], ab[32], subj[300], fit[64], to[400], tofit[40];
		int64_t t = o->state == MK_STORE_OUTBOX_QUEUED ? (o->next_attempt > o->send_at ? o->next_attempt : o->send_at)
			    : o->done_at			       ? o->done_at
								       : o->last_attempt;
		fmt_time(t, when, sizeof(when));
		subject_of(st, o, subj, sizeof(subj));
		mk_mime_fit(subj, 40, fit, sizeof(fit));
		snprintf(to, sizeof(to), "%s%s", o->rcpt[0].addr, o->n_rcpt > 1 ? " +" : "");
		if (o->n_rcpt > 1)
			snprintf(to + strlen(to), sizeof(to) - strlen(to), "%u", o->n_rcpt - 1);
		mk_mime_fit(to, 28, tofit, sizeof(tofit));
		printf("%6llu  %-9s  %-25s  %-12s  %-28s  %s\n", (unsigned long long)o->id,
		       mk_store_outbox_state_name(o->state), when, account_name(cfg, st, o->account, ab, sizeof(ab)),
		       tofit, fit);
	}
	list_free(&l);
	return MK_EXIT_OK;
}

static int parse_id(const char *s, uint64_t *id_r)
{
	uint64_t v;
	if (mk_str_to_u64(s, 1, UINT64_MAX, &v) < 0) {
		fprintf(stderr, "mailkeep: outbox: \"%s\" is not an outbox ID (see `mailkeep outbox ls`)\n", s);
		return MK_EXIT_USAGE;
	}
	*id_r = v;
	return 0;
}

static int outbox_show(const struct mk_config *cfg, struct mk_store *st, uint64_t id, bool json)
{
	struct mk_store_outbox o;
	mk_store_outbox_init(&o);
	int r = mk_store_outbox_get(st, id, &o);
	if (r < 0) {
		fprintf(stderr, "mailkeep: outbox %llu: %s\n", (unsigned long long)id,
			r == MK_ENOTFOUND ? "no such entry" : mk_strerror(r));
		return r == MK_ENOTFOUND ? MK_EXIT_DATAERR : MK_EXIT_IOERR;
	}
	if (json) {
		json_entry(stdout, cfg, st, &o);
		fputc('\n', stdout);
		mk_store_outbox_cleanup(&o);
		return MK_EXIT_OK;
	}
	char ab[32], subj[300], t1[64], t2[64], t3[64], t4[64];
	subject_of(st, &o, subj, sizeof(subj));
	fmt_time(o.created, t1, sizeof(t1));
	fmt_time(o.send_at, t2, sizeof(t2));
	fmt_time(o.last_attempt, t3, sizeof(t3));
	fmt_time(o.state == MK_STORE_OUTBOX_QUEUED ? o.next_attempt : o.done_at, t4, sizeof(t4));
	printf("id:           %llu\n"
	       "account:      %s\n"
	       "state:        %s%s\n"
	       "subject:      %s\n"
	       "from:         %s\n"
	       "message-id:   %s\n"
	       "size:         %llu bytes%s%s\n"
	       "queued:       %s\n"
	       "send at:      %s\n"
	       "attempts:     %u (last %s)\n"
	       "%s %s\n"
	       "last reply:   %s\n",
	       (unsigned long long)o.id, account_name(cfg, st, o.account, ab, sizeof(ab)),
	       mk_store_outbox_state_name(o.state),
	       o.state == MK_STORE_OUTBOX_UNCERTAIN ? " (the server may have it: check Sent, then `outbox retry` or "
						      "`outbox cancel`)"
						    : "",
	       subj, o.from, o.message_id, (unsigned long long)o.size,
	       (o.flags & MK_STORE_OUTBOX_8BIT) ? ", 8-bit" : "", (o.flags & MK_STORE_OUTBOX_SMTPUTF8) ? ", SMTPUTF8" : "",
	       t1, t2, o.attempts, t3, o.state == MK_STORE_OUTBOX_QUEUED ? "next attempt:" : "done:        ", t4,
	       o.last_reply[0] ? o.last_reply : "-");
	if (o.server_id[0])
		printf("server id:    %s\n", o.server_id);
	static const char *const rs[] = {"pending", "sent", "refused"};
	for (unsigned i = 0; i < o.n_rcpt; i++)
		printf("to:           %s (%s)%s%s\n", o.rcpt[i].addr, o.rcpt[i].state < 3 ? rs[o.rcpt[i].state] : "?",
		       o.rcpt[i].reply[0] ? ": " : "", o.rcpt[i].reply);
	mk_store_outbox_cleanup(&o);
	return MK_EXIT_OK;
}

/* cancel: QUEUED, FAILED or UNCERTAIN -> CANCELED. retry: FAILED,
 * UNCERTAIN or QUEUED -> QUEUED now (the user decided: for an uncertain
 * entry that means "send it again"). */
static int outbox_change(struct mk_store *st, uint64_t id, bool cancel, bool quiet)
{
	struct mk_store_outbox o;
	mk_store_outbox_init(&o);
	int r = mk_store_outbox_get(st, id, &o);
	if (r < 0) {
		fprintf(stderr, "mailkeep: outbox %llu: %s\n", (unsigned long long)id,
			r == MK_ENOTFOUND ? "no such entry" : mk_strerror(r));
		return r == MK_ENOTFOUND ? MK_EXIT_DATAERR : MK_EXIT_IOERR;
	}
	uint8_t was = o.state;
	bool ok = was == MK_STORE_OUTBOX_QUEUED || was == MK_STORE_OUTBOX_FAILED || was == MK_STORE_OUTBOX_UNCERTAIN;
	if (!cancel && was == MK_STORE_OUTBOX_CANCELED)
		ok = true;
	if (!ok) {
		fprintf(stderr, "mailkeep: outbox %llu is %s: it cannot be %s\n", (unsigned long long)id,
			mk_store_outbox_state_name(was), cancel ? "canceled" : "retried");
		mk_store_outbox_cleanup(&o);
		return MK_EXIT_DATAERR;
	}
	int64_t now = mk_time_wall_s();
	if (cancel) {
		o.state = MK_STORE_OUTBOX_CANCELED;
		o.done_at = now;
	} else {
		o.state = MK_STORE_OUTBOX_QUEUED;
		o.phase = MK_STORE_OUTBOX_PHASE_NONE;
		o.next_attempt = 0;
		o.done_at = 0;
		if (o.send_at > now && was != MK_STORE_OUTBOX_QUEUED)
			o.send_at = now;
		/* Give it a fresh queue age, and the recipients another chance. */
		o.created = now;
		for (unsigned i = 0; i < o.n_rcpt; i++)
			if (o.rcpt[i].state == MK_STORE_RCPT_REFUSED) {
				o.rcpt[i].state = MK_STORE_RCPT_PENDING;
				o.rcpt[i].reply[0] = '\0';
			}
	}
	r = mk_store_outbox_update(st, &o, was);
	mk_store_outbox_cleanup(&o);
	if (r == MK_ESTATE) {
		fprintf(stderr, "mailkeep: outbox %llu changed meanwhile (being sent?); try again\n",
			(unsigned long long)id);
		return MK_EXIT_TEMPFAIL;
	}
	if (r < 0) {
		fprintf(stderr, "mailkeep: outbox %llu: %s\n", (unsigned long long)id, mk_strerror(r));
		return MK_EXIT_IOERR;
	}
	if (!quiet)
		printf("outbox %llu: %s\n", (unsigned long long)id, cancel ? "canceled" : "queued again");
	return MK_EXIT_OK;
}

static void outbox_usage(FILE *f)
{
	fprintf(f, "usage: mailkeep outbox [ls] [-a ACCOUNT] [--json]\n"
		   "       mailkeep outbox show ID [--json]\n"
		   "       mailkeep outbox cancel ID     stop a queued, failed or uncertain message\n"
		   "       mailkeep outbox retry ID      queue a failed or uncertain message again, now\n"
		   "       mailkeep outbox flush [-a ACCOUNT] [--trace]   send what is queued now, without\n"
		   "                                     waiting for retry times (the agent does it if it runs)\n"
		   "       mailkeep outbox rm ID         delete a sent, failed or canceled entry and its copy\n"
		   "States: queued -> sending -> sent | failed | uncertain (interrupted after the message\n"
		   "went out, before the server's reply: it is never resent on its own), canceled.\n");
}

int mk_cli_outbox(const struct mk_cli *cli, int argc, char **argv)
{
	const char *sub = argc > 1 && argv[1][0] != '-' ? argv[1] : "ls";
	int first = argc > 1 && argv[1][0] != '-' ? 2 : 1;
	bool json = false, trace = false;
	const char *acct_name = NULL, *id_arg = NULL;
	for (int i = first; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--trace") == 0)
			trace = true;
		else if ((strcmp(argv[i], "-a") == 0 || strcmp(argv[i], "--account") == 0) && i + 1 < argc)
			acct_name = argv[++i];
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			outbox_usage(stdout);
			return MK_EXIT_OK;
		} else if (argv[i][0] != '-' && id_arg == NULL)
			id_arg = argv[i];
		else {
			outbox_usage(stderr);
			return MK_EXIT_USAGE;
		}
	}
	if (strcmp(sub, "help") == 0) {
		outbox_usage(stdout);
		return MK_EXIT_OK;
	}
	bool needs_id = strcmp(sub, "show") == 0 || strcmp(sub, "cancel") == 0 || strcmp(sub, "retry") == 0 ||
			strcmp(sub, "rm") == 0;
	if (!needs_id && strcmp(sub, "ls") != 0 && strcmp(sub, "flush") != 0) {
		fprintf(stderr, "mailkeep: outbox: unknown subcommand \"%s\"\n", sub);
		outbox_usage(stderr);
		return MK_EXIT_USAGE;
	}
	uint64_t id = 0;
	if (needs_id) {
		if (id_arg == NULL) {
			fprintf(stderr, "mailkeep: outbox %s: which ID? (see `mailkeep outbox ls`)\n", sub);
			return MK_EXIT_USAGE;
		}
		int ex = parse_id(id_arg, &id);
		if (ex != 0)
			return ex;
	}
	struct mk_config *cfg = NULL;
	struct mk_store *st = NULL;
	int ex = mk_cli_open_store(cli, &cfg, &st);
	if (ex != 0)
		return ex;
	const struct mk_config_account *acct = NULL;
	if (acct_name != NULL && (acct = mk_cli_pick_account(cfg, acct_name)) == NULL) {
		ex = MK_EXIT_CONFIG;
	} else if (strcmp(sub, "ls") == 0) {
		ex = outbox_ls(cfg, st, acct, json);
	} else if (strcmp(sub, "show") == 0) {
		ex = outbox_show(cfg, st, id, json);
	} else if (strcmp(sub, "cancel") == 0 || strcmp(sub, "retry") == 0) {
		bool cancel = strcmp(sub, "cancel") == 0;
		ex = outbox_change(st, id, cancel, cli->quiet);
		if (ex == 0 && !cancel) {
			pid_t pid = 0;
			(void)kick_agent(cfg, &pid);
		}
	} else if (strcmp(sub, "rm") == 0) {
		int r = mk_store_outbox_delete(st, id);
		if (r == 0 && !cli->quiet)
			printf("outbox %llu: deleted\n", (unsigned long long)id);
		else if (r == MK_ESTATE)
			fprintf(stderr, "mailkeep: outbox %llu is not sent, failed or canceled: cancel it first\n",
				(unsigned long long)id);
		else if (r < 0)
			fprintf(stderr, "mailkeep: outbox %llu: %s\n", (unsigned long long)id,
				r == MK_ENOTFOUND ? "no such entry" : mk_strerror(r));
		ex = r == 0 ? 0 : r == MK_ESTATE || r == MK_ENOTFOUND ? MK_EXIT_DATAERR : MK_EXIT_IOERR;
	} else { /* flush */
		struct flush_run fr = {.quiet = cli->quiet};
		ex = send_now(cli, cfg, st, acct, NULL, 0, true, trace, false, &fr);
		if (ex == 0 && fr.failed > 0)
			ex = MK_EXIT_DATAERR;
		if (!cli->quiet && fr.sent + fr.failed + fr.deferred + fr.uncertain > 0)
			printf("outbox: %u sent, %u failed, %u deferred, %u uncertain\n", fr.sent, fr.failed, fr.deferred,
			       fr.uncertain);
		else if (!cli->quiet && ex == 0 && fr.limited == 0)
			printf("outbox: nothing to send now\n");
	}
	mk_store_close(&st);
	mk_config_free(&cfg);
	return ex;
}
