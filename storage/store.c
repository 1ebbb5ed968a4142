/* SPDX-License-Identifier: MIT */
/*
 * store.c - the LMDB environment of the message store: open/close (0700
 * directory, 0600 files, schema check, staging cleanup), the transaction
 * helpers that hide MDB_MAP_FULL (abort, double the map, replay) and
 * MDB_MAP_RESIZED, accounts, mailboxes, message records and statistics.
 * Bodies live in blob.c, batches in batch.c, the encoding in schema.c.
 *
 * Rules kept here: every DBI is opened once, at open; no transaction
 * outlives a mk_store_* call; no MDB_val leaves storage/; the env is never
 * used after fork() (LMDB forbids it); durability is LMDB's default full
 * sync (no MDB_NOSYNC / MDB_NOMETASYNC).
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_log.h"
#include "mk_str.h"
#include "store_int.h"

#include <errno.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t test_initial_map;

/* ---- errors ---- */

int mk__store_err(int rc)
{
	if (rc == 0)
		return 0;
	if (rc > 0) /* errno */
		return rc == EIO ? MK_EIO : -rc;
	if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH)
		return MK_ECORRUPT;
	return rc;
}

/* Text of an error that may be ours, LMDB's or errno. */
static const char *store_strerror(int err)
{
	if (err >= MDB_KEYEXIST && err <= MDB_LAST_ERRCODE)
		return mdb_strerror(err);
	return mk_strerror(err);
}

/* ---- transactions ---- */

static void check_pid(const struct mk_store *st)
{
	/* An LMDB env inherited through fork() corrupts lock state. */
	if (getpid() != st->pid)
		mk_panic("mk_store used after fork() (opened by pid %ld)", (long)st->pid);
}

static int txn_begin(struct mk_store *st, unsigned flags, MDB_txn **txn_r)
{
	check_pid(st);
	for (;;) {
		int rc = mdb_txn_begin(st->env, NULL, flags, txn_r);
		if (rc == MDB_MAP_RESIZED && st->open_txns == 0) {
			/* Another process grew the map: adopt its size. */
			rc = mdb_env_set_mapsize(st->env, 0);
			st->map_hi = 0; /* the map may have moved */
			if (rc != 0)
				return mk__store_err(rc);
			continue;
		}
		if (rc != 0)
			return mk__store_err(rc);
		st->open_txns++;
		return 0;
	}
}

int mk__store_rtxn(struct mk_store *st, MDB_txn **txn_r)
{
	return txn_begin(st, MDB_RDONLY, txn_r);
}

void mk__store_txn_abort(struct mk_store *st, MDB_txn *txn)
{
	mdb_txn_abort(txn);
	st->open_txns--;
	/* Reads fault the map in, and the kernel maps the page cache around
	 * each fault ("fault-around", 64 KiB; MADV_RANDOM does not stop it):
	 * sparse reads over a large, freshly written file would otherwise
	 * leave megabytes of it counted in our RSS. */
	if (st->open_txns == 0)
		mk__store_release_map(st);
}

static int grow_map(struct mk_store *st)
{
	MDB_envinfo info;
	/* mdb_env_set_mapsize is only legal with no transaction open in this
	 * process: a caller holding one (e.g. inside mk_store_messages' callback)
	 * would be a bug. */
	MK_ASSERT(st->open_txns == 0);
	int rc = mdb_env_info(st->env, &info);
	if (rc != 0)
		return mk__store_err(rc);
	if (info.me_mapsize >= MK__STORE_MAX_MAP)
		return -ENOSPC;
	size_t next = info.me_mapsize * 2;
	rc = mdb_env_set_mapsize(st->env, next);
	st->map_hi = 0; /* the map moves when it grows */
	if (rc != 0)
		return mk__store_err(rc);
	st->growths++;
	mk_log(MK_LOG_DEBUG, MK_LOG_CAT_STORE, NULL, "store %s: map grown to %zu MiB", st->dir, next >> 20);
	return 0;
}

/* ---- crash hooks ---- */

#ifdef MK_TEST_HOOKS
static pid_t hook_pid;
static unsigned long hook_commits;

static unsigned long hook_env(const char *name)
{
	const char *s = getenv(name);
	uint64_t v = 0;
	if (s == NULL || mk_str_to_u64(s, 1, UINT32_MAX, &v) != 0)
		return 0;
	return (unsigned long)v;
}

/* Counts per process: a forked child starts from zero. */
static unsigned long hook_seq(void)
{
	if (hook_pid != getpid()) {
		hook_pid = getpid();
		hook_commits = 0;
	}
	return hook_commits + 1;
}

static void hook_before(void)
{
	unsigned long n = hook_env("MK_TEST_CRASH_BEFORE");
	if (n != 0 && hook_seq() == n)
		_exit(99);
}

static void hook_after(void)
{
	unsigned long seq = hook_seq();
	hook_commits = seq;
	unsigned long n = hook_env("MK_TEST_CRASH_AT");
	if (n != 0 && seq == n)
		_exit(99);
}
#endif

int mk__store_write(struct mk_store *st, mk__store_txn_fn fn, void *ud, bool batch_commit)
{
	for (;;) {
		MDB_txn *txn;
		int ret = txn_begin(st, 0, &txn);
		if (ret < 0)
			return ret;
		ret = fn(st, txn, ud);
		if (ret < 0) {
			mk__store_txn_abort(st, txn);
			if (ret == MDB_MAP_FULL) {
				ret = grow_map(st);
				if (ret < 0)
					return ret;
				continue;
			}
			return ret;
		}
#ifdef MK_TEST_HOOKS
		if (batch_commit)
			hook_before();
#endif
		int rc = mdb_txn_commit(txn);
		st->open_txns--; /* commit frees the txn even on failure */
		if (rc == MDB_MAP_FULL) {
			ret = grow_map(st);
			if (ret < 0)
				return ret;
			continue;
		}
		if (rc != 0)
			return mk__store_err(rc);
#ifdef MK_TEST_HOOKS
		if (batch_commit)
			hook_after();
#else
		(void)batch_commit;
#endif
		mk__store_release_map(st);
		return 0;
	}
}

