/* SE registry storage: bulk import (classification, duplicates inside a
 * batch, chunking, key sets in the batch's transaction), lookups, keyset
 * pagination with filters, SD assignment and per-owner listing. Runs on
 * SQLite, and on PostgreSQL with the argument "pg" (tests/pg/with_pg.sh). */
#include "tsm/registry.h"

#include "db/db.h"
#include "db/keystore.h"
#include "db/sec_testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESET_SQL                                                                                \
    "DROP TABLE IF EXISTS tsm_security_domains; DROP TABLE IF EXISTS tsm_mnos;"                  \
    " DROP TABLE IF EXISTS tsm_services; DROP TABLE IF EXISTS tsm_instances;"                    \
    " DROP TABLE IF EXISTS tsm_comms; DROP TABLE IF EXISTS tsm_ops; DROP TABLE IF EXISTS "       \
    "tsm_webhooks; DROP TABLE IF EXISTS tsm_sd_cards; DROP TABLE IF EXISTS tsm_dm_tokens; DROP " \
    "TABLE IF EXISTS tsm_dm_counters; DROP TABLE IF EXISTS tsm_card_apps; DROP TABLE IF EXISTS " \
    "tsm_sd_relays; DROP TABLE IF EXISTS "                                                       \
    "tsm_secure_elements;"                                                                       \
    " DROP TABLE IF EXISTS security_domains; DROP TABLE IF EXISTS secure_elements;"              \
    " DROP TABLE IF EXISTS host_keys; DELETE FROM schema_migrations WHERE service"               \
    " IN ('tsm', 'keystore')"
#define KEK_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

struct fix {
    struct sec_t *t;
    struct db *db;
    struct keystore *ks;
    char kek_path[600];
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    struct keystore_cfg cfg;
    FILE *kf = NULL;

    assert_non_null(f);
    f->t = sec_t_open(RESET_SQL);
    f->db = f->t->db;
    assert_int_equal(tsm_registry_migrate(f->db), OT_OK);
    assert_int_equal(tsm_registry_migrate(f->db), OT_OK); /* idempotent */
    snprintf(f->kek_path, sizeof(f->kek_path), "%s/kek", f->t->dir[0] ? f->t->dir : "/tmp");
    kf = fopen(f->kek_path, "wb");
    assert_non_null(kf);
    assert_int_equal(fputs(KEK_HEX, kf) >= 0, 1);
    assert_int_equal(fclose(kf), 0);
    assert_int_equal(chmod(f->kek_path, 0600), 0);
    memset(&cfg, 0, sizeof(cfg));
    cfg.backend = KEYSTORE_FILE;
    cfg.kek_path = f->kek_path;
    assert_int_equal(keystore_open(f->db, &cfg, &f->ks), OT_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;

    keystore_free(f->ks);
    (void)unlink(f->kek_path);
    sec_t_close(f->t);
    free(f);
    return 0;
}

static void mk(struct tsm_se *se, const char *cin, const char *type, const char *mno,
               const char *msisdn, const char *imsi)
{
    memset(se, 0, sizeof(*se));
    snprintf(se->cin, sizeof(se->cin), "%s", cin);
    snprintf(se->se_type, sizeof(se->se_type), "%s", type);
    snprintf(se->mno, sizeof(se->mno), "%s", mno);
    snprintf(se->msisdn, sizeof(se->msisdn), "%s", msisdn);
    snprintf(se->imsi, sizeof(se->imsi), "%s", imsi);
    snprintf(se->profile_id, sizeof(se->profile_id), "p1");
    snprintf(se->gp_version, sizeof(se->gp_version), "2.2.1");
    snprintf(se->jc_version, sizeof(se->jc_version), "3.0.4");
    snprintf(se->cert_level, sizeof(se->cert_level), "EAL5+");
    snprintf(se->expiry, sizeof(se->expiry), "2030-12-31");
    se->free_memory = 1000;
    se->master_key_index = 1;
}

/* Imports recs[0..n) as one batch in its own transaction. */
static ot_err import_tx(struct fix *f, struct tsm_serec *recs, size_t n, enum tsm_ins *res)
{
    struct db_conn *c = NULL;
    ot_err err;

    assert_int_equal(db_acquire(f->db, &c), OT_OK);
    assert_int_equal(db_begin(c), OT_OK);
    err = tsm_registry_import(c, f->ks, recs, n, res);
    if (err == OT_OK) {
        assert_int_equal(db_commit(c), OT_OK);
    } else {
        assert_int_equal(db_rollback(c), OT_OK);
    }
    db_release(c);
    return err;
}

static enum tsm_ins insert(struct fix *f, struct tsm_se *se)
{
    struct tsm_serec rec;
    enum tsm_ins res = TSM_INS_CONFLICT;

