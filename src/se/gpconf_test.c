/* GP conformance of the vse as tried with an independent GP client (issue 12
 * point 5): each test drives a card made from a profile through
 * se_card_transmit, with SCP03 sessions and commands of the host library
 * (gp/cmd.h, gp/dm.h), as a GP tool would.
 *
 *   1  DELETE of a key set with P2 80 deletes it (80E4008003D2013100)
 *   2  a module of a package without native code gives an inert instance
 *   3  Delegated Management receipts and the confirmation counter (persisted)
 *   4  a new application goes with the SD of its ELF (GPCS 9.3.3)
 *   5  GET DATA 0067 (GPCS H.4)
 *   6  Card Reset and Final Application of the ISD in the *-thirdparty layouts
 */
#include "se/applets/aptest.h"

#include "core/tlv.h"
#include "crypto/cmac.h"
#include "gp/cap.h"
#include "gp/dm.h"
#include "gp/load.h"
#include "gp/parse.h"
#include "gp/privs.h"

#include <openssl/evp.h>

/* ---------------------------------------------------------------- fixtures */

#define GC_TOKEN_KEY   "707172737475767778797A7B7C7D7E7F"
#define GC_RECEIPT_KEY "7172737475767778797A7B7C7D7E7F80"
#define GC_CENTRAL     "F04F54534D534401"
#define GC_CENTRAL_KEY "505152535455565758595A5B5C5D5E5F"
#define GC_DM_SD       "F04F54534D534412"
#define GC_DM_KEY      "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF"
#define GC_MDPH        "F04F54534D534404" /* Mandated DAP Verification */
#define GC_DAP_KEY     "737475767778797A7B7C7D7E7F808182"
/* ISD IIN || CIN of ese-thirdparty.json: the receipt SD's unique data. */
#define GC_ISD_UNIQUE "4F54534D4F54534D45534502"

/* A Java Card package the vse has no code for, with one applet module. */
#define GC_PKG "D276000118AA"
#define GC_MOD "D276000118AA01"
#define GC_APP "D276000118AA0101"

/* The Load File Data Block of GC_PKG: a CAP Header component (JCVM 6.4,
 * package 1.0) and an Applet component naming GC_MOD (JCVM 6.5). */
static size_t gc_lfdb(uint8_t *out, size_t cap)
{
    return testutil_unhex("010010DECAFFED0102040001"
                          "06" GC_PKG /* Header */
                          "03000B01"
                          "07" GC_MOD "0042", /* Applet */
                          out, cap);
}

static void gc_sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    unsigned int got = 0;
    assert_int_equal(EVP_Digest(p, n, out, &got, EVP_sha256(), NULL), 1);
}

/* Appends the DM token (gp/dm.h) to cmd in place. */
static size_t gc_token(uint8_t *cmd, size_t n)
{
    uint8_t key[16], out[GP_MAX_CMD_LEN];
    size_t on = sizeof out;
    testutil_unhex(GC_TOKEN_KEY, key, sizeof key);
    assert_int_equal(gp_dm_token_sign(key, sizeof key, cmd, n, out, &on), OT_OK);
    memcpy(cmd, out, on);
    return on;
}

/* INSTALL [for load] of GC_PKG with its LFDB hash, then the LOAD blocks;
 * returns the SW of the last LOAD (response data in t->resp). The
 * *-thirdparty layouts have an SD with Mandated DAP Verification: with dap,
 * the Load File carries its DAP block (AES-CMAC of the hash, key KVN 73). */