/* ---- small table helpers ---- */

static int get_val(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kn, MDB_val *v)
{
	MDB_val key = {kn, (void *)k};
	int rc = mdb_get(txn, dbi, &key, v);
	if (rc == MDB_NOTFOUND)
		return MK_ENOTFOUND;
	return mk__store_err(rc);
}

static int put_val(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kn, const void *v, size_t vn)
{
	MDB_val key = {kn, (void *)k};
	MDB_val val = {vn, (void *)v};
	return mk__store_err(mdb_put(txn, dbi, &key, &val, 0));
}

static int del_key(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kn)
{
	MDB_val key = {kn, (void *)k};
	int rc = mdb_del(txn, dbi, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : mk__store_err(rc);
}

static int meta_get_u64(MDB_txn *txn, const struct mk_store *st, const char *name, uint64_t *v_r)
{
	MDB_val v;
	int ret = get_val(txn, st->meta, name, strlen(name), &v);
	if (ret < 0)
		return ret;
	return mk__store_decode_u64(v.mv_data, v.mv_size, v_r);
}

static int meta_put_u64(MDB_txn *txn, const struct mk_store *st, const char *name, uint64_t val)
{
	uint8_t b[9];
	size_t n = mk__store_encode_u64(b, val);
	return put_val(txn, st->meta, name, strlen(name), b, n);
}

int mk__store_meta_next(struct mk_store *st, MDB_txn *txn, const char *name, uint64_t *v_r)
{
	uint64_t seq = 0;
	int ret = meta_get_u64(txn, st, name, &seq);
	if (ret == MK_ENOTFOUND)
		seq = 0;
	else if (ret < 0)
		return ret;
	seq++;
	ret = meta_put_u64(txn, st, name, seq);
	if (ret == 0)
		*v_r = seq;
	return ret;
}

int mk__store_alloc_owner(struct mk_store *st, MDB_txn *txn, uint64_t *owner_r)
{
	return mk__store_meta_next(st, txn, "owner_seq", owner_r);
}

int mk__store_drop_owner(struct mk_store *st, MDB_txn *txn, uint64_t owner)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->chunks, &c);
	if (rc != 0)
		return mk__store_err(rc);
	uint8_t k[12];
	mk__store_key_chunk(k, owner, 0);
	MDB_val key = {sizeof(k), k}, val;
	rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
	while (rc == 0 && key.mv_size == 12 && mk__store_rd64(key.mv_data) == owner) {
		rc = mdb_cursor_del(c, 0);
		if (rc != 0)
			break;
		/* Re-seek rather than trust the cursor after a delete (it may be
		 * left uninitialised when a page or the table empties). */
		key.mv_size = sizeof(k);
		key.mv_data = k;
		rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
	}
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mk__store_err(rc);
	uint8_t sk[8];
	mk__store_be64(sk, owner);
	return del_key(txn, st->staging, sk, sizeof(sk));
}

int mk__store_get_blob(struct mk_store *st, MDB_txn *txn, const uint8_t sha[MK_STORE_SHA_LEN],
		       struct mk__store_blob *blob_r)
{
	MDB_val v;
	int ret = get_val(txn, st->blobs, sha, MK_STORE_SHA_LEN, &v);
	if (ret < 0)
		return ret;
	return mk__store_decode_blob(v.mv_data, v.mv_size, blob_r);
}

int mk__store_put_blob(struct mk_store *st, MDB_txn *txn, const uint8_t sha[MK_STORE_SHA_LEN],
		       const struct mk__store_blob *blob)
{
	uint8_t b[MK__STORE_BLOB_VAL_MAX];
	size_t n = mk__store_encode_blob(b, sizeof(b), blob);
	return put_val(txn, st->blobs, sha, MK_STORE_SHA_LEN, b, n);
}

/* The start time of process `pid` in clock ticks since boot (field 22 of
 * /proc/PID/stat), or 0 when unknown: with the pid it names a process
 * exactly (a pid alone may have been reused). */
static uint64_t proc_starttime(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (p == NULL)
		return 0;
	p++; /* " S ppid ...": field 3 starts after this space */
	for (int field = 3; field < 22 && p != NULL; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL)
		return 0;
	return strtoull(p + 1, NULL, 10);
}

/* Stores open in this process (marks of this process are in progress only
 * while another of them is open). */
static unsigned open_handles;

/* A staging mark: when, and which process (pid + start time) writes the
 * chunks, so that another process opening the store (a command while the
 * agent runs) frees only the chunks of writers that are gone. */
#define STAGING_VAL_LEN (9 + 4 + 8)

int mk__store_put_staging(struct mk_store *st, MDB_txn *txn, uint64_t owner)
{
	uint8_t k[8], v[STAGING_VAL_LEN];
	mk__store_be64(k, owner);
	size_t n = mk__store_encode_i64(v, (int64_t)time(NULL));
	MK_ASSERT(n == 9);
	mk__store_be32(v + 9, (uint32_t)st->pid);
	mk__store_be64(v + 13, st->starttime);
	return put_val(txn, st->staging, k, sizeof(k), v, sizeof(v));
}

