/* SPDX-License-Identifier: MIT */
/*
 * test_log_output.c - the form of log lines by destination (agent/util/
 * log.c): "<N>" sd-daemon priorities only when stderr really is the stream
 * JOURNAL_STREAM names; colour only on a terminal without NO_COLOR and with
 * a TERM other than "dumb"; plain text anywhere else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mk_log.h"

#include <fcntl.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int saved_stderr = -1;

/* Points stderr at fd (kept open by the caller). */
static void redirect_stderr(int fd)
{
	fflush(stderr);
	if (saved_stderr < 0)
		saved_stderr = dup(STDERR_FILENO);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
}

static void restore_stderr(void)
{
	fflush(stderr);
	if (saved_stderr >= 0) {
		dup2(saved_stderr, STDERR_FILENO);
		close(saved_stderr);
		saved_stderr = -1;
	}
}

/* Logs one line at each level into a fresh temporary file with the
 * environment as set, and returns what was written (static buffer). */
static const char *log_to_file(bool set_journal_to_file, const char *journal_value)
{
	static char out[4096];
	char path[] = "/tmp/mk-test-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	if (set_journal_to_file) {
		struct stat st;
		assert_int_equal(fstat(fd, &st), 0);
		char v[64];
		snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
		setenv("JOURNAL_STREAM", v, 1);
	} else if (journal_value != NULL) {
		setenv("JOURNAL_STREAM", journal_value, 1);
	} else {
		unsetenv("JOURNAL_STREAM");
	}
	redirect_stderr(fd);
	mk_log_reset_output();
	mk_log_set_level(MK_LOG_DEBUG);
	mk_log(MK_LOG_ERROR, MK_LOG_CAT_MAIN, NULL, "e %d", 1);
	mk_log(MK_LOG_WARN, MK_LOG_CAT_NET, NULL, "w");
	mk_log(MK_LOG_INFO, MK_LOG_CAT_SYNC, NULL, "i");
	mk_log(MK_LOG_DEBUG, MK_LOG_CAT_TLS, NULL, "d");
	restore_stderr();
	ssize_t n = pread(fd, out, sizeof(out) - 1, 0);
	assert_true(n >= 0);
	out[n] = '\0';
	close(fd);
	return out;
}

static void test_journal_prefixes(void **state)
{
	(void)state;
	const char *s = log_to_file(true, NULL);
	assert_string_equal(s, "<3>mailkeep: error: e 1\n"
			       "<4>mailkeep: warning: w\n"
			       "<6>mailkeep: info sync: i\n"
			       "<7>mailkeep: debug tls: d\n");
	assert_true(mk_log_to_journal());
}

static void test_journal_other_stream(void **state)
{
	(void)state;
	/* inherited from a parent whose stderr was the journal: not ours */
	const char *s = log_to_file(false, "1:1");
	assert_string_equal(s, "mailkeep: error: e 1\n"
			       "mailkeep: warning: w\n"
			       "mailkeep: info sync: i\n"
			       "mailkeep: debug tls: d\n");
	assert_false(mk_log_to_journal());
	s = log_to_file(false, "garbage");
	assert_non_null(strstr(s, "\nmailkeep: warning: w\n"));
	assert_null(strchr(s, '<'));
	s = log_to_file(false, NULL);
	assert_null(strchr(s, '<'));
	assert_null(strchr(s, '\033'));
}

/* What one error line looks like on a terminal with the given NO_COLOR
 * and TERM (NULL: unset). */
static void tty_line(const char *no_color, const char *term, char *out, size_t outsz)
{
	int master, slave;
	assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
	unsetenv("JOURNAL_STREAM");
	if (no_color != NULL)
		setenv("NO_COLOR", no_color, 1);
	else
		unsetenv("NO_COLOR");
	if (term != NULL)
		setenv("TERM", term, 1);
	else
		unsetenv("TERM");
	redirect_stderr(slave);
	mk_log_reset_output();
	mk_log(MK_LOG_ERROR, MK_LOG_CAT_MAIN, NULL, "boom");
	restore_stderr();
	close(slave);
	ssize_t n = read(master, out, outsz - 1);
	assert_true(n > 0);
	out[n] = '\0';
	close(master);
	mk_log_reset_output();
}

static void test_colour_only_on_tty(void **state)
{
	(void)state;
	char buf[512];
	tty_line(NULL, "xterm", buf, sizeof(buf));
	/* the terminal turns \n into \r\n */
	assert_string_equal(buf, "mailkeep: \033[1;31merror\033[0m: boom\r\n");
	tty_line("1", "xterm", buf, sizeof(buf));
	assert_string_equal(buf, "mailkeep: error: boom\r\n");
	tty_line("", "xterm", buf, sizeof(buf)); /* empty NO_COLOR: colour (no-color.org) */
	assert_non_null(strchr(buf, '\033'));
	tty_line(NULL, "dumb", buf, sizeof(buf));
	assert_null(strchr(buf, '\033'));
	/* a file: never colour */
	unsetenv("NO_COLOR");
	setenv("TERM", "xterm", 1);
	assert_null(strchr(log_to_file(false, NULL), '\033'));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_journal_prefixes),
		cmocka_unit_test(test_journal_other_stream),
		cmocka_unit_test(test_colour_only_on_tty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
