/* SPDX-License-Identifier: MIT */
/*
 * cli_folders.c - `mailkeep folders [ACCOUNT]`: connect to the account's
 * IMAP server, verify TLS, log in, and print the folder list. It is the
 * first thing a new user runs to see that the account works, and the
 * `try` script's demonstration.
 */
#include "cli.h"
#include "mk_alloc.h"
#include "mk_conn.h"
#include "mk_err.h"
#include "mk_imap.h"
#include "mk_imap_session.h"
#include "mk_log.h"
#include "mk_login.h"
#include "mk_tls.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

struct folders_run {
	const struct mk_config_account *acct;
	char *secret;
	struct mk_imap_session *s;
	unsigned tag_capa, tag_login, tag_list, tag_logout;
	size_t n_folders;
	bool json;
	int err;
	char errmsg[600];
	int exit_code;
};

static void set_error(struct folders_run *run, int err, int exit_code, const char *msg)
{
	if (run->err != 0)
		return;
	run->err = err;
	run->exit_code = exit_code;
	snprintf(run->errmsg, sizeof(run->errmsg), "%s", msg);
}

static void on_ready(struct mk_imap_session *s, void *ud)
{
	struct folders_run *run = ud;
	struct mk_conn *c = mk_imap_session_conn(s);
	if (!run->json) {
		printf("connected to %s (%s), %s\n", mk_conn_peer_addr(c), run->acct->imap.host,
		       mk_conn_tls_summary(c));
		printf("certificate verified for %s; server key %s\n", run->acct->imap.host, mk_conn_peer_pin(c));
	}
	struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_CAPABILITY};
	if (mk_imap_session_submit(s, &cmd, &run->tag_capa) < 0)
		mk_imap_session_abort(s, MK_EPROTO, "cannot send CAPABILITY");
}

static void on_event(struct mk_imap_session *s, const struct mk_imap_event *ev, void *ud)
{
	struct folders_run *run = ud;
	char msg[600];
	if (ev->kind == MK_IMAP_EV_LIST) {
		run->n_folders++;
		if (run->json) {
			printf("%s{\"name\":", run->n_folders > 1 ? ",\n " : "[");
			mk_cli_json_str(stdout, ev->list.name);
			printf(",\"raw\":");
			mk_cli_json_str(stdout, ev->list.name_raw);
			printf(",\"delimiter\":\"%c\",\"selectable\":%s}", ev->list.delimiter ? ev->list.delimiter : '/',
			       ev->list.noselect ? "false" : "true");
		} else {
			char flags[200] = "";
			size_t off = 0;
			const struct mk_imap_arg *all = ev->args->a;
			uint32_t k = (uint32_t)(ev->list.flags - all) + 1;
			for (uint32_t left = ev->list.flags->n_children; left > 0 && k < ev->args->n; left--) {
				const struct mk_imap_arg *a = &all[k];
				if (a->kind == MK_IMAP_ARG_ATOM && off + a->v.n + 2 < sizeof(flags))
					off += (size_t)snprintf(flags + off, sizeof(flags) - off, "%s%.*s",
								off ? " " : "", (int)a->v.n, (const char *)a->v.p);
				k = a->next;
			}
			/* pad by characters, not bytes (names are UTF-8) */
			size_t width = 0;
			for (const unsigned char *q = (const unsigned char *)ev->list.name; *q; q++)
				width += (*q & 0xc0) != 0x80;
			printf("  %s%*s %s\n", ev->list.name, width < 32 ? (int)(32 - width) : 0, "", flags);
		}
		return;
	}
	if (ev->kind == MK_IMAP_EV_BYE) {
		if (run->tag_logout != 0)
			return; /* the normal answer to LOGOUT */
		snprintf(msg, sizeof(msg), "server ended the session: BYE %s", ev->text);
		set_error(run, MK_ESERVER, MK_EXIT_PROTOCOL, msg);
		return;
	}
	if (ev->kind != MK_IMAP_EV_TAGGED)
		return;
	struct mk_imap_cmd cmd = {0};
	if (ev->tag == run->tag_capa) {
		if (run->acct->auth != MK_CONFIG_AUTH_XOAUTH2 && mk_imap_session_has_cap(s, "LOGINDISABLED") &&
		    !mk_imap_session_has_cap(s, "AUTH=PLAIN")) {
			set_error(run, MK_EAUTH, MK_EXIT_NOPERM,
				  "server accepts no password login (LOGINDISABLED, no AUTH=PLAIN)");
			mk_imap_session_close(s);
			return;
		}
		/* XOAUTH2 with the access token, AUTHENTICATE PLAIN where offered
		 * (UTF-8 safe), else LOGIN */
		int r = mk_login_imap(s, run->acct, run->secret, &run->tag_login);
		mk_config_secret_free(&run->secret);
		if (r < 0)
			mk_imap_session_abort(s, r == MK_EINVAL ? MK_EAUTH : r,
					      r == MK_EINVAL ? "the access token is malformed" : "cannot send login");
		return;
	}
	if (ev->tag == run->tag_login) {
		if (ev->status != MK_IMAP_OK) {
			mk_login_imap_failed(s, run->acct, ev, msg, sizeof(msg));
			set_error(run, MK_EAUTH, MK_EXIT_NOPERM, msg);
			mk_imap_session_close(s);
			return;
		}
		if (!run->json)
			printf("logged in as %s\nfolders:\n", run->acct->user);
		cmd.kind = MK_IMAP_CMD_LIST;
		cmd.a = "";
		cmd.b = "*";
		if (mk_imap_session_submit(s, &cmd, &run->tag_list) < 0)
			mk_imap_session_abort(s, MK_EPROTO, "cannot send LIST");
		return;
	}
	if (ev->tag == run->tag_list) {
		if (ev->status != MK_IMAP_OK) {
			snprintf(msg, sizeof(msg), "LIST failed: %s %s", mk_imap_status_name(ev->status), ev->text);
			set_error(run, MK_ESERVER, MK_EXIT_PROTOCOL, msg);
		}
		if (run->json)
			printf("%s]\n", run->n_folders ? "" : "[");
		else
			printf("%zu folders\n", run->n_folders);
		cmd.kind = MK_IMAP_CMD_LOGOUT;
		if (mk_imap_session_submit(s, &cmd, &run->tag_logout) < 0)
			mk_imap_session_close(s);
		return;
	}
	if (ev->tag == run->tag_logout)
		mk_imap_session_close(s);
}

