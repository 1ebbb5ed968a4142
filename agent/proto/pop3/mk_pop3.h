/* SPDX-License-Identifier: MIT */
/*
 * mk_pop3.h - the sans-I/O POP3 client core (RFC 1939, RFC 2449 CAPA and
 * PIPELINING, RFC 2595 STLS, RFC 5034 AUTH).
 *
 * Like the IMAP core (mk_imap.h) it never reads or writes a socket, never
 * reads the clock and never calls back: bytes go in with
 * mk_pop3_client_feed(), events come out of mk_pop3_client_next_event(),
 * bytes to send come out of mk_pop3_client_output(). Results do not depend
 * on how the input is split.
 *
 * Responses are matched to commands in order (POP3 has no tags). A
 * multi-line response (CAPA, UIDL, LIST, RETR, TOP) is read as a small
 * state machine: listing lines are framed one at a time (bounded by
 * MK_POP3_LINE_MAX), message text is streamed as BODY_CHUNK events with
 * dot-unstuffing done on the fly, so a body is never held whole.
 *
 * Commands are sent one at a time unless the server advertised PIPELINING;
 * STLS, USER, PASS and AUTH are never pipelined with what follows.
 *
 * AUTH is a generic SASL exchange held inside the core: "AUTH <mech>", then
 * one response line per "+" continuation (mk_pop3_client_submit builds the
 * response). AUTH_PLAIN builds its own response; the generic AUTH takes a
 * mechanism name and the raw response built by the owner (mk_sasl), always
 * in two steps -- Outlook refuses a one-line AUTH XOAUTH2 (OUTLOOK.md
 * §1.2) -- and up to MK_LIMIT_SASL_LINE long (RFC 2449's 255-octet command
 * limit does not apply to SASL responses; Microsoft tokens pass 4 KiB).
 */
#ifndef MK_POP3_H
#define MK_POP3_H

#include "mk_buf.h"
#include "mk_caps.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 2449 §4: responses are at most 512 octets including CRLF. Servers
 * overshoot (long greetings, RESP-CODES), so allow slack, but no more: a
 * longer status or listing line is hostile (MK_ETOOBIG). */
#define MK_POP3_LINE_MAX 2048
/* RFC 2449 §4: commands at most 255 octets (AUTH responses excepted). */
#define MK_POP3_CMD_MAX 255
/* RFC 1939 §7: a UIDL is 1 to 70 characters in 0x21..0x7E. */
#define MK_POP3_UIDL_MAX 70
/* Commands queued at once (pipelined or waiting). */
#define MK_POP3_MAX_PENDING 64
#define MK_POP3_MAX_CAPS 32
/* Queued output (commands not yet sent). */
#define MK_POP3_OUT_MAX (256 * 1024)

enum mk_pop3_cmd_kind {
	MK_POP3_CMD_CAPA = 0,
	MK_POP3_CMD_STLS,
	MK_POP3_CMD_USER, /* a: user name */
	MK_POP3_CMD_PASS, /* a: password */
	MK_POP3_CMD_AUTH_PLAIN, /* a: user, b: password (two steps: AUTH PLAIN, "+", response) */
	MK_POP3_CMD_STAT,
	MK_POP3_CMD_UIDL, /* msg 0: every message (multi-line), else one */
	MK_POP3_CMD_LIST, /* msg 0: every message (multi-line), else one */
	MK_POP3_CMD_RETR, /* msg */
	MK_POP3_CMD_TOP,  /* msg, lines */
	MK_POP3_CMD_DELE, /* msg */
	MK_POP3_CMD_RSET,
	MK_POP3_CMD_NOOP,
	MK_POP3_CMD_QUIT,
	/* a: SASL mechanism ("XOAUTH2"), ir: the raw response (secret: copied
	 * and base64'd here, the caller wipes its own). "AUTH <a>", then the
	 * response after "+". A further "+" is a failure challenge: XOAUTH2 gets
	 * an empty line, OAUTHBEARER "AQ==", others "*"; the decoded challenge
	 * comes with the -ERR as ev->challenge. */
	MK_POP3_CMD_AUTH,
};

struct mk_pop3_cmd {
	enum mk_pop3_cmd_kind kind;
	const char *a;
	const char *b;
	uint32_t msg;
	uint32_t lines;
	struct mk_slice ir; /* MK_POP3_CMD_AUTH */
};

enum mk_pop3_event_kind {
	MK_POP3_EV_GREETING = 1, /* ok, text */
	MK_POP3_EV_REPLY,        /* the status line of a command: cmd, ok, text
				  * (a multi-line body follows only when ok
				  * and the command has one) */
	MK_POP3_EV_CAPA,         /* one CAPA line: text (capabilities also kept in the core) */
	MK_POP3_EV_UIDL,         /* one listing line: msg, uidl (validated) */
	MK_POP3_EV_LIST,         /* one listing line: msg, size */
	MK_POP3_EV_BODY_CHUNK,   /* RETR/TOP text, unstuffed: chunk */
	MK_POP3_EV_END,          /* the terminating "." of a multi-line response: cmd */
};

