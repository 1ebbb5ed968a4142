/* SPDX-License-Identifier: MIT */
/*
 * pop3_session.c - glue between mk_pop3_client (sans-I/O) and mk_conn.
 *
 * STLS is done here, before the owner sees the session: greeting, CAPA,
 * STLS, TLS handshake with verification, then on_ready. A server that does
 * not offer STLS is refused: continuing in clear would expose the password
 * (a STLS-stripping attacker looks exactly like that server). Traces hide
 * PASS and AUTH arguments and every SASL response line.
 */
#include "mk_pop3_session.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_log.h"
#include "mk_trace.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum sess_phase {
	PH_GREETING = 0,
	PH_CAPA, /* STLS mode: waiting for CAPA */
	PH_STLS, /* waiting for the +OK */
	PH_HANDSHAKE,
	PH_READY,
};

struct mk_pop3_session {
	struct mk_conn *conn;
	struct mk_pop3_client core;
	struct mk_pop3_session_cbs cbs;
	void *ud;
	bool starttls;
	bool trace;
	enum sess_phase phase;
	bool closing; /* owner closed or we failed: deliver nothing more */
	struct mk_log_ctx log;
};

/* A line we send that does not start with a POP3 command word is a SASL
 * response: hidden whole. */
static bool is_command_line(const uint8_t *p, size_t n)
{
	static const char *const words[] = {"CAPA", "STLS", "USER", "PASS", "AUTH", "STAT", "UIDL",
					    "LIST", "RETR", "TOP",  "DELE", "RSET", "NOOP", "QUIT"};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		size_t l = strlen(words[i]);
		if (n >= l && strncasecmp((const char *)p, words[i], l) == 0 &&
		    (n == l || p[l] == ' ' || p[l] == '\r' || p[l] == '\n'))
			return true;
	}
	return false;
}

static bool hide_sasl_line(const uint8_t *line, size_t n, unsigned index, const void *ud)
{
	(void)index;
	(void)ud;
	return !is_command_line(line, n);
}

/* `out`: lines we send, of which SASL responses are hidden whole. */
static void trace_lines(struct mk_pop3_session *s, const char *dir, const uint8_t *p, size_t n, bool out)
{
	if (s->trace)
		mk_trace_log(&s->log, dir, p, n, out ? hide_sasl_line : NULL, NULL);
}

static void fail(struct mk_pop3_session *s, int err, const char *msg)
{
	if (s->closing)
		return;
	s->closing = true;
	mk_conn_abort(s->conn, err, msg);
}

static void flush(struct mk_pop3_session *s)
{
	struct mk_slice out = mk_pop3_client_output(&s->core);
	if (out.n == 0 || s->closing)
		return;
	trace_lines(s, "C:", out.p, out.n, true);
	int r = mk_conn_write(s->conn, out.p, out.n);
	if (r < 0) {
		fail(s, r, r == MK_ETOOBIG ? "output queue full" : "cannot write");
		return;
	}
	mk_pop3_client_output_done(&s->core, out.n);
}

static void submit_internal(struct mk_pop3_session *s, enum mk_pop3_cmd_kind kind)
{
	struct mk_pop3_cmd cmd = {.kind = kind};
	if (mk_pop3_client_submit(&s->core, &cmd) < 0)
		fail(s, MK_EPROTO, "cannot queue a command");
}

static void handle_event(struct mk_pop3_session *s, const struct mk_pop3_event *ev)
{
	char msg[400];
	switch (s->phase) {
	case PH_GREETING:
		if (ev->kind != MK_POP3_EV_GREETING)
			return;
		if (!ev->ok) {
			snprintf(msg, sizeof(msg), "server refused the connection: -ERR %s", ev->text);
			fail(s, MK_ESERVER, msg);
			return;
		}
		if (s->starttls) {
			s->phase = PH_CAPA;
			submit_internal(s, MK_POP3_CMD_CAPA);
			return;
		}
		s->phase = PH_READY;
		if (s->cbs.on_ready)
			s->cbs.on_ready(s, s->ud);
		return;
	case PH_CAPA:
		if (ev->kind == MK_POP3_EV_END || (ev->kind == MK_POP3_EV_REPLY && !ev->ok)) {
			if (!mk_pop3_client_has_cap(&s->core, "STLS")) {
				fail(s, MK_ETLS, "server does not offer STLS; refusing to continue without TLS");
				return;
			}
			s->phase = PH_STLS;
			submit_internal(s, MK_POP3_CMD_STLS);
		}
		return;
	case PH_STLS:
		if (ev->kind == MK_POP3_EV_REPLY && ev->cmd == MK_POP3_CMD_STLS) {
			if (!ev->ok) {
				snprintf(msg, sizeof(msg), "server refused STLS: -ERR %s", ev->text);
				fail(s, MK_ETLS, msg);
				return;
			}
			s->phase = PH_HANDSHAKE;
			mk_conn_starttls(s->conn);
		}
		return;
	case PH_HANDSHAKE:
		return;
	case PH_READY:
		if (s->cbs.on_event)
			s->cbs.on_event(s, ev, s->ud);
		return;
	}
}

