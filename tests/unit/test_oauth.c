/* SPDX-License-Identifier: MIT */
/*
 * test_oauth.c - agent/oauth without the network: the HTTP/1.1 core with
 * responses fed whole, one byte at a time and at random splits (seed
 * printed; all three must give the same event log), the form encoder, the
 * token JSON parser and its plain-words errors, the authority URL parser,
 * and the refresh token file (atomic write, 0600, refusal of unsafe modes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"
#include "mk_http1.h"
#include "mk_oauth_client.h"
#include "mk_token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum split { WHOLE, BYTES, RANDOM };

/* Runs one response through a fresh core; returns the final status (0 on
 * DONE) and appends the events to log. */
static int run(const char *in, size_t n, enum split how, unsigned seed, bool eof, struct mk_buf *log)
{
	struct mk_http1_client c;
	mk_http1_client_init(&c);
	struct mk_http1_request req = {.host = "login.example:8443", .path = "/t/oauth2/v2.0/token",
				       .body = {(const uint8_t *)"a=b", 3}};
	assert_int_equal(mk_http1_client_request(&c, &req), 0);
	struct mk_slice o = mk_http1_client_output(&c);
	mk_http1_client_output_done(&c, o.n);
	srand(seed);
	size_t off = 0;
	int status = 0;
	bool body_open = false;
	bool eof_sent = false;
	while (off < n || (eof && !eof_sent)) {
		if (off < n) {
			size_t k = n - off;
			if (how == BYTES)
				k = 1;
			else if (how == RANDOM)
				k = 1 + (size_t)rand() % (k < 50 ? k : 50);
			status = mk_http1_client_feed(&c, (const uint8_t *)in + off, k);
			off += k;
			if (status < 0)
				break;
		} else {
			mk_http1_client_feed_eof(&c);
			eof_sent = true;
		}
		struct mk_http1_event ev;
		while ((status = mk_http1_client_next_event(&c, &ev)) == 1) {
			if (ev.kind != MK_HTTP1_EV_BODY && body_open) {
				mk_buf_append_str(log, "|\n");
				body_open = false;
			}
			switch (ev.kind) {
			case MK_HTTP1_EV_STATUS:
				mk_buf_printf(log, "STATUS %d %s\n", ev.status, ev.text);
				break;
			case MK_HTTP1_EV_HEADER:
				mk_buf_printf(log, "HEADER %s=%s\n", ev.name, ev.text);
				break;
			case MK_HTTP1_EV_BODY:
				if (!body_open)
					mk_buf_append_str(log, "BODY:");
				body_open = true;
				mk_buf_append(log, ev.chunk.p, ev.chunk.n);
				break;
			case MK_HTTP1_EV_DONE:
				mk_buf_append_str(log, "DONE\n");
				break;
			}
		}
		if (status < 0)
			break;
	}
	if (body_open)
		mk_buf_append_str(log, "|\n");
	if (status < 0)
		mk_buf_printf(log, "ERROR %s: %s\n", mk_err_name(status), mk_http1_client_error(&c));
	else if (!mk_http1_client_done(&c))
		mk_buf_append_str(log, "INCOMPLETE\n");
	mk_http1_client_cleanup(&c);
	return status;
}

/* Feeds `in` three ways and checks that the log is `expected` each time. */
static void expect3(const char *in, bool eof, const char *expected)
{
	unsigned seed = (unsigned)time(NULL);
	for (int how = WHOLE; how <= RANDOM; how++) {
		struct mk_buf log;
		mk_buf_init(&log, 1 << 24);
		run(in, strlen(in), (enum split)how, seed, eof, &log);
		const char *got = log.data ? (const char *)log.data : "";
		if (strcmp(got, expected) != 0)
			print_error("split %d (seed %u):\n--- got\n%s--- expected\n%s", how, seed, got, expected);
		assert_string_equal(got, expected);
		mk_buf_cleanup(&log);
	}
}

