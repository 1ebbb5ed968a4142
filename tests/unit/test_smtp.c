/* SPDX-License-Identifier: MIT */
/*
 * test_smtp.c - the SMTP submission core with scripted server transcripts
 * (OUTLOOK.md §4.1 golden transcript, a Postfix-like server, refusals),
 * plus the dot-stuffing encoder on its own. Every transcript is fed whole,
 * one byte at a time and at random splits (seed printed); all three must
 * give the same event log and the same bytes sent. The log records the
 * exact bytes released after each event ("C: ..."), so pipelining and
 * one-at-a-time sending are checked too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"
#include "mk_limits.h"
#include "mk_smtp.h"
#include "mk_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum split { WHOLE, BYTES, RANDOM };

/* What the simulated owner does (a typical outbox session). */
struct scen {
	bool implicit_tls;
	const char *token; /* AUTH XOAUTH2 (two steps) after TLS when offered */
	const char *user;
	const char *from;
	const char *rcpt[4];
	const char *body;
	uint64_t size;
	bool body_8bit;
	int messages; /* messages to send (RSET after a refused one) */
};

struct ctx {
	struct mk_smtp_client c;
	const struct scen *sc;
	struct mk_buf *log, *sent;
	struct mk_buf cur; /* released since the last log line */
	bool want_tls, authed, failed_tx;
	int chal, sent_msgs;
};

static void esc(struct mk_buf *b, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r')
			mk_buf_append_str(b, "\\r");
		else if (p[i] == '\n')
			mk_buf_append_str(b, "\\n");
		else if (p[i] >= 0x20 && p[i] < 0x7f)
			mk_buf_append(b, &p[i], 1);
		else
			mk_buf_printf(b, "\\x%02x", p[i]);
	}
}

static void take_out(struct ctx *x)
{
	struct mk_slice o = mk_smtp_client_output(&x->c);
	if (o.n == 0)
		return;
	mk_buf_append(x->sent, o.p, o.n);
	mk_buf_append(&x->cur, o.p, o.n);
	mk_smtp_client_output_done(&x->c, o.n);
}

static void flush_out(struct ctx *x)
{
	take_out(x);
	if (x->cur.len == 0)
		return;
	mk_buf_append_str(x->log, "C: ");
	if (x->cur.len > 300)
		mk_buf_printf(x->log, "<%zu bytes>", x->cur.len);
	else
		esc(x->log, x->cur.data, x->cur.len);
	mk_buf_append_str(x->log, "\n");
	mk_buf_reset(&x->cur);
}

static void submit(struct ctx *x, struct mk_smtp_cmd cmd)
{
	int r = mk_smtp_client_submit(&x->c, &cmd);
	if (r != 0)
		mk_buf_printf(x->log, "SUBMIT %s %s\n", mk_smtp_cmd_name(cmd.kind), mk_err_name(r));
}

static void start_tx(struct ctx *x)
{
	const struct scen *sc = x->sc;
	if (sc->from == NULL || x->sent_msgs >= sc->messages) {
		submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_QUIT});
		return;
	}
	x->sent_msgs++;
	submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_MAIL, .arg = sc->from, .size = sc->size,
				       .body_8bit = sc->body_8bit});
	for (int i = 0; i < 4 && sc->rcpt[i] != NULL; i++)
		submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_RCPT, .arg = sc->rcpt[i]});
	submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_DATA});
}

static void write_body(struct ctx *x)
{
	const uint8_t *p = (const uint8_t *)x->sc->body;
	size_t n = strlen(x->sc->body);
	while (n > 0) {
		size_t taken;
		assert_int_equal(mk_smtp_client_data_write(&x->c, p, n, &taken), 0);
		if (taken == 0)
			take_out(x); /* back-pressure: drain, then write more */
		p += taken;
		n -= taken;
	}
	assert_int_equal(mk_smtp_client_data_end(&x->c), 0);
}

static void react(struct ctx *x, const struct mk_smtp_event *ev)
{
	const struct scen *sc = x->sc;
	int code = ev->reply.code;
	if (ev->kind == MK_SMTP_EV_STARTTLS_READY) {
		x->want_tls = true; /* at the end of the clear segment */
		return;
	}
	if (ev->kind == MK_SMTP_EV_AUTH_CHALLENGE) {
		if (x->chal++ == 0) {
			/* XOAUTH2 raw response (OUTLOOK.md §1.2) */
			struct mk_buf raw;
			mk_buf_init(&raw, 64 * 1024);
			mk_buf_printf(&raw, "user=%s\x01" "auth=Bearer %s\x01\x01", sc->user, sc->token);
			assert_int_equal(mk_smtp_client_auth_respond(&x->c, raw.data, raw.len), 0);
			mk_buf_cleanup_wipe(&raw);
		} else {
			assert_int_equal(mk_smtp_client_auth_respond(&x->c, NULL, 0), 0);
		}
		return;
	}
	switch (ev->cmd) {
	case MK_SMTP_CMD_GREETING:
		if (code == 220)
			submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_EHLO, .arg = "client.example"});
		break;
	case MK_SMTP_CMD_EHLO:
	case MK_SMTP_CMD_HELO:
		if (code / 100 != 2 && ev->cmd == MK_SMTP_CMD_EHLO)
			submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_HELO, .arg = "client.example"});
		else if (code / 100 != 2)
			submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_QUIT});
		else if (!x->c.tls_active && mk_smtp_client_ehlo(&x->c)->starttls)
			submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_STARTTLS});
		else if (sc->token != NULL && !x->authed && mk_smtp_client_has_auth(&x->c, "XOAUTH2"))
			submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_AUTH, .mech = "XOAUTH2"});
		else
			start_tx(x);
		break;
	case MK_SMTP_CMD_AUTH:
		x->authed = code == 235;
		if (x->authed)
			start_tx(x);
		else
			submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_QUIT});
		break;
	case MK_SMTP_CMD_DATA:
		if (code == 354) {
			write_body(x);
		} else {
			submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_RSET});
			start_tx(x);
		}
		break;
	case MK_SMTP_CMD_DATA_END:
		if (code / 100 != 2)
			submit(x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_RSET});
		start_tx(x);
		break;
	default:
		break;
	}
}

static int drain(struct ctx *x)
{
	struct mk_smtp_event ev;
	int r;
	flush_out(x);
	while ((r = mk_smtp_client_next_event(&x->c, &ev)) == 1) {
		const char *kind = ev.kind == MK_SMTP_EV_REPLY		 ? "REPLY"
				   : ev.kind == MK_SMTP_EV_AUTH_CHALLENGE ? "CHALLENGE"
									  : "STARTTLS_READY";
		mk_buf_printf(x->log, "S: %s %s %d [%s] ", kind, mk_smtp_cmd_name(ev.cmd), ev.reply.code, ev.reply.enh);
		esc(x->log, (const uint8_t *)ev.reply.text, strlen(ev.reply.text));
		if (ev.kind == MK_SMTP_EV_AUTH_CHALLENGE) {
			mk_buf_append_str(x->log, " -> ");
			esc(x->log, ev.challenge.p, ev.challenge.n);
		}
		mk_buf_append_str(x->log, "\n");
		react(x, &ev);
		flush_out(x);
	}
	return r;
}

