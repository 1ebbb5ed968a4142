/* SPDX-License-Identifier: MIT */
/*
 * test_imap.c - the IMAP client core with recorded server transcripts.
 * Every transcript is fed whole, one byte at a time, and at random splits
 * (seed printed); all three must give the same event log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"
#include "mk_imap.h"
#include "mk_limits.h"
#include "mk_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum split { WHOLE, BYTES, RANDOM };

/* Appends a readable line per event to log; returns the final status
 * (0, or the error that stopped the core). */
static struct mk_buf body_acc;

/* The message an APPEND test streams, in two pieces. */
static const char append_msg[] = "From: a@b\r\n\r\nhello\r\n";

static void append_stream(struct mk_imap_client *c, struct mk_buf *log)
{
	size_t n = sizeof(append_msg) - 1, half = n / 2, t1 = 0, t2 = 0;
	int r1 = mk_imap_client_append_write(c, (const uint8_t *)append_msg, half, &t1);
	int r2 = mk_imap_client_append_write(c, (const uint8_t *)append_msg + half, n - half, &t2);
	mk_buf_printf(log, "APPENDED %d %d %zu ready-after %d\n", r1, r2, t1 + t2, mk_imap_client_append_ready(c));
}

static int drain(struct mk_imap_client *c, struct mk_buf *log, const struct mk_imap_cmd *cmds, size_t ncmds)
{
	struct mk_imap_event ev;
	int r;
	while ((r = mk_imap_client_next_event(c, &ev)) == 1) {
		switch (ev.kind) {
		case MK_IMAP_EV_BODY_BEGIN:
			mk_buf_printf(log, "BODY_BEGIN seq %u %s {%llu}\n", ev.fetch.seq, ev.text,
				      (unsigned long long)ev.body_size);
			mk_buf_reset(&body_acc);
			break;
		case MK_IMAP_EV_BODY_CHUNK:
			mk_buf_append(&body_acc, ev.chunk.p, ev.chunk.n);
			break;
		case MK_IMAP_EV_FETCH:
			if (ev.fetch.has_body && ev.fetch.inline_body.n == 0)
				mk_buf_printf(log, "BODY '%s'\n", body_acc.len ? (char *)body_acc.data : "");
			mk_buf_printf(log, "FETCH seq %u uid %u size %u flags %x kw '%s' date %lld tz %d body %d/%llu\n",
				      ev.fetch.seq, ev.fetch.uid, ev.fetch.rfc822_size, ev.fetch.flags, ev.fetch.keywords,
				      (long long)ev.fetch.internaldate, ev.fetch.internaldate_tz, ev.fetch.has_body,
				      (unsigned long long)ev.fetch.body_size);
			mk_buf_reset(&body_acc);
			break;
		case MK_IMAP_EV_GREETING:
			mk_buf_printf(log, "GREETING %s [%s] %s\n", mk_imap_status_name(ev.status),
				      ev.code ? ev.code : "", ev.text);
			/* a client sends its commands once greeted */
			for (size_t i = 0; i < ncmds; i++) {
				unsigned tag;
				int sr = mk_imap_client_submit(c, &cmds[i], &tag);
				mk_buf_printf(log, "SUBMIT %d tag %u\n", sr, sr == 0 ? tag : 0);
				if (sr == 0 && cmds[i].kind == MK_IMAP_CMD_APPEND && mk_imap_client_append_ready(c))
					append_stream(c, log); /* LITERAL+: no "+" to wait for */
			}
			break;
		case MK_IMAP_EV_CAPABILITY:
			mk_buf_printf(log, "CAPS %s\n", mk_imap_client_has_cap(c, "IDLE") ? "idle" : "no-idle");
			break;
		case MK_IMAP_EV_LIST:
			mk_buf_printf(log, "LIST '%s' raw='%s' delim=%c%s\n", ev.list.name, ev.list.name_raw,
				      ev.list.delimiter ? ev.list.delimiter : '0', ev.list.noselect ? " noselect" : "");
			break;
		case MK_IMAP_EV_UNTAGGED:
			mk_buf_printf(log, "UNTAGGED %u args first=%.*s\n", ev.args ? ev.args->n : 0,
				      ev.args && ev.args->n ? (int)ev.args->a[0].v.n : 0,
				      ev.args && ev.args->n ? (const char *)ev.args->a[0].v.p : "");
			break;
		case MK_IMAP_EV_CONTINUATION:
			mk_buf_printf(log, "CONT %s\n", ev.text);
			if (ev.cmd == MK_IMAP_CMD_APPEND)
				append_stream(c, log);
			if (ev.cmd == MK_IMAP_CMD_AUTHENTICATE) {
				/* the owner answers a SASL challenge: "cancel" is cancelled,
				 * "{...}" (a failure JSON) gets the empty XOAUTH2 answer,
				 * anything else is echoed back */
				mk_buf_printf(log, "CHALLENGE tag %u '%.*s'\n", ev.tag, (int)ev.chunk.n,
					      (const char *)ev.chunk.p);
				int ar;
				if (ev.chunk.n == 6 && memcmp(ev.chunk.p, "cancel", 6) == 0)
					ar = mk_imap_client_auth_cancel(c);
				else if (ev.chunk.n > 0 && ev.chunk.p[0] == '{')
					ar = mk_imap_client_auth_respond(c, NULL, 0);
				else
					ar = mk_imap_client_auth_respond(c, ev.chunk.p, ev.chunk.n);
				mk_buf_printf(log, "ANSWER %d again %d\n", ar, mk_imap_client_auth_respond(c, NULL, 0));
			}
			break;
		case MK_IMAP_EV_TAGGED:
			mk_buf_printf(log, "TAGGED %u %s [%s] %s\n", ev.tag, mk_imap_status_name(ev.status),
				      ev.code ? ev.code : "", ev.text);
			break;
		case MK_IMAP_EV_BYE:
			mk_buf_printf(log, "BYE %s\n", ev.text);
			break;
		}
	}
	return r;
}

