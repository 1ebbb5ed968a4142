/* SPDX-License-Identifier: MIT */
/*
 * cli_init.c - `mailkeep init`: the first run. Writes a commented
 * configuration for one account (outlook, office365 or custom) at the
 * default path or -c FILE, then prints the next steps (login, sync, the
 * systemd user unit).
 *
 * The rules: the file is created 0600 and its missing parent directories
 * 0700; an existing file is never replaced without --force (and then the
 * old one is kept as FILE.bak); the file appears atomically (a temporary
 * file in the same directory, fsync, then link() or rename()), so a crash
 * leaves either nothing or a whole file. init invents no secret and no
 * client ID: what it does not know is written commented out with
 * instructions, and `mailkeep check-config` then names the missing key.
 * The text is parsed with mk_config_parse() before it is written, so init
 * never writes a file with any other error. No network, no store.
 */
#include "cli.h"
#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"
#include "mk_limits.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* What init writes comes from the command line only; these bound it so
 * that every written line stays under MK_LIMIT_CONFIG_LINE. */
#define INIT_VALUE_MAX 150

struct init_opts {
	const char *provider; /* "outlook" | "office365" | "custom" */
	bool provider_guessed;
	const char *email;
	const char *name; /* account name */
	const char *client_id;
	const char *imap_host, *smtp_host;
	const char *pass_cmd;
	bool force;
};

static void usage_init(FILE *f)
{
	fprintf(f,
		"usage: mailkeep [-c FILE] init --email ADDR [--provider outlook|office365|custom]\n"
		"                     [--name ACCOUNT] [--client-id ID] [--imap-host HOST]\n"
		"                     [--smtp-host HOST] [--pass-cmd CMD] [--force]\n"
		"Writes a commented configuration for one account (mode 0600; its directory is\n"
		"created 0700) at FILE, else $MAILKEEP_CONFIG, $XDG_CONFIG_HOME/mailkeep/config or\n"
		"~/.config/mailkeep/config, and prints the next steps.\n"
		"  --provider P      outlook (Outlook.com, Hotmail, Live), office365 (Microsoft 365)\n"
		"                    or custom (any IMAP/SMTP server); default: outlook for\n"
		"                    outlook.com, hotmail.*, live.* and msn.com addresses, else office365\n"
		"  --email ADDR      the mailbox's address\n"
		"  --name ACCOUNT    the account's name (default: personal, work or mail)\n"
		"  --client-id ID    outlook/office365: your app registration's Application (client)\n"
		"                    ID; without it the oauth_client_id line is left for you to fill in\n"
		"  --imap-host HOST  custom: the IMAP server (default: imap.DOMAIN)\n"
		"  --smtp-host HOST  custom: the SMTP submission server (default: smtp.DOMAIN)\n"
		"  --pass-cmd CMD    custom: a command printing the password (e.g. \"pass show mail\");\n"
		"                    without it the pass_cmd line is left for you to fill in\n"
		"  --force           replace an existing file (the old one is kept as FILE.bak)\n"
		"Exit: 0 written, 64 usage, 73 the file exists (without --force) or cannot be written.\n");
}

/* Printable ASCII without blanks (or with them when `spaces`), at most
 * INIT_VALUE_MAX bytes: nothing that could end a line or hide a key. */
static bool value_ok(const char *v, bool spaces)
{
	size_t n = strlen(v);
	if (n == 0 || n > INIT_VALUE_MAX)
		return false;
	for (const char *s = v; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f || (c == ' ' && !spaces) || c == '\t')
			return false;
	}
	/* a leading blank or comment character would change the meaning */
	return v[0] != ' ' && v[0] != ';' && v[0] != '#' && v[n - 1] != ' ';
}

static bool name_ok(const char *s)
{
	if (*s == '\0' || strlen(s) > 64)
		return false;
	for (; *s != '\0'; s++) {
		if (!isalnum((unsigned char)*s) && strchr("._-@+", *s) == NULL)
			return false;
	}
	return true;
}