static uint16_t gc_load(struct aptest *t, struct gp_session *s, bool token, bool dap)
{
    uint8_t lfdb[64], file[160], hash[32], pkg[16], cmd[GP_MAX_CMD_LEN];
    uint8_t dkey[16], dsd[16], sig[16];
    size_t ln = gc_lfdb(lfdb, sizeof lfdb), fn = sizeof file, n = sizeof cmd;
    gc_sha256(lfdb, ln, hash);
    struct cap_dap d = {.sd_aid = dsd,
                        .sd_aid_len = testutil_unhex(GC_MDPH, dsd, sizeof dsd),
                        .sig = sig,
                        .sig_len = sizeof sig};
    testutil_unhex(GC_DAP_KEY, dkey, sizeof dkey);
    assert_int_equal(cmac_aes(dkey, sizeof dkey, hash, sizeof hash, sig), OT_OK);
    assert_int_equal(cap_load_file_build(lfdb, ln, dap ? &d : NULL, dap ? 1 : 0, file, &fn), OT_OK);
    struct gp_install_args a = {.elf_aid = pkg,
                                .elf_aid_len = testutil_unhex(GC_PKG, pkg, sizeof pkg),
                                .hash = hash,
                                .hash_len = sizeof hash};
    assert_int_equal(gp_cmd_install_for_load(0, &a, cmd, &n), OT_OK);
    if (token) {
        n = gc_token(cmd, n);
    }
    if (aptest_send(t, s, cmd, n) != 0x9000) {
        return t->sw;
    }
    aptest_assert_resp(t, "00");
    struct load_iter it;
    assert_int_equal(load_iter_init(&it, file, fn, 16, 0), OT_OK);
    while (!load_iter_done(&it)) {
        uint8_t lc[LOAD_MAX_APDU];
        size_t lcl = sizeof lc;
        assert_int_equal(load_iter_next(&it, lc, &lcl, NULL), OT_OK);
        if (aptest_send(t, s, lc, lcl) != 0x9000) {
            return t->sw;
        }
    }
    return t->sw;
}

/* INSTALL [for install and make selectable] of mod_hex from elf_hex as
 * app_hex, with an optional token. */
static uint16_t gc_install(struct aptest *t, struct gp_session *s, const char *elf_hex,
                           const char *mod_hex, const char *app_hex, bool token)
{
    uint8_t elf[16], mod[16], app[16], cmd[GP_MAX_CMD_LEN], privs = 0;
    size_t n = sizeof cmd;
    struct gp_install_args a = {.elf_aid = elf,
                                .elf_aid_len = testutil_unhex(elf_hex, elf, sizeof elf),
                                .module_aid = mod,
                                .module_aid_len = testutil_unhex(mod_hex, mod, sizeof mod),
                                .app_aid = app,
                                .app_aid_len = testutil_unhex(app_hex, app, sizeof app),
                                .privs = &privs,
                                .privs_len = 1};
    assert_int_equal(gp_cmd_install_for_install(0, &a, true, cmd, &n), OT_OK);
    if (token) {
        n = gc_token(cmd, n);
    }
    return aptest_send(t, s, cmd, n);
}

/* INSTALL [for install and make selectable] of an SD (privileges 800000,
 * SCP03 i=70) from the GP SD package. */
static size_t gc_install_sd(uint8_t *cmd, const char *aid_hex)
{
    static const uint8_t spkg[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50};
    static const uint8_t smod[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41};
    static const uint8_t c9[] = {0x81, 0x02, 0x03, 0x70}, pb[3] = {0x80, 0x00, 0x00};
    uint8_t aid[16], params[16];
    size_t pl = sizeof params, n = GP_MAX_CMD_LEN;
    struct gp_install_params ip = {.with_c9 = true, .app_params = c9, .app_params_len = sizeof c9};
    assert_int_equal(gp_install_params_encode(&ip, params, &pl), OT_OK);
    struct gp_install_args ia = {.elf_aid = spkg,
                                 .elf_aid_len = sizeof spkg,
                                 .module_aid = smod,
                                 .module_aid_len = sizeof smod,
                                 .app_aid = aid,
                                 .app_aid_len = testutil_unhex(aid_hex, aid, sizeof aid),
                                 .privs = pb,
                                 .privs_len = 3,
                                 .params = params,
                                 .params_len = pl};
    assert_int_equal(gp_cmd_install_for_install(0, &ia, true, cmd, &n), OT_OK);
    return n;
}

/* Index of app_hex in the registry. */
static int gc_app(const struct aptest *t, const char *app_hex)
{
    uint8_t aid[16];
    size_t n = testutil_unhex(app_hex, aid, sizeof aid);
    return se_find_app(&t->c->st, aid, n);
}

static void gc_assert_assoc(const struct aptest *t, const char *app_hex, const char *sd_hex)
{
    int i = gc_app(t, app_hex);
    assert_true(i > 0);
    testutil_assert_hex(t->c->st.apps[i].sd.b, t->c->st.apps[i].sd.len, sd_hex);
}

