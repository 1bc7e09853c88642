/* The SE list (src/agent/selist.c): put / remove rules, the file written
 * and read back, corrupt files refused (and left as they are), the known-CIN
 * identity check. Card verification runs against real cards in
 * tests/agent/cli_test.sh. */
#include "agent/selist.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/ot-selist.XXXXXX");
    return mkdtemp(g_dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char p[128];

    (void)state;
    snprintf(p, sizeof p, "%s/selist.json", g_dir);
    (void)unlink(p);
    snprintf(p, sizeof p, "%s/selist.json.tmp", g_dir);
    (void)unlink(p);
    return rmdir(g_dir);
}

static void write_file(const char *text)
{
    char p[128];
    FILE *f;

    snprintf(p, sizeof p, "%s/selist.json", g_dir);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static struct agent_se mk(const char *reader, uint8_t cin_last)
{
    struct agent_se se;

    memset(&se, 0, sizeof se);
    snprintf(se.reader, sizeof se.reader, "%s", reader);
    memcpy(se.cin, "\x4F\x54\x53\x4D\x44\x45\x56", 7);
    se.cin[7] = cin_last;
    se.cin_len = 8;
    se.cplc_len = 3;
    memcpy(se.cplc, "\x9F\x7F\x00", 3);
    se.card_data_len = 2;
    memcpy(se.card_data, "\x66\x00", 2);
    se.atr_len = 2;
    memcpy(se.atr, "\x3B\x00", 2);
    se.verified_at = 1700000000;
    return se;
}

static void test_put_remove(void **state)
{
    struct agent_selist l;
    struct agent_se a = mk("SIM1", 1);
    struct agent_se b = mk("eSE1", 2);
    struct agent_se dup = mk("SD1", 1);
    size_t i;

    (void)state;
    memset(&l, 0, sizeof l);
    assert_int_equal(agent_selist_put(&l, &a), OT_OK);
    assert_int_equal(agent_selist_put(&l, &b), OT_OK);
    assert_int_equal(agent_selist_put(&l, &dup), OT_E_CONFLICT); /* same CIN elsewhere */
    assert_int_equal(l.n, 2);
    a.cin[7] = 9; /* card swapped in SIM1: replaced in place */
    assert_int_equal(agent_selist_put(&l, &a), OT_OK);
    assert_int_equal(l.n, 2);
    assert_int_equal(agent_selist_by_reader(&l, "SIM1")->cin[7], 9);
    assert_null(agent_selist_by_cin(&l, (const uint8_t *)"\x4F\x54\x53\x4D\x44\x45\x56\x01", 8));
    assert_int_equal(agent_selist_remove(&l, "SIM1"), OT_OK);
    assert_int_equal(agent_selist_remove(&l, "SIM1"), OT_E_NOT_FOUND);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.se[0].reader, "eSE1");
    for (i = l.n; i < AGENT_SE_MAX; i++) {
        struct agent_se x = mk("R", (uint8_t)(0x40 + i));
        snprintf(x.reader, sizeof x.reader, "R%zu", i);
        assert_int_equal(agent_selist_put(&l, &x), OT_OK);
    }
    b = mk("X", 0x7F);
    assert_int_equal(agent_selist_put(&l, &b), OT_E_LIMIT);
}

static void test_save_load(void **state)
{
    struct agent_selist l, m;
    struct agent_se a = mk("SIM1", 1);
    struct agent_se b = mk("eSE1", 2);
    char why[256];

    (void)state;
    memset(&l, 0, sizeof l);
    assert_int_equal(agent_selist_load(g_dir, &m, why, sizeof why), OT_OK); /* absent: empty */
    assert_int_equal(m.n, 0);
    b.iin_len = 4;
    memcpy(b.iin, "\x4F\x54\x53\x4D", 4);
    assert_int_equal(agent_selist_put(&l, &a), OT_OK);
    assert_int_equal(agent_selist_put(&l, &b), OT_OK);
    assert_int_equal(agent_selist_save(g_dir, &l), OT_OK);
    assert_int_equal(agent_selist_load(g_dir, &m, why, sizeof why), OT_OK);
    assert_int_equal(m.n, 2);
    assert_memory_equal(&m.se[0], &l.se[0], sizeof l.se[0]);
    assert_memory_equal(&m.se[1], &l.se[1], sizeof l.se[1]);
    assert_int_equal(agent_selist_remove(&l, "SIM1"), OT_OK);
    assert_int_equal(agent_selist_save(g_dir, &l), OT_OK);
    assert_int_equal(agent_selist_load(g_dir, &m, why, sizeof why), OT_OK);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.se[0].reader, "eSE1");
}

