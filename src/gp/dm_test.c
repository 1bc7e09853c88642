/* Tests of the Delegated Management host side (dm.c): tokens and receipts
 * against values computed here with AES-CMAC, the parsers' refusals, and
 * the whole exchange with a vse card in-process (profile ese-thirdparty:
 * the ISD verifies tokens with KVN 70 and signs receipts with KVN 71, SP SD
 * F04F54534D534412 has Delegated Management).
 */
#include "core/testutil.h"

#include "core/hex.h"
#include "crypto/cmac.h"
#include "gp/cmd.h"
#include "gp/dm.h"
#include "gp/privs.h"
#include "gp/session.h"
#include "se/card.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_KEY   "707172737475767778797A7B7C7D7E7F"
#define RECEIPT_KEY "7172737475767778797A7B7C7D7E7F80"

static const uint8_t app_aid[] = {0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10};
static const uint8_t pkg_aid[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02};
static const uint8_t mod_aid[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02, 0x01};

static size_t key_of(const char *hex, uint8_t *k)
{
    return testutil_unhex(hex, k, 32);
}

/* ---------------------------------------------------------------- tokens */

static void test_token_install(void **state)
{
    (void)state;
    uint8_t key[32], cmd[GP_MAX_CMD_LEN], out[GP_MAX_CMD_LEN], privs = 0;
    size_t kl = key_of(TOKEN_KEY, key), n = sizeof cmd, on = sizeof out;
    struct gp_install_args a = {.elf_aid = pkg_aid,
                                .elf_aid_len = sizeof pkg_aid,
                                .module_aid = mod_aid,
                                .module_aid_len = sizeof mod_aid,
                                .app_aid = app_aid,
                                .app_aid_len = sizeof app_aid,
                                .privs = &privs,
                                .privs_len = 1};
    assert_int_equal(gp_cmd_install_for_install(0, &a, true, cmd, &n), OT_OK);
    assert_int_equal(gp_dm_token_sign(key, kl, cmd, n, out, &on), OT_OK);
    /* Same header, Lc + 16, the data up to the token field, 10, the token, Le. */
    size_t nc = cmd[4], signed_len = nc - 1;
    assert_int_equal(on, n + GP_DM_SIG_LEN);
    assert_memory_equal(out, cmd, 4);
    assert_int_equal(out[4], nc + GP_DM_SIG_LEN);
    assert_memory_equal(out + 5, cmd + 5, signed_len);
    assert_int_equal(out[5 + signed_len], GP_DM_SIG_LEN);
    assert_int_equal(out[on - 1], 0x00);
    uint8_t msg[300], tok[16];
    msg[0] = 0x0C;
    msg[1] = 0x00;
    msg[2] = (uint8_t)signed_len;
    memcpy(msg + 3, cmd + 5, signed_len);
    assert_int_equal(cmac_aes(key, kl, msg, 3 + signed_len, tok), OT_OK);
    assert_memory_equal(out + 6 + signed_len, tok, 16);
    /* Too small a buffer: the size needed. */
    on = 10;
    assert_int_equal(gp_dm_token_sign(key, kl, cmd, n, out, &on), OT_E_BUF_SMALL);
    assert_int_equal(on, n + GP_DM_SIG_LEN);
}

static void test_token_delete(void **state)
{
    (void)state;
    static const uint8_t crt[] = {0x93, 0x01, 0x05};
    uint8_t key[32], cmd[64], out[64], msg[64], tok[16];
    size_t kl = key_of(TOKEN_KEY, key), n = sizeof cmd, on = sizeof out;
    struct gp_delete_args d = {
        .aid = app_aid, .aid_len = sizeof app_aid, .related = true, .crt = crt, .crt_len = 3};
    assert_int_equal(gp_cmd_delete(0, &d, cmd, &n), OT_OK);
    assert_int_equal(gp_dm_token_sign(key, kl, cmd, n, out, &on), OT_OK);
    size_t nc = cmd[4];
    assert_int_equal(on, n + 18);
    assert_int_equal(out[4], nc + 18);
    assert_int_equal(out[5 + nc], 0x9E);
    assert_int_equal(out[6 + nc], 0x10);
    msg[0] = 0x00;
    msg[1] = 0x80;
    msg[2] = (uint8_t)nc;
    memcpy(msg + 3, cmd + 5, nc);
    assert_int_equal(cmac_aes(key, kl, msg, 3 + nc, tok), OT_OK);
    assert_memory_equal(out + 7 + nc, tok, 16);
}

