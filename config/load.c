/* SPDX-License-Identifier: MIT */
/*
 * load.c - the only file of config/ that touches the file system: finds the
 * default path, reads the file (bounded by MK_LIMIT_CONFIG_FILE) and parses
 * it, and refuses a file that holds an inline password unless only its
 * owner, the current user, can read it. The checks use fstat() on the
 * descriptor that was read, so the file cannot be swapped in between.
 */
#include "config_int.h"

#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An unset, empty or relative XDG variable means "use the default" (XDG
 * Base Directory specification). */
static const char *abs_env(const char *name)
{
	const char *v = getenv(name);
	return v != NULL && v[0] == '/' ? v : NULL;
}

char *mk_config_default_path(void)
{
	const char *v = getenv("MAILKEEP_CONFIG");
	if (v != NULL && v[0] != '\0')
		return mk_xstrdup(v);
	if ((v = abs_env("XDG_CONFIG_HOME")) != NULL)
		return mk_xasprintf("%s/mailkeep/config", v);
	v = getenv("HOME");
	if (v == NULL || v[0] == '\0') {
		/* e.g. under a bare systemd unit: fall back to the passwd
		 * entry. */
		const struct passwd *pw = getpwuid(geteuid());
		v = pw != NULL && pw->pw_dir != NULL ? pw->pw_dir : "";
	}
	return mk_xasprintf("%s/.config/mailkeep/config", v);
}

static int errno_code(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return MK_ENOTFOUND;
	case EACCES:
	case EPERM:
		return MK_EPERM;
	default:
		return MK_ECONFIG;
	}
}

/* Reads the whole file into a new buffer of at most MK_LIMIT_CONFIG_FILE
 * bytes. */
static int read_all(int fd, const char *path, char **buf_r, size_t *len_r, char **error_r)
{
	size_t cap = 4096, len = 0;
	char *buf = mk_xmalloc(cap);
	for (;;) {
		if (len == cap) {
			if (cap > MK_LIMIT_CONFIG_FILE) {
				explicit_bzero(buf, len);
				mk_free(buf);
				*error_r = mk_xasprintf("%s: file is larger than %d bytes", path, MK_LIMIT_CONFIG_FILE);
				return MK_ECONFIG;
			}
			/* Grow by hand so the old copy (it may hold a password)
			 * is wiped, not just released by realloc. */
			char *nbuf = mk_xmalloc(cap * 2);
			memcpy(nbuf, buf, len);
			explicit_bzero(buf, len);
			mk_free(buf);
			buf = nbuf;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			explicit_bzero(buf, len);
			mk_free(buf);
			*error_r = mk_xasprintf("%s: %s", path, strerror(e));
			return errno_code(e);
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > MK_LIMIT_CONFIG_FILE) {
		explicit_bzero(buf, len);
		mk_free(buf);
		*error_r = mk_xasprintf("%s: file is larger than %d bytes", path, MK_LIMIT_CONFIG_FILE);
		return MK_ECONFIG;
	}
	*buf_r = buf;
	*len_r = len;
	return 0;
}

static bool has_password(const struct mk_config *cfg)
{
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		if (cfg->accounts[i].password != NULL)
			return true;
	}
	return false;
}

/* A password in a file others can read (or replace) is a leak waiting to
 * happen; refuse and say how to fix it. */
static int check_private(const struct stat *st, const char *path, char **error_r)
{
	if (!S_ISREG(st->st_mode)) {
		*error_r = mk_xasprintf("%s: file holds a password but is not a regular file; "
					"keep passwords in a file only you can read, or use pass_cmd",
					path);
		return MK_EPERM;
	}
	uid_t me = geteuid();
	if (st->st_uid != me) {
		*error_r = mk_xasprintf("%s: file holds a password but is owned by uid %lu, not you (uid %lu); "
					"run: chown %lu %s && chmod 600 %s",
					path, (unsigned long)st->st_uid, (unsigned long)me, (unsigned long)me, path, path);
		return MK_EPERM;
	}
	unsigned mode = (unsigned)st->st_mode & 07777;
	if ((mode & 077) != 0) {
		*error_r = mk_xasprintf("%s: file holds a password but is %s by group/others (mode %04o); "
					"run: chmod 600 %s",
					path, (mode & 044) != 0 ? "readable" : "accessible", mode, path);
		return MK_EPERM;
	}
	return 0;
}

int mk_config_load(const char *path, struct mk_config **cfg_r, char **error_r)
{
	*cfg_r = NULL;
	*error_r = NULL;
	char *def = NULL;
	if (path == NULL)
		path = def = mk_config_default_path();

	int ret;
	int fd;
	do {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		int e = errno;
		*error_r = mk_xasprintf("%s: %s", path, strerror(e));
		ret = errno_code(e);
		goto out;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		*error_r = mk_xasprintf("%s: %s", path, strerror(e));
		ret = errno_code(e);
		close(fd);
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		*error_r = mk_xasprintf("%s: %s", path, strerror(EISDIR));
		ret = MK_ECONFIG;
		close(fd);
		goto out;
	}
	char *buf;
	size_t len;
	ret = read_all(fd, path, &buf, &len, error_r);
	close(fd);
	if (ret < 0)
		goto out;

	struct mk_config *cfg;
	ret = mk_config_parse(buf, len, path, NULL, &cfg, error_r);
	explicit_bzero(buf, len);
	mk_free(buf);
	if (ret < 0)
		goto out;
	if (has_password(cfg) && (ret = check_private(&st, path, error_r)) < 0) {
		mk_config_free(&cfg);
		goto out;
	}
	*cfg_r = cfg;
	ret = 0;
out:
	mk_free(def);
	return ret;
}
