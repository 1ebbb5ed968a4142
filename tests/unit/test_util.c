/* SPDX-License-Identifier: MIT */
/*
 * test_util.c - buffers, base64, string helpers and log redaction.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"
#include "mk_log.h"
#include "mk_mime.h"
#include "mk_str.h"

#include <string.h>

static void test_buf_limits(void **state)
{
	struct mk_buf b;
	mk_buf_init(&b, 10);
	assert_int_equal(mk_buf_append_str(&b, "hello"), 0);
	assert_int_equal(mk_buf_append_str(&b, "world"), 0);
	/* past max: refused, contents unchanged */
	assert_int_equal(mk_buf_append_str(&b, "!"), MK_ETOOBIG);
	assert_int_equal(b.len, 10);
	assert_string_equal((char *)b.data, "helloworld");
	mk_buf_consume(&b, 5);
	assert_string_equal((char *)b.data, "world");
	assert_int_equal(mk_buf_printf(&b, "%d", 12345), 0);
	assert_string_equal((char *)b.data, "world12345");
	assert_int_equal(mk_buf_printf(&b, "%d", 1), MK_ETOOBIG);
	struct mk_buf j;
	mk_buf_init(&j, 64);
	assert_int_equal(mk_buf_append_json_str(&j, "a\"b\\c\n\x01"), 0);
	assert_string_equal((char *)j.data, "\"a\\\"b\\\\c\\u000a\\u0001\"");
	mk_buf_reset(&j);
	assert_int_equal(mk_buf_append_json_str(&j, NULL), 0);
	assert_string_equal((char *)j.data, "\"\"");
	mk_buf_cleanup(&j);
	mk_buf_truncate(&b, 2, true);
	assert_string_equal((char *)b.data, "wo");
	size_t len;
	char *s = mk_buf_take(&b, &len);
	assert_int_equal(len, 2);
	assert_string_equal(s, "wo");
	assert_null(b.data);
	mk_free(s);
	mk_buf_cleanup(&b);
	mk_buf_cleanup(&b); /* idempotent */
}

static void test_base64(void **state)
{
	/* Microsoft's XOAUTH2 example (OUTLOOK.md §1.2) as a base64 vector */
	const char raw[] = "user=test@contoso.onmicrosoft.com\x01"
			   "auth=Bearer EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA\x01\x01";
	const char *golden = "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVy"
			     "IEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ==";
	char out[256];
	mk_base64_encode(raw, sizeof(raw) - 1, out, sizeof(out));
	assert_string_equal(out, golden);
	uint8_t dec[256];
	long n = mk_base64_decode(golden, strlen(golden), dec, sizeof(dec));
	assert_int_equal(n, sizeof(raw) - 1);
	assert_memory_equal(dec, raw, sizeof(raw) - 1);
	static const char *const rfc4648[][2] = {{"", ""},       {"f", "Zg=="},         {"fo", "Zm8="},
						 {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
						 {"foobar", "Zm9vYmFy"}};
	for (size_t i = 0; i < 7; i++) {
		mk_base64_encode(rfc4648[i][0], strlen(rfc4648[i][0]), out, sizeof(out));
		assert_string_equal(out, rfc4648[i][1]);
	}
	assert_int_equal(mk_base64_decode("Zm9", 3, dec, sizeof(dec)), MK_EINVAL);
	assert_int_equal(mk_base64_decode("Zm=v", 4, dec, sizeof(dec)), MK_EINVAL);
	assert_int_equal(mk_base64_decode("Zm9v", 4, dec, 2), MK_ETOOBIG);
}

static void test_str(void **state)
{
	uint64_t v;
	assert_int_equal(mk_str_to_u64("993", 1, 65535, &v), 0);
	assert_int_equal(v, 993);
	assert_int_equal(mk_str_to_u64("0", 1, 65535, &v), MK_EINVAL);
	assert_int_equal(mk_str_to_u64("70000", 1, 65535, &v), MK_EINVAL);
	assert_int_equal(mk_str_to_u64("12x", 1, 65535, &v), MK_EINVAL);
	assert_int_equal(mk_str_to_u64("-1", 0, 65535, &v), MK_EINVAL);
	assert_int_equal(mk_str_to_u64("", 0, 65535, &v), MK_EINVAL);
	assert_int_equal(mk_str_distance("imap_hots", "imap_host", 10), 2);
	char buf[4];
	assert_int_equal(mk_strlcpy(buf, "abcdef", sizeof(buf)), 6);
	assert_string_equal(buf, "abc");
	assert_string_equal(mk_strerror(MK_ECERT), "certificate verification failed");
	assert_string_equal(mk_err_name(MK_EPROTO), "MK_EPROTO");
	assert_string_equal(mk_strerror(-3008), "unknown host name");
}

static void test_redact(void **state)
{
	char out[256];
	mk_log_redact_line("A3 LOGIN \"alice\" \"secret\"\r\n", 27, false, out, sizeof(out));
	assert_string_equal(out, "A3 LOGIN <hidden 17 bytes>");
	mk_log_redact_line("A2 AUTHENTICATE PLAIN AHRpbQB0YW5z\r\n", 36, false, out, sizeof(out));
	assert_string_equal(out, "A2 AUTHENTICATE PLAIN <hidden 13 bytes>");
	mk_log_redact_line("AUTH XOAUTH2 dXNlcj0=", 21, false, out, sizeof(out));
	assert_string_equal(out, "AUTH XOAUTH2 <hidden 9 bytes>");
	mk_log_redact_line("PASS hunter2", 12, false, out, sizeof(out));
	assert_string_equal(out, "PASS <hidden 8 bytes>");
	mk_log_redact_line("dXNlcj10ZXN0", 12, true, out, sizeof(out));
	assert_string_equal(out, " <hidden 12 bytes>");
	mk_log_redact_line("A4 LIST \"\" \"*\"\r\n", 16, false, out, sizeof(out));
	assert_string_equal(out, "A4 LIST \"\" \"*\"");
	mk_log_redact_line("* OK a\tb\x01", 9, false, out, sizeof(out));
	assert_string_equal(out, "* OK a\\x09b\\x01");
}

static void test_mime(void **state)
{
	char out[256];
	mk_mime_decode_header("=?iso-8859-1?Q?R=E9union_d=27=E9quipe?= 7", out, sizeof(out));
	assert_string_equal(out, "R\xc3\xa9union d'\xc3\xa9quipe 7");
	mk_mime_decode_header("=?UTF-8?B?5pel5pys6Kqe?= =?utf-8?q?_ok?=", out, sizeof(out));
	assert_string_equal(out, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e ok");
	mk_mime_decode_header("=?windows-1252?Q?=80_5?=", out, sizeof(out));
	assert_string_equal(out, "\xe2\x82\xac 5");
	mk_mime_decode_header("=?koi8-r?B?8NLJ18XU?= plain", out, sizeof(out));
	assert_string_equal(out, "=?koi8-r?B?8NLJ18XU?= plain"); /* unsupported: left alone */
	mk_mime_decode_header("=?utf-8?Q?a=0Ab?=", out, sizeof(out));
	assert_string_equal(out, "a b"); /* control characters never reach a terminal */
	mk_mime_fit("Z\xc3\xab\xc3\xab", 5, out, sizeof(out));
	assert_string_equal(out, "Z\xc3\xab\xc3\xab  ");
	mk_mime_fit("abcdef", 3, out, sizeof(out));
	assert_string_equal(out, "abc");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_limits),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_str),
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_mime),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