static int run(const char *const *segs, size_t nsegs, enum split how, unsigned seed, const struct scen *sc,
	       struct mk_buf *log, struct mk_buf *sent)
{
	struct ctx x;
	memset(&x, 0, sizeof(x));
	x.sc = sc;
	x.log = log;
	x.sent = sent;
	mk_buf_init(&x.cur, 1 << 24);
	mk_smtp_client_init(&x.c);
	if (sc->implicit_tls)
		mk_smtp_client_tls_started(&x.c);
	srand(seed);
	int status = 0;
	for (size_t s = 0; s < nsegs && status == 0; s++) {
		if (x.want_tls) {
			/* the handshake happened: the rest arrives through TLS */
			x.want_tls = false;
			mk_smtp_client_tls_started(&x.c);
			mk_buf_append_str(log, "TLS\n");
			submit(&x, (struct mk_smtp_cmd){.kind = MK_SMTP_CMD_EHLO, .arg = "client.example"});
			flush_out(&x);
		}
		const char *in = segs[s];
		size_t inlen = strlen(in), off = 0;
		while (off < inlen) {
			size_t n = inlen - off;
			if (how == BYTES)
				n = 1;
			else if (how == RANDOM)
				n = 1 + (size_t)rand() % (n < 40 ? n : 40);
			int r = mk_smtp_client_feed(&x.c, (const uint8_t *)in + off, n);
			off += n;
			if (r < 0) {
				status = r;
				break;
			}
			status = drain(&x);
			if (status < 0)
				break;
		}
	}
	if (status < 0)
		mk_buf_printf(log, "ERROR %s: %s\n", mk_err_name(status), mk_smtp_client_error(&x.c));
	mk_smtp_client_cleanup(&x.c);
	mk_smtp_client_cleanup(&x.c); /* idempotent */
	mk_buf_cleanup(&x.cur);
	return status;
}

/* Runs the three splits; returns the bytes sent (caller frees). */
static char *check3(const char *const *segs, size_t nsegs, const struct scen *sc, const char *expect)
{
	unsigned seed = (unsigned)time(NULL);
	struct mk_buf logs[3], sents[3];
	for (int i = 0; i < 3; i++) {
		mk_buf_init(&logs[i], 1 << 24);
		mk_buf_init(&sents[i], 1 << 24);
		mk_buf_append(&logs[i], "", 0);
		mk_buf_append(&sents[i], "", 0);
		run(segs, nsegs, (enum split)i, seed, sc, &logs[i], &sents[i]);
	}
	if (expect != NULL && strcmp((char *)logs[0].data, expect) != 0)
		fprintf(stderr, "got:\n%s\nexpected:\n%s\n", logs[0].data, expect);
	if (expect != NULL)
		assert_string_equal((char *)logs[0].data, expect);
	for (int i = 1; i < 3; i++) {
		if (strcmp((char *)logs[0].data, (char *)logs[i].data) != 0)
			fprintf(stderr, "split mode %d (seed %u) differs:\n%s\nvs whole:\n%s\n", i, seed,
				logs[i].data, logs[0].data);
		assert_string_equal((char *)logs[0].data, (char *)logs[i].data);
		assert_int_equal(sents[0].len, sents[i].len);
		assert_memory_equal(sents[0].data, sents[i].data, sents[0].len);
	}
	for (int i = 0; i < 3; i++)
		mk_buf_cleanup(&logs[i]);
	mk_buf_cleanup(&sents[1]);
	mk_buf_cleanup(&sents[2]);
	return mk_buf_take(&sents[0], NULL);
}

/* ---- OUTLOOK.md §4.1 ---- */

#define OUTLOOK_GREETING                                                                                               \
	"220 SY5P282CA0097.outlook.office365.com Microsoft ESMTP MAIL Service ready at Sun, 23 Nov 2025 11:12:20 "     \
	"+0000 [08DE2A6028D26C22]\r\n"
#define OUTLOOK_EHLO1                                                                                                  \
	"250-SY5P282CA0097.outlook.office365.com Hello [172.105.184.101]\r\n250-SIZE 157286400\r\n250-PIPELINING\r\n"  \
	"250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n"     \
	"250 SMTPUTF8\r\n"
#define OUTLOOK_EHLO2                                                                                                  \
	"250-SY5P282CA0097.outlook.office365.com Hello [172.105.184.101]\r\n250-SIZE 157286400\r\n250-PIPELINING\r\n"  \
	"250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-AUTH LOGIN XOAUTH2\r\n250-8BITMIME\r\n250-BINARYMIME\r\n"           \
	"250-CHUNKING\r\n250 SMTPUTF8\r\n"

static char *make_token(size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";
	char *t = mk_xmalloc(n + 1);
	for (size_t i = 0; i < n; i++)
		t[i] = a[(i * 7 + i / 3) % (sizeof(a) - 1)];
	memcpy(t, "EwB", 3);
	t[n] = '\0';
	return t;
}

static void test_outlook_golden(void **state)
{
	(void)state;
	char *token = make_token(16 * 1024);
	const char *segs[] = {
		OUTLOOK_GREETING OUTLOOK_EHLO1 "220 2.0.0 SMTP server ready\r\n",
		OUTLOOK_EHLO2 "334 \r\n235 2.7.0 Authentication successful\r\n250 2.1.0 Sender OK\r\n"
			      "250 2.1.5 Recipient OK\r\n354 Start mail input; end with <CRLF>.<CRLF>\r\n"
			      "250 2.0.0 OK <new@x> [Hostname=SYBP282MB2635.AUSP282.PROD.OUTLOOK.COM]\r\n"
			      "221 2.0.0 Service closing transmission channel\r\n",
	};
	struct scen sc = {.token = token,
			  .user = "user@outlook.com",
			  .from = "user@outlook.com",
			  .rcpt = {"rcpt@example.org"},
			  .body = "Subject: hi\n\n.hidden\nbye",
			  .size = 123,
			  .body_8bit = true,
			  .messages = 1};
	char *sent = check3(
		segs, 2, &sc,
		"S: REPLY GREETING 220 [] SY5P282CA0097.outlook.office365.com Microsoft ESMTP MAIL Service ready at Sun, "
		"23 Nov 2025 11:12:20 +0000 [08DE2A6028D26C22]\n"
		"C: EHLO client.example\\r\\n\n"
		"S: REPLY EHLO 250 [] SY5P282CA0097.outlook.office365.com Hello [172.105.184.101]\\nSIZE 157286400\\n"
		"PIPELINING\\nDSN\\nENHANCEDSTATUSCODES\\nSTARTTLS\\n8BITMIME\\nBINARYMIME\\nCHUNKING\\nSMTPUTF8\n"
		"C: STARTTLS\\r\\n\n"
		"S: STARTTLS_READY STARTTLS 220 [2.0.0] SMTP server ready\n"
		"TLS\n"
		"C: EHLO client.example\\r\\n\n"
		"S: REPLY EHLO 250 [] SY5P282CA0097.outlook.office365.com Hello [172.105.184.101]\\nSIZE 157286400\\n"
		"PIPELINING\\nDSN\\nENHANCEDSTATUSCODES\\nAUTH LOGIN XOAUTH2\\n8BITMIME\\nBINARYMIME\\nCHUNKING\\nSMTPUTF8\n"
		"C: AUTH XOAUTH2\\r\\n\n"
		"S: CHALLENGE AUTH 334 []  -> \n"
		"C: <21898 bytes>\n"
		"S: REPLY AUTH 235 [2.7.0] Authentication successful\n"
		"C: MAIL FROM:<user@outlook.com> SIZE=123 BODY=8BITMIME\\r\\nRCPT TO:<rcpt@example.org>\\r\\nDATA\\r\\n\n"
		"S: REPLY MAIL 250 [2.1.0] Sender OK\n"
		"S: REPLY RCPT 250 [2.1.5] Recipient OK\n"
		"S: REPLY DATA 354 [] Start mail input; end with <CRLF>.<CRLF>\n"
		"C: Subject: hi\\r\\n\\r\\n..hidden\\r\\nbye\\r\\n.\\r\\n\n"
		"S: REPLY DATA-END 250 [2.0.0] OK <new@x> [Hostname=SYBP282MB2635.AUSP282.PROD.OUTLOOK.COM]\n"
		"C: QUIT\\r\\n\n"
		"S: REPLY QUIT 221 [2.0.0] Service closing transmission channel\n");
	/* the exact AUTH line: base64 of the XOAUTH2 string, one line */
	const char *a = strstr(sent, "AUTH XOAUTH2\r\n");
	assert_non_null(a);
	a += 14;
	const char *e = strstr(a, "\r\n");
	char *raw = mk_xmalloc(32 * 1024);
	long d = mk_base64_decode(a, (size_t)(e - a), raw, 32 * 1024);
	assert_int_equal(d, 5 + 16 + 13 + 16 * 1024 + 2);
	assert_memory_equal(raw, "user=user@outlook.com\x01" "auth=Bearer EwB", 37);
	assert_memory_equal(raw + d - 2, "\x01\x01", 2);
	mk_free(raw);
	mk_free(sent);
	mk_free(token);
}

