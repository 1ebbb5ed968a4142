/* SPDX-License-Identifier: MIT */
/*
 * cli_sync.c - `mailkeep sync [ACCOUNT...]`: a one-shot backup of every
 * selected folder of the accounts (all of them by default), in parallel
 * on one loop. Exit status: 0 when every folder of every account was
 * backed up; otherwise the most serious failure's sysexits code, with one
 * line per failed folder or account.
 */
#include "cli.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_lock.h"
#include "mk_log.h"
#include "mk_str.h"
#include "mk_pop3_fetch.h" /* issue 7 */
#include "mk_store.h"
#include "mk_sync.h"
#include "mk_time.h"
#include "mk_tls.h"

#include <getopt.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

struct acct_run {
	const struct mk_config_account *acct;
	struct mk_tls_ctx *tls;
	char *secret;
	struct mk_sync *sync;
	bool done;
	struct mk_pop3_fetch *pop3; /* issue 7: POP3 fetch of this account */
	struct mk_tls_ctx *pop3_tls;
};

struct sync_cli {
	char progress_folder[300];
	int64_t progress_start_ms;
	bool quiet, tty, verify;
	uint64_t differences;
	int64_t last_progress_ms;
	bool progress_shown;
	struct acct_run *runs;
	size_t n_runs;
	const char *store_dir; /* issue 6: the token files live in STORE/oauth/ */
};

static void clear_progress(struct sync_cli *c)
{
	if (c->progress_shown) {
		fputs("\r\033[K", stderr);
		c->progress_shown = false;
	}
}

static void on_progress(void *ud, const char *account, const char *folder, uint64_t done, uint64_t total,
			uint64_t bytes)
{
	struct sync_cli *c = ud;
	if (!c->tty || c->quiet)
		return;
	int64_t now = mk_time_mono_ms();
	char key[300];
	snprintf(key, sizeof(key), "%s/%s", account, folder);
	if (strcmp(key, c->progress_folder) != 0) {
		mk_strlcpy(c->progress_folder, key, sizeof(c->progress_folder));
		c->progress_start_ms = now;
	}
	if (now - c->last_progress_ms < 200 && done != total)
		return;
	c->last_progress_ms = now;
	double secs = (double)(now - c->progress_start_ms) / 1000.0;
	double rate = secs > 0.05 ? (double)bytes / 1e6 / secs : 0.0;
	fprintf(stderr, "\r\033[K%s: %llu/%llu messages, %.1f MB, %.1f MB/s", key, (unsigned long long)done,
		(unsigned long long)total, (double)bytes / 1e6, rate);
	if (done > 0 && done < total && secs > 0.5)
		fprintf(stderr, ", ETA %.0f s", secs * (double)(total - done) / (double)done);
	c->progress_shown = true;
}

static void on_folder(void *ud, const char *account, const struct mk_sync_folder_result *fr)
{
	struct sync_cli *c = ud;
	clear_progress(c);
	if (fr->err != 0) {
		fprintf(stderr, "mailkeep: account %s, folder %s: %s\n", account, fr->name, fr->error);
		return;
	}
	if (c->verify) {
		/* sizes: Exchange re-renders MIME, so RFC822.SIZE may differ from
		 * the bytes it sends; reported, but not counted as a problem */
		bool diff = fr->missing || fr->extra || fr->flag_updates || fr->uidvalidity_changed;
		c->differences += diff;
		if (diff || !c->quiet)
			printf("%s/%s: server %llu, not in store %llu%s, stale in store %llu, flags differ %llu, "
			       "size differs %llu%s%s\n",
			       account, fr->name, (unsigned long long)fr->server_count,
			       (unsigned long long)fr->missing, fr->missing ? " (run `mailkeep sync`)" : "",
			       (unsigned long long)fr->extra, (unsigned long long)fr->flag_updates,
			       (unsigned long long)fr->size_mismatch,
			       fr->uidvalidity_changed ? ", UIDVALIDITY changed" : "", diff ? "" : ": ok");
		return;
	}
	if (c->quiet)
		return;
	if (fr->skipped) {
		printf("%s/%s: skipped, %s\n", account, fr->name, fr->error);
		fflush(stdout);
		return;
	}
	if (fr->new_messages || fr->flag_updates || fr->gone || fr->no_body || fr->uidvalidity_changed)
		printf("%s/%s: %llu new (%.1f MB), %llu flag changes, %llu gone from server%s%s\n", account, fr->name,
		       (unsigned long long)fr->new_messages, (double)fr->new_bytes / 1e6,
		       (unsigned long long)fr->flag_updates, (unsigned long long)fr->gone,
		       fr->no_body ? ", some sent without content (retried next run)" : "",
		       fr->uidvalidity_changed ? ", UIDVALIDITY changed (old copy kept)" : "");
	else
		printf("%s/%s: up to date\n", account, fr->name);
	fflush(stdout);
}

