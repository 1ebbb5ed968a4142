/* SPDX-License-Identifier: MIT */
/*
 * test_sched.c - the agent's support modules in agent/sched: the sd_notify
 * client (against a fake NOTIFY_SOCKET, path and abstract), the store lock
 * (across fork()), the control socket (server on a test loop, blocking
 * clients in threads, libuv clients that stall or send too much), the
 * metrics text, and the backoff sequence with a fixed random source.
 * Timings appear only as generous guard timeouts, never as assertions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mk_alloc.h"
#include "mk_backoff.h"
#include "mk_buf.h"
#include "mk_control.h"
#include "mk_err.h"
#include "mk_lock.h"
#include "mk_metrics.h"
#include "mk_notify.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

/* A fresh temporary directory; free with mk_free after rm_tree. */
static char *make_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *tmpl = mk_xasprintf("%s/mk-sched-XXXXXX", base != NULL && base[0] != '\0' ? base : "/tmp");
	if (mkdtemp(tmpl) == NULL)
		fail_msg("mkdtemp: %s", strerror(errno));
	return tmpl;
}

static void rm_tree(const char *dir)
{
	/* our test dirs hold at most one level of subdirectories */
	const char *names[] = {"agent.lock", "control.sock", "notify.sock", "stale.sock", "file",
			       "sub/control.sock", "sub"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *p = mk_xasprintf("%s/%s", dir, names[i]);
		if (unlink(p) < 0 && errno == EISDIR)
			rmdir(p);
		rmdir(p);
		mk_free(p);
	}
	assert_int_equal(rmdir(dir), 0);
}

/* ============================================================== notify */

static int bind_dgram(const struct sockaddr_un *addr, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (const struct sockaddr *)addr, len), 0);
	struct timeval tv = {10, 0}; /* guard only */
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