/* Feeds `in` split as asked; commands are submitted before feeding. */
static int run(const char *in, size_t inlen, enum split how, unsigned seed, const struct mk_imap_cmd *cmds,
	       size_t ncmds, bool tls, struct mk_buf *log, struct mk_buf *sent)
{
	struct mk_imap_client c;
	mk_imap_client_init(&c);
	if (tls)
		mk_imap_client_tls_started(&c);
	srand(seed);
	size_t off = 0;
	int status = 0;
	while (off < inlen) {
		size_t n = inlen - off;
		if (how == BYTES)
			n = 1;
		else if (how == RANDOM)
			n = 1 + (size_t)rand() % (n < 40 ? n : 40);
		int r = mk_imap_client_feed(&c, (const uint8_t *)in + off, n);
		off += n;
		if (r < 0) {
			status = r;
			break;
		}
		status = drain(&c, log, cmds, ncmds);
		if (status < 0)
			break;
		struct mk_slice o = mk_imap_client_output(&c);
		if (o.n) {
			mk_buf_append(sent, o.p, o.n);
			mk_imap_client_output_done(&c, o.n);
		}
	}
	if (status >= 0) {
		struct mk_slice o = mk_imap_client_output(&c);
		mk_buf_append(sent, o.p, o.n);
	}
	if (status < 0)
		mk_buf_printf(log, "ERROR %s: %s\n", mk_err_name(status), mk_imap_client_error(&c));
	mk_imap_client_cleanup(&c);
	return status;
}

/* Runs the transcript three ways and checks logs agree and match `expect`
 * (if non-NULL); `expect_sent` likewise for the bytes written. */
static void check3(const char *in, const struct mk_imap_cmd *cmds, size_t ncmds, bool tls, const char *expect,
		   const char *expect_sent)
{
	unsigned seed = (unsigned)time(NULL);
	struct mk_buf logs[3], sents[3];
	for (int i = 0; i < 3; i++) {
		mk_buf_init(&logs[i], 1 << 20);
		mk_buf_init(&sents[i], 1 << 20);
		run(in, strlen(in), (enum split)i, seed, cmds, ncmds, tls, &logs[i], &sents[i]);
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
	}
	if (expect_sent != NULL)
		assert_string_equal(sents[0].len ? (char *)sents[0].data : "", expect_sent);
	for (int i = 0; i < 3; i++) {
		mk_buf_cleanup(&logs[i]);
		mk_buf_cleanup(&sents[i]);
	}
}

