/* The table renames of issue 8 point 4 keep the data, on SQLite and (with
 * the argument "pg") PostgreSQL: a database written by the old schema
 * (auth_principals, auth_certs, idem_records, secure_elements,
 * security_domains, as the released migrations created them) is migrated
 * by the current code (authstore_new, idem_migrate, tsm_registry_migrate),
 * after which every row is found through the stores' own calls under the
 * new names (host_principals, host_certs, host_idem_records,
 * tsm_secure_elements, tsm_security_domains) and the old names are gone. */
#include "db/authstore.h"
#include "db/db.h"
#include "db/idem.h"
#include "db/sec_testutil.h"
#include "tsm/registry.h"

#include <time.h>

#define RESET_SQL                                                                                \
    "DROP TABLE IF EXISTS host_principal_msisdns; DROP TABLE IF EXISTS host_certs;"              \
    " DROP TABLE IF EXISTS host_tokens; DROP TABLE IF EXISTS host_principals;"                   \
    " DROP TABLE IF EXISTS host_idem_records; DROP TABLE IF EXISTS tsm_security_domains; DROP "  \
    "TABLE IF EXISTS tsm_mnos;"                                                                  \
    " DROP TABLE IF EXISTS tsm_services; DROP TABLE IF EXISTS tsm_instances;"                    \
    " DROP TABLE IF EXISTS tsm_comms; DROP TABLE IF EXISTS tsm_ops; DROP TABLE IF EXISTS "       \
    "tsm_webhooks; DROP TABLE IF EXISTS tsm_sd_cards; DROP TABLE IF EXISTS tsm_dm_tokens; DROP " \
    "TABLE IF EXISTS tsm_dm_counters; DROP TABLE IF EXISTS tsm_card_apps; DROP TABLE IF EXISTS " \
    "tsm_sd_relays;"                                                                             \
    " DROP TABLE IF EXISTS tsm_secure_elements; DROP TABLE IF EXISTS auth_certs;"                \
    " DROP TABLE IF EXISTS auth_tokens; DROP TABLE IF EXISTS auth_principals;"                   \
    " DROP TABLE IF EXISTS idem_records; DROP TABLE IF EXISTS security_domains;"                 \
    " DROP TABLE IF EXISTS secure_elements; DROP TABLE IF EXISTS host_keys;"                     \
    " DROP FUNCTION IF EXISTS tsm_se_notify() CASCADE;"                                          \
    " DROP FUNCTION IF EXISTS tsm_se_notify_all() CASCADE;"                                      \
    " DROP FUNCTION IF EXISTS auth_changed_notify() CASCADE;"                                    \
    " DELETE FROM schema_migrations WHERE service IN ('auth', 'idem', 'tsm', 'keystore')"

/* The released schema, as the migrations before the renames created it
 * (their trigger-only PostgreSQL versions are recorded as applied). */
static const struct db_migration old_auth[] = {
    {1,
     "CREATE TABLE auth_principals (id INTEGER PRIMARY KEY, kind BIGINT NOT NULL,"
     " name TEXT NOT NULL, created_at BIGINT NOT NULL, disabled BIGINT NOT NULL DEFAULT 0,"
     " UNIQUE (kind, name));"
     "CREATE TABLE auth_tokens (id INTEGER PRIMARY KEY,"
     " principal_id BIGINT NOT NULL REFERENCES auth_principals (id),"
     " token_hash BLOB NOT NULL UNIQUE, hint TEXT NOT NULL, label TEXT NOT NULL,"
     " created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,"
     " revoked_at BIGINT NOT NULL DEFAULT 0, last_used_at BIGINT NOT NULL DEFAULT 0);"
     "CREATE INDEX auth_tokens_principal ON auth_tokens (principal_id);"
     "CREATE TABLE auth_certs (cert_id TEXT PRIMARY KEY,"
     " principal_id BIGINT NOT NULL REFERENCES auth_principals (id),"
     " created_at BIGINT NOT NULL)",
     NULL},
    {2, "SELECT 1", NULL},
    {3, "SELECT 1", NULL},
};

static const struct db_migration old_idem[] = {
    {1,
     "CREATE TABLE idem_records (principal_id BIGINT NOT NULL, idem_key TEXT NOT NULL,"
     " request_hash BLOB NOT NULL, status BIGINT NOT NULL, content_type TEXT NOT NULL,"
     " body BLOB NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (principal_id, idem_key));"
     "CREATE INDEX idem_records_created ON idem_records (created_at)",
     NULL},
};

static const struct db_migration old_tsm[] = {
    {1,
     "CREATE TABLE secure_elements (id INTEGER PRIMARY KEY, cin TEXT NOT NULL UNIQUE,"
     " se_type TEXT NOT NULL, mno TEXT NOT NULL, msisdn TEXT UNIQUE, imsi TEXT UNIQUE,"
     " profile_id TEXT NOT NULL, gp_version TEXT NOT NULL, jc_version TEXT NOT NULL,"
     " cert_level TEXT NOT NULL, expiry TEXT NOT NULL, free_memory BIGINT NOT NULL,"
     " master_key_index BIGINT NOT NULL, created_at BIGINT NOT NULL);"
     "CREATE INDEX secure_elements_mno ON secure_elements (mno, id);"
     "CREATE INDEX secure_elements_type ON secure_elements (se_type, id);"
     "CREATE TABLE security_domains (id INTEGER PRIMARY KEY,"
     " se_id BIGINT NOT NULL REFERENCES secure_elements (id), aid TEXT NOT NULL,"
     " owner_sp BIGINT NOT NULL, privileges TEXT NOT NULL, lcs TEXT NOT NULL,"
     " created_at BIGINT NOT NULL, UNIQUE (se_id, aid));"
     "CREATE INDEX security_domains_owner ON security_domains (owner_sp, se_id);",
     NULL},
    {2, "SELECT 1", NULL},
    {3, "SELECT 1", NULL},
};

