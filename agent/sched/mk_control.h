/* SPDX-License-Identifier: MIT */
/*
 * mk_control.h - the agent's control socket: a Unix stream socket on the
 * loop, and the blocking client the CLI uses to talk to it.
 *
 * Protocol: a client connects, sends one request line ("ping", "status",
 * "status json", "metrics", "sync NAME...") ending in '\n' (or ends its
 * side of the connection after it), the server hands the line to the
 * owner's handler, writes the reply and closes the connection. A reply
 * that reports a failure is a single line starting with "error: ".
 *
 * Requests are bounded (MK_CONTROL_REQUEST_MAX), a client that sends no
 * line, or does not read its reply, within the timeout is dropped, and at
 * most MK_CONTROL_MAX_CLIENTS are served at once (more get "error: busy").
 * The socket is mode 0600: only our user may connect (Linux checks write
 * permission on the socket file at connect()).
 *
 * Server calls are made on the loop thread; mk_control_request() blocks and
 * must not be called on a running loop's thread.
 */
#ifndef MK_CONTROL_H
#define MK_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mk_buf.h"

#define MK_CONTROL_SOCKET_NAME "control.sock"
/* Longest request line, newline excluded. */
#define MK_CONTROL_REQUEST_MAX 4096
/* Largest reply the server sends and the client accepts (metrics of 4096
 * series fit many times over). */
#define MK_CONTROL_REPLY_MAX (8u * 1024u * 1024u)
/* Server side: time allowed to send the line, and again to read the reply. */
#define MK_CONTROL_CLIENT_TIMEOUT_MS 5000
/* Client side: time allowed for each of connect, send and every recv. */
#define MK_CONTROL_REQUEST_TIMEOUT_MS 10000
#define MK_CONTROL_MAX_CLIENTS 256

/* Answers one request (a NUL-terminated line without its newline, valid
 * only during the call) by appending to `reply` (max MK_CONTROL_REPLY_MAX).
 * Return 0 to send `reply` as is. Return a negative error to send
 * "error: <reply>\n" instead (line breaks become spaces), or
 * "error: <mk_strerror(ret)>\n" when reply is empty or longer than 1 KiB
 * (a half-written answer). Runs on the loop thread; it may call mk_control_close(). */
typedef int mk_control_handler_fn(void *ud, const char *request, struct mk_buf *reply);
/* Called once the server is gone (all handles closed, memory freed). */
typedef void mk_control_closed_fn(void *ud);

struct mk_control;

/* $XDG_RUNTIME_DIR/mailkeep/control.sock when XDG_RUNTIME_DIR is set to
 * an absolute path, else STORE/control.sock. A new string (mk_free). */
char *mk_control_default_path(const char *store_dir);

/* Starts listening on `path`. The parent directory is created with mode
 * 0700 if missing (one level; an existing directory is left as it is). A
 * socket file already there is probed: if an agent answers, start fails;
 * if nobody does (a dead agent's leftover), it is replaced. Anything else
 * there (a regular file, a symlink) is left alone and start fails.
 * `handler` and `ud` are kept until the close callback.
 * On failure *error_r is a new string for the user (mk_free), e.g.
 * "another mailkeep agent is already running (it answers on PATH)"; no
 * callback runs, but the loop may have to run once more to finish closing
 * an internal handle.
 * Returns: 0; -EADDRINUSE (an agent answers); MK_ETOOBIG (path longer than
 * a sockaddr_un allows); -EEXIST (not a socket); other -errno / UV_E*. */
int mk_control_start(uv_loop_t *loop, const char *path, mk_control_handler_fn *handler, void *ud,
		     struct mk_control **ctl_r, char **error_r);

/* Changes the per-client timeout (default MK_CONTROL_CLIENT_TIMEOUT_MS) for
 * clients accepted from now on. */
void mk_control_set_timeout(struct mk_control *ctl, uint64_t ms);
/* Clients currently connected (accepted and not yet fully closed). */
size_t mk_control_client_count(const struct mk_control *ctl);
/* The socket path (valid until the close callback). */
const char *mk_control_path(const struct mk_control *ctl);

/* Stops listening, removes the socket file (if it is still ours), drops
 * every client (a reply being written is cut off) and frees the server in
 * the last close callback, after which `closed_cb` (may be NULL) runs with
 * the handler's `ud`. The handler is not called again. Call once. */
void mk_control_close(struct mk_control *ctl, mk_control_closed_fn *closed_cb);

/* Blocking client: connects to `path`, sends `request` and a newline, and
 * appends the reply until the server closes. Each step times out after
 * MK_CONTROL_REQUEST_TIMEOUT_MS. On failure *error_r is a new string
 * (mk_free), e.g. "no agent is running (/run/user/1000/mailkeep/
 * control.sock: connection refused)"; for an "error: " reply it is the
 * agent's message, and `reply` holds the whole reply.
 * Returns: 0; -ENOENT / -ECONNREFUSED (no agent); MK_ESERVER (the agent
 * answered "error: ..."); MK_ETIMEDOUT; MK_ETOOBIG (reply beyond reply's
 * max); MK_EINVAL (empty request, or one containing CR or LF);
 * other -errno. */
int mk_control_request(const char *path, const char *request, struct mk_buf *reply, char **error_r);
/* Same with a timeout per step in ms. Returns: as mk_control_request(). */
int mk_control_request_timeout(const char *path, const char *request, uint64_t timeout_ms, struct mk_buf *reply,
			       char **error_r);

#endif