    memset(&rec, 0, sizeof(rec));
    rec.se = *se;
    assert_int_equal(import_tx(f, &rec, 1, &res), OT_OK);
    *se = rec.se;
    return res;
}

/* Every SE as "cin msisdn imsi free_memory" lines, by cin (no ids: they
 * differ between runs). */
static char *dump(struct db *db)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    size_t cap = 1u << 20;
    size_t len = 0;
    char *out = malloc(cap);

    assert_non_null(out);
    out[0] = '\0';
    assert_int_equal(db_acquire(db, &c), OT_OK);
    assert_int_equal(db_prepare(c,
                                "SELECT cin, COALESCE(msisdn, '-'), COALESCE(imsi, '-'),"
                                " free_memory FROM tsm_secure_elements ORDER BY cin",
                                &st),
                     OT_OK);
    for (;;) {
        const char *cin = NULL;
        const char *msisdn = NULL;
        const char *imsi = NULL;
        int64_t mem = 0;
        int w;

        assert_int_equal(db_step(st, &row), OT_OK);
        if (!row) {
            break;
        }
        assert_int_equal(db_col_text(st, 0, &cin), OT_OK);
        assert_int_equal(db_col_text(st, 1, &msisdn), OT_OK);
        assert_int_equal(db_col_text(st, 2, &imsi), OT_OK);
        assert_int_equal(db_col_int64(st, 3, &mem), OT_OK);
        w = snprintf(out + len, cap - len, "%s %s %s %lld\n", cin, msisdn, imsi, (long long)mem);
        assert_true(w > 0 && (size_t)w < cap - len);
        len += (size_t)w;
    }
    db_reset(st);
    db_release(c);
    return out;
}

static void wipe_rows(struct db *db)
{
    sec_t_exec(db, "DELETE FROM tsm_secure_elements");
    sec_t_exec(db, "DELETE FROM host_keys");
}

/* One row of a classification table. */
struct row {
    const char *cin;
    const char *msisdn;
    const char *imsi;
    int64_t mem;
    enum tsm_ins want;
};

static void mk_recs(const struct row *rows, size_t n, struct tsm_serec *recs)
{
    memset(recs, 0, n * sizeof(*recs));
    for (size_t i = 0; i < n; i++) {
        mk(&recs[i].se, rows[i].cin, "UICC", "mno-a", rows[i].msisdn, rows[i].imsi);
        recs[i].se.free_memory = rows[i].mem;
    }
}

/* Runs rows (a) one row per batch and (b) all in one batch, on a table
 * holding pre[0..npre) first: both must give want for every row and leave
 * the same table. */
static void check_both_ways(struct fix *f, const struct row *pre, size_t npre,
                            const struct row *rows, size_t n)
{
    struct tsm_serec *recs = calloc(n + npre, sizeof(*recs));
    enum tsm_ins *res = calloc(n + npre, sizeof(*res));
    char *one_by_one = NULL;
    char *batched = NULL;

    assert_non_null(recs);
    assert_non_null(res);
    for (int pass = 0; pass < 2; pass++) {
        wipe_rows(f->db);
        if (npre > 0) {
            mk_recs(pre, npre, recs);
            assert_int_equal(import_tx(f, recs, npre, res), OT_OK);
        }
        mk_recs(rows, n, recs);
        if (pass == 0) {
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(import_tx(f, &recs[i], 1, &res[i]), OT_OK);
            }
        } else {
            assert_int_equal(import_tx(f, recs, n, res), OT_OK);
        }
        for (size_t i = 0; i < n; i++) {
            if (res[i] != rows[i].want) {
                fail_msg("%s, row %zu (%s): %d, want %d", pass ? "one batch" : "row by row", i,
                         rows[i].cin, res[i], rows[i].want);
            }
            if (res[i] == TSM_INS_NEW || res[i] == TSM_INS_SAME) {
                assert_true(recs[i].se.id > 0);
            }
        }
        if (pass == 0) {
            one_by_one = dump(f->db);
        } else {
            batched = dump(f->db);
        }
    }
    assert_string_equal(batched, one_by_one);
    free(one_by_one);
    free(batched);
    free(recs);
    free(res);
}

