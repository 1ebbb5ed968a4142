/* SPDX-License-Identifier: MIT */
/*
 * mk_smtp.h - the sans-I/O SMTP submission client core (RFC 5321, RFC 6409
 * submission, RFC 3207 STARTTLS, RFC 4954 AUTH, RFC 2920 PIPELINING,
 * RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 3463/2034
 * enhanced status codes).
 *
 * Same shape as the POP3 core (mk_pop3.h): it never reads or writes a
 * socket, never reads the clock and never calls back. Bytes go in with
 * mk_smtp_client_feed(), events come out of mk_smtp_client_next_event(),
 * bytes to send come out of mk_smtp_client_output(). Results do not depend
 * on how the input is split.
 *
 * Replies are matched to commands in order. A reply may span several lines
 * ("250-..." continued, "250 ..." last); the core joins them (bounded by
 * MK_SMTP_REPLY_MAX) and delivers one REPLY event per command.
 *
 * Pipelining (RFC 2920): MAIL, RCPT and DATA are released together when
 * the server advertised PIPELINING; otherwise one command at a time. EHLO,
 * STARTTLS, AUTH (and its continuation lines), the message data and QUIT
 * are barriers: nothing after them is released before their reply.
 * Never pipelined across STARTTLS or AUTH (RFC 2920 §3.1).
 *
 * STARTTLS: after the 220 reply to STARTTLS any further byte received in
 * clear is MK_EPROTO (an injection attack); capabilities learned before
 * TLS are forgotten by mk_smtp_client_tls_started() (RFC 3207 §4.2) and
 * the owner sends EHLO again.
 *
 * AUTH is refused (MK_ESTATE) until the owner declared TLS active: a
 * credential never goes out in clear, whatever the server says.
 *
 * AUTH is a generic SASL exchange: "AUTH <mech>[ <initial response>]";
 * each 334 arrives as an AUTH_CHALLENGE event (the challenge base64-decoded;
 * on decode failure the raw text); the owner answers with
 * mk_smtp_client_auth_respond() (raw bytes, the core base64-encodes; an
 * empty response sends an empty line) or mk_smtp_client_auth_cancel()
 * ("*"). The final 235/5xx arrives as the REPLY to AUTH. For XOAUTH2 the
 * owner submits AUTH without an initial response and answers the first
 * (empty) 334 with the token (two steps, as Outlook requires). Response
 * lines up to MK_LIMIT_SASL_LINE (tokens of 16 KiB must fit).
 *
 * DATA: after the REPLY to DATA with code 354 the core is in the DATA_BODY
 * state; the owner streams the message with mk_smtp_client_data_write()
 * (CRLF normalisation -- a bare LF or bare CR becomes CRLF -- and
 * dot-stuffing done on the fly, across call boundaries) and ends it with
 * mk_smtp_client_data_end(), which makes sure the body ends with CRLF and
 * appends ".\r\n". The reply to the final dot arrives as a REPLY event with
 * cmd MK_SMTP_CMD_DATA_END. Output is bounded: data_write accepts at most
 * as many bytes as fit below MK_SMTP_OUT_MAX and says how many it took, so
 * the owner writes more after mk_smtp_client_output_done().
 *
 * Limits (hostile server): a reply line over MK_SMTP_LINE_MAX, a reply of
 * more than MK_SMTP_REPLY_LINES lines, a malformed code, or a reply with no
 * command waiting (except a 421 which is delivered as an event with cmd
 * MK_SMTP_CMD_NONE and ends the session) is MK_EPROTO / MK_ETOOBIG.
 */
#ifndef MK_SMTP_H
#define MK_SMTP_H

#include "mk_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 §4.5.3.1.5: reply lines 512 octets; allow slack for real
 * servers' long texts, no more. */
#define MK_SMTP_LINE_MAX 2048
#define MK_SMTP_REPLY_LINES 64          /* lines in one reply (EHLO lists) */
#define MK_SMTP_REPLY_MAX (16 * 1024)   /* joined text of one reply */
#define MK_SMTP_CMD_MAX 512             /* RFC 5321 §4.5.3.1.4 (AUTH lines excepted) */
#define MK_SMTP_MAX_PENDING 256         /* MAIL + up to 254 RCPT + DATA */
#define MK_SMTP_OUT_MAX (256 * 1024)    /* queued output, data included */