static void test_ehlo_parse(void **state)
{
	(void)state;
	struct mk_smtp_client c;
	struct mk_smtp_event ev;
	mk_smtp_client_init(&c);
	const char *in = OUTLOOK_GREETING OUTLOOK_EHLO1 "220 2.0.0 SMTP server ready\r\n";
	assert_int_equal(mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in)), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	struct mk_smtp_cmd ehlo = {.kind = MK_SMTP_CMD_EHLO, .arg = "client.example"};
	assert_int_equal(mk_smtp_client_submit(&c, &ehlo), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.reply.lines, 10);
	const struct mk_smtp_ehlo *e = mk_smtp_client_ehlo(&c);
	assert_true(e->known && e->pipelining && e->starttls && e->eightbitmime && e->smtputf8 && e->chunking &&
		    e->dsn && e->enhancedstatuscodes && e->binarymime && e->size_offered);
	assert_int_equal(e->size, 157286400);
	assert_string_equal(e->auth, "");
	assert_false(mk_smtp_client_has_auth(&c, "XOAUTH2"));
	/* AUTH refused in clear, whatever the server offers */
	struct mk_smtp_cmd auth = {.kind = MK_SMTP_CMD_AUTH, .mech = "XOAUTH2"};
	assert_int_equal(mk_smtp_client_submit(&c, &auth), MK_ESTATE);
	struct mk_smtp_cmd stls = {.kind = MK_SMTP_CMD_STARTTLS};
	assert_int_equal(mk_smtp_client_submit(&c, &stls), 0);
	assert_int_equal(mk_smtp_client_submit(&c, &ehlo), MK_ESTATE); /* nothing after STARTTLS */
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.kind, MK_SMTP_EV_STARTTLS_READY);
	assert_int_equal(mk_smtp_client_state(&c), MK_SMTP_STATE_STARTTLS);
	assert_int_equal(mk_smtp_client_submit(&c, &ehlo), MK_ESTATE);
	mk_smtp_client_tls_started(&c);
	/* RFC 3207 §4.2: forgotten */
	assert_false(e->known || e->pipelining || e->starttls || e->size_offered);
	assert_int_equal(mk_smtp_client_submit(&c, &stls), MK_ESTATE); /* TLS already on */
	assert_int_equal(mk_smtp_client_submit(&c, &ehlo), 0);
	in = OUTLOOK_EHLO2;
	assert_int_equal(mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in)), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_string_equal(e->auth, "LOGIN XOAUTH2");
	assert_true(mk_smtp_client_has_auth(&c, "xoauth2"));
	assert_true(mk_smtp_client_has_auth(&c, "LOGIN"));
	assert_false(mk_smtp_client_has_auth(&c, "PLAIN"));
	assert_false(mk_smtp_client_has_auth(&c, "XOAUTH"));
	assert_false(e->starttls);
	mk_smtp_client_cleanup(&c);

	/* Postfix-like list: both AUTH forms, lower case, SIZE without a number */
	mk_smtp_client_init(&c);
	mk_smtp_client_tls_started(&c);
	in = "220 mail.example.org ESMTP Postfix (Debian/GNU)\n"
	     "250-mail.example.org\n250-pipelining\n250-SIZE\n250-VRFY\n250-ETRN\n250-AUTH PLAIN LOGIN\n"
	     "250-AUTH=PLAIN LOGIN CRAM-MD5\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250-DSN\n250 CHUNKING\n";
	assert_int_equal(mk_smtp_client_submit(&c, &ehlo), 0); /* queued behind the greeting */
	assert_int_equal(mk_smtp_client_output(&c).n, 0);
	assert_int_equal(mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in)), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.cmd, MK_SMTP_CMD_GREETING);
	assert_int_equal(mk_smtp_client_output(&c).n, strlen("EHLO client.example\r\n"));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_true(e->pipelining && e->size_offered && !e->smtputf8 && !e->starttls);
	assert_int_equal(e->size, 0);
	assert_string_equal(e->auth, "PLAIN LOGIN CRAM-MD5");
	struct mk_smtp_cmd mail = {.kind = MK_SMTP_CMD_MAIL, .arg = "a@b", .size = 10, .smtputf8 = true};
	assert_int_equal(mk_smtp_client_submit(&c, &mail), MK_ENOTSUP);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 0);
	mk_smtp_client_cleanup(&c);
}

static void test_postfix_transaction(void **state)
{
	(void)state;
	/* RCPT refusals (5xx and 4xx) do not stop the transaction; bare LF
	 * line ends are tolerated */
	const char *segs[] = {"220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n"
			      "250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n"
			      "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 DSN\r\n"
			      "250 2.1.0 Ok\n"
			      "250 2.1.5 Ok\r\n"
			      "550 5.1.1 <x@example.org>: Recipient address rejected: User unknown in virtual mailbox table\r\n"
			      "450 4.2.0 <g@example.org>: Recipient address rejected: Greylisted\r\n"
			      "354 End data with <CR><LF>.<CR><LF>\r\n"
			      "250 2.0.0 Ok: queued as 4ABCD1234\r\n"
			      "221 2.0.0 Bye\r\n"};
	struct scen sc = {.implicit_tls = true,
			  .from = "",
			  .rcpt = {"a@example.org", "x@example.org", "g@example.org"},
			  .body = "",
			  .size = 5000,
			  .messages = 1};
	char *sent = check3(
		segs, 1, &sc,
		"S: REPLY GREETING 220 [] mail.example.org ESMTP Postfix (Debian/GNU)\n"
		"C: EHLO client.example\\r\\n\n"
		"S: REPLY EHLO 250 [] mail.example.org\\nPIPELINING\\nSIZE 10240000\\nAUTH PLAIN LOGIN\\n"
		"ENHANCEDSTATUSCODES\\n8BITMIME\\nDSN\n"
		"C: MAIL FROM:<> SIZE=5000\\r\\nRCPT TO:<a@example.org>\\r\\nRCPT TO:<x@example.org>\\r\\n"
		"RCPT TO:<g@example.org>\\r\\nDATA\\r\\n\n"
		"S: REPLY MAIL 250 [2.1.0] Ok\n"
		"S: REPLY RCPT 250 [2.1.5] Ok\n"
		"S: REPLY RCPT 550 [5.1.1] <x@example.org>: Recipient address rejected: User unknown in virtual "
		"mailbox table\n"
		"S: REPLY RCPT 450 [4.2.0] <g@example.org>: Recipient address rejected: Greylisted\n"
		"S: REPLY DATA 354 [] End data with <CR><LF>.<CR><LF>\n"
		"C: .\\r\\n\n"
		"S: REPLY DATA-END 250 [2.0.0] Ok: queued as 4ABCD1234\n"
		"C: QUIT\\r\\n\n"
		"S: REPLY QUIT 221 [2.0.0] Bye\n");
	mk_free(sent);
}

