/* SPDX-License-Identifier: MIT */
/*
 * test_sasl.c - the SASL step functions: golden vectors (Microsoft's
 * XOAUTH2 example, OUTLOOK.md §1.2; RFC 4616 PLAIN; RFC 7628 OAUTHBEARER),
 * the LOGIN prompts, failure challenges with their JSON, invalid inputs,
 * and a 16 KiB token.
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
#include "mk_sasl.h"
#include "mk_str.h"

#include <string.h>

static char *b64(const struct mk_buf *b)
{
	char *s = mk_xmalloc(MK_BASE64_ENCLEN(b->len) + 1);
	mk_base64_encode(b->data, b->len, s, MK_BASE64_ENCLEN(b->len) + 1);
	return s;
}

static void test_xoauth2_golden(void **state)
{
	(void)state;
	struct mk_sasl s;
	struct mk_buf out;
	mk_buf_init(&out, 64 * 1024);
	const char *tok = "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA";
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "test@contoso.onmicrosoft.com", (const uint8_t *)tok,
				      strlen(tok), NULL, 0),
			 0);
	assert_true(mk_sasl_has_initial(&s));
	assert_int_equal(mk_sasl_initial(&s, &out), 0);
	char *e = b64(&out);
	/* OUTLOOK.md §1.2, the two lines of Microsoft's example joined */
	assert_string_equal(e, "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVy"
			       "IEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ==");
	mk_free(e);
	assert_int_equal(mk_sasl_initial(&s, &out), MK_ESTATE); /* once */
	/* a challenge after the token: refused, JSON summarised, empty answer */
	mk_buf_reset(&out);
	const char *json = "{\"status\":\"401\",\"schemes\":\"bearer\",\"scope\":"
			   "\"https://outlook.office.com/IMAP.AccessAsUser.All\"}";
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)json, strlen(json), &out), MK_EAUTH);
	assert_int_equal(out.len, 0);
	assert_true(s.failed);
	assert_string_equal(mk_sasl_error(&s),
			    "token refused: status 401, scope https://outlook.office.com/IMAP.AccessAsUser.All");
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)"", 0, &out), MK_EPROTO);
	mk_sasl_cleanup(&s);
	mk_sasl_cleanup(&s); /* idempotent */

	/* two steps: AUTH XOAUTH2, empty 334, then the same response */
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "test@contoso.onmicrosoft.com", (const uint8_t *)tok,
				      strlen(tok), NULL, 0),
			 0);
	assert_string_equal(mk_sasl_error(&s), "");
	mk_buf_reset(&out);
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)"", 0, &out), 0);
	e = b64(&out);
	assert_string_equal(e, "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVy"
			       "IEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ==");
	mk_free(e);
	/* a challenge that is not JSON is still a refusal */
	mk_buf_reset(&out);
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)"garbage", 7, &out), MK_EAUTH);
	assert_int_equal(out.len, 0);
	assert_non_null(strstr(mk_sasl_error(&s), "not the expected JSON"));
	mk_sasl_cleanup(&s);
	mk_buf_cleanup_wipe(&out);
}

static void test_plain(void **state)
{
	(void)state;
	struct mk_sasl s;
	struct mk_buf out;
	mk_buf_init(&out, 1024);
	/* RFC 4616 §4: "\0tim\0tanstaaftanstaaf" */
	assert_int_equal(mk_sasl_init(&s, MK_SASL_PLAIN, "tim", (const uint8_t *)"tanstaaftanstaaf", 16, NULL, 0), 0);
	assert_int_equal(mk_sasl_initial(&s, &out), 0);
	assert_int_equal(out.len, 21);
	assert_memory_equal(out.data, "\0tim\0tanstaaftanstaaf", 21);
	char *e = b64(&out);
	assert_string_equal(e, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	mk_free(e);
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)"", 0, &out), MK_EPROTO);
	mk_sasl_cleanup(&s);
	/* without an initial response: the empty challenge gets it */
	mk_buf_reset(&out);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_PLAIN, "u", (const uint8_t *)"p", 1, NULL, 0), 0);
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)"", 0, &out), 0);
	assert_memory_equal(out.data, "\0u\0p", 4);
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)"", 0, &out), MK_EPROTO);
	mk_sasl_cleanup(&s);
	mk_buf_cleanup_wipe(&out);
}

static void login_run(const char *c1, const char *c2, const char *r1, const char *r2)
{
	struct mk_sasl s;
	struct mk_buf out;
	mk_buf_init(&out, 1024);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_LOGIN, "user@x", (const uint8_t *)"pw", 2, NULL, 0), 0);
	assert_false(mk_sasl_has_initial(&s));
	assert_int_equal(mk_sasl_initial(&s, &out), MK_ESTATE);
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)c1, strlen(c1), &out), 0);
	assert_int_equal(out.len, strlen(r1));
	assert_memory_equal(out.data, r1, out.len);
	mk_buf_reset(&out);
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)c2, strlen(c2), &out), 0);
	assert_int_equal(out.len, strlen(r2));
	assert_memory_equal(out.data, r2, out.len);
	mk_buf_reset(&out);
	/* a third prompt */
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)"Password:", 9, &out), MK_EPROTO);
	assert_int_equal(out.len, 0);
	mk_sasl_cleanup(&s);
	mk_buf_cleanup_wipe(&out);
}