/* True when the process that wrote this staging mark still runs. */
static bool staging_writer_alive(const struct mk_store *st, const MDB_val *val)
{
	if (val->mv_size != STAGING_VAL_LEN)
		return false; /* an older mark without its writer: from before an upgrade */
	const uint8_t *v = val->mv_data;
	pid_t pid = (pid_t)mk__store_rd32(v + 9);
	uint64_t start = mk__store_rd64(v + 13);
	if (pid <= 0)
		return false;
	if (pid == st->pid && start == st->starttime)
		return open_handles > 1; /* ours: alive only if another handle of ours is open */
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return false;
	uint64_t now_start = proc_starttime(pid);
	return now_start == 0 || now_start == start; /* unknown: keep, to be safe */
}

int mk__store_put_chunk(struct mk_store *st, MDB_txn *txn, uint64_t owner, uint32_t no, const uint8_t *p, size_t n)
{
	uint8_t k[12];
	mk__store_key_chunk(k, owner, no);
	return put_val(txn, st->chunks, k, sizeof(k), p, n);
}

void mk__store_hex(const uint8_t *p, size_t n, char *out, size_t outsz)
{
	static const char hx[] = "0123456789abcdef";
	size_t o = 0;
	for (size_t i = 0; i < n && o + 3 <= outsz; i++) {
		out[o++] = hx[p[i] >> 4];
		out[o++] = hx[p[i] & 15];
	}
	if (outsz > 0)
		out[o < outsz ? o : outsz - 1] = '\0';
}

void mk__store_unique(struct mk_store *st, char *out, size_t outsz)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	snprintf(out, outsz, "%lld.M%ldP%ldQ%u.%s", (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(),
		 ++st->unique_seq, st->host);
}

/* Maildir escapes '/' and ':' in the host part as \057 and \072. */
static void init_host(struct mk_store *st)
{
	char h[64];
	if (gethostname(h, sizeof(h)) != 0)
		mk_strlcpy(h, "localhost", sizeof(h));
	h[sizeof(h) - 1] = '\0';
	size_t o = 0;
	for (const char *p = h; *p != '\0' && o + 5 < sizeof(st->host); p++) {
		if (*p == '/' || *p == ':') {
			snprintf(st->host + o, sizeof(st->host) - o, "\\%03o", (unsigned)(unsigned char)*p);
			o += 4;
		} else {
			st->host[o++] = *p;
		}
	}
	st->host[o] = '\0';
}

/* ---- open / close ---- */

static int mkdir_p(const char *dir, char **error_r)
{
	char path[4096];
	if (mk_strlcpy(path, dir, sizeof(path)) >= sizeof(path) || path[0] == '\0') {
		*error_r = mk_xasprintf("store %s: path too long", dir);
		return MK_EIO;
	}
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST) {
			int e = errno;
			*error_r = mk_xasprintf("store %s: cannot create %s: %s", dir, path, strerror(e));
			return e == EACCES || e == EPERM ? MK_EPERM : MK_EIO;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	struct stat sb;
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		*error_r = mk_xasprintf("store %s: not a directory", dir);
		return MK_EIO;
	}
	/* Mail is private: warn (not fail) if someone loosened the directory. */
	if ((sb.st_mode & 077) != 0)
		mk_log(MK_LOG_WARN, MK_LOG_CAT_STORE, NULL, "store %s: directory mode %03o is readable by others", dir,
		       (unsigned)(sb.st_mode & 0777));
	return 0;
}

struct open_ctx {
	char *error;
	uint32_t found_version;
};

static int open_dbis(struct mk_store *st, MDB_txn *txn)
{
	static const struct {
		const char *name;
		size_t off;
	} dbis[] = {
		{"meta", offsetof(struct mk_store, meta)},
		{"accounts", offsetof(struct mk_store, accounts)},
		{"account_names", offsetof(struct mk_store, account_names)},
		{"mailboxes", offsetof(struct mk_store, mailboxes)},
		{"mailbox_names", offsetof(struct mk_store, mailbox_names)},
		{"messages", offsetof(struct mk_store, messages)},
		{"blobs", offsetof(struct mk_store, blobs)},
		{"chunks", offsetof(struct mk_store, chunks)},
		{"staging", offsetof(struct mk_store, staging)},
		{"pop3_uidl", offsetof(struct mk_store, pop3_uidl)}, /* issue 7: POP3 UIDL table */
		{"outbox", offsetof(struct mk_store, outbox)},       /* issue 5: the outbox */
	};
	for (size_t i = 0; i < sizeof(dbis) / sizeof(dbis[0]); i++) {
		MDB_dbi *d = (MDB_dbi *)((char *)st + dbis[i].off);
		int rc = mdb_dbi_open(txn, dbis[i].name, MDB_CREATE, d);
		if (rc != 0)
			return mk__store_err(rc);
	}
	return 0;
}

