/* SPDX-License-Identifier: MIT */
/*
 * imap_session.c - glue between mk_imap_client (sans-I/O) and mk_conn.
 *
 * STARTTLS is done here, before the owner sees the session: greeting,
 * CAPABILITY, STARTTLS, TLS handshake with verification, then on_ready.
 * A server that does not offer STARTTLS is refused: continuing in clear
 * would expose the password (a STARTTLS-stripping attack looks exactly
 * like that server).
 */
#include "mk_imap_session.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"
#include "mk_log.h"
#include "mk_str.h"
#include "mk_trace.h"

#include <stdio.h>
#include <string.h>

enum sess_phase {
	PH_GREETING = 0,
	PH_CAPA,     /* STARTTLS mode: waiting for CAPABILITY */
	PH_STARTTLS, /* waiting for the go-ahead */
	PH_HANDSHAKE,
	PH_READY,
};

struct mk_imap_session {
	struct mk_conn *conn;
	uv_loop_t *loop;
	struct mk_imap_client core;
	struct mk_imap_session_cbs cbs;
	void *ud;
	bool starttls;
	bool trace;
	enum sess_phase phase;
	unsigned starttls_tag;
	bool closing;   /* owner closed or we failed: deliver nothing more */
	int out_secret; /* trace mode for the next output (see trace_lines) */
	struct mk_log_ctx log;
	char account[64];
	/* SASL exchange of mk_imap_session_authenticate() */
	struct mk_sasl sasl;
	bool sasl_active;
	unsigned auth_tag;
	char auth_error[512];
	bool in_append; /* output holds APPEND message data */
};

/* `ud` points to the `secret` of trace_lines. */
static bool hide_secret_line(const uint8_t *line, size_t n, unsigned index, const void *ud)
{
	int secret = *(const int *)ud;
	(void)line;
	(void)n;
	return secret == 2 || (secret == 1 && index > 0);
}

/* `secret`: 0 = redact by command, 1 = redact the first line by command and
 * hide every later line (literals of LOGIN), 2 = hide every line (SASL
 * responses and held literals sent after "+"). */
static void trace_lines(struct mk_imap_session *s, const char *dir, const uint8_t *p, size_t n, int secret)
{
	if (s->trace)
		mk_trace_log(&s->log, dir, p, n, hide_secret_line, &secret);
}

static void fail(struct mk_imap_session *s, int err, const char *msg)
{
	if (s->closing)
		return;
	s->closing = true;
	mk_conn_abort(s->conn, err, msg);
}

static void flush(struct mk_imap_session *s)
{
	struct mk_slice out = mk_imap_client_output(&s->core);
	if (out.n == 0 || s->closing)
		return;
	if (s->in_append) {
		/* message data: at the socket's pace, and traced by size only */
		if (mk_conn_write_queue_size(s->conn) > MK_CONN_DRAIN_LOW)
			return;
		if (s->trace) {
			char line[64];
			int l = snprintf(line, sizeof(line), "<%zu bytes of APPEND data>\r\n", out.n);
			mk_trace_log(&s->log, "C:", (const uint8_t *)line, (size_t)l, NULL, NULL);
		}
		if (mk_conn_write(s->conn, out.p, out.n) < 0)
			return; /* ETOOBIG: on_drain retries; other errors close the conn */
		mk_imap_client_output_done(&s->core, out.n);
		if (s->core.append_tag == 0 || s->core.append_left == 0)
			s->in_append = false;
		return;
	}
	trace_lines(s, "C:", out.p, out.n, s->out_secret);
	/* what is still held for a "+" is the rest of a secret command */
	s->out_secret = s->core.held_tag != 0 ? 2 : 0;
	int r = mk_conn_write(s->conn, out.p, out.n);
	if (r < 0) {
		fail(s, r, r == MK_ETOOBIG ? "output queue full" : "cannot write");
		return;
	}
	mk_imap_client_output_done(&s->core, out.n);
}