static void test_insert_classify(void **state)
{
    struct fix *f = *state;
    static const struct row rows[] = {
        {"AA000001", "331", "", 1000, TSM_INS_NEW},      /* msisdn only */
        {"AA000002", "", "2080001", 1000, TSM_INS_NEW},  /* imsi only */
        {"AA000003", "", "", 1000, TSM_INS_NEW},         /* neither: NULLs never clash */
        {"AA000004", "", "", 1000, TSM_INS_NEW},         /* */
        {"AA000001", "331", "", 1000, TSM_INS_SAME},     /* re-import */
        {"AA000001", "331", "", 2000, TSM_INS_CONFLICT}, /* other data */
        {"AA000005", "331", "", 1000, TSM_INS_MSISDN},   /* msisdn taken */
        {"AA000006", "", "2080001", 1000, TSM_INS_IMSI}, /* imsi taken */
    };
    struct tsm_se got;

    check_both_ways(f, NULL, 0, rows, sizeof(rows) / sizeof(rows[0]));
    assert_int_equal(tsm_registry_get(f->db, TSM_BY_MSISDN, "331", &got), OT_OK);
    assert_string_equal(got.cin, "AA000001");
    assert_int_equal(got.free_memory, 1000);
    assert_string_equal(got.imsi, "");
    assert_int_equal(tsm_registry_get(f->db, TSM_BY_IMSI, "2080001", &got), OT_OK);
    assert_string_equal(got.cin, "AA000002");
    assert_int_equal(tsm_registry_get(f->db, TSM_BY_CIN, "AA000004", &got), OT_OK);
    assert_int_equal(tsm_registry_get(f->db, TSM_BY_CIN, "AA000005", &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_registry_get(f->db, TSM_BY_MSISDN, "332", &got), OT_E_NOT_FOUND);
}

/* Duplicates inside one batch, against rows stored before it. */
static void test_batch_duplicates(void **state)
{
    struct fix *f = *state;
    static const struct row pre[] = {
        {"EE000001", "400", "2620400", 1000, TSM_INS_NEW},
    };
    static const struct row rows[] = {
        {"DD000001", "401", "", 1000, TSM_INS_NEW},           /* */
        {"DD000001", "401", "", 1000, TSM_INS_SAME},          /* the same row twice */
        {"DD000002", "", "", 1000, TSM_INS_NEW},              /* */
        {"DD000002", "", "", 2000, TSM_INS_CONFLICT},         /* same cin, other data */
        {"DD000003", "401", "", 1000, TSM_INS_MSISDN},        /* msisdn of row 0 */
        {"DD000004", "", "2620401", 1000, TSM_INS_NEW},       /* */
        {"DD000005", "402", "2620401", 1000, TSM_INS_IMSI},   /* imsi of row 5 */
        {"DD000006", "400", "", 1000, TSM_INS_MSISDN},        /* msisdn stored before */
        {"DD000006", "403", "", 1000, TSM_INS_NEW},           /* same cin, free msisdn */
        {"DD000006", "400", "", 1000, TSM_INS_CONFLICT},      /* now the cin decides */
        {"DD000007", "", "2620400", 1000, TSM_INS_IMSI},      /* imsi stored before */
        {"DD000008", "404", "", 1000, TSM_INS_NEW},           /* */
        {"DD000009", "404", "2620409", 1000, TSM_INS_MSISDN}, /* cut before this row */
        {"DD000009", "409", "2620409", 1000, TSM_INS_NEW},    /* retried with another */
        {"DD000010", "409", "2620410", 1000, TSM_INS_MSISDN}, /* and again */
        {"EE000001", "400", "2620400", 1000, TSM_INS_SAME},   /* stored before */
        {"EE000001", "400", "2620400", 1001, TSM_INS_CONFLICT},
        {"DD000002", "", "", 1000, TSM_INS_SAME},
    };

    check_both_ways(f, pre, 1, rows, sizeof(rows) / sizeof(rows[0]));
}

/* More rows than one statement holds, with repeats at many distances (in
 * the same statement, across statements and across runs): the batch ends
 * exactly as row by row. */
static void test_batch_chunks(void **state)
{
    struct fix *f = *state;
    const size_t n = 2 * TSM_REGISTRY_CHUNK_MAX + 301;
    struct row *rows = calloc(n, sizeof(*rows));
    char(*cins)[16] = calloc(n, sizeof(*cins));
    char(*msisdns)[16] = calloc(n, sizeof(*msisdns));
    char(*imsis)[16] = calloc(n, sizeof(*imsis));
    size_t news = 0;

    assert_non_null(rows);
    assert_non_null(cins);
    assert_non_null(msisdns);
    assert_non_null(imsis);
    for (size_t i = 0; i < n; i++) {
        size_t k = i;

        /* Every 37th row repeats the cin of a row 1..600 rows back, every
         * 53rd the msisdn, every 71st the imsi; every 89th differs in data. */
        if (i % 37 == 0 && i > 0) {
            k = i - 1 - (i * 7) % (i < 600 ? i : 600);
        }
        snprintf(cins[i], sizeof(cins[i]), "FF%06zu", k);
        snprintf(msisdns[i], sizeof(msisdns[i]), "49%07zu",
                 (i % 53 == 0 && i > 0) ? i - 1 - (i * 3) % (i < 600 ? i : 600) : i);
        snprintf(imsis[i], sizeof(imsis[i]), "26201%07zu",
                 (i % 71 == 0 && i > 0) ? i - 1 - (i * 5) % (i < 600 ? i : 600) : i);
        rows[i].cin = cins[i];
        rows[i].msisdn = msisdns[i];
        rows[i].imsi = imsis[i];
        rows[i].mem = 1000 + (i % 89 == 0 ? (int64_t)i : 0);
    }
    /* The expected outcomes come from the row-by-row pass itself, which
     * check_both_ways then compares with the single batch. */
    {
        struct tsm_serec *recs = calloc(n, sizeof(*recs));
        assert_non_null(recs);
        wipe_rows(f->db);
        mk_recs(rows, n, recs);
        for (size_t i = 0; i < n; i++) {
            enum tsm_ins res = TSM_INS_NEW;

            assert_int_equal(import_tx(f, &recs[i], 1, &res), OT_OK);
            rows[i].want = res;
            news += res == TSM_INS_NEW;
        }
        free(recs);
    }
    assert_true(news > n * 9 / 10);
    assert_true(news < n);
    check_both_ways(f, NULL, 0, rows, n);
    free(rows);
    free(cins);
    free(msisdns);
    free(imsis);
}

/* Text travels unchanged whatever it holds (PostgreSQL takes a run as
 * array literals: quotes, backslashes, commas, braces, spaces and the word
 * NULL must come back as they went in). */
static void test_odd_text(void **state)
{
    struct fix *f = *state;
    static const char *const odd[] = {
        "EAL 5+", "a\"b", "back\\slash", "x,y", "{z}", "NULL", "''", " lead", "trail ", "\\\"",
    };
    const size_t n = sizeof(odd) / sizeof(odd[0]);
    struct tsm_serec recs[sizeof(odd) / sizeof(odd[0])];
    enum tsm_ins res[sizeof(odd) / sizeof(odd[0])];
    struct tsm_se got;

    memset(recs, 0, sizeof(recs));
    for (size_t i = 0; i < n; i++) {
        char cin[16];

        snprintf(cin, sizeof(cin), "OD%06zu", i);
        mk(&recs[i].se, cin, "UICC", odd[i], i % 2 ? "" : "700", "");
        snprintf(recs[i].se.msisdn, sizeof(recs[i].se.msisdn), "%s", i % 2 ? "" : cin + 2);
        snprintf(recs[i].se.profile_id, sizeof(recs[i].se.profile_id), "%s", odd[n - 1 - i]);
        snprintf(recs[i].se.cert_level, sizeof(recs[i].se.cert_level), "%s", odd[i]);
        recs[i].se.free_memory = (int64_t)i * 1000003;
    }
    assert_int_equal(import_tx(f, recs, n, res), OT_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(res[i], TSM_INS_NEW);
        assert_int_equal(tsm_registry_get(f->db, TSM_BY_CIN, recs[i].se.cin, &got), OT_OK);
        assert_true(tsm_se_same(&got, &recs[i].se));
        assert_string_equal(got.mno, odd[i]);
        assert_string_equal(got.msisdn, i % 2 ? "" : recs[i].se.cin + 2);
    }
    /* and as a re-import they are the same */
    assert_int_equal(import_tx(f, recs, n, res), OT_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(res[i], TSM_INS_SAME);
    }
}

static void set_keys(struct tsm_keyset *ks, uint8_t kvn, size_t len, uint8_t seed)
{
    memset(ks, 0, sizeof(*ks));
    ks->present = true;
    ks->kvn = kvn;
    ks->key_len = len;
    for (size_t i = 0; i < len; i++) {
        ks->enc[i] = (uint8_t)(seed + i);
        ks->mac[i] = (uint8_t)(seed + 0x40 + i);
        ks->dek[i] = (uint8_t)(seed + 0x80 + i);
    }
}

/* The stored key set equals ks; absent ks: nothing stored. */
static void check_keys(struct fix *f, const char *cin, const char *name,
                       const struct tsm_keyset *ks)
{
    char owner[64];
    uint8_t got[3 * TSM_KEY_MAX];
    size_t got_len = sizeof(got);
    uint32_t ver = 0;

    snprintf(owner, sizeof(owner), "se:%s", cin);
    if (ks == NULL) {
        assert_int_equal(keystore_get(f->ks, owner, name, 0, got, &got_len, &ver), OT_E_NOT_FOUND);
        return;
    }
    assert_int_equal(keystore_get(f->ks, owner, name, 0, got, &got_len, &ver), OT_OK);
    assert_int_equal(ver, ks->kvn);
    assert_int_equal(got_len, 3 * ks->key_len);
    assert_memory_equal(got, ks->enc, ks->key_len);
    assert_memory_equal(got + ks->key_len, ks->mac, ks->key_len);
    assert_memory_equal(got + 2 * ks->key_len, ks->dek, ks->key_len);
}

/* Key sets are stored for NEW and SAME rows only, in the batch's
 * transaction; a re-import of the same version is a no-op. */
static void test_keys(void **state)
{
    struct fix *f = *state;
    struct tsm_serec recs[5];
    struct tsm_keyset isd1;
    struct tsm_keyset csd1;
    struct tsm_keyset isd3;
    enum tsm_ins res[5];

    memset(recs, 0, sizeof(recs));
    mk(&recs[0].se, "KK000001", "UICC", "mno-a", "501", "");
    set_keys(&recs[0].isd, 1, 16, 0x10);
    set_keys(&recs[0].csd, 2, 32, 0x20);
    mk(&recs[1].se, "KK000002", "eSE", "mno-a", "501", ""); /* msisdn of row 0 */
    set_keys(&recs[1].isd, 1, 16, 0x30);
    mk(&recs[2].se, "KK000001", "UICC", "mno-a", "501", ""); /* same again: SAME */
    set_keys(&recs[2].isd, 1, 16, 0x10);
    mk(&recs[3].se, "KK000003", "UICC", "mno-a", "", "");
    set_keys(&recs[3].isd, 5, 24, 0x50);
    mk(&recs[4].se, "KK000001", "UICC", "mno-a", "501", ""); /* other data: CONFLICT */
    recs[4].se.free_memory = 5;
    set_keys(&recs[4].isd, 2, 16, 0x60);
    isd1 = recs[0].isd;
    csd1 = recs[0].csd;
    isd3 = recs[3].isd;
    assert_int_equal(import_tx(f, recs, 5, res), OT_OK);
    assert_int_equal(res[0], TSM_INS_NEW);
    assert_int_equal(res[1], TSM_INS_MSISDN);
    assert_int_equal(res[2], TSM_INS_SAME);
    assert_int_equal(res[3], TSM_INS_NEW);
    assert_int_equal(res[4], TSM_INS_CONFLICT);
    check_keys(f, "KK000001", TSM_KEYSET_ISD, &isd1); /* version 1 only: not 2 of row 4 */
    check_keys(f, "KK000001", TSM_KEYSET_CSD, &csd1);
    check_keys(f, "KK000002", TSM_KEYSET_ISD, NULL);
    check_keys(f, "KK000003", TSM_KEYSET_ISD, &isd3);
    check_keys(f, "KK000003", TSM_KEYSET_CSD, NULL);

    /* Re-import: same version with other bytes stays as it was, a new
     * version is added. */
    memset(recs, 0, sizeof(recs));
    mk(&recs[0].se, "KK000001", "UICC", "mno-a", "501", "");
    set_keys(&recs[0].isd, 1, 16, 0x99);
    set_keys(&recs[0].csd, 3, 16, 0x77);
    mk(&recs[1].se, "KK000003", "UICC", "mno-a", "", "");
    recs[1].isd = isd3;
    assert_int_equal(import_tx(f, recs, 2, res), OT_OK);
    assert_int_equal(res[0], TSM_INS_SAME);
    assert_int_equal(res[1], TSM_INS_SAME);
    check_keys(f, "KK000001", TSM_KEYSET_ISD, &isd1);
    check_keys(f, "KK000001", TSM_KEYSET_CSD, &recs[0].csd); /* version 3 now the newest */
    check_keys(f, "KK000003", TSM_KEYSET_ISD, &isd3);

    /* No key store but a key set to store: refused before any write. */
    {
        struct db_conn *c = NULL;
        struct tsm_se got;

        memset(recs, 0, sizeof(recs));
        mk(&recs[0].se, "KK000004", "UICC", "mno-a", "", "");
        mk(&recs[1].se, "KK000005", "UICC", "mno-a", "", "");
        set_keys(&recs[1].csd, 1, 16, 1);
        assert_int_equal(db_acquire(f->db, &c), OT_OK);
        assert_int_equal(db_begin(c), OT_OK);
        assert_int_equal(tsm_registry_import(c, NULL, recs, 2, res), OT_E_ARG);
        assert_int_equal(tsm_registry_import(c, NULL, recs, 1, res), OT_OK); /* no keys */
        assert_int_equal(res[0], TSM_INS_NEW);
        assert_int_equal(db_commit(c), OT_OK);
        db_release(c);
        assert_int_equal(tsm_registry_get(f->db, TSM_BY_CIN, "KK000005", &got), OT_E_NOT_FOUND);
        assert_int_equal(tsm_registry_import(NULL, f->ks, recs, 1, res), OT_E_ARG);
    }
}

/* A failure while storing the key sets rolls the batch's rows back with
 * them: the key store's table is dropped under the running store (every
 * insert into it then fails in the database), and nothing of the batch is
 * left, while an earlier batch stays. */
static void test_keys_failure_rolls_back(void **state)
{
    struct fix *f = *state;
    struct tsm_serec recs[3];
    enum tsm_ins res[3];
    struct tsm_se got;

    memset(recs, 0, sizeof(recs));
    mk(&recs[0].se, "RB000001", "UICC", "mno-a", "601", "");
    set_keys(&recs[0].isd, 1, 16, 1);
    assert_int_equal(import_tx(f, recs, 1, res), OT_OK);
    assert_int_equal(res[0], TSM_INS_NEW);

    sec_t_exec(f->db, "DROP TABLE host_keys");
    memset(recs, 0, sizeof(recs));
    mk(&recs[0].se, "RB000002", "UICC", "mno-a", "602", "");
    mk(&recs[1].se, "RB000003", "eSE", "mno-a", "603", "");
    set_keys(&recs[1].isd, 1, 16, 2);
    mk(&recs[2].se, "RB000004", "eSE", "mno-a", "604", "");
    assert_int_not_equal(import_tx(f, recs, 3, res), OT_OK);
    assert_int_equal(tsm_registry_get(f->db, TSM_BY_CIN, "RB000002", &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_registry_get(f->db, TSM_BY_CIN, "RB000003", &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_registry_get(f->db, TSM_BY_CIN, "RB000004", &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_registry_get(f->db, TSM_BY_MSISDN, "602", &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_registry_get(f->db, TSM_BY_CIN, "RB000001", &got), OT_OK);
    assert_int_equal(sec_t_int(f->db, "SELECT COUNT(*) FROM tsm_secure_elements", 0, NULL), 1);

    /* With the table back, the same batch goes through whole. */
    sec_t_exec(f->db, "DELETE FROM schema_migrations WHERE service = 'keystore'");
    assert_int_equal(keystore_migrate(f->db), OT_OK);
    assert_int_equal(import_tx(f, recs, 3, res), OT_OK);
    assert_int_equal(res[0], TSM_INS_NEW);
    assert_int_equal(res[1], TSM_INS_NEW);
    assert_int_equal(res[2], TSM_INS_NEW);
    check_keys(f, "RB000003", TSM_KEYSET_ISD, &recs[1].isd);
    assert_int_equal(sec_t_int(f->db, "SELECT COUNT(*) FROM tsm_secure_elements", 0, NULL), 4);
}

static void test_list_pages(void **state)
{
    struct fix *f = *state;
    struct tsm_se se;
    struct tsm_se page[3];
    char cin[16];
    size_t n = 0;
    size_t total = 0;
    int64_t after = 0;
    bool more = true;
    int i;

    for (i = 0; i < 10; i++) {
        snprintf(cin, sizeof(cin), "BB%06d", i);
        mk(&se, cin, i % 2 ? "eSE" : "UICC", i < 4 ? "mno-a" : "mno-b", "", "");
        assert_int_equal(insert(f, &se), TSM_INS_NEW);
    }
    while (more) {
        assert_int_equal(tsm_registry_list(f->db, after, NULL, NULL, 3, page, &n, &more), OT_OK);
        assert_true(n <= 3);
        total += n;
        if (n > 0) {
            assert_true(page[0].id > after);
            after = page[n - 1].id;
        }
    }
    assert_int_equal(total, 10);
    /* Filters: mno-b and eSE are rows 5, 7, 9. */
    assert_int_equal(tsm_registry_list(f->db, 0, "mno-b", "eSE", 3, page, &n, &more), OT_OK);
    assert_int_equal(n, 3);
    assert_false(more);
    assert_string_equal(page[0].cin, "BB000005");
    assert_string_equal(page[2].cin, "BB000009");
    assert_int_equal(tsm_registry_list(f->db, 0, "mno-a", NULL, 3, page, &n, &more), OT_OK);
    assert_int_equal(n, 3);
    assert_true(more);
    assert_int_equal(tsm_registry_list(f->db, 0, NULL, "microSD", 3, page, &n, &more), OT_OK);
    assert_int_equal(n, 0);
    assert_int_equal(tsm_registry_list(f->db, 0, NULL, NULL, 0, page, &n, &more), OT_E_RANGE);
}

static void test_sd(void **state)
{
    struct fix *f = *state;
    struct tsm_se se;
    struct tsm_sd sd;
    struct tsm_sd list[4];
    struct db_conn *c = NULL;
    bool created = false;
    bool more = false;
    size_t n = 0;

    mk(&se, "CC000001", "UICC", "mno-a", "", "");
    assert_int_equal(insert(f, &se), TSM_INS_NEW);
    assert_int_equal(db_acquire(f->db, &c), OT_OK);

    memset(&sd, 0, sizeof(sd));
    sd.se_id = se.id;
    snprintf(sd.aid, sizeof(sd.aid), "A000000151000001");
    sd.owner_sp = 7;
    snprintf(sd.privileges, sizeof(sd.privileges), "800000");
    snprintf(sd.lcs, sizeof(sd.lcs), "SELECTABLE");
    assert_int_equal(tsm_registry_sd_assign(c, &sd, &created), OT_OK);
    assert_true(created);
    assert_int_equal(tsm_registry_sd_assign(c, &sd, &created), OT_OK); /* same again */
    assert_false(created);
    sd.owner_sp = 8; /* another owner for the same AID */
    assert_int_equal(tsm_registry_sd_assign(c, &sd, &created), OT_E_CONFLICT);
    snprintf(sd.aid, sizeof(sd.aid), "A000000151000002");
    assert_int_equal(tsm_registry_sd_assign(c, &sd, &created), OT_OK);
    assert_true(created);
    assert_int_equal(tsm_registry_sd_get(c, se.id, "A000000151000002", &sd), OT_OK);
    assert_int_equal(sd.owner_sp, 8);
    assert_int_equal(tsm_registry_sd_get(c, se.id, "A000000151000003", &sd), OT_E_NOT_FOUND);
    db_release(c);

    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 0, NULL, 4, list, &n, &more), OT_OK);
    assert_int_equal(n, 2);
    assert_false(more);
    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 7, NULL, 4, list, &n, &more), OT_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].aid, "A000000151000001");
    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 9, NULL, 4, list, &n, &more), OT_OK);
    assert_int_equal(n, 0);
    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 0, NULL, 1, list, &n, &more), OT_OK);
    assert_int_equal(n, 1); /* one page */
    assert_true(more);
}