static void test_token_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *hex;
        ot_err want;
    } rows[] = {
        {"84E60C000500000000000000", OT_E_APDU},               /* secure messaging CLA */
        {"00E60C0005000000000000", OT_E_APDU},                 /* ISO CLA */
        {"80E68C0005000000000000", OT_E_APDU},                 /* chained */
        {"80E620000500000500000000", OT_E_APDU},               /* for personalization */
        {"80E60E010500000000000000", OT_E_APDU},               /* combined */
        {"80E60C0005000000000100", OT_E_FORMAT},               /* token field not empty */
        {"80E60C0009000000000000", OT_E_APDU},                 /* Lc disagrees */
        {"80CA00C200", OT_E_APDU},                             /* another INS */
        {"80E400000C4F07A00000000310109E010100", OT_E_FORMAT}, /* has a token */
        {"80E4000003D2013000", OT_E_FORMAT},                   /* DELETE [key] */
        {"80E4000005C00101020300", OT_E_FORMAT},               /* no 4F first */
        {"80E4000003D20130", OT_E_FORMAT},
    };
    uint8_t key[32], out[GP_MAX_CMD_LEN];
    size_t kl = key_of(TOKEN_KEY, key);
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        uint8_t cmd[300];
        size_t n = testutil_unhex(rows[k].hex, cmd, sizeof cmd), on = sizeof out;
        print_message("row %zu\n", k);
        assert_int_equal(gp_dm_token_sign(key, kl, cmd, n, out, &on), rows[k].want);
    }
    /* Data that would pass 255 bytes with the token. */
    uint8_t big[300];
    size_t on = sizeof out;
    memset(big, 0, sizeof big);
    memcpy(big, "\x80\xE6\x0C\x00\xF5", 5);
    assert_int_equal(gp_dm_token_sign(key, kl, big, 5 + 0xF5 + 1, out, &on), OT_E_TOO_LONG);
    /* Keys of 16, 24, 32 bytes only. */
    uint8_t cmd[32];
    size_t n = testutil_unhex("80E60C000500000000000000", cmd, sizeof cmd);
    on = sizeof out;
    assert_int_equal(gp_dm_token_sign(key, 15, cmd, n, out, &on), OT_E_ARG);
    on = sizeof out;
    assert_int_equal(gp_dm_token_sign(NULL, 16, cmd, n, out, &on), OT_E_ARG);
}

/* ---------------------------------------------------------------- receipts */

/* A confirmation for a DELETE of app_aid, as a card would build it. */
static size_t make_confirmation(uint8_t *out, uint16_t ctr, const char *uniq_hex,
                                const char *tid_hex)
{
    uint8_t key[32], conf[80], body[32], tag[16];
    size_t kl = key_of(RECEIPT_KEY, key), cn = 0;
    conf[cn++] = 0x02;
    conf[cn++] = (uint8_t)(ctr >> 8);
    conf[cn++] = (uint8_t)ctr;
    size_t ul = testutil_unhex(uniq_hex, conf + cn + 1, 32);
    conf[cn] = (uint8_t)ul;
    cn += 1 + ul;
    if (tid_hex != NULL) {
        size_t tl = testutil_unhex(tid_hex, conf + cn + 1, 32);
        conf[cn] = (uint8_t)tl;
        cn += 1 + tl;
    }
    body[0] = sizeof app_aid;
    memcpy(body + 1, app_aid, sizeof app_aid);
    uint8_t msg[120];
    memcpy(msg, conf, cn);
    memcpy(msg + cn, body, 1 + sizeof app_aid);
    assert_int_equal(cmac_aes(key, kl, msg, cn + 1 + sizeof app_aid, tag), OT_OK);
    size_t k = 0;
    out[k++] = (uint8_t)(1 + 16 + cn);
    out[k++] = 16;
    memcpy(out + k, tag, 16);
    k += 16;
    memcpy(out + k, conf, cn);
    return k + cn;
}

