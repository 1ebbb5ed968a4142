/* SPDX-License-Identifier: MIT */
/*
 * secret.c - obtains an account's secret: the inline password, or the first
 * line printed by pass_cmd run as `/bin/sh -c CMD` (stdin /dev/null, stdout
 * a pipe, stderr inherited so the command's own complaints reach the user).
 * Output is bounded by MK_LIMIT_SECRET and time by MK_LIMIT_CMD_TIMEOUT_MS;
 * a command over either limit is killed and reaped. The secret never
 * appears in an error or a log line, and every buffer that held it is wiped
 * before it is freed. This is a blocking call: run it where blocking is
 * allowed (the CLI, or a libuv work thread), never on the loop thread.
 */
#include "config_int.h"

#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"
#include "mk_str.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static unsigned cmd_timeout_override; /* 0: default */

void mk__config_set_cmd_timeout_ms(unsigned ms)
{
	cmd_timeout_override = ms;
}

unsigned mk__config_cmd_timeout_ms(void)
{
	if (cmd_timeout_override != 0)
		return cmd_timeout_override;
#ifdef MK_TEST_HOOKS
	/* Lets integration tests of the whole binary shorten the wait. */
	const char *s = getenv("MK_TEST_CMD_TIMEOUT_MS");
	uint64_t v;
	if (s != NULL && mk_str_to_u64(s, 1, 3600000, &v) == 0)
		return (unsigned)v;
#endif
	return MK_LIMIT_CMD_TIMEOUT_MS;
}

void mk__config_free_secret_str(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	mk_free(s);
}

void mk_config_secret_free(char **secret)
{
	mk__config_free_secret_str(*secret);
	*secret = NULL;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void format_timeout(char *out, size_t outsz, unsigned ms)
{
	if (ms % 1000 == 0)
		snprintf(out, outsz, "%u s", ms / 1000);
	else
		snprintf(out, outsz, "%u ms", ms);
}

/* Starts /bin/sh -c cmd with stdout on a new pipe. posix_spawn (vfork-like
 * in glibc) keeps this safe in a threaded process, where fork() followed by
 * anything but async-signal-safe calls is not. */
static int spawn_cmd(const char *cmd, pid_t *pid_r, int *fd_r)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	/* dup2 clears FD_CLOEXEC on the copy; both pipe ends are closed in
	 * the child by O_CLOEXEC. */
	posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);

	/* The command must not inherit our blocked signals or an ignored
	 * SIGPIPE (libuv programs ignore it), or shell pipelines misbehave. */
	sigset_t empty, deflt;
	sigemptyset(&empty);
	sigemptyset(&deflt);
	static const int sigs[] = {SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&deflt, sigs[i]);
	posix_spawnattr_setsigmask(&attr, &empty);
	posix_spawnattr_setsigdefault(&attr, &deflt);
	/* Its own process group, so a timeout kills the whole command tree:
	 * Debian's dash does not exec the last command of `sh -c`, so killing
	 * only the shell would leave a hung `sleep` or network fetch behind,
	 * one more on each retry of a daemon. The cost: the command is not in
	 * the terminal's foreground group, so it cannot prompt on /dev/tty
	 * itself (gpg's pinentry, started by gpg-agent, is unaffected). */
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

	char *const argv[] = {(char *)"sh", (char *)"-c", (char *)cmd, NULL};
	pid_t pid = -1;
	int r = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(pfd[1]);
	if (r != 0) {
		close(pfd[0]);
		return -r;
	}
	*pid_r = pid;
	*fd_r = pfd[0];
	return 0;
}

static void kill_tree(pid_t pid)
{
	/* The group is the child's pid (see spawn_cmd). */
	if (kill(-pid, SIGKILL) < 0)
		kill(pid, SIGKILL);
}

/* Waits for the child until the deadline; kills its process group after.
 * Returns the wait status, and sets *killed_r when we killed it. */
