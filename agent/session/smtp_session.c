/* SPDX-License-Identifier: MIT */
/*
 * smtp_session.c - glue between mk_smtp_client (sans-I/O) and mk_conn.
 *
 * STARTTLS is done here, before the owner sees the session: greeting,
 * EHLO, STARTTLS, TLS handshake with verification, EHLO again, then
 * on_ready. A server that does not offer STARTTLS is refused: continuing
 * in clear would expose the credentials (a STARTTLS-stripping attacker
 * looks exactly like that server). Bytes after the 220 to STARTTLS are an
 * injection and fail the session in the core. Traces hide AUTH arguments
 * and SASL responses, and summarise message data by its size.
 */
#include "mk_smtp_session.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_log.h"
#include "mk_trace.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum sess_phase {
	PH_GREETING = 0,
	PH_EHLO1,     /* first EHLO (in clear for STARTTLS) */
	PH_STARTTLS,  /* waiting for the 220 */
	PH_HANDSHAKE,
	PH_EHLO2,     /* EHLO over TLS */
	PH_READY,
};

struct mk_smtp_session {
	struct mk_conn *conn;
	struct mk_smtp_client core;
	struct mk_smtp_session_cbs cbs;
	void *ud;
	char *ehlo_name;
	bool starttls;
	bool trace;
	bool in_data; /* output holds message data: traced by size */
	bool corked;  /* mk_smtp_session_cork: hold output until uncorked */
	enum sess_phase phase;
	bool closing; /* owner closed or we failed: deliver nothing more */
	struct mk_log_ctx log;
};

/* Lines we send that do not start with an SMTP command word are SASL
 * responses: hidden whole. AUTH lines are redacted by mk_log. */
static bool is_command_line(const uint8_t *p, size_t n)
{
	static const char *const words[] = {"EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT",
					    "DATA", "RSET", "NOOP",     "QUIT", "."};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		size_t l = strlen(words[i]);
		if (n >= l && strncasecmp((const char *)p, words[i], l) == 0 &&
		    (n == l || p[l] == ' ' || p[l] == '\r' || p[l] == '\n'))
			return true;
	}
	return false;
}

static bool hide_line(const uint8_t *line, size_t n, unsigned index, const void *ud)
{
	(void)index;
	(void)ud;
	if (n >= 5 && strncasecmp((const char *)line, "AUTH ", 5) == 0)
		return true; /* the mechanism name is not secret, but an initial response is */
	return !is_command_line(line, n);
}

static void fail(struct mk_smtp_session *s, int err, const char *msg)
{
	if (s->closing)
		return;
	s->closing = true;
	mk_conn_abort(s->conn, err, msg);
}

static void flush(struct mk_smtp_session *s)
{
	struct mk_slice out = mk_smtp_client_output(&s->core);
	if (out.n == 0 || s->closing || s->corked)
		return;
	/* Message data goes out at the socket's pace: at most about
	 * MK_CONN_DRAIN_LOW queued beyond what the kernel took, so memory
	 * stays small and the "dot sent" mark is not set while megabytes
	 * still wait in our queue (on_drain resumes). */
	if (s->in_data && mk_conn_write_queue_size(s->conn) > MK_CONN_DRAIN_LOW)
		return;
	if (s->trace) {
		if (s->in_data) {
			char line[64];
			int l = snprintf(line, sizeof(line), "<%zu bytes of message data>\r\n", out.n);
			mk_trace_log(&s->log, "C:", (const uint8_t *)line, (size_t)l, NULL, NULL);
		} else {
			mk_trace_log(&s->log, "C:", out.p, out.n, hide_line, NULL);
		}
	}
	int r = mk_conn_write(s->conn, out.p, out.n);
	if (r == MK_ETOOBIG)
		return; /* the socket's queue is full: on_drain retries */
	if (r < 0) {
		fail(s, r, "cannot write");
		return;
	}
	mk_smtp_client_output_done(&s->core, out.n);
}

static void submit_internal(struct mk_smtp_session *s, enum mk_smtp_cmd_kind kind)
{
	struct mk_smtp_cmd cmd = {.kind = kind, .arg = s->ehlo_name};
	int r = mk_smtp_client_submit(&s->core, &cmd);
	if (r < 0)
		fail(s, r, "cannot queue a command");
}

static void reply_text(const struct mk_smtp_reply *r, char *buf, size_t n)
{
	mk_smtp_reply_format(r, buf, n);
}