static void test_receipt_verify(void **state)
{
    (void)state;
    uint8_t key[32], data[128], uniq[16];
    size_t kl = key_of(RECEIPT_KEY, key);
    size_t n = make_confirmation(data, 7, "4F54534D4F54534D45534502", "0107");
    struct gp_dm_expect e = {.op = GP_DM_DELETE, .app = app_aid, .app_len = sizeof app_aid};
    struct gp_dm_confirmation cf;
    assert_int_equal(gp_dm_receipt_verify(key, kl, &e, data, n, &cf), OT_OK);
    assert_int_equal(cf.counter, 7);
    testutil_assert_hex(cf.sd_unique, cf.sd_unique_len, "4F54534D4F54534D45534502");
    testutil_assert_hex(cf.token_id, cf.token_id_len, "0107");
    /* The expected card. */
    e.sd_unique = uniq;
    e.sd_unique_len = testutil_unhex("4F54534D4F54534D45534502", uniq, sizeof uniq);
    e.min_counter = 7;
    assert_int_equal(gp_dm_receipt_verify(key, kl, &e, data, n, NULL), OT_OK);
    e.min_counter = 8;
    assert_int_equal(gp_dm_receipt_verify(key, kl, &e, data, n, NULL), OT_E_REPLAY);
    e.min_counter = 0;
    uniq[11] ^= 1;
    assert_int_equal(gp_dm_receipt_verify(key, kl, &e, data, n, NULL), OT_E_CONFLICT);
    e.sd_unique = NULL;
    /* Any altered byte of receipt or confirmation data. */
    for (size_t i = 2; i < n; i++) {
        data[i] ^= 0x20;
        ot_err got = gp_dm_receipt_verify(key, kl, &e, data, n, NULL);
        assert_true(got == OT_E_RMAC || got == OT_E_FORMAT);
        data[i] ^= 0x20;
    }
    /* Another operation, another key. */
    e.op = GP_DM_INSTALL;
    e.elf = pkg_aid;
    e.elf_len = sizeof pkg_aid;
    assert_int_equal(gp_dm_receipt_verify(key, kl, &e, data, n, NULL), OT_E_RMAC);
    e.op = GP_DM_DELETE;
    key[0] ^= 1;
    assert_int_equal(gp_dm_receipt_verify(key, kl, &e, data, n, NULL), OT_E_RMAC);
    key[0] ^= 1;
    /* Missing AID the op needs; unknown op. */
    e.op = GP_DM_LOAD;
    assert_int_equal(gp_dm_receipt_verify(key, kl, &e, data, n, NULL), OT_E_ARG);
    e.op = (enum gp_dm_op)99;
    assert_int_equal(gp_dm_receipt_verify(key, kl, &e, data, n, NULL), OT_E_ARG);
}

static void test_confirmation_parse(void **state)
{
    (void)state;
    static const struct {
        const char *hex;
        ot_err want;
    } rows[] = {
        {"00", OT_E_NOT_FOUND},
        {"", OT_E_FORMAT},
        {"0100", OT_E_FORMAT},     /* receipt length missing its receipt */
        {"02", OT_E_FORMAT},       /* shorter than said */
        {"03010002", OT_E_FORMAT}, /* receipt length 1 */
        {"0500", OT_E_FORMAT},     /* trailing */
        {"8105", OT_E_FORMAT},     /* 81 with a short length */
        {"150800000000000000000000000000000000000002000104", OT_E_FORMAT},
    };
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        uint8_t d[64];
        struct gp_dm_confirmation cf;
        size_t n = testutil_unhex(rows[k].hex, d, sizeof d);
        print_message("row %zu\n", k);
        ot_err got = gp_dm_parse_confirmation(d, n, &cf);
        assert_true(got == rows[k].want
                    || (rows[k].want == OT_E_FORMAT && got == OT_E_UNSUPPORTED));
    }
    uint8_t data[128];
    size_t n = make_confirmation(data, 1, "4F54534D", NULL);
    struct gp_dm_confirmation cf;
    assert_int_equal(gp_dm_parse_confirmation(data, n, &cf), OT_OK);
    assert_int_equal(cf.counter, 1);
    assert_int_equal(cf.token_id_len, 0);
    assert_int_equal(gp_dm_parse_confirmation(data, n - 1, &cf), OT_E_FORMAT);
    uint16_t c = 0;
    uint8_t c2[] = {0xC2, 0x02, 0x01, 0x02};
    assert_int_equal(gp_dm_parse_counter(c2, 4, &c), OT_OK);
    assert_int_equal(c, 0x0102);
    assert_int_equal(gp_dm_parse_counter(c2 + 2, 2, &c), OT_OK);
    assert_int_equal(gp_dm_parse_counter(c2, 3, &c), OT_E_FORMAT);
}

