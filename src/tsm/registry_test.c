/* SE registry storage on SQLite: insert classification, lookups, keyset
 * pagination with filters, SD assignment and per-owner listing. */
#include "tsm/registry.h"

#include "db/db.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fix {
    char path[64];
    struct db *db;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    char url[96];
    int fd;

    assert_non_null(f);
    snprintf(f->path, sizeof(f->path), "/tmp/tsm-registry-XXXXXX");
    fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    snprintf(url, sizeof(url), "sqlite:%s", f->path);
    assert_int_equal(db_open(url, NULL, &f->db), OT_OK);
    assert_int_equal(tsm_registry_migrate(f->db), OT_OK);
    assert_int_equal(tsm_registry_migrate(f->db), OT_OK); /* idempotent */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    char side[96];

    db_close(f->db);
    unlink(f->path);
    snprintf(side, sizeof(side), "%s-wal", f->path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", f->path);
    unlink(side);
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

static enum tsm_ins insert(struct db *db, struct tsm_se *se)
{
    struct db_conn *c = NULL;
    enum tsm_ins res = TSM_INS_NEW;

    assert_int_equal(db_acquire(db, &c), OT_OK);
    assert_int_equal(db_begin(c), OT_OK);
    assert_int_equal(tsm_registry_insert(c, se, &res), OT_OK);
    assert_int_equal(db_commit(c), OT_OK);
    db_release(c);
    return res;
}

static void test_insert_classify(void **state)
{
    struct fix *f = *state;
    static const struct {
        const char *cin;
        const char *msisdn;
        const char *imsi;
        int64_t mem;
        enum tsm_ins want;
    } rows[] = {
        {"AA000001", "331", "", 1000, TSM_INS_NEW},     /* msisdn only */
        {"AA000002", "", "2080001", 1000, TSM_INS_NEW}, /* imsi only */
        {"AA000003", "", "", 1000, TSM_INS_NEW},        /* neither: NULLs never clash */
        {"AA000004", "", "", 1000, TSM_INS_NEW},
        {"AA000001", "331", "", 1000, TSM_INS_SAME},     /* re-import */
        {"AA000001", "331", "", 2000, TSM_INS_CONFLICT}, /* other data */
        {"AA000005", "331", "", 1000, TSM_INS_MSISDN},   /* msisdn taken */
        {"AA000006", "", "2080001", 1000, TSM_INS_IMSI}, /* imsi taken */
    };
    struct tsm_se se;
    struct tsm_se got;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        enum tsm_ins res;
        mk(&se, rows[i].cin, "UICC", "mno-a", rows[i].msisdn, rows[i].imsi);
        se.free_memory = rows[i].mem;
        res = insert(f->db, &se);
        if (res != rows[i].want) {
            fail_msg("row %zu: %d, want %d", i, res, rows[i].want);
        }
    }
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
        assert_int_equal(insert(f->db, &se), TSM_INS_NEW);
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
    size_t n = 0;

    mk(&se, "CC000001", "UICC", "mno-a", "", "");
    assert_int_equal(insert(f->db, &se), TSM_INS_NEW);
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

    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 0, list, 4, &n), OT_OK);
    assert_int_equal(n, 2);
    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 7, list, 4, &n), OT_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].aid, "A000000151000001");
    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 9, list, 4, &n), OT_OK);
    assert_int_equal(n, 0);
    assert_int_equal(tsm_registry_sd_list(f->db, se.id, 0, list, 1, &n), OT_OK);
    assert_int_equal(n, 1); /* capped */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_insert_classify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sd, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