static bool host_ok(const char *s)
{
	if (!value_ok(s, false))
		return false;
	for (; *s != '\0'; s++) {
		if (!isalnum((unsigned char)*s) && strchr(".-_:", *s) == NULL)
			return false;
	}
	return true;
}

/* Microsoft's consumer domains: Outlook.com accounts. */
static bool consumer_domain(const char *domain)
{
	static const char *const prefixes[] = {"outlook.", "hotmail.", "live.", "msn.com", "passport.com"};
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		if (strncasecmp(domain, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	}
	return false;
}

static void emit_header(struct mk_buf *b, const struct init_opts *o)
{
	char date[32] = "";
	time_t now = time(NULL);
	struct tm tm;
	if (localtime_r(&now, &tm) != NULL)
		strftime(date, sizeof(date), "%Y-%m-%d", &tm);
	mk_buf_printf(b,
		      "# mailkeep configuration, written by `mailkeep init` on %s.\n"
		      "# Every key, its default and the presets: man 5 mailkeep.conf\n"
		      "# Check it with: mailkeep check-config\n"
		      "# Comments start with ; or # at the start of a line only (never after a value).\n"
		      "\n"
		      "[defaults]\n"
		      "# Where the store lives (LMDB with compressed bodies; created 0700).\n"
		      "; store = ~/.local/share/mailkeep\n"
		      "# zlib level for new bodies: 1 is about twice as fast, 6 is the default.\n"
		      "; compress_level = 6\n"
		      "\n"
		      "[account %s]\n"
		      "provider = %s\n"
		      "email = %s\n"
		      "# The login name, when it is not the address:\n"
		      "; user = %s\n",
		      date, o->name, o->provider, o->email, o->email);
}

static void emit_oauth(struct mk_buf *b, const struct init_opts *o)
{
	mk_buf_printf(b,
		      "\n"
		      "# Signing in (auth = xoauth2, the preset). mailkeep ships no client ID: register\n"
		      "# your own app once in Microsoft Entra (https://entra.microsoft.com: App\n"
		      "# registrations > New registration; supported account types: \"Accounts in any\n"
		      "# organizational directory and personal Microsoft accounts\"; Authentication >\n"
		      "# Allow public client flows = Yes; API permissions, delegated: offline_access,\n"
		      "# IMAP.AccessAsUser.All, POP.AccessAsUser.All, SMTP.Send; no secret), and put\n"
		      "# its Application (client) ID here. It may move to [defaults] to serve every\n"
		      "# account. Then run: mailkeep login %s\n",
		      o->name);
	if (o->client_id != NULL)
		mk_buf_printf(b, "oauth_client_id = %s\n", o->client_id);
	else
		mk_buf_printf(b, "; oauth_client_id = 00000000-0000-0000-0000-000000000000\n");
	mk_buf_printf(b,
		      "# Or, instead of oauth_client_id, a command that prints an access token:\n"
		      "; token_cmd = oauth2ms\n"
		      "; token_cmd_cache = 5m\n"
		      "# The tenant: %s (the preset), organizations, or your tenant's ID.\n"
		      "; oauth_tenant = %s\n",
		      strcmp(o->provider, "outlook") == 0 ? "consumers" : "organizations",
		      strcmp(o->provider, "outlook") == 0 ? "consumers" : "organizations");
}

static void emit_custom(struct mk_buf *b, const struct init_opts *o)
{
	mk_buf_printf(b,
		      "auth = plain\n"
		      "\n"
		      "# The password: the first line printed by pass_cmd (run when connecting;\n"
		      "# e.g. pass show mail, secret-tool lookup mail me, gpg -dq ~/.mail.gpg).\n"
		      "# A password = ... line also works, in a file only you can read.\n");
	if (o->pass_cmd != NULL)
		mk_buf_printf(b, "pass_cmd = %s\n", o->pass_cmd);
	else
		mk_buf_printf(b, "; pass_cmd = pass show mail/%s\n", o->email);
	mk_buf_printf(b,
		      "\n"
		      "# The servers (ports and TLS modes shown are the defaults). TLS is always\n"
		      "# verified; starttls is mandatory when chosen.\n"
		      "imap_host = %s\n"
		      "; imap_port = 993\n"
		      "; imap_tls = implicit\n"
		      "smtp_host = %s\n"
		      "; smtp_port = 587\n"
		      "; smtp_tls = starttls\n"
		      "# POP3 instead of (or besides) IMAP: pop3_host, then fetch = pop3 or both.\n"
		      "; pop3_host = pop3.%s\n"
		      "# Trust a private CA besides the system store:\n"
		      "; tls_ca_file = ~/ca.pem\n",
		      o->imap_host, o->smtp_host, strrchr(o->email, '@') + 1);
}

static void emit_common(struct mk_buf *b, const struct init_opts *o)
{
	bool ms = strcmp(o->provider, "custom") != 0;
	mk_buf_printf(b,
		      "\n"
		      "# Which folders to back up: LIST patterns, ! excludes, the last match wins.\n"
		      "; folders = *%s\n"
		      "# Folders the agent (mailkeep run) watches with IMAP IDLE; the others are\n"
		      "# synced every poll_interval.\n"
		      "; idle = INBOX\n"
		      "; poll_interval = 15m\n"
		      "; idle_refresh = 10m\n"
		      "; fetch = imap\n"
		      "; pop3_delete = never\n"
		      "\n"
		      "# Sending (mailkeep send, mailkeep sendmail): limits hold messages back,\n"
		      "# never drop them.\n"
		      "; max_per_minute = %s\n"
		      "; max_per_day = %s\n"
		      "; max_queue_age = 5d\n"
		      "; server_saves_sent = %s\n",
		      ms ? " !Calendar* !Contacts !Tasks !Notes !Journal" : "", ms ? "30" : "0",
		      strcmp(o->provider, "outlook") == 0 ? "300" : ms ? "10000" : "0",
		      ms ? "Sent Items" : "no");
}

/* mkdir -p for the parent directories of `path`, creating what is missing
 * 0700 (the directory holds a file that may name a secret command). */
static int make_parents(const char *path, char **error_r)
{
	char *d = mk_xstrdup(path);
	for (char *p = d + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(d, 0700) < 0 && errno != EEXIST) {
			*error_r = mk_xasprintf("cannot create directory %s: %s", d, strerror(errno));
			mk_free(d);
			return MK_EIO;
		}
		*p = '/';
	}
	mk_free(d);
	return 0;
}

