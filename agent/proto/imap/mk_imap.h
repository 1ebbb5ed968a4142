/* SPDX-License-Identifier: MIT */
/*
 * mk_imap.h - the sans-I/O IMAP client core (RFC 3501 as Exchange speaks it).
 *
 * The core never reads or writes a socket, never reads the clock and never
 * calls back: bytes go in with mk_imap_client_feed(), events come out of
 * mk_imap_client_next_event(), and bytes to send come out of
 * mk_imap_client_output(). Results do not depend on how input is split.
 *
 * A response is framed first (its line plus any {n} literals, bounded by
 * MK_LIMIT_IMAP_LINE and MK_LIMIT_IMAP_LITERAL_INLINE) and then tokenised
 * by imap_lexer.c into a flat array of arguments, with depth and count
 * limits. Streaming of large literals (message bodies) is added with the
 * backup engine; until then a literal over the inline limit is MK_ETOOBIG.
 */
#ifndef MK_IMAP_H
#define MK_IMAP_H

#include "mk_buf.h"
#include "mk_caps.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- arguments (imap_lexer.c) ---- */

enum mk_imap_arg_kind {
	MK_IMAP_ARG_ATOM = 0, /* also numbers and flags like \Seen */
	MK_IMAP_ARG_STRING,   /* quoted, unescaped */
	MK_IMAP_ARG_LITERAL,  /* {n} */
	MK_IMAP_ARG_NIL,
	MK_IMAP_ARG_LIST,     /* (...) ; children follow in the array */
};

struct mk_imap_arg {
	enum mk_imap_arg_kind kind;
	struct mk_slice v;     /* ATOM/STRING/LITERAL text (not NUL-terminated) */
	uint32_t n_children;   /* LIST: direct children */
	uint32_t next;         /* index of the next sibling (skips children) */
};

struct mk_imap_args {
	struct mk_imap_arg *a;
	uint32_t n, cap;
	struct mk_buf strbuf; /* unescaped quoted strings */
};

void mk_imap_args_init(struct mk_imap_args *args);
void mk_imap_args_cleanup(struct mk_imap_args *args);
/* Tokenises `p[0..n)` (a framed response line with its literals inline,
 * without the final CRLF). Stops at the end or at an unbalanced ')'.
 * Returns: 0, MK_EPROTO (malformed; *error_r static), MK_ETOOBIG. */
int mk_imap_lexer_parse(struct mk_imap_args *args, const uint8_t *p, size_t n, const char **error_r);
/* Like mk_imap_lexer_parse, but an unbalanced ')' at depth 0 ends the
 * input (the tail of a FETCH response after a streamed literal);
 * *used_r is where parsing stopped. */
int mk_imap_lexer_parse_until_close(struct mk_imap_args *args, const uint8_t *p, size_t n, size_t *used_r,
				    const char **error_r);
/* True when arg is an ATOM/STRING/LITERAL equal to s (ASCII case-insensitive). */
bool mk_imap_arg_eq(const struct mk_imap_arg *arg, const char *s);
/* Copies a string-ish arg (ATOM/STRING/LITERAL) into a new C string; NIL
 * gives NULL. Embedded NULs are kept as-is (callers treat as C strings). */
char *mk_imap_arg_dup(const struct mk_imap_arg *arg);

/* ---- modified UTF-7 mailbox names (utf7.c), RFC 3501 §5.1.3 ---- */

/* Returns: 0, MK_EINVAL (malformed). *out_r is a new string. */
int mk_imap_utf7_decode(const char *in, char **out_r);
int mk_imap_utf7_encode(const char *utf8, char **out_r);

/* ---- the client core (imap_client.c) ---- */

enum mk_imap_status {
	MK_IMAP_OK = 0,
	MK_IMAP_NO,
	MK_IMAP_BAD,
	MK_IMAP_PREAUTH,
	MK_IMAP_BYE,
};

