/* Test harness shared by the applet tests (the *_test.c files of src/se/applets).
 *
 * A card made from an inline profile (the development ISD with the
 * 404142...4F SCP03 key set and the five native packages, plus the
 * applications the test asks for), bound to an image in a temporary
 * directory and powered on. Commands go through se_card_transmit; 61xx is
 * followed with GET RESPONSE. Personalization goes the GP way: SCP03 with
 * the ISD, INSTALL [for personalization], STORE DATA.
 */
#ifndef OT_SE_APPLETS_APTEST_H
#define OT_SE_APPLETS_APTEST_H

#include "core/testutil.h"

#include "core/apdu.h"
#include "core/buf.h"
#include "core/hex.h"
#include "gp/cmd.h"
#include "gp/session.h"
#include "se/applet.h"
#include "se/card.h"
#include "se/se_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define APTEST_KEY "404142434445464748494A4B4C4D4E4F"

/* Profile: %s is replaced by the "applications" array content. */
#define APTEST_PROFILE                                                                        \
    "{\"type\":\"eSE\",\"card_lcs\":\"SECURED\","                                             \
    "\"isd\":{\"aid\":\"A000000151000000\",\"privileges\":\"9EFE80\",\"scp\":3,\"i\":\"10\"," \
    "\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" APTEST_KEY "\",\"mac\":\"" APTEST_KEY \
    "\",\"dek\":\"" APTEST_KEY "\"}]},"                                                       \
    "\"packages\":[{\"module\":\"ppse\"},{\"module\":\"emv-payment\"},"                       \
    "{\"module\":\"transit\"},{\"module\":\"telecom\"},{\"module\":\"wallet\"}],"             \
    "\"applications\":[%s]}"

struct aptest {
    struct se_card *c;
    char dir[64];
    char path[96];
    uint8_t resp[SE_MAX_RESP]; /* data of the last answer (SW removed) */
    size_t rlen;
    uint16_t sw;
};

static inline ot_err aptest_tx_cb(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp,
                                  size_t *resp_len)
{
    return se_card_transmit(ctx, cmd, n, resp, resp_len);
}

static inline void aptest_power_on(struct aptest *t)
{
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len = sizeof atr;
    assert_int_equal(se_card_power_on(t->c, atr, &atr_len), OT_OK);
}

/* Binds the new card t->c to an image in a temporary directory, powers it. */
static inline struct aptest *aptest_bind(struct aptest *t)
{
    snprintf(t->dir, sizeof t->dir, "/tmp/vse_applet_XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/card.img", t->dir);
    assert_int_equal(se_card_save_as(t->c, t->path), OT_OK);
    aptest_power_on(t);
    return t;
}

/* A card from a whole profile. */
static inline struct aptest *aptest_new_profile(const char *json)
{
    struct aptest *t = calloc(1, sizeof *t);
    assert_non_null(t);
    assert_int_equal(se_card_from_profile(json, strlen(json), &t->c), OT_OK);
    return aptest_bind(t);
}

/* A card from a profile file of profiles/ ("ese-thirdparty.json"). */
static inline struct aptest *aptest_new_file(const char *name)
{
    char path[256];
    struct aptest *t = calloc(1, sizeof *t);
    assert_non_null(t);
    snprintf(path, sizeof path, "%s/profiles/%s", OT_SOURCE_DIR, name);
    assert_int_equal(se_card_from_profile_file(path, &t->c), OT_OK);
    return aptest_bind(t);
}

/* apps_json: the content of the profile's "applications" array. */
static inline struct aptest *aptest_new(const char *apps_json)
{
    size_t cap = strlen(APTEST_PROFILE) + strlen(apps_json) + 1;
    char *json = malloc(cap);
    assert_non_null(json);
    snprintf(json, cap, APTEST_PROFILE, apps_json);
    struct aptest *t = aptest_new_profile(json);
    free(json);
    return t;
}

/* Power cycle through the image: the card is reopened from its file. */
static inline void aptest_reopen(struct aptest *t)
{
    se_card_free(t->c);
    t->c = NULL;
    assert_int_equal(se_card_open(t->path, &t->c), OT_OK);
    aptest_power_on(t);
}