static int open_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	struct open_ctx *oc = ud;
	MK_FREE(&oc->error);
	int ret = open_dbis(st, txn);
	if (ret < 0)
		return ret;
	MDB_val v;
	ret = get_val(txn, st->meta, "schema_version", 14, &v);
	if (ret == MK_ENOTFOUND) {
		/* A new store. */
		uint8_t b[17];
		size_t n = mk__store_encode_u32(b, MK__STORE_SCHEMA_VERSION);
		ret = put_val(txn, st->meta, "schema_version", 14, b, n);
		if (ret == 0) {
			n = mk__store_encode_i64(b, (int64_t)time(NULL));
			ret = put_val(txn, st->meta, "created_at", 10, b, n);
		}
		if (ret == 0) {
			b[0] = MK__STORE_VALUE_V1;
			mk_crypto_random(b + 1, 16);
			ret = put_val(txn, st->meta, "instance_id", 11, b, 17);
		}
		oc->found_version = MK__STORE_SCHEMA_VERSION;
		return ret;
	}
	if (ret < 0)
		return ret;
	uint32_t version = 0;
	if (mk__store_decode_u32(v.mv_data, v.mv_size, &version) < 0) {
		oc->error = mk_xasprintf("store %s: unreadable schema version", st->dir);
		return MK_ECORRUPT;
	}
	oc->found_version = version;
	if (version > MK__STORE_SCHEMA_VERSION) {
		oc->error = mk_xasprintf("store %s was written by a newer mailkeep (schema %u; this one knows %u)",
					 st->dir, version, MK__STORE_SCHEMA_VERSION);
		return MK_ECONFIG;
	}
	if (version < MK__STORE_SCHEMA_VERSION) {
		ret = mk__store_migrate(st, txn, version, &oc->error);
		if (ret < 0)
			return ret;
		uint8_t b[5];
		size_t n = mk__store_encode_u32(b, MK__STORE_SCHEMA_VERSION);
		return put_val(txn, st->meta, "schema_version", 14, b, n);
	}
	return 0;
}

/* Chunks written by bodies whose batch never committed (crash, or a
 * batch freed without commit) are unreachable: free them. */
static int staging_cleanup_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	uint64_t *freed = ud;
	*freed = 0;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->staging, &c);
	if (rc != 0)
		return mk__store_err(rc);
	uint64_t *drop = NULL;
	size_t n_drop = 0, cap = 0;
	MDB_val key, val;
	for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
		if (key.mv_size != 8) {
			rc = mdb_cursor_del(c, 0); /* malformed (never written by us) */
			if (rc != 0)
				break;
			continue;
		}
		if (staging_writer_alive(st, &val))
			continue; /* a running writer's body in progress: not ours to free */
		if (n_drop == cap) {
			cap = cap ? cap * 2 : 16;
			drop = mk_xrealloc(drop, cap * sizeof(*drop));
		}
		drop[n_drop++] = mk__store_rd64(key.mv_data);
	}
	mdb_cursor_close(c);
	int ret = rc == MDB_NOTFOUND ? 0 : mk__store_err(rc);
	for (size_t i = 0; i < n_drop && ret == 0; i++) {
		ret = mk__store_drop_owner(st, txn, drop[i]);
		if (ret == 0)
			(*freed)++;
	}
	mk_free(drop);
	return ret;
}