static void test_exchange_greeting_and_list(void **state)
{
	const char *in =
		"* OK The Microsoft Exchange IMAP4 service is ready. [RgBSADIAUAAyADgAMQBDAEEAMAAxADIAMgAuAEQARQBVAFAAMgA4ADEALgBQAFIATwBEAC4ATwBVAFQATABPAE8ASwAuAEMATwBNAA==]\r\n"
		"* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+\r\n"
		"A1 OK CAPABILITY completed.\r\n"
		"* LIST (\\Marked \\HasNoChildren) \"/\" INBOX\r\n"
		"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n"
		"* LIST (\\HasChildren) \"/\" Archive\r\n"
		"* LIST (\\HasNoChildren) \"/\" Tab\tName\r\n"
		"* LIST (\\Noselect \\HasChildren) \"/\" {14}\r\nConversation H\r\n"
		"* LIST (\\HasNoChildren) \"/\" \"Donn&AOk-es\"\r\n"
		"* LIST (\\HasNoChildren) NIL \"Quote\\\"d\"\r\n"
		"A2 OK LIST completed.\r\n"
		"* BYE Microsoft Exchange Server 2016 IMAP4 server signing off.\r\n"
		"A3 OK LOGOUT completed.\r\n";
	struct mk_imap_cmd cmds[] = {
		{.kind = MK_IMAP_CMD_CAPABILITY},
		{.kind = MK_IMAP_CMD_LIST, .a = "", .b = "*"},
		{.kind = MK_IMAP_CMD_LOGOUT},
	};
	check3(in, cmds, 3, true,
	       "GREETING OK [] The Microsoft Exchange IMAP4 service is ready. "
	       "[RgBSADIAUAAyADgAMQBDAEEAMAAxADIAMgAuAEQARQBVAFAAMgA4ADEALgBQAFIATwBEAC4ATwBVAFQATABPAE8ASwAuAEMATwBNAA==]\n"
	       "SUBMIT 0 tag 1\nSUBMIT 0 tag 2\nSUBMIT 0 tag 3\n"
	       "CAPS idle\n"
	       "TAGGED 1 OK [] CAPABILITY completed.\n"
	       "LIST 'INBOX' raw='INBOX' delim=/\n"
	       "LIST 'Sent Items' raw='Sent Items' delim=/\n"
	       "LIST 'Archive' raw='Archive' delim=/\n"
	       "LIST 'Tab\tName' raw='Tab\tName' delim=/\n"
	       "LIST 'Conversation H' raw='Conversation H' delim=/ noselect\n"
	       "LIST 'Donn\xc3\xa9" "es' raw='Donn&AOk-es' delim=/\n"
	       "LIST 'Quote\"d' raw='Quote\"d' delim=0\n"
	       "TAGGED 2 OK [] LIST completed.\n"
	       "BYE Microsoft Exchange Server 2016 IMAP4 server signing off.\n"
	       "TAGGED 3 OK [] LOGOUT completed.\n",
	       "A1 CAPABILITY\r\nA2 LIST \"\" \"*\"\r\nA3 LOGOUT\r\n");
}

static void test_greeting_caps_code(void **state)
{
	struct mk_imap_cmd noop[] = {{.kind = MK_IMAP_CMD_NOOP}};
	check3("* OK [CAPABILITY IMAP4rev1 IDLE STARTTLS] Dovecot ready.\r\nA1 OK [CAPABILITY IMAP4rev1] done\r\n",
	       noop, 1, false,
	       "GREETING OK [CAPABILITY IMAP4rev1 IDLE STARTTLS] Dovecot ready.\nSUBMIT 0 tag 1\n"
	       "TAGGED 1 OK [CAPABILITY IMAP4rev1] done\n",
	       "A1 NOOP\r\n");
}

static void test_login_refused_without_tls(void **state)
{
	struct mk_imap_cmd cmds[] = {{.kind = MK_IMAP_CMD_LOGIN, .a = "u", .b = "p"}};
	/* MK_ESTATE: the core will not send a password in clear */
	char expect[128];
	snprintf(expect, sizeof(expect), "GREETING OK [] hi\nSUBMIT %d tag 0\n", MK_ESTATE);
	check3("* OK hi\r\n", cmds, 1, false, expect, "");
}

static void test_login_quoted_and_literal(void **state)
{
	struct mk_imap_cmd q[] = {{.kind = MK_IMAP_CMD_LOGIN, .a = "alice@example.test", .b = "pa\"ss\\w"}};
	check3("* OK hi\r\n", q, 1, true, NULL, "A1 LOGIN \"alice@example.test\" \"pa\\\"ss\\\\w\"\r\n");
	/* 8-bit password: LITERAL+ sends at once */
	struct mk_imap_cmd l[] = {{.kind = MK_IMAP_CMD_LOGIN, .a = "bob", .b = "p\xc3\xa4ss"}};
	check3("* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n", l, 1, true, NULL,
	       "A1 LOGIN \"bob\" {5+}\r\np\xc3\xa4ss\r\n");
	/* without LITERAL+ the password waits for "+" */
	check3("* OK [CAPABILITY IMAP4rev1] hi\r\n", l, 1, true, NULL, "A1 LOGIN \"bob\" {5}\r\n");
	check3("* OK [CAPABILITY IMAP4rev1] hi\r\n+ go on\r\nA1 OK done\r\n", l, 1, true, NULL,
	       "A1 LOGIN \"bob\" {5}\r\np\xc3\xa4ss\r\n");
}