/* GET DATA C2 of the ISD, plain (after SELECT of the ISD). */
static uint16_t gc_counter(struct aptest *t)
{
    uint16_t v = 0;
    assert_int_equal(aptest_tx(t, "00A4040000"), 0x9000);
    assert_int_equal(aptest_tx(t, "80CA00C200"), 0x9000);
    assert_int_equal(gp_dm_parse_counter(t->resp, t->rlen, &v), OT_OK);
    return v;
}

/* The receipt in t->resp verifies for e with the receipt key. */
static uint16_t gc_receipt(const struct aptest *t, struct gp_dm_expect *e)
{
    uint8_t key[16], uniq[16];
    struct gp_dm_confirmation cf;
    testutil_unhex(GC_RECEIPT_KEY, key, sizeof key);
    e->sd_unique = uniq;
    e->sd_unique_len = testutil_unhex(GC_ISD_UNIQUE, uniq, sizeof uniq);
    assert_int_equal(gp_dm_receipt_verify(key, sizeof key, e, t->resp, t->rlen, &cf), OT_OK);
    return cf.counter;
}

/* ---------------------------------------------------------------- 1 DELETE key, P2 80 */

static void test_delete_keyset_related(void **state)
{
    (void)state;
    static const char profile[] =
        "{\"type\":\"eSE\",\"card_lcs\":\"SECURED\",\"isd\":{\"privileges\":\"9EFE80\","
        "\"scp\":3,\"i\":\"10\",\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" APTEST_KEY
        "\",\"mac\":\"" APTEST_KEY "\",\"dek\":\"" APTEST_KEY "\"},{\"kvn\":49,\"type\":\"aes\","
        "\"enc\":\"" GC_DM_KEY "\",\"mac\":\"" GC_DM_KEY "\",\"dek\":\"" GC_DM_KEY "\"}]}}";
    struct aptest *t = aptest_new_profile(profile);
    struct gp_session *s = aptest_isd(t);
    uint8_t cmd[64];
    size_t n = testutil_unhex("80E4008003D2013100", cmd, sizeof cmd);

    /* As GlobalPlatformPro sends it: P2 80, key set 31. */
    assert_int_equal(aptest_send(t, s, cmd, n), 0x9000);
    aptest_assert_resp(t, "00");
    size_t gn = sizeof cmd;
    assert_int_equal(gp_cmd_get_data(0, GP_TAG_KEY_INFO, cmd, &gn), OT_OK);
    assert_int_equal(aptest_send(t, s, cmd, gn), 0x9000);
    struct gp_key_info ki[8];
    size_t nk = 8;
    assert_int_equal(gp_parse_key_info(t->resp, t->rlen, ki, &nk), OT_OK);
    assert_int_equal(nk, 3);
    for (size_t i = 0; i < nk; i++) {
        assert_int_equal(ki[i].kvn, 0x30);
    }
    /* Gone for good: again 6A88, and the image does not change. */
    struct ot_buf before, after;
    aptest_image(t, &before);
    n = testutil_unhex("80E4008003D2013100", cmd, sizeof cmd);
    assert_int_equal(aptest_send(t, s, cmd, n), 0x6A88);
    aptest_image(t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);
    gp_session_free(s);
    aptest_reopen(t);
    s = aptest_isd(t); /* key set 30 survived */
    gp_session_free(s);
    aptest_free(t);
}

/* ---------------------------------------------------------------- 2 inert instances */

