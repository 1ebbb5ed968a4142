/* SPDX-License-Identifier: MIT */
/*
 * main.c - the `mailkeep` command: global options, then a subcommand.
 */
#include "cli.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_log.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#ifndef MK_VERSION
#define MK_VERSION "0"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"mailkeep %s - keep an offline backup of an Outlook.com / Microsoft 365 mailbox\n"
		"\n"
		"usage: mailkeep [-c FILE] [-v|-q] COMMAND [ARGS]\n"
		"\n"
		"commands:\n"
		"  init --email ADDR [--provider outlook|office365|custom] [--force]\n"
		"                       write a commented configuration to start from, and\n"
		"                       print the next steps\n"
		"  check-config         read the configuration and print the resolved accounts\n"
		"                       (secrets masked), or FILE:LINE errors\n"
		"  folders [ACCOUNT]    connect (TLS verified), log in, and list the folders\n"
		"  sync [ACCOUNT...]    back up every selected folder into the store (read-only on\n"
		"                       the server, incremental, safe to interrupt)\n"
		"  run                  the agent: sync, then IMAP IDLE on `idle` folders, poll the\n"
		"                       rest; SIGTERM stops cleanly, SIGHUP reloads the config\n"
		"  status [--json]      ask the running agent what each connection is doing\n"
		"  metrics              the running agent's metrics (OpenMetrics text)\n"
		"  ls [ACCOUNT[/FOLDER]] [--json]   folders with counts, or a folder's messages\n"
		"  cat ACCOUNT/FOLDER/UID           a stored message, byte for byte\n"
		"  export --maildir DIR | --mbox FILE [ACCOUNT[/FOLDER]]   write a Maildir or mbox\n"
		"  verify               check every stored body's hash and every record\n"
		"  stats [--json]       counts, sizes, compression and dedupe ratios\n"
		"  send [-a ACCOUNT] [--at TIME | --in DURATION] [-t] [RCPT...] < MESSAGE\n"
		"                       queue a message and send it (now, or at TIME)\n"
		"  sendmail [-t] [-f FROM] [-i] [RCPT...] < MESSAGE   sendmail(8) for MUAs and scripts\n"
		"  outbox [ls|show ID|cancel ID|retry ID|flush|rm ID]   the queue of outgoing mail\n"
		"  login [ACCOUNT]      sign an auth = xoauth2 account in (device login: a code to\n"
		"                       enter at Microsoft's page); keeps the refresh token (0600)\n"
		"  token [ACCOUNT]      refresh the account's access token and say how long it is\n"
		"                       valid (never prints it)\n"
		"  help [COMMAND|config]   this text, a command's options, or the configuration\n"
		"\n"
		"options:\n"
		"  -c, --config FILE    configuration file (default: $MAILKEEP_CONFIG, else\n"
		"                       $XDG_CONFIG_HOME/mailkeep/config, else ~/.config/mailkeep/config)\n"
		"  -v, --verbose        more log output (repeat for debug)\n"
		"  -q, --quiet          errors only\n"
		"  -V, --version        print the version\n"
		"  -h, --help           this text\n"
		"\n"
		"Invoked as mailkeep-sendmail (or sendmail), it is `mailkeep sendmail`.\n"
		"Manuals: mailkeep(1), mailkeep.conf(5).\n"
		"\n"
		"exit codes (sysexits.h):\n"
		"  0 ok, 64 usage, 65 data error (verify found a problem), 69 unavailable\n"
		"  (feature or pass_cmd), 70 internal error, 73 cannot create the store, 74 I/O error,\n"
		"  75 temporary network failure (refused, timeout, DNS), 76 protocol or TLS\n"
		"  failure (certificate not trusted, host name mismatch, old TLS), 77 login\n"
		"  failed or unsafe file permissions, 78 configuration error\n",
		MK_VERSION);
}

/* `mailkeep help config`: where the configuration lives and how to start
 * (the reference is mailkeep.conf(5)). */
static void usage_config(void)
{
	printf("The configuration is an INI file: $MAILKEEP_CONFIG, else\n"
	       "$XDG_CONFIG_HOME/mailkeep/config, else ~/.config/mailkeep/config (or -c FILE).\n"
	       "`mailkeep init --email ADDR` writes a commented one to start from.\n"
	       "\n"
	       "  [defaults]\n"
	       "  store = ~/.local/share/mailkeep\n"
	       "\n"
	       "  [account personal]\n"
	       "  provider = outlook            ; outlook | office365 | custom\n"
	       "  email = me@outlook.com\n"
	       "  oauth_client_id = <your app registration's Application (client) ID>\n"
	       "\n"
	       "Comments (; or #) start only at the start of a line.\n"
	       "\n"
	       "Signing in to Outlook.com / Microsoft 365 (auth = xoauth2): mailkeep ships no\n"
	       "client ID. Register a public client once in Microsoft Entra (App registrations >\n"
	       "New registration; \"Accounts in any organizational directory and personal\n"
	       "Microsoft accounts\"; Authentication > Allow public client flows = Yes; API\n"
	       "permissions, delegated: offline_access, IMAP.AccessAsUser.All,\n"
	       "POP.AccessAsUser.All, SMTP.Send; no secret), set oauth_client_id to its\n"
	       "Application (client) ID, then run `mailkeep login ACCOUNT`.\n"
	       "\n"
	       "Every key, its default and the presets: man 5 mailkeep.conf\n");
}