static void test_no_pipelining_one_by_one(void **state)
{
	(void)state;
	const char *segs[] = {"220 hi\r\n250-hi\r\n250-SIZE 100000\r\n250 8BITMIME\r\n"
			      "250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n"};
	struct scen sc = {.implicit_tls = true,
			  .from = "a@b",
			  .rcpt = {"c@d"},
			  .body = "x\r\n",
			  .size = 123,
			  .body_8bit = true,
			  .messages = 1};
	char *sent = check3(segs, 1, &sc,
			    "S: REPLY GREETING 220 [] hi\nC: EHLO client.example\\r\\n\n"
			    "S: REPLY EHLO 250 [] hi\\nSIZE 100000\\n8BITMIME\n"
			    "C: MAIL FROM:<a@b> SIZE=123 BODY=8BITMIME\\r\\n\n"
			    "S: REPLY MAIL 250 [] ok\nC: RCPT TO:<c@d>\\r\\n\n"
			    "S: REPLY RCPT 250 [] ok\nC: DATA\\r\\n\n"
			    "S: REPLY DATA 354 [] go\nC: x\\r\\n.\\r\\n\n"
			    "S: REPLY DATA-END 250 [] queued\nC: QUIT\\r\\n\n"
			    "S: REPLY QUIT 221 [] bye\n");
	mk_free(sent);
}

static void test_pipelined_bytes(void **state)
{
	(void)state;
	for (int pipe = 0; pipe < 2; pipe++) {
		struct mk_smtp_client c;
		struct mk_smtp_event ev;
		mk_smtp_client_init(&c);
		mk_smtp_client_tls_started(&c);
		const char *in = pipe ? "220 x\r\n250-x\r\n250-SIZE\r\n250-8BITMIME\r\n250 PIPELINING\r\n"
				      : "220 x\r\n250-x\r\n250-SIZE\r\n250 8BITMIME\r\n";
		struct mk_smtp_cmd ehlo = {.kind = MK_SMTP_CMD_EHLO, .arg = "h"};
		mk_smtp_client_submit(&c, &ehlo);
		mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
		while (mk_smtp_client_next_event(&c, &ev) == 1)
			;
		struct mk_slice o = mk_smtp_client_output(&c);
		mk_smtp_client_output_done(&c, o.n);
		struct mk_smtp_cmd cmds[] = {
			{.kind = MK_SMTP_CMD_MAIL, .arg = "a@b", .size = 123, .body_8bit = true},
			{.kind = MK_SMTP_CMD_RCPT, .arg = "c@d"},
			{.kind = MK_SMTP_CMD_DATA},
			{.kind = MK_SMTP_CMD_QUIT},
		};
		for (int i = 0; i < 4; i++)
			assert_int_equal(mk_smtp_client_submit(&c, &cmds[i]), 0);
		assert_int_equal(mk_smtp_client_pending(&c), 4);
		const char *want = pipe ? "MAIL FROM:<a@b> SIZE=123 BODY=8BITMIME\r\nRCPT TO:<c@d>\r\nDATA\r\n"
					: "MAIL FROM:<a@b> SIZE=123 BODY=8BITMIME\r\n";
		o = mk_smtp_client_output(&c);
		assert_int_equal(o.n, strlen(want));
		assert_memory_equal(o.p, want, o.n);
		mk_smtp_client_output_done(&c, o.n);
		if (pipe) {
			/* DATA refused: the QUIT queued behind it goes out */
			in = "250 ok\r\n250 ok\r\n554 5.5.1 Error: no valid recipients\r\n";
			mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
			while (mk_smtp_client_next_event(&c, &ev) == 1)
				;
			o = mk_smtp_client_output(&c);
			assert_int_equal(o.n, 6);
			assert_memory_equal(o.p, "QUIT\r\n", 6);
		}
		mk_smtp_client_cleanup(&c);
	}
}

static void test_multiline_and_format(void **state)
{
	(void)state;
	const char *segs[] = {"220-first\r\n220-second\r\n220 third\r\n250 ok\r\n"
			      "550-5.7.1 line one\r\n550-5.7.1 line two\r\n550 5.7.1 line three\r\n221 bye\r\n"};
	struct scen sc = {.implicit_tls = true, .from = "a@b", .rcpt = {NULL}, .body = "", .messages = 1};
	/* no RCPT; MAIL refused with a three-line reply, DATA answered 221:
	 * only the split independence is checked here */
	char *sent = check3(segs, 1, &sc, NULL);
	mk_free(sent);
	struct mk_smtp_client c;
	struct mk_smtp_event ev;
	mk_smtp_client_init(&c);
	const char *in = "220-first\r\n220-second\r\n220 third\r\n250 ok\r\n"
			 "550-5.7.1 line one\r\n550-5.7.1 line two\r\n550 5.7.1 line three\r\n";
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_string_equal(ev.reply.text, "first\nsecond\nthird");
	assert_int_equal(ev.reply.lines, 3);
	struct mk_smtp_cmd helo = {.kind = MK_SMTP_CMD_HELO, .arg = "[192.0.2.1]"};
	struct mk_smtp_cmd mail = {.kind = MK_SMTP_CMD_MAIL, .arg = "a@b", .size = 9, .body_8bit = true};
	assert_int_equal(mk_smtp_client_submit(&c, &helo), 0);
	assert_int_equal(mk_smtp_client_submit(&c, &mail), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.cmd, MK_SMTP_CMD_HELO);
	assert_true(mk_smtp_client_ehlo(&c)->known);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.cmd, MK_SMTP_CMD_MAIL);
	assert_int_equal(ev.reply.code, 550);
	assert_string_equal(ev.reply.enh, "5.7.1");
	assert_string_equal(ev.reply.text, "line one\nline two\nline three");
	char buf[64];
	mk_smtp_reply_format(&ev.reply, buf, sizeof(buf));
	assert_string_equal(buf, "550 5.7.1 line one / line two / line three");
	mk_smtp_reply_format(&ev.reply, buf, 12);
	assert_string_equal(buf, "550 5.7.1 l");
	/* HELO server: no extensions, so no SIZE/BODY parameters */
	struct mk_slice o = mk_smtp_client_output(&c);
	assert_int_equal(o.n, strlen("HELO [192.0.2.1]\r\nMAIL FROM:<a@b>\r\n"));
	assert_memory_equal(o.p, "HELO [192.0.2.1]\r\nMAIL FROM:<a@b>\r\n", o.n);
	struct mk_smtp_reply r = {.code = 250, .text = ""};
	mk_smtp_reply_format(&r, buf, sizeof(buf));
	assert_string_equal(buf, "250");
	/* enhanced codes only in their exact shape */
	in = "250 2.1.0\r\n";
	assert_int_equal(mk_smtp_client_submit(&c, &mail), 0);
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_string_equal(ev.reply.enh, "2.1.0");
	assert_string_equal(ev.reply.text, "");
	const char *bad[] = {"250 2.1.0x ok\r\n", "250 2.1000.0 ok\r\n", "250 2..0 ok\r\n", "250 22.1.0 ok\r\n",
			     "250 2.1.0.5 ok\r\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(mk_smtp_client_submit(&c, &mail), 0);
		mk_smtp_client_feed(&c, (const uint8_t *)bad[i], strlen(bad[i]));
		assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
		assert_string_equal(ev.reply.enh, "");
		assert_memory_equal(ev.reply.text, bad[i] + 4, strlen(bad[i]) - 6);
	}
	mk_smtp_client_cleanup(&c);
}

