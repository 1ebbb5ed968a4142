/* SPDX-License-Identifier: MIT */
/*
 * fuzz_smtp.c - libFuzzer target for the SMTP submission core: reply
 * framing, multi-line replies, EHLO lists, STARTTLS, the AUTH exchange,
 * DATA streaming; and a round trip of the dot-stuffing encoder against a
 * tiny reference decoder. The first byte picks the split size and the
 * owner's choices; a typical session is submitted as the states allow.
 */
#include "mk_err.h"
#include "mk_smtp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void owner(struct mk_smtp_client *c, const struct mk_smtp_event *ev, uint8_t flags)
{
	if (ev->kind == MK_SMTP_EV_STARTTLS_READY) {
		mk_smtp_client_tls_started(c);
		struct mk_smtp_cmd e = {.kind = MK_SMTP_CMD_EHLO, .arg = "client.example"};
		(void)mk_smtp_client_submit(c, &e);
		return;
	}
	if (ev->kind == MK_SMTP_EV_AUTH_CHALLENGE) {
		(void)strlen(ev->reply.text);
		if (flags & 2)
			(void)mk_smtp_client_auth_cancel(c);
		else
			(void)mk_smtp_client_auth_respond(c, ev->challenge.p, ev->challenge.n);
		return;
	}
	(void)strlen(ev->reply.text);
	char buf[80];
	mk_smtp_reply_format(&ev->reply, buf, sizeof(buf));
	switch (ev->cmd) {
	case MK_SMTP_CMD_EHLO:
		if (!c->tls_active && mk_smtp_client_ehlo(c)->starttls) {
			struct mk_smtp_cmd s = {.kind = MK_SMTP_CMD_STARTTLS};
			(void)mk_smtp_client_submit(c, &s);
		} else if (mk_smtp_client_has_auth(c, "XOAUTH2")) {
			struct mk_smtp_cmd a = {.kind = MK_SMTP_CMD_AUTH, .mech = "XOAUTH2"};
			(void)mk_smtp_client_submit(c, &a);
		}
		/* fall through: a transaction too (queued behind) */
		/* FALLTHROUGH */
	case MK_SMTP_CMD_AUTH: {
		struct mk_smtp_cmd cmds[] = {
			{.kind = MK_SMTP_CMD_MAIL, .arg = "a@b", .size = 1234, .body_8bit = true, .smtputf8 = flags & 4},
			{.kind = MK_SMTP_CMD_RCPT, .arg = "c@d"},
			{.kind = MK_SMTP_CMD_RCPT, .arg = "e@f"},
			{.kind = MK_SMTP_CMD_DATA},
			{.kind = MK_SMTP_CMD_RSET},
			{.kind = MK_SMTP_CMD_NOOP},
		};
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			(void)mk_smtp_client_submit(c, &cmds[i]);
		break;
	}
	case MK_SMTP_CMD_DATA:
		if (mk_smtp_client_state(c) == MK_SMTP_STATE_DATA_BODY) {
			static const char body[] = "Subject: x\r\n\r\n.line\n..\r\nend\r";
			size_t taken;
			(void)mk_smtp_client_data_write(c, (const uint8_t *)body, sizeof(body) - 1, &taken);
			(void)mk_smtp_client_data_end(c);
		}
		break;
	case MK_SMTP_CMD_DATA_END: {
		struct mk_smtp_cmd q = {.kind = MK_SMTP_CMD_QUIT};
		(void)mk_smtp_client_submit(c, &q);
		break;
	}
	default:
		break;
	}
}

/* The server's view of DATA: unstuff lines up to the ".\r\n". */
static void roundtrip(const uint8_t *data, size_t size)
{
	struct mk_buf enc, norm;
	mk_buf_init(&enc, 4 * size + 16);
	mk_buf_init(&norm, 2 * size + 16);
	unsigned st = 0;
	size_t chunk = size > 0 ? (size_t)data[0] % 7 + 1 : 1;
	for (size_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (mk_smtp_dot_encode(&st, data + off, n, &enc) != 0)
			abort();
	}
	if (mk_smtp_dot_finish(&st, &enc) != 0)
		abort();
	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\r' || data[i] == '\n') {
			(void)mk_buf_append(&norm, "\r\n", 2);
			if (data[i] == '\r' && i + 1 < size && data[i + 1] == '\n')
				i++;
		} else {
			(void)mk_buf_append(&norm, &data[i], 1);
		}
	}
	if (norm.len > 0 && (norm.len < 2 || memcmp(norm.data + norm.len - 2, "\r\n", 2) != 0))
		(void)mk_buf_append(&norm, "\r\n", 2);
	/* decode */
	size_t i = 0, o = 0;
	const uint8_t *p = enc.data;
	for (;;) {
		const uint8_t *lf = memchr(p + i, '\n', enc.len - i);
		if (lf == NULL || lf == p + i || lf[-1] != '\r')
			abort(); /* every line ends in CRLF; the end is there */
		size_t l = (size_t)(lf - (p + i)) + 1;
		if (l == 3 && p[i] == '.') {
			if (i + 3 != enc.len)
				abort();
			break;
		}
		if (p[i] == '.') {
			i++;
			l--;
		} else if (memchr(p + i, '\r', l - 2) != NULL) {
			abort(); /* a bare CR inside a line */
		}
		if (o + l > norm.len || memcmp(norm.data + o, p + i, l) != 0)
			abort();
		o += l;
		i += l;
	}
	if (o != norm.len)
		abort();
	mk_buf_cleanup(&enc);
	mk_buf_cleanup(&norm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	roundtrip(data, size);
	uint8_t flags = data[0];
	size_t chunk = (size_t)(flags >> 3) % 32 + 1;
	data++;
	size--;
	struct mk_smtp_client c;
	mk_smtp_client_init(&c);
	if (flags & 1)
		mk_smtp_client_tls_started(&c);
	struct mk_smtp_cmd e = {.kind = MK_SMTP_CMD_EHLO, .arg = "client.example"};
	(void)mk_smtp_client_submit(&c, &e);
	for (size_t off = 0; off < size;) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (mk_smtp_client_feed(&c, data + off, n) < 0)
			break;
		off += n;
		struct mk_smtp_event ev;
		int r;
		while ((r = mk_smtp_client_next_event(&c, &ev)) == 1) {
			owner(&c, &ev, flags);
			struct mk_slice o = mk_smtp_client_output(&c);
			if (o.n > MK_SMTP_OUT_MAX + 64 * 1024)
				abort();
			mk_smtp_client_output_done(&c, o.n);
		}
		if (r < 0) {
			if (mk_smtp_client_next_event(&c, &ev) != r || mk_smtp_client_state(&c) != MK_SMTP_STATE_FAILED)
				abort(); /* an error is final */
			break;
		}
	}
	mk_smtp_client_cleanup(&c);
	return 0;
}