enum mk_smtp_cmd_kind {
	MK_SMTP_CMD_NONE = 0, /* an unsolicited 421 */
	MK_SMTP_CMD_GREETING, /* the 220 greeting (reply events only) */
	MK_SMTP_CMD_EHLO,     /* arg: domain or address literal */
	MK_SMTP_CMD_HELO,     /* arg (fallback when EHLO gets 500/502) */
	MK_SMTP_CMD_STARTTLS,
	MK_SMTP_CMD_AUTH,     /* mech; initial/initial_len: initial response (raw, NULL: none) */
	MK_SMTP_CMD_MAIL,     /* arg: reverse-path address without <>, "" for null;
			       * size (0: omit) adds SIZE= when offered; body_8bit adds
			       * BODY=8BITMIME when offered; smtputf8 adds SMTPUTF8
			       * (MK_ENOTSUP from submit when not offered) */
	MK_SMTP_CMD_RCPT,     /* arg: forward-path address without <> */
	MK_SMTP_CMD_DATA,     /* reply 354 -> DATA_BODY state */
	MK_SMTP_CMD_DATA_END, /* reply events only: the reply to the final "." */
	MK_SMTP_CMD_RSET,
	MK_SMTP_CMD_NOOP,
	MK_SMTP_CMD_QUIT,
};

struct mk_smtp_cmd {
	enum mk_smtp_cmd_kind kind;
	const char *arg;
	const char *mech;
	const uint8_t *initial;
	size_t initial_len;
	uint64_t size;
	bool body_8bit;
	bool smtputf8;
};

struct mk_smtp_reply {
	int code;          /* 200..599 */
	char enh[16];      /* enhanced status code "5.2.252", "" when absent */
	const char *text;  /* every line's text (code and enhanced code removed),
			    * joined with '\n', NUL-terminated */
	unsigned lines;
};

enum mk_smtp_event_kind {
	MK_SMTP_EV_REPLY = 1,      /* cmd, reply (also the greeting: cmd GREETING) */
	MK_SMTP_EV_AUTH_CHALLENGE, /* a 334 during AUTH: challenge (decoded) */
	MK_SMTP_EV_STARTTLS_READY, /* 220 to STARTTLS: the owner starts TLS now */
};

struct mk_smtp_event {
	enum mk_smtp_event_kind kind;
	enum mk_smtp_cmd_kind cmd;
	struct mk_smtp_reply reply;
	struct mk_slice challenge;
};

enum mk_smtp_state {
	MK_SMTP_STATE_GREETING = 0,
	MK_SMTP_STATE_READY,      /* commands may be submitted */
	MK_SMTP_STATE_STARTTLS,   /* 220 to STARTTLS received: nothing more may arrive in clear */
	MK_SMTP_STATE_AUTH,       /* AUTH exchange in progress */
	MK_SMTP_STATE_DATA_BODY,  /* 354 received: data_write/data_end */
	MK_SMTP_STATE_QUIT,       /* 221 received, or the greeting was not 220 */
	MK_SMTP_STATE_FAILED,
};

struct mk_smtp_ehlo {
	bool known;
	bool pipelining, starttls, eightbitmime, smtputf8, chunking, dsn, enhancedstatuscodes, binarymime;
	uint64_t size;           /* SIZE parameter; 0: none or unlimited */
	char auth[256];          /* the AUTH mechanisms, space-separated, upper case */
	bool size_offered;       /* SIZE advertised (with or without a number) */
};

/* A command in the in-order queue (replies are matched to these). */
struct mk_smtp_pending {
	enum mk_smtp_cmd_kind kind;
	size_t len;    /* bytes of the command in `queued` while not released */
	bool released; /* its bytes moved to `out` */
	bool waits;    /* released only when everything before it completed */
	bool blocks;   /* nothing after it is released before its reply */
};

/* Embedded by owners; the fields are the core's, read them through the
 * accessors below. */
struct mk_smtp_client {
	enum mk_smtp_state state;
	struct mk_buf in;      /* received, not yet framed */
	size_t in_off;
	struct mk_buf out;     /* released bytes to send (may hold credentials: wiped) */
	struct mk_buf queued;  /* commands not yet released (may hold credentials: wiped) */
	struct mk_buf text;    /* the joined text of the reply being read / delivered */
	struct mk_buf chal;    /* the decoded AUTH challenge */
	struct mk_smtp_pending pending[MK_SMTP_MAX_PENDING];
	unsigned n_pending;
	/* the reply being assembled (it may span several feeds) */
	int r_code;
	unsigned r_lines;
	char r_enh[16];
	bool r_nocmd;      /* no command waiting: only a 421 may be read */
	bool delivered;    /* an event points into text/chal: reset on the next call */
	bool tls_active;
	bool chal_waiting; /* an AUTH_CHALLENGE awaits auth_respond/auth_cancel */
	unsigned dot_state; /* mk_smtp_dot_encode state of the message being sent */
	struct mk_smtp_ehlo ehlo;
	int err;
	const char *error;
	char errbuf[200];
};