static int reap(pid_t pid, int64_t deadline, bool kill_now, bool *killed_r)
{
	int status = 0;
	*killed_r = false;
	if (kill_now) {
		kill_tree(pid);
		*killed_r = true;
	}
	for (;;) {
		pid_t r = waitpid(pid, &status, *killed_r ? 0 : WNOHANG);
		if (r == pid)
			return status;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return 0; /* reaped elsewhere (SIGCHLD handler); nothing to report */
		/* Closed stdout but still running: give it until the deadline. */
		if (now_ms() >= deadline) {
			kill_tree(pid);
			*killed_r = true;
			continue;
		}
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

enum outcome {
	OUT_OK = 0,
	OUT_TIMEOUT,
	OUT_TOOBIG,
	OUT_READERR,
};

static int run_pass_cmd(const struct mk_config_account *acct, char **secret_r, char **error_r)
{
	unsigned timeout = mk__config_cmd_timeout_ms();
	pid_t pid = -1; /* set by spawn_cmd on success (gcc -O2 cannot see it) */
	int fd = -1;
	int r = spawn_cmd(acct->pass_cmd, &pid, &fd);
	if (r < 0) {
		*error_r = mk_xasprintf("account %s: cannot run pass_cmd: %s", acct->name, strerror(-r));
		return MK_ECMD;
	}

	/* One fixed buffer, so no realloc leaves copies of the secret
	 * behind. One spare byte tells "exactly at the limit" from "over". */
	size_t cap = MK_LIMIT_SECRET + 1;
	char *buf = mk_xmalloc(cap + 1);
	size_t len = 0;
	enum outcome outcome = OUT_OK;
	int read_errno = 0;
	int64_t deadline = now_ms() + timeout;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0) {
			outcome = OUT_TIMEOUT;
			break;
		}
		struct pollfd pfd = {fd, POLLIN, 0};
		int n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			read_errno = errno;
			outcome = OUT_READERR;
			break;
		}
		if (n == 0)
			continue; /* the deadline check above ends the loop */
		ssize_t got = read(fd, buf + len, cap - len);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got < 0) {
			read_errno = errno;
			outcome = OUT_READERR;
			break;
		}
		if (got == 0)
			break;
		len += (size_t)got;
		if (len > MK_LIMIT_SECRET) {
			outcome = OUT_TOOBIG;
			break;
		}
	}
	close(fd);
	bool killed;
	int status = reap(pid, deadline, outcome != OUT_OK, &killed);

	int ret = MK_ECMD;
	char tbuf[32];
	switch (outcome) {
	case OUT_TIMEOUT:
		format_timeout(tbuf, sizeof(tbuf), timeout);
		*error_r = mk_xasprintf("account %s: pass_cmd timed out after %s", acct->name, tbuf);
		break;
	case OUT_TOOBIG:
		*error_r = mk_xasprintf("account %s: pass_cmd output exceeds %d bytes", acct->name, MK_LIMIT_SECRET);
		break;
	case OUT_READERR:
		*error_r = mk_xasprintf("account %s: reading pass_cmd output: %s", acct->name, strerror(read_errno));
		break;
	case OUT_OK:
		if (killed) {
			format_timeout(tbuf, sizeof(tbuf), timeout);
			*error_r = mk_xasprintf("account %s: pass_cmd timed out after %s", acct->name, tbuf);
		} else if (WIFSIGNALED(status)) {
			*error_r = mk_xasprintf("account %s: pass_cmd was killed by signal %d", acct->name,
						WTERMSIG(status));
		} else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
			*error_r = mk_xasprintf("account %s: pass_cmd exited with status %d", acct->name,
						WEXITSTATUS(status));
		} else {
			size_t line = 0;
			while (line < len && buf[line] != '\n')
				line++;
			if (line > 0 && buf[line - 1] == '\r')
				line--;
			if (line == 0) {
				*error_r = mk_xasprintf("account %s: pass_cmd printed nothing%s", acct->name,
							len > 0 ? " on its first line" : "");
			} else if (memchr(buf, '\0', line) != NULL) {
				/* A NUL would silently cut the C string. */
				*error_r = mk_xasprintf("account %s: pass_cmd printed a NUL byte", acct->name);
			} else {
				*secret_r = mk_xstrndup(buf, line);
				ret = 0;
			}
		}
		break;
	}
	explicit_bzero(buf, cap + 1);
	mk_free(buf);
	return ret;
}

int mk_config_get_secret(const struct mk_config_account *acct, char **secret_r, char **error_r)
{
	*secret_r = NULL;
	*error_r = NULL;
	if (acct->password != NULL) {
		*secret_r = mk_xstrdup(acct->password);
		return 0;
	}
	if (acct->pass_cmd == NULL) {
		*error_r = mk_xasprintf("account %s: no password or pass_cmd is configured", acct->name);
		return MK_ENOTFOUND;
	}
	return run_pass_cmd(acct, secret_r, error_r);
}