static void sd_put(struct fix *f, int64_t se_id, const char *aid, int64_t owner)
{
    struct db_conn *c = NULL;
    struct tsm_sd sd;
    bool created = false;

    memset(&sd, 0, sizeof(sd));
    sd.se_id = se_id;
    snprintf(sd.aid, sizeof(sd.aid), "%s", aid);
    sd.owner_sp = owner;
    snprintf(sd.privileges, sizeof(sd.privileges), "800000");
    snprintf(sd.lcs, sizeof(sd.lcs), "SELECTABLE");
    assert_int_equal(db_acquire(f->db, &c), OT_OK);
    assert_int_equal(tsm_registry_sd_assign(c, &sd, &created), OT_OK);
    assert_true(created);
    db_release(c);
}

/* AID number i; two lengths interleave in AID order:
 * A00000010001 < A0000001000200 < A00000010003. */
static void sd_aid(int i, char *out, size_t cap)
{
    if (i % 3 == 2) {
        snprintf(out, cap, "A0000001%04X00", (unsigned)i);
    } else {
        snprintf(out, cap, "A0000001%04X", (unsigned)i);
    }
}

/* Pages through the SDs of se_id owned by owner (0: all), limit rows at a
 * time; seen[k] counts how often AID number k was answered. After the
 * first page, runs mid(f, mid_se) when mid is not NULL. Returns the rows. */