void mk_smtp_client_init(struct mk_smtp_client *c);
/* Frees everything, wiping buffers that may hold secrets; idempotent. */
void mk_smtp_client_cleanup(struct mk_smtp_client *c);

/* Takes all of `n` bytes. Returns: 0, MK_ETOOBIG (unconsumed input over
 * the limit), MK_EPROTO (bytes after the 220 to STARTTLS, or after a failure). */
int mk_smtp_client_feed(struct mk_smtp_client *c, const uint8_t *p, size_t n);

/* Pulls the next event. Returns 1 (event in *ev_r, valid until the next
 * call into the core), 0 (need more input), or <0: MK_EPROTO (malformed
 * reply, a reply with no command waiting, data after STARTTLS's 220),
 * MK_ETOOBIG (a line or reply over its limit). mk_smtp_client_error()
 * says what; an error is final. */
int mk_smtp_client_next_event(struct mk_smtp_client *c, struct mk_smtp_event *ev_r);

/* Queues a command. Returns 0; MK_ESTATE (not valid now: AUTH before TLS
 * is active, anything but data in DATA_BODY, STARTTLS with TLS already
 * on, anything after QUIT/STARTTLS's 220); MK_EINVAL (CR, LF or NUL or '<'
 * '>' in an argument, command longer than MK_SMTP_CMD_MAX); MK_ENOTSUP
 * (SMTPUTF8 asked and not offered); MK_ETOOBIG (too many pending). */
int mk_smtp_client_submit(struct mk_smtp_client *c, const struct mk_smtp_cmd *cmd);

/* AUTH continuation: answers the last AUTH_CHALLENGE. Returns 0, MK_ESTATE
 * (no challenge waiting), MK_ETOOBIG (encoded line over MK_LIMIT_SASL_LINE). */
int mk_smtp_client_auth_respond(struct mk_smtp_client *c, const uint8_t *p, size_t n);
int mk_smtp_client_auth_cancel(struct mk_smtp_client *c);

/* DATA_BODY: stuffs and queues up to `n` bytes; *taken_r says how many
 * (fewer when the output is near MK_SMTP_OUT_MAX; 0 means drain the output
 * first). Returns 0 or MK_ESTATE. */
int mk_smtp_client_data_write(struct mk_smtp_client *c, const uint8_t *p, size_t n, size_t *taken_r);
/* Ends the message ("\r\n." as needed). Returns 0 or MK_ESTATE. */
int mk_smtp_client_data_end(struct mk_smtp_client *c);

/* Bytes to send now; valid until the next call into the core. */
struct mk_slice mk_smtp_client_output(const struct mk_smtp_client *c);
/* `n` bytes went to the transport; they are wiped from memory. */
void mk_smtp_client_output_done(struct mk_smtp_client *c, size_t n);

/* The owner finished the TLS upgrade (or connected with implicit TLS):
 * EHLO capabilities learned in clear are forgotten (RFC 3207 §4.2). */
void mk_smtp_client_tls_started(struct mk_smtp_client *c);

const struct mk_smtp_ehlo *mk_smtp_client_ehlo(const struct mk_smtp_client *c);
/* True when the EHLO AUTH list has `mech` (case-insensitive). */
bool mk_smtp_client_has_auth(const struct mk_smtp_client *c, const char *mech);
enum mk_smtp_state mk_smtp_client_state(const struct mk_smtp_client *c);
/* Commands still waiting for their reply. */
unsigned mk_smtp_client_pending(const struct mk_smtp_client *c);
const char *mk_smtp_client_error(const struct mk_smtp_client *c);
const char *mk_smtp_cmd_name(enum mk_smtp_cmd_kind kind);
/* "5.2.252 SendAsDenied; ..." style one-line rendering of a reply into buf
 * ("554 5.2.252 text", lines joined by " / "), truncated to `n`. */
void mk_smtp_reply_format(const struct mk_smtp_reply *r, char *buf, size_t n);

/* Streaming dot-stuffing + CRLF normalisation, usable on its own (the
 * core uses it for DATA; tests and the fuzzer round-trip it). `state`
 * starts at 0 (beginning of a line). Appends the encoded form of p[0..n)
 * to out. Returns 0 or MK_ETOOBIG (out's max). */
int mk_smtp_dot_encode(unsigned *state, const uint8_t *p, size_t n, struct mk_buf *out);
/* Appends what ends the data: CRLF if the last line was not ended, then ".\r\n". */
int mk_smtp_dot_finish(unsigned *state, struct mk_buf *out);

#endif
