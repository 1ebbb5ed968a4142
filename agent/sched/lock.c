/* SPDX-License-Identifier: MIT */
/*
 * lock.c - the single-instance lock of mk_lock.h.
 *
 * F_OFD_SETLK: like flock() it belongs to the open file description and is
 * released by the kernel when the descriptor goes, and F_OFD_GETLK lets
 * mk_lock_probe() ask without taking the lock. Classic POSIX F_SETLK is
 * avoided because closing *any* descriptor of the file in the process
 * (e.g. probing it) would silently drop the lock, and because it never
 * conflicts within one process.
 */
#include "mk_lock.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct mk_lock {
	int fd;
	char *path;
};

static char *lock_path(const char *store_dir)
{
	size_t n = strlen(store_dir);
	while (n > 1 && store_dir[n - 1] == '/')
		n--;
	return mk_xasprintf("%.*s/%s", (int)n, store_dir, MK_LOCK_FILE);
}

/* The PID in the lock file, or 0 if it cannot be read. */
static pid_t lock_read_pid(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *nl = strchr(buf, '\n');
	if (nl != NULL)
		*nl = '\0';
	uint64_t v;
	if (mk_str_to_u64(buf, 1, (uint64_t)INT32_MAX, &v) < 0)
		return 0;
	return (pid_t)v;
}

static void lock_whole_file(struct flock *fl, short type)
{
	memset(fl, 0, sizeof(*fl));
	fl->l_type = type;
	fl->l_whence = SEEK_SET;
	fl->l_start = 0;
	fl->l_len = 0; /* to EOF and beyond */
	fl->l_pid = 0; /* required for OFD locks */
}

int mk_lock_acquire(const char *store_dir, struct mk_lock **l_r, char **error_r)
{
	*l_r = NULL;
	*error_r = NULL;
	char *path = lock_path(store_dir);
	int fd;
	do {
		/* O_NOFOLLOW: a symlink planted here must not make us
		 * truncate some other file */
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		int err = -errno;
		*error_r = mk_xasprintf("cannot open %s: %s", path, strerror(-err));
		mk_free(path);
		return err;
	}
	struct flock fl;
	lock_whole_file(&fl, F_WRLCK);
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		int err = -errno;
		if (err == -EAGAIN || err == -EACCES) {
			pid_t pid = lock_read_pid(fd);
			if (pid > 0)
				*error_r = mk_xasprintf("another mailkeep agent (pid %ld) is running on %s",
							(long)pid, store_dir);
			else
				*error_r = mk_xasprintf("another mailkeep agent is running on %s", store_dir);
			err = -EBUSY;
		} else {
			*error_r = mk_xasprintf("cannot lock %s: %s", path, strerror(-err));
		}
		close(fd);
		mk_free(path);
		return err;
	}
	char pidtxt[32];
	int n = snprintf(pidtxt, sizeof(pidtxt), "%ld\n", (long)getpid());
	MK_ASSERT(n > 0 && (size_t)n < sizeof(pidtxt));
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pidtxt, (size_t)n, 0) != (ssize_t)n) {
		int err = errno != 0 ? -errno : MK_EIO;
		*error_r = mk_xasprintf("cannot write %s: %s", path, mk_strerror(err));
		close(fd); /* drops the lock */
		mk_free(path);
		return err;
	}
	struct mk_lock *l = mk_xcalloc(1, sizeof(*l));
	l->fd = fd;
	l->path = path;
	*l_r = l;
	return 0;
}

void mk_lock_release(struct mk_lock **lp)
{
	struct mk_lock *l = *lp;
	if (l == NULL)
		return;
	/* empty the PID first so a reader never blames a dead process; the
	 * close is what releases the lock */
	if (ftruncate(l->fd, 0) < 0) {
		/* harmless: the PID is only used in a message */
	}
	close(l->fd);
	mk_free(l->path);
	mk_free(l);
	*lp = NULL;
}

int mk_lock_probe(const char *store_dir, pid_t *pid_r)
{
	*pid_r = 0;
	char *path = lock_path(store_dir);
	int fd;
	do {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	} while (fd < 0 && errno == EINTR);
	mk_free(path);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct flock fl;
	lock_whole_file(&fl, F_WRLCK);
	int ret;
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
		ret = -errno;
	} else if (fl.l_type == F_UNLCK) {
		ret = 0;
	} else {
		*pid_r = lock_read_pid(fd);
		ret = 1;
	}
	close(fd);
	return ret;
}