enum mk_imap_event_kind {
	MK_IMAP_EV_GREETING = 1, /* status OK, PREAUTH or BYE */
	MK_IMAP_EV_CAPABILITY,   /* capabilities (re)learned */
	MK_IMAP_EV_LIST,         /* one LIST/LSUB line */
	MK_IMAP_EV_UNTAGGED,     /* other untagged data (args available) */
	MK_IMAP_EV_CONTINUATION, /* "+ ..." not consumed by the core */
	MK_IMAP_EV_TAGGED,       /* a command completed */
	MK_IMAP_EV_BYE,          /* untagged BYE after the greeting */
	MK_IMAP_EV_FETCH,        /* a FETCH response, complete: ev->fetch */
	MK_IMAP_EV_BODY_BEGIN,   /* a body literal of a FETCH starts: ev->fetch.seq, ev->body_size, ev->text (section) */
	MK_IMAP_EV_BODY_CHUNK,   /* the next bytes of that body: ev->chunk */
	/* The go-ahead for STARTTLS is the TAGGED OK of MK_IMAP_CMD_STARTTLS:
	 * the owner starts TLS, then calls mk_imap_client_tls_started(). */
};

enum mk_imap_cmd_kind {
	MK_IMAP_CMD_CAPABILITY = 0,
	MK_IMAP_CMD_NOOP,
	MK_IMAP_CMD_STARTTLS,
	MK_IMAP_CMD_LOGIN,             /* user, pass */
	MK_IMAP_CMD_AUTHENTICATE_PLAIN, /* user, pass (SASL-IR when offered) */
	MK_IMAP_CMD_LIST,              /* ref, pattern */
	MK_IMAP_CMD_LOGOUT,
	MK_IMAP_CMD_EXAMINE,   /* a: mailbox name in UTF-8 (encoded to modified UTF-7 here) */
	MK_IMAP_CMD_SELECT,    /* a: mailbox name in UTF-8 */
	MK_IMAP_CMD_UID_FETCH, /* a: sequence set ("1:*", "5,7:9"), b: items ("(UID FLAGS)") */
	MK_IMAP_CMD_IDLE,      /* RFC 2177; ended by mk_imap_client_idle_done() or by the next command */
	MK_IMAP_CMD_APPEND,    /* a: mailbox (UTF-8), b: flag list "(\\Seen)" or NULL, size: the literal's
			        * length; the message is then streamed with mk_imap_client_append_write() */
	/* RFC 3501 §6.2.2 generic SASL: a = mechanism name ("XOAUTH2"), ir = the
	 * raw initial response (ir.p NULL: none; ir.n 0: an empty one), base64'd
	 * here, sent with the command when the server offers SASL-IR (RFC 4959),
	 * else after the first "+". Further "+" challenges come out as
	 * CONTINUATION events (tag, cmd = AUTHENTICATE, chunk = the decoded
	 * challenge); answer each with mk_imap_client_auth_respond() or
	 * mk_imap_client_auth_cancel(). */
	MK_IMAP_CMD_AUTHENTICATE,
};

/* System flags, same bits as the store's (storage/mk_store.h). */
enum mk_imap_flag {
	MK_IMAP_FLAG_SEEN = 1 << 0,
	MK_IMAP_FLAG_ANSWERED = 1 << 1,
	MK_IMAP_FLAG_FLAGGED = 1 << 2,
	MK_IMAP_FLAG_DELETED = 1 << 3,
	MK_IMAP_FLAG_DRAFT = 1 << 4,
	MK_IMAP_FLAG_RECENT = 1 << 5,
};

/* The items of one FETCH response, gathered across a streamed body. */
struct mk_imap_fetch {
	uint32_t seq;
	uint32_t uid;
	uint32_t rfc822_size;
	uint32_t flags;        /* enum mk_imap_flag */
	char keywords[512];    /* other flags, space-separated (truncated if longer) */
	int64_t internaldate;  /* unix seconds */
	int32_t internaldate_tz; /* minutes east of UTC */
	uint64_t body_size;    /* bytes of the body literal(s) */
	bool has_uid, has_size, has_flags, has_internaldate, has_body;
	struct mk_slice inline_body; /* a body sent as a quoted string (rare) */
};

