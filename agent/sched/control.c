/* SPDX-License-Identifier: MIT */
/*
 * control.c - the control socket of mk_control.h.
 *
 * The listening socket is made by hand (socket, bind under a tight umask,
 * chmod, listen) and only then handed to a uv_pipe_t, so every step that
 * can really fail does so before any handle exists. Each client owns two
 * embedded handles (its pipe and a timer) whose `data` points back at it;
 * it is freed when both close callbacks have run, in whatever order. The
 * server is freed when its listener and its last client are closed.
 *
 * The server never trusts the client: the request line is bounded, must be
 * printable, and the timer drops a client that neither sends a line nor
 * reads its reply. Nothing here runs the handler more than once per client.
 */
#include "mk_control.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_log.h"
#include "mk_str.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define CONTROL_BACKLOG 64
#define CONTROL_ERROR_MSG_MAX 1024

struct control_client {
	struct mk_control *ctl;
	struct control_client *prev, *next;
	uv_pipe_t pipe;
	uv_timer_t timer;
	uv_write_t wreq;
	struct mk_buf in;
	struct mk_buf out;
	int handles; /* initialised and not yet closed back */
	bool closing;
	bool answered;
};

struct mk_control {
	uv_loop_t *loop;
	uv_pipe_t listener;
	char *path;
	dev_t dev;
	ino_t ino;
	mk_control_handler_fn *handler;
	void *ud;
	mk_control_closed_fn *closed_cb;
	uint64_t timeout_ms;
	struct control_client *clients;
	size_t nclients;
	bool closing;
	bool listener_open;
};

static const struct mk_log_ctx control_log = {NULL, NULL, 0};

char *mk_control_default_path(const char *store_dir)
{
	const char *x = getenv("XDG_RUNTIME_DIR");
	if (x != NULL && x[0] == '/')
		return mk_xasprintf("%s/mailkeep/%s", x, MK_CONTROL_SOCKET_NAME);
	size_t n = strlen(store_dir);
	while (n > 1 && store_dir[n - 1] == '/')
		n--;
	return mk_xasprintf("%.*s/%s", (int)n, store_dir, MK_CONTROL_SOCKET_NAME);
}

/* Fills a sockaddr_un for a path. Returns: 0, MK_ETOOBIG. */
static int control_addr(const char *path, struct sockaddr_un *addr, socklen_t *len_r)
{
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(addr->sun_path))
		return MK_ETOOBIG;
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	memcpy(addr->sun_path, path, n + 1);
	*len_r = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

/* ---------------------------------------------------------------- server */

static void control_maybe_free(struct mk_control *ctl)
{
	if (!ctl->closing || ctl->listener_open || ctl->clients != NULL)
		return;
	mk_control_closed_fn *cb = ctl->closed_cb;
	void *ud = ctl->ud;
	mk_free(ctl->path);
	mk_free(ctl);
	if (cb != NULL)
		cb(ud);
}

static void client_on_close(uv_handle_t *h)
{
	struct control_client *c = h->data;
	MK_ASSERT(c->handles > 0);
	if (--c->handles > 0)
		return;
	struct mk_control *ctl = c->ctl;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		ctl->clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	ctl->nclients--;
	mk_buf_cleanup(&c->in);
	mk_buf_cleanup(&c->out);
	mk_free(c);
	control_maybe_free(ctl);
}

static void client_close(struct control_client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	/* pending writes complete with UV_ECANCELED before the close callback */
	uv_close((uv_handle_t *)&c->pipe, client_on_close);
	uv_close((uv_handle_t *)&c->timer, client_on_close);
}

static void client_on_timeout(uv_timer_t *t)
{
	struct control_client *c = t->data;
	mk_log(MK_LOG_DEBUG, MK_LOG_CAT_SCHED, &control_log, "control: dropping a client that %s",
	       c->answered ? "does not read its reply" : "sent no request");
	client_close(c);
}

static void client_on_write(uv_write_t *req, int status)
{
	struct control_client *c = req->data;
	(void)status; /* done either way: one request per connection */
	client_close(c);
}

