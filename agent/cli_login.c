/* SPDX-License-Identifier: MIT */
/*
 * cli_login.c - `mailkeep login ACCOUNT`: signs an account in with the OAuth
 * 2.0 device authorization grant (RFC 8628) and keeps the refresh token in
 * STORE/oauth/ACCOUNT.token (0600). And `mailkeep token ACCOUNT` (also
 * `login --refresh-only`): obtains an access token the way the agent does
 * (refreshing, the rotated refresh token saved first) and says how long it
 * is valid. Neither ever prints or logs a token.
 */
#include "cli.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_log.h"
#include "mk_oauth.h"
#include "mk_oauth_client.h"
#include "mk_time.h"
#include "mk_token.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct login_run {
	const struct mk_config *cfg;
	const struct mk_config_account *acct;
	int exit_code;
	bool done;
};

static int exit_for(int err)
{
	switch (err) {
	case 0:
		return MK_EXIT_OK;
	case MK_EAUTH:
	case MK_EPERM:
		return MK_EXIT_NOPERM;
	case MK_ECONFIG:
		return MK_EXIT_CONFIG;
	case MK_ESERVER:
		return MK_EXIT_TEMPFAIL; /* the endpoint failed: try again later */
	case MK_EIO:
		return MK_EXIT_CANTCREAT;
	default:
		return mk_cli_exit_for(err);
	}
}

