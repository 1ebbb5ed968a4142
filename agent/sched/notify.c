/* SPDX-License-Identifier: MIT */
/*
 * notify.c - the sd_notify client of mk_notify.h.
 *
 * One SOCK_DGRAM|SOCK_CLOEXEC|SOCK_NONBLOCK socket is opened at init and
 * every message goes out with sendto() to the address parsed from
 * NOTIFY_SOCKET. The socket is deliberately not connect()ed: a connected
 * datagram socket stays bound to the old peer when the manager re-executes
 * and re-creates its socket, while sendto() always reaches the current one.
 * This file must never block and never log secrets (it sends none).
 */
#include "mk_notify.h"
#include "mk_err.h"
#include "mk_str.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct {
	int fd; /* -1: disabled */
	struct sockaddr_un addr;
	socklen_t addrlen;
	bool initialised;
} notify_state = {.fd = -1};

void mk_notify_cleanup(void)
{
	if (notify_state.fd >= 0)
		close(notify_state.fd);
	notify_state.fd = -1;
	notify_state.addrlen = 0;
	memset(&notify_state.addr, 0, sizeof(notify_state.addr));
}

bool mk_notify_enabled(void)
{
	return notify_state.fd >= 0;
}

/* Fills addr/addrlen from NOTIFY_SOCKET's value. Returns: 0, MK_EINVAL. */
static int notify_parse_addr(const char *v, struct sockaddr_un *addr, socklen_t *addrlen_r)
{
	size_t n = strlen(v);
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	if (v[0] == '/') {
		/* a path needs its terminating NUL inside sun_path */
		if (n >= sizeof(addr->sun_path))
			return MK_EINVAL;
		memcpy(addr->sun_path, v, n + 1);
		*addrlen_r = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
		return 0;
	}
	if (v[0] == '@') {
		/* abstract: a leading NUL, then the name; the length is exact
		 * (no trailing NUL: it would become part of the name) */
		if (n < 2 || n > sizeof(addr->sun_path))
			return MK_EINVAL;
		addr->sun_path[0] = '\0';
		memcpy(addr->sun_path + 1, v + 1, n - 1);
		*addrlen_r = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
		return 0;
	}
	return MK_EINVAL; /* vsock: and relative paths are not supported */
}

int mk_notify_init(void)
{
	mk_notify_cleanup();
	const char *v = getenv("NOTIFY_SOCKET");
	if (v == NULL || v[0] == '\0')
		return 0;
	struct sockaddr_un addr;
	socklen_t addrlen;
	int ret = notify_parse_addr(v, &addr, &addrlen);
	if (ret < 0)
		return ret;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	notify_state.fd = fd;
	notify_state.addr = addr;
	notify_state.addrlen = addrlen;
	return 0;
}

static int notify_sendv(const char *fmt, va_list ap)
{
	char msg[MK_NOTIFY_MSG_MAX + 1];
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return MK_EINVAL;
	if ((size_t)n > MK_NOTIFY_MSG_MAX)
		return MK_ETOOBIG;
	ssize_t w;
	do {
		w = sendto(notify_state.fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT,
			   (const struct sockaddr *)&notify_state.addr, notify_state.addrlen);
	} while (w < 0 && errno == EINTR);
	if (w < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return 0;
}

int mk_notify_send(const char *fmt, ...)
{
	if (notify_state.fd < 0)
		return 0;
	va_list ap;
	va_start(ap, fmt);
	int ret = notify_sendv(fmt, ap);
	va_end(ap);
	return ret;
}

uint64_t mk_notify_monotonic_usec(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		mk_panic("clock_gettime(CLOCK_MONOTONIC): %s", strerror(errno));
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int mk_notify_reloading(void)
{
	return mk_notify_send("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)mk_notify_monotonic_usec());
}

uint64_t mk_notify_watchdog_usec(void)
{
	const char *v = getenv("WATCHDOG_USEC");
	uint64_t usec;
	if (v == NULL || mk_str_to_u64(v, 1, UINT64_MAX, &usec) < 0)
		return 0;
	const char *p = getenv("WATCHDOG_PID");
	if (p != NULL && p[0] != '\0') {
		uint64_t pid;
		/* the variables were meant for another process (e.g. inherited
		 * through a wrapper): the watchdog is not ours */
		if (mk_str_to_u64(p, 1, UINT64_MAX, &pid) < 0 || pid != (uint64_t)getpid())
			return 0;
	}
	return usec;
}