/* Sends c->out (possibly empty) and closes afterwards. */
static void client_send(struct control_client *c)
{
	c->answered = true;
	uv_read_stop((uv_stream_t *)&c->pipe);
	if (c->out.len == 0) {
		client_close(c);
		return;
	}
	/* the reply gets its own timeout: a client that never reads must
	 * not pin the buffer forever */
	uv_timer_start(&c->timer, client_on_timeout, c->ctl->timeout_ms, 0);
	uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
	c->wreq.data = c;
	int ret = uv_write(&c->wreq, (uv_stream_t *)&c->pipe, &b, 1, client_on_write);
	if (ret < 0)
		client_close(c);
}

static void client_send_error(struct control_client *c, const char *msg)
{
	mk_buf_reset(&c->out);
	int ret = mk_buf_printf(&c->out, "error: %s\n", msg);
	MK_ASSERT(ret == 0); /* our messages are short */
	client_send(c);
}

static void client_handle(struct control_client *c, char *line)
{
	struct mk_control *ctl = c->ctl;
	size_t n = strlen(line);
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	if (n == 0) {
		client_send_error(c, "empty request");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)line[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			client_send_error(c, "invalid request (control characters)");
			return;
		}
	}
	if (ctl->closing) {
		client_close(c);
		return;
	}
	mk_buf_reset(&c->out);
	int ret = ctl->handler(ctl->ud, line, &c->out);
	if (c->closing) /* the handler closed the server */
		return;
	if (ret < 0) {
		size_t len = c->out.len;
		while (len > 0 && (c->out.data[len - 1] == '\n' || c->out.data[len - 1] == '\r'))
			len--;
		/* a long reply is a half-written answer (e.g. MK_ETOOBIG from
		 * the handler), not a message */
		char *msg = len > 0 && len <= CONTROL_ERROR_MSG_MAX ? mk_xstrndup((const char *)c->out.data, len)
								      : mk_xstrdup(mk_strerror(ret));
		/* one line: the client shows it as the error */
		for (char *p = msg; *p != '\0'; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		mk_buf_reset(&c->out);
		if (mk_buf_printf(&c->out, "error: %s\n", msg) < 0)
			(void)mk_buf_printf(&c->out, "error: %s\n", mk_strerror(ret));
		mk_free(msg);
	}
	client_send(c);
}

static void client_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct control_client *c = h->data;
	(void)suggested;
	size_t room = c->in.max - c->in.len;
	uint8_t *p;
	if (room == 0 || mk_buf_reserve(&c->in, room, &p) < 0) {
		*buf = uv_buf_init(NULL, 0); /* read callback gets UV_ENOBUFS */
		return;
	}
	*buf = uv_buf_init((char *)p, (unsigned)room);
}

static void client_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct control_client *c = s->data;
	(void)buf;
	if (c->closing || c->answered)
		return;
	if (nread > 0) {
		size_t old = c->in.len;
		mk_buf_commit(&c->in, (size_t)nread);
		uint8_t *nl = memchr(c->in.data + old, '\n', (size_t)nread);
		if (memchr(c->in.data + old, '\0', nl != NULL ? (size_t)(nl - (c->in.data + old)) : (size_t)nread)) {
			client_send_error(c, "invalid request (NUL byte)");
			return;
		}
		if (nl != NULL) {
			*nl = '\0';
			client_handle(c, (char *)c->in.data);
		} else if (c->in.len >= c->in.max) {
			char msg[64];
			snprintf(msg, sizeof(msg), "request too long (max %d bytes)", MK_CONTROL_REQUEST_MAX);
			client_send_error(c, msg);
		}
		return;
	}
	if (nread == UV_EOF && c->in.len > 0) {
		/* the client ended its side after the line without a newline */
		client_handle(c, (char *)c->in.data);
		return;
	}
	if (nread < 0)
		client_close(c);
}