static void test_inert_instance_round_trip(void **state)
{
    (void)state;
    struct aptest *t = aptest_new("");
    struct gp_session *s = aptest_isd(t);
    assert_int_equal(gc_load(t, s, false, false), 0x9000);
    assert_int_equal(gc_install(t, s, GC_PKG, GC_MOD, GC_APP, false), 0x9000);
    aptest_assert_resp(t, "00");
    gp_session_free(s);

    /* SELECT answers its FCI; other commands 6D00; across a power cycle. */
    for (int round = 0; round < 2; round++) {
        assert_int_equal(aptest_select(t, GC_APP), 0x9000);
        aptest_assert_resp(t, "6F0A8408" GC_APP);
        assert_int_equal(aptest_tx(t, "00B0000000"), 0x6D00);
        assert_int_equal(aptest_tx(t, "80CA00CF00"), 0x6D00);
        aptest_reopen(t);
    }

    /* DELETE of the Load File and its instance (P2 80). */
    s = aptest_isd(t);
    uint8_t pkg[16], cmd[64];
    size_t n = sizeof cmd;
    struct gp_delete_args da = {
        .aid = pkg, .aid_len = testutil_unhex(GC_PKG, pkg, sizeof pkg), .related = true};
    assert_int_equal(gp_cmd_delete(0, &da, cmd, &n), OT_OK);
    assert_int_equal(aptest_send(t, s, cmd, n), 0x9000);
    gp_session_free(s);
    assert_int_equal(aptest_select(t, GC_APP), 0x6A82);
    assert_true(gc_app(t, GC_APP) < 0);
    aptest_free(t);
}

/* ---------------------------------------------------------------- 3 receipts */

static void test_dm_receipts_and_counter(void **state)
{
    (void)state;
    struct aptest *t = aptest_new_file("ese-thirdparty.json");
    uint8_t pkg[16], app[16], sd[16], cmd[GP_MAX_CMD_LEN];
    size_t pkg_len = testutil_unhex(GC_PKG, pkg, sizeof pkg);
    size_t app_len = testutil_unhex(GC_APP, app, sizeof app);
    size_t sd_len = testutil_unhex(GC_DM_SD, sd, sizeof sd);
    assert_int_equal(gc_counter(t), 0);

    struct gp_session *s = aptest_sd(t, GC_DM_SD, GC_DM_KEY);
    /* Without a token: refused, nothing counted. */
    assert_int_equal(gc_load(t, s, false, true), 0x6982);
    /* Load Receipt with the last LOAD: counter 0. */
    assert_int_equal(gc_load(t, s, true, true), 0x9000);
    struct gp_dm_expect e = {
        .op = GP_DM_LOAD, .elf = pkg, .elf_len = pkg_len, .sd = sd, .sd_len = sd_len};
    assert_int_equal(gc_receipt(t, &e), 0);
    /* Install Receipt: counter 1; the instance goes with the ELF's SD. */
    assert_int_equal(gc_install(t, s, GC_PKG, GC_MOD, GC_APP, true), 0x9000);
    struct gp_dm_expect ei = {.op = GP_DM_INSTALL,
                              .elf = pkg,
                              .elf_len = pkg_len,
                              .app = app,
                              .app_len = app_len,
                              .min_counter = 1};
    assert_int_equal(gc_receipt(t, &ei), 1);
    gc_assert_assoc(t, GC_APP, GC_DM_SD);
    /* The receipt names what was done: as another operation it fails. */
    uint8_t rkey[16];
    testutil_unhex(GC_RECEIPT_KEY, rkey, sizeof rkey);
    ei.op = GP_DM_DELETE;
    ei.app = pkg;
    assert_int_equal(gp_dm_receipt_verify(rkey, sizeof rkey, &ei, t->resp, t->rlen, NULL),
                     OT_E_RMAC);

    /* A wrong token changes nothing: not the card, not the counter. */
    struct ot_buf before, after;
    aptest_image(t, &before);
    size_t n = sizeof cmd;
    static const uint8_t crt[] = {0x93, 0x02, 0x01, 0x07}; /* token identifier 0107 */
    struct gp_delete_args da = {.aid = app, .aid_len = app_len, .crt = crt, .crt_len = sizeof crt};
    assert_int_equal(gp_cmd_delete(0, &da, cmd, &n), OT_OK);
    n = gc_token(cmd, n);
    uint8_t bad[GP_MAX_CMD_LEN];
    memcpy(bad, cmd, n);
    bad[n - 3] ^= 0x01; /* inside the token */
    assert_int_equal(aptest_send(t, s, bad, n), 0x6982);
    aptest_image(t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);
    /* Delete Receipt with the token identifier: counter 2. */
    assert_int_equal(aptest_send(t, s, cmd, n), 0x9000);
    struct gp_dm_expect ed = {.op = GP_DM_DELETE, .app = app, .app_len = app_len, .min_counter = 2};
    struct gp_dm_confirmation cf;
    uint8_t uniq[16];
    ed.sd_unique = uniq;
    ed.sd_unique_len = testutil_unhex(GC_ISD_UNIQUE, uniq, sizeof uniq);
    assert_int_equal(gp_dm_receipt_verify(rkey, sizeof rkey, &ed, t->resp, t->rlen, &cf), OT_OK);
    assert_int_equal(cf.counter, 2);
    testutil_assert_hex(cf.token_id, cf.token_id_len, "0107");
    /* Seen again later, it is a replay. */
    ed.min_counter = 3;
    assert_int_equal(gp_dm_receipt_verify(rkey, sizeof rkey, &ed, t->resp, t->rlen, NULL),
                     OT_E_REPLAY);
    gp_session_free(s);

    /* The counter is kept in the image. */
    aptest_reopen(t);
    assert_int_equal(gc_counter(t), 3);
    /* Authorized Management (the central SD) gets no receipt. */
    s = aptest_sd(t, GC_CENTRAL, GC_CENTRAL_KEY);
    assert_int_equal(gc_install(t, s, "F04F54534D02", "F04F54534D0201", "A0000000041099", false),
                     0x9000);
    aptest_assert_resp(t, "00");
    gp_session_free(s);
    assert_int_equal(gc_counter(t), 3);
    /* An SD without Receipt Generation has no C2. */
    assert_int_equal(aptest_select(t, GC_DM_SD), 0x9000);
    assert_int_equal(aptest_tx(t, "80CA00C200"), 0x6A88);
    aptest_free(t);
}