static int cmd_check_config(const struct mk_cli *cli, int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		printf("usage: mailkeep [-c FILE] check-config\n"
		       "Reads the configuration and prints the resolved accounts, secrets masked.\n");
		return MK_EXIT_OK;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: mailkeep [-c FILE] check-config\n");
		return MK_EXIT_USAGE;
	}
	struct mk_config *cfg = NULL;
	int ex = mk_cli_load_config(cli, &cfg);
	if (ex != 0)
		return ex;
	mk_config_dump(cfg, stdout);
	if (cfg->n_accounts == 0)
		fprintf(stderr, "mailkeep: warning: %s defines no [account NAME] section\n", cfg->path);
	mk_config_free(&cfg);
	return MK_EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct mk_cli cli = {0};
	int verbose = 0;
	/* A peer that closes while we write (a server dropping us mid-DATA,
	 * an IMAP server gone away) must be an EPIPE error, not death. */
	signal(SIGPIPE, SIG_IGN);
	/* Installed as mailkeep-sendmail (a symlink), or linked as sendmail,
	 * the program is `mailkeep sendmail`: MUAs and cron call it with
	 * sendmail's options only, so none of ours are parsed. */
	const char *base = argc > 0 && argv[0] != NULL ? strrchr(argv[0], '/') : NULL;
	base = base != NULL ? base + 1 : argc > 0 && argv[0] != NULL ? argv[0] : "";
	if (strcmp(base, "mailkeep-sendmail") == 0 || strcmp(base, "sendmail") == 0) {
		mk_log_set_level(MK_LOG_WARN);
		int ex = mk_cli_sendmail(&cli, argc, argv);
		mk_cli_tls_cache_free();
		return ex;
	}
	int ch;
	/* '+': stop at the first non-option (the command has its own options) */
	while ((ch = getopt_long(argc, argv, "+c:vqVh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			cli.config_path = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case 'q':
			cli.quiet = true;
			break;
		case 'V':
			printf("mailkeep %s\n", MK_VERSION);
			return MK_EXIT_OK;
		case 'h':
			usage(stdout);
			return MK_EXIT_OK;
		default:
			usage(stderr);
			return MK_EXIT_USAGE;
		}
	}
	mk_log_set_level(cli.quiet ? MK_LOG_ERROR : verbose >= 2 ? MK_LOG_DEBUG : verbose == 1 ? MK_LOG_INFO : MK_LOG_WARN);
	if (optind >= argc) {
		usage(stderr);
		return MK_EXIT_USAGE;
	}
	const char *cmd = argv[optind];
	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	if (strcmp(cmd, "help") == 0 && sub_argc > 1 && strcmp(sub_argv[1], "config") == 0) {
		usage_config();
		return MK_EXIT_OK;
	}
	static char help_opt[] = "--help";
	char *help_argv[3] = {NULL, help_opt, NULL};
	if (strcmp(cmd, "help") == 0 && sub_argc > 1 && strcmp(sub_argv[1], "help") != 0) {
		/* `mailkeep help sync` is `mailkeep sync --help` */
		cmd = sub_argv[1];
		help_argv[0] = sub_argv[1];
		sub_argc = 2;
		sub_argv = help_argv;
	} else if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return MK_EXIT_OK;
	}
	if (strcmp(cmd, "version") == 0) {
		printf("mailkeep %s\n", MK_VERSION);
		return MK_EXIT_OK;
	}
	if (strcmp(cmd, "check-config") == 0)
		return cmd_check_config(&cli, sub_argc, sub_argv);
	static const struct {
		const char *name;
		int (*fn)(const struct mk_cli *cli, int argc, char **argv);
	} cmds[] = {
		{"folders", mk_cli_folders}, {"sync", mk_cli_sync},     {"ls", mk_cli_ls},
		{"cat", mk_cli_cat},         {"stats", mk_cli_stats},   {"verify", mk_cli_verify},
		{"export", mk_cli_export},   {"run", mk_cli_run},       {"status", mk_cli_status},
		{"metrics", mk_cli_metrics},
		/* issue 5: the outbox */
		{"send", mk_cli_send},       {"sendmail", mk_cli_sendmail}, {"outbox", mk_cli_outbox},
		{"login", mk_cli_login},     {"token", mk_cli_token}, /* issue 6 */
		{"init", mk_cli_init}, /* issue 9 */
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(cmd, cmds[i].name) == 0) {
			int ex = cmds[i].fn(&cli, sub_argc, sub_argv);
			mk_cli_tls_cache_free();
			return ex;
		}
	}
	fprintf(stderr, "mailkeep: unknown command \"%s\" (see `mailkeep help`)\n", cmd);
	return MK_EXIT_USAGE;
}