struct mk_pop3_event {
	enum mk_pop3_event_kind kind;
	enum mk_pop3_cmd_kind cmd;
	bool ok;               /* +OK (true) or -ERR */
	const char *code;      /* RESP-CODES "[IN-USE]" text or NULL */
	const char *text;      /* rest of the line, NUL-terminated */
	uint32_t msg;          /* UIDL/LIST: message number; STAT: count */
	uint64_t size;         /* LIST: octets; STAT: total octets */
	const char *uidl;      /* UIDL */
	struct mk_slice chunk; /* BODY_CHUNK */
	const char *challenge; /* REPLY to AUTH: the decoded failure challenge
				* (JSON for XOAUTH2) the server sent, or NULL */
};

enum mk_pop3_state {
	MK_POP3_STATE_GREETING = 0,
	MK_POP3_STATE_AUTH,        /* AUTHORIZATION */
	MK_POP3_STATE_TRANSACTION,
	MK_POP3_STATE_STLS,        /* +OK to STLS received: nothing more may arrive in clear */
	MK_POP3_STATE_QUIT,        /* +OK to QUIT (UPDATE done) or the greeting was -ERR */
	MK_POP3_STATE_FAILED,
};

struct mk_pop3_pending {
	enum mk_pop3_cmd_kind kind;
	uint32_t msg;
	size_t len;    /* bytes of the command in `queued` while not released */
	bool released; /* its bytes moved to `out` */
	bool barrier;  /* nothing after it is released before it completes */
};

struct mk_pop3_client {
	enum mk_pop3_state state;
	struct mk_buf in;
	size_t in_off;
	size_t consume_next;
	struct mk_buf out;    /* released bytes to send (may hold credentials: wiped) */
	struct mk_buf queued; /* commands not yet released (may hold credentials) */
	struct mk_buf sasl;   /* the SASL response waiting for "+" (secret) */
	struct mk_buf ev_text;
	struct mk_pop3_pending pending[MK_POP3_MAX_PENDING];
	unsigned n_pending;
	/* multi-line response in progress for pending[0] */
	bool in_multi;
	bool bol;      /* body streaming: at the beginning of a line */
	bool sasl_sent; /* AUTH: the response went out; a second "+" is a failure challenge */
	char sasl_fail_answer[8]; /* AUTH: the answer to that challenge ("*\r\n", "\r\n") */
	struct mk_buf challenge;  /* AUTH: the decoded failure challenge (NUL-terminated) */
	struct mk_caps caps; /* CAPA lines, at most MK_POP3_MAX_CAPS */
	bool tls_active;
	char uidl[MK_POP3_UIDL_MAX + 1];
	const char *error;
	char errbuf[200];
};

void mk_pop3_client_init(struct mk_pop3_client *c);
/* Frees everything, wiping buffers that may hold secrets; idempotent. */
void mk_pop3_client_cleanup(struct mk_pop3_client *c);

/* Takes all of `n` bytes. Returns: 0, MK_ETOOBIG (unconsumed input over
 * the limit), MK_EPROTO (bytes after the +OK to STLS, or after a failure).
 * Message bodies never accumulate: the owner drains events after feeding. */
int mk_pop3_client_feed(struct mk_pop3_client *c, const uint8_t *p, size_t n);

/* Pulls the next event. Returns 1 (event in *ev_r, valid until the next
 * call into the core), 0 (need more input), or <0: MK_EPROTO (malformed or
 * unexpected response, invalid UIDL, data after STLS's +OK), MK_ETOOBIG (a
 * line over MK_POP3_LINE_MAX). mk_pop3_client_error() says what; an error
 * is final. */
int mk_pop3_client_next_event(struct mk_pop3_client *c, struct mk_pop3_event *ev_r);

/* Queues a command. Returns 0; MK_ESTATE (not valid now: USER, PASS and
 * AUTH before the owner declared TLS active -- credentials never go out in
 * clear -- or in the wrong state, STLS with TLS already on, anything after
 * QUIT or STLS's +OK); MK_EINVAL (missing or malformed argument: a CR/LF in
 * a user name, message number 0 for RETR); MK_ETOOBIG (too many pending). */
int mk_pop3_client_submit(struct mk_pop3_client *c, const struct mk_pop3_cmd *cmd);

/* Bytes to send now; valid until the next call into the core. */
struct mk_slice mk_pop3_client_output(const struct mk_pop3_client *c);
/* `n` bytes went to the transport; they are wiped from memory. */
void mk_pop3_client_output_done(struct mk_pop3_client *c, size_t n);

/* The owner finished the TLS upgrade (or connected with implicit TLS):
 * capabilities learned in clear are forgotten (RFC 2595 §4). */
void mk_pop3_client_tls_started(struct mk_pop3_client *c);

bool mk_pop3_client_has_cap(const struct mk_pop3_client *c, const char *cap);
/* True when the SASL capability lists `mech`. */
bool mk_pop3_client_has_sasl(const struct mk_pop3_client *c, const char *mech);
/* Commands still waiting for (the end of) their response. */
unsigned mk_pop3_client_pending(const struct mk_pop3_client *c);
const char *mk_pop3_client_error(const struct mk_pop3_client *c);
const char *mk_pop3_cmd_name(enum mk_pop3_cmd_kind kind);
/* RFC 1939 §7 shape of a UIDL: 1..70 characters in 0x21..0x7E. */
bool mk_pop3_uidl_valid(const char *p, size_t n);

#endif