static int submit_internal(struct mk_imap_session *s, enum mk_imap_cmd_kind kind, unsigned *tag_r)
{
	struct mk_imap_cmd cmd = {.kind = kind};
	int r = mk_imap_client_submit(&s->core, &cmd, tag_r);
	if (r == 0)
		flush(s);
	return r;
}

static void handle_event(struct mk_imap_session *s, const struct mk_imap_event *ev)
{
	char msg[400];
	switch (s->phase) {
	case PH_GREETING:
		if (ev->kind != MK_IMAP_EV_GREETING)
			break;
		if (ev->status == MK_IMAP_BYE) {
			snprintf(msg, sizeof(msg), "server refused the connection: %s", ev->text);
			fail(s, MK_ESERVER, msg);
			return;
		}
		if (s->starttls) {
			unsigned tag;
			s->phase = PH_CAPA;
			if (s->core.caps.known && !mk_imap_client_has_cap(&s->core, "STARTTLS")) {
				fail(s, MK_ETLS, "server does not offer STARTTLS; refusing to continue without TLS");
				return;
			}
			if (s->core.caps.known) {
				s->phase = PH_STARTTLS;
				submit_internal(s, MK_IMAP_CMD_STARTTLS, &s->starttls_tag);
			} else {
				submit_internal(s, MK_IMAP_CMD_CAPABILITY, &tag);
			}
			return;
		}
		s->phase = PH_READY;
		if (s->cbs.on_ready)
			s->cbs.on_ready(s, s->ud);
		return;
	case PH_CAPA:
		if (ev->kind == MK_IMAP_EV_TAGGED && ev->cmd == MK_IMAP_CMD_CAPABILITY) {
			if (!mk_imap_client_has_cap(&s->core, "STARTTLS")) {
				fail(s, MK_ETLS, "server does not offer STARTTLS; refusing to continue without TLS");
				return;
			}
			s->phase = PH_STARTTLS;
			submit_internal(s, MK_IMAP_CMD_STARTTLS, &s->starttls_tag);
		}
		return;
	case PH_STARTTLS:
		if (ev->kind == MK_IMAP_EV_TAGGED && ev->tag == s->starttls_tag) {
			if (ev->status != MK_IMAP_OK) {
				snprintf(msg, sizeof(msg), "server refused STARTTLS: %s %s",
					 mk_imap_status_name(ev->status), ev->text);
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

/* A challenge of our AUTHENTICATE: answered here with mk_sasl. */
static void sasl_challenge(struct mk_imap_session *s, const struct mk_imap_event *ev)
{
	struct mk_buf out;
	mk_buf_init(&out, MK_LIMIT_SASL_LINE);
	/* sized once: no realloc leaves a copy of the secret behind */
	int r = mk_buf_reserve(&out, MK_LIMIT_SASL_LINE / 2, NULL);
	if (r == 0)
		r = mk_sasl_step(&s->sasl, ev->chunk.p, ev->chunk.n, &out);
	if (r == MK_EAUTH)
		mk_strlcpy(s->auth_error, mk_sasl_error(&s->sasl), sizeof(s->auth_error));
	if (r == 0 || r == MK_EAUTH)
		r = mk_imap_client_auth_respond(&s->core, out.data, out.len);
	else
		r = mk_imap_client_auth_cancel(&s->core); /* a challenge the mechanism does not expect */
	mk_buf_cleanup_wipe(&out);
	s->out_secret = 2; /* the response line is hidden whole in traces */
	if (r < 0)
		fail(s, r, "cannot answer the server's SASL challenge");
}

static void drain(struct mk_imap_session *s)
{
	while (!s->closing) {
		struct mk_imap_event ev;
		int r = mk_imap_client_next_event(&s->core, &ev);
		if (r == 0)
			break;
		if (r < 0) {
			fail(s, r, mk_imap_client_error(&s->core));
			return;
		}
		if (ev.kind == MK_IMAP_EV_BYE && s->phase != PH_READY) {
			char msg[400];
			snprintf(msg, sizeof(msg), "server closed the session: BYE %s", ev.text);
			fail(s, MK_ESERVER, msg);
			return;
		}
		if (ev.kind == MK_IMAP_EV_BYE || (ev.kind == MK_IMAP_EV_TAGGED && ev.cmd == MK_IMAP_CMD_LOGOUT))
			mk_conn_expect_eof(s->conn);
		if (s->sasl_active && ev.tag == s->auth_tag && ev.cmd == MK_IMAP_CMD_AUTHENTICATE) {
			if (ev.kind == MK_IMAP_EV_CONTINUATION) {
				sasl_challenge(s, &ev);
				continue;
			}
			if (ev.kind == MK_IMAP_EV_TAGGED) {
				mk_sasl_cleanup(&s->sasl);
				s->sasl_active = false;
			}
		}
		handle_event(s, &ev);
		if (s->phase == PH_HANDSHAKE)
			break; /* nothing more may be read in clear */
	}
	flush(s);
}

static void on_conn_ready(struct mk_conn *c, void *ud)
{
	struct mk_imap_session *s = ud;
	if (mk_conn_is_tls(c))
		mk_imap_client_tls_started(&s->core);
	if (s->phase == PH_HANDSHAKE) {
		/* capabilities were forgotten by the core; the owner asks again */
		s->phase = PH_READY;
		if (s->cbs.on_ready)
			s->cbs.on_ready(s, s->ud);
		flush(s);
	}
}

static void on_conn_data(struct mk_conn *c, const uint8_t *p, size_t n, void *ud)
{
	struct mk_imap_session *s = ud;
	if (s->closing)
		return;
	trace_lines(s, "S:", p, n, 0);
	int r = mk_imap_client_feed(&s->core, p, n);
	if (r < 0) {
		fail(s, r, mk_imap_client_error(&s->core));
		return;
	}
	drain(s);
}

static void on_conn_drain(struct mk_conn *c, void *ud)
{
	struct mk_imap_session *s = ud;
	(void)c;
	if (s->closing)
		return;
	flush(s);
	if (!s->closing && mk_imap_client_output(&s->core).n == 0 && mk_imap_client_append_ready(&s->core) &&
	    s->cbs.on_writable != NULL)
		s->cbs.on_writable(s, s->ud);
}

bool mk_imap_session_append_ready(const struct mk_imap_session *s)
{
	return !s->closing && mk_imap_client_append_ready(&s->core);
}

int mk_imap_session_append_write(struct mk_imap_session *s, const uint8_t *p, size_t n, size_t *taken_r)
{
	*taken_r = 0;
	if (s->closing)
		return MK_ESTATE;
	int r = mk_imap_client_append_write(&s->core, p, n, taken_r);
	if (r == 0) {
		s->in_append = true;
		flush(s);
	}
	return r;
}

static void on_conn_close(struct mk_conn *c, int err, const char *msg, void *ud)
{
	struct mk_imap_session *s = ud;
	s->closing = true;
	if (s->cbs.on_close)
		s->cbs.on_close(s, err, msg, s->ud);
	if (s->sasl_active)
		mk_sasl_cleanup(&s->sasl);
	mk_imap_client_cleanup(&s->core);
	mk_free(s);
}

int mk_imap_session_start(uv_loop_t *loop, const struct mk_imap_session_opts *opts,
			  const struct mk_imap_session_cbs *cbs, void *ud, struct mk_imap_session **s_r)
{
	struct mk_imap_session *s = mk_xcalloc(1, sizeof(*s));
	mk_imap_client_init(&s->core);
	s->cbs = *cbs;
	s->ud = ud;
	s->starttls = !opts->conn.implicit_tls;
	s->loop = loop;
	s->trace = opts->trace;
	s->log.account = opts->conn.log_account;
	s->log.conn_id = opts->conn.id;
	static const struct mk_conn_cbs ccbs = {on_conn_ready, on_conn_data, on_conn_close, on_conn_drain};
	int r = mk_conn_start(loop, &opts->conn, &ccbs, s, &s->conn);
	if (r < 0) {
		mk_imap_client_cleanup(&s->core);
		mk_free(s);
		return r;
	}
	*s_r = s;
	return 0;
}

int mk_imap_session_submit(struct mk_imap_session *s, const struct mk_imap_cmd *cmd, unsigned *tag_r)
{
	if (s->closing || s->phase != PH_READY)
		return MK_ESTATE;
	bool secret = cmd->kind == MK_IMAP_CMD_LOGIN || cmd->kind == MK_IMAP_CMD_AUTHENTICATE_PLAIN;
	if (secret) {
		flush(s); /* earlier commands traced normally */
		if (s->closing)
			return MK_ESTATE;
	}
	int r = mk_imap_client_submit(&s->core, cmd, tag_r);
	if (r == 0) {
		if (secret)
			s->out_secret = 1;
		flush(s);
	}
	return r;
}

int mk_imap_session_authenticate(struct mk_imap_session *s, enum mk_sasl_mech mech, const char *user,
				 const char *secret, const char *host, unsigned port, unsigned *tag_r)
{
	if (s->closing || s->phase != PH_READY || s->sasl_active)
		return MK_ESTATE;
	s->auth_error[0] = '\0';
	int r = mk_sasl_init(&s->sasl, mech, user, (const uint8_t *)secret, secret ? strlen(secret) : 0, host, port);
	if (r < 0) {
		mk_sasl_cleanup(&s->sasl);
		return r;
	}
	struct mk_buf ir;
	mk_buf_init(&ir, MK_LIMIT_SASL_LINE);
	struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_AUTHENTICATE, .a = mk_sasl_mech_name(mech)};
	if (mk_sasl_has_initial(&s->sasl)) {
		r = mk_buf_reserve(&ir, MK_LIMIT_SASL_LINE / 2, NULL);
		if (r == 0)
			r = mk_sasl_initial(&s->sasl, &ir);
		cmd.ir.p = ir.data != NULL ? ir.data : (const uint8_t *)"";
		cmd.ir.n = ir.len;
	}
	if (r == 0) {
		flush(s); /* earlier commands traced normally */
		r = s->closing ? MK_ESTATE : mk_imap_client_submit(&s->core, &cmd, tag_r);
	}
	mk_buf_cleanup_wipe(&ir);
	if (r < 0) {
		mk_sasl_cleanup(&s->sasl);
		return r;
	}
	s->sasl_active = true;
	s->auth_tag = *tag_r;
	s->out_secret = 1;
	flush(s);
	return 0;
}

const char *mk_imap_session_auth_error(const struct mk_imap_session *s)
{
	return s->auth_error;
}

bool mk_imap_session_has_cap(const struct mk_imap_session *s, const char *cap)
{
	return mk_imap_client_has_cap(&s->core, cap);
}

bool mk_imap_session_caps_known(const struct mk_imap_session *s)
{
	return s->core.caps.known;
}

void mk_imap_session_close(struct mk_imap_session *s)
{
	if (s->closing)
		return;
	s->closing = true;
	mk_conn_close(s->conn);
}

void mk_imap_session_abort(struct mk_imap_session *s, int err, const char *msg)
{
	fail(s, err, msg);
}

struct mk_conn *mk_imap_session_conn(struct mk_imap_session *s)
{
	return s->conn;
}

void mk_imap_session_idle_done(struct mk_imap_session *s)
{
	if (s->closing)
		return;
	mk_imap_client_idle_done(&s->core);
	flush(s);
}

uv_loop_t *mk_imap_session_loop(struct mk_imap_session *s)
{
	return s->loop;
}
