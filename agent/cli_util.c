/* SPDX-License-Identifier: MIT */
/*
 * cli_util.c - helpers shared by the subcommands.
 */
#include "cli.h"
#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"
#include "mk_oauth.h"
#include "mk_store.h"
#include "mk_tls.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

int mk_cli_exit_for(int err)
{
	switch (err) {
	case 0:
		return MK_EXIT_OK;
	case MK_ECONFIG:
	case MK_ENOTFOUND:
		return MK_EXIT_CONFIG;
	case MK_EPERM:
	case MK_EAUTH:
		return MK_EXIT_NOPERM;
	case MK_ECERT:
	case MK_ETLS:
	case MK_EPROTO:
	case MK_ETOOBIG:
	case MK_ESERVER:
		return MK_EXIT_PROTOCOL;
	case MK_ETIMEDOUT:
	case MK_EUNAVAIL:
	case MK_EEOF:
	case MK_ETRUNC:
		return MK_EXIT_TEMPFAIL;
	case MK_ECMD:
		return MK_EXIT_UNAVAILABLE;
	case MK_EIO:
		return MK_EXIT_IOERR;
	default:
		break;
	}
	/* libuv: -errno and UV_EAI_* */
	if (err == UV_ECONNREFUSED || err == UV_ETIMEDOUT || err == UV_ENETUNREACH ||
	    err == UV_EHOSTUNREACH || err == UV_ECONNRESET || err == UV_EAI_AGAIN || err == UV_EAI_NONAME ||
	    err == UV_EAI_FAIL || err == UV_EAI_NODATA || err == UV_EPIPE || err == UV_ECONNABORTED)
		return MK_EXIT_TEMPFAIL;
	return MK_EXIT_SOFTWARE;
}

int mk_cli_load_config(const struct mk_cli *cli, struct mk_config **cfg_r)
{
	char *error = NULL;
	int r = mk_config_load(cli->config_path, cfg_r, &error);
	if (r == 0)
		return 0;
	fprintf(stderr, "mailkeep: %s\n", error ? error : mk_strerror(r));
	if (r == MK_ENOTFOUND)
		fprintf(stderr, "mailkeep: create a configuration first (see `mailkeep help config`), "
				"or pass one with -c FILE\n");
	mk_free(error);
	return r == MK_EPERM ? MK_EXIT_NOPERM : MK_EXIT_CONFIG;
}

const struct mk_config_account *mk_cli_pick_account(const struct mk_config *cfg, const char *name)
{
	if (name != NULL) {
		const struct mk_config_account *a = mk_config_find_account(cfg, name);
		if (a == NULL) {
			fprintf(stderr, "mailkeep: %s: no account named \"%s\"", cfg->path, name);
			if (cfg->n_accounts > 0) {
				fprintf(stderr, " (accounts:");
				for (size_t i = 0; i < cfg->n_accounts; i++)
					fprintf(stderr, " %s", cfg->accounts[i].name);
				fprintf(stderr, ")");
			}
			fprintf(stderr, "\n");
		}
		return a;
	}
	if (cfg->n_accounts == 1)
		return &cfg->accounts[0];
	if (cfg->n_accounts == 0)
		fprintf(stderr, "mailkeep: %s: no [account NAME] section\n", cfg->path);
	else
		fprintf(stderr, "mailkeep: %s has %zu accounts; name one\n", cfg->path, cfg->n_accounts);
	return NULL;
}

/* One TLS context per trust setting, shared by every account that uses it:
 * a context holds the whole system CA store (~1 MB), so one per account
 * would cost ~1 MB per account (measured with 256 accounts). */
struct tls_cache_entry {
	char *ca_file; /* NULL: system store only */
	struct mk_tls_ctx *ctx;
	struct tls_cache_entry *next;
};
static struct tls_cache_entry *tls_cache;