/* ---------------------------------------------------------------- 4 association */

static void test_association_follows_elf(void **state)
{
    (void)state;
    struct aptest *t = aptest_new_file("ese-thirdparty.json");
    static const char pay[] = "A0000000031099";
    uint8_t app[16], cmd[GP_MAX_CMD_LEN];
    size_t app_len = testutil_unhex(pay, app, sizeof app), n;

    /* The DM SP SD installs from the central SD's payment package: the
     * instance belongs to the central SD (GPCS 9.3.3). */
    struct gp_session *s = aptest_sd(t, GC_DM_SD, GC_DM_KEY);
    assert_int_equal(gc_install(t, s, "F04F54534D02", "F04F54534D0201", pay, true), 0x9000);
    gc_assert_assoc(t, pay, GC_CENTRAL);
    /* So the SP SD cannot personalize it yet. */
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_personalization(0, app, app_len, cmd, &n), OT_OK);
    assert_int_equal(aptest_send(t, s, cmd, n), 0x6985);
    gp_session_free(s);
    /* The central SD extradites it to the SP SD, which then personalizes. */
    s = aptest_sd(t, GC_CENTRAL, GC_CENTRAL_KEY);
    uint8_t sd[16];
    struct gp_install_args xa = {.sd_aid = sd,
                                 .sd_aid_len = testutil_unhex(GC_DM_SD, sd, sizeof sd),
                                 .app_aid = app,
                                 .app_aid_len = app_len};
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_extradition(0, &xa, cmd, &n), OT_OK);
    assert_int_equal(aptest_send(t, s, cmd, n), 0x9000);
    gp_session_free(s);
    gc_assert_assoc(t, pay, GC_DM_SD);
    s = aptest_sd(t, GC_DM_SD, GC_DM_KEY);
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_personalization(0, app, app_len, cmd, &n), OT_OK);
    assert_int_equal(aptest_send(t, s, cmd, n), 0x9000);
    gp_session_free(s);

    /* A new SD still goes with the SD that installed it. */
    s = aptest_sd(t, GC_CENTRAL, GC_CENTRAL_KEY);
    n = gc_install_sd(cmd, "F04F54534D534499");
    assert_int_equal(aptest_send(t, s, cmd, n), 0x9000);
    gp_session_free(s);
    gc_assert_assoc(t, "F04F54534D534499", GC_CENTRAL);
    aptest_free(t);
}

/* ---------------------------------------------------------------- 5 card capabilities */