static void test_login(void **state)
{
	(void)state;
	login_run("Username:", "Password:", "user@x", "pw");
	login_run("username:", "PASSWORD:", "user@x", "pw");
	login_run("User Name: ", "Password:", "user@x", "pw");
	/* odd texts: answered in order */
	login_run("Who are you?", "Secret?", "user@x", "pw");
	login_run("", "", "user@x", "pw");
	/* a server asking for the password first gets what it asked for */
	login_run("Password:", "Username:", "pw", "user@x");
	login_run("Username:", "Username:", "user@x", "pw");
}

static void test_oauthbearer(void **state)
{
	(void)state;
	struct mk_sasl s;
	struct mk_buf out;
	mk_buf_init(&out, 64 * 1024);
	/* RFC 7628 §4.1's example (token "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==") */
	const char *tok = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";
	assert_int_equal(mk_sasl_init(&s, MK_SASL_OAUTHBEARER, "user@example.com", (const uint8_t *)tok, strlen(tok),
				      "server.example.com", 143),
			 0);
	assert_int_equal(mk_sasl_initial(&s, &out), 0);
	const char *want = "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
			   "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";
	assert_int_equal(out.len, strlen(want));
	assert_memory_equal(out.data, want, out.len);
	char *e = b64(&out);
	assert_string_equal(e, "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVy"
			       "IHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB");
	mk_free(e);
	/* RFC 7628 §3.2.2 failure: answered with a single %x01 */
	mk_buf_reset(&out);
	const char *json = " { \"status\" : \"invalid_token\", \"extra\": {\"a\": [1, \"}\"]},"
			   " \"scope\":\"example_scope\", \"openid-configuration\":"
			   "\"https://example.com/.well-known/openid-configuration\" } ";
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)json, strlen(json), &out), MK_EAUTH);
	assert_int_equal(out.len, 1);
	assert_int_equal(out.data[0], 1);
	assert_string_equal(mk_sasl_error(&s), "token refused: status invalid_token, scope example_scope");
	mk_sasl_cleanup(&s);
	/* a= escapes ',' and '='; no user, host or port: "n,," */
	mk_buf_reset(&out);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_OAUTHBEARER, "a,b=c", (const uint8_t *)"t", 1, NULL, 0), 0);
	assert_int_equal(mk_sasl_initial(&s, &out), 0);
	want = "n,a=a=2Cb=3Dc,\x01" "auth=Bearer t\x01\x01";
	assert_int_equal(out.len, strlen(want));
	assert_memory_equal(out.data, want, out.len);
	mk_sasl_cleanup(&s);
	mk_buf_reset(&out);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_OAUTHBEARER, NULL, (const uint8_t *)"t", 1, "h", 0), 0);
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)"", 0, &out), 0); /* two steps */
	want = "n,,\x01host=h\x01" "auth=Bearer t\x01\x01";
	assert_int_equal(out.len, strlen(want));
	assert_memory_equal(out.data, want, out.len);
	/* numeric status, missing scope, escapes */
	mk_buf_reset(&out);
	json = "{\"status\":401,\"schemes\":\"bearer\",\"x\":\"a\\\"b\\u0041\"}";
	assert_int_equal(mk_sasl_step(&s, (const uint8_t *)json, strlen(json), &out), MK_EAUTH);
	assert_string_equal(mk_sasl_error(&s), "token refused: status 401");
	mk_sasl_cleanup(&s);
	mk_buf_cleanup_wipe(&out);
}

static void test_bad_json(void **state)
{
	(void)state;
	const char *bad[] = {"",
			     "{",
			     "{\"status\"",
			     "{\"status\":\"401",
			     "{\"status\":\"401\"",
			     "{\"status\" \"401\"}",
			     "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]}",
			     "{\"status\":\"\\u12\"}",
			     "[\"status\"]",
			     "{\"status\":\"4\x01\xff\"}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mk_sasl s;
		struct mk_buf out;
		mk_buf_init(&out, 64);
		assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "u", (const uint8_t *)"t", 1, NULL, 0), 0);
		assert_int_equal(mk_sasl_initial(&s, &out), 0);
		mk_buf_reset(&out);
		assert_int_equal(mk_sasl_step(&s, (const uint8_t *)bad[i], strlen(bad[i]), &out), MK_EAUTH);
		assert_int_equal(out.len, 0);
		assert_true(strlen(mk_sasl_error(&s)) > 10);
		for (const char *p = mk_sasl_error(&s); *p; p++)
			assert_true(*p >= 0x20 && *p < 0x7f);
		mk_sasl_cleanup(&s);
		mk_buf_cleanup(&out);
	}
	/* the last one: control bytes shown as '?' */
	struct mk_sasl s;
	struct mk_buf out;
	mk_buf_init(&out, 64);
	mk_sasl_init(&s, MK_SASL_XOAUTH2, "u", (const uint8_t *)"t", 1, NULL, 0);
	mk_sasl_initial(&s, &out);
	const char *j = "{\"status\":\"4\x01\xff\"}";
	mk_sasl_step(&s, (const uint8_t *)j, strlen(j), &out);
	assert_string_equal(mk_sasl_error(&s), "token refused: status 4??");
	mk_sasl_cleanup(&s);
	mk_buf_cleanup(&out);
}