static void control_on_connection(uv_stream_t *server, int status)
{
	struct mk_control *ctl = server->data;
	if (status < 0) {
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SCHED, &control_log, "control: accept failed: %s",
		       mk_strerror(status));
		return;
	}
	if (ctl->closing)
		return;
	struct control_client *c = mk_xcalloc(1, sizeof(*c));
	c->ctl = ctl;
	mk_buf_init(&c->in, MK_CONTROL_REQUEST_MAX);
	mk_buf_init(&c->out, MK_CONTROL_REPLY_MAX);
	MK_ASSERT(uv_pipe_init(ctl->loop, &c->pipe, 0) == 0);
	c->pipe.data = c;
	c->handles++;
	MK_ASSERT(uv_timer_init(ctl->loop, &c->timer) == 0);
	c->timer.data = c;
	c->handles++;
	c->next = ctl->clients;
	if (ctl->clients != NULL)
		ctl->clients->prev = c;
	ctl->clients = c;
	ctl->nclients++;

	int ret = uv_accept(server, (uv_stream_t *)&c->pipe);
	if (ret < 0) {
		mk_log(MK_LOG_WARN, MK_LOG_CAT_SCHED, &control_log, "control: accept failed: %s", mk_strerror(ret));
		client_close(c);
		return;
	}
	if (ctl->nclients > MK_CONTROL_MAX_CLIENTS) {
		uv_timer_start(&c->timer, client_on_timeout, ctl->timeout_ms, 0);
		client_send_error(c, "busy (too many control clients)");
		return;
	}
	uv_timer_start(&c->timer, client_on_timeout, ctl->timeout_ms, 0);
	ret = uv_read_start((uv_stream_t *)&c->pipe, client_on_alloc, client_on_read);
	if (ret < 0)
		client_close(c);
}

/* Is somebody listening on `path`? Returns: 1 yes, 0 no (refused), -errno. */
static int control_probe(const char *path)
{
	struct sockaddr_un addr;
	socklen_t len;
	int ret = control_addr(path, &addr, &len);
	if (ret < 0)
		return ret;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int r;
	do {
		r = connect(fd, (const struct sockaddr *)&addr, len);
	} while (r < 0 && errno == EINTR);
	int err = r < 0 ? errno : 0;
	close(fd);
	if (r == 0 || err == EAGAIN) /* EAGAIN: a full backlog, still alive */
		return 1;
	if (err == ECONNREFUSED)
		return 0;
	return -err;
}

static void control_on_listener_close(uv_handle_t *h)
{
	struct mk_control *ctl = h->data;
	ctl->listener_open = false;
	control_maybe_free(ctl);
}

/* Removes the socket file if it is still the one we bound. */
static void control_unlink(struct mk_control *ctl)
{
	struct stat st;
	if (lstat(ctl->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
		unlink(ctl->path);
}

/* Makes the parent directory of path (mode 0700) when it is missing.
 * Returns: 0, -errno. */
static int control_mkdir_parent(const char *path, char **error_r)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL || slash == path)
		return 0;
	char *dir = mk_xstrndup(path, (size_t)(slash - path));
	int ret = 0;
	if (mkdir(dir, 0700) == 0) {
		/* mkdir honours the umask: make sure it is exactly 0700 */
		if (chmod(dir, 0700) < 0)
			ret = -errno;
	} else if (errno != EEXIST) {
		ret = -errno;
	} else {
		struct stat st;
		if (stat(dir, &st) < 0)
			ret = -errno;
		else if (!S_ISDIR(st.st_mode))
			ret = -ENOTDIR;
	}
	if (ret < 0)
		*error_r = mk_xasprintf("cannot create %s: %s", dir, strerror(-ret));
	mk_free(dir);
	return ret;
}

/* socket + bind (0600) + listen. Returns the fd or a negative error. */
static int control_bind(const char *path, char **error_r)
{
	struct sockaddr_un addr;
	socklen_t len;
	int ret = control_addr(path, &addr, &len);
	if (ret < 0) {
		*error_r = mk_xasprintf("control socket path too long (%zu bytes, at most %zu): %s", strlen(path),
					sizeof(addr.sun_path) - 1, path);
		return ret;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		*error_r = mk_xasprintf("cannot create a socket: %s", strerror(-ret));
		return ret;
	}
	/* the socket file is created by bind() with 0777 & ~umask: narrow the
	 * umask around it so it is never connectable by others, not even
	 * between bind() and chmod() */
	mode_t old = umask(0177);
	int r = bind(fd, (const struct sockaddr *)&addr, len);
	ret = r < 0 ? -errno : 0;
	umask(old);
	if (ret < 0) {
		if (ret == -EADDRINUSE)
			*error_r = mk_xasprintf("another mailkeep agent is already running (it owns %s)", path);
		else
			*error_r = mk_xasprintf("cannot bind %s: %s", path, strerror(-ret));
		close(fd);
		return ret;
	}
	if (chmod(path, 0600) < 0 || listen(fd, CONTROL_BACKLOG) < 0) {
		ret = -errno;
		*error_r = mk_xasprintf("cannot listen on %s: %s", path, strerror(-ret));
		unlink(path);
		close(fd);
		return ret;
	}
	return fd;
}