static void on_done(void *ud, struct mk_sync *s)
{
	struct acct_run *r = ud;
	r->done = true;
}

static int worse(int a, int b)
{
	/* the most serious wins: config/auth/protocol over temporary */
	static const int order[] = {MK_EXIT_OK,       MK_EXIT_TEMPFAIL, MK_EXIT_UNAVAILABLE, MK_EXIT_PROTOCOL,
				    MK_EXIT_SOFTWARE, MK_EXIT_NOPERM,   MK_EXIT_CONFIG,      MK_EXIT_CANTCREAT,
				    MK_EXIT_IOERR};
	int ia = 0, ib = 0;
	for (int i = 0; i < (int)(sizeof(order) / sizeof(order[0])); i++) {
		if (order[i] == a)
			ia = i;
		if (order[i] == b)
			ib = i;
	}
	return ib > ia ? b : a;
}


/* ---- issue 7: POP3 accounts (fetch = pop3 | both) -----------------------
 * pop3_start() runs before the IMAP start of each account and returns 1
 * when the account is POP3 only (no IMAP sync); pop3_finish() prints the
 * "ACCOUNT/POP3: ..." line and merges the result into the exit status. */
static void on_pop3_done(void *ud, struct mk_pop3_fetch *f)
{
	(void)ud;
	(void)f;
}

static int pop3_start(struct sync_cli *cp, struct acct_run *run, uv_loop_t *loop, struct mk_store *store, bool trace,
		      int *result)
{
	const struct mk_config_account *a = run->acct;
	bool only = a->fetch == MK_CONFIG_FETCH_POP3;
	char *error = NULL, *secret = NULL;
	int r = mk_cli_get_secret(cp->store_dir, a, &secret, &error);
	if (r == 0)
		r = mk_cli_tls_ctx(a->tls_ca_file, &run->pop3_tls, &error);
	if (r == 0) {
		struct mk_pop3_fetch_opts po = {
			.loop = loop,
			.acct = a,
			.store = store,
			.tls_ctx = run->pop3_tls,
			.secret = secret,
			.trace = trace,
			.on_progress = on_progress,
			.ud = cp,
		};
		r = mk_pop3_fetch_start(&po, on_pop3_done, run, &run->pop3);
	}
	mk_config_secret_free(&secret);
	if (r < 0) {
		fprintf(stderr, "mailkeep: account %s, POP3: %s\n", a->name, error ? error : mk_strerror(r));
		*result = worse(*result, r == MK_ETLS ? MK_EXIT_CONFIG : mk_cli_exit_for(r));
	}
	mk_free(error);
	return only;
}

static void pop3_finish(struct sync_cli *cp, struct acct_run *run, int *result)
{
	if (run->pop3 != NULL) {
		const struct mk_pop3_fetch_result *res = mk_pop3_fetch_result(run->pop3);
		on_folder(cp, run->acct->name, &res->folder);
		if (res->err != 0)
			*result = worse(*result, mk_cli_exit_for(res->err));
		else if (!cp->quiet)
			printf("%s (POP3): %llu messages on the server, %llu new (%.1f MB), %llu deleted on the server\n",
			       run->acct->name, (unsigned long long)res->server_count,
			       (unsigned long long)res->new_messages, (double)res->new_bytes / 1e6,
			       (unsigned long long)res->deleted);
		mk_pop3_fetch_free(&run->pop3);
	}
	run->pop3_tls = NULL; /* shared cache */
}
/* ---- end of issue 7 block ---- */