static void test_http1_request(void **state)
{
	struct mk_http1_client c;
	mk_http1_client_init(&c);
	struct mk_http1_request req = {.host = "127.0.0.1:8443", .path = "/consumers/oauth2/v2.0/token",
				       .body = {(const uint8_t *)"x=1", 3}};
	assert_int_equal(mk_http1_client_request(&c, &req), 0);
	assert_int_equal(mk_http1_client_request(&c, &req), MK_ESTATE);
	struct mk_slice o = mk_http1_client_output(&c);
	char want[512];
	snprintf(want, sizeof(want),
		 "POST /consumers/oauth2/v2.0/token HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nUser-Agent: mailkeep/%s\r\n"
		 "Accept: application/json\r\nConnection: close\r\n"
		 "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\nx=1",
		 MK_VERSION);
	assert_int_equal(o.n, strlen(want));
	assert_memory_equal(o.p, want, o.n);
	mk_http1_client_output_done(&c, o.n);
	assert_int_equal(mk_http1_client_output(&c).n, 0);
	mk_http1_client_cleanup(&c);

	/* header injection is refused */
	mk_http1_client_init(&c);
	struct mk_http1_request bad = {.host = "h\r\nX: y", .path = "/"};
	assert_int_equal(mk_http1_client_request(&c, &bad), MK_EINVAL);
	struct mk_http1_request bad2 = {.host = "h", .path = "/a b"};
	assert_int_equal(mk_http1_client_request(&c, &bad2), MK_EINVAL);
	struct mk_http1_request bad3 = {.host = "h", .path = "x"};
	assert_int_equal(mk_http1_client_request(&c, &bad3), MK_EINVAL);
	mk_http1_client_cleanup(&c);
}

static void test_http1_form(void **state)
{
	struct mk_buf b;
	mk_buf_init(&b, 1024);
	assert_int_equal(mk_http1_form_add(&b, "client_id", "abc-1.2_3~"), 0);
	assert_int_equal(mk_http1_form_add(&b, "scope", "offline_access https://outlook.office.com/IMAP.AccessAsUser.All"), 0);
	assert_int_equal(mk_http1_form_add(&b, "t", "a+b=c&d\xc3\xa9"), 0);
	assert_string_equal((char *)b.data, "client_id=abc-1.2_3~&scope=offline_access%20https%3A%2F%2Foutlook.office.com"
					    "%2FIMAP.AccessAsUser.All&t=a%2Bb%3Dc%26d%C3%A9");
	mk_buf_cleanup(&b);
	mk_buf_init(&b, 8);
	assert_int_equal(mk_http1_form_add(&b, "k", "0123456789"), MK_ETOOBIG);
	assert_int_equal(b.len, 0);
	mk_buf_cleanup(&b);
}

static void test_http1_length(void **state)
{
	expect3("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\":\"hello\"}",
		false,
		"STATUS 200 OK\nHEADER Content-Type=application/json\nHEADER Content-Length=13\n"
		"BODY:{\"a\":\"hello\"}|\nDONE\n");
	/* 100 Continue skipped, bare LF line ends, empty reason, OWS trimmed */
	expect3("HTTP/1.1 100 Continue\r\nX: y\r\n\r\nHTTP/1.1 400\nContent-Length:   2  \n\n{}", false,
		"STATUS 400 \nHEADER Content-Length=2\nBODY:{}|\nDONE\n");
	expect3("HTTP/1.0 204 No Content\r\n\r\n", false, "STATUS 204 No Content\nDONE\n");
	expect3("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false,
		"STATUS 200 OK\nHEADER Content-Length=0\nDONE\n");
	/* two equal lengths are fine */
	expect3("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false,
		"STATUS 200 OK\nHEADER Content-Length=1\nHEADER Content-Length=1\nBODY:x|\nDONE\n");
}

static void test_http1_chunked(void **state)
{
	expect3("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n",
		false,
		"STATUS 200 OK\nHEADER Transfer-Encoding=chunked\nBODY:helloabcdefghijklmnopqrstuvwxyz|\nDONE\n");
	expect3("HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\n", false,
		"STATUS 200 OK\nHEADER transfer-encoding=Chunked\nDONE\n");
}

static void test_http1_until_close(void **state)
{
	expect3("HTTP/1.1 200 OK\r\n\r\nsome body", true, "STATUS 200 OK\nBODY:some body|\nDONE\n");
	/* without the close it is still incomplete */
	expect3("HTTP/1.1 200 OK\r\n\r\nsome body", false, "STATUS 200 OK\nBODY:some body|\nINCOMPLETE\n");
}