/* Writes buf to `path` atomically. Without `force` an existing file is
 * left alone (returns 1); with it, the old file is kept as PATH.bak.
 * Returns: 0 written, 1 exists, MK_EIO (error_r set). */
static int write_file(const char *path, const char *buf, size_t len, bool force, bool *backed_up_r,
		      char **error_r)
{
	*backed_up_r = false;
	char *tmp = mk_xasprintf("%s.init-%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		*error_r = mk_xasprintf("cannot create %s: %s", tmp, strerror(errno));
		mk_free(tmp);
		return MK_EIO;
	}
	size_t off = 0;
	int err = 0;
	while (off < len) {
		ssize_t w = write(fd, buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			err = errno;
			break;
		}
		off += (size_t)w;
	}
	/* the umask may have taken bits away, never added: still set it */
	if (err == 0 && fchmod(fd, 0600) < 0)
		err = errno;
	if (err == 0 && fsync(fd) < 0)
		err = errno;
	if (close(fd) < 0 && err == 0)
		err = errno;
	int ret = 0;
	if (err != 0) {
		*error_r = mk_xasprintf("cannot write %s: %s", tmp, strerror(err));
		ret = MK_EIO;
	} else if (!force) {
		/* link() fails with EEXIST instead of replacing: no window in
		 * which another file could be overwritten. */
		if (link(tmp, path) < 0) {
			if (errno == EEXIST) {
				ret = 1;
			} else {
				*error_r = mk_xasprintf("cannot create %s: %s", path, strerror(errno));
				ret = MK_EIO;
			}
		}
	} else {
		char *bak = mk_xasprintf("%s.bak", path);
		struct stat st;
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			unlink(bak);
			if (link(path, bak) == 0)
				*backed_up_r = true;
		}
		mk_free(bak);
		if (rename(tmp, path) < 0) {
			*error_r = mk_xasprintf("cannot replace %s: %s", path, strerror(errno));
			ret = MK_EIO;
		}
	}
	unlink(tmp); /* after link(); a no-op after rename() */
	mk_free(tmp);
	if (ret == 0) {
		/* the new name itself must survive a crash */
		char *dir = mk_xstrdup(path);
		char *slash = strrchr(dir, '/');
		if (slash != NULL)
			*(slash == dir ? slash + 1 : slash) = '\0';
		int dfd = open(slash != NULL ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		mk_free(dir);
	}
	return ret;
}

