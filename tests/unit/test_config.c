/* SPDX-License-Identifier: MIT */
/*
 * test_config.c - unit tests of config/: parsing (presets, custom servers,
 * [defaults] inheritance, overrides, "~/" and XDG defaults), every error
 * message with its exact "FILE:LINE: " prefix, the pre-inih checks (long
 * lines, NUL bytes), loading with the password-file permission rules, and
 * pass_cmd (success, exit status, signal, empty output, timeout, oversize
 * output). Files live in a mkdtemp() directory removed at the end.
 */
#include "config_int.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NAME "t.conf"
#define HOME "/home/u"
/* The secret used throughout; no message may ever contain it. */
#define SECRET "S3cr3t-hunter2"

/* ---- helpers ---- */

/* Parses from an exact-size heap copy (no NUL terminator), so ASan catches
 * any read past `len`. */
static int parse_text(const char *text, const char *home, const struct mk__config_env *env, struct mk_config **cfg_r,
		      char **error_r)
{
	size_t len = strlen(text);
	char *copy = mk_xmalloc(len ? len : 1);
	memcpy(copy, text, len);
	int r = mk__config_parse_env(copy, len, NAME, home, env, cfg_r, error_r);
	mk_free(copy);
	return r;
}

/* An environment with no variables at all. */
static const char *no_env(void *ctx, const char *name)
{
	return NULL;
}
static const struct mk__config_env empty_env = {no_env, NULL};

struct fake_env {
	const char *xdg_data_home;
	const char *home;
};

static const char *fake_get(void *ctx, const char *name)
{
	const struct fake_env *fe = ctx;
	if (strcmp(name, "XDG_DATA_HOME") == 0)
		return fe->xdg_data_home;
	if (strcmp(name, "HOME") == 0)
		return fe->home;
	return NULL;
}

static struct mk_config *parse_ok(const char *text)
{
	struct mk_config *cfg = NULL;
	char *error = NULL;
	int r = parse_text(text, HOME, &empty_env, &cfg, &error);
	if (r != 0)
		print_error("unexpected error: %s\n", error ? error : "(none)");
	assert_int_equal(r, 0);
	assert_null(error);
	assert_non_null(cfg);
	return cfg;
}

static void assert_parse_error(const char *text, const char *expected)
{
	struct mk_config *cfg = NULL;
	char *error = NULL;
	int r = parse_text(text, HOME, &empty_env, &cfg, &error);
	assert_int_equal(r, MK_ECONFIG);
	assert_null(cfg);
	assert_non_null(error);
	assert_string_equal(error, expected);
	assert_null(strstr(error, SECRET));
	mk_free(error);
}

static char *dump_to_string(const struct mk_config *cfg)
{
	static char out[8192];
	memset(out, 0, sizeof(out));
	FILE *f = fmemopen(out, sizeof(out) - 1, "w");
	assert_non_null(f);
	mk_config_dump(cfg, f);
	fclose(f);
	assert_true(strlen(out) < sizeof(out) - 2); /* not truncated */
	return mk_xstrdup(out);
}

/* ---- valid files ---- */

static void test_outlook_preset(void **state)
{
	struct mk_config *cfg = parse_ok("[account personal]\n"
					 "provider = outlook\n"
					 "email = me@outlook.com\n"
					 "oauth_client_id = 11111111-2222-3333-4444-555555555555\n");
	assert_string_equal(cfg->path, NAME);
	assert_string_equal(cfg->store, HOME "/.local/share/mailkeep");
	assert_int_equal(cfg->n_accounts, 1);
	const struct mk_config_account *a = &cfg->accounts[0];
	assert_string_equal(a->name, "personal");
	assert_int_equal(a->line, 1);
	assert_int_equal(a->provider, MK_CONFIG_PROVIDER_OUTLOOK);
	assert_string_equal(a->email, "me@outlook.com");
	assert_string_equal(a->user, "me@outlook.com");
	assert_int_equal(a->auth, MK_CONFIG_AUTH_XOAUTH2);
	assert_null(a->password);
	assert_null(a->pass_cmd);
	assert_string_equal(a->imap.host, "outlook.office365.com");
	assert_int_equal(a->imap.port, 993);
	assert_int_equal(a->imap.tls, MK_CONFIG_TLS_IMPLICIT);
	assert_string_equal(a->pop3.host, "outlook.office365.com");
	assert_int_equal(a->pop3.port, 995);
	assert_int_equal(a->pop3.tls, MK_CONFIG_TLS_IMPLICIT);
	assert_string_equal(a->smtp.host, "smtp-mail.outlook.com");
	assert_int_equal(a->smtp.port, 587);
	assert_int_equal(a->smtp.tls, MK_CONFIG_TLS_STARTTLS);
	assert_null(a->tls_ca_file);
	assert_null(a->tls_fingerprint);
	assert_ptr_equal(mk_config_find_account(cfg, "personal"), a);
	assert_null(mk_config_find_account(cfg, "work"));
	mk_config_free(&cfg);
	assert_null(cfg);
	mk_config_free(&cfg); /* idempotent on NULL */
}

static void test_office365_preset(void **state)
{
	struct mk_config *cfg = parse_ok("[account work]\n"
					 "provider = office365\n"
					 "email = me@contoso.com\n"
					 "user = me@contoso.onmicrosoft.com\n"
					 "oauth_client_id = 11111111-2222-3333-4444-555555555555\n");
	const struct mk_config_account *a = &cfg->accounts[0];
	assert_int_equal(a->provider, MK_CONFIG_PROVIDER_OFFICE365);
	assert_string_equal(a->user, "me@contoso.onmicrosoft.com");
	assert_int_equal(a->auth, MK_CONFIG_AUTH_XOAUTH2);
	assert_string_equal(a->imap.host, "outlook.office365.com");
	assert_int_equal(a->imap.port, 993);
	assert_string_equal(a->pop3.host, "outlook.office365.com");
	assert_int_equal(a->pop3.port, 995);
	assert_string_equal(a->smtp.host, "smtp.office365.com");
	assert_int_equal(a->smtp.port, 587);
	assert_int_equal(a->smtp.tls, MK_CONFIG_TLS_STARTTLS);
	mk_config_free(&cfg);
}

static void test_custom_defaults(void **state)
{
	/* No provider: custom, plain auth, ports from the TLS mode. */
	struct mk_config *cfg = parse_ok("[account a]\n"
					 "email = a@example.org\n"
					 "pass_cmd = pass show a\n"
					 "imap_host = imap.example.org\n"
					 "[account b]\n"
					 "email = b@example.org\n"
					 "auth = login\n"
					 "password = " SECRET "\n"
					 "imap_host = imap.example.org\n"
					 "imap_tls = starttls\n"
					 "pop3_host = pop.example.org\n"
					 "pop3_tls = starttls\n"
					 "smtp_host = smtp.example.org\n"
					 "smtp_tls = implicit\n"
					 "[account c]\n"
					 "email = c@example.org\n"
					 "pass_cmd = x\n"
					 "pop3_host = pop.example.org\n"
					 "smtp_host = smtp.example.org\n");
	assert_int_equal(cfg->n_accounts, 3);
	const struct mk_config_account *a = &cfg->accounts[0];
	assert_int_equal(a->provider, MK_CONFIG_PROVIDER_CUSTOM);
	assert_int_equal(a->auth, MK_CONFIG_AUTH_PLAIN);
	assert_string_equal(a->pass_cmd, "pass show a");
	assert_string_equal(a->imap.host, "imap.example.org");
	assert_int_equal(a->imap.port, 993);
	assert_int_equal(a->imap.tls, MK_CONFIG_TLS_IMPLICIT);
	assert_null(a->pop3.host);
	assert_int_equal(a->pop3.port, 0);
	assert_null(a->smtp.host);

	const struct mk_config_account *b = &cfg->accounts[1];
	assert_int_equal(b->line, 5);
	assert_int_equal(b->auth, MK_CONFIG_AUTH_LOGIN);
	assert_string_equal(b->password, SECRET);
	assert_int_equal(b->imap.port, 143);
	assert_int_equal(b->imap.tls, MK_CONFIG_TLS_STARTTLS);
	assert_int_equal(b->pop3.port, 110);
	assert_int_equal(b->pop3.tls, MK_CONFIG_TLS_STARTTLS);
	assert_int_equal(b->smtp.port, 465);
	assert_int_equal(b->smtp.tls, MK_CONFIG_TLS_IMPLICIT);

	const struct mk_config_account *c = &cfg->accounts[2];
	assert_null(c->imap.host);
	assert_int_equal(c->pop3.port, 995);
	assert_int_equal(c->pop3.tls, MK_CONFIG_TLS_IMPLICIT);
	assert_int_equal(c->smtp.port, 587);
	assert_int_equal(c->smtp.tls, MK_CONFIG_TLS_STARTTLS);
	mk_config_free(&cfg);
}

static void test_port_implies_tls(void **state)
{
	/* An explicit standard port picks its mode; other ports keep the
	 * preset's mode; an explicit mode picks its standard port. */
	struct mk_config *cfg = parse_ok("[account a]\n"
					 "provider = outlook\n"
					 "email = a@outlook.com\n"
					 "smtp_port = 465\n"
					 "imap_port = 143\n"
					 "pop3_port = 1995\n"
					 "oauth_client_id = 11111111-2222-3333-4444-555555555555\n"
					 "[account b]\n"
					 "email = b@example.org\n"
					 "pass_cmd = x\n"
					 "imap_host = h\n"
					 "imap_port = 10993\n"
					 "imap_tls = starttls\n"
					 "smtp_host = s\n"
					 "smtp_tls = implicit\n");
	const struct mk_config_account *a = &cfg->accounts[0];
	assert_int_equal(a->smtp.port, 465);
	assert_int_equal(a->smtp.tls, MK_CONFIG_TLS_IMPLICIT);
	assert_int_equal(a->imap.port, 143);
	assert_int_equal(a->imap.tls, MK_CONFIG_TLS_STARTTLS);
	assert_int_equal(a->pop3.port, 1995);
	assert_int_equal(a->pop3.tls, MK_CONFIG_TLS_IMPLICIT);
	const struct mk_config_account *b = &cfg->accounts[1];
	assert_int_equal(b->imap.port, 10993);
	assert_int_equal(b->imap.tls, MK_CONFIG_TLS_STARTTLS);
	assert_int_equal(b->smtp.port, 465);
	mk_config_free(&cfg);
}