static void test_http1_errors(void **state)
{
	expect3("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true,
		"STATUS 200 OK\nHEADER Content-Length=10\nBODY:short|\nERROR MK_EPROTO: the server closed the "
		"connection before the response was complete\n");
	expect3("SMTP/1.1 200 OK\r\n\r\n", false, "ERROR MK_EPROTO: not an HTTP/1.1 status line: \"SMTP/1.1 200 OK\"\n");
	expect3("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", false,
		"STATUS 200 OK\nHEADER Content-Length=1\nHEADER Transfer-Encoding=chunked\nERROR MK_EPROTO: both "
		"Transfer-Encoding and Content-Length (ambiguous framing; refused)\n");
	expect3("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false,
		"STATUS 200 OK\nHEADER Content-Length=1\nERROR MK_EPROTO: two different Content-Length headers\n");
	expect3("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false,
		"STATUS 200 OK\nERROR MK_EPROTO: unsupported Transfer-Encoding (a coding before chunked)\n");
	expect3("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", false,
		"STATUS 200 OK\nHEADER X=a\nERROR MK_EPROTO: obsolete header line folding\n");
	expect3("HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n", false,
		"STATUS 200 OK\nHEADER Content-Length=2000000\nERROR MK_ETOOBIG: response body of 2000000 bytes is "
		"over the limit of 1048576\n");
	expect3("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false,
		"STATUS 200 OK\nHEADER Transfer-Encoding=chunked\nERROR MK_EPROTO: bad chunk size line\n");
	expect3("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n", false,
		"STATUS 200 OK\nHEADER Transfer-Encoding=chunked\nBODY:ab|\nERROR MK_EPROTO: chunk data not followed "
		"by CRLF\n");
	expect3("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n", false,
		"STATUS 200 OK\nHEADER Transfer-Encoding=chunked\nERROR MK_ETOOBIG: chunk size overflows\n");
	expect3("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy", false,
		"STATUS 200 OK\nHEADER Content-Length=1\nBODY:x|\nDONE\nERROR MK_EPROTO: server sent 1 bytes after the end "
		"of the response\n");
	expect3("HTTP/1.1 101 Switching\r\n\r\n", false,
		"ERROR MK_EPROTO: server switched protocols (101), which was not asked for\n");
	expect3("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", false,
		"STATUS 200 OK\nERROR MK_EPROTO: bad character in a header name\n");
}

static void test_http1_limits(void **state)
{
	/* headers over 32 KiB, and too many header lines */
	struct mk_buf in;
	mk_buf_init(&in, 1 << 20);
	mk_buf_append_str(&in, "HTTP/1.1 200 OK\r\n");
	for (int i = 0; i < 400; i++)
		mk_buf_printf(&in, "X-Pad-%d: %0100d\r\n", i, 0);
	mk_buf_append_str(&in, "\r\n");
	struct mk_buf log;
	mk_buf_init(&log, 1 << 24);
	assert_int_equal(run((char *)in.data, in.len, WHOLE, 1, false, &log), MK_ETOOBIG);
	assert_non_null(strstr((char *)log.data, "more than 100 header lines"));
	mk_buf_cleanup(&log);
	mk_buf_reset(&in);
	mk_buf_append_str(&in, "HTTP/1.1 200 OK\r\nX: ");
	for (int i = 0; i < 40000; i++)
		mk_buf_append(&in, "a", 1);
	mk_buf_init(&log, 1 << 24);
	assert_int_equal(run((char *)in.data, in.len, BYTES, 1, false, &log), MK_ETOOBIG);
	mk_buf_cleanup(&log);
	mk_buf_cleanup(&in);
}

/* ---- token JSON ---- */

static void test_token_parse(void **state)
{
	static const char ok[] = "{\"token_type\":\"Bearer\",\"scope\":\"https://outlook.office.com/IMAP.AccessAsUser.All\","
				 "\"expires_in\":3599,\"ext_expires_in\":3599,\"access_token\":\"EwBAAl3BAAUF\","
				 "\"refresh_token\":\"M.C5_BAY.x\",\"id_token\":\"eyJ.x.\",\"extra\":{\"n\":[1,2]}}";
	struct mk_token_reply r;
	const char *err;
	assert_int_equal(mk_token_parse((const uint8_t *)ok, strlen(ok), &r, &err), 0);
	assert_string_equal(r.access_token, "EwBAAl3BAAUF");
	assert_string_equal(r.refresh_token, "M.C5_BAY.x");
	assert_string_equal(r.token_type, "Bearer");
	assert_int_equal(r.expires_in, 3599);
	assert_int_equal(r.interval, -1);
	assert_null(r.error);
	assert_int_equal(mk_token_classify(&r), MK_TOKEN_ERR_NONE);
	mk_token_reply_cleanup(&r);
	mk_token_reply_cleanup(&r); /* idempotent */

	static const char dc[] = "{\"user_code\":\"ABCD1234\",\"device_code\":\"DAQAB\",\"verification_uri\":"
				 "\"https://www.microsoft.com/link\",\"expires_in\":\"900\",\"interval\":5,\"message\":\"To "
				 "sign in\"}";
	assert_int_equal(mk_token_parse((const uint8_t *)dc, strlen(dc), &r, &err), 0);
	assert_string_equal(r.user_code, "ABCD1234");
	assert_string_equal(r.verification_uri, "https://www.microsoft.com/link");
	assert_int_equal(r.expires_in, 900);
	assert_int_equal(r.interval, 5);
	mk_token_reply_cleanup(&r);

	static const char *const bad[] = {"", "[]", "{", "{\"access_token\":5}", "{\"expires_in\":\"soon\"}",
					  "{\"expires_in\":-1}", "{\"error_codes\":\"x\"}", "{\"error_codes\":[\"x\"]}",
					  "nul"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(mk_token_parse((const uint8_t *)bad[i], strlen(bad[i]), &r, &err), MK_EPROTO);
		assert_non_null(err);
		assert_null(r.access_token);
	}
	/* a NUL inside the given length ends the JSON early: not accepted silently */
	static const char nul[] = "{\"a\":1}\0{";
	assert_int_equal(mk_token_parse((const uint8_t *)nul, sizeof(nul) - 1, &r, &err) <= 0, 1);
	mk_token_reply_cleanup(&r);
}