static void handle_event(struct mk_smtp_session *s, const struct mk_smtp_event *ev)
{
	char msg[700], rt[500];
	switch (s->phase) {
	case PH_GREETING:
		if (ev->kind != MK_SMTP_EV_REPLY || ev->cmd != MK_SMTP_CMD_GREETING)
			return;
		if (ev->reply.code != 220) {
			reply_text(&ev->reply, rt, sizeof(rt));
			snprintf(msg, sizeof(msg), "server refused the connection: %s", rt);
			fail(s, MK_ESERVER, msg);
			return;
		}
		s->phase = s->starttls ? PH_EHLO1 : PH_EHLO2;
		submit_internal(s, MK_SMTP_CMD_EHLO);
		return;
	case PH_EHLO1:
	case PH_EHLO2:
		if (ev->kind != MK_SMTP_EV_REPLY || ev->cmd != MK_SMTP_CMD_EHLO)
			return;
		if (ev->reply.code / 100 != 2) {
			/* Submission needs ESMTP (AUTH, SIZE): no HELO fallback. */
			reply_text(&ev->reply, rt, sizeof(rt));
			snprintf(msg, sizeof(msg), "server refused EHLO: %s", rt);
			fail(s, MK_ESERVER, msg);
			return;
		}
		if (s->phase == PH_EHLO1) {
			if (!mk_smtp_client_ehlo(&s->core)->starttls) {
				fail(s, MK_ETLS,
				     "server does not offer STARTTLS; refusing to continue without TLS (nothing was sent)");
				return;
			}
			s->phase = PH_STARTTLS;
			submit_internal(s, MK_SMTP_CMD_STARTTLS);
			return;
		}
		s->phase = PH_READY;
		if (s->cbs.on_ready)
			s->cbs.on_ready(s, s->ud);
		return;
	case PH_STARTTLS:
		if (ev->kind == MK_SMTP_EV_STARTTLS_READY) {
			s->phase = PH_HANDSHAKE;
			mk_conn_starttls(s->conn);
			return;
		}
		if (ev->kind == MK_SMTP_EV_REPLY && ev->cmd == MK_SMTP_CMD_STARTTLS) {
			reply_text(&ev->reply, rt, sizeof(rt));
			snprintf(msg, sizeof(msg), "server refused STARTTLS: %s", rt);
			fail(s, MK_ETLS, msg);
		}
		return;
	case PH_HANDSHAKE:
		return;
	case PH_READY:
		if (ev->kind == MK_SMTP_EV_REPLY && ev->cmd == MK_SMTP_CMD_DATA_END)
			s->in_data = false;
		if (s->cbs.on_event)
			s->cbs.on_event(s, ev, s->ud);
		return;
	}
}

static void drain(struct mk_smtp_session *s)
{
	while (!s->closing) {
		struct mk_smtp_event ev;
		int r = mk_smtp_client_next_event(&s->core, &ev);
		if (r == 0)
			break;
		if (r < 0) {
			fail(s, r, mk_smtp_client_error(&s->core));
			return;
		}
		if (ev.kind == MK_SMTP_EV_REPLY && ev.cmd == MK_SMTP_CMD_QUIT)
			mk_conn_expect_eof(s->conn);
		if (ev.kind == MK_SMTP_EV_REPLY && ev.cmd == MK_SMTP_CMD_NONE && ev.reply.code == 421)
			mk_conn_expect_eof(s->conn);
		handle_event(s, &ev);
		if (s->phase == PH_HANDSHAKE)
			break; /* nothing more may be read in clear */
	}
	flush(s);
}

static void on_conn_ready(struct mk_conn *c, void *ud)
{
	struct mk_smtp_session *s = ud;
	if (mk_conn_is_tls(c))
		mk_smtp_client_tls_started(&s->core);
	if (s->phase == PH_HANDSHAKE) {
		s->phase = PH_EHLO2;
		submit_internal(s, MK_SMTP_CMD_EHLO);
		flush(s);
	}
}

static void on_conn_data(struct mk_conn *c, const uint8_t *p, size_t n, void *ud)
{
	struct mk_smtp_session *s = ud;
	(void)c;
	if (s->closing)
		return;
	if (s->trace)
		mk_trace_log(&s->log, "S:", p, n > 2000 ? 2000 : n, NULL, NULL);
	int r = mk_smtp_client_feed(&s->core, p, n);
	if (r < 0) {
		fail(s, r, mk_smtp_client_error(&s->core));
		return;
	}
	drain(s);
}

