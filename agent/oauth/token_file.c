/* SPDX-License-Identifier: MIT */
/*
 * token_file.c - the per-account refresh token file (see mk_token.h).
 *
 * Microsoft rotates the refresh token on every use and keeps the old one
 * valid (OUTLOOK.md §1.6), so the rule is simple: the newest token is
 * committed durably (temporary file, fsync, rename, fsync of the directory)
 * before anything relies on it; after a crash the file holds the old token
 * or the new one, and either works. A token file is a credential: it is
 * created 0600 in a 0700 directory, and reading refuses one that another
 * user owns or that group/others may read (config/load.c's rule for
 * password files). Blocking file I/O: small, and on the loop thread by
 * design (DESIGN.md §9: commit on the loop thread first).
 */
#include "mk_token.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "mailkeep-oauth 1\n"
#define FILE_MAX (64 * 1024)

char *mk_token_file_path(const char *store, const char *account)
{
	return mk_xasprintf("%s/oauth/%s.token", store, account);
}

void mk_token_file_cleanup(struct mk_token_file *tf)
{
	MK_FREE(&tf->client_id);
	if (tf->refresh_token != NULL) {
		explicit_bzero(tf->refresh_token, strlen(tf->refresh_token));
		MK_FREE(&tf->refresh_token);
	}
}

static int errno_code(int e)
{
	if (e == ENOENT)
		return MK_ENOTFOUND;
	if (e == EACCES || e == EPERM)
		return MK_EPERM;
	return MK_EIO;
}

int mk_token_file_read(const char *store, const char *account, struct mk_token_file *tf, char **error_r)
{
	memset(tf, 0, sizeof(*tf));
	*error_r = NULL;
	char *path = mk_token_file_path(store, account);
	int fd;
	do {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT)
			*error_r = mk_xasprintf("account %s is not signed in (no %s): run `mailkeep login %s`", account,
						path, account);
		else if (e == ELOOP)
			*error_r = mk_xasprintf("%s is a symbolic link; refusing to read a token through it", path);
		else
			*error_r = mk_xasprintf("%s: %s", path, strerror(e));
		mk_free(path);
		return e == ELOOP ? MK_EPERM : errno_code(e);
	}
	struct stat st;
	int ret = 0;
	if (fstat(fd, &st) != 0) {
		*error_r = mk_xasprintf("%s: %s", path, strerror(errno));
		ret = MK_EIO;
	} else if (!S_ISREG(st.st_mode)) {
		*error_r = mk_xasprintf("%s holds a refresh token but is not a regular file", path);
		ret = MK_EPERM;
	} else if (st.st_uid != geteuid()) {
		*error_r = mk_xasprintf("%s holds a refresh token but is owned by uid %lu, not you (uid %lu); "
					"run: chown %lu %s && chmod 600 %s",
					path, (unsigned long)st.st_uid, (unsigned long)geteuid(),
					(unsigned long)geteuid(), path, path);
		ret = MK_EPERM;
	} else if ((st.st_mode & 077) != 0) {
		*error_r = mk_xasprintf("%s holds a refresh token but is %s by group/others (mode %04o); "
					"run: chmod 600 %s",
					path, (st.st_mode & 044) != 0 ? "readable" : "accessible",
					(unsigned)st.st_mode & 07777, path);
		ret = MK_EPERM;
	} else if (st.st_size > FILE_MAX) {
		*error_r = mk_xasprintf("%s is larger than %d bytes; not a mailkeep token file", path, FILE_MAX);
		ret = MK_ECORRUPT;
	}
	char *buf = NULL;
	size_t len = 0;
	if (ret == 0) {
		/* One fixed buffer: no realloc leaves a copy of the token. */
		buf = mk_xmalloc(FILE_MAX + 1);
		for (;;) {
			ssize_t n = read(fd, buf + len, FILE_MAX + 1 - len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				*error_r = mk_xasprintf("%s: %s", path, strerror(errno));
				ret = MK_EIO;
				break;
			}
			if (n == 0)
				break;
			len += (size_t)n;
			if (len > FILE_MAX) {
				*error_r = mk_xasprintf("%s is larger than %d bytes", path, FILE_MAX);
				ret = MK_ECORRUPT;
				break;
			}
		}
	}
	close(fd);
	if (ret == 0) {
		buf[len] = '\0';
		/* MAGIC, then key=value lines; unknown keys are skipped so a
		 * later version can add some. */
		bool ok = len >= strlen(MAGIC) && memcmp(buf, MAGIC, strlen(MAGIC)) == 0 && strlen(buf) == len;
		for (char *line = buf + strlen(MAGIC); ok && *line != '\0';) {
			char *nl = strchr(line, '\n');
			if (nl == NULL) {
				ok = false; /* a torn write would end here; ours never do */
				break;
			}
			*nl = '\0';
			if (mk_str_has_prefix(line, "client_id=") && tf->client_id == NULL)
				tf->client_id = mk_xstrdup(line + 10);
			else if (mk_str_has_prefix(line, "refresh_token=") && tf->refresh_token == NULL)
				tf->refresh_token = mk_xstrdup(line + 14);
			line = nl + 1;
		}
		if (!ok || tf->refresh_token == NULL || tf->refresh_token[0] == '\0') {
			*error_r = mk_xasprintf("%s is not a mailkeep token file; run `mailkeep login %s` to replace it",
						path, account);
			ret = MK_ECORRUPT;
			mk_token_file_cleanup(tf);
		}
	}
	if (buf != NULL) {
		explicit_bzero(buf, FILE_MAX + 1);
		mk_free(buf);
	}
	mk_free(path);
	return ret;
}