static void test_invalid_and_big(void **state)
{
	(void)state;
	struct mk_sasl s;
	const uint8_t *t = (const uint8_t *)"tok";
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "a\x01" "b", t, 3, NULL, 0), MK_EINVAL);
	mk_sasl_cleanup(&s);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "u", t, 0, NULL, 0), MK_EINVAL);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "u", NULL, 3, NULL, 0), MK_EINVAL);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "u", (const uint8_t *)"a b", 3, NULL, 0), MK_EINVAL);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "u", (const uint8_t *)"a\x01", 2, NULL, 0), MK_EINVAL);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "u", (const uint8_t *)"=a", 2, NULL, 0), MK_EINVAL);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "u", (const uint8_t *)"a=b", 3, NULL, 0), MK_EINVAL);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "u", (const uint8_t *)"ab==", 4, NULL, 0), 0);
	mk_sasl_cleanup(&s);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "", t, 3, NULL, 0), MK_EINVAL);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_PLAIN, NULL, t, 3, NULL, 0), MK_EINVAL);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_PLAIN, "u", (const uint8_t *)"a\0b", 3, NULL, 0), MK_EINVAL);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_LOGIN, "u", (const uint8_t *)"a b\x01", 4, NULL, 0), 0);
	mk_sasl_cleanup(&s);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_OAUTHBEARER, "u", t, 3, "bad host", 1), MK_EINVAL);
	assert_int_equal(mk_sasl_init(&s, (enum mk_sasl_mech)99, "u", t, 3, NULL, 0), MK_EINVAL);
	mk_sasl_cleanup(&s);

	/* names */
	enum mk_sasl_mech m;
	assert_int_equal(mk_sasl_mech_parse("xoauth2", &m), 0);
	assert_int_equal(m, MK_SASL_XOAUTH2);
	assert_int_equal(mk_sasl_mech_parse("OAuthBearer", &m), 0);
	assert_int_equal(m, MK_SASL_OAUTHBEARER);
	assert_int_equal(mk_sasl_mech_parse("CRAM-MD5", &m), MK_ENOTSUP);
	assert_int_equal(mk_sasl_mech_parse(NULL, &m), MK_ENOTSUP);
	assert_string_equal(mk_sasl_mech_name(MK_SASL_LOGIN), "LOGIN");
	assert_string_equal(mk_sasl_mech_name(MK_SASL_PLAIN), "PLAIN");

	/* a 16 KiB token fits (Microsoft tokens exceed 4 KiB) */
	size_t n = 16 * 1024;
	uint8_t *tok = mk_xmalloc(n + 8);
	for (size_t i = 0; i < n; i++)
		tok[i] = (uint8_t)"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"[i % 68];
	struct mk_buf out;
	mk_buf_init(&out, MK_LIMIT_SASL_LINE);
	enum mk_sasl_mech mechs[] = {MK_SASL_XOAUTH2, MK_SASL_OAUTHBEARER};
	for (int k = 0; k < 2; k++) {
		mk_buf_reset(&out);
		assert_int_equal(mk_sasl_init(&s, mechs[k], "someone@outlook.com", tok, n, "smtp-mail.outlook.com", 587),
				 0);
		assert_int_equal(mk_sasl_initial(&s, &out), 0);
		assert_true(out.len > n);
		assert_non_null(memmem(out.data, out.len, tok, n));
		assert_true(MK_BASE64_ENCLEN(out.len) + 2 <= MK_LIMIT_SASL_LINE);
		mk_sasl_cleanup(&s);
	}
	/* too big once base64'd */
	mk_free(tok);
	n = MK_LIMIT_SASL_LINE * 3 / 4;
	tok = mk_xmalloc(MK_LIMIT_SASL_LINE + 1);
	memset(tok, 'a', MK_LIMIT_SASL_LINE + 1);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "u", tok, n, NULL, 0), MK_ETOOBIG);
	mk_sasl_cleanup(&s);
	assert_int_equal(mk_sasl_init(&s, MK_SASL_XOAUTH2, "u", tok, MK_LIMIT_SASL_LINE + 1, NULL, 0), MK_ETOOBIG);
	mk_sasl_cleanup(&s);
	mk_free(tok);
	mk_buf_cleanup_wipe(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xoauth2_golden), cmocka_unit_test(test_plain),
		cmocka_unit_test(test_login),          cmocka_unit_test(test_oauthbearer),
		cmocka_unit_test(test_bad_json),       cmocka_unit_test(test_invalid_and_big),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