static void test_sendas_denied_and_rset(void **state)
{
	(void)state;
	const char *segs[] = {
		"220 x\r\n250-x\r\n250 PIPELINING\r\n250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 go\r\n"
		"554 5.2.252 SendAsDenied; a@x not allowed to send as b@x; "
		"STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied\r\n"
		"250 2.0.0 Resetting\r\n250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 go\r\n"
		"250 2.0.0 OK <id@x>\r\n221 2.0.0 bye\r\n"};
	struct scen sc = {.implicit_tls = true, .from = "b@x", .rcpt = {"r@y"}, .body = "..\r\n.", .messages = 2};
	char *sent = check3(segs, 1, &sc,
			    "S: REPLY GREETING 220 [] x\nC: EHLO client.example\\r\\n\n"
			    "S: REPLY EHLO 250 [] x\\nPIPELINING\n"
			    "C: MAIL FROM:<b@x>\\r\\nRCPT TO:<r@y>\\r\\nDATA\\r\\n\n"
			    "S: REPLY MAIL 250 [2.1.0] Sender OK\nS: REPLY RCPT 250 [2.1.5] Recipient OK\n"
			    "S: REPLY DATA 354 [] go\nC: ...\\r\\n..\\r\\n.\\r\\n\n"
			    "S: REPLY DATA-END 554 [5.2.252] SendAsDenied; a@x not allowed to send as b@x; "
			    "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied\n"
			    "C: RSET\\r\\nMAIL FROM:<b@x>\\r\\nRCPT TO:<r@y>\\r\\nDATA\\r\\n\n"
			    "S: REPLY RSET 250 [2.0.0] Resetting\nS: REPLY MAIL 250 [2.1.0] Sender OK\n"
			    "S: REPLY RCPT 250 [2.1.5] Recipient OK\nS: REPLY DATA 354 [] go\n"
			    "C: ...\\r\\n..\\r\\n.\\r\\n\n"
			    "S: REPLY DATA-END 250 [2.0.0] OK <id@x>\nC: QUIT\\r\\n\n"
			    "S: REPLY QUIT 221 [2.0.0] bye\n");
	mk_free(sent);
}

static void test_421(void **state)
{
	(void)state;
	/* unsolicited, nothing pending */
	struct scen idle = {.implicit_tls = true};
	const char *s1[] = {"220 x\r\n250 x\r\n"};
	struct scen none = {.implicit_tls = true, .from = NULL};
	char *sent = check3(s1, 1, &none, NULL);
	mk_free(sent);
	struct mk_smtp_client c;
	struct mk_smtp_event ev;
	mk_smtp_client_init(&c);
	const char *in = "220 x\r\n421-4.3.2 Service shutting down\r\n421 4.3.2 closing\r\n";
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.cmd, MK_SMTP_CMD_NONE);
	assert_int_equal(ev.reply.code, 421);
	assert_string_equal(ev.reply.enh, "4.3.2");
	assert_string_equal(ev.reply.text, "Service shutting down\nclosing");
	assert_int_equal(mk_smtp_client_state(&c), MK_SMTP_STATE_QUIT);
	struct mk_smtp_cmd q = {.kind = MK_SMTP_CMD_QUIT};
	assert_int_equal(mk_smtp_client_submit(&c, &q), MK_ESTATE);
	mk_smtp_client_cleanup(&c);
	/* as the reply to MAIL, with the rest queued: nothing more is sent */
	const char *s2[] = {"220 x\r\n250 x\r\n421 4.4.2 Message submission rate for this client has exceeded the "
			    "configured limit\r\n"};
	struct scen sc = {.implicit_tls = true, .from = "a@b", .rcpt = {"c@d"}, .body = "", .messages = 1};
	sent = check3(s2, 1, &sc,
		      "S: REPLY GREETING 220 [] x\nC: EHLO client.example\\r\\n\nS: REPLY EHLO 250 [] x\n"
		      "C: MAIL FROM:<a@b>\\r\\n\n"
		      "S: REPLY MAIL 421 [4.4.2] Message submission rate for this client has exceeded the "
		      "configured limit\n");
	assert_string_equal(sent, "EHLO client.example\r\nMAIL FROM:<a@b>\r\n");
	mk_free(sent);
	/* during the message body */
	mk_smtp_client_init(&c);
	mk_smtp_client_tls_started(&c);
	in = "220 x\r\n250 x\r\n354 go\r\n";
	struct mk_smtp_cmd cmds[] = {{.kind = MK_SMTP_CMD_EHLO, .arg = "h"}, {.kind = MK_SMTP_CMD_DATA}};
	mk_smtp_client_submit(&c, &cmds[0]);
	mk_smtp_client_submit(&c, &cmds[1]);
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	while (mk_smtp_client_next_event(&c, &ev) == 1)
		;
	assert_int_equal(mk_smtp_client_state(&c), MK_SMTP_STATE_DATA_BODY);
	assert_int_equal(mk_smtp_client_submit(&c, &q), MK_ESTATE);
	in = "250 early\r\n";
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), MK_EPROTO);
	assert_non_null(strstr(mk_smtp_client_error(&c), "no command waiting"));
	assert_int_equal(mk_smtp_client_feed(&c, (const uint8_t *)"x", 1), MK_EPROTO);
	mk_smtp_client_cleanup(&c);
	(void)idle;
}