/* The shell-quoted form of `s` for the printed commands (single quotes
 * when it holds anything but a safe set). New string. */
static char *shell_word(const char *s)
{
	bool plain = *s != '\0';
	for (const char *p = s; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && strchr("/._-+@=:,~", *p) == NULL)
			plain = false;
	}
	if (plain)
		return mk_xstrdup(s);
	struct mk_buf b;
	mk_buf_init(&b, 4 * strlen(s) + 3);
	mk_buf_append_str(&b, "'");
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '\'')
			mk_buf_append_str(&b, "'\\''");
		else
			mk_buf_append(&b, p, 1);
	}
	mk_buf_append_str(&b, "'");
	return mk_buf_take(&b, NULL);
}

/* Returns 0 to go on, or the exit code (*done_r: --help was printed). */
static int parse_opts(int argc, char **argv, struct init_opts *o, bool *done_r)
{
	enum { OPT_CLIENT_ID = 256, OPT_IMAP_HOST, OPT_SMTP_HOST, OPT_PASS_CMD };
	static const struct option lopts[] = {
		{"provider", required_argument, NULL, 'p'},
		{"email", required_argument, NULL, 'e'},
		{"name", required_argument, NULL, 'n'},
		{"client-id", required_argument, NULL, OPT_CLIENT_ID},
		{"imap-host", required_argument, NULL, OPT_IMAP_HOST},
		{"smtp-host", required_argument, NULL, OPT_SMTP_HOST},
		{"pass-cmd", required_argument, NULL, OPT_PASS_CMD},
		{"force", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	optind = 1;
	opterr = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, ":p:e:n:fh", lopts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			o->provider = optarg;
			break;
		case 'e':
			o->email = optarg;
			break;
		case 'n':
			o->name = optarg;
			break;
		case OPT_CLIENT_ID:
			o->client_id = optarg;
			break;
		case OPT_IMAP_HOST:
			o->imap_host = optarg;
			break;
		case OPT_SMTP_HOST:
			o->smtp_host = optarg;
			break;
		case OPT_PASS_CMD:
			o->pass_cmd = optarg;
			break;
		case 'f':
			o->force = true;
			break;
		case 'h':
			usage_init(stdout);
			*done_r = true;
			return MK_EXIT_OK;
		case ':':
			fprintf(stderr, "mailkeep: init: %s needs a value\n", argv[optind - 1]);
			return MK_EXIT_USAGE;
		default:
			fprintf(stderr, "mailkeep: init: unknown option %s (see mailkeep init --help)\n",
				argv[optind - 1]);
			return MK_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mailkeep: init: unexpected argument \"%s\" (see mailkeep init --help)\n", argv[optind]);
		return MK_EXIT_USAGE;
	}
	if (o->email == NULL) {
		fprintf(stderr, "mailkeep: init: which mailbox? give --email ADDR (see mailkeep init --help)\n");
		return MK_EXIT_USAGE;
	}
	const char *at = strrchr(o->email, '@');
	if (!value_ok(o->email, false) || at == NULL || at == o->email || strchr(at + 1, '.') == NULL) {
		fprintf(stderr, "mailkeep: init: bad --email \"%s\": expected an address like me@outlook.com\n",
			o->email);
		return MK_EXIT_USAGE;
	}
	const char *domain = at + 1;
	if (o->provider == NULL) {
		o->provider = consumer_domain(domain) ? "outlook" : "office365";
		o->provider_guessed = true;
	}
	if (strcmp(o->provider, "outlook") != 0 && strcmp(o->provider, "office365") != 0 &&
	    strcmp(o->provider, "custom") != 0) {
		fprintf(stderr, "mailkeep: init: bad --provider \"%s\": expected outlook, office365 or custom\n",
			o->provider);
		return MK_EXIT_USAGE;
	}
	bool custom = strcmp(o->provider, "custom") == 0;
	if (o->name == NULL)
		o->name = strcmp(o->provider, "outlook") == 0 ? "personal" : custom ? "mail" : "work";
	if (!name_ok(o->name)) {
		fprintf(stderr, "mailkeep: init: bad --name \"%s\": use at most 64 letters, digits and . _ - @ +\n",
			o->name);
		return MK_EXIT_USAGE;
	}
	if (o->client_id != NULL) {
		bool ok = value_ok(o->client_id, false) && strlen(o->client_id) <= 64;
		for (const char *s = o->client_id; ok && *s != '\0'; s++)
			ok = isalnum((unsigned char)*s) || *s == '-';
		if (!ok) {
			fprintf(stderr, "mailkeep: init: bad --client-id \"%s\": expected an Application (client) ID "
					"such as 0a1b2c3d-...\n",
				o->client_id);
			return MK_EXIT_USAGE;
		}
	}
	if (custom) {
		if (o->client_id != NULL) {
			fprintf(stderr, "mailkeep: init: --client-id is for outlook and office365 (custom accounts "
					"use a password: --pass-cmd)\n");
			return MK_EXIT_USAGE;
		}
		if ((o->imap_host != NULL && !host_ok(o->imap_host)) || (o->smtp_host != NULL && !host_ok(o->smtp_host))) {
			fprintf(stderr, "mailkeep: init: bad --imap-host or --smtp-host: expected a host name\n");
			return MK_EXIT_USAGE;
		}
		if (o->pass_cmd != NULL && !value_ok(o->pass_cmd, true)) {
			fprintf(stderr, "mailkeep: init: bad --pass-cmd: one line of at most %d characters\n",
				INIT_VALUE_MAX);
			return MK_EXIT_USAGE;
		}
		if (!host_ok(domain)) {
			fprintf(stderr, "mailkeep: init: bad --email \"%s\": the domain is not a host name\n", o->email);
			return MK_EXIT_USAGE;
		}
	} else if (o->imap_host != NULL || o->smtp_host != NULL || o->pass_cmd != NULL) {
		fprintf(stderr, "mailkeep: init: --imap-host, --smtp-host and --pass-cmd are for --provider custom "
				"(%s has preset servers and signs in with OAuth)\n",
			o->provider);
		return MK_EXIT_USAGE;
	}
	return 0;
}