int mk_control_start(uv_loop_t *loop, const char *path, mk_control_handler_fn *handler, void *ud,
		     struct mk_control **ctl_r, char **error_r)
{
	*ctl_r = NULL;
	*error_r = NULL;
	MK_ASSERT(handler != NULL);
	int ret = control_mkdir_parent(path, error_r);
	if (ret < 0)
		return ret;

	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			*error_r = mk_xasprintf("%s exists and is not a socket; not touching it", path);
			return -EEXIST;
		}
		ret = control_probe(path);
		if (ret == 1) {
			*error_r = mk_xasprintf("another mailkeep agent is already running (it answers on %s)", path);
			return -EADDRINUSE;
		}
		if (ret < 0 && ret != -ENOENT) {
			*error_r = mk_xasprintf("cannot probe %s: %s", path, mk_strerror(ret));
			return ret;
		}
		/* a dead agent's socket: nobody listens, replace it */
		if (unlink(path) < 0 && errno != ENOENT) {
			ret = -errno;
			*error_r = mk_xasprintf("cannot remove stale socket %s: %s", path, strerror(-ret));
			return ret;
		}
		mk_log(MK_LOG_INFO, MK_LOG_CAT_SCHED, &control_log, "control: replaced stale socket %s", path);
	} else if (errno != ENOENT) {
		ret = -errno;
		*error_r = mk_xasprintf("cannot stat %s: %s", path, strerror(-ret));
		return ret;
	}

	int fd = control_bind(path, error_r);
	if (fd < 0)
		return fd;
	if (lstat(path, &st) < 0) {
		ret = -errno;
		*error_r = mk_xasprintf("cannot stat %s: %s", path, strerror(-ret));
		close(fd);
		return ret;
	}

	struct mk_control *ctl = mk_xcalloc(1, sizeof(*ctl));
	ctl->loop = loop;
	ctl->path = mk_xstrdup(path);
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	ctl->handler = handler;
	ctl->ud = ud;
	ctl->timeout_ms = MK_CONTROL_CLIENT_TIMEOUT_MS;
	MK_ASSERT(uv_pipe_init(loop, &ctl->listener, 0) == 0);
	ctl->listener.data = ctl;
	ctl->listener_open = true;
	ret = uv_pipe_open(&ctl->listener, fd);
	if (ret < 0)
		close(fd); /* not adopted by the handle */
	else
		ret = uv_listen((uv_stream_t *)&ctl->listener, CONTROL_BACKLOG, control_on_connection);
	if (ret < 0) {
		*error_r = mk_xasprintf("cannot listen on %s: %s", path, mk_strerror(ret));
		control_unlink(ctl);
		ctl->closing = true; /* freed by the close callback, no user callback */
		uv_close((uv_handle_t *)&ctl->listener, control_on_listener_close);
		return ret;
	}
	*ctl_r = ctl;
	return 0;
}

void mk_control_set_timeout(struct mk_control *ctl, uint64_t ms)
{
	ctl->timeout_ms = ms > 0 ? ms : 1;
}

size_t mk_control_client_count(const struct mk_control *ctl)
{
	return ctl->nclients;
}

const char *mk_control_path(const struct mk_control *ctl)
{
	return ctl->path;
}

void mk_control_close(struct mk_control *ctl, mk_control_closed_fn *closed_cb)
{
	MK_ASSERT(!ctl->closing);
	ctl->closing = true;
	ctl->closed_cb = closed_cb;
	control_unlink(ctl);
	/* client_close() unlinks nothing: the list stays walkable */
	for (struct control_client *c = ctl->clients; c != NULL; c = c->next)
		client_close(c);
	uv_close((uv_handle_t *)&ctl->listener, control_on_listener_close);
}

