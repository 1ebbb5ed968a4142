/* SPDX-License-Identifier: MIT */
/*
 * test_smtp_msg.c - mk_smtp_msg: real-world headers (mutt, Thunderbird,
 * git send-email, Outlook, sendmail -t classics), Bcc removal and
 * Date/Message-ID insertion checked byte for byte with a fixed clock, zone
 * and random bytes, every error message, the limits, and
 * mk_smtp_msg_header_end over every split of its input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"
#include "mk_smtp_msg.h"

#include <stdio.h>
#include <string.h>

/* 2026-12-06 08:00:00 UTC, a Sunday */
#define NOW 1796544000
static const uint8_t RND[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
				0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
#define GEN_DATE "Date: Sun, 06 Dec 2026 09:00:00 +0100\r\n"
#define GEN_MSGID "Message-ID: <00112233445566778899aabbccddeeff@host.example>\r\n"

static struct mk_smtp_msg_opts opts(bool t)
{
	struct mk_smtp_msg_opts o = {
		.rcpt_from_header = t, .now = NOW, .tz_minutes = 60, .msgid_domain = "host.example", .random = RND};
	return o;
}

static int prep(struct mk_smtp_msg *m, const char *in, bool t)
{
	struct mk_smtp_msg_opts o = opts(t);
	return mk_smtp_msg_prepare(m, (const uint8_t *)in, strlen(in), &o);
}

/* The list joined with ',' into a static buffer. */
static const char *join(char **l, unsigned n)
{
	static char out[64 * 1024];
	size_t w = 0;
	out[0] = '\0';
	for (unsigned i = 0; i < n; i++)
		w += (size_t)snprintf(out + w, sizeof(out) - w, "%s%s", i ? "," : "", l[i]);
	return out;
}

static const char *hdr(const struct mk_smtp_msg *m)
{
	return m->header.len ? (const char *)m->header.data : "";
}

/* ---- header_end ---- */

/* The answer for the whole input, and -1 or that same answer for every
 * prefix (so feeding more bytes never changes the result). */
static void check_end(const char *in, long want, long want_eof)
{
	size_t n = strlen(in);
	assert_int_equal(mk_smtp_msg_header_end((const uint8_t *)in, n, false), want);
	assert_int_equal(mk_smtp_msg_header_end((const uint8_t *)in, n, true), want_eof);
	for (size_t k = 0; k < n; k++) {
		long r = mk_smtp_msg_header_end((const uint8_t *)in, k, false);
		if (want >= 0 && (size_t)want <= k)
			assert_int_equal(r, want);
		else
			assert_int_equal(r, -1);
	}
}

static void test_header_end(void **state)
{
	(void)state;
	check_end("From: a@x\r\nTo: b@y\r\n\r\nbody\r\n", 22, 22);
	check_end("From: a@x\nTo: b@y\n\nbody\n", 19, 19);
	check_end("From: a@x\r\n\r\n", 13, 13); /* no body */
	check_end("From: a@x\n\n", 11, 11);
	check_end("\r\nbody", 2, 2); /* empty header */
	check_end("\nbody", 1, 1);
	check_end("From: a@x\nTo: b@y\n", -1, 18);		     /* eof: all header */
	check_end("From: a@x\r\nTo: b@y", -1, 18);		     /* no final line end */
	check_end("From: a@x\r\n\r", -1, 12);			     /* CR then eof */
	check_end("From: a@x\r\n\rX: y\r\n\r\nb", 20, 20);	     /* a line starting with CR */
	check_end("From: a@x\r\nSubject: a\r\n b\r\n\r\nz", 29, 29); /* folding is no end */
	check_end("From: a@x\n\r\nbody", 12, 12);		     /* mixed endings */
	check_end("", -1, 0);
}

static void test_header_end_limit(void **state)
{
	(void)state;
	size_t big = MK_SMTP_MSG_HEADER_MAX + 10;
	uint8_t *p = mk_xmalloc(big);
	memset(p, 'a', big);
	memcpy(p, "X: ", 3);
	assert_int_equal(mk_smtp_msg_header_end(p, MK_SMTP_MSG_HEADER_MAX - 1, false), -1);
	assert_int_equal(mk_smtp_msg_header_end(p, MK_SMTP_MSG_HEADER_MAX, false), MK_ETOOBIG);
	assert_int_equal(mk_smtp_msg_header_end(p, big, false), MK_ETOOBIG);
	assert_int_equal(mk_smtp_msg_header_end(p, big, true), MK_ETOOBIG);
	assert_int_equal(mk_smtp_msg_header_end(p, MK_SMTP_MSG_HEADER_MAX, true), MK_SMTP_MSG_HEADER_MAX);
	/* the empty line ending exactly at the limit is fine, one past is not */
	p[MK_SMTP_MSG_HEADER_MAX - 2] = '\n';
	p[MK_SMTP_MSG_HEADER_MAX - 1] = '\n';
	assert_int_equal(mk_smtp_msg_header_end(p, big, false), MK_SMTP_MSG_HEADER_MAX);
	p[MK_SMTP_MSG_HEADER_MAX - 2] = 'a';
	p[MK_SMTP_MSG_HEADER_MAX - 1] = '\n';
	p[MK_SMTP_MSG_HEADER_MAX] = '\n';
	assert_int_equal(mk_smtp_msg_header_end(p, big, false), MK_ETOOBIG);

	/* prepare says so with a message */
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	struct mk_smtp_msg_opts o = opts(true);
	assert_int_equal(mk_smtp_msg_prepare(&m, p, big, &o), MK_ETOOBIG);
	assert_string_equal(m.error, "header block longer than 1048576 bytes");
	mk_smtp_msg_cleanup(&m);
	mk_free(p);
}

/* ---- real-world headers ---- */

static void test_mutt(void **state)
{
	(void)state;
	const char *in = "Date: Sun, 6 Dec 2026 09:00:00 +0100\n"
			 "From: John Doe <john@example.org>\n"
			 "To: \"Doe, Jane\" <jane@example.com>, bob@example.net\n"
			 "Cc: team: a@x.example, b@y.example;\n"
			 "Bcc: secret@example.com\n"
			 "Subject: lunch?\n"
			 "Message-ID: <20261206080000.GA1234@host.example.org>\n"
			 "MIME-Version: 1.0\n"
			 "Content-Type: text/plain; charset=us-ascii\n"
			 "Content-Disposition: inline\n"
			 "User-Agent: Mutt/2.2.9 (2022-11-12)\n"
			 "\n"
			 "see you\n";
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	assert_int_equal(prep(&m, in, true), 0);
	assert_string_equal(hdr(&m), "Date: Sun, 6 Dec 2026 09:00:00 +0100\r\n"
				     "From: John Doe <john@example.org>\r\n"
				     "To: \"Doe, Jane\" <jane@example.com>, bob@example.net\r\n"
				     "Cc: team: a@x.example, b@y.example;\r\n"
				     "Subject: lunch?\r\n"
				     "Message-ID: <20261206080000.GA1234@host.example.org>\r\n"
				     "MIME-Version: 1.0\r\n"
				     "Content-Type: text/plain; charset=us-ascii\r\n"
				     "Content-Disposition: inline\r\n"
				     "User-Agent: Mutt/2.2.9 (2022-11-12)\r\n"
				     "\r\n");
	assert_string_equal(join(m.rcpt, m.n_rcpt),
			    "jane@example.com,bob@example.net,a@x.example,b@y.example,secret@example.com");
	assert_string_equal(join(m.from, m.n_from), "john@example.org");
	assert_string_equal(m.message_id, "<20261206080000.GA1234@host.example.org>");
	assert_int_equal(m.body_offset, strlen(in) - strlen("see you\n"));
	assert_false(m.added_date);
	assert_false(m.added_message_id);
	assert_true(m.removed_bcc);
	assert_false(m.header_8bit);
	assert_false(m.smtputf8);
	assert_string_equal(m.sender, "");
	mk_smtp_msg_cleanup(&m);
	mk_smtp_msg_cleanup(&m); /* idempotent */
}

static void test_thunderbird(void **state)
{
	(void)state;
	const char *in = "Message-ID: <0b3c2a1e-1111-2222-3333-444455556666@example.org>\r\n"
			 "Date: Sun, 6 Dec 2026 09:00:00 +0100\r\n"
			 "MIME-Version: 1.0\r\n"
			 "User-Agent: Mozilla Thunderbird\r\n"
			 "Content-Language: en-US\r\n"
			 "To: undisclosed-recipients:;\r\n"
			 "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>\r\n"
			 "Bcc: a@example.com, \"Friend, Best\" <A@EXAMPLE.COM>, c@example.com\r\n"
			 "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"
			 "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
			 "Content-Transfer-Encoding: 7bit\r\n"
			 "\r\n"
			 "Hi\r\n";
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	assert_int_equal(prep(&m, in, true), 0);
	assert_string_equal(join(m.rcpt, m.n_rcpt), "a@example.com,c@example.com");
	assert_string_equal(join(m.from, m.n_from), "joerg@example.de");
	assert_string_equal(m.message_id, "<0b3c2a1e-1111-2222-3333-444455556666@example.org>");
	/* the same bytes minus the Bcc line */
	const char *bcc = strstr(in, "Bcc:");
	const char *after = strstr(bcc, "\r\n") + 2;
	size_t hl = (size_t)(strstr(in, "\r\n\r\n") + 4 - in);
	assert_int_equal(m.header.len, hl - (size_t)(after - bcc));
	assert_memory_equal(m.header.data, in, (size_t)(bcc - in));
	assert_memory_equal(m.header.data + (bcc - in), after, hl - (size_t)(after - in));
	assert_true(m.removed_bcc);
	mk_smtp_msg_cleanup(&m);
}

static void test_git_send_email(void **state)
{
	(void)state;
	const char *in = "From: Dev One <dev1@example.org>\n"
			 "To: list@vger.example.org\n"
			 "Cc: Maintainer <maint@example.org>,\n"
			 "\tReviewer Two <rev2@example.com>,\n"
			 "\tdev1@example.org\n"
			 "Subject: [PATCH v2 1/3] foo: bar the baz\n"
			 "Date: Sun,  6 Dec 2026 09:00:00 +0100\n"
			 "Message-Id: <20261206080000.12345-1-dev1@example.org>\n"
			 "X-Mailer: git-send-email 2.39.2\n"
			 "In-Reply-To: <cover.1@example.org>\n"
			 "References: <cover.1@example.org>\n"
			 "MIME-Version: 1.0\n"
			 "Content-Transfer-Encoding: 8bit\n"
			 "\n"
			 "---\n";
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	assert_int_equal(prep(&m, in, true), 0);
	assert_string_equal(join(m.rcpt, m.n_rcpt),
			    "list@vger.example.org,maint@example.org,rev2@example.com,dev1@example.org");
	assert_string_equal(m.message_id, "<20261206080000.12345-1-dev1@example.org>");
	assert_false(m.added_message_id);
	assert_false(m.removed_bcc);
	assert_non_null(strstr(hdr(&m), "Cc: Maintainer <maint@example.org>,\r\n\tReviewer Two <rev2@example.com>,\r\n"
					"\tdev1@example.org\r\nSubject:"));
	mk_smtp_msg_cleanup(&m);
}

static void test_outlook_folded(void **state)
{
	(void)state;
	struct mk_buf b;
	mk_buf_init(&b, 1 << 20);
	mk_buf_append_str(&b, "From: \"Smith, Anna\" <anna.smith@contoso.example>\r\n"
			      "To: \"Miller, Bob\" <bob.miller@contoso.example>; \r\n");
	/* Outlook separates with ';' in its UI but writes ','; a folded list */
	mk_buf_reset(&b);
	mk_buf_append_str(&b, "From: \"Smith, Anna\" <anna.smith@contoso.example>\r\nTo: ");
	for (int i = 0; i < 40; i++)
		mk_buf_printf(&b, "%s\"Last%d, First%d\" <first%d.last%d@contoso.example>", i ? ",\r\n " : "", i, i, i,
			      i);
	mk_buf_append_str(&b, "\r\nCC: \"Team\r\n Lead\" <LEAD@contoso.example>,\r\n <first3.last3@CONTOSO.example>\r\n"
			      "Subject: =?us-ascii?Q?Quarterly_review?=\r\n"
			      "Thread-Topic: Quarterly review\r\n"
			      "Thread-Index: AdrKZk1pQ2Z0dGVzdA==\r\n"
			      "Date: Sun, 6 Dec 2026 08:00:00 +0000\r\n"
			      "Message-ID:\r\n <AM0PR01MB1234.eurprd01.prod.outlook.com>\r\n"
			      "Accept-Language: en-US\r\n"
			      "X-MS-Has-Attach:\r\n"
			      "X-MS-TNEF-Correlator:\r\n"
			      "\r\n");
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	assert_int_equal(prep(&m, (const char *)b.data, true), 0);
	assert_int_equal(m.n_rcpt, 41);
	assert_string_equal(m.rcpt[0], "first0.last0@contoso.example");
	assert_string_equal(m.rcpt[39], "first39.last39@contoso.example");
	assert_string_equal(m.rcpt[40], "LEAD@contoso.example");
	assert_string_equal(m.message_id, "<AM0PR01MB1234.eurprd01.prod.outlook.com>");
	assert_memory_equal(m.header.data, b.data, b.len); /* already CRLF: unchanged */
	assert_int_equal(m.header.len, b.len);
	mk_smtp_msg_cleanup(&m);
	mk_buf_cleanup(&b);
}

static void test_sendmail_classic_added(void **state)
{
	(void)state;
	const char *in = "From: me@example.org (Me Myself)\n"
			 "To: you@example.com (You), \"a b\"@example.com, john(comment)@example.com,\n"
			 "  <@r1.example,@r2.example:routed@example.com>, \"john\"@EXAMPLE.com\n"
			 "cc: Some One <\"some.one\"@[192.0.2.1]>, \"x\\\"y\".z@example.com, a . b @ example . com\n"
			 "Subject: test\n"
			 "\n";
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	assert_int_equal(prep(&m, in, true), 0);
	assert_string_equal(join(m.rcpt, m.n_rcpt), "you@example.com,\"a b\"@example.com,john@example.com,"
						    "routed@example.com,some.one@[192.0.2.1],\"x\\\"y.z\"@example.com,"
						    "a.b@example.com");
	assert_string_equal(
		hdr(&m), "From: me@example.org (Me Myself)\r\n"
			 "To: you@example.com (You), \"a b\"@example.com, john(comment)@example.com,\r\n"
			 "  <@r1.example,@r2.example:routed@example.com>, \"john\"@EXAMPLE.com\r\n"
			 "cc: Some One <\"some.one\"@[192.0.2.1]>, \"x\\\"y\".z@example.com, a . b @ example . com\r\n"
			 "Subject: test\r\n" GEN_DATE GEN_MSGID "\r\n");
	assert_true(m.added_date);
	assert_true(m.added_message_id);
	assert_string_equal(m.message_id, "<00112233445566778899aabbccddeeff@host.example>");
	for (unsigned i = 0; i < m.n_rcpt; i++)
		assert_true(mk_smtp_msg_addr_valid(m.rcpt[i]));
	mk_smtp_msg_cleanup(&m);
}

static void test_bcc_removed_exact(void **state)
{
	(void)state;
	const char *in = "From: a@x.example\r\n"
			 "Bcc: hidden1@x.example,\r\n"
			 "  hidden2@x.example\r\n"
			 "To: b@y.example\r\n"
			 "BCC:\r\n"
			 "\tc@z.example\r\n"
			 "Resent-Bcc: r@z.example\r\n"
			 "Resent-To: r2@z.example\r\n"
			 "Subject: s\r\n"
			 " continued\r\n"
			 "bcc: last@z.example\r\n"
			 "\r\n"
			 "Bcc: in the body stays\r\n";
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	assert_int_equal(prep(&m, in, true), 0);
	assert_string_equal(hdr(&m), "From: a@x.example\r\n"
				     "To: b@y.example\r\n"
				     "Resent-To: r2@z.example\r\n"
				     "Subject: s\r\n"
				     " continued\r\n" GEN_DATE GEN_MSGID "\r\n");
	/* Resent-* never gives recipients */
	assert_string_equal(join(m.rcpt, m.n_rcpt),
			    "hidden1@x.example,hidden2@x.example,b@y.example,c@z.example,last@z.example");
	assert_true(m.removed_bcc);
	assert_string_equal(in + m.body_offset, "Bcc: in the body stays\r\n");

	/* without -t: no envelope collected, Bcc still removed, To not even
	 * parsed (the recipients come from the command line) */
	assert_int_equal(prep(&m, "From: a@x.example\nTo: not an address\nBcc: h@x.example\n\n", false), 0);
	assert_string_equal(hdr(&m), "From: a@x.example\r\nTo: not an address\r\n" GEN_DATE GEN_MSGID "\r\n");
	assert_int_equal(m.n_rcpt, 0);
	assert_true(m.removed_bcc);
	mk_smtp_msg_cleanup(&m);
}

static void test_date_msgid_inserted(void **state)
{
	(void)state;
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	/* no empty line at all (eof), no final newline */
	assert_int_equal(prep(&m, "From: Ann <ann@example.org>\nTo: bob@example.net", true), 0);
	assert_string_equal(hdr(&m),
			    "From: Ann <ann@example.org>\r\nTo: bob@example.net\r\n" GEN_DATE GEN_MSGID "\r\n");
	/* Date present, Message-ID missing; domain from From when none given */
	struct mk_smtp_msg_opts o = opts(true);
	o.msgid_domain = NULL;
	o.tz_minutes = -300;
	const char *in = "Date: x\nFrom: ann@Example.ORG\nTo: b@c\n\n";
	assert_int_equal(mk_smtp_msg_prepare(&m, (const uint8_t *)in, strlen(in), &o), 0);
	assert_string_equal(hdr(&m), "Date: x\r\nFrom: ann@Example.ORG\r\nTo: b@c\r\n"
				     "Message-ID: <00112233445566778899aabbccddeeff@Example.ORG>\r\n\r\n");
	assert_false(m.added_date);
	assert_true(m.added_message_id);
	/* a bad msgid_domain falls back too; Date with a negative zone */
	o.msgid_domain = "bad domain";
	in = "Message-ID: <a@b>\nFrom: ann@example.org\nTo: b@c\n\n";
	assert_int_equal(mk_smtp_msg_prepare(&m, (const uint8_t *)in, strlen(in), &o), 0);
	assert_string_equal(hdr(&m), "Message-ID: <a@b>\r\nFrom: ann@example.org\r\nTo: b@c\r\n"
				     "Date: Sun, 06 Dec 2026 03:00:00 -0500\r\n\r\n");
	assert_string_equal(m.message_id, "<a@b>");
	mk_smtp_msg_cleanup(&m);
}

static void test_format_date(void **state)
{
	(void)state;
	char b[64];
	mk_smtp_msg_format_date(NOW, 60, b, sizeof(b));
	assert_string_equal(b, "Sun, 06 Dec 2026 09:00:00 +0100");
	mk_smtp_msg_format_date(0, 0, b, sizeof(b));
	assert_string_equal(b, "Thu, 01 Jan 1970 00:00:00 +0000");
	mk_smtp_msg_format_date(0, -90, b, sizeof(b));
	assert_string_equal(b, "Wed, 31 Dec 1969 22:30:00 -0130");
	mk_smtp_msg_format_date(951782400, 330, b, sizeof(b)); /* 2000-02-29 00:00 UTC */
	assert_string_equal(b, "Tue, 29 Feb 2000 05:30:00 +0530");
	mk_smtp_msg_format_date(4102444799LL, 0, b, sizeof(b));
	assert_string_equal(b, "Thu, 31 Dec 2099 23:59:59 +0000");
}

static void test_8bit(void **state)
{
	(void)state;
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	assert_int_equal(prep(&m,
			      "From: J\xc3\xb6rg <j@example.de>\nTo: a@example.com\nSubject: Gr\xc3\xbc\xc3\x9f"
			      "e\n\n",
			      true),
			 0);
	assert_true(m.header_8bit);
	assert_false(m.smtputf8);
	assert_int_equal(prep(&m,
			      "From: j@example.de\nTo: j\xc3\xb6rg@b\xc3\xbc"
			      "cher.example\n\n",
			      true),
			 0);
	assert_true(m.header_8bit);
	assert_true(m.smtputf8);
	assert_string_equal(m.rcpt[0], "j\xc3\xb6rg@b\xc3\xbc"
				       "cher.example");
	mk_smtp_msg_cleanup(&m);
}

/* ---- errors ---- */

struct err_case {
	const char *in;
	int code;
	const char *error;
};

static void test_errors(void **state)
{
	(void)state;
	static const struct err_case cases[] = {
		{"From: a@x\nTo: b@y,\n \"foo <c@z>\n\n", MK_EINVAL, "line 3: unterminated quoted string in To"},
		{"From: a@x\nCc: (a (nested) comment\n\n", MK_EINVAL, "line 2: unterminated comment in Cc"},
		{"From: a@x\nTo: b@[1.2.3.4\n\n", MK_EINVAL, "line 2: unterminated domain literal in To"},
		{"From: a@x\nTo: b@[1.2[3.4]\n\n", MK_EINVAL, "line 2: '[' inside a domain literal in To"},
		{"From: a@x\nTo: Bob <b@y\n\n", MK_EINVAL, "line 2: missing '>' after the address in To"},
		{"From: a@x\nTo: <>\n\n", MK_EINVAL, "line 2: empty address <> in To"},
		{"From: a@x\nTo: Doe, John <j@x>\n\n", MK_EINVAL, "line 2: \"Doe\" is not an address (no '@') in To"},
		{"From: a@x\nTo: root\n\n", MK_EINVAL, "line 2: \"root\" is not an address (no '@') in To"},
		{"From: a@x\nTo: team: a@x, b@y\n\n", MK_EINVAL, "line 2: group not closed with ';' in To"},
		{"From: a@x\nTo: t: u: a@x;;\n\n", MK_EINVAL, "line 2: group inside a group in To"},
		{"From: a@x\nTo: a@x;\n\n", MK_EINVAL, "line 2: ';' outside a group in To"},
		{"From: a@x\nTo: : a@x;\n\n", MK_EINVAL, "line 2: group without a name in To"},
		{"From: a@x\nTo: g:; b@y\n\n", MK_EINVAL, "line 2: expected ',' between addresses at \"b@y\" in To"},
		{"From: a@x\nTo: @y\n\n", MK_EINVAL, "line 2: missing local part before '@' in To"},
		{"From: a@x\nTo: b@\n\n", MK_EINVAL, "line 2: missing domain after '@' in To"},
		{"From: a@x\nTo: b@x..y\n\n", MK_EINVAL, "line 2: invalid domain in To"},
		{"From: a@x\nTo: b@x!y\n\n", MK_EINVAL, "line 2: invalid domain \"x!y\" in To"},
		{"From: a@x\nTo: .b@x\n\n", MK_EINVAL, "line 2: invalid local part in To"},
		{"From: a@x\nTo: b..c@x\n\n", MK_EINVAL, "line 2: invalid local part in To"},
		{"From: a@x\nTo: \"\"@x\n\n", MK_EINVAL, "line 2: empty local part in To"},
		{"From: a@x\nTo: \"a\tb\"@x\n\n", MK_EINVAL, "line 2: control character in quoted local part in To"},
		{"From: a@x\nTo: <a@x> <b@y>\n\n", MK_EINVAL,
		 "line 2: expected ',' between addresses at \"<b@y>\" in To"},
		{"From: a@x\nTo: a@x Bob\n\n", MK_EINVAL, "line 2: expected ',' between addresses at \"Bob\" in To"},
		{"From: a@x\nTo: a@x)\n\n", MK_EINVAL, "line 2: ')' without '(' in To"},
		{"From: a@x\nTo: a]@x\n\n", MK_EINVAL, "line 2: ']' without '[' in To"},
		{"From: a@x\nTo: a\\b@x\n\n", MK_EINVAL, "line 2: backslash outside a quoted string in To"},
		{"From: a@x\nTo: a\x01@x\n\n", MK_EINVAL, "line 2: invalid character 0x01 in To"},
		{"From: a@x\nTo: <@r1 a@x>\n\n", MK_EINVAL, "line 2: invalid route in <...> in To"},
		{"From: a@x\nTo: [1.2.3.4]\n\n", MK_EINVAL, "line 2: unexpected \"[1.2.3.4]\" in To"},
		{"From: a@x\nTo: Bob > b@y\n\n", MK_EINVAL, "line 2: unexpected \">\" in To"},
		{"From: a@x\nBcc: ok@x,\n\tfine@y,\n\t\"bad\n\n", MK_EINVAL,
		 "line 4: unterminated quoted string in Bcc"},
		{"From: a b\n\n", MK_EINVAL, "line 1: \"a b\" is not an address (no '@') in From"},
		{"From: undisclosed-recipients:;\nTo: b@y\n\n", MK_EINVAL, "line 1: no address in From"},
		{"From: a@x\nSender: a@x, b@y\nTo: b@y\n\n", MK_EINVAL, "line 2: Sender must hold exactly one address"},
		{"From: a@x\nFrom: b@x\nTo: b@y\n\n", MK_EINVAL,
		 "line 2: a second From field (the first is on line 1)"},
		{"Message-ID: <a@b>\nFrom: a@x\nmessage-id: <c@d>\n\n", MK_EINVAL,
		 "line 3: a second Message-ID field (the first is on line 1)"},
		{"Date: x\nFrom: a@x\nDATE: y\n\n", MK_EINVAL, "line 3: a second Date field (the first is on line 1)"},
		{"From: a@x\nMessage-ID: a@b\n\n", MK_EINVAL, "line 2: Message-ID is not of the form <id@domain>"},
		{"From: a@x\nMessage-ID: <a b@c>\n\n", MK_EINVAL, "line 2: Message-ID is not of the form <id@domain>"},
		{"From: a@x\nMessage-ID:\n\n", MK_EINVAL, "line 2: Message-ID is not of the form <id@domain>"},
		{"To: b@y\nSubject: x\n\n", MK_EINVAL, "no From field in the header"},
		{"\n", MK_EINVAL, "no From field in the header"},
		{"From: a@x\nSubject: x\n\n", MK_EINVAL, "no recipient in To, Cc or Bcc"},
		{"From: a@x\nTo: undisclosed-recipients:;\n\n", MK_EINVAL, "no recipient in To, Cc or Bcc"},
		{" From: a@x\n\n", MK_EINVAL, "line 1: the header starts with white space (a continuation line)"},
		{"From: a@x\nTo: b@y\nthis is no header\n\n", MK_EINVAL, "line 3: header line without a colon"},
		{"From: a@x\n: empty\n\n", MK_EINVAL, "line 2: header field without a name"},
		{"From: a@x\nSub ject: x\n\n", MK_EINVAL, "line 2: invalid character in a header field name"},
		{"From: a@x\nSubj\xc3\xa9t: x\n\n", MK_EINVAL, "line 2: invalid character in a header field name"},
		{"From john@x Sun Dec  6 09:00:00 2026\nFrom: a@x\n\n", MK_EINVAL,
		 "line 1: an mbox \"From \" line, not a header field"},
		{"From: a@x\nSubject: a\rb\n\n", MK_EINVAL, "line 2: CR without LF in the header"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mk_smtp_msg m;
		mk_smtp_msg_init(&m);
		int r = prep(&m, cases[i].in, true);
		if (r != cases[i].code || strcmp(m.error, cases[i].error) != 0)
			print_error("case %zu: got %d \"%s\", want %d \"%s\"\n", i, r, m.error, cases[i].code,
				    cases[i].error);
		assert_int_equal(r, cases[i].code);
		assert_string_equal(m.error, cases[i].error);
		assert_int_equal(m.header.len, 0);
		assert_int_equal(m.n_rcpt, 0);
		mk_smtp_msg_cleanup(&m);
	}
	/* NUL inside a header line */
	static const char nul[] = "From: a@x\nX: a\0b\n\n";
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	struct mk_smtp_msg_opts o = opts(true);
	assert_int_equal(mk_smtp_msg_prepare(&m, (const uint8_t *)nul, sizeof(nul) - 1, &o), MK_EINVAL);
	assert_string_equal(m.error, "line 2: NUL byte in the header");
	mk_smtp_msg_cleanup(&m);
}

/* ---- limits ---- */

static void test_limits(void **state)
{
	(void)state;
	struct mk_buf b;
	mk_buf_init(&b, 1 << 22);
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);

	/* 1000 distinct recipients over To, Cc and Bcc (plus duplicates) */
	mk_buf_append_str(&b, "From: a@x\n");
	for (int i = 0; i < MK_SMTP_MSG_RCPT_MAX; i++)
		mk_buf_printf(&b, "%s: r%d@example.com\n", i % 3 == 0 ? "To" : i % 3 == 1 ? "Cc" : "Bcc", i);
	mk_buf_append_str(&b, "To: R0@EXAMPLE.COM, r999@example.com\n");
	assert_int_equal(prep(&m, (const char *)b.data, true), 0);
	assert_int_equal(m.n_rcpt, MK_SMTP_MSG_RCPT_MAX);
	/* ... and the 1001st */
	mk_buf_append_str(&b, "Cc: one@more.example\n");
	assert_int_equal(prep(&m, (const char *)b.data, true), MK_ETOOBIG);
	assert_string_equal(m.error, "line 1003: more than 1000 addresses in Cc");
	assert_int_equal(m.n_rcpt, 0);

	/* an address of exactly 320 octets, then 321 */
	char addr[400];
	memset(addr, 'l', 64);
	addr[64] = '@';
	memset(addr + 65, 'd', 255);
	addr[320] = '\0';
	for (int i = 65 + 60; i < 320; i += 61)
		addr[i] = '.';
	assert_true(mk_smtp_msg_addr_valid(addr));
	mk_buf_reset(&b);
	mk_buf_printf(&b, "From: a@x\nTo: <%s>\n\n", addr);
	assert_int_equal(prep(&m, (const char *)b.data, true), 0);
	assert_string_equal(m.rcpt[0], addr);
	mk_buf_reset(&b);
	mk_buf_printf(&b, "From: a@x\nTo: <l%s>\n\n", addr);
	assert_int_equal(prep(&m, (const char *)b.data, true), MK_ETOOBIG);
	assert_string_equal(m.error, "line 2: address longer than 320 octets in To");
	mk_buf_reset(&b);
	mk_buf_printf(&b, "From: a@x\nTo: \"%s\"@x\n\n", addr);
	assert_int_equal(prep(&m, (const char *)b.data, true), MK_ETOOBIG);
	assert_string_equal(m.error, "line 2: address longer than 320 octets in To");

	/* a giant header just under the limit: one long folded Subject */
	mk_buf_reset(&b);
	mk_buf_append_str(&b, "From: a@x\nTo: b@y\nSubject: x");
	while (b.len < MK_SMTP_MSG_HEADER_MAX - 200)
		mk_buf_append_str(&b, "\n aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	mk_buf_append_str(&b, "\n\nbody");
	assert_int_equal(prep(&m, (const char *)b.data, true), 0);
	assert_int_equal(m.body_offset, b.len - 4);
	assert_true(m.header.len > MK_SMTP_MSG_HEADER_MAX);
	/* over the limit */
	mk_buf_truncate(&b, b.len - 6, false);
	while (b.len < MK_SMTP_MSG_HEADER_MAX + 100)
		mk_buf_append_str(&b, "\n aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	mk_buf_append_str(&b, "\n\nbody");
	assert_int_equal(prep(&m, (const char *)b.data, true), MK_ETOOBIG);
	assert_string_equal(m.error, "header block longer than 1048576 bytes");

	mk_smtp_msg_cleanup(&m);
	mk_buf_cleanup(&b);
}

/* ---- address helpers ---- */

static void test_parse_addresses(void **state)
{
	(void)state;
	char **l = NULL;
	unsigned n = 0;
	char err[200] = "";
	const char *v = "Name <a@b.example>";
	assert_int_equal(mk_smtp_msg_parse_addresses(v, strlen(v), &l, &n, err, sizeof(err)), 0);
	v = "A@B.EXAMPLE, c@d.example, \"Doe, J.\" <c@D.example>, (just a comment), ,";
	assert_int_equal(mk_smtp_msg_parse_addresses(v, strlen(v), &l, &n, err, sizeof(err)), 0);
	assert_string_equal(join(l, n), "a@b.example,c@d.example");
	v = "John Q. Public <jqp@example.com>, Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>";
	assert_int_equal(mk_smtp_msg_parse_addresses(v, strlen(v), &l, &n, err, sizeof(err)), 0);
	v = "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, Mary Smith <mary@x.test>";
	assert_int_equal(mk_smtp_msg_parse_addresses(v, strlen(v), &l, &n, err, sizeof(err)), 0);
	assert_string_equal(join(l, n), "a@b.example,c@d.example,jqp@example.com,pete@silly.test,c@a.test,"
					"joe@where.test,jdoe@one.test,mary@x.test");
	v = "x@";
	assert_int_equal(mk_smtp_msg_parse_addresses(v, strlen(v), &l, &n, err, sizeof(err)), MK_EINVAL);
	assert_string_equal(err, "missing domain after '@'");
	/* not NUL-terminated: only n bytes are read */
	assert_int_equal(mk_smtp_msg_parse_addresses("q@r.example, junk", 11, &l, &n, err, sizeof(err)), 0);
	assert_string_equal(l[n - 1], "q@r.example");
	assert_int_equal(mk_smtp_msg_parse_addresses("", 0, &l, &n, NULL, 0), 0);
	mk_smtp_msg_free_list(&l, &n);
	assert_null(l);
	assert_int_equal(n, 0);
	mk_smtp_msg_free_list(&l, &n);
}

static void test_addr_valid(void **state)
{
	(void)state;
	static const char *const good[] = {
		"a@b",
		"first.last@example.com",
		"\"a b\"@x",
		"\"a\\\"b\"@x",
		"user+tag@sub.example.co.uk",
		"x@[192.0.2.1]",
		"x@[IPv6:2001:db8::1]",
		"j\xc3\xb6rg@b\xc3\xbc"
		"cher.de",
		"o'neil@x-y.example",
		"a@host_name.example",
	};
	static const char *const bad[] = {
		"",
		"a",
		"@b",
		"a@",
		"a b@x",
		"a@b c",
		".a@x",
		"a.@x",
		"a..b@x",
		"a@.x",
		"a@x.",
		"a@x..y",
		"\"a@x",
		"\"a\"b@x",
		"a@[1.2.3.4",
		"a@[1 2]",
		"a@b@c",
		"a\r\n@x",
		"a@x\r\nRCPT TO:<b@y>",
		"<a@x>",
		"a@x>",
		"\"a\x01\"@x",
		"a@x!y",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (!mk_smtp_msg_addr_valid(good[i]))
			print_error("good[%zu] %s\n", i, good[i]);
		assert_true(mk_smtp_msg_addr_valid(good[i]));
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (mk_smtp_msg_addr_valid(bad[i]))
			print_error("bad[%zu] %s\n", i, bad[i]);
		assert_false(mk_smtp_msg_addr_valid(bad[i]));
	}
	assert_false(mk_smtp_msg_addr_valid(NULL));
	assert_true(mk_smtp_msg_addr_equal("John@Example.COM", "john@example.com"));
	assert_false(mk_smtp_msg_addr_equal("john@example.com", "jon@example.com"));
}

static void test_sender_and_reprepare(void **state)
{
	(void)state;
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	assert_int_equal(prep(&m, "From: a@x.example, b@x.example\nSender: Sec <sec@x.example>\nTo: c@y\n\n", true), 0);
	assert_string_equal(join(m.from, m.n_from), "a@x.example,b@x.example");
	assert_string_equal(m.sender, "sec@x.example");
	/* a second call starts over */
	assert_int_equal(prep(&m, "From: z@x.example\nTo: d@y\n\n", true), 0);
	assert_string_equal(join(m.from, m.n_from), "z@x.example");
	assert_string_equal(join(m.rcpt, m.n_rcpt), "d@y");
	assert_string_equal(m.sender, "");
	mk_smtp_msg_cleanup(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_end),
		cmocka_unit_test(test_header_end_limit),
		cmocka_unit_test(test_mutt),
		cmocka_unit_test(test_thunderbird),
		cmocka_unit_test(test_git_send_email),
		cmocka_unit_test(test_outlook_folded),
		cmocka_unit_test(test_sendmail_classic_added),
		cmocka_unit_test(test_bcc_removed_exact),
		cmocka_unit_test(test_date_msgid_inserted),
		cmocka_unit_test(test_format_date),
		cmocka_unit_test(test_8bit),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_parse_addresses),
		cmocka_unit_test(test_addr_valid),
		cmocka_unit_test(test_sender_and_reprepare),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