static void test_renames_keep_data(void **state)
{
    struct sec_t *t = sec_t_open(RESET_SQL);
    struct authstore *as = NULL;
    struct authstore_principal p;
    struct idem_rec rec;
    struct tsm_se se;
    struct tsm_sd sd;
    struct db_conn *c = NULL;
    int64_t now = (int64_t)time(NULL);

    (void)state;
    assert_int_equal(db_migrate(t->db, "auth", old_auth, 3), OT_OK);
    assert_int_equal(db_migrate(t->db, "idem", old_idem, 1), OT_OK);
    assert_int_equal(db_migrate(t->db, "tsm", old_tsm, 3), OT_OK);
    sec_t_exec(t->db, "INSERT INTO auth_principals (id, kind, name, created_at, disabled)"
                      " VALUES (7, 2, 'old-sp', 1700000000, 0)");
    sec_t_exec(t->db, "INSERT INTO auth_certs (cert_id, principal_id, created_at)"
                      " VALUES ('CN=old-sp', 7, 1700000000)");
    sec_t_run(t->db,
              sec_t_is_pg()
                  ? "INSERT INTO idem_records VALUES (7, 'k-old', decode(repeat('ab', 32),"
                    " 'hex'), 201, 'application/json', convert_to('{\"x\":1}', 'UTF8'),"
                    " $1)"
                  : "INSERT INTO idem_records VALUES (7, 'k-old', zeroblob(32), 201,"
                    " 'application/json', CAST('{\"x\":1}' AS BLOB), $1)",
              1, &now);
    sec_t_exec(t->db, "INSERT INTO secure_elements (id, cin, se_type, mno, msisdn, imsi,"
                      " profile_id, gp_version, jc_version, cert_level, expiry, free_memory,"
                      " master_key_index, created_at) VALUES (3, 'A0000042', 'UICC', 'mno-a',"
                      " '33600000042', '208010000000042', 'p1', '2.2.1', '3.0.4', 'EAL5+',"
                      " '2030-12-31', 1000, 1, 1700000000)");
    sec_t_exec(t->db, "INSERT INTO security_domains (se_id, aid, owner_sp, privileges, lcs,"
                      " created_at) VALUES (3, 'A000000151000042', 7, '800000', 'SELECTABLE',"
                      " 1700000000)");

    /* The current code migrates. */
    assert_int_equal(authstore_new(t->db, &as), OT_OK);
    assert_int_equal(idem_migrate(t->db), OT_OK);
    assert_int_equal(tsm_registry_migrate(t->db), OT_OK);

    assert_int_equal(authstore_get_principal(as, 7, &p), OT_OK);
    assert_string_equal(p.name, "old-sp");
    assert_int_equal(authstore_verify_cert(as, "CN=old-sp", &p), OT_OK);
    assert_int_equal(p.id, 7);
    memset(&rec, 0, sizeof rec);
    assert_int_equal(idem_get(t->db, 7, "k-old", &rec), OT_OK);
    assert_int_equal(rec.status, 201);
    assert_int_equal(rec.body_len, 7);
    assert_memory_equal(rec.body, "{\"x\":1}", 7);
    idem_rec_clear(&rec);
    assert_int_equal(tsm_registry_get(t->db, TSM_BY_MSISDN, "33600000042", &se), OT_OK);
    assert_string_equal(se.cin, "A0000042");
    assert_int_equal(db_acquire(t->db, &c), OT_OK);
    assert_int_equal(tsm_registry_sd_get(c, se.id, "A000000151000042", &sd), OT_OK);
    db_release(c);
    assert_int_equal(sd.owner_sp, 7);
    /* The new tables are the only ones. */
    assert_int_equal(sec_t_int(t->db, "SELECT COUNT(*) FROM host_principals", 0, NULL), 1);
    assert_int_equal(sec_t_int(t->db, "SELECT COUNT(*) FROM tsm_security_domains", 0, NULL), 1);
    assert_int_equal(
        sec_t_int(t->db,
                  sec_t_is_pg() ? "SELECT COUNT(*) FROM information_schema.tables WHERE"
                                  " table_name IN ('auth_principals', 'auth_certs', 'auth_tokens',"
                                  " 'idem_records', 'secure_elements', 'security_domains')"
                                : "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND"
                                  " name IN ('auth_principals', 'auth_certs', 'auth_tokens',"
                                  " 'idem_records', 'secure_elements', 'security_domains')",
                  0, NULL),
        0);
    authstore_free(as);
    sec_t_close(t);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_renames_keep_data),
    };

    sec_t_select(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