static inline void aptest_free(struct aptest *t)
{
    char tmp[128];
    if (t == NULL) {
        return;
    }
    se_card_free(t->c);
    unlink(t->path);
    snprintf(tmp, sizeof tmp, "%s/card.img.tmp", t->dir);
    unlink(tmp);
    rmdir(t->dir);
    free(t);
}

/* The whole image file into out (caller frees with ot_buf_free). */
static inline void aptest_image(const struct aptest *t, struct ot_buf *out)
{
    FILE *f = fopen(t->path, "rb");
    uint8_t b[4096];
    size_t n;
    assert_non_null(f);
    ot_buf_init(out, 0);
    while ((n = fread(b, 1, sizeof b, f)) > 0) {
        assert_int_equal(ot_buf_append(out, b, n), OT_OK);
    }
    fclose(f);
}

/* Sends a raw command, follows 61xx; returns the final SW (data in t->resp). */
static inline uint16_t aptest_txb(struct aptest *t, const uint8_t *cmd, size_t n)
{
    uint8_t r[SE_MAX_RESP];
    size_t rl = sizeof r;
    uint8_t gr[5] = {(uint8_t)(cmd[0] & 0x03u), 0xC0, 0x00, 0x00, 0x00};
    t->rlen = 0;
    assert_int_equal(se_card_transmit(t->c, cmd, n, r, &rl), OT_OK);
    for (;;) {
        assert_true(rl >= 2);
        t->sw = ot_get_u16be(r + rl - 2);
        assert_true(t->rlen + rl - 2 <= sizeof t->resp);
        memcpy(t->resp + t->rlen, r, rl - 2);
        t->rlen += rl - 2;
        if (sw1(t->sw) != 0x61u) {
            return t->sw;
        }
        gr[4] = sw2(t->sw);
        rl = sizeof r;
        assert_int_equal(se_card_transmit(t->c, gr, sizeof gr, r, &rl), OT_OK);
    }
}

static inline uint16_t aptest_tx(struct aptest *t, const char *hex)
{
    uint8_t cmd[600];
    size_t n = testutil_unhex(hex, cmd, sizeof cmd);
    return aptest_txb(t, cmd, n);
}

/* SELECT by AID on channel 0. */
static inline uint16_t aptest_select(struct aptest *t, const char *aid_hex)
{
    uint8_t aid[16];
    uint8_t cmd[32];
    size_t n = sizeof cmd;
    size_t aid_len = testutil_unhex(aid_hex, aid, sizeof aid);
    assert_int_equal(gp_cmd_select(0, aid, aid_len, false, cmd, &n), OT_OK);
    return aptest_txb(t, cmd, n);
}

static inline void aptest_assert_resp(const struct aptest *t, const char *hex)
{
    testutil_assert_hex(t->resp, t->rlen, hex);
}

/* SCP03 (C-MAC + C-DEC) on channel 0 with the SD sd_hex (NULL: the ISD by
 * empty SELECT), key set 30 with ENC = MAC = DEK = key_hex. */
static inline struct gp_session *aptest_sd(struct aptest *t, const char *sd_hex,
                                           const char *key_hex)
{
    struct scp03_keyset ks;
    struct gp_session_cfg cfg;
    struct gp_session *s = NULL;
    uint8_t aid[16];
    memset(&ks, 0, sizeof ks);
    ks.kvn = 0x30;
    ks.key_len = testutil_unhex(key_hex, ks.enc, sizeof ks.enc);
    memcpy(ks.mac, ks.enc, ks.key_len);
    memcpy(ks.dek, ks.enc, ks.key_len);
    memset(&cfg, 0, sizeof cfg);
    if (sd_hex != NULL) {
        cfg.sd_aid_len = testutil_unhex(sd_hex, aid, sizeof aid);
        cfg.sd_aid = aid;
    }
    cfg.scp = GP_SCP_03;
    cfg.scp03_keys = &ks;
    cfg.level = 0x03;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    assert_int_equal(gp_session_open(s, aptest_tx_cb, t->c), OT_OK);
    return s;
}

static inline struct gp_session *aptest_isd(struct aptest *t)
{
    return aptest_sd(t, NULL, APTEST_KEY);
}

static inline uint16_t aptest_send(struct aptest *t, struct gp_session *s, const uint8_t *cmd,
                                   size_t n)
{
    uint16_t sw = 0;
    t->rlen = sizeof t->resp;
    assert_int_equal(gp_session_transmit(s, aptest_tx_cb, t->c, cmd, n, t->resp, &t->rlen, &sw),
                     OT_OK);
    t->sw = sw;
    return sw;
}