static void test_card_capabilities(void **state)
{
    (void)state;
    struct aptest *t = aptest_new_file("ese-thirdparty.json");
    assert_int_equal(aptest_tx(t, "00A4040000"), 0x9000);
    assert_int_equal(aptest_tx(t, "80CA006700"), 0x9000);
    struct tlv caps, scp, opts, v;
    assert_int_equal(tlv_parse_one(t->resp, t->rlen, &caps), OT_OK);
    assert_int_equal(caps.tag, 0x67);
    assert_int_equal(tlv_find(caps.val, caps.len, 0xA0, &scp), OT_OK);
    assert_int_equal(tlv_find(scp.val, scp.len, 0x81, &opts), OT_OK);
    assert_non_null(memchr(opts.val, 0x10, opts.len)); /* the ISD's i */
    assert_non_null(memchr(opts.val, 0x70, opts.len)); /* the SSDs' i */
    assert_int_equal(tlv_find(caps.val, caps.len, 0x81, &v), OT_OK);
    assert_int_equal(v.len, 3);
    assert_int_equal(v.val[2] & 0x40, 0);    /* no Ciphered LFDB */
    assert_int_equal(v.val[0] & 0x20, 0x20); /* Delegated Management */
    static const uint32_t sig_tags[] = {0x85, 0x86, 0x87};
    for (size_t k = 0; k < 3; k++) {
        assert_int_equal(tlv_find(caps.val, caps.len, sig_tags[k], &v), OT_OK);
        assert_int_equal(v.len, 1);
        assert_int_equal(v.val[0] & 0x08, 0x08); /* CMAC with AES-128 */
    }

    /* The card refuses what it does not advertise: Ciphered LFDB. */
    struct gp_session *s = aptest_isd(t);
    uint8_t cmd[GP_MAX_CMD_LEN];
    size_t n = gc_install_sd(cmd, "F04F54534D534498");
    /* The host library refuses to build it: set the privilege by hand
     * (header 5, then L+7 ELF, L+8 module, L+8 instance, L privileges). */
    size_t at = 5 + 8 + 9 + 9 + 1;
    assert_int_equal(cmd[at - 1], 3);
    cmd[at + 2] = 0x40;
    assert_int_equal(aptest_send(t, s, cmd, n), 0x6A80);
    assert_true(gc_app(t, "F04F54534D534498") < 0);
    gp_session_free(s);
    aptest_free(t);
}

/* ---------------------------------------------------------------- 6 ISD privileges */

static void test_thirdparty_isd_default_privileges(void **state)
{
    (void)state;
    static const char *const files[] = {"ese-thirdparty.json", "uicc-thirdparty.json"};
    for (size_t f = 0; f < 2; f++) {
        struct aptest *t = aptest_new_file(files[f]);
        struct gp_session *s = aptest_isd(t);
        struct gp_status_query q = {.p1 = GP_STATUS_P1_ISD, .tlv = true};
        uint8_t cmd[GP_MAX_CMD_LEN];
        size_t n = sizeof cmd;
        assert_int_equal(gp_cmd_get_status(0, &q, cmd, &n), OT_OK);
        assert_int_equal(aptest_send(t, s, cmd, n), 0x9000);
        struct gp_status_entry e[2];
        size_t ne = 2;
        assert_int_equal(
            gp_parse_status(t->resp, t->rlen, GP_STATUS_FMT_TLV, GP_STATUS_P1_ISD, e, &ne), OT_OK);
        assert_int_equal(ne, 1);
        assert_int_equal(e[0].privs_len, 3);
        uint32_t privs = 0;
        assert_int_equal(gp_privs_from_bytes(e[0].privs, 3, GP_PRIV_ROLE_ISD, &privs), OT_OK);
        print_message("%s ISD privileges %06X\n", files[f], (unsigned)privs);
        assert_true((privs & GP_PRIV_BIT(GP_PRIV_CARD_RESET)) != 0);
        assert_true((privs & GP_PRIV_BIT(GP_PRIV_FINAL_APPLICATION)) != 0);
        gp_session_free(s);
        aptest_free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delete_keyset_related),
        cmocka_unit_test(test_inert_instance_round_trip),
        cmocka_unit_test(test_dm_receipts_and_counter),
        cmocka_unit_test(test_association_follows_elf),
        cmocka_unit_test(test_card_capabilities),
        cmocka_unit_test(test_thirdparty_isd_default_privileges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
