/* The admin agent's header parsing (src/agent/admin.c); sessions against a
 * real mno are in tests/agent/session_test.sh. */
#include "agent/admin.h"
#include "agent/mnolink.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_target_table(void **state)
{
    static const struct {
        const char *v;
        ot_err want;
        size_t len;
    } rows[] = {
        {"//aid/A000000151/000000", OT_OK, 8},
        {"//aid/A000000151/", OT_OK, 5},
        {"//aid/a000000151/0000000000000000000000", OT_OK, 16},
        {"//aid/A000000151/000000000000000000000000", OT_E_FORMAT, 0}, /* 17 bytes */
        {"//aid/A0000001/000000", OT_E_FORMAT, 0},                     /* RID of 4 */
        {"//aid/A00000015100/00", OT_E_FORMAT, 0},                     /* RID of 6 */
        {"//aid/A000000151/0", OT_E_FORMAT, 0},                        /* odd PIX */
        {"//aid/A000000151", OT_E_FORMAT, 0},
        {"/aid/A000000151/00", OT_E_FORMAT, 0},
        {"", OT_E_FORMAT, 0},
        {"//aid/G000000151/00", OT_E_FORMAT, 0},
    };
    uint8_t aid[16];
    size_t n;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        n = 0;
        ot_err err = agent_admin_parse_target(rows[i].v, aid, &n);
        if (err != rows[i].want) {
            fail_msg("'%s': %s", rows[i].v, ot_errname(err));
        }
        if (err == OT_OK) {
            assert_int_equal(n, rows[i].len);
        }
    }
    assert_int_equal(agent_admin_parse_target("//aid/A000000151/000000", aid, &n), OT_OK);
    assert_memory_equal(aid, "\xA0\x00\x00\x01\x51\x00\x00\x00", 8);
    assert_int_equal(agent_admin_parse_target(NULL, aid, &n), OT_E_FORMAT);
}

/* Backoff with jitter: doubles from min to max, each wait in [next/2, next]. */
static void test_backoff(void **state)
{
    static const uint32_t rnds[] = {0u, 1u, 7u, 499u, 0xFFFFFFFFu, 123456789u};
    unsigned cur, next, want;
    size_t i, k;

    (void)state;
    for (k = 0; k < sizeof rnds / sizeof rnds[0]; k++) {
        cur = 0;
        want = 500;
        for (i = 0; i < 12; i++) {
            next = agent_backoff_next(cur, 500, 60000, rnds[k]);
            if (next < want / 2 || next > want) {
                fail_msg("step %zu rnd %u: %u not in [%u, %u]", i, rnds[k], next, want / 2, want);
            }
            cur = want; /* the schedule doubles from the nominal value */
            want = want * 2 > 60000 ? 60000 : want * 2;
        }
    }
    /* Jitter: different random numbers give different waits. */
    assert_true(agent_backoff_next(4000, 500, 60000, 1) != agent_backoff_next(4000, 500, 60000, 2));
    assert_int_equal(agent_backoff_next(60000, 500, 60000, 0), 30000);
}

/* STATE/session.json (docs/se-agent.md "The job's steps"): what a restart
 * resumes from, and what it refuses (the file is then left alone). */
static void test_session_file(void **state)
{
#define F "\"from\":\"//se-id/cin/01;//agent-id/imei/356938035643015\""
    static const struct {
        const char *text;
        ot_err want;
        const char *step;
        unsigned script;
        size_t rsp_len;
    } rows[] = {
        {"{\"version\":2,\"job\":\"12\",\"cin\":\"01\"," F ",\"open\":\"/p/admin/jobs/12\","
         "\"uri\":\"/p/admin/jobs/12/scripts/1\",\"script\":1,\"step\":\"received\"}",
         OT_OK, "received", 1, 0},
        {"{\"version\":2,\"job\":\"12\",\"uri\":\"/u\"," F ",\"script\":2,\"step\":\"executed\","
         "\"rsp\":\"AF80800101230290000000\"}",
         OT_OK, "executed", 2, 11},
        /* an older agent's file: a script executing */
        {"{\"job\":\"7\",\"uri\":\"/u\"," F "}", OT_OK, "executing", 0, 0},
        {"{\"job\":\"7\",\"uri\":\"/u\"," F ",\"step\":\"executed\"}", OT_E_CORRUPT, NULL, 0, 0},
        {"{\"job\":\"7\",\"uri\":\"/u\"," F ",\"step\":\"executed\",\"rsp\":\"XY\"}", OT_E_CORRUPT,
         NULL, 0, 0},
        {"{\"job\":\"7\",\"uri\":\"/u\"," F ",\"step\":\"reported\"}", OT_E_CORRUPT, NULL, 0, 0},
        {"{\"job\":\"7\",\"uri\":\"/u\"," F ",\"version\":3}", OT_E_CORRUPT, NULL, 0, 0},
        {"{\"job\":\"7\",\"uri\":\"http://x/u\"," F "}", OT_E_CORRUPT, NULL, 0, 0},
        {"{\"job\":\"7\",\"uri\":\"/u\"," F ",\"open\":\"x\"}", OT_E_CORRUPT, NULL, 0, 0},
        {"{\"job\":\"7\",\"uri\":\"/u\"," F ",\"extra\":1}", OT_E_CORRUPT, NULL, 0, 0},
        {"{\"uri\":\"/u\"," F "}", OT_E_CORRUPT, NULL, 0, 0},
        {"{\"job\":\"7\",\"uri\":\"/u\"," F ",\"script\":-1}", OT_E_CORRUPT, NULL, 0, 0},
        {"[1,2", OT_E_CORRUPT, NULL, 0, 0},
        {"", OT_E_CORRUPT, NULL, 0, 0},
    };
#undef F
    struct agent_admin_session_info si;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ot_err err =
            agent_admin_session_parse((const uint8_t *)rows[i].text, strlen(rows[i].text), &si);
        if (err != rows[i].want) {
            fail_msg("row %zu: %s, want %s", i, ot_errname(err), ot_errname(rows[i].want));
        }
        if (err == OT_OK) {
            assert_string_equal(si.step, rows[i].step);
            assert_int_equal(si.script, rows[i].script);
            assert_int_equal(si.rsp_len, rows[i].rsp_len);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_table),
        cmocka_unit_test(test_session_file),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
