/* The card's transition table (card.h): the moves the issue asks for, the
 * ones it forbids, the vocabulary, and docs/cms.md printing the table. */
#define _GNU_SOURCE
#include "cms/card.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const struct {
    enum cms_state from;
    enum cms_event ev;
    ot_err want;
    enum cms_state to;
} cms_cases[] = {
    {CMS_S_ACTIVE, CMS_EV_DESTROY, OT_OK, CMS_S_AWAITING_DESTROY},
    {CMS_S_LOCKED, CMS_EV_DESTROY, OT_OK, CMS_S_AWAITING_DESTROY},
    {CMS_S_AWAITING_LOCK, CMS_EV_DESTROY, OT_OK, CMS_S_AWAITING_DESTROY},
    {CMS_S_AWAITING_DESTROY, CMS_EV_RUNNING, OT_OK, CMS_S_DESTROYING},
    {CMS_S_DESTROYING, CMS_EV_INTERRUPTED, OT_OK, CMS_S_AWAITING_DESTROY},
    {CMS_S_DESTROYING, CMS_EV_DESTROYED, OT_OK, CMS_S_DESTROYED},
    {CMS_S_AWAITING_DESTROY, CMS_EV_DESTROYED, OT_OK, CMS_S_DESTROYED},
    {CMS_S_ACTIVE, CMS_EV_LOCK, OT_OK, CMS_S_AWAITING_LOCK},
    {CMS_S_AWAITING_LOCK, CMS_EV_LOCKED, OT_OK, CMS_S_LOCKED},
    {CMS_S_AWAITING_LOCK, CMS_EV_LOCK_FAILED, OT_OK, CMS_S_ACTIVE},
    {CMS_S_LOCKED, CMS_EV_UNLOCK, OT_OK, CMS_S_AWAITING_UNLOCK},
    {CMS_S_AWAITING_UNLOCK, CMS_EV_UNLOCKED, OT_OK, CMS_S_ACTIVE},
    /* refused: a second destroy, unlock of a card awaiting its destroy,
     * anything on a destroyed card, a lock of a locked card */
    {CMS_S_AWAITING_DESTROY, CMS_EV_DESTROY, OT_E_STATE, CMS_S_N},
    {CMS_S_DESTROYING, CMS_EV_DESTROY, OT_E_STATE, CMS_S_N},
    {CMS_S_AWAITING_DESTROY, CMS_EV_UNLOCK, OT_E_STATE, CMS_S_N},
    {CMS_S_DESTROYED, CMS_EV_DESTROY, OT_E_STATE, CMS_S_N},
    {CMS_S_DESTROYED, CMS_EV_UNLOCK, OT_E_STATE, CMS_S_N},
    {CMS_S_DESTROYED, CMS_EV_DESTROYED, OT_E_STATE, CMS_S_N},
    {CMS_S_LOCKED, CMS_EV_LOCK, OT_E_STATE, CMS_S_N},
    {CMS_S_ACTIVE, CMS_EV_UNLOCK, OT_E_STATE, CMS_S_N},
    {CMS_S_ACTIVE, CMS_EV_DESTROYED, OT_E_STATE, CMS_S_N},
    {CMS_S_INVALID, CMS_EV_DESTROY, OT_E_STATE, CMS_S_N},
};

static void test_moves(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cms_cases) / sizeof(cms_cases[0]); i++) {
        enum cms_state to = CMS_S_N;
        ot_err e = cms_card_next(cms_cases[i].from, cms_cases[i].ev, &to);
        if (e != cms_cases[i].want || (e == OT_OK && to != cms_cases[i].to)) {
            fail_msg("case %zu: %s --%s--> got %d %s", i, cms_state_name(cms_cases[i].from),
                     cms_event_name(cms_cases[i].ev), (int)e, cms_state_name(to));
        }
    }
    /* nothing leaves destroyed or invalid */
    for (int ev = 0; ev < CMS_EV_N; ev++) {
        enum cms_state to;
        assert_int_equal(cms_card_next(CMS_S_DESTROYED, (enum cms_event)ev, &to), OT_E_STATE);
        assert_int_equal(cms_card_next(CMS_S_INVALID, (enum cms_event)ev, &to), OT_E_STATE);
    }
    assert_true(cms_state_final(CMS_S_DESTROYED));
    assert_false(cms_state_final(CMS_S_AWAITING_DESTROY));
}

static void test_vocabulary(void **state)
{
    enum cms_state s;
    enum cms_reason r;
    enum cms_cause c;
    enum cms_mode m;

    (void)state;
    for (int i = 0; i < CMS_S_N; i++) {
        assert_int_equal(cms_state_parse(cms_state_name((enum cms_state)i), &s), OT_OK);
        assert_int_equal(s, i);
    }
    assert_int_equal(cms_state_parse("Destroyed", &s), OT_E_FORMAT);
    assert_int_equal(cms_state_parse(NULL, &s), OT_E_FORMAT);
    assert_int_equal(cms_reason_parse("stolen", &r), OT_OK);
    assert_int_equal(r, CMS_R_STOLEN);
    assert_int_equal(cms_reason_parse("robbed", &r), OT_E_FORMAT);
    assert_int_equal(cms_cause_parse("supervision", &c), OT_OK);
    assert_int_equal(c, CMS_C_SUPERVISION);
    assert_int_equal(cms_mode_parse("hardware", &m), OT_OK);
    assert_int_equal(m, CMS_M_HARDWARE);
    assert_true(cms_reason_fits(CMS_ACT_DESTROY, CMS_R_FRAUDULENT));
    assert_false(cms_reason_fits(CMS_ACT_DESTROY, CMS_R_FOUND));
    assert_true(cms_reason_fits(CMS_ACT_UNLOCK, CMS_R_FOUND));
    assert_false(cms_reason_fits(CMS_ACT_UNLOCK, CMS_R_LOST));
    assert_int_equal(cms_action_event(CMS_ACT_UNLOCK), CMS_EV_UNLOCK);
    assert_string_equal(cms_state_name(CMS_S_N), "?");
}

/* docs/cms.md prints the transition table exactly as the code has it. */
static void test_doc_table(void **state)
{
    char *table = NULL;
    size_t tlen = 0;
    FILE *mem = open_memstream(&table, &tlen);
    FILE *doc = fopen(OT_SOURCE_DIR "/docs/cms.md", "rb");
    char *text;
    long n;

    (void)state;
    assert_non_null(mem);
    assert_non_null(doc);
    cms_card_table_md(mem);
    fclose(mem);
    assert_int_equal(fseek(doc, 0, SEEK_END), 0);
    n = ftell(doc);
    assert_true(n > 0);
    rewind(doc);
    text = calloc(1, (size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, doc), (size_t)n);
    fclose(doc);
    if (strstr(text, table) == NULL) {
        fail_msg("docs/cms.md does not hold the transition table:\n%s", table);
    }
    free(text);
    free(table);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moves),
        cmocka_unit_test(test_vocabulary),
        cmocka_unit_test(test_doc_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