struct mk_imap_cmd {
	enum mk_imap_cmd_kind kind;
	const char *a; /* user / reference / SASL mechanism */
	const char *b; /* password / pattern */
	struct mk_slice ir; /* AUTHENTICATE: raw initial response (secret: copied, the caller wipes its own) */
	uint64_t size;      /* APPEND: bytes of the message */
	bool a_wire;        /* EXAMINE/SELECT: `a` is the name exactly as LIST sent it (modified
			     * UTF-7, control characters and all), sent back unchanged: Exchange
			     * lists names with a TAB unquoted and expects them back that way */
};

struct mk_imap_list {
	const struct mk_imap_arg *flags; /* a LIST arg */
	char delimiter;                 /* 0 for NIL */
	char *name_raw;                 /* as on the wire (modified UTF-7) */
	char *name;                     /* decoded UTF-8 (== raw copy if not decodable) */
	bool noselect;
};

struct mk_imap_event {
	enum mk_imap_event_kind kind;
	/* TAGGED / GREETING / BYE */
	unsigned tag; /* TAGGED: the tag number from submit */
	enum mk_imap_cmd_kind cmd;
	enum mk_imap_status status;
	const char *code; /* response code text inside [...] or NULL */
	const char *text; /* human-readable text */
	/* UNTAGGED: args[0] is the first token after "*" */
	const struct mk_imap_args *args;
	/* LIST */
	struct mk_imap_list list;
	/* FETCH / BODY_BEGIN / BODY_CHUNK */
	struct mk_imap_fetch fetch;
	uint64_t body_size;
	struct mk_slice chunk; /* BODY_CHUNK; CONTINUATION of AUTHENTICATE: the decoded
				* challenge (the raw text when it is not base64) */
};

enum mk_imap_state {
	MK_IMAP_STATE_GREETING = 0,
	MK_IMAP_STATE_NOT_AUTH,
	MK_IMAP_STATE_AUTH,
	MK_IMAP_STATE_LOGOUT,
	MK_IMAP_STATE_STARTTLS, /* go-ahead received: nothing more may arrive in clear */
	MK_IMAP_STATE_FAILED,
};

#define MK_IMAP_MAX_PENDING 32
#define MK_IMAP_MAX_CAPS 64

struct mk_imap_pending {
	unsigned tag;
	enum mk_imap_cmd_kind kind;
};

struct mk_imap_client {
	enum mk_imap_state state;
	struct mk_buf in;  /* input; bytes before in_off are consumed */
	size_t in_off;
	struct mk_buf out; /* bytes to send (may hold credentials: wiped) */
	size_t out_ready;  /* bytes of `out` that may be sent now (rest waits for "+") */
	struct mk_buf ev_text; /* event strings (code/text) */
	struct mk_imap_args args;
	unsigned next_tag;
	struct mk_imap_pending pending[MK_IMAP_MAX_PENDING];
	unsigned n_pending;
	struct mk_caps caps; /* at most MK_IMAP_MAX_CAPS */
	bool tls_active; /* set by the owner after TLS is up */
	unsigned held_tag; /* command whose output waits for "+" (0: none) */
	bool held_sasl;    /* ... a SASL response (one line per "+") */
	unsigned auth_tag; /* AUTHENTICATE in progress (0: none) */
	bool auth_cont;    /* ... a "+" of it awaits mk_imap_client_auth_respond/_cancel */
	struct mk_buf sasl_dec; /* decoded challenge of the last CONTINUATION */
	size_t consume_next; /* bytes of `in` the last event used */
	unsigned idle_tag;   /* IDLE in progress (0: none) */
	bool idling;         /* the server accepted it ("+") */
	bool idle_done_sent;
	char *list_raw, *list_name;
	/* streaming a FETCH body literal */
	uint64_t stream_left;  /* bytes of the current body literal still to come */
	bool in_fetch_tail;    /* after a streamed literal: the rest of the FETCH */
	/* APPEND: the message literal being sent (RFC 3501 §6.3.11) */
	unsigned append_tag;   /* 0: none */
	uint64_t append_left;  /* literal bytes still to write */
	bool append_ready;     /* "+" received (or LITERAL+): data may go out */
	struct mk_imap_fetch fetch;
	const char *error;
	char errbuf[160];
};

