/* SPDX-License-Identifier: MIT */
/*
 * cli.h - what the subcommands share: exit codes (sysexits.h), the loaded
 * configuration, and option parsing conventions.
 */
#ifndef MK_CLI_H
#define MK_CLI_H

#include "mk_config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

/* sysexits.h values, named here so the mapping is documented in one place. */
enum mk_cli_exit {
	MK_EXIT_OK = 0,
	MK_EXIT_USAGE = 64,       /* bad command line */
	MK_EXIT_DATAERR = 65,     /* bad input data */
	MK_EXIT_UNAVAILABLE = 69, /* feature or service not available */
	MK_EXIT_SOFTWARE = 70,    /* internal error */
	MK_EXIT_OSERR = 71,       /* out of memory, cannot fork, ... */
	MK_EXIT_CANTCREAT = 73,   /* cannot create the store or an output */
	MK_EXIT_IOERR = 74,       /* I/O error on local files */
	MK_EXIT_TEMPFAIL = 75,    /* network trouble: try again later */
	MK_EXIT_PROTOCOL = 76,    /* server broke the protocol, TLS refused */
	MK_EXIT_NOPERM = 77,      /* authentication failed, unsafe file mode */
	MK_EXIT_CONFIG = 78,      /* configuration error */
};

struct mk_cli {
	const char *config_path; /* -c FILE, or NULL for the default */
	bool quiet;
};

/* Maps an error code to an exit code. */
int mk_cli_exit_for(int err);

/* Loads the configuration, printing errors. Returns 0 or an exit code. */
int mk_cli_load_config(const struct mk_cli *cli, struct mk_config **cfg_r);

/* Picks the account named `name`, or the only account when name is NULL.
 * Prints a message and returns NULL when there is none. */
const struct mk_config_account *mk_cli_pick_account(const struct mk_config *cfg, const char *name);

struct mk_store;
struct mk_tls_ctx;
/* The shared TLS context for a trust setting (owned by the cache, valid
 * until mk_cli_tls_cache_free()). Returns: 0, MK_ETLS (error_r set). */
int mk_cli_tls_ctx(const char *ca_file, struct mk_tls_ctx **ctx_r, char **error_r);
void mk_cli_tls_cache_free(void);
/* A folder's records, or an account's folders, read out of the store
 * (store callbacks run inside a read transaction; callers that need the
 * store again per item collect first). Free .m with mk_free(). */
struct mk_store_msg;
struct mk_store_mailbox;
struct mk_cli_msgs {
	struct mk_store_msg *m;
	size_t n, cap;
};
struct mk_cli_mailboxes {
	struct mk_store_mailbox *m;
	size_t n, cap;
};
int mk_cli_load_messages(struct mk_store *st, uint32_t account, uint32_t mailbox, uint32_t uidvalidity,
			 struct mk_cli_msgs *out);
int mk_cli_load_mailboxes(struct mk_store *st, uint32_t account, struct mk_cli_mailboxes *out);

/* Writes s as a JSON string (mk_buf_append_json_str) to f. */
void mk_cli_json_str(FILE *f, const char *s);
/* Loads the config and opens its store, printing errors. Returns 0 or an exit code. */
int mk_cli_open_store(const struct mk_cli *cli, struct mk_config **cfg_r, struct mk_store **st_r);
/* Splits "ACCOUNT[/FOLDER]". Returns: 0, MK_EINVAL. */
int mk_cli_split_path(const char *path, char *acct, size_t acctsz, const char **folder_r);

/* issue 6: the secret an engine logs in with, for one-shot commands: the
 * password (password / pass_cmd), or for auth = xoauth2 an access token
 * from the token manager (refreshed with the refresh token saved by
 * `mailkeep login` in STORE/oauth/, or from token_cmd), obtained on a
 * private loop (call it before uv_run of the caller's loop). Free with
 * mk_config_secret_free(). On failure *error_r is a new string naming the
 * account (MK_EAUTH: it ends in "run `mailkeep login NAME`").
 * Returns: 0, MK_ENOTFOUND, MK_ECMD, MK_EAUTH, MK_ECONFIG, MK_EPERM, network errors. */
int mk_cli_get_secret(const char *store_dir, const struct mk_config_account *acct, char **secret_r, char **error_r);

int mk_cli_folders(const struct mk_cli *cli, int argc, char **argv);
int mk_cli_sync(const struct mk_cli *cli, int argc, char **argv);
int mk_cli_run(const struct mk_cli *cli, int argc, char **argv);
int mk_cli_status(const struct mk_cli *cli, int argc, char **argv);
int mk_cli_metrics(const struct mk_cli *cli, int argc, char **argv);
int mk_cli_ls(const struct mk_cli *cli, int argc, char **argv);
int mk_cli_cat(const struct mk_cli *cli, int argc, char **argv);
int mk_cli_stats(const struct mk_cli *cli, int argc, char **argv);
int mk_cli_verify(const struct mk_cli *cli, int argc, char **argv);
/* verify --server: compares the store with each account's server. */
int mk_cli_verify_server(const struct mk_cli *cli, struct mk_config *cfg, struct mk_store *store, int argc,
			 char **argv);
int mk_cli_export(const struct mk_cli *cli, int argc, char **argv);
/* issue 5: the outbox (cli_send.c) */
int mk_cli_send(const struct mk_cli *cli, int argc, char **argv);
int mk_cli_sendmail(const struct mk_cli *cli, int argc, char **argv);
int mk_cli_outbox(const struct mk_cli *cli, int argc, char **argv);
/* issue 6: OAuth2 device login, and the token check (cli_login.c) */
int mk_cli_login(const struct mk_cli *cli, int argc, char **argv);
int mk_cli_token(const struct mk_cli *cli, int argc, char **argv);
/* issue 9: `mailkeep init`, the first run (cli_init.c) */
int mk_cli_init(const struct mk_cli *cli, int argc, char **argv);

#endif