static size_t sd_walk(struct fix *f, int64_t se_id, int64_t owner, unsigned limit, int *seen,
                      int nseen, void (*mid)(struct fix *, int64_t), int64_t mid_se)
{
    struct tsm_sd page[8];
    char after[TSM_AID_MAX * 2 + 1] = "";
    char prev[TSM_AID_MAX * 2 + 1] = "";
    size_t n = 0;
    size_t total = 0;
    size_t i;
    bool more = true;
    int pages = 0;

    assert_true(limit <= 8);
    while (more) {
        assert_int_equal(tsm_registry_sd_list(f->db, se_id, owner, after, limit, page, &n, &more),
                         OT_OK);
        assert_true(n <= limit);
        if (more) {
            assert_int_equal(n, limit); /* never short while rows follow */
        }
        for (i = 0; i < n; i++) {
            int k;
            char aid[TSM_AID_MAX * 2 + 1];
            assert_true(strcmp(page[i].aid, prev) > 0); /* ordered, no repeat */
            snprintf(prev, sizeof(prev), "%s", page[i].aid);
            if (owner != 0) {
                assert_int_equal(page[i].owner_sp, owner);
            }
            for (k = 0; k < nseen; k++) {
                sd_aid(k, aid, sizeof(aid));
                if (strcmp(aid, page[i].aid) == 0) {
                    seen[k]++;
                }
            }
        }
        total += n;
        if (n > 0) {
            snprintf(after, sizeof(after), "%s", page[n - 1].aid);
        }
        if (++pages == 1 && mid != NULL) {
            mid(f, mid_se);
        }
    }
    return total;
}

