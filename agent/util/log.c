/* SPDX-License-Identifier: MIT */
/*
 * log.c - mk_log and protocol-line redaction.
 *
 * Where a line goes decides its form, detected once (mk_log_reset_output()
 * detects again): when stderr is the journal (JOURNAL_STREAM names its
 * device and inode, as systemd sets it), each line starts with its
 * sd-daemon(3) priority "<N>" so that the journal records the level; on a
 * terminal, without NO_COLOR and with a TERM other than "dumb", the words
 * "error" and "warning" are coloured; anywhere else lines are plain text.
 * A JOURNAL_STREAM that does not match stderr (inherited by a child whose
 * stderr was redirected) is ignored, as sd_journal_stream_fd(3) asks.
 */
#include "mk_log.h"
#include "mk_err.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static enum mk_log_level cur_level = MK_LOG_WARN;
static int journal = -1; /* -1: not detected yet */
static bool colour;

static const char *const level_names[] = {"error", "warning", "info", "debug", "trace"};
static const char *const cat_names[] = {"main", "net", "tls", "sync", "store", "sched", "cfg", "oauth", "proto"};

/* "DEV:INO" in decimal, as systemd writes it. */
static bool journal_matches(const char *v, int fd)
{
	char *end;
	errno = 0;
	unsigned long long dev = strtoull(v, &end, 10);
	if (end == v || *end != ':' || errno != 0)
		return false;
	const char *p = end + 1;
	unsigned long long ino = strtoull(p, &end, 10);
	if (end == p || *end != '\0' || errno != 0)
		return false;
	struct stat st;
	if (fstat(fd, &st) != 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void mk_log_reset_output(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	journal = v != NULL && journal_matches(v, STDERR_FILENO);
	const char *nc = getenv("NO_COLOR");
	const char *term = getenv("TERM");
	colour = !journal && isatty(STDERR_FILENO) && (nc == NULL || nc[0] == '\0') &&
		 (term == NULL || strcmp(term, "dumb") != 0);
}

bool mk_log_to_journal(void)
{
	if (journal < 0)
		mk_log_reset_output();
	return journal == 1;
}

void mk_log_set_level(enum mk_log_level level)
{
	cur_level = level;
}

enum mk_log_level mk_log_get_level(void)
{
	return cur_level;
}

int mk_log_level_parse(const char *s, enum mk_log_level *level_r)
{
	static const char *const names[] = {"error", "warn", "info", "debug", "trace"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(s, names[i]) == 0) {
			*level_r = (enum mk_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*level_r = MK_LOG_WARN;
		return 0;
	}
	return MK_EINVAL;
}

void mk_log(enum mk_log_level level, enum mk_log_cat cat, const struct mk_log_ctx *ctx,
	    const char *fmt, ...)
{
	if (!mk_log_enabled(level))
		return;
	if (journal < 0)
		mk_log_reset_output();
	char line[2048];
	size_t off = 0;
	int n;
	if (journal) {
		/* sd-daemon(3) priorities: err=3 warning=4 info=6 debug=7 */
		static const int prio[] = {3, 4, 6, 7, 7};
		n = snprintf(line, sizeof(line), "<%d>", prio[level]);
		off = n > 0 ? (size_t)n : 0;
	}
	n = snprintf(line + off, sizeof(line) - off, "mailkeep");
	off += n > 0 ? (size_t)n : 0;
	if (ctx != NULL && (ctx->account != NULL || ctx->conn_id != 0)) {
		n = snprintf(line + off, sizeof(line) - off, "[%s%s%s", ctx->account ? ctx->account : "",
			     ctx->mailbox ? "/" : "", ctx->mailbox ? ctx->mailbox : "");
		off += n > 0 ? (size_t)n : 0;
		if (ctx->conn_id != 0 && off < sizeof(line)) {
			n = snprintf(line + off, sizeof(line) - off, "#%u", ctx->conn_id);
			off += n > 0 ? (size_t)n : 0;
		}
		if (off < sizeof(line)) {
			n = snprintf(line + off, sizeof(line) - off, "]");
			off += n > 0 ? (size_t)n : 0;
		}
	}
	if (off < sizeof(line)) {
		/* bold red, bold yellow */
		if (level <= MK_LOG_WARN && colour)
			n = snprintf(line + off, sizeof(line) - off, ": \033[1;%dm%s\033[0m: ",
				     level == MK_LOG_ERROR ? 31 : 33, level_names[level]);
		else if (level <= MK_LOG_WARN)
			n = snprintf(line + off, sizeof(line) - off, ": %s: ", level_names[level]);
		else
			n = snprintf(line + off, sizeof(line) - off, ": %s %s: ", level_names[level],
				     cat_names[cat]);
		off += n > 0 ? (size_t)n : 0;
	}
	if (off < sizeof(line)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(line + off, sizeof(line) - off, fmt, ap);
		va_end(ap);
	}
	fprintf(stderr, "%s\n", line);
}

/* Case-insensitive "word followed by space or end" at p. */
static bool word_at(const char *p, size_t len, const char *word)
{
	size_t wl = strlen(word);
	if (len < wl || strncasecmp(p, word, wl) != 0)
		return false;
	return len == wl || p[wl] == ' ';
}

void mk_log_redact_line(const char *line, size_t len, bool in_sasl, char *out, size_t outsz)
{
	MK_ASSERT(outsz > 0);
	/* strip CRLF */
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	size_t keep = len; /* bytes shown verbatim */
	bool hidden = false;
	if (in_sasl) {
		keep = 0;
		hidden = true;
	} else {
		/* Skip an IMAP tag: "A12 LOGIN ..." */
		size_t i = 0;
		const char *cmd = line;
		size_t cmdlen = len;
		const char *sp = memchr(line, ' ', len);
		if (sp != NULL) {
			i = (size_t)(sp - line) + 1;
			cmd = line + i;
			cmdlen = len - i;
		}
		static const char *const secret_cmds[] = {"LOGIN", "AUTHENTICATE", "AUTH", "PASS"};
		for (size_t k = 0; k < sizeof(secret_cmds) / sizeof(secret_cmds[0]); k++) {
			size_t at; /* where the command word starts: 0, or after an IMAP tag */
			if (word_at(line, len, secret_cmds[k]))
				at = 0;
			else if (sp != NULL && word_at(cmd, cmdlen, secret_cmds[k]))
				at = i;
			else
				continue;
			keep = at + strlen(secret_cmds[k]);
			/* keep the mechanism name for AUTH/AUTHENTICATE */
			if ((k == 1 || k == 2) && len - keep > 1) {
				const char *mech = line + keep;
				size_t rest = len - keep;
				const char *end = memchr(mech + 1, ' ', rest - 1);
				keep += end ? (size_t)(end - mech) : rest;
			}
			hidden = len > keep;
			break;
		}
	}
	size_t o = 0;
	for (size_t i = 0; i < keep && o + 5 < outsz; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	if (hidden && o + 1 < outsz)
		snprintf(out + o, outsz - o, " <hidden %zu bytes>", len - keep);
}