int mk_store_open(const char *dir, int zlevel, struct mk_store **st_r, char **error_r)
{
	*st_r = NULL;
	*error_r = NULL;
	int ret = mkdir_p(dir, error_r);
	if (ret < 0)
		return ret;
	struct mk_store *st = mk_xcalloc(1, sizeof(*st));
	st->dir = mk_xstrdup(dir);
	st->zlevel = zlevel <= 0 ? MK__STORE_DEFAULT_ZLEVEL : zlevel > 9 ? 9 : zlevel;
	st->pid = getpid();
	st->starttime = proc_starttime(st->pid);
	init_host(st);
	ret = mk__store_pool_init(st);
	if (ret < 0) {
		*error_r = mk_xasprintf("store %s: cannot create the compression queue", dir);
		goto fail;
	}

	int rc = mdb_env_create(&st->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(st->env, 16);
	if (rc == 0)
		rc = mdb_env_set_mapsize(st->env, test_initial_map ? test_initial_map : MK__STORE_INITIAL_MAP);
	if (rc == 0)
		rc = mdb_env_open(st->env, dir, MDB_NORDAHEAD, 0600);
	if (rc != 0) {
		ret = rc == EACCES || rc == EPERM ? MK_EPERM : rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH ? MK_ECORRUPT : MK_EIO;
		*error_r = mk_xasprintf("store %s: cannot open: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	/* An existing store may be larger than the initial map: LMDB then keeps
	 * the size recorded in the file; read it back so growth doubles that. */
	MDB_envinfo info;
	if (mdb_env_info(st->env, &info) == 0) {
		struct stat sb;
		char *data = mk_xasprintf("%s/data.mdb", dir);
		if (stat(data, &sb) == 0 && (size_t)sb.st_size > info.me_mapsize)
			mdb_env_set_mapsize(st->env, (size_t)sb.st_size);
		mk_free(data);
	}
	char real[PATH_MAX];
	if (realpath(dir, real) != NULL)
		st->data_path = mk_xasprintf("%s/data.mdb", real);

	struct open_ctx oc = {NULL, 0};
	ret = mk__store_write(st, open_txn, &oc, false);
	if (ret < 0) {
		if (oc.error != NULL) {
			*error_r = oc.error;
		} else {
			*error_r = mk_xasprintf("store %s: %s", dir, store_strerror(ret));
			ret = ret == MK_ECORRUPT ? MK_ECORRUPT : MK_EIO;
		}
		goto fail;
	}
	mk_free(oc.error);
	uint64_t freed = 0;
	open_handles++;
	st->counted = true;
	ret = mk__store_write(st, staging_cleanup_txn, &freed, false);
	if (ret < 0) {
		*error_r = mk_xasprintf("store %s: freeing staging chunks: %s", dir, store_strerror(ret));
		ret = ret == MK_ECORRUPT ? MK_ECORRUPT : MK_EIO;
		goto fail;
	}
	if (freed > 0)
		mk_log(MK_LOG_INFO, MK_LOG_CAT_STORE, NULL, "store %s: freed %llu unfinished bodies", dir,
		       (unsigned long long)freed);
	mk__store_pool_start(st, MK__STORE_DEFAULT_THREADS);
	*st_r = st;
	return 0;
fail:
	mk_store_close(&st);
	return ret;
}

void mk_store_close(struct mk_store **stp)
{
	struct mk_store *st = *stp;
	if (st == NULL)
		return;
	/* Joins the compression threads (after they drain the queue) and
	 * reaps every body, so a batch freed later touches no pool state. */
	if (st->counted && getpid() == st->pid)
		open_handles--;
	if (getpid() == st->pid) {
		mk__store_pool_stop(st);
		mk__store_pool_cleanup(st);
	} /* else a forked child: the threads are not in this process */
	if (st->env != NULL) {
		MK_ASSERT(st->open_txns == 0);
		mdb_env_close(st->env);
	}
	mk_free(st->dir);
	mk_free(st->data_path);
	mk_free(st);
	*stp = NULL;
}

int mk_store_set_threads(struct mk_store *st, unsigned n)
{
	if (n > MK__STORE_MAX_THREADS)
		return MK_EINVAL;
	check_pid(st);
	mk__store_pool_stop(st);
	mk__store_pool_start(st, n);
	return 0;
}

unsigned mk_store_threads(const struct mk_store *st)
{
	return st->pool.n_workers + st->pool.want_workers;
}

/* ---- accounts ---- */

struct account_ctx {
	const char *name;
	uint32_t id;
};

static int account_create_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	struct account_ctx *ac = ud;
	MDB_val v;
	size_t len = strlen(ac->name);
	int ret = get_val(txn, st->account_names, ac->name, len, &v);
	if (ret == 0)
		return mk__store_decode_u32(v.mv_data, v.mv_size, &ac->id);
	if (ret != MK_ENOTFOUND)
		return ret;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->accounts, &c);
	if (rc != 0)
		return mk__store_err(rc);
	MDB_val key, val;
	rc = mdb_cursor_get(c, &key, &val, MDB_LAST);
	uint32_t id = 1;
	if (rc == 0 && key.mv_size == 4)
		id = mk__store_rd32(key.mv_data) + 1;
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mk__store_err(rc);
	if (id == 0)
		return MK_ETOOBIG;
	uint8_t k[4], b[3 + MK__STORE_ACCOUNT_NAME_MAX], idv[5];
	mk__store_be32(k, id);
	size_t n = mk__store_encode_account(b, sizeof(b), ac->name);
	ret = put_val(txn, st->accounts, k, 4, b, n);
	if (ret == 0) {
		n = mk__store_encode_u32(idv, id);
		ret = put_val(txn, st->account_names, ac->name, len, idv, n);
	}
	ac->id = id;
	return ret;
}

int mk_store_account(struct mk_store *st, const char *name, bool create, uint32_t *id_r)
{
	size_t len = strlen(name);
	if (len == 0 || len > MK__STORE_ACCOUNT_NAME_MAX)
		return MK_EINVAL;
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	MDB_val v;
	ret = get_val(txn, st->account_names, name, len, &v);
	if (ret == 0)
		ret = mk__store_decode_u32(v.mv_data, v.mv_size, id_r);
	mk__store_txn_abort(st, txn);
	if (ret != MK_ENOTFOUND || !create)
		return ret;
	struct account_ctx ac = {name, 0};
	ret = mk__store_write(st, account_create_txn, &ac, false);
	if (ret == 0)
		*id_r = ac.id;
	return ret;
}

int mk_store_accounts(struct mk_store *st, int (*cb)(void *ud, const char *name, uint32_t id), void *ud)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->accounts, &c);
	if (rc != 0) {
		mk__store_txn_abort(st, txn);
		return mk__store_err(rc);
	}
	MDB_val key, val;
	for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
		char name[MK__STORE_ACCOUNT_NAME_MAX + 1];
		if (key.mv_size != 4 || mk__store_decode_account(val.mv_data, val.mv_size, name, sizeof(name)) < 0) {
			ret = MK_ECORRUPT;
			break;
		}
		ret = cb(ud, name, mk__store_rd32(key.mv_data));
		if (ret != 0)
			break;
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		ret = mk__store_err(rc);
	mdb_cursor_close(c);
	mk__store_txn_abort(st, txn);
	return ret > 0 ? 0 : ret;
}

/* ---- mailboxes ---- */

static int mailbox_read(struct mk_store *st, MDB_txn *txn, uint32_t account, uint32_t id,
			struct mk_store_mailbox *mb)
{
	uint8_t k[8];
	mk__store_key_mailbox(k, account, id);
	MDB_val v;
	int ret = get_val(txn, st->mailboxes, k, sizeof(k), &v);
	if (ret < 0)
		return ret;
	memset(mb, 0, sizeof(*mb));
	ret = mk__store_decode_mailbox(v.mv_data, v.mv_size, mb);
	mb->account = account;
	mb->id = id;
	return ret;
}

static int mailbox_lookup(struct mk_store *st, MDB_txn *txn, uint32_t account, const char *name,
			  struct mk_store_mailbox *mb)
{
	uint8_t k[MK__STORE_MBNAME_KEY_MAX];
	size_t kn = mk__store_key_mbname(k, account, name);
	MDB_val v;
	int ret = get_val(txn, st->mailbox_names, k, kn, &v);
	if (ret < 0)
		return ret;
	uint32_t id = 0;
	ret = mk__store_decode_u32(v.mv_data, v.mv_size, &id);
	if (ret < 0)
		return ret;
	ret = mailbox_read(st, txn, account, id, mb);
	/* The name index points at a missing mailbox: corrupt, not absent. */
	return ret == MK_ENOTFOUND ? MK_ECORRUPT : ret;
}