static void on_conn_drain(struct mk_conn *c, void *ud)
{
	struct mk_smtp_session *s = ud;
	(void)c;
	if (s->closing)
		return;
	flush(s);
	if (!s->closing && mk_smtp_client_output(&s->core).n == 0 &&
	    mk_smtp_client_state(&s->core) == MK_SMTP_STATE_DATA_BODY && s->cbs.on_writable != NULL)
		s->cbs.on_writable(s, s->ud);
}

static void on_conn_close(struct mk_conn *c, int err, const char *msg, void *ud)
{
	struct mk_smtp_session *s = ud;
	(void)c;
	s->closing = true;
	if (s->cbs.on_close)
		s->cbs.on_close(s, err, msg, s->ud);
	mk_smtp_client_cleanup(&s->core);
	mk_free(s->ehlo_name);
	mk_free(s);
}

int mk_smtp_session_start(uv_loop_t *loop, const struct mk_smtp_session_opts *opts,
			  const struct mk_smtp_session_cbs *cbs, void *ud, struct mk_smtp_session **s_r)
{
	struct mk_smtp_session *s = mk_xcalloc(1, sizeof(*s));
	mk_smtp_client_init(&s->core);
	s->cbs = *cbs;
	s->ud = ud;
	s->ehlo_name = mk_xstrdup(opts->ehlo_name != NULL && opts->ehlo_name[0] ? opts->ehlo_name : "localhost");
	s->starttls = !opts->conn.implicit_tls;
	s->trace = opts->trace;
	s->log.account = opts->conn.log_account;
	s->log.conn_id = opts->conn.id;
	static const struct mk_conn_cbs ccbs = {on_conn_ready, on_conn_data, on_conn_close, on_conn_drain};
	int r = mk_conn_start(loop, &opts->conn, &ccbs, s, &s->conn);
	if (r < 0) {
		mk_smtp_client_cleanup(&s->core);
		mk_free(s->ehlo_name);
		mk_free(s);
		return r;
	}
	*s_r = s;
	return 0;
}

int mk_smtp_session_submit(struct mk_smtp_session *s, const struct mk_smtp_cmd *cmd)
{
	if (s->closing || s->phase != PH_READY)
		return MK_ESTATE;
	int r = mk_smtp_client_submit(&s->core, cmd);
	if (r == 0)
		flush(s);
	return r;
}

int mk_smtp_session_auth_respond(struct mk_smtp_session *s, const uint8_t *p, size_t n)
{
	if (s->closing || s->phase != PH_READY)
		return MK_ESTATE;
	int r = mk_smtp_client_auth_respond(&s->core, p, n);
	if (r == 0)
		flush(s);
	return r;
}

int mk_smtp_session_auth_cancel(struct mk_smtp_session *s)
{
	if (s->closing || s->phase != PH_READY)
		return MK_ESTATE;
	int r = mk_smtp_client_auth_cancel(&s->core);
	if (r == 0)
		flush(s);
	return r;
}

int mk_smtp_session_data_write(struct mk_smtp_session *s, const uint8_t *p, size_t n, size_t *taken_r)
{
	*taken_r = 0;
	if (s->closing || s->phase != PH_READY)
		return MK_ESTATE;
	s->in_data = true;
	int r = mk_smtp_client_data_write(&s->core, p, n, taken_r);
	if (r == 0)
		flush(s);
	return r;
}

int mk_smtp_session_data_end(struct mk_smtp_session *s)
{
	if (s->closing || s->phase != PH_READY)
		return MK_ESTATE;
	int r = mk_smtp_client_data_end(&s->core);
	if (r == 0)
		flush(s);
	return r;
}

void mk_smtp_session_cork(struct mk_smtp_session *s, bool cork)
{
	s->corked = cork;
	if (!cork)
		flush(s);
}

bool mk_smtp_session_output_empty(const struct mk_smtp_session *s)
{
	return mk_smtp_client_output(&s->core).n == 0;
}

const struct mk_smtp_ehlo *mk_smtp_session_ehlo(const struct mk_smtp_session *s)
{
	return mk_smtp_client_ehlo(&s->core);
}

bool mk_smtp_session_has_auth(const struct mk_smtp_session *s, const char *mech)
{
	return mk_smtp_client_has_auth(&s->core, mech);
}

const char *mk_smtp_session_tls_summary(struct mk_smtp_session *s)
{
	return mk_conn_tls_summary(s->conn);
}

void mk_smtp_session_close(struct mk_smtp_session *s)
{
	if (s->closing)
		return;
	s->closing = true;
	mk_conn_close(s->conn);
}

void mk_smtp_session_abort(struct mk_smtp_session *s, int err, const char *msg)
{
	fail(s, err, msg);
}