int mk_cli_tls_ctx(const char *ca_file, struct mk_tls_ctx **ctx_r, char **error_r)
{
	for (struct tls_cache_entry *e = tls_cache; e != NULL; e = e->next) {
		if ((e->ca_file == NULL && ca_file == NULL) ||
		    (e->ca_file != NULL && ca_file != NULL && strcmp(e->ca_file, ca_file) == 0)) {
			*ctx_r = e->ctx;
			return 0;
		}
	}
	struct mk_tls_ctx *ctx = NULL;
	int r = mk_tls_ctx_new(ca_file, &ctx, error_r);
	if (r < 0)
		return r;
	struct tls_cache_entry *e = mk_xcalloc(1, sizeof(*e));
	e->ca_file = ca_file ? mk_xstrdup(ca_file) : NULL;
	e->ctx = ctx;
	e->next = tls_cache;
	tls_cache = e;
	*ctx_r = ctx;
	return 0;
}

void mk_cli_tls_cache_free(void)
{
	while (tls_cache != NULL) {
		struct tls_cache_entry *e = tls_cache;
		tls_cache = e->next;
		mk_tls_ctx_free(&e->ctx);
		mk_free(e->ca_file);
		mk_free(e);
	}
}

void mk_cli_json_str(FILE *f, const char *s)
{
	struct mk_buf b;
	mk_buf_init(&b, SIZE_MAX / 2);
	(void)mk_buf_append_json_str(&b, s);
	fwrite(b.data, 1, b.len, f);
	mk_buf_cleanup(&b);
}

static int msgs_cb(void *ud, const struct mk_store_msg *m)
{
	struct mk_cli_msgs *l = ud;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->m = mk_xrealloc(l->m, l->cap * sizeof(*l->m));
	}
	l->m[l->n++] = *m;
	return 0;
}

int mk_cli_load_messages(struct mk_store *st, uint32_t account, uint32_t mailbox, uint32_t uidvalidity,
			 struct mk_cli_msgs *out)
{
	return mk_store_messages(st, account, mailbox, uidvalidity, msgs_cb, out);
}

static int mailboxes_cb(void *ud, const struct mk_store_mailbox *mb)
{
	struct mk_cli_mailboxes *l = ud;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->m = mk_xrealloc(l->m, l->cap * sizeof(*l->m));
	}
	l->m[l->n++] = *mb;
	return 0;
}

int mk_cli_load_mailboxes(struct mk_store *st, uint32_t account, struct mk_cli_mailboxes *out)
{
	return mk_store_mailboxes(st, account, mailboxes_cb, out);
}

/* ---- issue 6: secrets for one-shot commands ---- */

struct secret_wait {
	const struct mk_config_account *acct;
	char *secret;
	char *error;
	int err;
};

static void on_secret_token(int err, const char *msg, const struct mk_oauth_token *tok, void *ud)
{
	struct secret_wait *w = ud;
	w->err = err;
	if (err == 0)
		w->secret = mk_xstrdup(tok->access_token);
	else
		w->error = msg != NULL && strstr(msg, w->acct->name) != NULL
				   ? mk_xstrdup(msg)
				   : mk_xasprintf("account %s: %s", w->acct->name, msg != NULL ? msg : mk_strerror(err));
}

int mk_cli_get_secret(const char *store_dir, const struct mk_config_account *acct, char **secret_r, char **error_r)
{
	*secret_r = NULL;
	*error_r = NULL;
	if (acct->auth != MK_CONFIG_AUTH_XOAUTH2)
		return mk_config_get_secret(acct, secret_r, error_r);
	struct secret_wait w = {acct, NULL, NULL, 0};
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct mk_oauth *o = mk_oauth_new(&loop, store_dir);
	int r = mk_oauth_token_get(o, acct, false, on_secret_token, &w, NULL);
	if (r < 0) {
		w.err = r;
		w.error = mk_xasprintf("account %s: auth = xoauth2 needs oauth_client_id (then `mailkeep login %s`) "
				       "or token_cmd",
				       acct->name, acct->name);
	} else {
		uv_run(&loop, UV_RUN_DEFAULT);
	}
	mk_oauth_free(&o);
	uv_run(&loop, UV_RUN_DEFAULT);
	int lc = uv_loop_close(&loop);
	MK_ASSERT(lc == 0);
	if (w.err != 0) {
		*error_r = w.error;
		return w.err == MK_EINVAL ? MK_ECONFIG : w.err;
	}
	*secret_r = w.secret;
	return 0;
}
