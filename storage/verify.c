/* SPDX-License-Identifier: MIT */
/*
 * verify.c - mk_store_verify(): a full consistency check in ONE read
 * transaction (a consistent snapshot, so refcounts can be compared with
 * the records that exist at the same instant). Every blob is inflated and
 * hash-checked; every record must name a stored blob; refcounts are
 * recomputed; blobs no record names and chunks no blob or staging mark
 * owns are orphans. It only reads: repairing is a separate decision.
 * Memory: 32 bytes per record and 12 per blob, sorted, no hash tables.
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "store_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct owner_ent {
	uint64_t owner;
	uint32_t n_chunks; /* UINT32_MAX: a staging owner, any chunk number */
};

struct vctx {
	struct mk_store_verify_report *rep;
	void (*cb)(void *ud, const char *problem);
	void *ud;
	uint8_t (*shas)[MK_STORE_SHA_LEN];
	size_t n_shas, cap_shas;
	struct owner_ent *owners;
	size_t n_owners, cap_owners;
};

static void problem(struct vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct vctx *v, const char *fmt, ...)
{
	if (v->cb == NULL)
		return;
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	v->cb(v->ud, line);
}

static int cmp_sha(const void *a, const void *b)
{
	return memcmp(a, b, MK_STORE_SHA_LEN);
}

static int cmp_owner(const void *a, const void *b)
{
	const struct owner_ent *x = a, *y = b;
	return x->owner < y->owner ? -1 : x->owner > y->owner;
}

static void add_owner(struct vctx *v, uint64_t owner, uint32_t n_chunks)
{
	if (v->n_owners == v->cap_owners) {
		v->cap_owners = v->cap_owners ? v->cap_owners * 2 : 256;
		v->owners = mk_xrealloc(v->owners, v->cap_owners * sizeof(*v->owners));
	}
	v->owners[v->n_owners].owner = owner;
	v->owners[v->n_owners].n_chunks = n_chunks;
	v->n_owners++;
}

static void add_sha(void *ud, const uint8_t sha[MK_STORE_SHA_LEN]);

static int check_records(struct mk_store *st, MDB_txn *txn, struct vctx *v)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->messages, &c);
	if (rc != 0)
		return mk__store_err(rc);
	MDB_val key, val;
	struct mk_store_msg *m = mk_xmalloc(sizeof(*m));
	for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
		const uint8_t *k = key.mv_data;
		memset(m, 0, sizeof(*m));
		if (key.mv_size != 16 || mk__store_decode_msg(val.mv_data, val.mv_size, m) < 0) {
			v->rep->records_missing_body++;
			problem(v, "record with a %zu-byte key: unreadable", key.mv_size);
			continue;
		}
		MDB_val bkey = {MK_STORE_SHA_LEN, m->sha}, bval;
		int brc = mdb_get(txn, st->blobs, &bkey, &bval);
		if (brc == MDB_NOTFOUND) {
			char hex[20];
			mk__store_hex(m->sha, 6, hex, sizeof(hex));
			v->rep->records_missing_body++;
			problem(v, "record %u/%u/%u/%u: body %s… missing", mk__store_rd32(k), mk__store_rd32(k + 4),
				mk__store_rd32(k + 8), mk__store_rd32(k + 12), hex);
			continue;
		}
		if (brc != 0) {
			rc = brc;
			break;
		}
		v->rep->records_ok++;
		add_sha(v, m->sha);
	}
	mk_free(m);
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : mk__store_err(rc);
}

static void add_sha(void *ud, const uint8_t sha[MK_STORE_SHA_LEN])
{
	struct vctx *v = ud;
	if (v->n_shas == v->cap_shas) {
		v->cap_shas = v->cap_shas ? v->cap_shas * 2 : 1024;
		v->shas = mk_xrealloc(v->shas, v->cap_shas * MK_STORE_SHA_LEN);
	}
	memcpy(v->shas[v->n_shas++], sha, MK_STORE_SHA_LEN);
}

