/* The TSM's SE registry in storage: tables tsm_secure_elements and
 * tsm_security_domains ("tsm" migration set), bulk insert with conflict
 * classification, lookups, keyset pagination, SD assignment.
 *
 * All functions take a borrowed struct db (thread-safe pool) and acquire
 * their own connection, except where a struct db_conn is passed (the caller's
 * transaction). No key material is stored in these tables: the import's key
 * sets go to the key store (keystore.h), in the import's transaction.
 */
#ifndef OT_TSM_REGISTRY_H
#define OT_TSM_REGISTRY_H

#include "core/err.h"
#include "db/db.h"
#include "db/keystore.h"
#include "tsm/serec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TSM_AID_MIN     ((size_t)5) /* bytes, ISO 7816-4 */
#define TSM_AID_MAX     ((size_t)16)
#define TSM_LIST_MAX    1000u
#define TSM_SD_LIST_DEF 100u  /* default page of the SD listing */
#define TSM_SD_LIST_MAX 1000u /* largest page of the SD listing */

/* NOTIFY channel of SE changes and deletions (PostgreSQL), raised by
 * triggers of the "tsm" migrations: the payload is the old CIN of a changed
 * or deleted SE, or TSM_SE_ALL after a TRUNCATE. */
#define TSM_SE_CHANNEL "tsm_se"
#define TSM_SE_ALL     "*"

/* Migrations of the "tsm" set (tsm_registry_migrate applies them). */
#define TSM_REGISTRY_NMIGRATIONS 8
extern const struct db_migration tsm_registry_migrations[TSM_REGISTRY_NMIGRATIONS];
extern const size_t tsm_registry_nmigrations;

ot_err tsm_registry_migrate(struct db *db);

/* Outcome of importing one row. */
enum tsm_ins {
    TSM_INS_NEW,      /* inserted */
    TSM_INS_SAME,     /* the same SE is registered already (idempotent re-import) */
    TSM_INS_CONFLICT, /* the CIN is registered with other data */
    TSM_INS_MSISDN,   /* the MSISDN belongs to another SE */
    TSM_INS_IMSI,     /* the IMSI belongs to another SE */
};

/* Rows per multi-row INSERT of tsm_registry_import. */
#define TSM_REGISTRY_CHUNK_MAX 500u

/* Key-store names of an SE's key sets (owner "se:<cin>", version = kvn,
 * value enc || mac || dek). */
#define TSM_KEYSET_ISD "isd.keyset"
#define TSM_KEYSET_CSD "central_sd.keyset"

/* Imports recs[0..n) inside the caller's open transaction on c, stamping
 * created_at = now. Each row gets exactly the outcome it would get if the
 * rows were inserted one at a time, in order, in that transaction: res[i]
 * (capacity n) classifies row i, and a row that repeats the cin, msisdn or
 * imsi of an earlier row of the batch meets that row as it would meet one
 * stored before (SAME, CONFLICT, MSISDN or IMSI). Never fails on a
 * duplicate. recs[i].se.id and created_at are set for NEW and SAME.
 *
 * Rows go in multi-row INSERT statements of at most TSM_REGISTRY_CHUNK_MAX
 * rows (a statement holds no two rows sharing a key); rows they skip are
 * classified with one query or two each.
 *
 * The key sets (isd, csd) of every NEW or SAME row are then stored through
 * ks on c, in the same transaction (keystore_put_tx), under the names
 * above; a key version stored already is left as it is (re-import). ks may
 * be NULL when no row carries a key set.
 *
 * Errors: OT_E_ARG (NULL c, recs or res with n > 0; NULL ks with a key set
 * to store: checked before anything is written); storage and key-store
 * errors, after which the caller must roll back: then none of the batch's
 * rows and keys are stored. Not thread-safe on one c. */
ot_err tsm_registry_import(struct db_conn *c, struct keystore *ks, struct tsm_serec *recs, size_t n,
                           enum tsm_ins *res);

enum tsm_by {
    TSM_BY_CIN,
    TSM_BY_MSISDN,
    TSM_BY_IMSI,
};
/* Looks one SE up by a normalised key. OT_E_NOT_FOUND if none. */
ot_err tsm_registry_get(struct db *db, enum tsm_by by, const char *key, struct tsm_se *out);
/* The same on the caller's connection. */
ot_err tsm_registry_get_on(struct db_conn *c, enum tsm_by by, const char *key, struct tsm_se *out);

/* Keyset page of SEs with id > after_id, optional filters (NULL: any), at
 * most limit (1..TSM_LIST_MAX) rows into out (capacity limit). *more tells
 * whether rows follow. */
ot_err tsm_registry_list(struct db *db, int64_t after_id, const char *mno, const char *se_type,
                         unsigned limit, struct tsm_se *out, size_t *n, bool *more);

/* A security domain on an SE. */
struct tsm_sd {
    int64_t id;
    int64_t se_id;
    char aid[TSM_AID_MAX * 2 + 1]; /* upper-case hex */
    int64_t owner_sp;              /* principal id of the owning service provider */
    char privileges[7];            /* 3 bytes GP privileges (GPCS 11.1.2), hex */
    char lcs[16];                  /* INSTALLED, SELECTABLE, PERSONALIZED, LOCKED */
    int64_t created_at;
};

/* One keyset page of the SDs of se_id, ordered by AID: those owned by
 * owner_sp (0: every owner) whose AID sorts after after_aid (NULL or "":
 * the first page; else the last AID of the previous page, upper-case hex),
 * at most limit (1..TSM_SD_LIST_MAX, else OT_E_RANGE) into out (capacity
 * limit). *more tells whether rows follow. SDs assigned between two pages
 * appear on a later page when their AID sorts after the cursor; no row is
 * skipped or answered twice. OT_E_ARG: after_aid longer than an AID. */
ot_err tsm_registry_sd_list(struct db *db, int64_t se_id, int64_t owner_sp, const char *after_aid,
                            unsigned limit, struct tsm_sd *out, size_t *n, bool *more);
/* One SD by AID. OT_E_NOT_FOUND if none (whoever owns it: the caller's
 * authorisation check decides what to say). */
ot_err tsm_registry_sd_get(struct db_conn *c, int64_t se_id, const char *aid, struct tsm_sd *out);
/* Assigns sd (se_id, aid, owner_sp, privileges, lcs) inside the caller's
 * transaction. *created: true when new; false when the same assignment
 * exists (sd is then filled from storage). OT_E_CONFLICT when the AID exists
 * on that SE with another owner or other attributes. */
ot_err tsm_registry_sd_assign(struct db_conn *c, struct tsm_sd *sd, bool *created);

#endif