static void expect_dgram(int fd, const char *want)
{
	char buf[MK_NOTIFY_MSG_MAX + 16];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static void test_notify_path(void **state)
{
	(void)state;
	char *dir = make_tmpdir();
	char *path = mk_xasprintf("%s/notify.sock", dir);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	memcpy(addr.sun_path, path, strlen(path) + 1);
	int fd = bind_dgram(&addr, sizeof(addr));

	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(mk_notify_init(), 0);
	assert_false(mk_notify_enabled());
	assert_int_equal(mk_notify_send("READY=1"), 0); /* no-op */

	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(mk_notify_init(), 0);
	assert_true(mk_notify_enabled());
	assert_int_equal(mk_notify_send("READY=1"), 0);
	expect_dgram(fd, "READY=1");
	assert_int_equal(mk_notify_send("STATUS=%u accounts, %s", 3u, "idling"), 0);
	expect_dgram(fd, "STATUS=3 accounts, idling");
	assert_int_equal(mk_notify_send("WATCHDOG=1"), 0);
	expect_dgram(fd, "WATCHDOG=1");

	assert_int_equal(mk_notify_reloading(), 0);
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	const char *prefix = "RELOADING=1\nMONOTONIC_USEC=";
	assert_memory_equal(buf, prefix, strlen(prefix));
	unsigned long long usec = strtoull(buf + strlen(prefix), NULL, 10);
	assert_true(usec > 0 && usec <= mk_notify_monotonic_usec());

	/* too long to send */
	char *big = mk_xmalloc(MK_NOTIFY_MSG_MAX + 2);
	memset(big, 'x', MK_NOTIFY_MSG_MAX + 1);
	big[MK_NOTIFY_MSG_MAX + 1] = '\0';
	assert_int_equal(mk_notify_send("STATUS=%s", big), MK_ETOOBIG);
	mk_free(big);

	/* a manager that does not read: we get EAGAIN, we never block */
	int r = 0;
	for (int i = 0; i < 100000 && r == 0; i++)
		r = mk_notify_send("STATUS=flood %d", i);
	assert_int_equal(r, -EAGAIN);

	/* the manager went away */
	close(fd);
	unlink(path);
	r = mk_notify_send("STOPPING=1");
	assert_true(r == -ENOENT || r == -ECONNREFUSED);

	mk_notify_cleanup();
	mk_notify_cleanup(); /* idempotent */
	assert_false(mk_notify_enabled());
	unsetenv("NOTIFY_SOCKET");
	mk_free(path);
	rm_tree(dir);
	mk_free(dir);
}

static void test_notify_abstract(void **state)
{
	(void)state;
	char name[64];
	snprintf(name, sizeof(name), "mailkeep-test-%ld", (long)getpid());
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	size_t n = strlen(name);
	memcpy(addr.sun_path + 1, name, n); /* sun_path[0] = 0: abstract */
	int fd = bind_dgram(&addr, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n));

	char *env = mk_xasprintf("@%s", name);
	setenv("NOTIFY_SOCKET", env, 1);
	assert_int_equal(mk_notify_init(), 0);
	assert_true(mk_notify_enabled());
	assert_int_equal(mk_notify_send("READY=1\nSTATUS=up"), 0);
	expect_dgram(fd, "READY=1\nSTATUS=up");
	mk_notify_cleanup();
	close(fd);
	mk_free(env);

	/* malformed values disable notifications */
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(mk_notify_init(), MK_EINVAL);
	assert_false(mk_notify_enabled());
	assert_int_equal(mk_notify_send("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "@", 1);
	assert_int_equal(mk_notify_init(), MK_EINVAL);
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	setenv("NOTIFY_SOCKET", longpath, 1);
	assert_int_equal(mk_notify_init(), MK_EINVAL);
	unsetenv("NOTIFY_SOCKET");
	mk_notify_cleanup();
}

static void test_notify_watchdog(void **state)
{
	(void)state;
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	assert_int_equal(mk_notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "30000000", 1);
	assert_int_equal(mk_notify_watchdog_usec(), 30000000);
	char pid[32];
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(mk_notify_watchdog_usec(), 30000000);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(mk_notify_watchdog_usec(), 0); /* someone else's */
	setenv("WATCHDOG_PID", "", 1);
	assert_int_equal(mk_notify_watchdog_usec(), 30000000);
	setenv("WATCHDOG_USEC", "0", 1);
	assert_int_equal(mk_notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "12x", 1);
	assert_int_equal(mk_notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "-5", 1);
	assert_int_equal(mk_notify_watchdog_usec(), 0);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

/* ================================================================ lock */

/* Child: try to take the lock; exit 0 on -EBUSY with the parent's PID in
 * the message, 1 on success, 2 otherwise. */
static int child_try_lock(const char *dir, pid_t expect_pid)
{
	struct mk_lock *l;
	char *err;
	int ret = mk_lock_acquire(dir, &l, &err);
	if (ret == 0) {
		mk_lock_release(&l);
		return 1;
	}
	char want[64];
	snprintf(want, sizeof(want), "another mailkeep agent (pid %ld) is running on ", (long)expect_pid);
	int ok = ret == -EBUSY && err != NULL && strstr(err, want) != NULL && strstr(err, dir) != NULL;
	if (!ok)
		fprintf(stderr, "child: ret %d err %s\n", ret, err != NULL ? err : "(null)");
	mk_free(err);
	return ok ? 0 : 2;
}

static int wait_child(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void test_lock(void **state)
{
	(void)state;
	char *dir = make_tmpdir();
	struct mk_lock *l = NULL;
	char *err = NULL;
	pid_t holder;

	assert_int_equal(mk_lock_probe(dir, &holder), 0); /* no file yet */
	assert_int_equal(mk_lock_acquire(dir, &l, &err), 0);
	assert_null(err);
	assert_non_null(l);

	/* mode 0600, our PID inside */
	char *lp = mk_xasprintf("%s/agent.lock", dir);
	struct stat st;
	assert_int_equal(stat(lp, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	char buf[32] = {0};
	int fd = open(lp, O_RDONLY);
	assert_true(fd >= 0);
	assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
	close(fd);
	char want[32];
	snprintf(want, sizeof(want), "%ld\n", (long)getpid());
	assert_string_equal(buf, want);

	/* OFD locks conflict inside one process too */
	struct mk_lock *l2 = NULL;
	assert_int_equal(mk_lock_acquire(dir, &l2, &err), -EBUSY);
	assert_null(l2);
	assert_non_null(strstr(err, "another mailkeep agent (pid"));
	MK_FREE(&err);
	assert_int_equal(mk_lock_probe(dir, &holder), 1);
	assert_int_equal(holder, getpid());

	/* another process is refused while we hold it */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_try_lock(dir, getppid()));
	assert_int_equal(wait_child(pid), 0);

	/* released: another process gets it */
	mk_lock_release(&l);
	assert_null(l);
	mk_lock_release(&l); /* NULL is fine */
	assert_int_equal(mk_lock_probe(dir, &holder), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_try_lock(dir, 0));
	assert_int_equal(wait_child(pid), 1);

	/* a holder that dies (SIGKILL, no cleanup) releases it through the
	 * kernel */
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		struct mk_lock *cl;
		char *cerr;
		char c = mk_lock_acquire(dir, &cl, &cerr) == 0 ? 'y' : 'n';
		if (write(pfd[1], &c, 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	close(pfd[1]);
	char c = 0;
	assert_int_equal(read(pfd[0], &c, 1), 1);
	close(pfd[0]);
	assert_int_equal(c, 'y');
	assert_int_equal(mk_lock_acquire(dir, &l, &err), -EBUSY);
	char wantc[64];
	snprintf(wantc, sizeof(wantc), "(pid %ld)", (long)pid);
	assert_non_null(strstr(err, wantc));
	MK_FREE(&err);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(wait_child(pid), 128 + SIGKILL);
	assert_int_equal(mk_lock_acquire(dir, &l, &err), 0);
	mk_lock_release(&l);

	/* a store that does not exist */
	char *nodir = mk_xasprintf("%s/missing", dir);
	assert_int_equal(mk_lock_acquire(nodir, &l, &err), -ENOENT);
	assert_non_null(strstr(err, "cannot open"));
	MK_FREE(&err);
	mk_free(nodir);

	mk_free(lp);
	rm_tree(dir);
	mk_free(dir);
}

/* ============================================================= control */

struct ctl_test {
	uv_loop_t loop;
	struct mk_control *ctl;
	char *path;
	int handled;
	bool closed;
	bool close_in_handler;
};

static int ctl_handler(void *ud, const char *request, struct mk_buf *reply)
{
	struct ctl_test *t = ud;
	t->handled++;
	if (strcmp(request, "ping") == 0)
		return mk_buf_append_str(reply, "pong\n");
	if (strcmp(request, "status json") == 0)
		return mk_buf_append_str(reply, "{\"accounts\":[]}\n");
	if (strcmp(request, "fail") == 0)
		return MK_ENOTFOUND;
	if (strncmp(request, "sync ", 5) == 0) {
		mk_buf_printf(reply, "no account named \"%s\"\nsecond line", request + 5);
		return MK_ENOTFOUND;
	}
	if (strcmp(request, "stop") == 0) {
		mk_buf_append_str(reply, "stopping\n");
		t->close_in_handler = true;
		return 0;
	}
	return mk_buf_printf(reply, "echo %s\n", request);
}

static void ctl_on_closed(void *ud)
{
	struct ctl_test *t = ud;
	t->closed = true;
}

static void ctl_setup(struct ctl_test *t, const char *dir)
{
	memset(t, 0, sizeof(*t));
	assert_int_equal(uv_loop_init(&t->loop), 0);
	t->path = mk_xasprintf("%s/sub/control.sock", dir);
	char *err = NULL;
	int ret = mk_control_start(&t->loop, t->path, ctl_handler, t, &t->ctl, &err);
	if (ret != 0)
		fail_msg("mk_control_start: %d %s", ret, err);
	assert_null(err);
}

static void ctl_teardown(struct ctl_test *t)
{
	assert_true(t->closed);
	struct stat st;
	assert_int_equal(lstat(t->path, &st), -1); /* unlinked */
	assert_int_equal(uv_loop_close(&t->loop), 0);
	mk_free(t->path);
}

/* --- blocking clients in threads */

#define NCLIENTS 16

struct thread_client {
	uv_thread_t tid;
	const char *path;
	char request[32];
	int ret;
	struct mk_buf reply;
	char *err;
	uv_async_t *done;
};

struct thread_test {
	struct ctl_test t;
	uv_async_t async;
	struct thread_client clients[NCLIENTS];
	int finished;
};

static void thread_test_on_async(uv_async_t *a)
{
	struct thread_test *tt = a->data;
	/* async sends coalesce: count the clients that are done */
	tt->finished = 0;
	for (int i = 0; i < NCLIENTS; i++)
		if (__atomic_load_n(&tt->clients[i].ret, __ATOMIC_ACQUIRE) != 1)
			tt->finished++;
	if (tt->finished == NCLIENTS) {
		mk_control_close(tt->t.ctl, ctl_on_closed);
		uv_close((uv_handle_t *)&tt->async, NULL);
	}
}

static void thread_client_run_atomic(void *arg)
{
	struct thread_client *c = arg;
	struct mk_buf reply;
	char *err = NULL;
	mk_buf_init(&reply, MK_CONTROL_REPLY_MAX);
	int ret = mk_control_request(c->path, c->request, &reply, &err);
	c->reply = reply;
	c->err = err;
	__atomic_store_n(&c->ret, ret, __ATOMIC_RELEASE);
	uv_async_send(c->done);
}

static void test_control_parallel(void **state)
{
	(void)state;
	char *dir = make_tmpdir();
	struct thread_test *tt = mk_xcalloc(1, sizeof(*tt));
	ctl_setup(&tt->t, dir);

	/* 0600 socket in a 0700 directory */
	struct stat st;
	assert_int_equal(lstat(tt->t.path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	char *sub = mk_xasprintf("%s/sub", dir);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	mk_free(sub);

	assert_int_equal(uv_async_init(&tt->t.loop, &tt->async, thread_test_on_async), 0);
	tt->async.data = tt;
	for (int i = 0; i < NCLIENTS; i++) {
		struct thread_client *c = &tt->clients[i];
		c->path = tt->t.path;
		c->done = &tt->async;
		c->ret = 1; /* not finished */
		switch (i % 4) {
		case 0:
			snprintf(c->request, sizeof(c->request), "ping");
			break;
		case 1:
			snprintf(c->request, sizeof(c->request), "status json");
			break;
		case 2:
			snprintf(c->request, sizeof(c->request), "sync acct%d", i);
			break;
		default:
			snprintf(c->request, sizeof(c->request), "metrics %d", i);
			break;
		}
		assert_int_equal(uv_thread_create(&c->tid, thread_client_run_atomic, c), 0);
	}
	assert_int_equal(uv_run(&tt->t.loop, UV_RUN_DEFAULT), 0);
	for (int i = 0; i < NCLIENTS; i++) {
		struct thread_client *c = &tt->clients[i];
		assert_int_equal(uv_thread_join(&c->tid), 0);
		switch (i % 4) {
		case 0:
			assert_int_equal(c->ret, 0);
			assert_string_equal((char *)c->reply.data, "pong\n");
			break;
		case 1:
			assert_int_equal(c->ret, 0);
			assert_string_equal((char *)c->reply.data, "{\"accounts\":[]}\n");
			break;
		case 2: {
			assert_int_equal(c->ret, MK_ESERVER);
			char want[96];
			snprintf(want, sizeof(want), "no account named \"acct%d\" second line", i);
			assert_string_equal(c->err, want);
			snprintf(want, sizeof(want), "error: no account named \"acct%d\" second line\n", i);
			assert_string_equal((char *)c->reply.data, want);
			break;
		}
		default: {
			assert_int_equal(c->ret, 0);
			char want[64];
			snprintf(want, sizeof(want), "echo metrics %d\n", i);
			assert_string_equal((char *)c->reply.data, want);
			break;
		}
		}
		mk_buf_cleanup(&c->reply);
		mk_free(c->err);
	}
	assert_int_equal(tt->t.handled, NCLIENTS);
	ctl_teardown(&tt->t);
	mk_free(tt);
	rm_tree(dir);
	mk_free(dir);
}

/* --- libuv clients: stall, oversize, partial line, close while connected */

enum uvc_kind { UVC_SILENT, UVC_OVERSIZE, UVC_NO_NEWLINE, UVC_NUL };

struct uv_client {
	struct uv_test *ut;
	enum uvc_kind kind;
	uv_pipe_t pipe;
	uv_connect_t creq;
	uv_write_t wreq;
	uv_shutdown_t sreq;
	char *wbuf;
	struct mk_buf got;
	int end; /* 0: open; UV_EOF or an error once the server closed */
	bool connected;
};

struct uv_test {
	struct ctl_test t;
	uv_timer_t guard;
	uv_timer_t poll;
	struct uv_client c[4];
	int nc;
	int ended;
	size_t close_at_clients; /* close the server once this many are connected */
};

static void uvc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct uv_client *c = h->data;
	uint8_t *p;
	(void)suggested;
	assert_int_equal(mk_buf_reserve(&c->got, 4096, &p), 0);
	*buf = uv_buf_init((char *)p, 4096);
}

static void uvt_maybe_finish(struct uv_test *ut);

static void uvc_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct uv_client *c = s->data;
	(void)buf;
	if (nread > 0) {
		mk_buf_commit(&c->got, (size_t)nread);
		return;
	}
	if (nread == 0)
		return;
	c->end = (int)nread;
	uv_close((uv_handle_t *)&c->pipe, NULL);
	c->ut->ended++;
	uvt_maybe_finish(c->ut);
}

static void uvc_on_write(uv_write_t *req, int status)
{
	(void)req;
	(void)status; /* the server may have closed already */
}

static void uvc_on_shutdown(uv_shutdown_t *req, int status)
{
	(void)req;
	(void)status;
}

static void uvc_on_connect(uv_connect_t *req, int status)
{
	struct uv_client *c = req->data;
	assert_int_equal(status, 0);
	c->connected = true;
	assert_int_equal(uv_read_start((uv_stream_t *)&c->pipe, uvc_alloc, uvc_on_read), 0);
	size_t n = 0;
	switch (c->kind) {
	case UVC_SILENT:
		return;
	case UVC_OVERSIZE:
		n = MK_CONTROL_REQUEST_MAX + 100;
		c->wbuf = mk_xmalloc(n);
		memset(c->wbuf, 'a', n);
		c->wbuf[n - 1] = '\n';
		break;
	case UVC_NO_NEWLINE:
		c->wbuf = mk_xstrdup("ping");
		n = 4;
		break;
	case UVC_NUL:
		c->wbuf = mk_xmalloc(6);
		memcpy(c->wbuf, "pi\0ng\n", 6);
		n = 6;
		break;
	}
	uv_buf_t b = uv_buf_init(c->wbuf, (unsigned)n);
	c->wreq.data = c;
	assert_int_equal(uv_write(&c->wreq, (uv_stream_t *)&c->pipe, &b, 1, uvc_on_write), 0);
	if (c->kind == UVC_NO_NEWLINE)
		assert_int_equal(uv_shutdown(&c->sreq, (uv_stream_t *)&c->pipe, uvc_on_shutdown), 0);
}

static void uvt_on_guard(uv_timer_t *t)
{
	(void)t;
	fail_msg("guard timeout: the control test hung");
}

static void uvt_maybe_finish(struct uv_test *ut)
{
	if (ut->ended < ut->nc)
		return;
	if (ut->close_at_clients == 0)
		mk_control_close(ut->t.ctl, ctl_on_closed);
	uv_close((uv_handle_t *)&ut->guard, NULL);
	uv_close((uv_handle_t *)&ut->poll, NULL);
}

static void uvt_on_poll(uv_timer_t *t)
{
	struct uv_test *ut = t->data;
	if (ut->close_at_clients > 0 && mk_control_client_count(ut->t.ctl) == ut->close_at_clients) {
		mk_control_close(ut->t.ctl, ctl_on_closed);
		uv_timer_stop(&ut->poll);
	}
}

static void uvt_run(struct uv_test *ut, const enum uvc_kind *kinds, int n)
{
	assert_int_equal(uv_timer_init(&ut->t.loop, &ut->guard), 0);
	assert_int_equal(uv_timer_start(&ut->guard, uvt_on_guard, 30000, 0), 0);
	assert_int_equal(uv_timer_init(&ut->t.loop, &ut->poll), 0);
	ut->poll.data = ut;
	assert_int_equal(uv_timer_start(&ut->poll, uvt_on_poll, 5, 5), 0);
	ut->nc = n;
	for (int i = 0; i < n; i++) {
		struct uv_client *c = &ut->c[i];
		c->ut = ut;
		c->kind = kinds[i];
		mk_buf_init(&c->got, 1 << 20);
		assert_int_equal(uv_pipe_init(&ut->t.loop, &c->pipe, 0), 0);
		c->pipe.data = c;
		c->creq.data = c;
		uv_pipe_connect(&c->creq, &c->pipe, ut->t.path, uvc_on_connect);
	}
	assert_int_equal(uv_run(&ut->t.loop, UV_RUN_DEFAULT), 0);
}

static void uvt_cleanup(struct uv_test *ut)
{
	for (int i = 0; i < ut->nc; i++) {
		mk_buf_cleanup(&ut->c[i].got);
		mk_free(ut->c[i].wbuf);
	}
}

static void test_control_misbehaving_clients(void **state)
{
	(void)state;
	char *dir = make_tmpdir();
	struct uv_test *ut = mk_xcalloc(1, sizeof(*ut));
	ctl_setup(&ut->t, dir);
	mk_control_set_timeout(ut->t.ctl, 100); /* the silent client */

	const enum uvc_kind kinds[] = {UVC_SILENT, UVC_OVERSIZE, UVC_NO_NEWLINE, UVC_NUL};
	uvt_run(ut, kinds, 4);

	/* silent: dropped by the timeout, nothing said */
	assert_int_equal(ut->c[0].end, UV_EOF);
	assert_int_equal(ut->c[0].got.len, 0);
	/* oversize: refused (the close may show up as a reset, since our
	 * extra bytes were left unread) */
	assert_true(ut->c[1].end == UV_EOF || ut->c[1].end == UV_ECONNRESET);
	assert_string_equal((char *)ut->c[1].got.data, "error: request too long (max 4096 bytes)\n");
	/* the line ended by EOF is served */
	assert_int_equal(ut->c[2].end, UV_EOF);
	assert_string_equal((char *)ut->c[2].got.data, "pong\n");
	/* NUL */
	assert_string_equal((char *)ut->c[3].got.data, "error: invalid request (NUL byte)\n");
	assert_int_equal(ut->t.handled, 1);

	uvt_cleanup(ut);
	ctl_teardown(&ut->t);
	mk_free(ut);
	rm_tree(dir);
	mk_free(dir);
}

static void test_control_close_with_clients(void **state)
{
	(void)state;
	char *dir = make_tmpdir();
	struct uv_test *ut = mk_xcalloc(1, sizeof(*ut));
	ctl_setup(&ut->t, dir);
	ut->close_at_clients = 3; /* default 5 s timeout: the close comes first */
	const enum uvc_kind kinds[] = {UVC_SILENT, UVC_SILENT, UVC_SILENT};
	uvt_run(ut, kinds, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ut->c[i].end, UV_EOF);
		assert_int_equal(ut->c[i].got.len, 0);
	}
	assert_int_equal(ut->t.handled, 0);
	uvt_cleanup(ut);
	ctl_teardown(&ut->t);
	mk_free(ut);
	rm_tree(dir);
	mk_free(dir);
}

/* --- start-up: stale socket, a live agent, other files; client errors */

struct stop_test {
	struct ctl_test t;
	uv_thread_t tid;
	struct thread_client c;
	uv_async_t async;
};

static void stop_on_async(uv_async_t *a)
{
	struct stop_test *st = a->data;
	uv_close((uv_handle_t *)&st->async, NULL);
}

static int stop_handler(void *ud, const char *request, struct mk_buf *reply)
{
	struct stop_test *st = ud;
	int ret = ctl_handler(&st->t, request, reply);
	if (st->t.close_in_handler)
		mk_control_close(st->t.ctl, ctl_on_closed); /* ud is st; t is first */
	return ret;
}

static void test_control_startup_and_client_errors(void **state)
{
	(void)state;
	char *dir = make_tmpdir();
	char *path = mk_xasprintf("%s/sub/control.sock", dir);
	struct mk_buf reply;
	mk_buf_init(&reply, 1024);
	char *err = NULL;

	/* nobody there */
	assert_int_equal(mk_control_request(path, "ping", &reply, &err), -ENOENT);
	char *want = mk_xasprintf("no agent is running (%s: no such socket)", path);
	assert_string_equal(err, want);
	MK_FREE(&want);
	MK_FREE(&err);
	assert_int_equal(mk_control_request(path, "two\nlines", &reply, &err), MK_EINVAL);
	MK_FREE(&err);

	/* a dead agent's socket: refused for clients, replaced by a server */
	char *subdir = mk_xasprintf("%s/sub", dir);
	assert_int_equal(mkdir(subdir, 0755), 0); /* an existing dir is left alone */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	memcpy(addr.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);
	assert_int_equal(mk_control_request(path, "ping", &reply, &err), -ECONNREFUSED);
	want = mk_xasprintf("no agent is running (%s: connection refused)", path);
	assert_string_equal(err, want);
	MK_FREE(&want);
	MK_FREE(&err);

	struct stop_test *st = mk_xcalloc(1, sizeof(*st));
	assert_int_equal(uv_loop_init(&st->t.loop), 0);
	st->t.path = mk_xstrdup(path);
	assert_int_equal(mk_control_start(&st->t.loop, path, stop_handler, st, &st->t.ctl, &err), 0);
	assert_string_equal(mk_control_path(st->t.ctl), path);
	struct stat sb;
	assert_int_equal(stat(subdir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0755);

	/* a second agent on the same path: someone answers */
	uv_loop_t loop2;
	assert_int_equal(uv_loop_init(&loop2), 0);
	struct mk_control *ctl2 = NULL;
	assert_int_equal(mk_control_start(&loop2, path, ctl_handler, NULL, &ctl2, &err), -EADDRINUSE);
	assert_null(ctl2);
	want = mk_xasprintf("another mailkeep agent is already running (it answers on %s)", path);
	assert_string_equal(err, want);
	MK_FREE(&want);
	MK_FREE(&err);
	assert_int_equal(uv_run(&loop2, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop2), 0);

	/* "stop": the handler closes the server; its reply is cut off */
	assert_int_equal(uv_async_init(&st->t.loop, &st->async, stop_on_async), 0);
	st->async.data = st;
	st->c.path = path;
	st->c.done = &st->async;
	st->c.ret = 1;
	snprintf(st->c.request, sizeof(st->c.request), "stop");
	assert_int_equal(uv_thread_create(&st->tid, thread_client_run_atomic, &st->c), 0);
	assert_int_equal(uv_run(&st->t.loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_thread_join(&st->tid), 0);
	assert_int_equal(st->c.ret, 0);
	assert_int_equal(st->c.reply.len, 0);
	mk_buf_cleanup(&st->c.reply);
	mk_free(st->c.err);
	ctl_teardown(&st->t);
	mk_free(st);

	/* a regular file where the socket should be is not touched */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(uv_loop_init(&loop2), 0);
	assert_int_equal(mk_control_start(&loop2, path, ctl_handler, NULL, &ctl2, &err), -EEXIST);
	assert_non_null(strstr(err, "is not a socket"));
	MK_FREE(&err);
	assert_int_equal(uv_loop_close(&loop2), 0);
	unlink(path);

	/* a path too long for sockaddr_un */
	char longp[200];
	memset(longp, 'x', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	char *lp = mk_xasprintf("%s/%s", dir, longp);
	assert_int_equal(uv_loop_init(&loop2), 0);
	assert_int_equal(mk_control_start(&loop2, lp, ctl_handler, NULL, &ctl2, &err), MK_ETOOBIG);
	assert_non_null(strstr(err, "too long"));
	MK_FREE(&err);
	assert_int_equal(uv_loop_close(&loop2), 0);
	mk_free(lp);

	mk_buf_cleanup(&reply);
	mk_free(subdir);
	mk_free(path);
	rm_tree(dir);
	mk_free(dir);
}

static void test_control_default_path(void **state)
{
	(void)state;
	char *old = getenv("XDG_RUNTIME_DIR") != NULL ? mk_xstrdup(getenv("XDG_RUNTIME_DIR")) : NULL;
	setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
	char *p = mk_control_default_path("/home/u/.mailkeep");
	assert_string_equal(p, "/run/user/1000/mailkeep/control.sock");
	mk_free(p);
	unsetenv("XDG_RUNTIME_DIR");
	p = mk_control_default_path("/home/u/.mailkeep/");
	assert_string_equal(p, "/home/u/.mailkeep/control.sock");
	mk_free(p);
	setenv("XDG_RUNTIME_DIR", "relative", 1); /* ignored, per the spec */
	p = mk_control_default_path("store");
	assert_string_equal(p, "store/control.sock");
	mk_free(p);
	if (old != NULL)
		setenv("XDG_RUNTIME_DIR", old, 1);
	else
		unsetenv("XDG_RUNTIME_DIR");
	mk_free(old);
}

/* ============================================================= metrics */

static void test_metrics_text(void **state)
{
	(void)state;
	struct mk_metrics *m = mk_metrics_new(0);
	mk_metrics_define_std(m);
	struct mk_metrics_labels inbox = {"work", "INBOX", NULL};
	struct mk_metrics_labels sent = {"work", "Sent Items", NULL};
	struct mk_metrics_labels odd = {"a\\b", "say \"hi\"\nthere", ""};
	assert_int_equal(mk_metrics_counter_add(m, MK_METRIC_MESSAGES_STORED, &inbox, 3), 0);
	assert_int_equal(mk_metrics_counter_add(m, MK_METRIC_MESSAGES_STORED, &sent, 1), 0);
	assert_int_equal(mk_metrics_counter_add(m, MK_METRIC_MESSAGES_STORED, &inbox, 2), 0);
	assert_int_equal(mk_metrics_counter_add(m, MK_METRIC_MESSAGES_STORED, &odd, 7), 0);
	struct mk_metrics_labels err = {"work", NULL, "wait"};
	assert_int_equal(mk_metrics_counter_add(m, MK_METRIC_ERRORS, &err, 1), 0);
	struct mk_metrics_labels acct = {"work", NULL, NULL};
	assert_int_equal(mk_metrics_gauge_set(m, MK_METRIC_CONNECTIONS, &acct, 2), 0);
	assert_int_equal(mk_metrics_gauge_add(m, MK_METRIC_CONNECTIONS, &acct, 1), 0);
	assert_int_equal(mk_metrics_gauge_set(m, MK_METRIC_LAST_SYNC, &inbox, 1717171717.5), 0);
	assert_int_equal(mk_metrics_hist_observe(m, MK_METRIC_PUSH_LATENCY, &acct, 0.004), 0);
	assert_int_equal(mk_metrics_hist_observe(m, MK_METRIC_PUSH_LATENCY, &acct, 0.005), 0); /* le is <= */
	assert_int_equal(mk_metrics_hist_observe(m, MK_METRIC_PUSH_LATENCY, &acct, 0.3), 0);
	assert_int_equal(mk_metrics_hist_observe(m, MK_METRIC_PUSH_LATENCY, &acct, 42), 0);
	assert_int_equal(mk_metrics_hist_observe(m, MK_METRIC_PUSH_LATENCY, &acct, -1), 0); /* as 0 */

	/* errors */
	assert_int_equal(mk_metrics_counter_add(m, "nope_total", NULL, 1), MK_ENOTFOUND);
	assert_int_equal(mk_metrics_gauge_set(m, MK_METRIC_MESSAGES_STORED, &inbox, 1), MK_EINVAL);
	assert_int_equal(mk_metrics_hist_observe(m, MK_METRIC_PUSH_LATENCY, &acct, 0.0 / 0.0), MK_EINVAL);
	assert_int_equal(mk_metrics_define(m, "bad name", MK_METRICS_GAUGE, ""), MK_EINVAL);
	assert_int_equal(mk_metrics_define(m, "no_suffix", MK_METRICS_COUNTER, ""), MK_EINVAL);
	assert_int_equal(mk_metrics_define(m, MK_METRIC_CONNECTIONS, MK_METRICS_COUNTER, ""), MK_EINVAL);
	assert_int_equal(mk_metrics_define(m, MK_METRIC_CONNECTIONS, MK_METRICS_GAUGE, "again"), 0);
	assert_int_equal(mk_metrics_define(m, "mailkeep_uptime_seconds", MK_METRICS_GAUGE, "Up \\ \"time\"\n."), 0);
	assert_int_equal(mk_metrics_gauge_set(m, "mailkeep_uptime_seconds", NULL, 0.1), 0);

	const char *om =
		"# HELP mailkeep_messages_stored Messages committed to the store.\n"
		"# TYPE mailkeep_messages_stored counter\n"
		"mailkeep_messages_stored_total{account=\"work\",folder=\"INBOX\"} 5\n"
		"mailkeep_messages_stored_total{account=\"work\",folder=\"Sent Items\"} 1\n"
		"mailkeep_messages_stored_total{account=\"a\\\\b\",folder=\"say \\\"hi\\\"\\nthere\"} 7\n"
		"# HELP mailkeep_errors Errors, by kind.\n"
		"# TYPE mailkeep_errors counter\n"
		"mailkeep_errors_total{account=\"work\",kind=\"wait\"} 1\n"
		"# HELP mailkeep_connections Open IMAP connections.\n"
		"# TYPE mailkeep_connections gauge\n"
		"mailkeep_connections{account=\"work\"} 3\n"
		"# HELP mailkeep_last_sync_timestamp_seconds Unix time of the last completed sync.\n"
		"# TYPE mailkeep_last_sync_timestamp_seconds gauge\n"
		"mailkeep_last_sync_timestamp_seconds{account=\"work\",folder=\"INBOX\"} 1717171717.5\n"
		"# HELP mailkeep_push_latency_seconds Seconds from an IDLE EXISTS to the durable commit of the new "
		"messages.\n"
		"# TYPE mailkeep_push_latency_seconds histogram\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"0.005\"} 3\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"0.01\"} 3\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"0.02\"} 3\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"0.05\"} 3\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"0.1\"} 3\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"0.25\"} 3\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"0.5\"} 4\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"1.0\"} 4\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"2.5\"} 4\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"5.0\"} 4\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"10.0\"} 4\n"
		"mailkeep_push_latency_seconds_bucket{account=\"work\",le=\"+Inf\"} 5\n"
		"mailkeep_push_latency_seconds_count{account=\"work\"} 5\n"
		"mailkeep_push_latency_seconds_sum{account=\"work\"} 42.309\n"
		"# HELP mailkeep_uptime_seconds Up \\\\ \\\"time\\\"\\n.\n"
		"# TYPE mailkeep_uptime_seconds gauge\n"
		"mailkeep_uptime_seconds 0.1\n"
		"# HELP mailkeep_metrics_series_dropped Metric updates dropped: too many series or a label too long.\n"
		"# TYPE mailkeep_metrics_series_dropped counter\n"
		"mailkeep_metrics_series_dropped_total 0\n"
		"# EOF\n";
	struct mk_buf out;
	mk_buf_init(&out, 1 << 20);
	assert_int_equal(mk_metrics_render(m, &out), 0);
	assert_string_equal((char *)out.data, om);

	/* Prometheus 0.0.4: full counter names in HELP/TYPE, no quote
	 * escaping in HELP, no # EOF */
	mk_buf_reset(&out);
	assert_int_equal(mk_metrics_render_format(m, MK_METRICS_PROMETHEUS, &out), 0);
	const char *text = (const char *)out.data;
	assert_non_null(strstr(text, "# HELP mailkeep_messages_stored_total Messages committed to the store.\n"
				     "# TYPE mailkeep_messages_stored_total counter\n"
				     "mailkeep_messages_stored_total{account=\"work\",folder=\"INBOX\"} 5\n"));
	assert_non_null(strstr(text, "# HELP mailkeep_uptime_seconds Up \\\\ \"time\"\\n.\n"));
	assert_null(strstr(text, "# EOF"));
	size_t len = strlen(text);
	assert_string_equal(text + len - strlen("mailkeep_metrics_series_dropped_total 0\n"),
			    "mailkeep_metrics_series_dropped_total 0\n");

	/* a too small output buffer is reported */
	struct mk_buf tiny;
	mk_buf_init(&tiny, 100);
	assert_int_equal(mk_metrics_render(m, &tiny), MK_ETOOBIG);
	mk_buf_cleanup(&tiny);

	mk_buf_cleanup(&out);
	mk_metrics_free(&m);
	assert_null(m);
	mk_metrics_free(&m);
}

static void test_metrics_bounds(void **state)
{
	(void)state;
	struct mk_metrics *m = mk_metrics_new(10);
	assert_int_equal(mk_metrics_define(m, "x_total", MK_METRICS_COUNTER, "X."), 0);
	char name[32];
	for (int i = 0; i < 25; i++) {
		snprintf(name, sizeof(name), "folder%d", i);
		struct mk_metrics_labels l = {"acct", name, NULL};
		int ret = mk_metrics_counter_add(m, "x_total", &l, 1);
		assert_int_equal(ret, i < 10 ? 0 : MK_ETOOBIG);
	}
	/* existing series still count */
	struct mk_metrics_labels l0 = {"acct", "folder0", NULL};
	assert_int_equal(mk_metrics_counter_add(m, "x_total", &l0, 1), 0);
	char *longv = mk_xmalloc(MK_METRICS_LABEL_MAX + 2);
	memset(longv, 'l', MK_METRICS_LABEL_MAX + 1);
	longv[MK_METRICS_LABEL_MAX + 1] = '\0';
	struct mk_metrics_labels ll = {longv, NULL, NULL};
	assert_int_equal(mk_metrics_counter_add(m, "x_total", &ll, 1), MK_ETOOBIG);
	mk_free(longv);
	assert_int_equal(mk_metrics_dropped(m), 16);

	struct mk_buf out;
	mk_buf_init(&out, 1 << 20);
	assert_int_equal(mk_metrics_render(m, &out), 0);
	const char *text = (const char *)out.data;
	assert_non_null(strstr(text, "x_total{account=\"acct\",folder=\"folder0\"} 2\n"));
	assert_non_null(strstr(text, "x_total{account=\"acct\",folder=\"folder9\"} 1\n"));
	assert_null(strstr(text, "folder10"));
	assert_non_null(strstr(text, "mailkeep_metrics_series_dropped_total 16\n# EOF\n"));
	mk_buf_cleanup(&out);

	/* the family table is bounded too */
	for (int i = 1; i < MK_METRICS_MAX_FAMILIES; i++) {
		snprintf(name, sizeof(name), "g%d", i);
		assert_int_equal(mk_metrics_define(m, name, MK_METRICS_GAUGE, ""), 0);
	}
	assert_int_equal(mk_metrics_define(m, "one_more", MK_METRICS_GAUGE, ""), MK_ETOOBIG);

	/* many series: the hash table finds them all again */
	struct mk_metrics *big = mk_metrics_new(0);
	mk_metrics_define_std(big);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < MK_METRICS_MAX_SERIES; i++) {
			snprintf(name, sizeof(name), "f%d", i);
			struct mk_metrics_labels l = {"a", name, NULL};
			assert_int_equal(mk_metrics_counter_add(big, MK_METRIC_BYTES_STORED, &l, 10), 0);
		}
	}
	struct mk_metrics_labels l = {"a", "one too many", NULL};
	assert_int_equal(mk_metrics_counter_add(big, MK_METRIC_BYTES_STORED, &l, 1), MK_ETOOBIG);
	mk_buf_init(&out, MK_CONTROL_REPLY_MAX);
	assert_int_equal(mk_metrics_render(big, &out), 0);
	assert_non_null(strstr((const char *)out.data, "folder=\"f4095\"} 20\n"));
	mk_buf_cleanup(&out);
	mk_metrics_free(&big);
	mk_metrics_free(&m);
}

/* ============================================================= backoff */

static uint64_t rand_const(void *ud)
{
	return *(const uint64_t *)ud;
}

static void test_backoff_sequences(void **state)
{
	(void)state;
	struct mk_backoff b;
	uint64_t r = UINT64_MAX;
	static const uint64_t exp[] = {1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000, 300000};

	mk_backoff_init(&b, MK_BACKOFF_BASE_MS, MK_BACKOFF_CAP_MS, MK_BACKOFF_JITTER_NONE, NULL, NULL);
	for (size_t i = 0; i < sizeof(exp) / sizeof(exp[0]); i++)
		assert_int_equal(mk_backoff_next_ms(&b), exp[i]);
	for (int i = 0; i < 200; i++) /* no overflow, ever */
		assert_int_equal(mk_backoff_next_ms(&b), 300000);
	mk_backoff_reset(&b);
	assert_int_equal(mk_backoff_next_ms(&b), 1000);

	/* full jitter: the top of the range with all-ones, 0 with zeros */
	mk_backoff_init(&b, MK_BACKOFF_BASE_MS, MK_BACKOFF_CAP_MS, MK_BACKOFF_JITTER_FULL, rand_const, &r);
	for (size_t i = 0; i < sizeof(exp) / sizeof(exp[0]); i++)
		assert_int_equal(mk_backoff_next_ms(&b), exp[i]);
	r = 0;
	mk_backoff_reset(&b);
	assert_int_equal(mk_backoff_next_ms(&b), 0);
	r = UINT64_MAX / 2 + 1; /* the middle */
	assert_int_equal(mk_backoff_next_ms(&b), 1000);

	/* equal jitter: [d/2, d] */
	r = 0;
	mk_backoff_init(&b, MK_BACKOFF_BASE_MS, MK_BACKOFF_CAP_MS, MK_BACKOFF_JITTER_EQUAL, rand_const, &r);
	assert_int_equal(mk_backoff_next_ms(&b), 500);
	assert_int_equal(mk_backoff_next_ms(&b), 1000);
	r = UINT64_MAX;
	assert_int_equal(mk_backoff_next_ms(&b), 4000);

	/* decorrelated: [base, 3 * previous], capped */
	r = UINT64_MAX;
	mk_backoff_init(&b, MK_BACKOFF_BASE_MS, MK_BACKOFF_CAP_MS, MK_BACKOFF_JITTER_DECORRELATED, rand_const, &r);
	static const uint64_t dec[] = {3000, 9000, 27000, 81000, 243000, 300000, 300000};
	for (size_t i = 0; i < sizeof(dec) / sizeof(dec[0]); i++)
		assert_int_equal(mk_backoff_next_ms(&b), dec[i]);
	r = 0;
	assert_int_equal(mk_backoff_next_ms(&b), 1000);

	/* the default random source stays within bounds */
	mk_backoff_init(&b, 1000, 300000, MK_BACKOFF_JITTER_EQUAL, NULL, NULL);
	for (int i = 0; i < 50; i++) {
		uint64_t d = mk_backoff_next_ms(&b);
		assert_true(d >= 500 && d <= 300000);
	}
	/* nonsense parameters are raised */
	mk_backoff_init(&b, 0, 0, MK_BACKOFF_JITTER_NONE, NULL, NULL);
	assert_int_equal(mk_backoff_next_ms(&b), 1);
	assert_int_equal(mk_backoff_next_ms(&b), 1);
}

static void test_backoff_hint(void **state)
{
	(void)state;
	struct mk_backoff b;
	mk_backoff_init(&b, MK_BACKOFF_BASE_MS, MK_BACKOFF_CAP_MS, MK_BACKOFF_JITTER_NONE, NULL, NULL);
	uint64_t ms = 0;
	assert_int_equal(mk_backoff_parse_outlook_hint("Request is throttled. Suggested Backoff Time: 299999 milliseconds",
						       &ms),
			 0);
	assert_int_equal(ms, 299999);
	mk_backoff_server_hint_ms(&b, ms);
	mk_backoff_server_hint_ms(&b, 1000); /* the larger wins */
	assert_int_equal(mk_backoff_next_ms(&b), 299999);
	assert_int_equal(mk_backoff_next_ms(&b), 2000); /* once only; sequence went on */
	mk_backoff_server_hint_ms(&b, 500);             /* smaller than our own delay */
	assert_int_equal(mk_backoff_next_ms(&b), 4000);
	mk_backoff_server_hint_ms(&b, 1000ull * 60 * 60 * 24 * 7); /* clamped */
	assert_int_equal(mk_backoff_next_ms(&b), MK_BACKOFF_HINT_MAX_MS);
	mk_backoff_server_hint_ms(&b, 90000);
	mk_backoff_reset(&b); /* a reset drops it */
	assert_int_equal(mk_backoff_next_ms(&b), 1000);
	mk_backoff_server_hint_ms(&b, 0);
	assert_int_equal(mk_backoff_next_ms(&b), 2000);

	static const struct {
		const char *text;
		int ret;
		uint64_t ms;
	} cases[] = {
		{"A12 NO Request is throttled. Suggested Backoff Time: 299609 milliseconds", 0, 299609},
		{"BAD Request is throttled. Suggested Backoff Time: 89117 milliseconds", 0, 89117},
		{"request is throttled. suggested backoff time:89117 MILLISECONDS.", 0, 89117},
		{"Suggested Backoff Time: 12 ms", 0, 12},
		{"Suggested Backoff Time: 5000", 0, 5000},
		{"Suggested Backoff Time: 3 seconds", 0, 3000},
		{"Suggested Backoff Time: 300 s", 0, 300000},
		{"Suggested Backoff Time: soon", MK_EINVAL, 0},
		{"Suggested Backoff Time: 99999999999999999999999 milliseconds", MK_EINVAL, 0},
		{"Suggested Backoff Time: 18446744073709551615 seconds", MK_EINVAL, 0},
		{"Server Unavailable. 15", MK_ENOTFOUND, 0},
		{"", MK_ENOTFOUND, 0},
		{"Suggested Backoff", MK_ENOTFOUND, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ms = 12345;
		int ret = mk_backoff_parse_outlook_hint(cases[i].text, &ms);
		if (ret != cases[i].ret || (ret == 0 && ms != cases[i].ms))
			fail_msg("case %zu '%s': ret %d ms %llu", i, cases[i].text, ret, (unsigned long long)ms);
	}
}

int main(void)
{
	/* a client whose peer went away must not kill the test */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_notify_path),
		cmocka_unit_test(test_notify_abstract),
		cmocka_unit_test(test_notify_watchdog),
		cmocka_unit_test(test_lock),
		cmocka_unit_test(test_control_parallel),
		cmocka_unit_test(test_control_misbehaving_clients),
		cmocka_unit_test(test_control_close_with_clients),
		cmocka_unit_test(test_control_startup_and_client_errors),
		cmocka_unit_test(test_control_default_path),
		cmocka_unit_test(test_metrics_text),
		cmocka_unit_test(test_metrics_bounds),
		cmocka_unit_test(test_backoff_sequences),
		cmocka_unit_test(test_backoff_hint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
