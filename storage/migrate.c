/* SPDX-License-Identifier: MIT */
/*
 * migrate.c - schema upgrades. meta.schema_version says which layout a
 * store has; mk_store_open() refuses a newer one and calls
 * mk__store_migrate() for an older one, inside the open transaction, so a
 * migration is all-or-nothing (and replayable on MDB_MAP_FULL: a step
 * must depend only on what it reads in `txn`). Each step takes the store
 * from `from` to `from + 1`. Schema 1 is the first: the table is empty.
 * A step must not rewrite a value it cannot decode: it returns
 * MK_ECORRUPT and the store stays as it was.
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "store_int.h"

struct migration {
	uint32_t from; /* upgrades from this version to from + 1 */
	int (*run)(struct mk_store *st, MDB_txn *txn);
};

static const struct migration migrations[] = {
	/* {1, migrate_1_to_2}, */
	{0, NULL},
};

int mk__store_migrate(struct mk_store *st, MDB_txn *txn, uint32_t from, char **error_r)
{
	for (uint32_t v = from; v < MK__STORE_SCHEMA_VERSION; v++) {
		const struct migration *m = NULL;
		for (size_t i = 0; i < sizeof(migrations) / sizeof(migrations[0]); i++)
			if (migrations[i].run != NULL && migrations[i].from == v)
				m = &migrations[i];
		if (m == NULL) {
			*error_r = mk_xasprintf("store %s has schema %u, which this mailkeep cannot upgrade", st->dir,
						v);
			return MK_ECONFIG;
		}
		int ret = m->run(st, txn);
		if (ret < 0) {
			*error_r = mk_xasprintf("store %s: upgrade from schema %u failed: %s", st->dir, v,
						mk_strerror(ret));
			return ret;
		}
	}
	return 0;
}