/* Runs the sync engine for every account in c->runs on one loop. */
static int run_accounts(struct sync_cli *cp, struct mk_store *store, bool trace)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	int result = MK_EXIT_OK;
	int r;
	char *error = NULL;
	for (size_t i = 0; i < cp->n_runs; i++) {
		struct acct_run *run = &cp->runs[i];
		const struct mk_config_account *a = run->acct;
		if (!cp->verify && a->fetch != MK_CONFIG_FETCH_IMAP && pop3_start(cp, run, &loop, store, trace, &result)) {
			run->done = true; /* issue 7: POP3 only */
			continue;
		}
		if (a->imap.host == NULL) {
			fprintf(stderr, "mailkeep: account %s has no IMAP server (imap_host)\n", a->name);
			result = worse(result, MK_EXIT_CONFIG);
			run->done = true;
			continue;
		}
		r = mk_cli_get_secret(cp->store_dir, a, &run->secret, &error);
		if (r == 0)
			r = mk_cli_tls_ctx(a->tls_ca_file, &run->tls, &error);
		if (r < 0) {
			fprintf(stderr, "mailkeep: account %s: %s\n", a->name, error ? error : mk_strerror(r));
			MK_FREE(&error);
			result = worse(result, r == MK_ETLS || r == MK_ECONFIG ? MK_EXIT_CONFIG
					       : r == MK_EAUTH || r == MK_EPERM ? MK_EXIT_NOPERM
					       : r == MK_ECMD || r == MK_ENOTFOUND ? MK_EXIT_UNAVAILABLE
										 : mk_cli_exit_for(r));
			run->done = true;
			continue;
		}
		struct mk_sync_opts so = {
			.loop = &loop,
			.acct = a,
			.store = store,
			.tls_ctx = run->tls,
			.secret = run->secret,
			.trace = trace,
			.verify_server = cp->verify,
			.on_progress = on_progress,
			.on_folder = on_folder,
			.ud = cp,
		};
		r = mk_sync_start(&so, on_done, run, &run->sync);
		mk_config_secret_free(&run->secret);
		if (r < 0) {
			fprintf(stderr, "mailkeep: account %s: %s\n", a->name, mk_strerror(r));
			result = worse(result, mk_cli_exit_for(r));
			run->done = true;
		}
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	clear_progress(cp);
	for (size_t i = 0; i < cp->n_runs; i++) {
		struct acct_run *run = &cp->runs[i];
		if (run->sync != NULL) {
			const struct mk_sync_result *res = mk_sync_result(run->sync);
			if (res->err != 0) {
				fprintf(stderr, "mailkeep: account %s: %s\n", run->acct->name, res->error);
				result = worse(result, mk_cli_exit_for(res->err));
			}
			for (size_t k = 0; k < res->n_folders; k++)
				if (res->folders[k].err != 0)
					result = worse(result, mk_cli_exit_for(res->folders[k].err));
			if (!cp->quiet && res->err == 0 && res->n_excluded > 0)
				printf("%s: %zu folder%s not backed up (not mail, or left out by `folders`; see "
				       "`mailkeep check-config`): %s\n",
				       run->acct->name, res->n_excluded, res->n_excluded == 1 ? "" : "s", res->excluded);
			if (!cp->quiet && res->err == 0 && !cp->verify)
				printf("%s: %llu folders, %llu new messages (%.1f MB), %llu flag changes, %llu gone%s\n",
				       run->acct->name, (unsigned long long)res->folders_ok,
				       (unsigned long long)res->new_messages, (double)res->new_bytes / 1e6,
				       (unsigned long long)res->flag_updates, (unsigned long long)res->gone,
				       res->folders_failed ? ", SOME FOLDERS FAILED" : "");
			mk_sync_free(&run->sync);
		}
		mk_config_secret_free(&run->secret);
		run->tls = NULL; /* shared cache */
		pop3_finish(cp, run, &result); /* issue 7 */
	}
	int lc = uv_loop_close(&loop);
	MK_ASSERT(lc == 0);
	return result;
}

