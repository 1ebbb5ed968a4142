/* SPDX-License-Identifier: MIT */
/*
 * mk_smtp_msg.h - preparing an RFC 5322 message for submission (pure, no
 * I/O): reads the header block, extracts the envelope, and rewrites the
 * header the way a submission client must:
 *   - recipients from To, Cc, Bcc (and Resent-* is NOT used) when asked
 *     (sendmail -t), as bare addr-specs, parsed per RFC 5322 §3.4 address
 *     lists: display names, quoted strings, comments (nested), groups
 *     ("undisclosed-recipients:;"), angle addresses, obsolete routes
 *     dropped, folded lines; duplicates removed case-insensitively;
 *   - Bcc (all Bcc fields) removed from the header that is sent;
 *   - Date added if missing (RFC 5322 format, local zone offset given by
 *     the caller), Message-ID added if missing ("<random@domain>");
 *   - the From address(es) reported (for the check against the account);
 *   - whether the message needs 8BITMIME (any byte >= 0x80 in header or
 *     body) and SMTPUTF8 (a non-ASCII byte in an envelope address);
 *   - line endings of the header normalised to CRLF.
 * The body is not touched here (the caller streams it; the SMTP core
 * normalises line endings and dot-stuffs). Bounded: a header block over
 * MK_SMTP_MSG_HEADER_MAX, more than MK_SMTP_MSG_RCPT_MAX recipients, or an
 * address over 320 octets is an error naming what and where ("line 12:
 * unterminated quoted string in To").
 */
#ifndef MK_SMTP_MSG_H
#define MK_SMTP_MSG_H

#include "mk_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MK_SMTP_MSG_HEADER_MAX (1024 * 1024)
#define MK_SMTP_MSG_RCPT_MAX 1000
#define MK_SMTP_MSG_ADDR_MAX 320

struct mk_smtp_msg_opts {
	bool rcpt_from_header;   /* -t: collect To/Cc/Bcc */
	int64_t now;             /* unix seconds, for Date */
	int tz_minutes;          /* local offset east of UTC, for Date */
	const char *msgid_domain; /* right side of a generated Message-ID */
	const uint8_t *random;    /* 16 random bytes for the Message-ID */
};

struct mk_smtp_msg {
	struct mk_buf header;    /* the header to send, CRLF line ends, ending with the empty line "\r\n" */
	size_t body_offset;      /* where the body starts in the input */
	char **rcpt;             /* collected recipients (with -t), mk_alloc'd */
	unsigned n_rcpt;
	char **from;             /* addresses in From (usually one) */
	unsigned n_from;
	char sender[MK_SMTP_MSG_ADDR_MAX + 1]; /* Sender: address or "" */
	char message_id[1000];   /* the Message-ID sent (original or generated), with <> */
	bool added_date, added_message_id, removed_bcc;
	bool header_8bit;        /* non-ASCII byte in the header */
	/* Added to the contract: a non-ASCII byte in a From, Sender or
	 * collected recipient address (the envelope needs SMTPUTF8). */
	bool smtputf8;
	char error[300];
};

/* Finds the end of the header block in p[0..n): returns the offset of the
 * first body byte (after the empty line, CRLF or LF), or -1 when no empty
 * line was seen yet (feed more), or MK_ETOOBIG past MK_SMTP_MSG_HEADER_MAX.
 * A message with no body and no empty line: the caller passes eof=true and
 * the whole input is the header. */
long mk_smtp_msg_header_end(const uint8_t *p, size_t n, bool eof);

void mk_smtp_msg_init(struct mk_smtp_msg *m);
void mk_smtp_msg_cleanup(struct mk_smtp_msg *m);
/* Parses the header block p[0..n) (as found by mk_smtp_msg_header_end).
 * p may also be the whole message: the header is then found with
 * mk_smtp_msg_header_end(p, n, true), and m->body_offset tells where the
 * body starts. m must have been initialised; a second call starts over.
 * Date and Message-ID, when added, go last, before the empty line.
 * Bcc and Resent-Bcc fields are always left out of m->header (Resent-*
 * fields are never used for recipients). Recipient addresses come out in
 * canonical SMTP form ("john"@x becomes john@x; "a b".c@x becomes
 * "a b.c"@x), each passing mk_smtp_msg_addr_valid.
 * Returns 0; MK_EINVAL (malformed: m->error says what and on which line;
 * a header with no From; -t and no recipient; a second From, Sender, Date
 * or Message-ID field); MK_ETOOBIG (header block over the limit, more than
 * MK_SMTP_MSG_RCPT_MAX recipients, an address over MK_SMTP_MSG_ADDR_MAX).
 * On error m->header and m->rcpt are left empty. */
int mk_smtp_msg_prepare(struct mk_smtp_msg *m, const uint8_t *p, size_t n, const struct mk_smtp_msg_opts *opts);

/* Parses one RFC 5322 address-list (the value of To/Cc/Bcc/From, unfolded)
 * and appends each addr-spec to *list (mk_alloc'd strings). An address
 * already in *list (mk_smtp_msg_addr_equal) is not appended again; at most
 * MK_SMTP_MSG_RCPT_MAX entries. *list may hold entries from an earlier
 * call (on error, those appended so far stay: free with
 * mk_smtp_msg_free_list). Returns 0, MK_EINVAL (error says what),
 * MK_ETOOBIG (too many addresses, an address over MK_SMTP_MSG_ADDR_MAX).
 * Used by prepare and for
 * recipients given on the command line ("Name <a@b>" accepted there too). */
int mk_smtp_msg_parse_addresses(const char *value, size_t n, char ***list, unsigned *n_list, char *error,
				size_t errsz);
/* True when the address is a plausible addr-spec: local@domain, no
 * spaces/controls, local part quoted or dot-atom, length <= 320. */
bool mk_smtp_msg_addr_valid(const char *addr);
/* Case-insensitive domain, case-sensitive local part comparison (RFC 5321
 * §2.4), but local parts compared case-insensitively as Outlook does. */
bool mk_smtp_msg_addr_equal(const char *a, const char *b);
void mk_smtp_msg_free_list(char ***list, unsigned *n);

/* Formats an RFC 5322 date ("Sun, 06 Dec 2026 09:00:00 +0100"). */
void mk_smtp_msg_format_date(int64_t t, int tz_minutes, char *buf, size_t n);

#endif
