/* otascp against the vse card runtime in process: the batches it builds run
 * on a real card image (the agent's part played here: SELECT the SD, run the
 * C-APDUs, stop at a failing status word or a guard mismatch), and what it
 * verifies is what the card answered. */
#include "client/otascp.h"
#include "core/apdu.h"
#include "se/card.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define PROFILE OT_SOURCE_DIR "/profiles/ese-central.json"

/* F04F54534D534401 of profiles/ese-central.json: i = 70 (pseudo-random
 * challenge, R-MAC, R-ENC), keys 50..5F. */
static const uint8_t SD_AID[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x53, 0x44, 0x01};

static struct scp03_keyset sd_keys(uint8_t first)
{
    struct scp03_keyset k;

    memset(&k, 0, sizeof(k));
    k.kvn = 0x30;
    k.key_len = 16;
    for (size_t i = 0; i < 16; i++) {
        k.enc[i] = k.mac[i] = k.dek[i] = (uint8_t)(first + i);
    }
    return k;
}

/* The card, from the profile; i_repl: the SD's i replaced (NULL: as is). */
static struct se_card *card_new(const char *i_repl)
{
    FILE *f = fopen(PROFILE, "rb");
    static char text[65536];
    size_t n;
    struct se_card *c = NULL;
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len = sizeof(atr);

    assert_non_null(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    if (i_repl != NULL) {
        /* the first domain's "i" (F04F54534D534401) */
        char *d = strstr(text, "\"domains\"");
        char *p = d != NULL ? strstr(d, "\"i\": \"70\"") : NULL;
        assert_non_null(p);
        memcpy(p + 6, i_repl, 2);
    }
    assert_int_equal(se_card_from_profile(text, n, &c), OT_OK);
    assert_int_equal(se_card_power_on(c, atr, &atr_len), OT_OK);
    return c;
}

/* The R-APDUs of a run, kept across batches (one flat list like a job's). */
struct run {
    uint8_t buf[65536];
    size_t used;
    struct otascp_apdu r[64];
    size_t n;
};

static uint16_t sw_of(const uint8_t *p, size_t n)
{
    return (uint16_t)((p[n - 2] << 8) | p[n - 1]);
}

/* The agent's part: SELECT the SD (select true: a new session), run the
 * C-APDUs in order, stop after a failing SW or a guard mismatch. Returns
 * how many ran. */
static size_t agent_run(struct se_card *c, const struct otascp_batch *b, bool select,
                        struct run *out)
{
    uint8_t sel[5 + 16 + 1];
    uint8_t resp[SE_MAX_RESP];
    size_t rl = sizeof(resp);
    size_t ran = 0;