struct mailbox_ctx {
	uint32_t account;
	const char *name;
	struct mk_store_mailbox *mb;
};

static int mailbox_create_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	struct mailbox_ctx *mc = ud;
	int ret = mailbox_lookup(st, txn, mc->account, mc->name, mc->mb);
	if (ret != MK_ENOTFOUND)
		return ret;
	uint8_t ak[4];
	mk__store_be32(ak, mc->account);
	MDB_val v;
	ret = get_val(txn, st->accounts, ak, 4, &v);
	if (ret < 0)
		return ret;
	/* Next id: one past the account's last mailbox (ids are never reused
	 * since mailboxes are never deleted). */
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->mailboxes, &c);
	if (rc != 0)
		return mk__store_err(rc);
	uint8_t k[8];
	mk__store_key_mailbox(k, mc->account + 1, 0);
	MDB_val key = {8, k}, val;
	if (mc->account == UINT32_MAX)
		rc = mdb_cursor_get(c, &key, &val, MDB_LAST);
	else if ((rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE)) == 0)
		rc = mdb_cursor_get(c, &key, &val, MDB_PREV);
	else if (rc == MDB_NOTFOUND)
		rc = mdb_cursor_get(c, &key, &val, MDB_LAST);
	uint32_t id = 1;
	if (rc == 0 && key.mv_size == 8 && mk__store_rd32(key.mv_data) == mc->account)
		id = mk__store_rd32((const uint8_t *)key.mv_data + 4) + 1;
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mk__store_err(rc);
	if (id == 0)
		return MK_ETOOBIG;
	struct mk_store_mailbox *mb = mc->mb;
	memset(mb, 0, sizeof(*mb));
	mb->account = mc->account;
	mb->id = id;
	mk_strlcpy(mb->name, mc->name, sizeof(mb->name));
	uint8_t b[MK__STORE_MBOX_VAL_MAX];
	size_t n = mk__store_encode_mailbox(b, sizeof(b), mb);
	mk__store_key_mailbox(k, mc->account, id);
	ret = put_val(txn, st->mailboxes, k, 8, b, n);
	if (ret < 0)
		return ret;
	uint8_t nk[MK__STORE_MBNAME_KEY_MAX], idv[5];
	size_t kn = mk__store_key_mbname(nk, mc->account, mc->name);
	n = mk__store_encode_u32(idv, id);
	return put_val(txn, st->mailbox_names, nk, kn, idv, n);
}

int mk_store_mailbox_get(struct mk_store *st, uint32_t account, const char *name, bool create,
			 struct mk_store_mailbox *mb_r)
{
	size_t len = strlen(name);
	if (len == 0 || len >= sizeof(mb_r->name))
		return MK_EINVAL;
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	ret = mailbox_lookup(st, txn, account, name, mb_r);
	mk__store_txn_abort(st, txn);
	if (ret != MK_ENOTFOUND || !create)
		return ret;
	struct mailbox_ctx mc = {account, name, mb_r};
	return mk__store_write(st, mailbox_create_txn, &mc, false);
}

int mk_store_mailbox_by_id(struct mk_store *st, uint32_t account, uint32_t id, struct mk_store_mailbox *mb_r)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	ret = mailbox_read(st, txn, account, id, mb_r);
	mk__store_txn_abort(st, txn);
	return ret;
}

int mk_store_mailboxes(struct mk_store *st, uint32_t account,
		       int (*cb)(void *ud, const struct mk_store_mailbox *mb), void *ud)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->mailboxes, &c);
	if (rc != 0) {
		mk__store_txn_abort(st, txn);
		return mk__store_err(rc);
	}
	uint8_t k[8];
	mk__store_key_mailbox(k, account, 0);
	MDB_val key = {8, k}, val;
	struct mk_store_mailbox *mb = mk_xmalloc(sizeof(*mb));
	for (rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
		if (key.mv_size != 8 || mk__store_rd32(key.mv_data) != account)
			break;
		memset(mb, 0, sizeof(*mb));
		if (mk__store_decode_mailbox(val.mv_data, val.mv_size, mb) < 0) {
			ret = MK_ECORRUPT;
			break;
		}
		mb->account = account;
		mb->id = mk__store_rd32((const uint8_t *)key.mv_data + 4);
		ret = cb(ud, mb);
		if (ret != 0)
			break;
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		ret = mk__store_err(rc);
	mk_free(mb);
	mdb_cursor_close(c);
	mk__store_txn_abort(st, txn);
	return ret > 0 ? 0 : ret;
}

/* ---- messages ---- */

static int msg_decode(const MDB_val *key, const MDB_val *val, struct mk_store_msg *m)
{
	if (key->mv_size != 16)
		return MK_ECORRUPT;
	memset(m, 0, sizeof(*m));
	const uint8_t *k = key->mv_data;
	m->account = mk__store_rd32(k);
	m->mailbox = mk__store_rd32(k + 4);
	m->uidvalidity = mk__store_rd32(k + 8);
	m->uid = mk__store_rd32(k + 12);
	return mk__store_decode_msg(val->mv_data, val->mv_size, m);
}