static void test_starttls_injection(void **state)
{
	(void)state;
	struct scen sc = {.from = "a@b", .rcpt = {"c@d"}, .body = "", .messages = 1};
	/* the injected reply arrives with the 220: refused before the event */
	struct mk_smtp_client c;
	struct mk_smtp_event ev;
	struct mk_smtp_cmd stls = {.kind = MK_SMTP_CMD_STARTTLS};
	mk_smtp_client_init(&c);
	const char *in = "220 x\r\n";
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(mk_smtp_client_submit(&c, &stls), 0);
	in = "220 2.0.0 go ahead\r\n250-x\r\n250 AUTH PLAIN\r\n";
	assert_int_equal(mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in)), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), MK_EPROTO);
	assert_non_null(strstr(mk_smtp_client_error(&c), "STARTTLS"));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), MK_EPROTO); /* final */
	assert_int_equal(mk_smtp_client_state(&c), MK_SMTP_STATE_FAILED);
	mk_smtp_client_cleanup(&c);
	/* in a later read, before the owner started TLS */
	mk_smtp_client_init(&c);
	in = "220 x\r\n";
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(mk_smtp_client_submit(&c, &stls), 0);
	in = "220 2.0.0 go ahead\r\n";
	assert_int_equal(mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in)), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.kind, MK_SMTP_EV_STARTTLS_READY);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 0);
	assert_int_equal(mk_smtp_client_feed(&c, (const uint8_t *)"2", 1), MK_EPROTO);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), MK_EPROTO);
	mk_smtp_client_cleanup(&c);
	char *sent;
	/* 454: no TLS; the owner decides (here: nothing in clear but QUIT) */
	const char *s2[] = {"220 x\r\n250-x\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n"};
	sent = check3(s2, 1, &sc,
		      "S: REPLY GREETING 220 [] x\nC: EHLO client.example\\r\\n\n"
		      "S: REPLY EHLO 250 [] x\\nSTARTTLS\nC: STARTTLS\\r\\n\n"
		      "S: REPLY STARTTLS 454 [4.7.0] TLS not available\n");
	mk_free(sent);
}

static void test_auth_exchanges(void **state)
{
	(void)state;
	struct mk_smtp_client c;
	struct mk_smtp_event ev;
	mk_smtp_client_init(&c);
	const char *in = "220 x\r\n";
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	struct mk_smtp_cmd login = {.kind = MK_SMTP_CMD_AUTH, .mech = "login"};
	assert_int_equal(mk_smtp_client_submit(&c, &login), MK_ESTATE); /* not in clear */
	mk_smtp_client_tls_started(&c);
	assert_int_equal(mk_smtp_client_auth_respond(&c, (const uint8_t *)"x", 1), MK_ESTATE);
	assert_int_equal(mk_smtp_client_auth_cancel(&c), MK_ESTATE);
	struct mk_smtp_cmd badm = {.kind = MK_SMTP_CMD_AUTH, .mech = "X OAUTH"};
	assert_int_equal(mk_smtp_client_submit(&c, &badm), MK_EINVAL);
	assert_int_equal(mk_smtp_client_submit(&c, &login), 0);
	struct mk_smtp_cmd mail = {.kind = MK_SMTP_CMD_MAIL, .arg = "a@b"};
	assert_int_equal(mk_smtp_client_submit(&c, &mail), 0); /* waits behind AUTH */
	in = "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n334 not base64!\r\n535 5.7.3 Authentication unsuccessful\r\n";
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.kind, MK_SMTP_EV_AUTH_CHALLENGE);
	assert_int_equal(ev.challenge.n, 9);
	assert_memory_equal(ev.challenge.p, "Username:", 9);
	assert_int_equal(mk_smtp_client_state(&c), MK_SMTP_STATE_AUTH);
	assert_int_equal(mk_smtp_client_auth_respond(&c, (const uint8_t *)"u", 1), 0);
	assert_int_equal(mk_smtp_client_auth_respond(&c, (const uint8_t *)"u", 1), MK_ESTATE);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_memory_equal(ev.challenge.p, "Password:", 9);
	assert_int_equal(mk_smtp_client_auth_respond(&c, (const uint8_t *)"pw", 2), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.kind, MK_SMTP_EV_AUTH_CHALLENGE);
	assert_int_equal(ev.challenge.n, 11);
	assert_memory_equal(ev.challenge.p, "not base64!", 11);
	assert_int_equal(mk_smtp_client_auth_cancel(&c), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.kind, MK_SMTP_EV_REPLY);
	assert_int_equal(ev.cmd, MK_SMTP_CMD_AUTH);
	assert_int_equal(ev.reply.code, 535);
	assert_int_equal(mk_smtp_client_state(&c), MK_SMTP_STATE_READY);
	struct mk_slice o = mk_smtp_client_output(&c);
	const char *want = "AUTH LOGIN\r\ndQ==\r\ncHc=\r\n*\r\nMAIL FROM:<a@b>\r\n";
	assert_int_equal(o.n, strlen(want));
	assert_memory_equal(o.p, want, o.n);
	/* sent bytes are wiped from memory */
	const uint8_t *base = o.p;
	mk_smtp_client_output_done(&c, o.n);
	for (size_t i = 0; i < strlen(want); i++)
		assert_int_equal(base[i], 0);
	/* initial responses: base64, and "=" for an empty one (RFC 4954 §4) */
	struct mk_smtp_cmd plain = {.kind = MK_SMTP_CMD_AUTH, .mech = "PLAIN", .initial = (const uint8_t *)"\0u\0p",
				    .initial_len = 4};
	struct mk_smtp_cmd empty = {.kind = MK_SMTP_CMD_AUTH, .mech = "EXTERNAL", .initial = (const uint8_t *)""};
	in = "250 ok\r\n235 ok\r\n";
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1); /* MAIL */
	assert_int_equal(mk_smtp_client_submit(&c, &plain), 0);
	assert_int_equal(mk_smtp_client_submit(&c, &empty), 0);
	o = mk_smtp_client_output(&c);
	assert_int_equal(o.n, strlen("AUTH PLAIN AHUAcA==\r\n"));
	assert_memory_equal(o.p, "AUTH PLAIN AHUAcA==\r\n", o.n);
	mk_smtp_client_output_done(&c, o.n);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	o = mk_smtp_client_output(&c);
	assert_memory_equal(o.p, "AUTH EXTERNAL =\r\n", o.n);
	/* a response over MK_LIMIT_SASL_LINE */
	uint8_t *big = mk_xcalloc(1, MK_LIMIT_SASL_LINE);
	struct mk_smtp_cmd huge = {.kind = MK_SMTP_CMD_AUTH, .mech = "PLAIN", .initial = big,
				   .initial_len = MK_LIMIT_SASL_LINE * 3 / 4};
	assert_int_equal(mk_smtp_client_submit(&c, &huge), MK_ETOOBIG);
	mk_free(big);
	mk_smtp_client_cleanup(&c);
}