static void print_until(int64_t valid_ms)
{
	time_t t = (time_t)((mk_time_wall_ms() + valid_ms) / 1000);
	struct tm tm;
	char when[64] = "?";
	if (localtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", &tm);
	printf("valid for %lld s (until %s)", (long long)(valid_ms / 1000), when);
}

/* ---- login: the device flow ---- */

static void on_code(const struct mk_token_reply *dc, void *ud)
{
	struct login_run *run = ud;
	printf("To sign in account %s (%s):\n", run->acct->name, run->acct->email);
	printf("  open      %s\n", dc->verification_uri);
	printf("  and enter %s\n", dc->user_code);
	if (dc->message != NULL)
		printf("(%s)\n", dc->message);
	if (dc->expires_in > 0)
		printf("Waiting for the sign-in; the code expires in %lld minutes.\n",
		       (long long)((dc->expires_in + 59) / 60));
	fflush(stdout);
}

static void on_wait(enum mk_token_error_kind kind, unsigned interval_s, void *ud)
{
	(void)ud;
	if (kind == MK_TOKEN_ERR_SLOW_DOWN)
		mk_log(MK_LOG_INFO, MK_LOG_CAT_OAUTH, NULL, "server asked to poll more slowly: every %u s now", interval_s);
}

static void on_done(int err, const char *msg, struct mk_token_reply *tok, void *ud)
{
	struct login_run *run = ud;
	run->done = true;
	const char *name = run->acct->name;
	if (err != 0) {
		fprintf(stderr, "mailkeep: account %s: sign-in failed: %s\n", name, msg);
		run->exit_code = exit_for(err);
		return;
	}
	if (tok->refresh_token == NULL) {
		fprintf(stderr,
			"mailkeep: account %s: signed in, but no refresh token was issued; oauth_scopes must "
			"include offline_access\n",
			name);
		run->exit_code = MK_EXIT_PROTOCOL;
		return;
	}
	char *error = NULL;
	int r = mk_token_file_write(run->cfg->store, name, run->acct->oauth_client_id, tok->refresh_token, &error);
	if (r < 0) {
		fprintf(stderr, "mailkeep: account %s: %s\n", name, error);
		mk_free(error);
		run->exit_code = MK_EXIT_CANTCREAT;
		return;
	}
	char *path = mk_token_file_path(run->cfg->store, name);
	printf("Signed in. Refresh token saved in %s (mode 0600).\n", path);
	if (tok->expires_in > 0) {
		printf("The first access token is ");
		print_until((int64_t)tok->expires_in * mk_oauth_second_ms());
		printf("; mailkeep refreshes it by itself.\n");
	}
	mk_free(path);
	run->exit_code = MK_EXIT_OK;
}

/* ---- token / login --refresh-only ---- */

static void on_token(int err, const char *msg, const struct mk_oauth_token *tok, void *ud)
{
	struct login_run *run = ud;
	run->done = true;
	if (err != 0) {
		fprintf(stderr, "mailkeep: account %s: %s\n", run->acct->name, msg);
		run->exit_code = exit_for(err);
		return;
	}
	printf("account %s: access token ", run->acct->name);
	print_until(tok->valid_ms);
	if (tok->from_cmd) {
		printf(", from token_cmd\n");
	} else {
		char *path = mk_token_file_path(run->cfg->store, run->acct->name);
		printf("; refresh token rotated and saved in %s\n", path);
		mk_free(path);
	}
	run->exit_code = MK_EXIT_OK;
}

static void usage_login(FILE *f)
{
	fprintf(f,
		"usage: mailkeep [-c FILE] login [--refresh-only] [ACCOUNT]\n"
		"Signs ACCOUNT in with Microsoft's device login: shows a web address and a code to\n"
		"enter there (from any browser, on any device), waits for you to approve, and keeps\n"
		"the refresh token in STORE/oauth/ACCOUNT.token (mode 0600). The account needs\n"
		"auth = xoauth2 and oauth_client_id (your own app registration in Microsoft Entra).\n"
		"  --refresh-only   do not sign in: refresh the access token with the saved refresh\n"
		"                   token (saving the rotated one) and say how long it is valid\n"
		"                   (the same as `mailkeep token ACCOUNT`)\n"
		"Exit: 0 signed in; 77 declined, code expired or refused; 75 network trouble;\n"
		"78 configuration error (including the AADSTS errors about the app registration).\n");
}

static void usage_token(FILE *f)
{
	fprintf(f, "usage: mailkeep [-c FILE] token [ACCOUNT]\n"
		   "Obtains an access token for ACCOUNT as the agent would (refreshing it with the saved\n"
		   "refresh token, or running token_cmd) and prints how long it is valid. The token\n"
		   "itself is never printed. Exit 77 means: run `mailkeep login ACCOUNT`.\n");
}

static int run_token(const struct mk_config *cfg, const struct mk_config_account *acct)
{
	struct login_run run = {cfg, acct, MK_EXIT_SOFTWARE, false};
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct mk_oauth *o = mk_oauth_new(&loop, cfg->store);
	int r = mk_oauth_token_get(o, acct, true, on_token, &run, NULL);
	if (r < 0) {
		fprintf(stderr, "mailkeep: account %s: %s\n", acct->name, mk_strerror(r));
		run.exit_code = MK_EXIT_CONFIG;
	} else {
		uv_run(&loop, UV_RUN_DEFAULT);
	}
	mk_oauth_free(&o);
	uv_run(&loop, UV_RUN_DEFAULT);
	int lc = uv_loop_close(&loop);
	MK_ASSERT(lc == 0);
	return run.exit_code;
}

static int login_or_token(const struct mk_cli *cli, int argc, char **argv, bool token_cmd)
{
	static const struct option opts[] = {
		{"refresh-only", no_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool refresh_only = token_cmd;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 'r':
			refresh_only = true;
			break;
		case 'h':
			(token_cmd ? usage_token : usage_login)(stdout);
			return MK_EXIT_OK;
		default:
			(token_cmd ? usage_token : usage_login)(stderr);
			return MK_EXIT_USAGE;
		}
	}
	if (argc - optind > 1 || (token_cmd && refresh_only != token_cmd)) {
		(token_cmd ? usage_token : usage_login)(stderr);
		return MK_EXIT_USAGE;
	}
	struct mk_config *cfg = NULL;
	int ex = mk_cli_load_config(cli, &cfg);
	if (ex != 0)
		return ex;
	const struct mk_config_account *acct = mk_cli_pick_account(cfg, optind < argc ? argv[optind] : NULL);
	if (acct == NULL) {
		mk_config_free(&cfg);
		return MK_EXIT_CONFIG;
	}
	if (acct->auth != MK_CONFIG_AUTH_XOAUTH2) {
		fprintf(stderr, "mailkeep: account %s uses auth = %s, not xoauth2: there is nothing to sign in\n",
			acct->name, mk_config_auth_name(acct->auth));
		mk_config_free(&cfg);
		return MK_EXIT_CONFIG;
	}
	if (refresh_only) {
		ex = run_token(cfg, acct);
		mk_config_free(&cfg);
		return ex;
	}
	if (acct->oauth_client_id == NULL) {
		fprintf(stderr,
			"mailkeep: account %s gets its tokens from token_cmd; `mailkeep login` is for accounts with "
			"oauth_client_id\n",
			acct->name);
		mk_config_free(&cfg);
		return MK_EXIT_CONFIG;
	}
	char *error = NULL;
	struct mk_tls_ctx *tls_ctx = NULL;
	int r = mk_cli_tls_ctx(acct->tls_ca_file, &tls_ctx, &error);
	if (r < 0) {
		fprintf(stderr, "mailkeep: account %s: %s\n", acct->name, error);
		mk_free(error);
		mk_config_free(&cfg);
		return MK_EXIT_CONFIG;
	}
	struct login_run run = {cfg, acct, MK_EXIT_SOFTWARE, false};
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct mk_oauth_client_opts co = {
		.authority = acct->oauth_authority,
		.tenant = acct->oauth_tenant,
		.client_id = acct->oauth_client_id,
		.scopes = acct->oauth_scopes,
		.account = acct->name,
		.tls_ctx = tls_ctx,
		.timeout_ms = acct->timeout_s * 1000,
	};
	static const struct mk_oauth_device_cbs cbs = {on_code, on_wait, on_done};
	struct mk_oauth_device *dev = NULL;
	r = mk_oauth_device_start(&loop, &co, &cbs, &run, &dev);
	if (r < 0) {
		fprintf(stderr, "mailkeep: account %s: cannot start the sign-in: %s\n", acct->name,
			r == MK_EINVAL ? "bad oauth_authority, oauth_tenant or oauth_client_id" : mk_strerror(r));
		run.exit_code = r == MK_EINVAL ? MK_EXIT_CONFIG : exit_for(r);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	int lc = uv_loop_close(&loop);
	MK_ASSERT(lc == 0);
	mk_config_free(&cfg);
	return run.exit_code;
}

int mk_cli_login(const struct mk_cli *cli, int argc, char **argv)
{
	return login_or_token(cli, argc, argv, false);
}

int mk_cli_token(const struct mk_cli *cli, int argc, char **argv)
{
	return login_or_token(cli, argc, argv, true);
}