/* ---------------------------------------------------------------- with the vse */

#define DM_SD     "F04F54534D534412"
#define DM_SD_KEY "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF"
#define CHILD_SD  "F04F54534D534477"
#define ISD_UNIQ  "4F54534D4F54534D45534502"

static ot_err vse_xmit(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *resp_len)
{
    return se_card_transmit(ctx, cmd, n, resp, resp_len);
}

static struct gp_session *open_sd(struct se_card *card, const uint8_t *sd, size_t sd_len)
{
    struct scp03_keyset ks;
    memset(&ks, 0, sizeof ks);
    ks.kvn = 0x30;
    ks.key_len = testutil_unhex(DM_SD_KEY, ks.enc, sizeof ks.enc);
    memcpy(ks.mac, ks.enc, 16);
    memcpy(ks.dek, ks.enc, 16);
    struct gp_session_cfg cfg = {
        .sd_aid = sd, .sd_aid_len = sd_len, .scp = GP_SCP_03, .scp03_keys = &ks, .level = 0x03};
    struct gp_session *s = NULL;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    assert_int_equal(gp_session_open(s, vse_xmit, card), OT_OK);
    return s;
}

/* Signs cmd, sends it; returns the SW, the response data in resp. */
static uint16_t send_dm(struct gp_session *s, struct se_card *card, const uint8_t *cmd, size_t n,
                        uint8_t *resp, size_t *rl)
{
    uint8_t key[32], signed_cmd[GP_MAX_CMD_LEN];
    size_t kl = key_of(TOKEN_KEY, key), sn = sizeof signed_cmd;
    uint16_t sw = 0;
    assert_int_equal(gp_dm_token_sign(key, kl, cmd, n, signed_cmd, &sn), OT_OK);
    assert_int_equal(gp_session_transmit(s, vse_xmit, card, signed_cmd, sn, resp, rl, &sw), OT_OK);
    return sw;
}