static void test_limits(void **state)
{
	(void)state;
	struct scen sc = {.implicit_tls = true, .from = "a@b", .rcpt = {"c@d"}, .body = "", .messages = 1};
	char *sent;
	const char *bad_code[] = {"abc\r\n", "199 x\r\n", "600 x\r\n", "25\r\n", "250x\r\n", "\r\n", "2500 x\r\n"};
	for (size_t i = 0; i < sizeof(bad_code) / sizeof(bad_code[0]); i++) {
		const char *segs[] = {bad_code[i]};
		struct mk_buf log, snt;
		mk_buf_init(&log, 1 << 20);
		mk_buf_init(&snt, 1 << 20);
		assert_int_equal(run(segs, 1, WHOLE, 1, &sc, &log, &snt), MK_EPROTO);
		mk_buf_cleanup(&log);
		mk_buf_cleanup(&snt);
	}
	const char *s1[] = {"220 x\r\n250-x\r\n251 changed\r\n"};
	sent = check3(s1, 1, &sc,
		      "S: REPLY GREETING 220 [] x\nC: EHLO client.example\\r\\n\n"
		      "ERROR MK_EPROTO: reply code changed within a multi-line reply (250, then 251)\n");
	mk_free(sent);
	const char *s2[] = {"220 x\r\n250 x\r\n250 extra\r\n250 extra\r\n"};
	struct scen quiet = {.implicit_tls = true};
	sent = check3(s2, 1, &quiet,
		      "S: REPLY GREETING 220 [] x\nC: EHLO client.example\\r\\n\nS: REPLY EHLO 250 [] x\n"
		      "C: QUIT\\r\\n\nS: REPLY QUIT 250 [] extra\n"
		      "ERROR MK_EPROTO: reply from the server with no command waiting: 250 extra\n");
	mk_free(sent);
	/* endless multi-line reply */
	struct mk_buf big;
	mk_buf_init(&big, 1 << 20);
	mk_buf_append_str(&big, "220 x\r\n");
	for (int i = 0; i < 100; i++)
		mk_buf_append_str(&big, "250-AUTH PLAIN\r\n");
	const char *s3[] = {(const char *)big.data};
	sent = check3(s3, 1, &sc,
		      "S: REPLY GREETING 220 [] x\nC: EHLO client.example\\r\\n\n"
		      "ERROR MK_ETOOBIG: server reply longer than 64 lines\n");
	mk_free(sent);
	/* giant line */
	mk_buf_reset(&big);
	mk_buf_append_str(&big, "220 ");
	for (int i = 0; i < 3000; i++)
		mk_buf_append_str(&big, "x");
	mk_buf_append_str(&big, "\r\n");
	const char *s4[] = {(const char *)big.data};
	sent = check3(s4, 1, &sc, "ERROR MK_ETOOBIG: server reply line longer than 2048 bytes\n");
	mk_free(sent);
	/* a line of exactly the limit is fine */
	mk_buf_reset(&big);
	mk_buf_append_str(&big, "220 ");
	for (int i = 0; i < MK_SMTP_LINE_MAX - 4; i++)
		mk_buf_append_str(&big, "y");
	mk_buf_append_str(&big, "\r\n221 bye\r\n");
	struct mk_smtp_client c;
	struct mk_smtp_event ev;
	mk_smtp_client_init(&c);
	assert_int_equal(mk_smtp_client_feed(&c, big.data, big.len), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(strlen(ev.reply.text), MK_SMTP_LINE_MAX - 4);
	mk_smtp_client_cleanup(&c);
	/* NULs in a reply do not cut the text */
	mk_smtp_client_init(&c);
	assert_int_equal(mk_smtp_client_feed(&c, (const uint8_t *)"220 a\0b\r\n", 9), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_string_equal(ev.reply.text, "a?b");
	/* arguments */
	struct mk_smtp_cmd cmds[] = {
		{.kind = MK_SMTP_CMD_MAIL, .arg = "a@b>\r\nRCPT TO:<x@y"},
		{.kind = MK_SMTP_CMD_RCPT, .arg = ""},
		{.kind = MK_SMTP_CMD_RCPT, .arg = NULL},
		{.kind = MK_SMTP_CMD_EHLO, .arg = "a b"},
		{.kind = MK_SMTP_CMD_RCPT, .arg = "<x@y>"},
		{.kind = MK_SMTP_CMD_DATA_END},
		{.kind = MK_SMTP_CMD_GREETING},
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		assert_int_equal(mk_smtp_client_submit(&c, &cmds[i]), MK_EINVAL);
	char longarg[600];
	memset(longarg, 'a', sizeof(longarg) - 1);
	longarg[sizeof(longarg) - 1] = '\0';
	struct mk_smtp_cmd rc = {.kind = MK_SMTP_CMD_RCPT, .arg = longarg};
	assert_int_equal(mk_smtp_client_submit(&c, &rc), MK_EINVAL);
	longarg[512 - 12] = '\0'; /* "RCPT TO:<" 500 ">\r\n": 512 */
	assert_int_equal(mk_smtp_client_submit(&c, &rc), 0);
	rc.arg = "x@y";
	unsigned n = 1;
	while (mk_smtp_client_submit(&c, &rc) == 0)
		n++;
	assert_int_equal(n, MK_SMTP_MAX_PENDING);
	assert_int_equal(mk_smtp_client_submit(&c, &rc), MK_ETOOBIG);
	mk_smtp_client_cleanup(&c);
	/* a reply before the greeting's command... the greeting itself */
	mk_smtp_client_init(&c);
	assert_int_equal(mk_smtp_client_feed(&c, (const uint8_t *)"554 5.7.1 no service\r\n", 22), 0);
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.cmd, MK_SMTP_CMD_GREETING);
	assert_int_equal(mk_smtp_client_state(&c), MK_SMTP_STATE_QUIT);
	mk_smtp_client_cleanup(&c);
	mk_buf_cleanup(&big);
	assert_string_equal(mk_strerror(MK_ENOTSUP), "not supported by the server");
	assert_string_equal(mk_err_name(MK_ENOTSUP), "MK_ENOTSUP");
}

/* ---- dot-stuffing ---- */

/* CRLF-normalised input: every CR, LF or CRLF becomes CRLF. */
static void normalise(const uint8_t *p, size_t n, struct mk_buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r') {
			mk_buf_append(out, "\r\n", 2);
			if (i + 1 < n && p[i + 1] == '\n')
				i++;
		} else if (p[i] == '\n') {
			mk_buf_append(out, "\r\n", 2);
		} else {
			mk_buf_append(out, &p[i], 1);
		}
	}
}

/* The server's side: unstuff up to the "." line. */
static bool decode(const uint8_t *p, size_t n, struct mk_buf *out)
{
	size_t i = 0;
	while (i < n) {
		const uint8_t *lf = memchr(p + i, '\n', n - i);
		if (lf == NULL || lf == p + i || lf[-1] != '\r')
			return false;
		size_t l = (size_t)(lf - (p + i)) + 1;
		if (l == 3 && p[i] == '.')
			return i + 3 == n;
		if (p[i] == '.') {
			i++;
			l--;
		}
		mk_buf_append(out, p + i, l);
		i += l;
	}
	return false;
}

static void dot_case(const char *in, size_t n, const char *expect)
{
	for (int how = 0; how < 3; how++) {
		struct mk_buf out;
		mk_buf_init(&out, 1 << 20);
		unsigned st = 0;
		for (size_t off = 0; off < n;) {
			size_t k = how == 0 ? n - off : how == 1 ? 1 : 1 + (size_t)rand() % (n - off);
			assert_int_equal(mk_smtp_dot_encode(&st, (const uint8_t *)in + off, k, &out), 0);
			off += k;
		}
		assert_int_equal(mk_smtp_dot_finish(&st, &out), 0);
		if (expect != NULL) {
			mk_buf_append(&out, "", 0);
			assert_int_equal(out.len, strlen(expect));
			assert_memory_equal(out.data, expect, out.len);
		}
		struct mk_buf dec, norm;
		mk_buf_init(&dec, 1 << 20);
		mk_buf_init(&norm, 1 << 20);
		normalise((const uint8_t *)in, n, &norm);
		if (norm.len > 0 && (norm.len < 2 || memcmp(norm.data + norm.len - 2, "\r\n", 2) != 0))
			mk_buf_append(&norm, "\r\n", 2);
		assert_true(decode(out.data, out.len, &dec));
		assert_int_equal(dec.len, norm.len);
		if (norm.len)
			assert_memory_equal(dec.data, norm.data, norm.len);
		mk_buf_cleanup(&out);
		mk_buf_cleanup(&dec);
		mk_buf_cleanup(&norm);
	}
}