int mk_cli_init(const struct mk_cli *cli, int argc, char **argv)
{
	struct init_opts o = {0};
	bool done = false;
	int ex = parse_opts(argc, argv, &o, &done);
	if (ex != 0 || done)
		return ex;
	bool custom = strcmp(o.provider, "custom") == 0;
	const char *domain = strrchr(o.email, '@') + 1;
	char *imap_guess = NULL, *smtp_guess = NULL;
	if (custom && o.imap_host == NULL)
		o.imap_host = imap_guess = mk_xasprintf("imap.%s", domain);
	if (custom && o.smtp_host == NULL)
		o.smtp_host = smtp_guess = mk_xasprintf("smtp.%s", domain);

	struct mk_buf b;
	mk_buf_init(&b, 64 * 1024);
	emit_header(&b, &o);
	if (custom)
		emit_custom(&b, &o);
	else
		emit_oauth(&b, &o);
	emit_common(&b, &o);
	/* The one thing left for the user, if any: the client ID or the
	 * password command. */
	const char *pending = !custom && o.client_id == NULL ? "oauth_client_id"
			      : custom && o.pass_cmd == NULL ? "pass_cmd"
							     : NULL;

	char *path = cli->config_path != NULL ? mk_xstrdup(cli->config_path) : mk_config_default_path();
	char *error = NULL;
	struct mk_config *cfg = NULL;
	int r = mk_config_parse((const char *)b.data, b.len, path, NULL, &cfg, &error);
	mk_config_free(&cfg);
	if (r < 0 && (pending == NULL || error == NULL || strstr(error, pending) == NULL)) {
		/* a bug, or a value the checks above let through */
		fprintf(stderr, "mailkeep: init: the configuration would not be valid, nothing written: %s\n",
			error ? error : mk_strerror(r));
		ex = MK_EXIT_SOFTWARE;
		goto out;
	}
	MK_FREE(&error);

	bool backed_up = false;
	r = make_parents(path, &error);
	if (r == 0)
		r = write_file(path, (const char *)b.data, b.len, o.force, &backed_up, &error);
	if (r == 1) {
		fprintf(stderr,
			"mailkeep: init: %s already exists; not replacing it. Check it with `mailkeep check-config`, "
			"or run init again with --force (the old file is kept as %s.bak)\n",
			path, path);
		ex = MK_EXIT_CANTCREAT;
		goto out;
	}
	if (r < 0) {
		fprintf(stderr, "mailkeep: init: %s\n", error ? error : mk_strerror(r));
		ex = MK_EXIT_CANTCREAT;
		goto out;
	}

	/* The printed commands name -c FILE only when the file is not where
	 * every command (and the systemd unit) looks by default. */
	char *def = mk_config_default_path();
	char *cw = shell_word(path);
	char *copt = strcmp(def, path) == 0 ? mk_xstrdup("") : mk_xasprintf(" -c %s", cw);
	printf("mailkeep: wrote %s (mode 0600): account \"%s\", provider %s%s%s\n", path, o.name, o.provider,
	       o.provider_guessed ? " (guessed from the address; --provider changes it)" : "",
	       backed_up ? "; the old file is now .bak" : "");
	if (imap_guess != NULL && smtp_guess != NULL)
		printf("mailkeep: servers %s and %s are guesses from the address: check them in the file\n",
		       imap_guess, smtp_guess);
	else if (imap_guess != NULL || smtp_guess != NULL)
		printf("mailkeep: server %s is a guess from the address: check it in the file\n",
		       imap_guess != NULL ? imap_guess : smtp_guess);
	printf("\nNext steps:\n");
	unsigned step = 1;
	if (pending != NULL && strcmp(pending, "oauth_client_id") == 0)
		printf("  %u. Register an app in Microsoft Entra (the file says how) and set oauth_client_id\n"
		       "     in %s (or use token_cmd); until then check-config reports it missing.\n",
		       step++, path);
	else if (pending != NULL)
		printf("  %u. Set pass_cmd in %s to a command that prints your password;\n"
		       "     until then check-config reports it missing.\n",
		       step++, path);
	printf("  %u. mailkeep%s check-config\n", step++, copt);
	if (!custom)
		printf("  %u. mailkeep%s login %s   (sign in once, in any browser)\n", step++, copt, o.name);
	printf("  %u. mailkeep%s sync   (the first backup; safe to interrupt)\n", step++, copt);
	printf("  %u. systemctl --user enable --now mailkeep   (the agent, kept running; it returns\n"
	       "     once the first backup is done, or at once with --no-block)\n",
	       step++);
	if (copt[0] != '\0')
		printf("     The unit reads the default file %s; point it at this one with\n"
		       "     `systemctl --user edit mailkeep`: [Service] Environment=\"MAILKEEP_CONFIG=%s\"\n",
		       def, path);
	printf("     (and `loginctl enable-linger $USER` to keep it running while you are logged out)\n");
	mk_free(copt);
	mk_free(cw);
	mk_free(def);
	ex = MK_EXIT_OK;
out:
	mk_free(error);
	mk_free(path);
	mk_free(imap_guess);
	mk_free(smtp_guess);
	mk_buf_cleanup(&b);
	return ex;
}