static void drain(struct mk_pop3_session *s)
{
	while (!s->closing) {
		struct mk_pop3_event ev;
		int r = mk_pop3_client_next_event(&s->core, &ev);
		if (r == 0)
			break;
		if (r < 0) {
			fail(s, r, mk_pop3_client_error(&s->core));
			return;
		}
		if (ev.kind == MK_POP3_EV_REPLY && ev.cmd == MK_POP3_CMD_QUIT && ev.ok)
			mk_conn_expect_eof(s->conn);
		handle_event(s, &ev);
		if (s->phase == PH_HANDSHAKE)
			break; /* nothing more may be read in clear */
	}
	flush(s);
}

static void on_conn_ready(struct mk_conn *c, void *ud)
{
	struct mk_pop3_session *s = ud;
	if (mk_conn_is_tls(c))
		mk_pop3_client_tls_started(&s->core);
	if (s->phase == PH_HANDSHAKE) {
		s->phase = PH_READY;
		if (s->cbs.on_ready)
			s->cbs.on_ready(s, s->ud);
		flush(s);
	}
}

static void on_conn_data(struct mk_conn *c, const uint8_t *p, size_t n, void *ud)
{
	struct mk_pop3_session *s = ud;
	(void)c;
	if (s->closing)
		return;
	trace_lines(s, "S:", p, n > 400 ? 400 : n, false);
	int r = mk_pop3_client_feed(&s->core, p, n);
	if (r < 0) {
		fail(s, r, mk_pop3_client_error(&s->core));
		return;
	}
	drain(s);
}

static void on_conn_close(struct mk_conn *c, int err, const char *msg, void *ud)
{
	struct mk_pop3_session *s = ud;
	(void)c;
	s->closing = true;
	if (s->cbs.on_close)
		s->cbs.on_close(s, err, msg, s->ud);
	mk_pop3_client_cleanup(&s->core);
	mk_free(s);
}

int mk_pop3_session_start(uv_loop_t *loop, const struct mk_pop3_session_opts *opts,
			  const struct mk_pop3_session_cbs *cbs, void *ud, struct mk_pop3_session **s_r)
{
	struct mk_pop3_session *s = mk_xcalloc(1, sizeof(*s));
	mk_pop3_client_init(&s->core);
	s->cbs = *cbs;
	s->ud = ud;
	s->starttls = !opts->conn.implicit_tls;
	s->trace = opts->trace;
	s->log.account = opts->conn.log_account;
	s->log.conn_id = opts->conn.id;
	static const struct mk_conn_cbs ccbs = {on_conn_ready, on_conn_data, on_conn_close, NULL};
	int r = mk_conn_start(loop, &opts->conn, &ccbs, s, &s->conn);
	if (r < 0) {
		mk_pop3_client_cleanup(&s->core);
		mk_free(s);
		return r;
	}
	*s_r = s;
	return 0;
}

int mk_pop3_session_submit(struct mk_pop3_session *s, const struct mk_pop3_cmd *cmd)
{
	if (s->closing || s->phase != PH_READY)
		return MK_ESTATE;
	int r = mk_pop3_client_submit(&s->core, cmd);
	if (r == 0)
		flush(s);
	return r;
}

bool mk_pop3_session_has_cap(const struct mk_pop3_session *s, const char *cap)
{
	return mk_pop3_client_has_cap(&s->core, cap);
}

bool mk_pop3_session_has_sasl(const struct mk_pop3_session *s, const char *mech)
{
	return mk_pop3_client_has_sasl(&s->core, mech);
}

bool mk_pop3_session_caps_known(const struct mk_pop3_session *s)
{
	return s->core.caps.known;
}

void mk_pop3_session_close(struct mk_pop3_session *s)
{
	if (s->closing)
		return;
	s->closing = true;
	mk_conn_close(s->conn);
}

void mk_pop3_session_abort(struct mk_pop3_session *s, int err, const char *msg)
{
	fail(s, err, msg);
}