static void test_dot_stuffing(void **state)
{
	(void)state;
	unsigned seed = (unsigned)time(NULL);
	fprintf(stderr, "dot-stuffing seed %u\n", seed);
	srand(seed);
	dot_case("", 0, ".\r\n");
	dot_case(".", 1, "..\r\n.\r\n");
	dot_case(".\r\n", 3, "..\r\n.\r\n");
	dot_case("..\n", 3, "...\r\n.\r\n");
	dot_case("a\n.b\n..c\n", 9, "a\r\n..b\r\n...c\r\n.\r\n");
	dot_case("a\rb\r\n.c", 7, "a\r\nb\r\n..c\r\n.\r\n");
	dot_case("a\r\r\nb", 5, "a\r\n\r\nb\r\n.\r\n");
	dot_case("no newline", 10, "no newline\r\n.\r\n");
	dot_case("x.\n.", 4, "x.\r\n..\r\n.\r\n");
	dot_case("\r\n\r\n", 4, "\r\n\r\n.\r\n");
	dot_case("\n\r", 2, "\r\n\r\n.\r\n");
	dot_case("a\0b\n", 4, NULL);
	/* a CR ending one call and the LF starting the next: one CRLF */
	struct mk_buf out;
	mk_buf_init(&out, 64);
	unsigned st = 0;
	assert_int_equal(mk_smtp_dot_encode(&st, (const uint8_t *)"a\r", 2, &out), 0);
	assert_int_equal(mk_smtp_dot_encode(&st, (const uint8_t *)"\n.", 2, &out), 0);
	assert_int_equal(mk_smtp_dot_finish(&st, &out), 0);
	assert_int_equal(out.len, 10);
	assert_memory_equal(out.data, "a\r\n..\r\n.\r\n", 10);
	/* the output's max: MK_ETOOBIG, nothing appended */
	mk_buf_reset(&out);
	st = 0;
	char many[100];
	memset(many, '\n', sizeof(many));
	assert_int_equal(mk_smtp_dot_encode(&st, (const uint8_t *)many, sizeof(many), &out), MK_ETOOBIG);
	assert_int_equal(out.len, 0);
	assert_int_equal(st, 0);
	mk_buf_cleanup(&out);
	/* random bodies */
	for (int t = 0; t < 200; t++) {
		char body[64];
		size_t n = (size_t)rand() % sizeof(body);
		for (size_t i = 0; i < n; i++)
			body[i] = "ab.\r\n"[rand() % 5];
		dot_case(body, n, NULL);
	}
}

/* A big body through the core: bounded output, back-pressure, exact bytes. */
static void test_data_backpressure(void **state)
{
	(void)state;
	struct mk_smtp_client c;
	struct mk_smtp_event ev;
	mk_smtp_client_init(&c);
	mk_smtp_client_tls_started(&c);
	struct mk_smtp_cmd cmds[] = {{.kind = MK_SMTP_CMD_EHLO, .arg = "h"},
				     {.kind = MK_SMTP_CMD_MAIL, .arg = "a@b"},
				     {.kind = MK_SMTP_CMD_RCPT, .arg = "c@d"},
				     {.kind = MK_SMTP_CMD_DATA},
				     {.kind = MK_SMTP_CMD_QUIT}};
	for (int i = 0; i < 5; i++)
		assert_int_equal(mk_smtp_client_submit(&c, &cmds[i]), 0);
	const char *in = "220 x\r\n250-x\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n354 go\r\n";
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	while (mk_smtp_client_next_event(&c, &ev) == 1)
		;
	assert_int_equal(mk_smtp_client_state(&c), MK_SMTP_STATE_DATA_BODY);
	struct mk_slice o = mk_smtp_client_output(&c);
	mk_smtp_client_output_done(&c, o.n);
	assert_int_equal(mk_smtp_client_submit(&c, &cmds[1]), MK_ESTATE);
	size_t total = 3 * 1024 * 1024;
	uint8_t *body = mk_xmalloc(total);
	for (size_t i = 0; i < total; i++)
		body[i] = i % 50 == 0 ? '.' : i % 50 == 49 ? '\n' : 'x';
	struct mk_buf sent;
	mk_buf_init(&sent, 8 * 1024 * 1024);
	size_t off = 0, max_out = 0;
	int zero = 0;
	while (off < total) {
		size_t taken;
		size_t k = total - off < 100000 ? total - off : 100000;
		assert_int_equal(mk_smtp_client_data_write(&c, body + off, k, &taken), 0);
		off += taken;
		o = mk_smtp_client_output(&c);
		if (o.n > max_out)
			max_out = o.n;
		if (taken == 0 || rand() % 4 == 0) {
			zero += taken == 0;
			mk_buf_append(&sent, o.p, o.n);
			mk_smtp_client_output_done(&c, o.n);
		}
	}
	assert_true(zero > 0);
	assert_true(max_out <= MK_SMTP_OUT_MAX);
	assert_int_equal(mk_smtp_client_data_end(&c), 0);
	assert_int_equal(mk_smtp_client_data_end(&c), MK_ESTATE);
	o = mk_smtp_client_output(&c);
	mk_buf_append(&sent, o.p, o.n);
	mk_smtp_client_output_done(&c, o.n);
	struct mk_buf dec, norm;
	mk_buf_init(&dec, 8 * 1024 * 1024);
	mk_buf_init(&norm, 8 * 1024 * 1024);
	assert_true(decode(sent.data, sent.len, &dec));
	normalise(body, total, &norm);
	mk_buf_append(&norm, "\r\n", 2); /* the body did not end in a line end */
	assert_int_equal(dec.len, norm.len);
	assert_memory_equal(dec.data, norm.data, norm.len);
	/* the final dot's reply, then the QUIT queued behind DATA goes out */
	assert_int_equal(mk_smtp_client_pending(&c), 2);
	assert_int_equal(mk_smtp_client_output(&c).n, 0);
	in = "250 2.0.0 queued\r\n";
	mk_smtp_client_feed(&c, (const uint8_t *)in, strlen(in));
	assert_int_equal(mk_smtp_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.cmd, MK_SMTP_CMD_DATA_END);
	o = mk_smtp_client_output(&c);
	assert_int_equal(o.n, 6);
	assert_memory_equal(o.p, "QUIT\r\n", 6);
	mk_buf_cleanup(&dec);
	mk_buf_cleanup(&norm);
	mk_buf_cleanup(&sent);
	mk_free(body);
	mk_smtp_client_cleanup(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outlook_golden),
		cmocka_unit_test(test_ehlo_parse),
		cmocka_unit_test(test_postfix_transaction),
		cmocka_unit_test(test_no_pipelining_one_by_one),
		cmocka_unit_test(test_pipelined_bytes),
		cmocka_unit_test(test_multiline_and_format),
		cmocka_unit_test(test_sendas_denied_and_rset),
		cmocka_unit_test(test_421),
		cmocka_unit_test(test_starttls_injection),
		cmocka_unit_test(test_auth_exchanges),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_dot_stuffing),
		cmocka_unit_test(test_data_backpressure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
