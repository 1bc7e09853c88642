/* Script runner tests: a plain card behind a GP_SCP_NONE session (relay
 * mode) and an SCP03 card (src/crypto/scp03 card side). */
#include "gp/script.h"

#include "core/apdu.h"
#include "core/buf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct card {
    struct scp03_card *sc; /* NULL: plain card */
    struct scp03_keyset keys;
    uint32_t seq;
    bool corrupt_rmac;
    uint8_t pending[64];
    size_t pending_len;
    unsigned commands;
    size_t stored;
};

static const uint8_t isd_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const struct scp03_keyset keys = {
    .kvn = 0x30,
    .key_len = 16,
    .enc = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
    .mac = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
    .dek = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
};

static void put(uint8_t *resp, size_t *rl, const uint8_t *d, size_t n, uint16_t sw)
{
    if (n) {
        memcpy(resp, d, n);
    }
    ot_put_u16be(resp + n, sw);
    *rl = n + 2;
}

/* GET DATA P2 01: 01 02 / 9000; 02: 6A88; 03: 63 10 with data; 04: five bytes via
 * 61 05; STORE DATA: 9000. */
static void app(struct card *c, const struct apdu *a, uint8_t *d, size_t *dl, uint16_t *sw,
                bool *via61)
{
    *dl = 0;
    *sw = 0x9000;
    *via61 = false;
    if (a->ins == 0xE2) {
        c->stored += a->nc;
        return;
    }
    if (a->ins != 0xCA) {
        *sw = 0x6D00;
        return;
    }
    switch (a->p2) {
    case 0x01:
        d[0] = 0x01;
        d[1] = 0x02;
        *dl = 2;
        break;
    case 0x02:
        *sw = 0x6A88;
        break;
    case 0x03:
        d[0] = 0x33;
        *dl = 1;
        *sw = 0x6310;
        break;
    case 0x04:
        memcpy(d, (const uint8_t[]){0x0A, 0x0B, 0x0C, 0x0D, 0x0E}, 5);
        *dl = 5;
        *via61 = true;
        break;
    default:
        *sw = 0x6A86;
    }
}

static ot_err card_transmit(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *rl)
{
    struct card *c = ctx;
    struct apdu a;
    uint8_t plain[600], d[64], full[128];
    size_t pl = sizeof plain, dl = 0, fl = sizeof full;
    uint16_t sw = 0;
    bool via61 = false;

    c->commands++;
    assert_int_equal(apdu_parse(cmd, n, &a), OT_OK);
    if (a.ins == 0xC0) {
        put(resp, rl, c->pending, c->pending_len, 0x9000);
        c->pending_len = 0;
        return OT_OK;
    }
    if (a.ins == 0xA4) {
        if (c->sc) {
            scp03_card_reset(c->sc);
        }
        put(resp, rl, NULL, 0, 0x9000);
        return OT_OK;
    }
    if (a.ins == 0x50) {
        size_t l = sizeof full;
        assert_int_equal(scp03_card_initialize_update(c->sc, &c->keys, &c->seq, cmd, n, full, &l),
                         OT_OK);
        put(resp, rl, full, l, 0x9000);
        return OT_OK;
    }
    if (a.ins == 0x82) {
        ot_err e = scp03_card_external_authenticate(c->sc, cmd, n);
        put(resp, rl, NULL, 0, e == OT_OK ? 0x9000 : 0x6982);
        return OT_OK;
    }
    if (c->sc && scp03_card_is_open(c->sc)) {
        if (scp03_card_unwrap(c->sc, cmd, n, plain, &pl) != OT_OK) {
            put(resp, rl, NULL, 0, 0x6982);
            return OT_OK;
        }
        assert_int_equal(apdu_parse(plain, pl, &a), OT_OK);
        app(c, &a, d, &dl, &sw, &via61);
        assert_int_equal(scp03_card_wrap(c->sc, d, dl, sw, full, &fl), OT_OK);
        if (c->corrupt_rmac) {
            full[fl - 3] ^= 1;
            c->corrupt_rmac = false;
        }
    } else {
        app(c, &a, d, &dl, &sw, &via61);
        memcpy(full, d, dl);
        ot_put_u16be(full + dl, sw);
        fl = dl + 2;
    }
    if (via61) {
        assert_true(fl - 2 <= sizeof c->pending);
        memcpy(c->pending, full, fl - 2);
        c->pending_len = fl - 2;
        put(resp, rl, NULL, 0, (uint16_t)(0x6100 | (fl - 2)));
        return OT_OK;
    }
    memcpy(resp, full, fl);
    *rl = fl;
    return OT_OK;
}

static const uint8_t cmd_gd1[] = {0x80, 0xCA, 0x00, 0x01, 0x00};
static const uint8_t cmd_gd2[] = {0x80, 0xCA, 0x00, 0x02, 0x00};
static const uint8_t cmd_gd3[] = {0x80, 0xCA, 0x00, 0x03, 0x00};
static const uint8_t cmd_sd[] = {0x80, 0xE2, 0x80, 0x00, 0x03, 0x01, 0x02, 0x03};
static const uint8_t cmd_gd4[] = {0x80, 0xCA, 0x00, 0x04, 0x00};