static void test_held_secret_dropped_on_no(void **state)
{
	struct mk_imap_cmd l[] = {{.kind = MK_IMAP_CMD_LOGIN, .a = "bob", .b = "p\xc3\xa4ss"},
				  {.kind = MK_IMAP_CMD_NOOP}};
	/* the server refuses before "+": the held password is never sent */
	check3("* OK hi\r\nA1 NO [AUTHENTICATIONFAILED] no literals today\r\n", l, 1, true,
	       "GREETING OK [] hi\nSUBMIT 0 tag 1\nTAGGED 1 NO [AUTHENTICATIONFAILED] no literals today\n",
	       "A1 LOGIN \"bob\" {5}\r\n");
}

static void test_authenticate_plain(void **state)
{
	struct mk_imap_cmd a[] = {{.kind = MK_IMAP_CMD_AUTHENTICATE_PLAIN, .a = "tim", .b = "tanstaaftanstaaf"}};
	/* RFC 4616 example: "\0tim\0tanstaaftanstaaf" */
	check3("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi\r\n", a, 1, true, NULL,
	       "A1 AUTHENTICATE PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
	check3("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n+ \r\nA1 OK [CAPABILITY IMAP4rev1 IDLE] in\r\n", a, 1,
	       true,
	       "GREETING OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\nSUBMIT 0 tag 1\n"
	       "TAGGED 1 OK [CAPABILITY IMAP4rev1 IDLE] in\n",
	       "A1 AUTHENTICATE PLAIN\r\nAHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
}

static const uint8_t xoauth2_ir[] = "user=test@contoso.onmicrosoft.com\x01"
				     "auth=Bearer EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA\x01\x01";
#define XOAUTH2_B64                                                                                                    \
	"dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0V" \
	"vQUEBAQ=="

static void test_authenticate_generic(void **state)
{
	struct mk_imap_cmd a[] = {{.kind = MK_IMAP_CMD_AUTHENTICATE,
				   .a = "XOAUTH2",
				   .ir = {xoauth2_ir, sizeof(xoauth2_ir) - 1}},
				  {.kind = MK_IMAP_CMD_NOOP}};
	/* SASL-IR: one line (OUTLOOK.md §1.2's golden vector); nothing else
	 * may be submitted during the exchange */
	check3("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] hi\r\nA1 OK AUTHENTICATE completed.\r\n", a, 2,
	       true,
	       "GREETING OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] hi\nSUBMIT 0 tag 1\nSUBMIT -31010 tag 0\n"
	       "TAGGED 1 OK [] AUTHENTICATE completed.\n",
	       "A1 AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\n");
	/* no SASL-IR: the response waits for the bare "+" (Exchange's form) */
	check3("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] hi\r\n+\r\nA1 OK AUTHENTICATE completed.\r\n", a, 1, true,
	       "GREETING OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] hi\nSUBMIT 0 tag 1\n"
	       "TAGGED 1 OK [] AUTHENTICATE completed.\n",
	       "A1 AUTHENTICATE XOAUTH2\r\n" XOAUTH2_B64 "\r\n");
	/* refused before "+": the held token is never sent */
	check3("* OK [CAPABILITY IMAP4rev1] hi\r\nA1 NO [AUTHENTICATIONFAILED] no\r\n", a, 1, true,
	       "GREETING OK [CAPABILITY IMAP4rev1] hi\nSUBMIT 0 tag 1\nTAGGED 1 NO [AUTHENTICATIONFAILED] no\n",
	       "A1 AUTHENTICATE XOAUTH2\r\n");
	/* Dovecot/Gmail failure: "+ <base64 JSON>", answered with an empty line */
	check3("* OK [CAPABILITY IMAP4rev1 SASL-IR] hi\r\n"
	       "+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=\r\n"
	       "A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
	       a, 1, true,
	       "GREETING OK [CAPABILITY IMAP4rev1 SASL-IR] hi\nSUBMIT 0 tag 1\n"
	       "CONT eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=\n"
	       "CHALLENGE tag 1 '{\"status\":\"401\",\"schemes\":\"bearer\"}'\nANSWER 0 again -31010\n"
	       "TAGGED 1 NO [AUTHENTICATIONFAILED] Authentication failed.\n",
	       "A1 AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\n\r\n");
	/* a mechanism without initial response (LOGIN), multi-step, and a
	 * cancel ("Y2FuY2Vs" = "cancel") */
	struct mk_imap_cmd l[] = {{.kind = MK_IMAP_CMD_AUTHENTICATE, .a = "LOGIN"}};
	check3("* OK hi\r\n+ VXNlcm5hbWU6\r\n+ Y2FuY2Vs\r\nA1 BAD cancelled\r\n", l, 1, true,
	       "GREETING OK [] hi\nSUBMIT 0 tag 1\nCONT VXNlcm5hbWU6\nCHALLENGE tag 1 'Username:'\n"
	       "ANSWER 0 again -31010\nCONT Y2FuY2Vs\nCHALLENGE tag 1 'cancel'\nANSWER 0 again -31010\n"
	       "TAGGED 1 BAD [] cancelled\n",
	       "A1 AUTHENTICATE LOGIN\r\nVXNlcm5hbWU6\r\n*\r\n");
	/* an empty initial response: "=" with SASL-IR */
	struct mk_imap_cmd e[] = {{.kind = MK_IMAP_CMD_AUTHENTICATE, .a = "EXTERNAL", .ir = {(const uint8_t *)"", 0}}};
	check3("* OK [CAPABILITY SASL-IR] hi\r\n", e, 1, true, NULL, "A1 AUTHENTICATE EXTERNAL =\r\n");
	/* never before TLS; a malformed mechanism name is refused */
	check3("* OK hi\r\n", a, 1, false, "GREETING OK [] hi\nSUBMIT -31010 tag 0\n", "");
	struct mk_imap_cmd bad[] = {{.kind = MK_IMAP_CMD_AUTHENTICATE, .a = "X OAUTH2", .ir = {xoauth2_ir, 3}}};
	check3("* OK hi\r\n", bad, 1, true, "GREETING OK [] hi\nSUBMIT -31008 tag 0\n", "");
}

/* A 16 KiB token (Microsoft's grow past 4 KiB) goes out as one line, and
 * one over MK_LIMIT_SASL_LINE is refused. */
static void test_authenticate_big_token(void **state)
{
	size_t n = 16 * 1024;
	uint8_t *ir = mk_xmalloc(n);
	memset(ir, 'A', n);
	struct mk_imap_client c;
	mk_imap_client_init(&c);
	mk_imap_client_tls_started(&c);
	const char *g = "* OK [CAPABILITY IMAP4rev1 SASL-IR] hi\r\n";
	assert_int_equal(mk_imap_client_feed(&c, (const uint8_t *)g, strlen(g)), 0);
	struct mk_imap_event ev;
	assert_int_equal(mk_imap_client_next_event(&c, &ev), 1);
	struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_AUTHENTICATE, .a = "XOAUTH2", .ir = {ir, n}};
	unsigned tag;
	assert_int_equal(mk_imap_client_submit(&c, &cmd, &tag), 0);
	struct mk_slice o = mk_imap_client_output(&c);
	assert_int_equal(o.n, strlen("A1 AUTHENTICATE XOAUTH2 ") + MK_BASE64_ENCLEN(n) + 2);
	mk_imap_client_output_done(&c, o.n);
	const char *ok = "A1 OK done\r\n";
	assert_int_equal(mk_imap_client_feed(&c, (const uint8_t *)ok, strlen(ok)), 0);
	assert_int_equal(mk_imap_client_next_event(&c, &ev), 1);
	assert_int_equal(ev.kind, MK_IMAP_EV_TAGGED);
	assert_int_equal(c.state, MK_IMAP_STATE_AUTH);
	mk_imap_client_cleanup(&c);
	mk_imap_client_init(&c);
	mk_imap_client_tls_started(&c);
	assert_int_equal(mk_imap_client_feed(&c, (const uint8_t *)g, strlen(g)), 0);
	assert_int_equal(mk_imap_client_next_event(&c, &ev), 1);
	uint8_t *huge = mk_xmalloc(MK_LIMIT_SASL_LINE);
	memset(huge, 'A', MK_LIMIT_SASL_LINE);
	cmd.ir.p = huge;
	cmd.ir.n = MK_LIMIT_SASL_LINE;
	assert_int_equal(mk_imap_client_submit(&c, &cmd, &tag), MK_ETOOBIG);
	assert_int_equal(mk_imap_client_output(&c).n, 0);
	mk_imap_client_cleanup(&c);
	mk_free(huge);
	mk_free(ir);
}

static void test_starttls_injection(void **state)
{
	struct mk_imap_cmd s[] = {{.kind = MK_IMAP_CMD_STARTTLS}};
	struct mk_buf log, sent;
	mk_buf_init(&log, 1 << 16);
	mk_buf_init(&sent, 1 << 16);
	const char *in = "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\nA1 OK Begin TLS\r\n* OK injected\r\n";
	int r = run(in, strlen(in), WHOLE, 1, s, 1, false, &log, &sent);
	assert_int_equal(r, MK_EPROTO);
	assert_non_null(strstr((char *)log.data, "in clear after the STARTTLS go-ahead"));
	/* the injected line was never reported as an event */
	assert_null(strstr((char *)log.data, "injected"));
	mk_buf_cleanup(&log);
	mk_buf_cleanup(&sent);
	/* no injection: fine */
	check3("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\nA1 OK Begin TLS\r\n", s, 1, false,
	       "GREETING OK [CAPABILITY IMAP4rev1 STARTTLS] hi\nSUBMIT 0 tag 1\nTAGGED 1 OK [] Begin TLS\n", "A1 STARTTLS\r\n");
}

static void expect_error(const char *in, size_t len, int err, const char *msg_part)
{
	for (int how = 0; how < 3; how++) {
		struct mk_buf log, sent;
		mk_buf_init(&log, 1 << 20);
		mk_buf_init(&sent, 1 << 20);
		int r = run(in, len, (enum split)how, 7, NULL, 0, true, &log, &sent);
		if (r != err || strstr((char *)log.data, msg_part) == NULL)
			fprintf(stderr, "mode %d: %s\n", how, log.data);
		assert_int_equal(r, err);
		assert_non_null(strstr((char *)log.data, msg_part));
		mk_buf_cleanup(&log);
		mk_buf_cleanup(&sent);
	}
}

static void test_limits_and_garbage(void **state)
{
	/* a giant literal announcement is refused before any byte is buffered */
	const char *big = "* OK hi\r\n* LIST () \"/\" {99999999999}\r\n";
	expect_error(big, strlen(big), MK_ETOOBIG, "literal of more than");
	/* an endless line */
	size_t n = 70000;
	char *line = mk_xmalloc(n + 20);
	memcpy(line, "* OK hi\r\n* ", 11);
	memset(line + 11, 'x', n);
	expect_error(line, n + 11, MK_ETOOBIG, "line longer than");
	mk_free(line);
	const char *nogreet = "A1 OK what\r\n";
	expect_error(nogreet, strlen(nogreet), MK_EPROTO, "not a known tag: A1");
	const char *unbal = "* OK hi\r\n* LIST ((\\X) \"/\" a\r\n";
	expect_error(unbal, strlen(unbal), MK_EPROTO, "unbalanced");
	const char *unknown_tag = "* OK hi\r\nA77 OK ghost\r\n";
	expect_error(unknown_tag, strlen(unknown_tag), MK_EPROTO, "not a known tag: A77");
	/* nesting limit */
	char deep[200];
	memcpy(deep, "* OK hi\r\n* X ", 13);
	memset(deep + 13, '(', 40);
	memcpy(deep + 53, "\r\n", 3);
	expect_error(deep, strlen(deep), MK_ETOOBIG, "nested too deeply");
}

static void test_utf7(void **state)
{
	static const char *const pairs[][2] = {
		{"INBOX", "INBOX"},
		{"Donn\xc3\xa9" "es", "Donn&AOk-es"},
		{"A&B", "A&-B"},
		{"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "&ZeVnLIqe-"},
		{"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"\xf0\x9f\x93\xa7 Mail", "&2D3c5w- Mail"},
	};
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		char *enc = NULL, *dec = NULL;
		assert_int_equal(mk_imap_utf7_encode(pairs[i][0], &enc), 0);
		assert_string_equal(enc, pairs[i][1]);
		assert_int_equal(mk_imap_utf7_decode(pairs[i][1], &dec), 0);
		assert_string_equal(dec, pairs[i][0]);
		mk_free(enc);
		mk_free(dec);
	}
	static const char *const bad[] = {"&", "&AOk", "x&AOk-&", "&AGE-", "\xc3\xa9", "&2D0-", "&,,,-"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *dec = NULL;
		if (mk_imap_utf7_decode(bad[i], &dec) == 0)
			fprintf(stderr, "decoded bad input %s\n", bad[i]);
		assert_int_equal(mk_imap_utf7_decode(bad[i], &dec), MK_EINVAL);
	}
	char *out = NULL;
	assert_int_equal(mk_imap_utf7_encode("\xff", &out), MK_EINVAL);
}

static void test_fetch_streaming(void **state)
{
	mk_buf_init(&body_acc, 1 << 20);
	struct mk_imap_cmd cmds[] = {{.kind = MK_IMAP_CMD_EXAMINE, .a = "Donn\xc3\xa9" "es"},
				     {.kind = MK_IMAP_CMD_UID_FETCH, .a = "1:*", .b = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"}};
	const char *in = "* OK hi\r\n"
			 "* 3 EXISTS\r\n"
			 "* OK [UIDVALIDITY 14] UIDs valid\r\n"
			 "A1 OK [READ-ONLY] EXAMINE completed.\r\n"
			 /* items in Exchange's order, size skewed, flags + keyword */
			 "* 1 FETCH (RFC822.SIZE 999 UID 84 FLAGS (\\Seen $Forwarded \\Recent) BODY[] {11}\r\n"
			 "Hello\r\n.\r\nX INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")\r\n"
			 /* body first, everything else after; a literal inside the tail */
			 "* 2 FETCH (BODY[] {5}\r\nab)cd UID 85 FLAGS () INTERNALDATE \" 1-Jan-2024 00:00:00 +0000\")\r\n"
			 /* empty FETCH (Exchange) and a flags-only one */
			 "* 3 FETCH (UID 86 FLAGS (\\Answered \\Flagged))\r\n"
			 "* 3 FETCH (UID 86 BODY[] NIL)\r\n"
			 "* 4 FETCH (UID 87 BODY[] {0}\r\n)\r\n"
			 "A2 OK FETCH completed.\r\n";
	check3(in, cmds, 2, true,
	       "GREETING OK [] hi\nSUBMIT 0 tag 1\nSUBMIT 0 tag 2\n"
	       "UNTAGGED 2 args first=3\n"
	       "UNTAGGED 0 args first=\n"
	       "TAGGED 1 OK [READ-ONLY] EXAMINE completed.\n"
	       "BODY_BEGIN seq 1 BODY[] {11}\n"
	       "BODY 'Hello\r\n.\r\nX'\n"
	       "FETCH seq 1 uid 84 size 999 flags 21 kw '$Forwarded' date 837596665 tz -420 body 1/11\n"
	       "BODY_BEGIN seq 2 BODY[] {5}\n"
	       "BODY 'ab)cd'\n"
	       "FETCH seq 2 uid 85 size 0 flags 0 kw '' date 1704067200 tz 0 body 1/5\n"
	       "FETCH seq 3 uid 86 size 0 flags 6 kw '' date 0 tz 0 body 0/0\n"
	       "FETCH seq 3 uid 86 size 0 flags 0 kw '' date 0 tz 0 body 0/0\n"
	       "BODY_BEGIN seq 4 BODY[] {0}\n"
	       "BODY ''\n"
	       "FETCH seq 4 uid 87 size 0 flags 0 kw '' date 0 tz 0 body 1/0\n"
	       "TAGGED 2 OK [] FETCH completed.\n",
	       "A1 EXAMINE \"Donn&AOk-es\"\r\nA2 UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n");
	/* hostile: a body literal over the streaming limit is refused before any byte */
	const char *huge = "* OK hi\r\n* 1 FETCH (UID 1 BODY[] {9999999999}\r\n";
	expect_error(huge, strlen(huge), MK_ETOOBIG, "literal of more than");
	/* a small non-body literal over the in-memory limit */
	const char *big = "* OK hi\r\n* 1 FETCH (UID 1 ENVELOPE {999999}\r\n";
	expect_error(big, strlen(big), MK_ETOOBIG, "data kept in memory");
	const char *badfetch = "* OK hi\r\n* 1 FETCH (UID x)\r\n";
	expect_error(badfetch, strlen(badfetch), MK_EPROTO, "bad UID");
	mk_buf_cleanup(&body_acc);
}

static void test_datetime(void **state)
{
	int64_t t;
	int32_t tz;
	assert_int_equal(mk_imap_parse_datetime("29-Feb-2024 23:59:59 +0100", 26, &t, &tz), 0);
	assert_int_equal(t, 1709247599);
	assert_int_equal(tz, 60);
	assert_int_equal(mk_imap_parse_datetime("30-Feb-2024 00:00:00 +0000", 26, &t, &tz), MK_EINVAL);
	assert_int_equal(mk_imap_parse_datetime("1-Jan-2024 00:00:00 +0000", 25, &t, &tz), 0);
	assert_int_equal(mk_imap_parse_datetime("01-Foo-2024 00:00:00 +0000", 26, &t, &tz), MK_EINVAL);
	uint32_t v;
	assert_true(mk_imap_code_u32("UIDVALIDITY 14", "UIDVALIDITY", &v));
	assert_int_equal(v, 14);
	assert_false(mk_imap_code_u32("UIDNEXT x", "UIDNEXT", &v));
	assert_false(mk_imap_code_u32("UIDVALIDITYX 1", "UIDVALIDITY", &v));
}


/* APPEND (save_sent): the message literal is streamed after "+" (or at
 * once with LITERAL+), nothing else may be sent meanwhile, and a refusal
 * before "+" sends no message byte. */
static void test_append(void **state)
{
	(void)state;
	struct mk_imap_cmd a[] = {{.kind = MK_IMAP_CMD_APPEND, .a = "Sent Items", .b = "(\\Seen)", .size = 20},
				  {.kind = MK_IMAP_CMD_NOOP}};
	check3("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n+ Ready for literal data\r\nA1 OK [APPENDUID 7 9] APPEND completed.\r\n",
	       a, 2, true,
	       "GREETING PREAUTH [CAPABILITY IMAP4rev1] hi\nSUBMIT 0 tag 1\nSUBMIT -31010 tag 0\nCONT Ready for literal data\n"
	       "APPENDED 0 0 20 ready-after 0\nTAGGED 1 OK [APPENDUID 7 9] APPEND completed.\n",
	       "A1 APPEND \"Sent Items\" (\\Seen) {20}\r\nFrom: a@b\r\n\r\nhello\r\n\r\n");
	check3("* PREAUTH [CAPABILITY IMAP4rev1 LITERAL+] hi\r\nA1 OK APPEND completed.\r\n", a, 1, true,
	       "GREETING PREAUTH [CAPABILITY IMAP4rev1 LITERAL+] hi\nSUBMIT 0 tag 1\nAPPENDED 0 0 20 ready-after 0\n"
	       "TAGGED 1 OK [] APPEND completed.\n",
	       "A1 APPEND \"Sent Items\" (\\Seen) {20+}\r\nFrom: a@b\r\n\r\nhello\r\n\r\n");
	check3("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\nA1 NO [TRYCREATE] Mailbox doesn't exist: Sent Items\r\n", a, 1,
	       true,
	       "GREETING PREAUTH [CAPABILITY IMAP4rev1] hi\nSUBMIT 0 tag 1\n"
	       "TAGGED 1 NO [TRYCREATE] Mailbox doesn't exist: Sent Items\n",
	       "A1 APPEND \"Sent Items\" (\\Seen) {20}\r\n");
	/* not authenticated, bad flags */
	struct mk_imap_cmd b[] = {{.kind = MK_IMAP_CMD_APPEND, .a = "Sent", .size = 20}};
	check3("* OK hi\r\n", b, 1, true, "GREETING OK [] hi\nSUBMIT -31010 tag 0\n", "");
	struct mk_imap_cmd f[] = {{.kind = MK_IMAP_CMD_APPEND, .a = "Sent", .b = "\\Seen\r\n", .size = 20}};
	check3("* PREAUTH hi\r\n", f, 1, true, "GREETING PREAUTH [] hi\nSUBMIT -31008 tag 0\n", "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exchange_greeting_and_list),
		cmocka_unit_test(test_greeting_caps_code),
		cmocka_unit_test(test_login_refused_without_tls),
		cmocka_unit_test(test_login_quoted_and_literal),
		cmocka_unit_test(test_held_secret_dropped_on_no),
		cmocka_unit_test(test_authenticate_plain),
		cmocka_unit_test(test_authenticate_generic),
		cmocka_unit_test(test_authenticate_big_token),
		cmocka_unit_test(test_starttls_injection),
		cmocka_unit_test(test_limits_and_garbage),
		cmocka_unit_test(test_utf7),
		cmocka_unit_test(test_fetch_streaming),
		cmocka_unit_test(test_datetime),
		cmocka_unit_test(test_append),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