int mk_store_messages(struct mk_store *st, uint32_t account, uint32_t mailbox, uint32_t uidvalidity,
		      int (*cb)(void *ud, const struct mk_store_msg *m), void *ud)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->messages, &c);
	if (rc != 0) {
		mk__store_txn_abort(st, txn);
		return mk__store_err(rc);
	}
	uint8_t k[16];
	mk__store_key_msg(k, account, mailbox, uidvalidity, 0);
	size_t prefix = uidvalidity == 0 ? 8 : 12;
	MDB_val key = {16, k}, val;
	struct mk_store_msg *m = mk_xmalloc(sizeof(*m));
	for (rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
		if (key.mv_size != 16 || memcmp(key.mv_data, k, prefix) != 0)
			break;
		if (msg_decode(&key, &val, m) < 0) {
			ret = MK_ECORRUPT;
			break;
		}
		ret = cb(ud, m);
		if (ret != 0)
			break;
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		ret = mk__store_err(rc);
	mk_free(m);
	mdb_cursor_close(c);
	mk__store_txn_abort(st, txn);
	return ret > 0 ? 0 : ret;
}

int mk_store_message_get(struct mk_store *st, uint32_t account, uint32_t mailbox, uint32_t uidvalidity,
			 uint32_t uid, struct mk_store_msg *m_r)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	uint8_t k[16];
	mk__store_key_msg(k, account, mailbox, uidvalidity, uid);
	MDB_val key = {16, k}, val;
	ret = get_val(txn, st->messages, k, 16, &val);
	if (ret == 0)
		ret = msg_decode(&key, &val, m_r);
	mk__store_txn_abort(st, txn);
	return ret;
}

int mk__store_lookup_blob(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], struct mk__store_blob *blob_r)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	ret = mk__store_get_blob(st, txn, sha, blob_r);
	mk__store_txn_abort(st, txn);
	return ret;
}

bool mk_store_have_body(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN])
{
	struct mk__store_blob blob;
	return mk__store_lookup_blob(st, sha, &blob) == 0 && blob.refcount > 0;
}

/* ---- stats ---- */

int mk_store_stats(struct mk_store *st, struct mk_store_stats *s)
{
	memset(s, 0, sizeof(*s));
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	MDB_stat ms;
	int rc = mdb_stat(txn, st->accounts, &ms);
	s->accounts = ms.ms_entries;
	if (rc == 0 && (rc = mdb_stat(txn, st->mailboxes, &ms)) == 0)
		s->mailboxes = ms.ms_entries;
	MDB_cursor *c = NULL;
	MDB_val key, val;
	if (rc == 0 && (rc = mdb_cursor_open(txn, st->messages, &c)) == 0) {
		struct mk_store_msg *m = mk_xmalloc(sizeof(*m));
		for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
			if (msg_decode(&key, &val, m) < 0) {
				ret = MK_ECORRUPT;
				break;
			}
			s->messages++;
			s->messages_gone += m->state == MK_STORE_MSG_GONE;
			s->raw_bytes += m->raw_size;
		}
		mk_free(m);
		mdb_cursor_close(c);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	if (ret == 0 && rc == 0 && (rc = mdb_cursor_open(txn, st->blobs, &c)) == 0) {
		for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
			struct mk__store_blob b;
			if (mk__store_decode_blob(val.mv_data, val.mv_size, &b) < 0) {
				ret = MK_ECORRUPT;
				break;
			}
			s->blobs++;
			s->blob_raw_bytes += b.raw_size;
			s->blob_stored_bytes += b.stored_size;
		}
		mdb_cursor_close(c);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	mk__store_txn_abort(st, txn);
	if (ret == 0 && rc != 0)
		ret = mk__store_err(rc);
	char *data = mk_xasprintf("%s/data.mdb", st->dir);
	struct stat sb;
	if (stat(data, &sb) == 0)
		s->file_bytes = (uint64_t)sb.st_size;
	mk_free(data);
	return ret;
}

/* ---- test helpers ---- */

void mk__store_test_set_initial_map(size_t bytes)
{
	test_initial_map = bytes;
}

uint64_t mk__store_test_growths(const struct mk_store *st)
{
	return st->growths;
}

static int count_entries(struct mk_store *st, MDB_dbi dbi, uint64_t *n_r)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	MDB_stat ms;
	int rc = mdb_stat(txn, dbi, &ms);
	mk__store_txn_abort(st, txn);
	*n_r = ms.ms_entries;
	return mk__store_err(rc);
}

struct foreign_ctx {
	uint64_t owner;
	pid_t pid;
	uint64_t start;
};

static int foreign_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	struct foreign_ctx *fc = ud;
	uint8_t k[8], v[STAGING_VAL_LEN];
	mk__store_be64(k, fc->owner);
	(void)mk__store_encode_i64(v, (int64_t)time(NULL));
	mk__store_be32(v + 9, (uint32_t)fc->pid);
	mk__store_be64(v + 13, fc->start);
	int ret = put_val(txn, st->staging, k, sizeof(k), v, sizeof(v));
	if (ret == 0)
		ret = mk__store_put_chunk(st, txn, fc->owner, 0, (const uint8_t *)"x", 1);
	return ret;
}

int mk__store_test_put_foreign_staging(struct mk_store *st, uint64_t owner, pid_t pid, uint64_t starttime)
{
	struct foreign_ctx fc = {owner, pid, starttime ? starttime : proc_starttime(pid)};
	return mk__store_write(st, foreign_txn, &fc, false);
}

int mk__store_test_staging_count(struct mk_store *st, uint64_t *n_r)
{
	return count_entries(st, st->staging, n_r);
}

int mk__store_test_chunk_count(struct mk_store *st, uint64_t *n_r)
{
	return count_entries(st, st->chunks, n_r);
}

struct corrupt_ctx {
	const uint8_t *sha;
	uint32_t no;
	size_t offset;
};

