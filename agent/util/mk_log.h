/* SPDX-License-Identifier: MIT */
/*
 * mk_log.h - one logging call for the whole program.
 *
 * Lines go to stderr as "mailkeep[account/mailbox#conn]: LEVEL CAT: text",
 * or with sd-daemon "<N>" priority prefixes when stderr is the journal
 * (JOURNAL_STREAM set and naming stderr's device and inode); on a terminal
 * the level words are coloured unless NO_COLOR is set or TERM is "dumb". Callers must never pass secrets: traces of protocol
 * lines go through mk_log_redact_line() first.
 */
#ifndef MK_LOG_H
#define MK_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum mk_log_level {
	MK_LOG_ERROR = 0,
	MK_LOG_WARN,
	MK_LOG_INFO,
	MK_LOG_DEBUG,
	MK_LOG_TRACE,
};

enum mk_log_cat {
	MK_LOG_CAT_MAIN = 0,
	MK_LOG_CAT_NET,
	MK_LOG_CAT_TLS,
	MK_LOG_CAT_SYNC,
	MK_LOG_CAT_STORE,
	MK_LOG_CAT_SCHED,
	MK_LOG_CAT_CFG,
	MK_LOG_CAT_OAUTH,
	MK_LOG_CAT_PROTO,
};

struct mk_log_ctx {
	const char *account; /* may be NULL */
	const char *mailbox; /* may be NULL */
	unsigned conn_id;    /* 0: none */
};

void mk_log_set_level(enum mk_log_level level);
/* Detects again where stderr goes (journal, terminal, other), from
 * JOURNAL_STREAM, NO_COLOR, TERM and stderr itself; mk_log() does it on
 * its first line. Call after redirecting stderr. */
void mk_log_reset_output(void);
/* True when lines carry "<N>" journal priorities. */
bool mk_log_to_journal(void);
enum mk_log_level mk_log_get_level(void);
static inline bool mk_log_enabled(enum mk_log_level level)
{
	return level <= mk_log_get_level();
}
/* Parses "error|warn|info|debug|trace". Returns: 0, MK_EINVAL. */
int mk_log_level_parse(const char *s, enum mk_log_level *level_r);

void mk_log(enum mk_log_level level, enum mk_log_cat cat, const struct mk_log_ctx *ctx,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Copies a protocol line for a trace into out (size outsz, always
 * NUL-terminated), hiding credentials: IMAP LOGIN/AUTHENTICATE arguments,
 * POP3 PASS/AUTH, SMTP AUTH, and bare SASL continuation lines (anything
 * sent while `in_sasl`). Control characters are escaped. */
void mk_log_redact_line(const char *line, size_t len, bool in_sasl, char *out, size_t outsz);

#endif