static int check_blobs(struct mk_store *st, MDB_txn *txn, struct vctx *v)
{
	if (v->n_shas > 0) /* qsort(NULL, 0) is undefined */
		qsort(v->shas, v->n_shas, MK_STORE_SHA_LEN, cmp_sha);
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->blobs, &c);
	if (rc != 0)
		return mk__store_err(rc);
	MDB_val key, val;
	size_t idx = 0;
	int ret = 0;
	for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
		char hex[20];
		mk__store_hex(key.mv_data, key.mv_size < 6 ? key.mv_size : 6, hex, sizeof(hex));
		struct mk__store_blob blob;
		if (key.mv_size != MK_STORE_SHA_LEN || mk__store_decode_blob(val.mv_data, val.mv_size, &blob) < 0) {
			v->rep->blobs_bad++;
			problem(v, "blob %s…: unreadable blob record", hex);
			continue;
		}
		const uint8_t *sha = key.mv_data;
		/* Both lists are in sha order: merge. */
		while (idx < v->n_shas && memcmp(v->shas[idx], sha, MK_STORE_SHA_LEN) < 0)
			idx++;
		uint64_t refs = 0;
		while (idx < v->n_shas && memcmp(v->shas[idx], sha, MK_STORE_SHA_LEN) == 0) {
			refs++;
			idx++;
		}
		if (refs == 0) {
			v->rep->orphan_blobs++;
			problem(v, "blob %s… (%llu bytes): no record references it", hex,
				(unsigned long long)blob.raw_size);
		}
		if (refs != blob.refcount) {
			v->rep->refcount_errors++;
			problem(v, "blob %s… (%llu bytes): refcount %llu, but %llu records", hex,
				(unsigned long long)blob.raw_size, (unsigned long long)blob.refcount,
				(unsigned long long)refs);
		}
		if (blob.owner != 0)
			add_owner(v, blob.owner, blob.n_chunks);
		const char *why = NULL;
		ret = mk__store_blob_stream(st, txn, sha, &blob, NULL, NULL, &why);
		if (ret == MK_ECORRUPT) {
			v->rep->blobs_bad++;
			problem(v, "blob %s… (%llu bytes): %s", hex, (unsigned long long)blob.raw_size, why);
			ret = 0;
		} else if (ret < 0) {
			break;
		} else {
			v->rep->blobs_ok++;
		}
	}
	mdb_cursor_close(c);
	if (ret < 0)
		return ret;
	return rc == MDB_NOTFOUND ? 0 : mk__store_err(rc);
}

static int check_chunks(struct mk_store *st, MDB_txn *txn, struct vctx *v)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->staging, &c);
	if (rc != 0)
		return mk__store_err(rc);
	MDB_val key, val;
	for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT))
		if (key.mv_size == 8)
			add_owner(v, mk__store_rd64(key.mv_data), UINT32_MAX);
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND)
		return mk__store_err(rc);
	if (v->n_owners > 0)
		qsort(v->owners, v->n_owners, sizeof(*v->owners), cmp_owner);

	rc = mdb_cursor_open(txn, st->chunks, &c);
	if (rc != 0)
		return mk__store_err(rc);
	uint64_t reported = 0;
	bool any_reported = false;
	for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
		bool ok = false;
		uint64_t owner = 0;
		if (key.mv_size == 12) {
			owner = mk__store_rd64(key.mv_data);
			uint32_t no = mk__store_rd32((const uint8_t *)key.mv_data + 8);
			struct owner_ent probe = {owner, 0};
			const struct owner_ent *e =
				v->n_owners == 0 ? NULL
						 : bsearch(&probe, v->owners, v->n_owners, sizeof(*v->owners), cmp_owner);
			/* Two entries for one owner would be a bug; bsearch finds one. */
			ok = e != NULL && (e->n_chunks == UINT32_MAX || no < e->n_chunks);
		}
		if (ok)
			continue;
		v->rep->orphan_chunks++;
		if (!any_reported || owner != reported) {
			problem(v, "chunks of owner %llu: not part of any body", (unsigned long long)owner);
			reported = owner;
			any_reported = true;
		}
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : mk__store_err(rc);
}

int mk_store_verify(struct mk_store *st, struct mk_store_verify_report *rep,
		    void (*cb)(void *ud, const char *problem), void *ud)
{
	memset(rep, 0, sizeof(*rep));
	struct vctx v = {rep, cb, ud, NULL, 0, 0, NULL, 0, 0};
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	ret = check_records(st, txn, &v);
	/* Outbox entries reference their message bodies too (issue 5). */
	if (ret == 0)
		ret = mk__store_outbox_shas(st, txn, add_sha, &v);
	if (ret == 0)
		ret = check_blobs(st, txn, &v);
	if (ret == 0)
		ret = check_chunks(st, txn, &v);
	mk__store_txn_abort(st, txn);
	mk_free(v.shas);
	mk_free(v.owners);
	return ret;
}