static int corrupt_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	struct corrupt_ctx *cc = ud;
	struct mk__store_blob blob;
	int ret = mk__store_get_blob(st, txn, cc->sha, &blob);
	if (ret < 0)
		return ret;
	uint8_t k[12];
	mk__store_key_chunk(k, blob.owner, cc->no);
	MDB_val v;
	ret = get_val(txn, st->chunks, k, sizeof(k), &v);
	if (ret < 0)
		return ret;
	if (v.mv_size == 0)
		return MK_EINVAL;
	uint8_t *copy = mk_xmalloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[cc->offset % v.mv_size] ^= 0x5a;
	ret = put_val(txn, st->chunks, k, sizeof(k), copy, v.mv_size);
	mk_free(copy);
	return ret;
}

int mk__store_test_corrupt_chunk(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], uint32_t no,
				 size_t offset)
{
	struct corrupt_ctx cc = {sha, no, offset};
	return mk__store_write(st, corrupt_txn, &cc, false);
}

static int set_schema_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	uint8_t b[5];
	size_t n = mk__store_encode_u32(b, *(const uint32_t *)ud);
	return put_val(txn, st->meta, "schema_version", 14, b, n);
}

int mk__store_test_set_schema(struct mk_store *st, uint32_t version)
{
	return mk__store_write(st, set_schema_txn, &version, false);
}

static int blob_info(struct mk_store *st, const uint8_t *sha, struct mk__store_blob *b)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	ret = mk__store_get_blob(st, txn, sha, b);
	mk__store_txn_abort(st, txn);
	return ret;
}

int mk__store_test_refcount(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], uint64_t *ref_r)
{
	struct mk__store_blob b;
	int ret = blob_info(st, sha, &b);
	if (ret == 0)
		*ref_r = b.refcount;
	return ret;
}

struct raw_blob_ctx {
	const uint8_t *sha;
	const struct mk__store_blob *blob;
	const uint8_t *p;
};

static int raw_blob_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	struct raw_blob_ctx *rc = ud;
	struct mk__store_blob b = *rc->blob;
	int ret = 0;
	if (b.stored_size > 0) {
		ret = mk__store_alloc_owner(st, txn, &b.owner);
		if (ret == 0)
			ret = mk__store_put_chunk(st, txn, b.owner, 0, rc->p, (size_t)b.stored_size);
	}
	if (ret == 0)
		ret = mk__store_put_blob(st, txn, rc->sha, &b);
	return ret;
}

int mk__store_test_put_raw_blob(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], int codec,
				const uint8_t *p, size_t n, uint64_t raw_size)
{
	if (n > MK__STORE_CHUNK)
		return MK_EINVAL;
	struct mk__store_blob b;
	memset(&b, 0, sizeof(b));
	b.raw_size = raw_size;
	b.stored_size = n;
	b.n_chunks = n > 0;
	b.codec = (uint8_t)codec;
	struct raw_blob_ctx rc = {sha, &b, p};
	return mk__store_write(st, raw_blob_txn, &rc, false);
}

int mk__store_test_blob_info(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN], int *codec_r,
			     uint32_t *n_chunks_r)
{
	struct mk__store_blob b;
	int ret = blob_info(st, sha, &b);
	if (ret == 0) {
		*codec_r = b.codec;
		*n_chunks_r = b.n_chunks;
	}
	return ret;
}

int mk__store_test_stored_digest(struct mk_store *st, const uint8_t sha[MK_STORE_SHA_LEN],
				 uint8_t digest_r[MK_STORE_SHA_LEN], uint64_t *stored_r)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	struct mk__store_blob b;
	ret = mk__store_get_blob(st, txn, sha, &b);
	struct mk_sha256 ctx;
	mk_sha256_init(&ctx);
	uint64_t total = 0;
	for (uint32_t i = 0; ret == 0 && i < b.n_chunks; i++) {
		uint8_t k[12];
		mk__store_key_chunk(k, b.owner, i);
		MDB_val v;
		ret = get_val(txn, st->chunks, k, sizeof(k), &v);
		if (ret == 0) {
			mk_sha256_update(&ctx, v.mv_data, v.mv_size);
			total += v.mv_size;
		}
	}
	mk__store_txn_abort(st, txn);
	mk_sha256_final(&ctx, digest_r);
	*stored_r = total;
	return ret;
}

/* The map is read-only (no MDB_WRITEMAP): its pages are clean page cache
 * that LMDB touched while searching the trees. A long sync touches a great
 * many of them, and each counts in our RSS although the kernel could drop
 * it any time (measured: 79 MiB of file pages against 13 MiB of heap after
 * 10,000 messages). Drop them from our page tables after each commit: a
 * later access is a minor fault, nothing is read from disk again unless
 * the page cache itself was evicted. */
void mk__store_release_map(struct mk_store *st)
{
	/* LMDB does not say where its map is (me_mapaddr is set only with
	 * MDB_FIXEDMAP): find the mapping of our data.mdb in /proc/self/maps
	 * once, and again only after the map was resized (it may move). */
	if (st->map_hi == 0 && st->data_path != NULL) {
		FILE *f = fopen("/proc/self/maps", "re");
		if (f == NULL)
			return;
		char line[4400];
		size_t pl = strlen(st->data_path);
		while (fgets(line, sizeof(line), f) != NULL) {
			size_t n = strlen(line);
			while (n > 0 && line[n - 1] == '\n')
				line[--n] = '\0';
			unsigned long lo, hi;
			if (n >= pl && strcmp(line + n - pl, st->data_path) == 0 &&
			    sscanf(line, "%lx-%lx", &lo, &hi) == 2 && hi > lo) {
				st->map_lo = lo;
				st->map_hi = hi;
				break;
			}
		}
		fclose(f);
	}
	if (st->map_hi > st->map_lo)
		(void)madvise((void *)st->map_lo, st->map_hi - st->map_lo, MADV_DONTNEED);
}