static void expect_explain(const char *json, enum mk_token_error_kind kind, int code, const char *text)
{
	struct mk_token_reply r;
	const char *err;
	assert_int_equal(mk_token_parse((const uint8_t *)json, strlen(json), &r, &err), 0);
	assert_int_equal(mk_token_classify(&r), kind);
	assert_int_equal(mk_token_error_code(kind), code);
	char buf[600];
	mk_token_explain(&r, "personal", buf, sizeof(buf));
	if (strstr(buf, text) == NULL)
		print_error("explain: %s\nexpected to contain: %s\n", buf, text);
	assert_non_null(strstr(buf, text));
	mk_token_reply_cleanup(&r);
}

static void test_token_errors(void **state)
{
	expect_explain("{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS700082: The refresh token has expired "
		       "due to inactivity.\",\"error_codes\":[700082]}",
		       MK_TOKEN_ERR_RELOGIN, MK_EAUTH,
		       "the refresh token expired because it was not used for 90 days — run `mailkeep login personal` "
		       "(invalid_grant, AADSTS700082)");
	/* the code from the description when error_codes is absent */
	expect_explain("{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS70000: Provided grant is invalid\"}",
		       MK_TOKEN_ERR_RELOGIN, MK_EAUTH, "revoked (for example after a password change");
	expect_explain("{\"error\":\"invalid_grant\",\"error_codes\":[65001]}", MK_TOKEN_ERR_CONFIG, MK_ECONFIG,
		       "not consented");
	expect_explain("{\"error\":\"unauthorized_client\",\"error_codes\":[700016]}", MK_TOKEN_ERR_CONFIG, MK_ECONFIG,
		       "(oauth_client_id) was not found");
	expect_explain("{\"error\":\"invalid_request\",\"error_codes\":[9002313]}", MK_TOKEN_ERR_CONFIG, MK_ECONFIG,
		       "malformed");
	expect_explain("{\"error\":\"invalid_request\",\"error_codes\":[50059]}", MK_TOKEN_ERR_CONFIG, MK_ECONFIG,
		       "oauth_tenant");
	expect_explain("{\"error\":\"invalid_grant\",\"error_codes\":[50126]}", MK_TOKEN_ERR_RELOGIN, MK_EAUTH,
		       "user name or password is wrong");
	expect_explain("{\"error\":\"authorization_pending\",\"error_codes\":[70016]}", MK_TOKEN_ERR_PENDING, MK_EAUTH,
		       "not finished");
	expect_explain("{\"error\":\"slow_down\"}", MK_TOKEN_ERR_SLOW_DOWN, MK_EAUTH, "slow_down");
	expect_explain("{\"error\":\"authorization_declined\",\"error_codes\":[70000]}", MK_TOKEN_ERR_DECLINED,
		       MK_EAUTH, "the sign-in was declined");
	expect_explain("{\"error\":\"expired_token\",\"error_codes\":[70019]}", MK_TOKEN_ERR_EXPIRED, MK_EAUTH,
		       "code expired");
	expect_explain("{\"error\":\"bad_verification_code\"}", MK_TOKEN_ERR_BAD_CODE, MK_EAUTH, "device code");
	expect_explain("{\"error\":\"temporarily_unavailable\"}", MK_TOKEN_ERR_TEMP, MK_ESERVER, "try again later");
	expect_explain("{\"error\":\"weird\"}", MK_TOKEN_ERR_OTHER, MK_EAUTH, "(weird)");
}