int mk_cli_verify_server(const struct mk_cli *cli, struct mk_config *cfg, struct mk_store *store, int argc,
			 char **argv)
{
	struct sync_cli c = {0};
	c.quiet = cli->quiet;
	c.verify = true;
	c.store_dir = cfg->store;
	c.runs = mk_xcalloc(cfg->n_accounts ? cfg->n_accounts : 1, sizeof(*c.runs));
	for (int i = 0; i < argc; i++) {
		const struct mk_config_account *a = mk_cli_pick_account(cfg, argv[i]);
		if (a == NULL) {
			mk_free(c.runs);
			return MK_EXIT_CONFIG;
		}
		c.runs[c.n_runs++].acct = a;
	}
	if (argc == 0)
		for (size_t i = 0; i < cfg->n_accounts; i++)
			if (cfg->accounts[i].imap.host != NULL)
				c.runs[c.n_runs++].acct = &cfg->accounts[i];
	int result = run_accounts(&c, store, false);
	mk_free(c.runs);
	if (result == MK_EXIT_OK && c.differences > 0)
		result = MK_EXIT_DATAERR;
	return result;
}

static void usage_sync(FILE *f)
{
	fprintf(f, "usage: mailkeep [-c FILE] sync [--quiet] [--trace] [ACCOUNT...]\n"
		   "Backs up every selected folder (config key `folders`) of the accounts\n"
		   "(default: all accounts with an IMAP server) into the store. Read-only on the\n"
		   "server; incremental; safe to interrupt at any time.\n");
}

int mk_cli_sync(const struct mk_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"quiet", no_argument, NULL, 'q'},
		{"trace", no_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct sync_cli c = {0};
	bool trace = false;
	c.quiet = cli->quiet;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+qh", opts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			c.quiet = true;
			break;
		case 't':
			trace = true;
			mk_log_set_level(MK_LOG_TRACE);
			break;
		case 'h':
			usage_sync(stdout);
			return MK_EXIT_OK;
		default:
			usage_sync(stderr);
			return MK_EXIT_USAGE;
		}
	}
	c.tty = isatty(2) && getenv("NO_COLOR") == NULL;
	struct mk_config *cfg = NULL;
	int ex = mk_cli_load_config(cli, &cfg);
	if (ex != 0)
		return ex;
	/* which accounts */
	c.store_dir = cfg->store;
	c.runs = mk_xcalloc(cfg->n_accounts ? cfg->n_accounts : 1, sizeof(*c.runs));
	if (optind < argc) {
		for (int i = optind; i < argc; i++) {
			const struct mk_config_account *a = mk_cli_pick_account(cfg, argv[i]);
			if (a == NULL) {
				mk_free(c.runs);
				mk_config_free(&cfg);
				return MK_EXIT_CONFIG;
			}
			c.runs[c.n_runs++].acct = a;
		}
	} else {
		for (size_t i = 0; i < cfg->n_accounts; i++)
			if (cfg->accounts[i].imap.host != NULL || cfg->accounts[i].fetch != MK_CONFIG_FETCH_IMAP /* issue 7 */)
				c.runs[c.n_runs++].acct = &cfg->accounts[i];
	}
	if (c.n_runs == 0) {
		fprintf(stderr, "mailkeep: %s: no account with an IMAP server to sync\n", cfg->path);
		mk_free(c.runs);
		mk_config_free(&cfg);
		return MK_EXIT_CONFIG;
	}
	pid_t agent_pid = 0;
	if (mk_lock_probe(cfg->store, &agent_pid) == 1) {
		/* the agent keeps this store up to date; two writers would only
		 * fetch the same mail twice */
		fprintf(stderr,
			"mailkeep: an agent (mailkeep run, pid %ld) is running on %s and keeps it up to date; "
			"`mailkeep status` shows what it is doing\n",
			(long)agent_pid, cfg->store);
		mk_free(c.runs);
		mk_config_free(&cfg);
		return MK_EXIT_TEMPFAIL;
	}
	struct mk_store *store = NULL;
	char *error = NULL;
	int r = mk_store_open(cfg->store, cfg->compress_level, &store, &error);
	if (r < 0) {
		fprintf(stderr, "mailkeep: %s\n", error ? error : mk_strerror(r));
		mk_free(error);
		mk_free(c.runs);
		mk_config_free(&cfg);
		return r == MK_ECONFIG ? MK_EXIT_CONFIG : MK_EXIT_CANTCREAT;
	}
	int result = run_accounts(&c, store, trace);
	mk_store_close(&store);
	mk_free(c.runs);
	mk_config_free(&cfg);
	return result;
}