/* INSTALL [for install and make selectable] of an instance through the ISD. */
static inline uint16_t aptest_install(struct aptest *t, const char *pkg_hex, const char *mod_hex,
                                      const char *app_hex, const char *params_hex)
{
    uint8_t pkg[16], mod[16], app[16], c9[200], params[256], cmd[300];
    size_t params_len = sizeof params;
    size_t n = sizeof cmd;
    struct gp_install_params ip;
    struct gp_install_args a;
    struct gp_session *s = aptest_isd(t);
    uint8_t privs = 0;

    memset(&ip, 0, sizeof ip);
    ip.with_c9 = true;
    ip.app_params = c9;
    ip.app_params_len = testutil_unhex(params_hex, c9, sizeof c9);
    assert_int_equal(gp_install_params_encode(&ip, params, &params_len), OT_OK);
    memset(&a, 0, sizeof a);
    a.elf_aid = pkg;
    a.elf_aid_len = testutil_unhex(pkg_hex, pkg, sizeof pkg);
    a.module_aid = mod;
    a.module_aid_len = testutil_unhex(mod_hex, mod, sizeof mod);
    a.app_aid = app;
    a.app_aid_len = testutil_unhex(app_hex, app, sizeof app);
    a.privs = &privs;
    a.privs_len = 1;
    a.params = params;
    a.params_len = params_len;
    assert_int_equal(gp_cmd_install_for_install(0, &a, true, cmd, &n), OT_OK);
    uint16_t sw = aptest_send(t, s, cmd, n);
    gp_session_free(s);
    return sw;
}

/* INSTALL [for personalization] of app, then one STORE DATA (P1 as given,
 * P2 00) with data, under SCP03 with the SD s. Returns the STORE DATA SW, or
 * the INSTALL's when that failed. */
static inline uint16_t aptest_perso_s(struct aptest *t, struct gp_session *s, const char *app_hex,
                                      uint8_t p1, const uint8_t *data, size_t data_len)
{
    uint8_t app[16];
    uint8_t cmd[600];
    size_t n = sizeof cmd;
    size_t app_len = testutil_unhex(app_hex, app, sizeof app);

    assert_int_equal(gp_cmd_install_for_personalization(0, app, app_len, cmd, &n), OT_OK);
    if (aptest_send(t, s, cmd, n) != 0x9000) {
        return t->sw;
    }
    assert_true(data_len <= 255);
    cmd[0] = 0x80;
    cmd[1] = GP_INS_STORE_DATA;
    cmd[2] = p1;
    cmd[3] = 0x00;
    cmd[4] = (uint8_t)data_len;
    memcpy(cmd + 5, data, data_len);
    return aptest_send(t, s, cmd, 5 + data_len);
}

/* The same with a session opened with the ISD for this one personalization. */
static inline uint16_t aptest_perso_b(struct aptest *t, const char *app_hex, uint8_t p1,
                                      const uint8_t *data, size_t data_len)
{
    struct gp_session *s = aptest_isd(t);
    uint16_t sw = aptest_perso_s(t, s, app_hex, p1, data, data_len);
    gp_session_free(s);
    return sw;
}

static inline uint16_t aptest_perso(struct aptest *t, const char *app_hex, uint8_t p1,
                                    const char *data_hex)
{
    uint8_t d[300];
    size_t n = testutil_unhex(data_hex, d, sizeof d);
    return aptest_perso_b(t, app_hex, p1, d, n);
}

/* A hand-built applet context for instance app_hex (for ops the card only
 * calls from SD code, such as wipe). */
static inline void aptest_ctx(struct aptest *t, const char *app_hex, struct se_applet_ctx *x)
{
    uint8_t aid[16];
    size_t len = testutil_unhex(app_hex, aid, sizeof aid);
    int i = se_find_app(&t->c->st, aid, len);
    assert_true(i > 0);
    memset(x, 0, sizeof *x);
    x->card = t->c;
    x->app = i;
    x->aid = t->c->st.apps[i].aid.b;
    x->aid_len = t->c->st.apps[i].aid.len;
    x->data = t->c->st.apps[i].data;
    x->data_len = t->c->st.apps[i].data_len;
    x->vol = t->c->vol[i];
}

#endif
