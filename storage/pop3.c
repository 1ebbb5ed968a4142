/* SPDX-License-Identifier: MIT */
/*
 * pop3.c - the POP3 UIDL table of the store (see mk_store.h, "POP3 UIDL
 * table"): which POP3 messages of an account are durably stored, and
 * which the server confirmed deleted.
 *
 * Key: account (u32 big-endian) + the UIDL's bytes (1..70, RFC 1939), so a
 * cursor walks one account's UIDLs in byte order. Value (version 1): the
 * version byte, sha256 (32), size (u64), first seen (i64), uid in the POP3
 * folder (u32), deleted at (i64), all big-endian, written field by field.
 * Entries are put through the batch (op MK__STORE_OP_POP3, applied inside
 * mk_store_batch_commit's single transaction by mk__store_pop3_apply), so
 * body, record, folder progress and UIDL become durable together.
 * Decoding checks every length: a damaged value is MK_ECORRUPT, never a
 * read past the end.
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_str.h"
#include "store_int.h"

#include <string.h>

#define KEY_MAX (4 + MK_STORE_POP3_UIDL_MAX)
#define VAL_LEN (1 + MK_STORE_SHA_LEN + 8 + 8 + 4 + 8)

static bool uidl_ok(const char *u, size_t n)
{
	if (n < 1 || n > MK_STORE_POP3_UIDL_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)u[i] < 0x21 || (unsigned char)u[i] > 0x7e)
			return false;
	return true;
}

static size_t make_key(uint8_t out[KEY_MAX], uint32_t account, const char *uidl, size_t n)
{
	mk__store_be32(out, account);
	memcpy(out + 4, uidl, n);
	return 4 + n;
}

static void encode(uint8_t out[VAL_LEN], const struct mk_store_pop3 *r)
{
	uint8_t *p = out;
	*p++ = MK__STORE_VALUE_V1;
	memcpy(p, r->sha, MK_STORE_SHA_LEN);
	p += MK_STORE_SHA_LEN;
	mk__store_be64(p, r->size);
	p += 8;
	mk__store_be64(p, (uint64_t)r->first_seen);
	p += 8;
	mk__store_be32(p, r->uid);
	p += 4;
	mk__store_be64(p, (uint64_t)r->deleted_at);
}

static int decode(const MDB_val *key, const MDB_val *val, struct mk_store_pop3 *r)
{
	memset(r, 0, sizeof(*r));
	if (key->mv_size < 5 || key->mv_size > KEY_MAX || val->mv_size != VAL_LEN)
		return MK_ECORRUPT;
	const uint8_t *k = key->mv_data, *p = val->mv_data;
	if (!uidl_ok((const char *)k + 4, key->mv_size - 4) || p[0] != MK__STORE_VALUE_V1)
		return MK_ECORRUPT;
	r->account = mk__store_rd32(k);
	memcpy(r->uidl, k + 4, key->mv_size - 4);
	r->uidl[key->mv_size - 4] = '\0';
	p++;
	memcpy(r->sha, p, MK_STORE_SHA_LEN);
	p += MK_STORE_SHA_LEN;
	r->size = mk__store_rd64(p);
	p += 8;
	r->first_seen = (int64_t)mk__store_rd64(p);
	p += 8;
	r->uid = mk__store_rd32(p);
	p += 4;
	r->deleted_at = (int64_t)mk__store_rd64(p);
	return 0;
}

int mk_store_pop3_get(struct mk_store *st, uint32_t account, const char *uidl, struct mk_store_pop3 *rec_r)
{
	size_t n = strlen(uidl);
	if (!uidl_ok(uidl, n))
		return MK_EINVAL;
	uint8_t k[KEY_MAX];
	MDB_val key = {make_key(k, account, uidl, n), k}, val;
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	int rc = mdb_get(txn, st->pop3_uidl, &key, &val);
	if (rc == 0)
		ret = decode(&key, &val, rec_r);
	else
		ret = rc == MDB_NOTFOUND ? MK_ENOTFOUND : mk__store_err(rc);
	mk__store_txn_abort(st, txn);
	return ret;
}

int mk_store_pop3_list(struct mk_store *st, uint32_t account,
		       int (*cb)(void *ud, const struct mk_store_pop3 *rec), void *ud)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->pop3_uidl, &c);
	if (rc != 0) {
		mk__store_txn_abort(st, txn);
		return mk__store_err(rc);
	}
	uint8_t k[4];
	mk__store_be32(k, account);
	MDB_val key = {4, k}, val;
	struct mk_store_pop3 rec;
	for (rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
		if (key.mv_size < 4 || mk__store_rd32(key.mv_data) != account)
			break;
		if (decode(&key, &val, &rec) < 0) {
			ret = MK_ECORRUPT;
			break;
		}
		ret = cb(ud, &rec);
		if (ret != 0)
			break;
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		ret = mk__store_err(rc);
	mdb_cursor_close(c);
	mk__store_txn_abort(st, txn);
	return ret > 0 ? 0 : ret;
}

int mk_store_batch_put_pop3(struct mk_store_batch *b, const struct mk_store_pop3 *rec)
{
	size_t n = strnlen(rec->uidl, sizeof(rec->uidl));
	if (n >= sizeof(rec->uidl) || !uidl_ok(rec->uidl, n) || rec->uid == 0)
		return MK_EINVAL;
	struct mk__store_op *op = mk__store_batch_op(b, MK__STORE_OP_POP3);
	op->u.pop3 = *rec;
	return 0;
}

int mk__store_pop3_apply(struct mk_store *st, MDB_txn *txn, const struct mk_store_pop3 *rec)
{
	uint8_t k[KEY_MAX], v[VAL_LEN];
	MDB_val key = {make_key(k, rec->account, rec->uidl, strlen(rec->uidl)), k};
	encode(v, rec);
	MDB_val val = {VAL_LEN, v};
	return mk__store_err(mdb_put(txn, st->pop3_uidl, &key, &val, 0));
}

struct mark_ctx {
	uint32_t account;
	const char *const *uidls;
	size_t n;
	int64_t when;
};

static int mark_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	struct mark_ctx *mc = ud;
	for (size_t i = 0; i < mc->n; i++) {
		uint8_t k[KEY_MAX];
		MDB_val key = {make_key(k, mc->account, mc->uidls[i], strlen(mc->uidls[i])), k}, val;
		int rc = mdb_get(txn, st->pop3_uidl, &key, &val);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc != 0)
			return mk__store_err(rc);
		struct mk_store_pop3 rec;
		int ret = decode(&key, &val, &rec);
		if (ret < 0)
			return ret;
		rec.deleted_at = mc->when;
		ret = mk__store_pop3_apply(st, txn, &rec);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int mk_store_pop3_mark_deleted(struct mk_store *st, uint32_t account, const char *const *uidls, size_t n,
			       int64_t when)
{
	for (size_t i = 0; i < n; i++)
		if (!uidl_ok(uidls[i], strlen(uidls[i])))
			return MK_EINVAL;
	if (n == 0)
		return 0;
	struct mark_ctx mc = {account, uidls, n, when};
	return mk__store_write(st, mark_txn, &mc, false);
}