static int ensure_dir(const char *dir, char **error_r)
{
	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return 0;
	*error_r = mk_xasprintf("cannot create %s: %s", dir, strerror(errno));
	return MK_EIO;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return r;
}

int mk_token_file_write(const char *store, const char *account, const char *client_id, const char *refresh_token,
			char **error_r)
{
	*error_r = NULL;
	if (refresh_token == NULL || refresh_token[0] == '\0' || strpbrk(refresh_token, "\r\n") != NULL ||
	    (client_id != NULL && strpbrk(client_id, "\r\n") != NULL)) {
		*error_r = mk_xasprintf("account %s: refusing to store a malformed token", account);
		return MK_EINVAL;
	}
	char *dir = mk_xasprintf("%s/oauth", store);
	char *path = mk_token_file_path(store, account);
	char *tmp = mk_xasprintf("%s/.%s.token.XXXXXX", dir, account);
	char *content = NULL;
	int ret = ensure_dir(store, error_r);
	if (ret == 0)
		ret = ensure_dir(dir, error_r);
	if (ret == 0) {
		/* The directory may predate us with looser bits; the token
		 * file's own mode is what protects it, this is defence in
		 * depth. */
		(void)chmod(dir, 0700);
		int fd = mkstemp(tmp); /* 0600, O_EXCL */
		if (fd < 0) {
			*error_r = mk_xasprintf("cannot create a file in %s: %s", dir, strerror(errno));
			ret = MK_EIO;
		} else {
			content = mk_xasprintf(MAGIC "client_id=%s\nrefresh_token=%s\n", client_id ? client_id : "",
					       refresh_token);
			int r = fchmod(fd, 0600);
			if (r == 0)
				r = write_all(fd, content, strlen(content));
			if (r == 0 && fsync(fd) != 0)
				r = -errno;
			if (close(fd) != 0 && r == 0)
				r = -errno;
			if (r == 0 && rename(tmp, path) != 0)
				r = -errno;
			if (r < 0) {
				*error_r = mk_xasprintf("cannot write %s: %s", path, strerror(-r));
				unlink(tmp);
				ret = MK_EIO;
			} else if ((r = fsync_dir(dir)) < 0) {
				/* The rename may not survive a crash; the old
				 * token still works, but say so. */
				*error_r = mk_xasprintf("cannot sync %s: %s", dir, strerror(-r));
				ret = MK_EIO;
			}
		}
	}
	if (content != NULL) {
		explicit_bzero(content, strlen(content));
		mk_free(content);
	}
	mk_free(tmp);
	mk_free(path);
	mk_free(dir);
	return ret;
}