static void test_corrupt(void **state)
{
    static const struct {
        const char *name;
        const char *text;
        const char *why; /* part of the reason */
    } rows[] = {
        {"empty", "", "selist.json"},
        {"not json", "{\"version\":1,", "selist.json"},
        {"array", "[]", "selist.json"},
        {"no version", "{\"items\":[]}", "version"},
        {"version 2", "{\"version\":2,\"items\":[]}", "version"},
        {"unknown member", "{\"version\":1,\"items\":[],\"x\":1}", "x"},
        {"item not an object", "{\"version\":1,\"items\":[1]}", "selist.json"},
        {"bad reader",
         "{\"version\":1,\"items\":[{\"reader\":\"S I M\",\"cin\":\"01\",\"cplc\":\"01\","
         "\"card_data\":\"01\",\"atr\":\"3B\",\"verified_at\":1}]}",
         "reader"},
        {"bad cin",
         "{\"version\":1,\"items\":[{\"reader\":\"SIM1\",\"cin\":\"0\",\"cplc\":\"01\","
         "\"card_data\":\"01\",\"atr\":\"3B\",\"verified_at\":1}]}",
         "cin"},
        {"reader twice",
         "{\"version\":1,\"items\":[{\"reader\":\"SIM1\",\"cin\":\"01\",\"cplc\":\"01\","
         "\"card_data\":\"01\",\"atr\":\"3B\",\"verified_at\":1},{\"reader\":\"SIM1\",\"cin\":"
         "\"02\",\"cplc\":\"01\",\"card_data\":\"01\",\"atr\":\"3B\",\"verified_at\":1}]}",
         "reader"},
        {"negative time",
         "{\"version\":1,\"items\":[{\"reader\":\"SIM1\",\"cin\":\"01\",\"cplc\":"
         "\"01\",\"card_data\":\"01\",\"atr\":\"3B\",\"verified_at\":-1}]}",
         "verified_at"},
    };
    struct agent_selist m;
    char why[256];
    char p[128];
    char back[1024];
    FILE *f;
    size_t i, n;

    (void)state;
    snprintf(p, sizeof p, "%s/selist.json", g_dir);
    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        write_file(rows[i].text);
        why[0] = '\0';
        if (agent_selist_load(g_dir, &m, why, sizeof why) != OT_E_CORRUPT) {
            fail_msg("row '%s' not refused", rows[i].name);
        }
        if (strstr(why, rows[i].why) == NULL) {
            fail_msg("row '%s': reason '%s' lacks '%s'", rows[i].name, why, rows[i].why);
        }
        assert_int_equal(m.n, 0);
        /* Refused, and left as it was. */
        f = fopen(p, "r");
        assert_non_null(f);
        n = fread(back, 1, sizeof back - 1, f);
        fclose(f);
        back[n] = '\0';
        assert_string_equal(back, rows[i].text);
    }
}

static void test_known_cins(void **state)
{
    struct agent_known_cins k;
    struct agent_se a = mk("SIM1", 1);
    char why[160];

    (void)state;
    memset(&k, 0, sizeof k);
    assert_int_equal(agent_known_cins_check(&k, &a, why, sizeof why), OT_E_FORBIDDEN);
    assert_non_null(strstr(why, "4F54534D44455601"));
    memcpy(k.cin[0].b, a.cin, a.cin_len);
    k.cin[0].len = a.cin_len - 1; /* a prefix is not the CIN */
    k.n = 1;
    assert_int_equal(agent_known_cins_check(&k, &a, why, sizeof why), OT_E_FORBIDDEN);
    k.cin[1].len = a.cin_len;
    memcpy(k.cin[1].b, a.cin, a.cin_len);
    k.n = 2;
    assert_int_equal(agent_known_cins_check(&k, &a, why, sizeof why), OT_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_remove),
        cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
        cmocka_unit_test(test_known_cins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