/* APPEND: queues up to n bytes of the message literal once the server
 * asked for it (mk_imap_client_append_ready); *taken_r says how many (0:
 * drain the output first; at most MK_IMAP_APPEND_OUT_MAX is queued). After
 * the last byte the command line is ended. Returns 0, MK_ESTATE. */
#define MK_IMAP_APPEND_OUT_MAX (256 * 1024)
int mk_imap_client_append_write(struct mk_imap_client *c, const uint8_t *p, size_t n, size_t *taken_r);
/* True while an APPEND's literal may be written (and bytes are left). */
bool mk_imap_client_append_ready(const struct mk_imap_client *c);

void mk_imap_client_init(struct mk_imap_client *c);
void mk_imap_client_cleanup(struct mk_imap_client *c);

/* Takes all of `n` bytes into the core's input buffer.
 * Returns: 0, MK_ETOOBIG (input over the limits: a response too long),
 * MK_EPROTO (bytes after the STARTTLS go-ahead). */
int mk_imap_client_feed(struct mk_imap_client *c, const uint8_t *p, size_t n);

/* Pulls the next event. Returns 1 (event in *ev_r, valid until the next
 * call into the core), 0 (need more input), or <0: MK_EPROTO, MK_ETOOBIG
 * (mk_imap_client_error() says what). An error is final. */
int mk_imap_client_next_event(struct mk_imap_client *c, struct mk_imap_event *ev_r);

/* Queues a command. Returns 0 (*tag_r set), MK_ESTATE (not valid now:
 * e.g. LOGIN without TLS — the core refuses to send credentials in clear
 * unless the owner declared TLS active), MK_ETOOBIG (too many pending). */
int mk_imap_client_submit(struct mk_imap_client *c, const struct mk_imap_cmd *cmd, unsigned *tag_r);

/* Bytes to send now; valid until the next call into the core. */
struct mk_slice mk_imap_client_output(const struct mk_imap_client *c);
/* `n` bytes were handed to the transport; they are wiped from memory. */
void mk_imap_client_output_done(struct mk_imap_client *c, size_t n);

/* Answers the pending "+" challenge of an AUTHENTICATE with the raw
 * response p[0..n) (base64'd here; n 0 sends an empty line, as XOAUTH2
 * wants after a failure challenge). The line is wiped once sent and hidden
 * from traces by the owner. Returns: 0, MK_ESTATE (no challenge pending),
 * MK_ETOOBIG (over MK_LIMIT_SASL_LINE once encoded). */
int mk_imap_client_auth_respond(struct mk_imap_client *c, const uint8_t *p, size_t n);
/* Cancels the exchange ("*", RFC 3501): the server answers BAD/NO.
 * Returns: 0, MK_ESTATE (no challenge pending). */
int mk_imap_client_auth_cancel(struct mk_imap_client *c);

/* Ends IDLE: queues "DONE" once (the tagged OK of IDLE follows). A
 * command submitted during IDLE sends DONE first by itself. No-op when
 * not idling. */
void mk_imap_client_idle_done(struct mk_imap_client *c);
bool mk_imap_client_idling(const struct mk_imap_client *c);

/* The owner finished the TLS upgrade (or connected with implicit TLS). */
void mk_imap_client_tls_started(struct mk_imap_client *c);

bool mk_imap_client_has_cap(const struct mk_imap_client *c, const char *cap);
/* "UIDVALIDITY 14" style response code: true and *v_r when `code` starts
 * with `name` followed by a number. */
bool mk_imap_code_u32(const char *code, const char *name, uint32_t *v_r);
/* Parses an IMAP date-time ("17-Jul-1996 02:44:25 -0700").
 * Returns: 0, MK_EINVAL. */
int mk_imap_parse_datetime(const char *s, size_t n, int64_t *t_r, int32_t *tz_r);
const char *mk_imap_client_error(const struct mk_imap_client *c);
const char *mk_imap_status_name(enum mk_imap_status s);

#endif