static void on_close(struct mk_imap_session *s, int err, const char *msg, void *ud)
{
	struct folders_run *run = ud;
	run->s = NULL;
	if (err != 0)
		set_error(run, err, mk_cli_exit_for(err), msg);
}

static void usage_folders(FILE *f)
{
	fprintf(f, "usage: mailkeep [-c FILE] folders [--json] [--trace] [ACCOUNT]\n"
		   "Connects to ACCOUNT's IMAP server, verifies TLS, logs in and lists the folders.\n"
		   "  --json    machine-readable output\n"
		   "  --trace   log the protocol to stderr (credentials are never shown)\n");
}

int mk_cli_folders(const struct mk_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"trace", no_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct folders_run run = {0};
	bool trace = false;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			run.json = true;
			break;
		case 't':
			trace = true;
			mk_log_set_level(MK_LOG_TRACE);
			break;
		case 'h':
			usage_folders(stdout);
			return MK_EXIT_OK;
		default:
			usage_folders(stderr);
			return MK_EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		usage_folders(stderr);
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
	run.acct = acct;
	if (acct->imap.host == NULL) {
		fprintf(stderr, "mailkeep: account %s has no IMAP server (imap_host)\n", acct->name);
		mk_config_free(&cfg);
		return MK_EXIT_CONFIG;
	}
	char *error = NULL;
	int r = mk_cli_get_secret(cfg->store, acct, &run.secret, &error);
	if (r < 0) {
		fprintf(stderr, "mailkeep: %s\n", error ? error : mk_strerror(r));
		mk_free(error);
		mk_config_free(&cfg);
		return r == MK_ENOTFOUND || r == MK_ECONFIG ? MK_EXIT_CONFIG
		       : r == MK_EAUTH || r == MK_EPERM    ? MK_EXIT_NOPERM
		       : r == MK_ECMD                      ? MK_EXIT_UNAVAILABLE
							   : mk_cli_exit_for(r);
	}
	struct mk_tls_ctx *tls_ctx = NULL;
	r = mk_cli_tls_ctx(acct->tls_ca_file, &tls_ctx, &error);
	if (r < 0) {
		fprintf(stderr, "mailkeep: account %s: %s\n", acct->name, error);
		mk_free(error);
		mk_config_secret_free(&run.secret);
		mk_config_free(&cfg);
		return MK_EXIT_CONFIG;
	}
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct mk_imap_session_opts so = {
		.conn =
			{
				.host = acct->imap.host,
				.port = acct->imap.port,
				.implicit_tls = acct->imap.tls == MK_CONFIG_TLS_IMPLICIT,
				.tls_ctx = tls_ctx,
				.tls_fingerprint = acct->tls_fingerprint,
				.connect_timeout_ms = acct->timeout_s * 1000,
				.handshake_timeout_ms = acct->timeout_s * 1000,
				.idle_timeout_ms = acct->timeout_s * 1000,
				.id = 1,
				.log_account = acct->name,
			},
		.trace = trace,
	};
	static const struct mk_imap_session_cbs cbs = {on_ready, on_event, on_close, NULL};
	r = mk_imap_session_start(&loop, &so, &cbs, &run, &run.s);
	if (r < 0)
		set_error(&run, r, mk_cli_exit_for(r), mk_strerror(r));
	else
		uv_run(&loop, UV_RUN_DEFAULT);
	int lc = uv_loop_close(&loop);
	MK_ASSERT(lc == 0); /* every handle closed */
	mk_config_secret_free(&run.secret);
	tls_ctx = NULL; /* shared cache */
	if (run.err != 0) {
		fprintf(stderr, "mailkeep: account %s: %s\n", acct->name, run.errmsg);
		mk_config_free(&cfg);
		return run.exit_code ? run.exit_code : MK_EXIT_SOFTWARE;
	}
	mk_config_free(&cfg);
	return MK_EXIT_OK;
}