static struct gp_script *make_script(const struct gp_script_cfg *cfg)
{
    struct gp_script *sc = NULL;
    assert_int_equal(gp_script_new(cfg, &sc), OT_OK);
    assert_int_equal(gp_script_add(sc, cmd_gd1, sizeof cmd_gd1), OT_OK);
    assert_int_equal(gp_script_add(sc, cmd_gd2, sizeof cmd_gd2), OT_OK);
    assert_int_equal(gp_script_add(sc, cmd_gd3, sizeof cmd_gd3), OT_OK);
    assert_int_equal(gp_script_add(sc, cmd_sd, sizeof cmd_sd), OT_OK);
    assert_int_equal(gp_script_add(sc, cmd_gd4, sizeof cmd_gd4), OT_OK);
    assert_int_equal(gp_script_count(sc), 5);
    return sc;
}

static struct gp_session *plain_session(void)
{
    struct gp_session_cfg cfg = {.scp = GP_SCP_NONE, .no_select = true};
    struct gp_session *s = NULL;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    return s;
}

static const struct {
    bool stop;
    bool warn_ok;
    size_t executed;
    size_t nfail;
    size_t fail_idx[2];
    uint16_t fail_sw[2];
} rows[] = {
    {false, false, 5, 2, {1, 2}, {0x6A88, 0x6310}},
    {false, true, 5, 1, {1, 0}, {0x6A88, 0}},
    {true, false, 2, 1, {1, 0}, {0x6A88, 0}},
};

static void test_results(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        struct card c = {0};
        struct gp_script_cfg cfg = {.stop_on_error = rows[r].stop,
                                    .accept_warnings = rows[r].warn_ok};
        struct gp_script *sc = make_script(&cfg);
        struct gp_session *s = plain_session();
        assert_int_equal(gp_script_run(sc, s, card_transmit, &c), OT_OK);
        assert_int_equal(gp_script_executed(sc), rows[r].executed);
        assert_int_equal(gp_script_stopped(sc), rows[r].stop);
        const struct gp_script_failure *f = NULL;
        assert_int_equal(gp_script_failures(sc, &f), rows[r].nfail);
        for (size_t k = 0; k < rows[r].nfail; k++) {
            assert_int_equal(f[k].index, rows[r].fail_idx[k]);
            assert_int_equal(f[k].sw, rows[r].fail_sw[k]);
            assert_int_equal(f[k].err, OT_OK);
        }
        const uint8_t *d = NULL;
        size_t dl = 0;
        uint16_t sw = 0;
        assert_int_equal(gp_script_response(sc, 0, &d, &dl, &sw), OT_OK);
        assert_int_equal(sw, 0x9000);
        assert_int_equal(dl, 2);
        assert_int_equal(d[1], 0x02);
        assert_int_equal(gp_script_response(sc, 1, &d, &dl, &sw), OT_OK);
        assert_int_equal(sw, 0x6A88);
        assert_int_equal(dl, 0);
        if (rows[r].executed == 5) {
            assert_int_equal(gp_script_response(sc, 2, &d, &dl, &sw), OT_OK);
            assert_int_equal(sw, 0x6310);
            assert_int_equal(dl, 1);
            assert_int_equal(gp_script_response(sc, 4, &d, &dl, &sw), OT_OK);
            assert_int_equal(dl, 5);
            assert_memory_equal(d, "\x0A\x0B\x0C\x0D\x0E", 5);
            assert_int_equal(c.stored, 3);
            /* five commands + one GET RESPONSE */
            assert_int_equal(c.commands, 6);
        }
        assert_int_equal(gp_script_response(sc, rows[r].executed, &d, &dl, &sw), OT_E_RANGE);
        /* Finished: further steps and additions are refused. */
        uint8_t capdu[GP_SESSION_MAX_CAPDU];
        size_t cl = sizeof capdu;
        bool done = false;
        assert_int_equal(gp_script_next(sc, s, cmd_gd1, 2, capdu, &cl, &done), OT_E_STATE);
        assert_int_equal(gp_script_add(sc, cmd_gd1, sizeof cmd_gd1), OT_E_STATE);
        gp_script_free(sc);
        gp_session_free(s);
    }
}