    if (select) {
        memcpy(sel, "\x00\xA4\x04\x00", 4);
        sel[4] = (uint8_t)sizeof(SD_AID);
        memcpy(sel + 5, SD_AID, sizeof(SD_AID));
        sel[5 + sizeof(SD_AID)] = 0x00;
        assert_int_equal(se_card_transmit(c, sel, 6 + sizeof(SD_AID), resp, &rl), OT_OK);
        assert_int_equal(sw_of(resp, rl), 0x9000);
    }
    for (size_t i = 0; i < b->n; i++) {
        rl = sizeof(resp);
        assert_int_equal(se_card_transmit(c, b->items[i].p, b->items[i].n, resp, &rl), OT_OK);
        assert_true(out->used + rl <= sizeof(out->buf));
        memcpy(out->buf + out->used, resp, rl);
        out->r[out->n].p = out->buf + out->used;
        out->r[out->n].n = rl;
        out->used += rl;
        out->n++;
        ran++;
        if (b->items[i].expect != NULL
            && (b->items[i].expect_n != rl || memcmp(b->items[i].expect, resp, rl) != 0)) {
            break;
        }
        if (!otascp_sw_ok(sw_of(resp, rl))) {
            break;
        }
    }
    return ran;
}

/* GET DATA key information (E0), GET STATUS of the SD's applications. */
static const uint8_t CMD_KEYINFO[] = {0x80, 0xCA, 0x00, 0xE0, 0x00};
static const uint8_t CMD_STATUS[] = {0x80, 0xF2, 0x40, 0x02, 0x02, 0x4F, 0x00, 0x00};
static const uint8_t CMD_BAD[] = {0x80, 0xCA, 0xDF, 0x7E, 0x00}; /* no such data object */

static const struct otascp_apdu CMDS[] = {
    {CMD_KEYINFO, sizeof(CMD_KEYINFO)},
    {CMD_STATUS, sizeof(CMD_STATUS)},
};

static struct otascp_cfg cfg_of(const struct scp03_keyset *k, const struct otascp_card *card)
{
    struct otascp_cfg cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.keys = k;
    cfg.level = 0x33;
    cfg.sd_aid = SD_AID;
    cfg.sd_aid_len = sizeof(SD_AID);
    cfg.card = card;
    return cfg;
}

/* The interactive form end to end; returns the learned card. */
static struct otascp_card interactive(struct se_card *c, const struct scp03_keyset *k,
                                      const struct otascp_card *card_in, struct otascp_result *res)
{
    struct otascp_cfg cfg = cfg_of(k, card_in);
    struct otascp_state st;
    struct otascp_batch b;
    struct run run;

    memset(&run, 0, sizeof(run));
    assert_int_equal(otascp_plan(&cfg, CMDS, 2, &st, &b), OT_OK);
    assert_int_equal(st.mode, OTASCP_INTERACTIVE);
    assert_int_equal(b.n, 1); /* INITIALIZE UPDATE alone */
    assert_int_equal(b.items[0].p[1], 0x50);
    assert_null(b.items[0].expect);
    assert_int_equal(agent_run(c, &b, true, &run), 1);
    otascp_batch_free(&b);
    assert_int_equal(otascp_continue(k, CMDS, 2, &st, run.r[0].p, run.r[0].n, &b), OT_OK);
    assert_int_equal(b.n, 3); /* EXTERNAL AUTHENTICATE + 2 wrapped */
    assert_int_equal(b.items[0].p[1], 0x82);
    assert_int_equal(b.items[1].p[0], 0x84); /* secure messaging */
    assert_int_equal(agent_run(c, &b, false, &run), 3);
    otascp_batch_free(&b);
    assert_int_equal(otascp_verify(k, CMDS, 2, &st, run.r, run.n, res), OT_OK);
    assert_true(st.card.known);
    return st.card;
}

static void test_interactive_then_scripted(void **state)
{
    struct se_card *c = card_new(NULL);
    struct scp03_keyset k = sd_keys(0x50);
    struct otascp_result res;
    struct otascp_card card;
    struct otascp_cfg cfg;
    struct otascp_state st;
    struct otascp_batch b;
    struct run run;

    (void)state;
    card = interactive(c, &k, NULL, &res);
    assert_int_equal(res.outcome, OTASCP_OK);
    assert_true(res.authenticated);
    assert_int_equal(res.iu_sw, 0x9000);
    assert_int_equal(res.ea_sw, 0x9000);
    assert_int_equal(res.n, 2);
    assert_int_equal(res.n_failed, 0);
    assert_true(res.resp[0].ran);
    assert_int_equal(res.resp[0].sw, 0x9000);
    /* The plain key information template (R-ENC removed): E0 ... */
    assert_true(res.resp[0].len > 2);
    assert_int_equal(res.resp[0].data[0], 0xE0);
    assert_int_equal(res.resp[1].data[0], 0xE3); /* a GET STATUS entry */
    otascp_result_free(&res);
    assert_int_equal(card.i, 0x70);
    assert_int_equal(card.seq, 1);

    /* Known and pseudo-random: one scripted job, guard on INITIALIZE UPDATE. */
    cfg = cfg_of(&k, &card);
    memset(&run, 0, sizeof(run));
    assert_int_equal(otascp_plan(&cfg, CMDS, 2, &st, &b), OT_OK);
    assert_int_equal(st.mode, OTASCP_SCRIPTED);
    assert_int_equal(st.predicted_seq, 2);
    assert_int_equal(b.n, 4);
    assert_non_null(b.items[0].expect);
    assert_null(b.items[1].expect);
    assert_int_equal(agent_run(c, &b, true, &run), 4);
    otascp_batch_free(&b);
    assert_int_equal(otascp_verify(&k, CMDS, 2, &st, run.r, run.n, &res), OT_OK);
    assert_int_equal(res.outcome, OTASCP_OK);
    assert_int_equal(res.resp[0].data[0], 0xE0);
    assert_int_equal(st.card.seq, 2);
    assert_int_equal(st.phase, OTASCP_PH_DONE);
    otascp_result_free(&res);

    /* A tampered answer (one bit of the R-MAC'd data) is not trusted. */
    {
        uint8_t *p = (uint8_t *)run.r[2].p;
        p[0] ^= 0x01;
        assert_int_equal(otascp_verify(&k, CMDS, 2, &st, run.r, run.n, &res), OT_E_RMAC);
        assert_null(res.resp);
        assert_int_equal(res.n, 0);
        p[0] ^= 0x01;
    }
    se_card_free(c);
}

/* Another host used the SD meanwhile: the card's counter is not the one
 * predicted, the agent stops at the guard before EXTERNAL AUTHENTICATE and
 * the fallback runs the two-batch form. */
static void test_guard_and_fallback(void **state)
{
    struct se_card *c = card_new(NULL);
    struct scp03_keyset k = sd_keys(0x50);
    struct otascp_result res;
    struct otascp_card card;
    struct otascp_cfg cfg;
    struct otascp_state st;
    struct otascp_batch b;
    struct run run;
    struct run other;

    (void)state;
    card = interactive(c, &k, NULL, &res);
    otascp_result_free(&res);
    /* The other host: an INITIALIZE UPDATE moves the counter to 2. */
    cfg = cfg_of(&k, NULL);
    memset(&other, 0, sizeof(other));
    assert_int_equal(otascp_plan(&cfg, NULL, 0, &st, &b), OT_OK);
    assert_int_equal(agent_run(c, &b, true, &other), 1);
    otascp_batch_free(&b);

    cfg = cfg_of(&k, &card); /* still thinks seq 1 */
    memset(&run, 0, sizeof(run));
    assert_int_equal(otascp_plan(&cfg, CMDS, 2, &st, &b), OT_OK);
    assert_int_equal(st.predicted_seq, 2);
    assert_int_equal(agent_run(c, &b, true, &run), 1); /* stopped at the guard */
    otascp_batch_free(&b);
    assert_int_equal(otascp_verify(&k, CMDS, 2, &st, run.r, run.n, &res), OT_OK);
    assert_int_equal(res.outcome, OTASCP_GUARD);
    assert_int_equal(res.n_failed, 2);
    assert_false(res.resp[0].ran);
    assert_int_equal(res.ea_sw, 0);
    assert_int_equal(st.card.seq, 3); /* learned from the answer */
    otascp_result_free(&res);

    memset(&run, 0, sizeof(run));
    assert_int_equal(otascp_fallback(&st, NULL, &b), OT_OK);
    assert_int_equal(st.mode, OTASCP_INTERACTIVE);
    assert_int_equal(st.fallbacks, 1);
    assert_int_equal(b.n, 1);
    assert_int_equal(agent_run(c, &b, true, &run), 1);
    otascp_batch_free(&b);
    assert_int_equal(otascp_continue(&k, CMDS, 2, &st, run.r[0].p, run.r[0].n, &b), OT_OK);
    assert_int_equal(agent_run(c, &b, false, &run), 3);
    otascp_batch_free(&b);
    assert_int_equal(otascp_verify(&k, CMDS, 2, &st, run.r, run.n, &res), OT_OK);
    assert_int_equal(res.outcome, OTASCP_OK);
    assert_int_equal(st.card.seq, 4);
    otascp_result_free(&res);
    se_card_free(c);
}

/* The state travels as text: a verify after a "restart" gives the same. */
static void test_state_persists(void **state)
{
    struct se_card *c = card_new(NULL);
    struct scp03_keyset k = sd_keys(0x50);
    struct otascp_result res;
    struct otascp_card card;
    struct otascp_cfg cfg;
    struct otascp_state st;
    struct otascp_state back;
    struct otascp_batch b;
    struct run run;
    char text[OTASCP_STATE_MAX];

    (void)state;
    card = interactive(c, &k, NULL, &res);
    otascp_result_free(&res);
    cfg = cfg_of(&k, &card);
    memset(&run, 0, sizeof(run));
    assert_int_equal(otascp_plan(&cfg, CMDS, 2, &st, &b), OT_OK);
    snprintf(st.job, sizeof(st.job), "%s", "4711");
    assert_int_equal(otascp_state_encode(&st, text, sizeof(text)), OT_OK);
    /* no key in it */
    assert_null(strstr(text, "505152535455"));
    memset(&back, 0xA5, sizeof(back));
    assert_int_equal(otascp_state_decode(text, &back), OT_OK);
    assert_string_equal(back.job, "4711");
    assert_int_equal(back.predicted_seq, st.predicted_seq);
    assert_memory_equal(back.host_chal, st.host_chal, 8);
    agent_run(c, &b, true, &run);
    otascp_batch_free(&b);
    assert_int_equal(otascp_verify(&k, CMDS, 2, &back, run.r, run.n, &res), OT_OK);
    assert_int_equal(res.outcome, OTASCP_OK);
    otascp_result_free(&res);
    /* Malformed texts are refused. */
    assert_int_equal(otascp_state_decode("{}", &back), OT_E_FORMAT);
    assert_int_equal(otascp_state_decode("not json", &back), OT_E_FORMAT);
    {
        char bad[OTASCP_STATE_MAX];
        char *p;
        snprintf(bad, sizeof(bad), "%s", text);
        p = strstr(bad, "\"level\":51");
        assert_non_null(p);
        memcpy(p, "\"level\":50", 10);
        assert_int_equal(otascp_state_decode(bad, &back), OT_E_FORMAT);
    }
    se_card_free(c);
}

/* A failing command stops the script: it is listed with the ones that did
 * not run; what ran before it is verified. */
static void test_failed_command(void **state)
{
    static const struct otascp_apdu cmds[] = {
        {CMD_KEYINFO, sizeof(CMD_KEYINFO)},
        {CMD_BAD, sizeof(CMD_BAD)},
        {CMD_STATUS, sizeof(CMD_STATUS)},
    };
    struct se_card *c = card_new(NULL);
    struct scp03_keyset k = sd_keys(0x50);
    struct otascp_result res;
    struct otascp_card card;
    struct otascp_cfg cfg;
    struct otascp_state st;
    struct otascp_batch b;
    struct run run;

    (void)state;
    card = interactive(c, &k, NULL, &res);
    otascp_result_free(&res);
    cfg = cfg_of(&k, &card);
    memset(&run, 0, sizeof(run));
    assert_int_equal(otascp_plan(&cfg, cmds, 3, &st, &b), OT_OK);
    assert_int_equal(agent_run(c, &b, true, &run), 4);
    otascp_batch_free(&b);
    assert_int_equal(otascp_verify(&k, cmds, 3, &st, run.r, run.n, &res), OT_OK);
    assert_int_equal(res.outcome, OTASCP_CMD_FAILED);
    assert_int_equal(res.n_failed, 2);
    assert_int_equal(res.failed[0], 1);
    assert_int_equal(res.failed[1], 2);
    assert_true(res.resp[0].ran);
    assert_true(res.resp[1].ran);
    assert_int_equal(res.resp[1].sw, 0x6A88);
    assert_false(res.resp[2].ran);
    otascp_result_free(&res);
    se_card_free(c);
}

/* Wrong keys: the card's cryptogram does not verify, nothing more is sent.
 * A card without a pseudo-random challenge always takes the two batches. */
static void test_wrong_keys_and_random_challenge(void **state)
{
    struct se_card *c = card_new("60");
    struct scp03_keyset k = sd_keys(0x50);
    struct scp03_keyset bad = sd_keys(0x51);
    struct otascp_result res;
    struct otascp_card card;
    struct otascp_cfg cfg;
    struct otascp_state st;
    struct otascp_batch b;
    struct run run;

    (void)state;
    card = interactive(c, &k, NULL, &res);
    assert_int_equal(res.outcome, OTASCP_OK);
    otascp_result_free(&res);
    assert_int_equal(card.i, 0x60);
    cfg = cfg_of(&k, &card);
    assert_int_equal(otascp_plan(&cfg, CMDS, 2, &st, &b), OT_OK);
    assert_int_equal(st.mode, OTASCP_INTERACTIVE);
    assert_int_equal(b.n, 1);
    otascp_batch_free(&b);

    cfg = cfg_of(&bad, NULL);
    memset(&run, 0, sizeof(run));
    assert_int_equal(otascp_plan(&cfg, CMDS, 2, &st, &b), OT_OK);
    agent_run(c, &b, true, &run);
    otascp_batch_free(&b);
    assert_int_equal(otascp_continue(&bad, CMDS, 2, &st, run.r[0].p, run.r[0].n, &b),
                     OT_E_CARD_CRYPTOGRAM);
    assert_int_equal(b.n, 0);
    assert_int_equal(otascp_verify(&bad, CMDS, 2, &st, run.r, run.n, &res), OT_E_CARD_CRYPTOGRAM);
    se_card_free(c);
}

static void test_bad_input(void **state)
{
    static const uint8_t sm[] = {0x84, 0xCA, 0x00, 0xE0, 0x00};
    static const uint8_t ch1[] = {0x81, 0xCA, 0x00, 0xE0, 0x00};
    static const uint8_t ext[] = {0x80, 0xE2, 0x00, 0x00, 0x00, 0x00, 0x01, 0xAA};
    static const uint8_t shorty[] = {0x80, 0xCA};
    struct scp03_keyset k = sd_keys(0x50);
    struct otascp_cfg cfg = cfg_of(&k, NULL);
    struct otascp_state st;
    struct otascp_batch b;
    struct otascp_apdu one;

    (void)state;
    one.p = sm;
    one.n = sizeof(sm);
    assert_int_equal(otascp_plan(&cfg, &one, 1, &st, &b), OT_E_ARG);
    one.p = ch1;
    one.n = sizeof(ch1);
    assert_int_equal(otascp_plan(&cfg, &one, 1, &st, &b), OT_E_ARG);
    one.p = ext;
    one.n = sizeof(ext);
    assert_int_equal(otascp_plan(&cfg, &one, 1, &st, &b), OT_E_TOO_LONG);
    one.p = shorty;
    one.n = sizeof(shorty);
    assert_int_equal(otascp_plan(&cfg, &one, 1, &st, &b), OT_E_ARG);
    cfg.level = 0x02;
    assert_int_equal(otascp_plan(&cfg, CMDS, 2, &st, &b), OT_E_ARG);
    cfg.level = 0x33;
    cfg.sd_aid_len = 4;
    assert_int_equal(otascp_plan(&cfg, CMDS, 2, &st, &b), OT_E_ARG);
    assert_int_equal(otascp_plan(&cfg, CMDS, OTASCP_MAX_CMDS + 1, &st, &b), OT_E_ARG);
    cfg.sd_aid_len = sizeof(SD_AID);
    assert_int_equal(otascp_plan(&cfg, CMDS, OTASCP_MAX_CMDS + 1, &st, &b), OT_E_LIMIT);
    {
        /* An R-MAC level on a card whose i has no R-MAC. */
        struct otascp_card card = {true, {0}, 0x10, 5};
        cfg.card = &card;
        assert_int_equal(otascp_plan(&cfg, CMDS, 2, &st, &b), OT_E_SEC_LEVEL);
        card.i = 0x70;
        card.seq = SCP03_SEQ_MAX;
        assert_int_equal(otascp_plan(&cfg, CMDS, 2, &st, &b), OT_E_SEQ_EXHAUSTED);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interactive_then_scripted),
        cmocka_unit_test(test_guard_and_fallback),
        cmocka_unit_test(test_state_persists),
        cmocka_unit_test(test_failed_command),
        cmocka_unit_test(test_wrong_keys_and_random_challenge),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
