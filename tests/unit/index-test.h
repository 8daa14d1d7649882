/* Direct access to a closed store's index for the unit tests that damage it
 * (test-corrupt, test-check-probe): open index.mdb with LMDB, one write
 * transaction, commit or abort; and the SHA-256 that names chunks.
 * Include after engine-test.h (DIE). */
#ifndef VDISK_INDEX_TEST_H
#define VDISK_INDEX_TEST_H

#include <lmdb.h>
#include <openssl/evp.h>

struct et_idx {
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi chunks, map, volumes, meta;
};

/* Opens STORE/index.mdb (the store must be closed) and begins a write
 * transaction; dies on failure. */
static ET_UNUSED void et_idx_open(const char *store, struct et_idx *x)
{
	char path[4300];
	int rc;

	snprintf(path, sizeof(path), "%s/index.mdb", store);
	if ((rc = mdb_env_create(&x->env)) || (rc = mdb_env_set_maxdbs(x->env, 16)) ||
	    (rc = mdb_env_set_mapsize(x->env, 1ull << 30)) ||
	    (rc = mdb_env_open(x->env, path, MDB_NOSUBDIR, 0644)) ||
	    (rc = mdb_txn_begin(x->env, NULL, 0, &x->txn)) ||
	    (rc = mdb_dbi_open(x->txn, "chunks", 0, &x->chunks)) ||
	    (rc = mdb_dbi_open(x->txn, "map", 0, &x->map)) ||
	    (rc = mdb_dbi_open(x->txn, "volumes", 0, &x->volumes)) ||
	    (rc = mdb_dbi_open(x->txn, "meta", 0, &x->meta)))
		DIE("lmdb %s: %s", path, mdb_strerror(rc));
}

/* Commits (COMMIT) or aborts the transaction and closes the index. */
static ET_UNUSED void et_idx_close(struct et_idx *x, int commit)
{
	int rc = 0;
	if (commit)
		rc = mdb_txn_commit(x->txn);
	else
		mdb_txn_abort(x->txn);
	if (rc)
		DIE("lmdb commit: %s", mdb_strerror(rc));
	mdb_env_close(x->env);
}

static ET_UNUSED void et_sha256(const void *p, size_t n, uint8_t out[32])
{
	unsigned len = 32;
	if (!EVP_Digest(p, n, out, &len, EVP_sha256(), NULL))
		DIE("EVP_Digest failed");
}

#endif /* VDISK_INDEX_TEST_H */