/* ---------------------------------------------------------------- client */

static void control_set_timeouts(int fd, uint64_t timeout_ms)
{
	struct timeval tv;
	tv.tv_sec = (time_t)(timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)((timeout_ms % 1000) * 1000);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int control_send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? MK_ETIMEDOUT : -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int mk_control_request_timeout(const char *path, const char *request, uint64_t timeout_ms, struct mk_buf *reply,
			       char **error_r)
{
	*error_r = NULL;
	if (request[0] == '\0' || strpbrk(request, "\r\n") != NULL) {
		*error_r = mk_xstrdup("invalid control request (empty, or a line break in it)");
		return MK_EINVAL;
	}
	struct sockaddr_un addr;
	socklen_t alen;
	int ret = control_addr(path, &addr, &alen);
	if (ret < 0) {
		*error_r = mk_xasprintf("control socket path too long: %s", path);
		return ret;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		*error_r = mk_xasprintf("cannot create a socket: %s", strerror(-ret));
		return ret;
	}
	control_set_timeouts(fd, timeout_ms);
	int r;
	do {
		r = connect(fd, (const struct sockaddr *)&addr, alen);
	} while (r < 0 && errno == EINTR);
	if (r < 0) {
		ret = -errno;
		if (ret == -ENOENT)
			*error_r = mk_xasprintf("no agent is running (%s: no such socket)", path);
		else if (ret == -ECONNREFUSED)
			*error_r = mk_xasprintf("no agent is running (%s: connection refused)", path);
		else if (ret == -EAGAIN)
			*error_r = mk_xasprintf("the agent is not accepting connections (%s: busy)", path);
		else
			*error_r = mk_xasprintf("cannot connect to %s: %s", path, strerror(-ret));
		close(fd);
		return ret == -EAGAIN ? MK_ETIMEDOUT : ret;
	}
	char *line = mk_xasprintf("%s\n", request);
	ret = control_send_all(fd, line, strlen(line));
	mk_free(line);
	if (ret < 0) {
		*error_r = mk_xasprintf("cannot send to the agent (%s): %s", path, mk_strerror(ret));
		close(fd);
		return ret;
	}
	size_t start = reply->len;
	for (;;) {
		size_t room = reply->max - reply->len;
		if (room == 0) {
			ret = MK_ETOOBIG;
			*error_r = mk_xasprintf("reply from the agent too large (over %zu bytes)", reply->max);
			break;
		}
		if (room > 65536)
			room = 65536;
		uint8_t *p;
		ret = mk_buf_reserve(reply, room, &p);
		MK_ASSERT(ret == 0);
		ssize_t n = recv(fd, p, room, 0);
		if (n > 0) {
			mk_buf_commit(reply, (size_t)n);
			continue;
		}
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		/* the server closes after replying; if our own bytes were still
		 * unread there (a refused oversize request), the close shows as
		 * a reset after the reply */
		if (errno == ECONNRESET && reply->len > start)
			break;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			ret = MK_ETIMEDOUT;
			*error_r = mk_xasprintf("no reply from the agent within %llu ms (%s)",
						(unsigned long long)timeout_ms, path);
		} else {
			ret = -errno;
			*error_r = mk_xasprintf("cannot read from the agent (%s): %s", path, strerror(-ret));
		}
		break;
	}
	close(fd);
	if (ret < 0)
		return ret;
	static const char err_prefix[] = "error: ";
	if (reply->len - start >= sizeof(err_prefix) - 1 &&
	    memcmp(reply->data + start, err_prefix, sizeof(err_prefix) - 1) == 0) {
		size_t n = reply->len - start - (sizeof(err_prefix) - 1);
		const char *msg = (const char *)reply->data + start + sizeof(err_prefix) - 1;
		while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
			n--;
		*error_r = mk_xstrndup(msg, n);
		return MK_ESERVER;
	}
	return 0;
}

int mk_control_request(const char *path, const char *request, struct mk_buf *reply, char **error_r)
{
	return mk_control_request_timeout(path, request, MK_CONTROL_REQUEST_TIMEOUT_MS, reply, error_r);
}