static void test_defaults_inheritance(void **state)
{
	/* [defaults] after the accounts: order does not matter. */
	struct mk_config *cfg = parse_ok("; my accounts\n"
					 "[account one]\n"
					 "email = one@outlook.com\n"
					 "[account two]\n"
					 "email = two@example.org\n"
					 "provider = custom\n"
					 "auth = plain\n"
					 "pass_cmd = pass show two\n"
					 "imap_host = imap.example.org\n"
					 "tls_ca_file = /etc/two.pem\n"
					 "[defaults]\n"
					 "provider = outlook\n"
					 "store = /var/lib/mk\n"
					 "tls_ca_file = ~/ca.pem\n"
					 "tls_fingerprint = sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
					 "smtp_port = 465\n"
					 "oauth_client_id = 11111111-2222-3333-4444-555555555555\n");
	assert_string_equal(cfg->store, "/var/lib/mk");
	const struct mk_config_account *one = mk_config_find_account(cfg, "one");
	const struct mk_config_account *two = mk_config_find_account(cfg, "two");
	assert_non_null(one);
	assert_non_null(two);
	assert_int_equal(one->provider, MK_CONFIG_PROVIDER_OUTLOOK);
	assert_int_equal(one->auth, MK_CONFIG_AUTH_XOAUTH2);
	assert_string_equal(one->tls_ca_file, HOME "/ca.pem");
	assert_string_equal(one->tls_fingerprint, "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
	assert_int_equal(one->smtp.port, 465);
	assert_int_equal(one->smtp.tls, MK_CONFIG_TLS_IMPLICIT);
	assert_string_equal(one->smtp.host, "smtp-mail.outlook.com");

	assert_int_equal(two->provider, MK_CONFIG_PROVIDER_CUSTOM);
	assert_int_equal(two->auth, MK_CONFIG_AUTH_PLAIN);
	assert_string_equal(two->tls_ca_file, "/etc/two.pem");
	assert_string_equal(two->imap.host, "imap.example.org");
	assert_null(two->pop3.host);
	/* smtp_port from [defaults] without a host is not an error. */
	assert_null(two->smtp.host);
	mk_config_free(&cfg);
}

static void test_overrides(void **state)
{
	struct mk_config *cfg = parse_ok("[defaults]\n"
					 "imap_host = imap.default.example\n"
					 "[account a]\n"
					 "provider = outlook\n"
					 "email = a@outlook.com\n"
					 "imap_host = 127.0.0.1\n"
					 "imap_port = 1993\n"
					 "pop3_host = ::1\n"
					 "pop3_tls = starttls\n"
					 "auth = plain\n"
					 "pass_cmd = cat /run/pw\n"
					 "[account b]\n"
					 "provider = office365\n"
					 "email = b@contoso.com\n"
					 "oauth_client_id = 11111111-2222-3333-4444-555555555555\n");
	const struct mk_config_account *a = &cfg->accounts[0];
	assert_string_equal(a->imap.host, "127.0.0.1");
	assert_int_equal(a->imap.port, 1993);
	assert_int_equal(a->imap.tls, MK_CONFIG_TLS_IMPLICIT);
	assert_string_equal(a->pop3.host, "::1");
	assert_int_equal(a->pop3.port, 110);
	assert_int_equal(a->pop3.tls, MK_CONFIG_TLS_STARTTLS);
	assert_int_equal(a->auth, MK_CONFIG_AUTH_PLAIN);
	assert_string_equal(a->smtp.host, "smtp-mail.outlook.com");
	/* [defaults] beats the preset too. */
	const struct mk_config_account *b = &cfg->accounts[1];
	assert_string_equal(b->imap.host, "imap.default.example");
	assert_string_equal(b->pop3.host, "outlook.office365.com");
	mk_config_free(&cfg);
}

static void test_tilde_expansion(void **state)
{
	struct mk_config *cfg = NULL;
	char *error = NULL;
	assert_int_equal(parse_text("[defaults]\nstore = ~/mail/keep\n"
				    "[account a]\nemail = a@outlook.com\nprovider = outlook\ntls_ca_file = ~/ca.pem\n"
				    "oauth_client_id = c\n",
				    "/home/x//", &empty_env, &cfg, &error),
			 0);
	assert_string_equal(cfg->store, "/home/x/mail/keep");
	assert_string_equal(cfg->accounts[0].tls_ca_file, "/home/x/ca.pem");
	mk_config_free(&cfg);

	/* Absolute paths stay; "~user" and "~" alone are not expanded and
	 * not accepted (no relative paths). */
	cfg = parse_ok("[defaults]\nstore = /srv/mk/~/x\n");
	assert_string_equal(cfg->store, "/srv/mk/~/x");
	assert_int_equal(cfg->n_accounts, 0);
	mk_config_free(&cfg);
	assert_parse_error("[defaults]\nstore = ~bob/mail\n",
			   NAME ":2: bad store \"~bob/mail\": expected an absolute path or one starting with ~/");
	assert_parse_error("[defaults]\nstore = mail\n",
			   NAME ":2: bad store \"mail\": expected an absolute path or one starting with ~/");

	/* No home known: "~/" cannot be expanded. */
	assert_int_equal(parse_text("[defaults]\nstore = /s\n[account a]\nprovider = outlook\nemail = a@outlook.com\n"
				    "tls_ca_file = ~/ca.pem\n",
				    NULL, &empty_env, &cfg, &error),
			 MK_ECONFIG);
	assert_string_equal(error, NAME ":6: cannot expand \"~/\" in tls_ca_file: HOME is not set to an absolute path");
	mk_free(error);
}

static void test_default_store_env(void **state)
{
	struct mk_config *cfg = NULL;
	char *error = NULL;
	struct fake_env fe = {"/xdg/data", "/home/env"};
	struct mk__config_env env = {fake_get, &fe};

	/* XDG_DATA_HOME wins over HOME. */
	assert_int_equal(parse_text("", "/home/param", &env, &cfg, &error), 0);
	assert_string_equal(cfg->store, "/xdg/data/mailkeep");
	mk_config_free(&cfg);

	/* A relative XDG_DATA_HOME is ignored (XDG spec); the home parameter
	 * beats $HOME. */
	fe.xdg_data_home = "rel/data";
	assert_int_equal(parse_text("", "/home/param", &env, &cfg, &error), 0);
	assert_string_equal(cfg->store, "/home/param/.local/share/mailkeep");
	mk_config_free(&cfg);

	/* home NULL: $HOME from the environment. */
	fe.xdg_data_home = "";
	assert_int_equal(parse_text("", NULL, &env, &cfg, &error), 0);
	assert_string_equal(cfg->store, "/home/env/.local/share/mailkeep");
	mk_config_free(&cfg);

	/* An explicit store needs neither. */
	fe.home = NULL;
	assert_int_equal(parse_text("[defaults]\nstore = /abs\n", NULL, &env, &cfg, &error), 0);
	assert_string_equal(cfg->store, "/abs");
	mk_config_free(&cfg);

	assert_int_equal(parse_text("[account a]\n", NULL, &env, &cfg, &error), MK_ECONFIG);
	assert_null(cfg);
	assert_string_equal(error, NAME ": neither XDG_DATA_HOME nor HOME is set, so there is no default store; "
				   "set store in [defaults]");
	mk_free(error);

	/* The public entry point reads the real environment. */
	setenv("XDG_DATA_HOME", "/real/xdg", 1);
	assert_int_equal(mk_config_parse("", 0, "x", "/h", &cfg, &error), 0);
	assert_string_equal(cfg->store, "/real/xdg/mailkeep");
	mk_config_free(&cfg);
	unsetenv("XDG_DATA_HOME");
	assert_int_equal(mk_config_parse(NULL, 0, "x", "/h", &cfg, &error), 0);
	assert_string_equal(cfg->store, "/h/.local/share/mailkeep");
	mk_config_free(&cfg);
}

static void test_empty_and_comments(void **state)
{
	/* No accounts parses fine: check-config explains what is missing. */
	struct mk_config *cfg = parse_ok("");
	assert_int_equal(cfg->n_accounts, 0);
	char *dump = dump_to_string(cfg);
	assert_string_equal(dump, "config: " NAME "\nstore:  " HOME "/.local/share/mailkeep\n"
				  "no accounts: add an [account NAME] section\n");
	mk_free(dump);
	mk_config_free(&cfg);

	cfg = parse_ok("; comment\n# comment\n   ; indented comment\n\n\t\n[defaults] ; header comment\n"
		       "[account a] # another\n# email = x\nemail = a@outlook.com\nprovider = outlook\noauth_client_id = c\n");
	assert_int_equal(cfg->n_accounts, 1);
	assert_string_equal(cfg->accounts[0].email, "a@outlook.com");
	assert_int_equal(cfg->accounts[0].line, 7);
	mk_config_free(&cfg);
}

static void test_inline_semicolon_kept(void **state)
{
	struct mk_config *cfg = parse_ok("[account a]\n"
					 "email = a@example.org\n"
					 "imap_host = h\n"
					 "pass_cmd = pass show x ; echo y # not a comment ;\n"
					 "[account b]\n"
					 "email = b@example.org\n"
					 "smtp_host = h\n"
					 "password =   \"quoted; kept\"   \n");
	assert_string_equal(cfg->accounts[0].pass_cmd, "pass show x ; echo y # not a comment ;");
	assert_string_equal(cfg->accounts[1].password, "\"quoted; kept\"");
	mk_config_free(&cfg);
}

static void test_crlf_bom_indent(void **state)
{
	struct mk_config *cfg = parse_ok("\xEF\xBB\xBF[account a]\r\n"
					 "  email = a@outlook.com\r\n"
					 "\tprovider=outlook\r\n"
					 "   [ account   b ]   \r\n"
					 "email=b@outlook.com\r\n"
					 "provider\t=\toffice365\r\n"
					 "[defaults]\noauth_client_id = c");
	assert_int_equal(cfg->n_accounts, 2);
	assert_string_equal(cfg->accounts[0].name, "a");
	assert_string_equal(cfg->accounts[0].email, "a@outlook.com");
	assert_int_equal(cfg->accounts[0].provider, MK_CONFIG_PROVIDER_OUTLOOK);
	assert_string_equal(cfg->accounts[1].name, "b");
	assert_int_equal(cfg->accounts[1].line, 4);
	assert_int_equal(cfg->accounts[1].provider, MK_CONFIG_PROVIDER_OFFICE365);
	mk_config_free(&cfg);
}

static void test_dump(void **state)
{
	struct mk_config *cfg = parse_ok("[defaults]\n"
					 "store = /s\n"
					 "oauth_client_id = c\n"
					 "[account personal]\n"
					 "provider = outlook\n"
					 "email = me@outlook.com\n"
					 "[account box]\n"
					 "email = me@example.org\n"
					 "password = " SECRET "\n"
					 "imap_host = imap.example.org\n"
					 "smtp_host = smtp.example.org\n"
					 "tls_ca_file = /ca.pem\n"
					 "tls_fingerprint = sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
					 "[account cmd]\n"
					 "email = c@example.org\n"
					 "pass_cmd = pass show mail/c ; true\n"
					 "pop3_host = pop.example.org\n");
	char *dump = dump_to_string(cfg);
	assert_string_equal(dump, "config: " NAME "\n"
				  "store:  /s\n"
				  "account personal (line 4)\n"
				  "  provider  outlook\n"
				  "  email     me@outlook.com\n"
				  "  user      me@outlook.com\n"
				  "  auth      xoauth2\n"
				  "  secret    none (OAuth tokens)\n"
				  "  imap      outlook.office365.com:993 implicit TLS\n"
				  "  pop3      outlook.office365.com:995 implicit TLS\n"
				  "  smtp      smtp-mail.outlook.com:587 STARTTLS\n"
				  "  folders   " MK_CONFIG_OUTLOOK_FOLDERS "\n"
				  "  timeout   30 s, 4 connections at most\n"
				  "  idle      INBOX (refreshed every 600 s; other folders every 900 s)\n"
				  "  outbox    30 messages/min, 300 recipients/day, 3 connections, retried for 120 h\n"
				  "  sent      filed by the server in \"Sent Items\"\n"
				  "  oauth     client c, tenant consumers, https://login.microsoftonline.com\n"
				  "  scopes    " MK_CONFIG_OAUTH_SCOPES "\n"
				  "account box (line 7)\n"
				  "  provider  custom\n"
				  "  email     me@example.org\n"
				  "  user      me@example.org\n"
				  "  auth      plain\n"
				  "  secret    password (set, hidden)\n"
				  "  imap      imap.example.org:993 implicit TLS\n"
				  "  pop3      none\n"
				  "  smtp      smtp.example.org:587 STARTTLS\n"
				  "  tls_ca_file /ca.pem\n"
				  "  tls_fingerprint sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
				  "  folders   *\n"
				  "  timeout   30 s, 4 connections at most\n"
				  "  idle      INBOX (refreshed every 600 s; other folders every 900 s)\n"
				  "  outbox    no rate limit, no daily limit, 3 connections, retried for 120 h\n"
				  "  sent      not kept\n"
				  "account cmd (line 14)\n"
				  "  provider  custom\n"
				  "  email     c@example.org\n"
				  "  user      c@example.org\n"
				  "  auth      plain\n"
				  "  secret    pass_cmd: pass show mail/c ; true\n"
				  "  imap      none\n"
				  "  pop3      pop.example.org:995 implicit TLS\n"
				  "  smtp      none\n"
				  "  folders   *\n"
				  "  timeout   30 s, 4 connections at most\n"
				  "  idle      INBOX (refreshed every 600 s; other folders every 900 s)\n");
	assert_null(strstr(dump, SECRET));
	mk_free(dump);
	mk_config_free(&cfg);
}

static void test_names(void **state)
{
	assert_string_equal(mk_config_tls_name(MK_CONFIG_TLS_IMPLICIT), "implicit");
	assert_string_equal(mk_config_tls_name(MK_CONFIG_TLS_STARTTLS), "starttls");
	assert_string_equal(mk_config_auth_name(MK_CONFIG_AUTH_XOAUTH2), "xoauth2");
	assert_string_equal(mk_config_auth_name(MK_CONFIG_AUTH_PLAIN), "plain");
	assert_string_equal(mk_config_auth_name(MK_CONFIG_AUTH_LOGIN), "login");
	assert_string_equal(mk_config_provider_name(MK_CONFIG_PROVIDER_OUTLOOK), "outlook");
	assert_string_equal(mk_config_provider_name(MK_CONFIG_PROVIDER_OFFICE365), "office365");
	assert_string_equal(mk_config_provider_name(MK_CONFIG_PROVIDER_CUSTOM), "custom");
}

/* ---- errors: syntax and structure ---- */

#define ACCT "[account personal]\nemail = me@example.org\n"

static void test_err_unknown_key(void **state)
{
	assert_parse_error(ACCT "imap_hots = x\n", NAME ":3: unknown key \"imap_hots\" (did you mean \"imap_host\"?)");
	assert_parse_error(ACCT "IMAP_HOST = x\n", NAME ":3: unknown key \"IMAP_HOST\" (did you mean \"imap_host\"?)");
	assert_parse_error(ACCT "pasword = " SECRET "\n",
			   NAME ":3: unknown key \"pasword\" (did you mean \"password\"?)");
	assert_parse_error(ACCT "frobnicate = 1\n", NAME ":3: unknown key \"frobnicate\"");
	assert_parse_error(ACCT "imap host = x\n", NAME ":3: unknown key \"imap host\" (did you mean \"imap_host\"?)");
}

static void test_err_sections(void **state)
{
	assert_parse_error("[acount personal]\n", NAME ":1: unknown section [acount personal]; expected [defaults] "
						     "or [account NAME] (did you mean [account personal]?)");
	assert_parse_error("\n[defualts]\n",
			   NAME ":2: unknown section [defualts]; expected [defaults] or [account NAME] "
				"(did you mean [defaults]?)");
	assert_parse_error("[server x]\n",
			   NAME ":1: unknown section [server x]; expected [defaults] or [account NAME]");
	assert_parse_error("[]\n", NAME ":1: unknown section []; expected [defaults] or [account NAME]");
	assert_parse_error("[account]\n", NAME ":1: section [account] needs a name, e.g. [account personal]");
	assert_parse_error("[defaults]\n[account   ]\n",
			   NAME ":2: section [account] needs a name, e.g. [account personal]");
	assert_parse_error("[account my box]\n",
			   NAME ":1: bad account name \"my box\": use only letters, digits and . _ - @ +");
	assert_parse_error("[account a/b]\n",
			   NAME ":1: bad account name \"a/b\": use only letters, digits and . _ - @ +");
	assert_parse_error("[account "
			   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n",
			   NAME ":1: account name is longer than 64 characters");
	assert_parse_error(ACCT "[account other]\nemail = o@example.org\n[account personal]\n",
			   NAME ":5: duplicate account \"personal\" (first defined on line 1)");
	assert_parse_error("[defaults]\n[account a]\n[defaults]\n",
			   NAME ":3: duplicate section [defaults] (first on line 1); merge them");
	assert_parse_error("[account a\n", NAME ":1: section header has no closing \"]\"");
	assert_parse_error("[account a] x\n", NAME ":1: unexpected text after \"]\" in section header");
}

static void test_err_outside_section(void **state)
{
	assert_parse_error("; top\nstore = /x\n[defaults]\n",
			   NAME ":2: key \"store\" is outside any section; put it under [defaults] or [account NAME]");
}

static void test_err_duplicate_key(void **state)
{
	assert_parse_error(ACCT "imap_host = a\n\nimap_host = b\n",
			   NAME ":5: duplicate key \"imap_host\" (first set on line 3)");
	assert_parse_error("[defaults]\nauth = plain\nauth = login\n",
			   NAME ":3: duplicate key \"auth\" (first set on line 2)");
	assert_parse_error(ACCT "password = " SECRET "\npassword = " SECRET "\n",
			   NAME ":4: duplicate key \"password\" (first set on line 3)");
}

static void test_err_key_placement(void **state)
{
	assert_parse_error("[defaults]\nemail = a@b.example\n",
			   NAME ":2: \"email\" cannot be set in [defaults]; set it in each [account NAME]");
	assert_parse_error("[defaults]\nuser = a\n",
			   NAME ":2: \"user\" cannot be set in [defaults]; set it in each [account NAME]");
	assert_parse_error("[defaults]\npassword = " SECRET "\n",
			   NAME ":2: \"password\" cannot be set in [defaults]; set it in each [account NAME]");
	assert_parse_error("[defaults]\npass_cmd = pass x\n",
			   NAME ":2: \"pass_cmd\" cannot be set in [defaults]; set it in each [account NAME]");
	assert_parse_error(ACCT "store = /x\n", NAME ":3: \"store\" can only be set in [defaults]");
}

static void test_err_line_syntax(void **state)
{
	assert_parse_error(ACCT "imap_host\n", NAME ":3: expected \"key = value\", a [section] header or a comment");
	assert_parse_error(ACCT "imap_host = a\n  b\n",
			   NAME ":4: expected \"key = value\"; a value cannot continue on an indented line");
	assert_parse_error(ACCT "imap_host: a\n", NAME ":3: expected \"key = value\" (\":\" is not a separator)");
	assert_parse_error(ACCT "= a\n", NAME ":3: missing key name before \"=\"");
	assert_parse_error(ACCT "imap_host =\n", NAME ":3: \"imap_host\" has an empty value");
	assert_parse_error(ACCT "password =   \n", NAME ":3: \"password\" has an empty value");
	/* ':' after '=' is part of the value. */
	struct mk_config *cfg = parse_ok(ACCT "pass_cmd = ssh host:22 cat pw\nimap_host = h\n");
	assert_string_equal(cfg->accounts[0].pass_cmd, "ssh host:22 cat pw");
	mk_config_free(&cfg);
}

static void test_err_too_many_accounts(void **state)
{
	size_t cap = (MK_LIMIT_ACCOUNTS + 1) * 64;
	char *text = mk_xmalloc(cap);
	size_t n = 0;
	n += (size_t)snprintf(text + n, cap - n, "[defaults]\noauth_client_id = c\n");
	for (int i = 0; i <= MK_LIMIT_ACCOUNTS; i++)
		n += (size_t)snprintf(text + n, cap - n, "[account a%d]\nemail = a@outlook.com\nprovider=outlook\n", i);
	char expected[128];
	snprintf(expected, sizeof(expected), NAME ":%d: too many accounts (the limit is %d)", MK_LIMIT_ACCOUNTS * 3 + 3,
		 MK_LIMIT_ACCOUNTS);
	assert_parse_error(text, expected);

	/* Exactly the limit is fine. */
	char marker[32], last[32];
	snprintf(marker, sizeof(marker), "[account a%d]", MK_LIMIT_ACCOUNTS);
	snprintf(last, sizeof(last), "a%d", MK_LIMIT_ACCOUNTS - 1);
	char *end = strstr(text, marker);
	assert_non_null(end);
	*end = '\0';
	struct mk_config *cfg = parse_ok(text);
	assert_int_equal(cfg->n_accounts, MK_LIMIT_ACCOUNTS);
	assert_non_null(mk_config_find_account(cfg, last));
	mk_config_free(&cfg);
	mk_free(text);
}

static void test_err_long_line_nul_control(void **state)
{
	char text[512];
	char value[256];
	/* "pass_cmd = " is 11 bytes; fill the line to exactly the limit. */
	size_t vlen = MK_LIMIT_CONFIG_LINE - 11;
	memset(value, 'x', vlen);
	value[vlen] = '\0';
	snprintf(text, sizeof(text), ACCT "imap_host = h\npass_cmd = %s\n", value);
	struct mk_config *cfg = parse_ok(text);
	assert_int_equal(strlen(cfg->accounts[0].pass_cmd), vlen);
	mk_config_free(&cfg);

	/* One byte more, and the error names the line and both numbers. */
	value[vlen] = 'y';
	value[vlen + 1] = '\0';
	snprintf(text, sizeof(text), ACCT "imap_host = h\npass_cmd = %s\n", value);
	char expected[128];
	snprintf(expected, sizeof(expected), NAME ":4: line is too long (%d bytes; the limit is %d)",
		 MK_LIMIT_CONFIG_LINE + 1, MK_LIMIT_CONFIG_LINE);
	assert_parse_error(text, expected);

	/* inih would have split a 250-byte line; we stop before it. Also on
	 * a last line without '\n' and on a comment line. */
	memset(value, 'c', 250);
	value[250] = '\0';
	snprintf(text, sizeof(text), "; %s", value);
	assert_parse_error(text, NAME ":1: line is too long (252 bytes; the limit is 190)");

	/* CRLF: the CR counts but fits. */
	snprintf(text, sizeof(text), ACCT "imap_host = h\r\npass_cmd = x\r\n");
	cfg = parse_ok(text);
	mk_config_free(&cfg);

	/* NUL byte in a value: inih would end the line there. */
	static const char nul[] = "[account a]\nemail = a@outlook.com\nprovider = outlook\npassword = ab\0cd\n";
	struct mk_config *c2 = NULL;
	char *error = NULL;
	assert_int_equal(mk_config_parse(nul, sizeof(nul) - 1, NAME, HOME, &c2, &error), MK_ECONFIG);
	assert_string_equal(error, NAME ":4: line contains a NUL byte");
	mk_free(error);

	assert_parse_error(ACCT "imap_host = a\x1b[31m\n", NAME ":3: line contains the control character 0x1b");
	assert_parse_error(ACCT "imap_host = a\rb\n", NAME ":3: line contains the control character 0x0d");
	assert_parse_error(ACCT "imap_host = a\x7f\n", NAME ":3: line contains the control character 0x7f");

	/* Whole-buffer limit. */
	size_t big = MK_LIMIT_CONFIG_FILE + 1;
	char *huge = mk_xmalloc(big);
	memset(huge, '\n', big);
	assert_int_equal(mk_config_parse(huge, big, NAME, HOME, &c2, &error), MK_ECONFIG);
	assert_string_equal(error, NAME ": file is larger than 1048576 bytes");
	mk_free(error);
	assert_int_equal(mk_config_parse(huge, big - 1, NAME, HOME, &c2, &error), 0);
	mk_config_free(&c2);
	mk_free(huge);
}

/* ---- errors: values ---- */

static void test_err_port(void **state)
{
	static const char *const bad[] = {"0", "65536", "abc", "-1", "+5", "99999999999999999999", " 1x", NULL};
	for (int i = 0; bad[i] != NULL; i++) {
		char text[128], expected[160];
		snprintf(text, sizeof(text), ACCT "imap_port = %s\n", bad[i]);
		/* values are trimmed */
		const char *shown = bad[i][0] == ' ' ? bad[i] + 1 : bad[i];
		snprintf(expected, sizeof(expected),
			 NAME ":3: bad imap_port \"%s\": expected a port number from 1 to 65535", shown);
		assert_parse_error(text, expected);
	}
	assert_parse_error("[defaults]\nsmtp_port = 70000\n",
			   NAME ":2: bad smtp_port \"70000\": expected a port number from 1 to 65535");
	assert_parse_error(ACCT "pop3_port = 0\n",
			   NAME ":3: bad pop3_port \"0\": expected a port number from 1 to 65535");
	struct mk_config *cfg = parse_ok(ACCT "pass_cmd = x\nimap_host = h\nimap_port = 65535\nsmtp_host = s\n"
					      "smtp_port = 1\n");
	assert_int_equal(cfg->accounts[0].imap.port, 65535);
	assert_int_equal(cfg->accounts[0].smtp.port, 1);
	mk_config_free(&cfg);
}

static void test_err_enums(void **state)
{
	assert_parse_error(ACCT "provider = gmail\n",
			   NAME ":3: bad provider \"gmail\": expected outlook, office365 or custom");
	assert_parse_error(ACCT "provider = outlok\n", NAME ":3: bad provider \"outlok\": expected outlook, office365 "
							 "or custom (did you mean \"outlook\"?)");
	assert_parse_error(ACCT "auth = oauth2\n",
			   NAME ":3: bad auth \"oauth2\": expected xoauth2, plain or login (did you mean \"xoauth2\"?)");
	assert_parse_error(ACCT "auth = cram-md5\n", NAME ":3: bad auth \"cram-md5\": expected xoauth2, plain or login");
	assert_parse_error(ACCT "imap_tls = ssl\n", NAME ":3: bad imap_tls \"ssl\": expected implicit or starttls");
	assert_parse_error("[defaults]\npop3_tls = STARTTLS\n", NAME ":2: bad pop3_tls \"STARTTLS\": expected implicit "
								  "or starttls (did you mean \"starttls\"?)");
	assert_parse_error(ACCT "smtp_tls = yes\n", NAME ":3: bad smtp_tls \"yes\": expected implicit or starttls");
}

static void test_err_email_host(void **state)
{
	assert_parse_error("[account a]\nemail = me\n", NAME ":2: bad email \"me\": expected an address like "
								  "me@outlook.com");
	assert_parse_error("[account a]\nemail = me@localhost\n",
			   NAME ":2: bad email \"me@localhost\": expected an address like me@outlook.com");
	assert_parse_error("[account a]\nemail = @outlook.com\n",
			   NAME ":2: bad email \"@outlook.com\": expected an address like me@outlook.com");
	assert_parse_error("[account a]\nemail = m e@outlook.com\n",
			   NAME ":2: bad email \"m e@outlook.com\": expected an address like me@outlook.com");
	assert_parse_error(ACCT "imap_host = imap.example.org:993\n",
			   NAME ":3: bad imap_host \"imap.example.org:993\": give the port separately, as imap_port");
	assert_parse_error(ACCT "smtp_host = me@example.org\n",
			   NAME ":3: bad smtp_host \"me@example.org\": expected a host name such as "
				"outlook.office365.com");
	assert_parse_error(ACCT "pop3_host = a b\n",
			   NAME ":3: bad pop3_host \"a b\": expected a host name such as outlook.office365.com");
}

static void test_err_missing_email(void **state)
{
	assert_parse_error("[defaults]\nprovider = outlook\n[account personal]\n",
			   NAME ":3: account \"personal\" has no email; add a line like: email = me@outlook.com");
	assert_parse_error("[account personal]\nprovider = outlook\n",
			   NAME ":1: account \"personal\" has no email; add a line like: email = me@outlook.com");
}

static void test_err_secrets(void **state)
{
	assert_parse_error(ACCT "imap_host = h\npassword = " SECRET "\npass_cmd = pass x\n",
			   NAME ":5: account \"personal\" sets both password (line 4) and pass_cmd (line 5); "
				"keep only one");
	assert_parse_error(ACCT "imap_host = h\npass_cmd = pass x\npassword = " SECRET "\n",
			   NAME ":5: account \"personal\" sets both password (line 5) and pass_cmd (line 4); "
				"keep only one");
	assert_parse_error(ACCT "imap_host = h\n",
			   NAME ":1: account \"personal\" uses auth = plain but has no password or pass_cmd; add "
				"pass_cmd = <command that prints the password> (or password = ... in a file only you "
				"can read)");
	assert_parse_error(ACCT "imap_host = h\nauth = login\n",
			   NAME ":4: account \"personal\" uses auth = login but has no password or pass_cmd; add "
				"pass_cmd = <command that prints the password> (or password = ... in a file only you "
				"can read)");
	/* auth from [defaults]: reported at the account. */
	assert_parse_error("[defaults]\nauth = login\n" ACCT "provider = outlook\n",
			   NAME ":3: account \"personal\" uses auth = login but has no password or pass_cmd; add "
				"pass_cmd = <command that prints the password> (or password = ... in a file only you "
				"can read)");
	assert_parse_error(ACCT "provider = outlook\npassword = " SECRET "\n",
			   NAME ":4: account \"personal\" uses auth = xoauth2, which takes no password: Outlook.com "
				"and Microsoft 365 no longer accept passwords, and XOAUTH2 signs in with OAuth tokens "
				"that mailkeep obtains and refreshes itself; remove \"password\" (or set auth = plain "
				"for a server that takes passwords)");
	assert_parse_error(ACCT "imap_host = h\nauth = xoauth2\npass_cmd = pass x\n",
			   NAME ":5: account \"personal\" uses auth = xoauth2, which takes no pass_cmd: Outlook.com "
				"and Microsoft 365 no longer accept passwords, and XOAUTH2 signs in with OAuth tokens "
				"that mailkeep obtains and refreshes itself; remove \"pass_cmd\" (or set auth = plain "
				"for a server that takes passwords)");
}

static void test_err_tls_port_mismatch(void **state)
{
	static const struct {
		const char *text;
		const char *expected;
	} cases[] = {
		{ACCT "provider = outlook\nimap_tls = starttls\nimap_port = 993\n",
		 NAME ":4: imap_tls = starttls does not work with imap_port = 993 (line 5): port 993 speaks TLS from "
		      "the first byte; set imap_tls = implicit, or use port 143 for STARTTLS"},
		{ACCT "provider = outlook\npop3_port = 995\npop3_tls = starttls\n",
		 NAME ":5: pop3_tls = starttls does not work with pop3_port = 995 (line 4): port 995 speaks TLS from "
		      "the first byte; set pop3_tls = implicit, or use port 110 for STARTTLS"},
		{ACCT "provider = outlook\nsmtp_tls = starttls\nsmtp_port = 465\n",
		 NAME ":4: smtp_tls = starttls does not work with smtp_port = 465 (line 5): port 465 speaks TLS from "
		      "the first byte; set smtp_tls = implicit, or use port 587 for STARTTLS"},
		{ACCT "provider = outlook\nimap_tls = implicit\nimap_port = 143\n",
		 NAME ":4: imap_tls = implicit does not work with imap_port = 143 (line 5): port 143 starts in plain "
		      "text and needs STARTTLS; set imap_tls = starttls, or use port 993 for implicit TLS"},
		{ACCT "provider = outlook\npop3_tls = implicit\npop3_port = 110\n",
		 NAME ":4: pop3_tls = implicit does not work with pop3_port = 110 (line 5): port 110 starts in plain "
		      "text and needs STARTTLS; set pop3_tls = starttls, or use port 995 for implicit TLS"},
		{ACCT "provider = outlook\nsmtp_tls = implicit\nsmtp_port = 587\n",
		 NAME ":4: smtp_tls = implicit does not work with smtp_port = 587 (line 5): port 587 starts in plain "
		      "text and needs STARTTLS; set smtp_tls = starttls, or use port 465 for implicit TLS"},
		/* the port from [defaults], the mode in the account */
		{"[defaults]\nimap_port = 993\n" ACCT "provider = outlook\nimap_tls = starttls\n",
		 NAME ":6: imap_tls = starttls does not work with imap_port = 993 (line 2): port 993 speaks TLS from "
		      "the first byte; set imap_tls = implicit, or use port 143 for STARTTLS"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_parse_error(cases[i].text, cases[i].expected);
}

static void test_err_servers(void **state)
{
	assert_parse_error(ACCT "pass_cmd = x\n",
			   NAME ":1: account \"personal\" has no server: a custom account needs at least one of "
				"imap_host, pop3_host, smtp_host (or set provider = outlook or office365)");
	assert_parse_error(ACCT "pass_cmd = x\nimap_host = h\npop3_port = 995\n",
			   NAME ":5: pop3_port is set but account \"personal\" has no pop3_host");
	assert_parse_error(ACCT "pass_cmd = x\nimap_host = h\nsmtp_tls = implicit\n",
			   NAME ":5: smtp_tls is set but account \"personal\" has no smtp_host");
}

static void test_err_fingerprint(void **state)
{
#define FP_TAIL                                                                                                  \
	"server's public key (44 characters); compute it with: openssl x509 -in cert.pem -pubkey -noout | openssl " \
	"pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"
	assert_parse_error(ACCT "tls_fingerprint = 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
			   NAME ":3: bad tls_fingerprint \"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\": expected "
				"\"sha256/\" followed by the base64 SHA-256 of the " FP_TAIL);
	assert_parse_error(ACCT "tls_fingerprint = sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n",
			   NAME ":3: bad tls_fingerprint \"sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\": "
				"expected \"sha256/\" followed by the base64 SHA-256 of the " FP_TAIL);
	assert_parse_error(ACCT "tls_fingerprint = sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSu!U=\n",
			   NAME ":3: bad tls_fingerprint \"sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSu!U=\": "
				"expected \"sha256/\" followed by the base64 SHA-256 of the " FP_TAIL);
	/* SHA-1 length (28 characters) */
	assert_parse_error("[defaults]\ntls_fingerprint = sha256/2jmj7l5rSw0yVb/vlWAYkK/YBwk=\n",
			   NAME ":2: bad tls_fingerprint \"sha256/2jmj7l5rSw0yVb/vlWAYkK/YBwk=\": expected \"sha256/\" "
				"followed by the base64 SHA-256 of the " FP_TAIL);
	assert_parse_error(ACCT "tls_fingerprint = AB:CD:EF\n",
			   NAME ":3: bad tls_fingerprint \"AB:CD:EF\": this looks like a hex certificate fingerprint, "
				"but mailkeep pins the server's public key as \"sha256/\" + base64 (44 characters); "
				"compute it with: openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin "
				"-outform der | openssl dgst -sha256 -binary | base64");
}

static void test_err_first_wins(void **state)
{
	/* Two problems: the earlier line is reported, not the later. */
	assert_parse_error(ACCT "imap_port = 0\nfoo = 1\n",
			   NAME ":3: bad imap_port \"0\": expected a port number from 1 to 65535");
	assert_parse_error(ACCT "bad line\n[account personal]\n",
			   NAME ":3: expected \"key = value\", a [section] header or a comment");
}

static void test_errors_never_show_secret(void **state)
{
	static const char *const texts[] = {
		"[defaults]\npassword = " SECRET "\n",
		ACCT "password = " SECRET "\npassword = " SECRET "\n",
		ACCT "provider = outlook\npassword = " SECRET "\n",
		ACCT "password = " SECRET "\npass_cmd = echo " SECRET "\n",
		ACCT "password = " SECRET "\nfoo = " SECRET "\n",
		ACCT "password = " SECRET "\x01\n",
		ACCT "password : " SECRET "\n",
		"password = " SECRET "\n",
		ACCT "pass_cmd = " SECRET "\nprovider = outlook\n",
	};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct mk_config *cfg = NULL;
		char *error = NULL;
		assert_int_equal(parse_text(texts[i], HOME, &empty_env, &cfg, &error), MK_ECONFIG);
		assert_non_null(error);
		if (strstr(error, SECRET) != NULL)
			fail_msg("case %zu leaks the secret: %s", i, error);
		mk_free(error);
	}
}

/* ---- load ---- */

static char tmpdir[64];

static int setup_tmpdir(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mk_test_config.XXXXXX");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int remove_tree(const char *dir)
{
	static const char *const files[] = {"c600", "c644", "c640", "c602", "cnopw", "cother", "cbad",
					    "xdg/mailkeep/config", NULL};
	static const char *const dirs[] = {"xdg/mailkeep", "xdg", "adir", NULL};
	char path[256];
	for (int i = 0; files[i] != NULL; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	for (int i = 0; dirs[i] != NULL; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, dirs[i]);
		rmdir(path);
	}
	return rmdir(dir) < 0 ? -1 : 0;
}

static int teardown_tmpdir(void **state)
{
	return remove_tree(tmpdir);
}

static char *write_file(const char *name, const char *text, mode_t mode)
{
	char *path = mk_xasprintf("%s/%s", tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

#define PW_FILE "[account personal]\nemail = me@example.org\nimap_host = h\npassword = " SECRET "\n"
#define NOPW_FILE "[account personal]\nprovider = outlook\nemail = me@outlook.com\noauth_client_id = c\n"

static void assert_load(const char *path, int expected_ret, const char *expected_error)
{
	struct mk_config *cfg = NULL;
	char *error = NULL;
	int r = mk_config_load(path, &cfg, &error);
	if (r != expected_ret)
		print_error("load %s: %d %s\n", path, r, error ? error : "");
	assert_int_equal(r, expected_ret);
	if (expected_ret == 0) {
		assert_null(error);
		assert_non_null(cfg);
		assert_string_equal(cfg->path, path);
		mk_config_free(&cfg);
	} else {
		assert_null(cfg);
		assert_non_null(error);
		assert_string_equal(error, expected_error);
		assert_null(strstr(error, SECRET));
		mk_free(error);
	}
}

static void test_load_missing(void **state)
{
	char *path = mk_xasprintf("%s/nonexistent", tmpdir);
	char *expected = mk_xasprintf("%s: No such file or directory", path);
	assert_load(path, MK_ENOTFOUND, expected);
	mk_free(expected);
	mk_free(path);

	path = mk_xasprintf("%s/adir", tmpdir);
	assert_int_equal(mkdir(path, 0700), 0);
	expected = mk_xasprintf("%s: Is a directory", path);
	assert_load(path, MK_ECONFIG, expected);
	mk_free(expected);
	mk_free(path);
}

static void test_load_permissions(void **state)
{
	char *path = write_file("c600", PW_FILE, 0600);
	assert_load(path, 0, NULL);
	struct mk_config *cfg = NULL;
	char *error = NULL;
	assert_int_equal(mk_config_load(path, &cfg, &error), 0);
	assert_string_equal(cfg->accounts[0].password, SECRET);
	mk_config_free(&cfg);
	mk_free(path);

	path = write_file("c644", PW_FILE, 0644);
	char *expected = mk_xasprintf("%s: file holds a password but is readable by group/others (mode 0644); "
				      "run: chmod 600 %s",
				      path, path);
	assert_load(path, MK_EPERM, expected);
	mk_free(expected);
	mk_free(path);

	path = write_file("c640", PW_FILE, 0640);
	expected = mk_xasprintf("%s: file holds a password but is readable by group/others (mode 0640); "
				"run: chmod 600 %s",
				path, path);
	assert_load(path, MK_EPERM, expected);
	mk_free(expected);
	mk_free(path);

	path = write_file("c602", PW_FILE, 0602);
	expected = mk_xasprintf("%s: file holds a password but is accessible by group/others (mode 0602); "
				"run: chmod 600 %s",
				path, path);
	assert_load(path, MK_EPERM, expected);
	mk_free(expected);
	mk_free(path);

	/* No password: any mode is fine. */
	path = write_file("cnopw", NOPW_FILE, 0644);
	assert_load(path, 0, NULL);
	mk_free(path);
}

static void test_load_owner(void **state)
{
	char *path = write_file("cother", PW_FILE, 0600);
	if (geteuid() == 0) {
		/* As root (CI): hand the file to nobody; root must still
		 * refuse it, since nobody can rewrite it. */
		assert_int_equal(chown(path, 65534, 65534), 0);
		char *expected = mk_xasprintf("%s: file holds a password but is owned by uid 65534, not you (uid 0); "
					      "run: chown 0 %s && chmod 600 %s",
					      path, path, path);
		assert_load(path, MK_EPERM, expected);
		mk_free(expected);
	} else {
		/* Unprivileged we cannot chown; our own 0600 file passes. */
		assert_load(path, 0, NULL);
	}
	mk_free(path);
}

static void test_load_parse_error_and_default_path(void **state)
{
	char *path = write_file("cbad", "[account a]\nimap_hots = x\n", 0644);
	char *expected = mk_xasprintf("%s:2: unknown key \"imap_hots\" (did you mean \"imap_host\"?)", path);
	assert_load(path, MK_ECONFIG, expected);
	mk_free(expected);

	/* mk_config_load(NULL) uses $MAILKEEP_CONFIG first. */
	setenv("MAILKEEP_CONFIG", path, 1);
	char *def = mk_config_default_path();
	assert_string_equal(def, path);
	mk_free(def);
	struct mk_config *cfg = NULL;
	char *error = NULL;
	assert_int_equal(mk_config_load(NULL, &cfg, &error), MK_ECONFIG);
	assert_true(strncmp(error, path, strlen(path)) == 0);
	mk_free(error);
	mk_free(path);

	/* Then $XDG_CONFIG_HOME/mailkeep/config (absolute only), then
	 * $HOME/.config/mailkeep/config. */
	unsetenv("MAILKEEP_CONFIG");
	char *xdg = mk_xasprintf("%s/xdg", tmpdir);
	setenv("XDG_CONFIG_HOME", xdg, 1);
	def = mk_config_default_path();
	char *want = mk_xasprintf("%s/mailkeep/config", xdg);
	assert_string_equal(def, want);
	mk_free(want);
	mk_free(def);
	char *dir = mk_xasprintf("%s/xdg", tmpdir);
	assert_int_equal(mkdir(dir, 0700), 0);
	mk_free(dir);
	dir = mk_xasprintf("%s/xdg/mailkeep", tmpdir);
	assert_int_equal(mkdir(dir, 0700), 0);
	mk_free(dir);
	path = write_file("xdg/mailkeep/config", NOPW_FILE, 0644);
	assert_int_equal(mk_config_load(NULL, &cfg, &error), 0);
	assert_string_equal(cfg->path, path);
	mk_config_free(&cfg);
	mk_free(path);
	mk_free(xdg);

	setenv("XDG_CONFIG_HOME", "relative", 1);
	const char *old_home = getenv("HOME");
	char *saved_home = old_home ? mk_xstrdup(old_home) : NULL;
	setenv("HOME", "/home/someone", 1);
	def = mk_config_default_path();
	assert_string_equal(def, "/home/someone/.config/mailkeep/config");
	mk_free(def);
	unsetenv("XDG_CONFIG_HOME");
	def = mk_config_default_path();
	assert_string_equal(def, "/home/someone/.config/mailkeep/config");
	mk_free(def);
	if (saved_home != NULL)
		setenv("HOME", saved_home, 1);
	else
		unsetenv("HOME");
	mk_free(saved_home);
}

/* ---- secrets ---- */

static struct mk_config_account cmd_account(const char *cmd)
{
	struct mk_config_account a;
	memset(&a, 0, sizeof(a));
	a.name = (char *)"personal";
	a.pass_cmd = (char *)cmd;
	return a;
}

static void assert_secret(const char *cmd, const char *expected)
{
	struct mk_config_account a = cmd_account(cmd);
	char *secret = NULL, *error = NULL;
	int r = mk_config_get_secret(&a, &secret, &error);
	if (r != 0)
		print_error("%s: %s\n", cmd, error ? error : "");
	assert_int_equal(r, 0);
	assert_null(error);
	assert_string_equal(secret, expected);
	mk_config_secret_free(&secret);
	assert_null(secret);
}

static void assert_secret_error(const char *cmd, int expected_ret, const char *expected)
{
	struct mk_config_account a = cmd_account(cmd);
	char *secret = NULL, *error = NULL;
	int r = mk_config_get_secret(&a, &secret, &error);
	assert_int_equal(r, expected_ret);
	assert_null(secret);
	assert_non_null(error);
	assert_string_equal(error, expected);
	assert_null(strstr(error, SECRET));
	mk_free(error);
}

static void test_secret_password(void **state)
{
	struct mk_config_account a = cmd_account(NULL);
	a.password = (char *)SECRET;
	char *secret = NULL, *error = NULL;
	assert_int_equal(mk_config_get_secret(&a, &secret, &error), 0);
	assert_string_equal(secret, SECRET);
	assert_ptr_not_equal(secret, a.password);
	mk_config_secret_free(&secret);
	assert_null(secret);
	mk_config_secret_free(&secret); /* NULL is fine */

	a.password = NULL;
	assert_int_equal(mk_config_get_secret(&a, &secret, &error), MK_ENOTFOUND);
	assert_string_equal(error, "account personal: no password or pass_cmd is configured");
	mk_free(error);
}

static void test_secret_cmd_ok(void **state)
{
	assert_secret("echo " SECRET, SECRET);
	assert_secret("printf 'abc\\r\\nsecond line\\n'", "abc");
	assert_secret("printf 'no newline'", "no newline");
	/* inline ';' is the shell's: both commands run, first line wins */
	assert_secret("echo one ; echo two", "one");
	/* stdin is /dev/null: cat ends at once instead of waiting */
	assert_secret("cat; echo after-cat", "after-cat");
	/* exactly the limit is fine */
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "head -c %d /dev/zero | tr '\\0' a", MK_LIMIT_SECRET);
	struct mk_config_account a = cmd_account(cmd);
	char *secret = NULL, *error = NULL;
	assert_int_equal(mk_config_get_secret(&a, &secret, &error), 0);
	assert_int_equal(strlen(secret), MK_LIMIT_SECRET);
	mk_config_secret_free(&secret);

	/* An ignored SIGPIPE (libuv programs ignore it) is reset to the
	 * default for the command: SigIgn must not have bit 13 set. */
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, &old);
	a = cmd_account("sed -n 's/^SigIgn:[[:space:]]*//p' /proc/self/status");
	assert_int_equal(mk_config_get_secret(&a, &secret, &error), 0);
	unsigned long long ign = strtoull(secret, NULL, 16);
	assert_int_equal(ign & (1ull << (SIGPIPE - 1)), 0);
	mk_config_secret_free(&secret);
	sigaction(SIGPIPE, &old, NULL);
	/* and pipelines that rely on it work */
	assert_secret("yes | head -n 1", "y");
}

static void test_secret_cmd_failures(void **state)
{
	assert_secret_error("echo " SECRET "; exit 1", MK_ECMD, "account personal: pass_cmd exited with status 1");
	assert_secret_error("exit 42", MK_ECMD, "account personal: pass_cmd exited with status 42");
	assert_secret_error("echo " SECRET "; kill -9 $$", MK_ECMD, "account personal: pass_cmd was killed by signal 9");
	assert_secret_error("true", MK_ECMD, "account personal: pass_cmd printed nothing");
	assert_secret_error("echo; echo " SECRET, MK_ECMD, "account personal: pass_cmd printed nothing on its first line");
	assert_secret_error("printf 'a\\000b\\n'", MK_ECMD, "account personal: pass_cmd printed a NUL byte");
	char expected[128];
	snprintf(expected, sizeof(expected), "account personal: pass_cmd output exceeds %d bytes", MK_LIMIT_SECRET);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "head -c %d /dev/zero | tr '\\0' a", MK_LIMIT_SECRET + 1);
	assert_secret_error(cmd, MK_ECMD, expected);
	/* endless output is cut off and the command killed */
	assert_secret_error("yes " SECRET, MK_ECMD, expected);
	assert_secret_error("/nonexistent/command", MK_ECMD, "account personal: pass_cmd exited with status 127");
}

/* The process whose pid is in `pidfile` has exited (gone, or a zombie
 * waiting for init). */
static void assert_pid_gone(const char *pidfile)
{
	FILE *f = fopen(pidfile, "r");
	assert_non_null(f);
	long pid = 0;
	assert_int_equal(fscanf(f, "%ld", &pid), 1);
	fclose(f);
	assert_true(pid > 0);
	char stat_path[64];
	snprintf(stat_path, sizeof(stat_path), "/proc/%ld/stat", pid);
	for (int i = 0; i < 200; i++) {
		FILE *st = fopen(stat_path, "r");
		if (st == NULL)
			return;
		char state = '?';
		int n = fscanf(st, "%*d (%*[^)]) %c", &state);
		fclose(st);
		if (n == 1 && (state == 'Z' || state == 'X'))
			return;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	fail_msg("process %ld still runs after the timeout", pid);
}

static void test_secret_cmd_timeout(void **state)
{
	mk__config_set_cmd_timeout_ms(300);
	assert_int_equal(mk__config_cmd_timeout_ms(), 300);
	assert_secret_error("sleep 5", MK_ECMD, "account personal: pass_cmd timed out after 300 ms");
	/* closes stdout, then lingers: still bounded by the deadline */
	assert_secret_error("exec >&-; sleep 5", MK_ECMD, "account personal: pass_cmd timed out after 300 ms");
	/* prints, then hangs: the secret is not used */
	assert_secret_error("echo " SECRET "; sleep 5", MK_ECMD, "account personal: pass_cmd timed out after 300 ms");
	mk__config_set_cmd_timeout_ms(1000);
	assert_secret_error("exec sleep 5", MK_ECMD, "account personal: pass_cmd timed out after 1 s");
	/* the whole tree dies, not only the shell (dash forks `sleep`) */
	char *pidfile = mk_xasprintf("%s/sleeper.pid", tmpdir);
	char *cmd = mk_xasprintf("sleep 5 & echo $! > %s; wait", pidfile);
	assert_secret_error(cmd, MK_ECMD, "account personal: pass_cmd timed out after 1 s");
	assert_pid_gone(pidfile);
	unlink(pidfile);
	mk_free(cmd);
	mk_free(pidfile);
	mk__config_set_cmd_timeout_ms(0);
	assert_int_equal(mk__config_cmd_timeout_ms(), MK_LIMIT_CMD_TIMEOUT_MS);
}

/* issue 7: fetch and pop3_delete */
static void test_fetch_pop3_delete(void **state)
{
	(void)state;
	struct mk_config *cfg = parse_ok("[account a]\nemail = a@example.org\npassword = x\npop3_host = pop.example.org\n"
					 "imap_host = imap.example.org\n"
					 "[account b]\nemail = b@example.org\npassword = x\npop3_host = pop.example.org\n"
					 "fetch = pop3\npop3_delete = after_days 30\n"
					 "[account c]\nemail = c@example.org\npassword = x\nprovider = outlook\nauth = plain\n"
					 "fetch = both\npop3_delete = after_store\n");
	assert_int_equal(cfg->accounts[0].fetch, MK_CONFIG_FETCH_IMAP);
	assert_int_equal(cfg->accounts[0].pop3_delete, MK_CONFIG_POP3_DELETE_NEVER);
	assert_int_equal(cfg->accounts[1].fetch, MK_CONFIG_FETCH_POP3);
	assert_int_equal(cfg->accounts[1].pop3_delete, MK_CONFIG_POP3_DELETE_AFTER_DAYS);
	assert_int_equal(cfg->accounts[1].pop3_delete_days, 30);
	assert_int_equal(cfg->accounts[2].fetch, MK_CONFIG_FETCH_BOTH);
	assert_int_equal(cfg->accounts[2].pop3_delete, MK_CONFIG_POP3_DELETE_AFTER_STORE);
	char *dump = dump_to_string(cfg);
	assert_non_null(strstr(dump, "  fetch     pop3\n  pop3_delete after_days 30\n"));
	assert_non_null(strstr(dump, "  fetch     both\n  pop3_delete after_store\n"));
	mk_free(dump);
	mk_config_free(&cfg);
	assert_parse_error("[account a]\nemail = a@example.org\npassword = x\npop3_host = p.example.org\nfetch = pop\n",
			   NAME ":5: bad fetch \"pop\": expected imap, pop3 or both (did you mean \"pop3\"?)");
	assert_parse_error("[account a]\nemail = a@example.org\npassword = x\npop3_host = p.example.org\n"
			   "pop3_delete = after_days\n",
			   NAME ":5: bad pop3_delete \"after_days\": after_days needs a number of days from 0 to 36500, as "
				"in \"after_days 30\"");
	assert_parse_error("[account a]\nemail = a@example.org\npassword = x\npop3_host = p.example.org\n"
			   "pop3_delete = always\n",
			   NAME ":5: bad pop3_delete \"always\": expected never, after_store or after_days N");
	assert_parse_error("[account a]\nemail = a@example.org\npassword = x\nimap_host = i.example.org\nfetch = pop3\n",
			   NAME ":5: fetch = pop3 but account \"a\" has no POP3 server; add pop3_host (or set provider = "
				"outlook or office365)");
	assert_parse_error("[account a]\nemail = a@example.org\npassword = x\npop3_host = p.example.org\nfetch = both\n",
			   NAME ":5: fetch = both but account \"a\" has no IMAP server; add imap_host, or set fetch = pop3");
}

static void test_folders_key(void **state)
{
	assert_true(mk_config_folder_match("*", "Sent Items", '/'));
	assert_true(mk_config_folder_match("* !Calendar* !Contacts", "Archive/2025", '/'));
	assert_false(mk_config_folder_match("* !Calendar* !Contacts", "Calendar/Birthdays", '/'));
	assert_false(mk_config_folder_match("!Contacts", "Contacts", '/'));
	assert_true(mk_config_folder_match("!Contacts", "INBOX", '/'));
	assert_true(mk_config_folder_match("INBOX \"Sent Items\"", "Sent Items", '/'));
	assert_true(mk_config_folder_match("inbox", "INBOX", '/'));
	assert_false(mk_config_folder_match("INBOX \"Sent Items\"", "Drafts", '/'));
	assert_true(mk_config_folder_match("Archive/%", "Archive/2025", '/'));
	assert_false(mk_config_folder_match("Archive/%", "Archive/2025/Q1", '/'));
	assert_true(mk_config_folder_match("Archive/*", "Archive/2025/Q1", '/'));
	/* last match wins */
	assert_true(mk_config_folder_match("!Archive* Archive/2025", "Archive/2025", '/'));
	char msg[256];
	assert_int_equal(mk_config_folders_check("\"Sent Items", msg, sizeof(msg)), MK_ECONFIG);
	assert_int_equal(mk_config_folders_check("* !", msg, sizeof(msg)), MK_ECONFIG);
	assert_int_equal(mk_config_folders_check("* !Calendar*", msg, sizeof(msg)), 0);
	struct mk_config *cfg = NULL;
	char *err = NULL;
	const char *bad = "[account a]\nemail = a@b.c\nauth = plain\npassword = x\nimap_host = h\ntimeout = 0\n";
	assert_int_equal(mk_config_parse(bad, strlen(bad), "t.conf", "/home/u", &cfg, &err), MK_ECONFIG);
	assert_non_null(strstr(err, "t.conf:6: bad timeout \"0\""));
	mk_free(err);
	const char *ok = "[defaults]\ntimeout = 5\nfolders = * !Calendar*\n[account a]\nemail = a@b.c\nauth = plain\n"
			 "password = x\nimap_host = h\nmax_connections = 2\n";
	assert_int_equal(mk_config_parse(ok, strlen(ok), "t.conf", "/home/u", &cfg, &err), 0);
	assert_int_equal(cfg->accounts[0].timeout_s, 5);
	assert_int_equal(cfg->accounts[0].max_connections, 2);
	assert_string_equal(cfg->accounts[0].folders, "* !Calendar*");
	assert_string_equal(cfg->accounts[0].idle, "INBOX");
	assert_int_equal(cfg->accounts[0].poll_interval_s, 900);
	mk_config_free(&cfg);
	unsigned d;
	assert_int_equal(mk_config_duration("15m", 1, 86400, &d), 0);
	assert_int_equal(d, 900);
	assert_int_equal(mk_config_duration("2h", 1, 86400, &d), 0);
	assert_int_equal(d, 7200);
	assert_int_equal(mk_config_duration("90", 1, 86400, &d), 0);
	assert_int_equal(d, 90);
	assert_int_equal(mk_config_duration("0s", 1, 86400, &d), MK_EINVAL);
	assert_int_equal(mk_config_duration("5x", 1, 86400, &d), MK_EINVAL);
	assert_int_equal(mk_config_duration("2d", 1, 86400, &d), MK_EINVAL);
	const char *dl = "[account a]\nemail = a@b.c\nauth = plain\npassword = x\nimap_host = h\n";
	assert_int_equal(mk_config_parse(dl, strlen(dl), "t.conf", "/home/u", &cfg, &err), 0);
	assert_int_equal(cfg->compress_level, 4); /* the default (storage/blob.c) */
	mk_config_free(&cfg);
	const char *lvl = "[defaults]\ncompress_level = 1\n[account a]\nemail = a@b.c\nauth = plain\npassword = x\nimap_host = h\n";
	assert_int_equal(mk_config_parse(lvl, strlen(lvl), "t.conf", "/home/u", &cfg, &err), 0);
	assert_int_equal(cfg->compress_level, 1);
	mk_config_free(&cfg);
	const char *badl = "[defaults]\ncompress_level = 0\n";
	assert_int_equal(mk_config_parse(badl, strlen(badl), "t.conf", "/home/u", &cfg, &err), MK_ECONFIG);
	assert_non_null(strstr(err, "t.conf:2: bad compress_level \"0\": expected a zlib level from 1"));
	mk_free(err);
	const char *accl = "[account a]\nemail = a@b.c\nauth = plain\npassword = x\nimap_host = h\ncompress_level = 3\n";
	assert_int_equal(mk_config_parse(accl, strlen(accl), "t.conf", "/home/u", &cfg, &err), MK_ECONFIG);
	mk_free(err);
	const char *badd = "[account a]\nemail = a@b.c\nauth = plain\npassword = x\nimap_host = h\npoll_interval = soon\n";
	assert_int_equal(mk_config_parse(badd, strlen(badd), "t.conf", "/home/u", &cfg, &err), MK_ECONFIG);
	assert_non_null(strstr(err, "t.conf:6: bad poll_interval \"soon\""));
	mk_free(err);
}


/* issue 5: outbox keys, presets and cross-checks */
static void test_outbox_keys(void **state)
{
	(void)state;
	struct mk_config *cfg = parse_ok("[account o]\nprovider = outlook\nemail = me@outlook.com\noauth_client_id = 9e5f94bc-e8a4-4e73-b8be-63364c29d753\n"
					 "[account m]\nprovider = office365\nemail = me@contoso.com\noauth_client_id = 9e5f94bc-e8a4-4e73-b8be-63364c29d753\nmax_per_minute = 10\n"
					 "[account c]\nemail = c@example.org\npassword = " SECRET "\nimap_host = i.example.org\n"
					 "smtp_host = s.example.org\nsave_sent = Sent\nmax_queue_age = 2d\n"
					 "max_smtp_connections = 1\nmax_per_day = 0\n");
	const struct mk_config_account *o = mk_config_find_account(cfg, "o");
	assert_int_equal(o->max_per_minute, 30);
	assert_int_equal(o->max_per_day, 300);
	assert_int_equal(o->max_smtp_connections, 3);
	assert_int_equal(o->max_queue_age_s, 5 * 86400);
	assert_string_equal(o->server_saves_sent, "Sent Items");
	assert_null(o->save_sent);
	const struct mk_config_account *m = mk_config_find_account(cfg, "m");
	assert_int_equal(m->max_per_minute, 10);
	assert_int_equal(m->max_per_day, 10000);
	const struct mk_config_account *c = mk_config_find_account(cfg, "c");
	assert_int_equal(c->max_per_minute, 0);
	assert_int_equal(c->max_per_day, 0);
	assert_int_equal(c->max_smtp_connections, 1);
	assert_int_equal(c->max_queue_age_s, 2 * 86400);
	assert_string_equal(c->save_sent, "Sent");
	assert_null(c->server_saves_sent);
	mk_config_free(&cfg);

	assert_parse_error("[account o]\nprovider = outlook\nemail = me@outlook.com\noauth_client_id = 9e5f94bc-e8a4-4e73-b8be-63364c29d753\nsave_sent = Sent Items\n",
			   NAME ":5: save_sent = Sent Items: the server of account \"o\" already files sent mail in "
				"\"Sent Items\" (server_saves_sent); set one of them to no");
	assert_parse_error("[account c]\nemail = c@example.org\npassword = x\nsmtp_host = s.example.org\n"
			   "save_sent = Sent\n",
			   NAME ":5: save_sent = Sent needs an IMAP server; account \"c\" has none (add imap_host)");
	assert_parse_error("[account c]\nmax_per_minute = fast\n",
			   NAME ":2: bad max_per_minute \"fast\": expected a number (0 for no limit)");
	assert_parse_error("[account c]\nmax_queue_age = 10s\n",
			   NAME ":2: bad max_queue_age \"10s\": expected a duration like 12h or 5d (1 min to 365 days)");
	cfg = parse_ok("[account o]\nprovider = outlook\nemail = me@outlook.com\noauth_client_id = 9e5f94bc-e8a4-4e73-b8be-63364c29d753\nserver_saves_sent = no\n"
		       "save_sent = Sent Items\n");
	assert_null(cfg->accounts[0].server_saves_sent);
	assert_string_equal(cfg->accounts[0].save_sent, "Sent Items");
	mk_config_free(&cfg);
}

/* ---- issue 6: OAuth2 keys ---- */

static void test_oauth_defaults_and_presets(void **state)
{
	struct mk_config *cfg = parse_ok("[defaults]\n"
					 "oauth_client_id = 11111111-2222-3333-4444-555555555555\n"
					 "[account o]\nprovider = outlook\nemail = o@outlook.com\n"
					 "[account w]\nprovider = office365\nemail = w@contoso.com\n"
					 "[account t]\nprovider = office365\nemail = t@contoso.com\n"
					 "oauth_tenant = contoso.onmicrosoft.com\n"
					 "oauth_authority = https://127.0.0.1:8443/\n"
					 "oauth_scopes = offline_access https://outlook.office365.com/.default\n"
					 "[account c]\nprovider = outlook\nemail = c@outlook.com\n"
					 "token_cmd = oauth2ms --token ; true\ntoken_cmd_cache = 10m\n"
					 "[account p]\nemail = p@example.org\nimap_host = h\npass_cmd = x\n");
	const struct mk_config_account *o = mk_config_find_account(cfg, "o");
	assert_string_equal(o->oauth_client_id, "11111111-2222-3333-4444-555555555555");
	assert_string_equal(o->oauth_tenant, "consumers");
	assert_string_equal(o->oauth_authority, MK_CONFIG_OAUTH_AUTHORITY);
	assert_string_equal(o->oauth_scopes, MK_CONFIG_OAUTH_SCOPES);
	assert_non_null(strstr(o->oauth_scopes, "offline_access"));
	assert_non_null(strstr(o->oauth_scopes, "https://outlook.office.com/SMTP.Send"));
	assert_null(o->token_cmd);
	assert_int_equal(o->token_cmd_cache_s, 300);
	const struct mk_config_account *w = mk_config_find_account(cfg, "w");
	assert_string_equal(w->oauth_tenant, "organizations");
	const struct mk_config_account *t = mk_config_find_account(cfg, "t");
	assert_string_equal(t->oauth_tenant, "contoso.onmicrosoft.com");
	assert_string_equal(t->oauth_authority, "https://127.0.0.1:8443/");
	assert_string_equal(t->oauth_scopes, "offline_access https://outlook.office365.com/.default");
	const struct mk_config_account *c = mk_config_find_account(cfg, "c");
	assert_string_equal(c->token_cmd, "oauth2ms --token ; true");
	assert_null(c->oauth_client_id); /* token_cmd wins over the default client id */
	assert_int_equal(c->token_cmd_cache_s, 600);
	const struct mk_config_account *p = mk_config_find_account(cfg, "p");
	assert_null(p->oauth_client_id); /* plain accounts ignore [defaults]' OAuth keys */
	assert_null(p->oauth_tenant);
	char *dump = dump_to_string(cfg);
	assert_non_null(strstr(dump, "  oauth     token_cmd: oauth2ms --token ; true (output reused for 600 s)\n"));
	assert_non_null(strstr(dump, "  oauth     client 11111111-2222-3333-4444-555555555555, tenant organizations, "
				     "https://login.microsoftonline.com\n"));
	mk_free(dump);
	mk_config_free(&cfg);

	/* custom servers with xoauth2 default to the "common" tenant */
	cfg = parse_ok("[account x]\nemail = x@example.org\nimap_host = h\nauth = xoauth2\noauth_client_id = c\n");
	assert_string_equal(cfg->accounts[0].oauth_tenant, "common");
	mk_config_free(&cfg);
}

static void test_err_oauth(void **state)
{
	assert_parse_error(ACCT "provider = outlook\n",
			   NAME ":1: account \"personal\" uses auth = xoauth2 but has no oauth_client_id: register your own "
				"app in Microsoft Entra (see `mailkeep help config`) and set oauth_client_id = <its "
				"Application (client) ID>, or set token_cmd = <command that prints an access token>");
	assert_parse_error(ACCT "imap_host = h\nauth = xoauth2\n",
			   NAME ":4: account \"personal\" uses auth = xoauth2 but has no oauth_client_id: register your own "
				"app in Microsoft Entra (see `mailkeep help config`) and set oauth_client_id = <its "
				"Application (client) ID>, or set token_cmd = <command that prints an access token>");
	assert_parse_error(ACCT "provider = outlook\noauth_client_id = c\ntoken_cmd = t\n",
			   NAME ":5: account \"personal\" sets both oauth_client_id (line 4) and token_cmd (line 5); keep "
				"only one");
	assert_parse_error(ACCT "provider = outlook\noauth_client_id = c\noauth_authority = http://idp.example\n",
			   NAME ":5: bad oauth_authority \"http://idp.example\": expected an https:// URL such as "
				"https://login.microsoftonline.com (tokens never travel over plain http)");
	assert_parse_error(ACCT "provider = outlook\noauth_client_id = c\noauth_authority = https://\n",
			   NAME ":5: bad oauth_authority \"https://\": expected an https:// URL such as "
				"https://login.microsoftonline.com");
	assert_parse_error(ACCT "provider = outlook\noauth_client_id = a/b\n",
			   NAME ":4: bad oauth_client_id \"a/b\": expected the Application (client) ID of your app "
				"registration, a GUID like 00000000-0000-0000-0000-000000000000");
	assert_parse_error(ACCT "provider = outlook\noauth_client_id = c\noauth_tenant = my tenant\n",
			   NAME ":5: bad oauth_tenant \"my tenant\": expected consumers (Outlook.com), organizations, "
				"common, a tenant id or a domain like contoso.onmicrosoft.com");
	assert_parse_error(ACCT "provider = outlook\noauth_client_id = c\n"
				"oauth_scopes = https://outlook.office.com/IMAP.AccessAsUser.All\n",
			   NAME ":5: oauth_scopes of account \"personal\" lacks offline_access, without which no refresh "
				"token is issued and the sign-in ends within the hour");
	assert_parse_error(ACCT "provider = outlook\ntoken_cmd = t\ntoken_cmd_cache = forever\n",
			   NAME ":5: bad token_cmd_cache \"forever\": expected a duration like 90s, 5m, 1h (1 s to 1 day)");
	assert_parse_error(ACCT "imap_host = h\npass_cmd = p\noauth_client_id = c\n",
			   NAME ":5: oauth_client_id is set but account \"personal\" uses auth = plain; set auth = xoauth2 "
				"to sign in with OAuth, or remove oauth_client_id");
	assert_parse_error("[defaults]\ntoken_cmd = t\n",
			   NAME ":2: \"token_cmd\" cannot be set in [defaults]; set it in each [account NAME]");
	assert_parse_error(ACCT "provider = outlook\noauth_clientid = c\n",
			   NAME ":4: unknown key \"oauth_clientid\" (did you mean \"oauth_client_id\"?)");
	/* an xoauth2 account still refuses a password first */
	assert_parse_error(ACCT "provider = outlook\npassword = " SECRET "\noauth_client_id = c\n",
			   NAME ":4: account \"personal\" uses auth = xoauth2, which takes no password: Outlook.com and "
				"Microsoft 365 no longer accept passwords, and XOAUTH2 signs in with OAuth tokens that "
				"mailkeep obtains and refreshes itself; remove \"password\" (or set auth = plain for a "
				"server that takes passwords)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_folders_key),
		cmocka_unit_test(test_fetch_pop3_delete), /* issue 7 */
		cmocka_unit_test(test_outlook_preset),
		cmocka_unit_test(test_office365_preset),
		cmocka_unit_test(test_custom_defaults),
		cmocka_unit_test(test_port_implies_tls),
		cmocka_unit_test(test_defaults_inheritance),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_tilde_expansion),
		cmocka_unit_test(test_default_store_env),
		cmocka_unit_test(test_empty_and_comments),
		cmocka_unit_test(test_inline_semicolon_kept),
		cmocka_unit_test(test_crlf_bom_indent),
		cmocka_unit_test(test_dump),
		cmocka_unit_test(test_outbox_keys),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_err_unknown_key),
		cmocka_unit_test(test_err_sections),
		cmocka_unit_test(test_err_outside_section),
		cmocka_unit_test(test_err_duplicate_key),
		cmocka_unit_test(test_err_key_placement),
		cmocka_unit_test(test_err_line_syntax),
		cmocka_unit_test(test_err_too_many_accounts),
		cmocka_unit_test(test_err_long_line_nul_control),
		cmocka_unit_test(test_err_port),
		cmocka_unit_test(test_err_enums),
		cmocka_unit_test(test_err_email_host),
		cmocka_unit_test(test_err_missing_email),
		cmocka_unit_test(test_err_secrets),
		cmocka_unit_test(test_err_tls_port_mismatch),
		cmocka_unit_test(test_err_servers),
		cmocka_unit_test(test_err_fingerprint),
		cmocka_unit_test(test_err_first_wins),
		cmocka_unit_test(test_errors_never_show_secret),
		cmocka_unit_test(test_load_missing),
		cmocka_unit_test(test_load_permissions),
		cmocka_unit_test(test_load_owner),
		cmocka_unit_test(test_load_parse_error_and_default_path),
		cmocka_unit_test(test_secret_password),
		cmocka_unit_test(test_secret_cmd_ok),
		cmocka_unit_test(test_secret_cmd_failures),
		cmocka_unit_test(test_secret_cmd_timeout),
		cmocka_unit_test(test_oauth_defaults_and_presets), /* issue 6 */
		cmocka_unit_test(test_err_oauth),
	};
	return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