/* Step-wise, as a relay drives it: bytes out, bytes in. */
static void test_steps(void **state)
{
    (void)state;
    struct card c = {0};
    struct gp_script *sc = make_script(NULL);
    struct gp_session *s = plain_session();
    uint8_t capdu[GP_SESSION_MAX_CAPDU], rapdu[300];
    size_t cl = 4, rl = 0;
    bool done = false;
    unsigned sent = 0;

    assert_int_equal(gp_script_next(sc, s, NULL, 0, capdu, &cl, &done), OT_E_BUF_SMALL);
    assert_int_equal(cl, GP_SESSION_MAX_CAPDU);
    cl = sizeof capdu;
    assert_int_equal(gp_script_next(sc, s, NULL, 0, capdu, &cl, &done), OT_OK);
    assert_memory_equal(capdu, cmd_gd1, sizeof cmd_gd1);
    while (!done) {
        sent++;
        rl = sizeof rapdu;
        assert_int_equal(card_transmit(&c, capdu, cl, rapdu, &rl), OT_OK);
        cl = sizeof capdu;
        assert_int_equal(gp_script_next(sc, s, rapdu, rl, capdu, &cl, &done), OT_OK);
    }
    assert_int_equal(cl, 0);
    assert_int_equal(sent, 6);
    assert_int_equal(gp_script_executed(sc), 5);
    assert_false(gp_script_stopped(sc));
    gp_script_free(sc);
    gp_session_free(s);
}

static void test_scp03(void **state)
{
    (void)state;
    struct card c = {0};
    struct scp03_card_cfg cc = {.i_param = 0x70, .sd_aid = isd_aid, .sd_aid_len = sizeof isd_aid};
    assert_int_equal(scp03_card_new(&cc, &c.sc), OT_OK);
    c.keys = keys;
    struct gp_session_cfg cfg = {.scp = GP_SCP_03, .scp03_keys = &keys, .level = 0x33};
    struct gp_session *s = NULL;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    assert_int_equal(gp_session_open(s, card_transmit, &c), OT_OK);

    struct gp_script *sc = make_script(NULL);
    assert_int_equal(gp_script_run(sc, s, card_transmit, &c), OT_OK);
    assert_int_equal(gp_script_executed(sc), 5);
    const uint8_t *d = NULL;
    size_t dl = 0;
    uint16_t sw = 0;
    assert_int_equal(gp_script_response(sc, 4, &d, &dl, &sw), OT_OK);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(dl, 5);
    assert_int_equal(d[4], 0x0E);
    assert_int_equal(c.stored, 3);
    gp_script_free(sc);

    /* A bad R-MAC on the first command ends the script with the session error. */
    sc = make_script(NULL);
    c.corrupt_rmac = true;
    assert_int_equal(gp_script_run(sc, s, card_transmit, &c), OT_E_RMAC);
    const struct gp_script_failure *f = NULL;
    assert_int_equal(gp_script_failures(sc, &f), 1);
    assert_int_equal(f[0].index, 0);
    assert_int_equal(f[0].sw, 0);
    assert_int_equal(f[0].err, OT_E_RMAC);
    assert_true(gp_script_stopped(sc));
    assert_int_equal(gp_script_executed(sc), 0);
    gp_script_free(sc);
    gp_session_free(s);
    scp03_card_free(c.sc);
}

static void test_limits(void **state)
{
    (void)state;
    struct gp_script *sc = NULL;
    struct gp_script_cfg cfg = {.max_commands = 2};
    assert_int_equal(gp_script_new(&cfg, &sc), OT_OK);
    assert_int_equal(gp_script_add(sc, cmd_gd1, sizeof cmd_gd1), OT_OK);
    static const uint8_t bad[] = {0x80, 0xCA, 0x00, 0x01, 0x05, 0x01};
    assert_int_equal(gp_script_add(sc, bad, sizeof bad), OT_E_APDU_LEN);
    assert_int_equal(gp_script_add(sc, cmd_gd1, 3), OT_E_APDU_LEN);
    assert_int_equal(gp_script_add(sc, cmd_gd2, sizeof cmd_gd2), OT_OK);
    assert_int_equal(gp_script_add(sc, cmd_gd3, sizeof cmd_gd3), OT_E_LIMIT);
    assert_int_equal(gp_script_count(sc), 2);
    gp_script_free(sc);
    cfg = (struct gp_script_cfg){.max_bytes = 8};
    assert_int_equal(gp_script_new(&cfg, &sc), OT_OK);
    assert_int_equal(gp_script_add(sc, cmd_gd1, sizeof cmd_gd1), OT_OK);
    assert_int_equal(gp_script_add(sc, cmd_gd2, sizeof cmd_gd2), OT_E_LIMIT);
    gp_script_free(sc);
    gp_script_free(NULL);
    assert_int_equal(gp_script_new(NULL, NULL), OT_E_ARG);

    /* An empty script finishes at once. */
    struct gp_session *s = plain_session();
    assert_int_equal(gp_script_new(NULL, &sc), OT_OK);
    uint8_t capdu[GP_SESSION_MAX_CAPDU];
    size_t cl = sizeof capdu;
    bool done = false;
    assert_int_equal(gp_script_next(sc, s, NULL, 0, capdu, &cl, &done), OT_OK);
    assert_true(done);
    assert_int_equal(cl, 0);
    gp_script_free(sc);
    gp_session_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results),
        cmocka_unit_test(test_steps),
        cmocka_unit_test(test_scp03),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