/* ---- authority URLs ---- */

static void test_url(void **state)
{
	struct mk_oauth_url u;
	char msg[200];
	assert_int_equal(mk_oauth_url_parse("https://login.microsoftonline.com", &u, msg, sizeof(msg)), 0);
	assert_string_equal(u.host, "login.microsoftonline.com");
	assert_int_equal(u.port, 443);
	assert_string_equal(u.path, "");
	assert_string_equal(u.hostport, "login.microsoftonline.com");
	assert_int_equal(mk_oauth_url_parse("https://127.0.0.1:8443/prefix/", &u, msg, sizeof(msg)), 0);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 8443);
	assert_string_equal(u.path, "/prefix");
	assert_string_equal(u.hostport, "127.0.0.1:8443");
	assert_int_equal(mk_oauth_url_parse("https://[::1]:9/", &u, msg, sizeof(msg)), 0);
	assert_string_equal(u.host, "::1");
	assert_string_equal(u.hostport, "[::1]:9");
	static const char *const bad[] = {"http://login.microsoftonline.com", "https://", "https://:443",
					  "https://h:0", "https://h:99999", "https://u@h", "https://h/?q",
					  "https://h x", "https://[::1", "ftp://h"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (mk_oauth_url_parse(bad[i], &u, msg, sizeof(msg)) != MK_EINVAL)
			print_error("accepted %s\n", bad[i]);
		assert_int_equal(mk_oauth_url_parse(bad[i], &u, msg, sizeof(msg)), MK_EINVAL);
	}
}

/* ---- token file ---- */

static void test_token_file(void **state)
{
	char dir[] = "/tmp/mk-oauth-test.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char store[128];
	snprintf(store, sizeof(store), "%s/store", dir);
	struct mk_token_file tf;
	char *error = NULL;
	assert_int_equal(mk_token_file_read(store, "acct", &tf, &error), MK_ENOTFOUND);
	assert_non_null(strstr(error, "run `mailkeep login acct`"));
	mk_free(error);

	assert_int_equal(mk_token_file_write(store, "acct", "cid", "RT-one", &error), 0);
	char *path = mk_token_file_path(store, "acct");
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	char odir[160];
	snprintf(odir, sizeof(odir), "%s/oauth", store);
	assert_int_equal(stat(odir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(mk_token_file_read(store, "acct", &tf, &error), 0);
	assert_string_equal(tf.client_id, "cid");
	assert_string_equal(tf.refresh_token, "RT-one");
	mk_token_file_cleanup(&tf);

	/* replaced whole */
	assert_int_equal(mk_token_file_write(store, "acct", "cid", "RT-two", &error), 0);
	assert_int_equal(mk_token_file_read(store, "acct", &tf, &error), 0);
	assert_string_equal(tf.refresh_token, "RT-two");
	mk_token_file_cleanup(&tf);

	/* malformed input is refused */
	assert_int_equal(mk_token_file_write(store, "acct", "cid", "a\nrefresh_token=b", &error), MK_EINVAL);
	mk_free(error);

	/* unsafe mode */
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(mk_token_file_read(store, "acct", &tf, &error), MK_EPERM);
	assert_non_null(strstr(error, "run: chmod 600"));
	assert_null(strstr(error, "RT-two"));
	mk_free(error);
	assert_int_equal(chmod(path, 0600), 0);

	/* not our format */
	FILE *f = fopen(path, "w");
	fputs("just a token\n", f);
	fclose(f);
	assert_int_equal(mk_token_file_read(store, "acct", &tf, &error), MK_ECORRUPT);
	mk_free(error);

	/* a symbolic link is not followed */
	char link[200];
	snprintf(link, sizeof(link), "%s/oauth/lnk.token", store);
	assert_int_equal(symlink(path, link), 0);
	assert_int_equal(mk_token_file_read(store, "lnk", &tf, &error), MK_EPERM);
	mk_free(error);
	unlink(link);
	unlink(path);
	rmdir(odir);
	rmdir(store);
	rmdir(dir);
	mk_free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http1_request), cmocka_unit_test(test_http1_form),
		cmocka_unit_test(test_http1_length),  cmocka_unit_test(test_http1_chunked),
		cmocka_unit_test(test_http1_until_close), cmocka_unit_test(test_http1_errors),
		cmocka_unit_test(test_http1_limits),  cmocka_unit_test(test_token_parse),
		cmocka_unit_test(test_token_errors),  cmocka_unit_test(test_url),
		cmocka_unit_test(test_token_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