enum { SD_N = 23 };

/* Assigns the rows 15..22 (never there before the walk) after page one:
 * those sorting after the cursor must come, none twice. */
static void sd_add_late(struct fix *f, int64_t se_id)
{
    char aid[TSM_AID_MAX * 2 + 1];
    int i;

    for (i = 15; i < SD_N; i++) {
        sd_aid(i, aid, sizeof(aid));
        sd_put(f, se_id, aid, i % 2 ? 7 : 8);
    }
    sd_put(f, se_id, "A000000000", 7); /* sorts before every cursor */
}

static void test_sd_pages(void **state)
{
    struct fix *f = *state;
    struct tsm_se se;
    struct tsm_se other;
    char aid[TSM_AID_MAX * 2 + 1];
    int seen[SD_N];
    struct tsm_sd page[4];
    size_t n = 0;
    bool more = false;
    int i;
    int owned7 = 0;

    mk(&se, "DD000001", "UICC", "mno-a", "", "");
    assert_int_equal(insert(f, &se), TSM_INS_NEW);
    mk(&other, "DD000002", "UICC", "mno-a", "", "");
    assert_int_equal(insert(f, &other), TSM_INS_NEW);
    /* Rows 0..14, owners 7 (odd) and 8 (even), inserted out of AID order;
     * the other SE holds the same AIDs (never listed for se). */
    for (i = 14; i >= 0; i--) {
        sd_aid(i, aid, sizeof(aid));
        sd_put(f, se.id, aid, i % 2 ? 7 : 8);
        sd_put(f, other.id, aid, 7);
    }
    for (i = 0; i < 15; i++) {
        owned7 += i % 2;
    }

    /* Every owner, pages of 1..5: each row once, in AID order. */
    for (unsigned lim = 1; lim <= 5; lim++) {
        memset(seen, 0, sizeof(seen));
        assert_int_equal(sd_walk(f, se.id, 0, lim, seen, SD_N, NULL, 0), 15);
        for (i = 0; i < 15; i++) {
            assert_int_equal(seen[i], 1);
        }
    }
    /* One owner: the filter is in the statement, so full pages hold only
     * its rows. */
    memset(seen, 0, sizeof(seen));
    assert_int_equal(sd_walk(f, se.id, 7, 2, seen, SD_N, NULL, 0), (size_t)owned7);
    for (i = 0; i < 15; i++) {
        assert_int_equal(seen[i], i % 2);
    }
    assert_int_equal(sd_walk(f, se.id, 9, 3, seen, SD_N, NULL, 0), 0);

    /* Rows assigned between pages: those after the cursor come once, the
     * ones before it never; nothing is skipped or repeated. */
    memset(seen, 0, sizeof(seen));
    assert_int_equal(sd_walk(f, se.id, 0, 3, seen, SD_N, sd_add_late, se.id), SD_N);
    for (i = 0; i < SD_N; i++) {
        assert_int_equal(seen[i], 1);
    }
    /* The row sorting first (added after page one) is on a new walk. */
    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 0, "", 1, page, &n, &more), OT_OK);
    assert_int_equal(n, 1);
    assert_string_equal(page[0].aid, "A000000000");

    /* Limits. */
    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 0, NULL, 0, page, &n, &more), OT_E_RANGE);
    assert_int_equal(
        tsm_registry_sd_list(f->db, se.id, 0, NULL, TSM_SD_LIST_MAX + 1, page, &n, &more),
        OT_E_RANGE);
    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 0, "A0000001000000000000000000000000FF", 1,
                                          page, &n, &more),
                     OT_E_ARG);
    /* A cursor past the last AID: an empty last page. */
    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 0, "FF00000000", 4, page, &n, &more),
                     OT_OK);
    assert_int_equal(n, 0);
    assert_false(more);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_insert_classify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_failure_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sd_pages, setup, teardown),
    };

    sec_t_select(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
