/* SPDX-License-Identifier: MIT */
/*
 * mk_lock.h - one mailkeep agent per store.
 *
 * The lock is an exclusive open-file-description lock (fcntl F_OFD_SETLK)
 * on STORE/agent.lock, which also holds the owner's PID as text for the
 * error message of the next comer. The kernel drops the lock when the
 * descriptor is closed or the process dies, so a crash never leaves a stale
 * lock behind; the file itself stays (unlinking it would let two processes
 * lock two different inodes). Unlike classic POSIX locks an OFD lock also
 * conflicts inside one process, and it is not shared with children spawned
 * later (the descriptor is close-on-exec).
 */
#ifndef MK_LOCK_H
#define MK_LOCK_H

#include <sys/types.h>

struct mk_lock;

#define MK_LOCK_FILE "agent.lock"

/* Takes the lock on STORE/agent.lock (creating the file with mode 0600) and
 * writes our PID into it. The store directory must exist. Blocking file
 * I/O on a local file: call before the loop starts.
 * On failure *error_r is a new string for the user (free with mk_free),
 * e.g. "another mailkeep agent (pid 1234) is running on /home/u/.mailkeep".
 * Returns: 0; -EBUSY (== UV_EBUSY: someone else holds the lock);
 * MK_ETOOBIG (path too long); other -errno (open, fcntl, write). */
int mk_lock_acquire(const char *store_dir, struct mk_lock **l_r, char **error_r);

/* Releases the lock and frees *l; sets *l = NULL. NULL is fine. */
void mk_lock_release(struct mk_lock **l);

/* Asks, without taking it, whether another process holds the lock (for the
 * CLI: "is an agent running on this store?"). *pid_r is the PID written in
 * the file, or 0 if unknown.
 * Returns: 1 (held), 0 (free, or no lock file), -errno. */
int mk_lock_probe(const char *store_dir, pid_t *pid_r);

#endif
