/* SPDX-License-Identifier: MIT */
/*
 * main.c - the `mailkeep` command: global options, then a subcommand.
 */
#include "cli.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_log.h"

#include <getopt.h>
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
		"  check-config         read the configuration and print the resolved accounts\n"
		"                       (secrets masked), or FILE:LINE errors\n"
		"  folders [ACCOUNT]    connect (TLS verified), log in, and list the folders\n"
		"  help                 this text\n"
		"\n"
		"options:\n"
		"  -c, --config FILE    configuration file (default: $MAILKEEP_CONFIG, else\n"
		"                       $XDG_CONFIG_HOME/mailkeep/config, else ~/.config/mailkeep/config)\n"
		"  -v, --verbose        more log output (repeat for debug)\n"
		"  -q, --quiet          errors only\n"
		"  -V, --version        print the version\n"
		"  -h, --help           this text\n"
		"\n"
		"exit codes (sysexits.h):\n"
		"  0 ok, 64 usage, 69 unavailable (feature or pass_cmd), 70 internal error,\n"
		"  75 temporary network failure (refused, timeout, DNS), 76 protocol or TLS\n"
		"  failure (certificate not trusted, host name mismatch, old TLS), 77 login\n"
		"  failed or unsafe file permissions, 78 configuration error\n",
		MK_VERSION);
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
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return MK_EXIT_OK;
	}
	if (strcmp(cmd, "version") == 0) {
		printf("mailkeep %s\n", MK_VERSION);
		return MK_EXIT_OK;
	}
	if (strcmp(cmd, "check-config") == 0)
		return cmd_check_config(&cli, sub_argc, sub_argv);
	if (strcmp(cmd, "folders") == 0)
		return mk_cli_folders(&cli, sub_argc, sub_argv);
	fprintf(stderr, "mailkeep: unknown command \"%s\" (see `mailkeep help`)\n", cmd);
	return MK_EXIT_USAGE;
}