static void test_with_vse(void **state)
{
    (void)state;
    struct se_card *card = NULL;
    assert_int_equal(
        se_card_from_profile_file(OT_SOURCE_DIR "/profiles/ese-thirdparty.json", &card), OT_OK);
    uint8_t atr[SE_MAX_ATR], dm[16], child[16], rkey[32], uniq[16], resp[256];
    size_t atr_len = sizeof atr, rl;
    assert_int_equal(se_card_power_on(card, atr, &atr_len), OT_OK);
    size_t dm_len = testutil_unhex(DM_SD, dm, sizeof dm);
    size_t child_len = testutil_unhex(CHILD_SD, child, sizeof child);
    size_t rkl = key_of(RECEIPT_KEY, rkey);
    size_t ul = testutil_unhex(ISD_UNIQ, uniq, sizeof uniq);
    struct gp_session *s = open_sd(card, dm, dm_len);
    struct gp_dm_confirmation cf;

    /* 1. The DM SD creates an SD below itself: Install Receipt, counter 0. */
    static const uint8_t spkg[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50};
    static const uint8_t smod[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41};
    static const uint8_t c9[] = {0x81, 0x02, 0x03, 0x70};
    uint8_t params[16], pb[3], cmd[GP_MAX_CMD_LEN];
    size_t pl = sizeof params, n = sizeof cmd;
    struct gp_install_params ip = {.with_c9 = true, .app_params = c9, .app_params_len = sizeof c9};
    assert_int_equal(gp_install_params_encode(&ip, params, &pl), OT_OK);
    gp_privs_encode(GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN), pb);
    struct gp_install_args ia = {.elf_aid = spkg,
                                 .elf_aid_len = sizeof spkg,
                                 .module_aid = smod,
                                 .module_aid_len = sizeof smod,
                                 .app_aid = child,
                                 .app_aid_len = child_len,
                                 .privs = pb,
                                 .privs_len = 3,
                                 .params = params,
                                 .params_len = pl};
    assert_int_equal(gp_cmd_install_for_install(0, &ia, true, cmd, &n), OT_OK);
    rl = sizeof resp;
    assert_int_equal(send_dm(s, card, cmd, n, resp, &rl), 0x9000);
    struct gp_dm_expect e = {.op = GP_DM_INSTALL,
                             .elf = spkg,
                             .elf_len = sizeof spkg,
                             .app = child,
                             .app_len = child_len,
                             .sd_unique = uniq,
                             .sd_unique_len = ul};
    assert_int_equal(gp_dm_receipt_verify(rkey, rkl, &e, resp, rl, &cf), OT_OK);
    assert_int_equal(cf.counter, 0);

    /* 2. Extradition of its payment instance to that SD: counter 1. */
    struct gp_install_args xa = {.sd_aid = child,
                                 .sd_aid_len = child_len,
                                 .app_aid = app_aid,
                                 .app_aid_len = sizeof app_aid};
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_extradition(0, &xa, cmd, &n), OT_OK);
    rl = sizeof resp;
    assert_int_equal(send_dm(s, card, cmd, n, resp, &rl), 0x9000);
    struct gp_dm_expect ex = {.op = GP_DM_EXTRADITE,
                              .old_sd = dm,
                              .old_sd_len = dm_len,
                              .app = app_aid,
                              .app_len = sizeof app_aid,
                              .sd = child,
                              .sd_len = child_len,
                              .min_counter = 1};
    assert_int_equal(gp_dm_receipt_verify(rkey, rkl, &ex, resp, rl, &cf), OT_OK);
    assert_int_equal(cf.counter, 1);
    /* Old and new SD swapped: not what the card did. */
    ex.old_sd = child;
    ex.sd = dm;
    assert_int_equal(gp_dm_receipt_verify(rkey, rkl, &ex, resp, rl, NULL), OT_E_RMAC);

    /* 3. Registry update moving it back: counter 2. */
    struct gp_install_args ru = {
        .sd_aid = dm, .sd_aid_len = dm_len, .app_aid = app_aid, .app_aid_len = sizeof app_aid};
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_registry_update(0, &ru, cmd, &n), OT_OK);
    rl = sizeof resp;
    assert_int_equal(send_dm(s, card, cmd, n, resp, &rl), 0x9000);
    struct gp_dm_expect er = {.op = GP_DM_REGISTRY_UPDATE,
                              .old_sd = child,
                              .old_sd_len = child_len,
                              .app = app_aid,
                              .app_len = sizeof app_aid,
                              .sd = dm,
                              .sd_len = dm_len,
                              .min_counter = 2};
    assert_int_equal(gp_dm_receipt_verify(rkey, rkl, &er, resp, rl, &cf), OT_OK);
    assert_int_equal(cf.counter, 2);

    /* 4. Deleting the new SD: counter 3; GET DATA C2 of the ISD then says 4. */
    struct gp_delete_args da = {.aid = child, .aid_len = child_len};
    n = sizeof cmd;
    assert_int_equal(gp_cmd_delete(0, &da, cmd, &n), OT_OK);
    rl = sizeof resp;
    assert_int_equal(send_dm(s, card, cmd, n, resp, &rl), 0x9000);
    struct gp_dm_expect ed = {.op = GP_DM_DELETE, .app = child, .app_len = child_len};
    assert_int_equal(gp_dm_receipt_verify(rkey, rkl, &ed, resp, rl, &cf), OT_OK);
    assert_int_equal(cf.counter, 3);
    gp_session_free(s);
    uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x00}, gd[] = {0x80, 0xCA, 0x00, 0xC2, 0x00};
    uint8_t r[64];
    size_t rn = sizeof r;
    assert_int_equal(se_card_transmit(card, sel, sizeof sel, r, &rn), OT_OK);
    rn = sizeof r;
    assert_int_equal(se_card_transmit(card, gd, sizeof gd, r, &rn), OT_OK);
    assert_int_equal(rn, 6);
    uint16_t ctr = 0;
    assert_int_equal(gp_dm_parse_counter(r, rn - 2, &ctr), OT_OK);
    assert_int_equal(ctr, 4);
    se_card_free(card);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_install),      cmocka_unit_test(test_token_delete),
        cmocka_unit_test(test_token_refusals),     cmocka_unit_test(test_receipt_verify),
        cmocka_unit_test(test_confirmation_parse), cmocka_unit_test(test_with_vse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
