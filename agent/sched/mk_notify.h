/* SPDX-License-Identifier: MIT */
/*
 * mk_notify.h - a small sd_notify(3) client written by hand (no libsystemd).
 *
 * The service manager's socket comes from NOTIFY_SOCKET: an absolute path or
 * an abstract name starting with '@'. Each message is one datagram sent with
 * a non-blocking, close-on-exec socket, so a notification never blocks the
 * loop: when the manager's queue is full the message is dropped and the
 * error returned. Without NOTIFY_SOCKET every call is a successful no-op.
 *
 * The state is process-wide (the service manager knows one main PID), used
 * from the loop thread only. Nothing here calls libuv.
 */
#ifndef MK_NOTIFY_H
#define MK_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Largest message mk_notify_send() formats (systemd accepts more, but our
 * STATUS= lines are short). */
#define MK_NOTIFY_MSG_MAX 4096

/* Reads NOTIFY_SOCKET and opens the datagram socket. Call once at startup;
 * calling it again first drops the previous state (mk_notify_cleanup()).
 * An unset or empty NOTIFY_SOCKET disables notifications and returns 0.
 * Returns: 0; MK_EINVAL (NOTIFY_SOCKET is neither "/path" nor "@name", or
 * too long: notifications stay disabled); -errno from socket(). */
int mk_notify_init(void);
/* Closes the socket; later sends are no-ops. Idempotent. */
void mk_notify_cleanup(void);
/* True after a successful mk_notify_init() with NOTIFY_SOCKET set. */
bool mk_notify_enabled(void);

/* Formats one message ("READY=1", "STATUS=syncing 3 accounts",
 * "WATCHDOG=1", "STOPPING=1"; several assignments are separated by '\n')
 * and sends it as one datagram. Never blocks.
 * Returns: 0 (sent, or notifications disabled); MK_ETOOBIG (longer than
 * MK_NOTIFY_MSG_MAX); -EAGAIN (the manager's queue is full; dropped);
 * other -errno from sendto() (e.g. -ECONNREFUSED, -ENOENT: nobody listens). */
int mk_notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sends "RELOADING=1\nMONOTONIC_USEC=<now>" as systemd's Type=notify-reload
 * expects at the start of a reload (send "READY=1" when it is done).
 * Returns: as mk_notify_send(). */
int mk_notify_reloading(void);

/* CLOCK_MONOTONIC in microseconds (the clock systemd's MONOTONIC_USEC uses). */
uint64_t mk_notify_monotonic_usec(void);

/* The watchdog interval from WATCHDOG_USEC in microseconds, or 0 when the
 * watchdog is off: WATCHDOG_USEC unset, empty, 0 or malformed, or
 * WATCHDOG_PID set to a PID other than ours. Read from the environment on
 * each call. Send "WATCHDOG=1" about every half of this interval. */
uint64_t mk_notify_watchdog_usec(void);

#endif
