/* Tests of INSTALL, LOAD and DELETE (gpcm_install.c).
 *
 * Two layers:
 *  - handler tests: a card state built field by field, commands built with
 *    gp/cmd.h and gp/load.h, run straight through se_gp_install / se_gp_load /
 *    se_gp_delete as the runtime would after unwrapping. Every rejected
 *    command must leave the persistent state byte for byte unchanged and the
 *    card not dirty;
 *  - end-to-end tests: a card made from an inline profile, driven with
 *    se_card_transmit through an SCP03 gp_session (keys 404142..4F, KVN 30),
 *    with the card image compared byte for byte after each rejected command.
 */
#include "se/se_priv.h"

#include "core/apdu.h"
#include "core/buf.h"
#include "core/hex.h"
#include "crypto/cmac.h"
#include "gp/cap.h"
#include "gp/cmd.h"
#include "gp/load.h"
#include "gp/privs.h"
#include "gp/session.h"

#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* ---------------------------------------------------------------- fixtures */

static const uint8_t isd_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t emv_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02};
static const uint8_t emv_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02, 0x01};
static const uint8_t emv_app[] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10};
static const uint8_t emv_app2[] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x11};
static const uint8_t ssd_pkg[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50};
static const uint8_t ssd_mod[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41};
static const uint8_t ssd_aid[] = {0xA0, 0x00, 0x00, 0x05, 0x59, 0x10, 0x10, 0x01};
static const uint8_t ssd2_aid[] = {0xA0, 0x00, 0x00, 0x05, 0x59, 0x10, 0x10, 0x02};
static const uint8_t unk_pkg[] = {0xD2, 0x76, 0x00, 0x01, 0x18, 0x00};
static const uint8_t unk_mod[] = {0xD2, 0x76, 0x00, 0x01, 0x18, 0x00, 0x01};
static const uint8_t key40[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                  0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
static const uint8_t token_key[16] = {0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77,
                                      0x78, 0x79, 0x7A, 0x7B, 0x7C, 0x7D, 0x7E, 0x7F};
static const uint8_t dap_key[16] = {0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
                                    0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F};

#define SW_OK 0x9000u

static void t_aid(struct se_aid *a, const uint8_t *p, size_t n)
{
    memset(a, 0, sizeof *a);
    memcpy(a->b, p, n);
    a->len = (uint8_t)n;
}

static void t_add_keyset(struct se_app *sd, uint8_t kvn, const uint8_t *key)
{
    for (uint8_t kid = 1; kid <= 3; kid++) {
        struct se_key *k = &sd->sd_data.keys[sd->sd_data.nkeys++];
        k->kvn = kvn;
        k->kid = kid;
        k->type = SE_KEY_AES;
        k->len = 16;
        memcpy(k->val, key, 16);
    }
}

static int t_add_app(struct se_card *c, const uint8_t *aid, size_t n, int sd, uint32_t privs,
                     uint8_t lcs)
{
    struct se_state *st = &c->st;
    assert_int_equal(se_card_reserve_apps(c, st->napps + 1u), OT_OK);
    int i = st->napps++;
    struct se_app *a = &st->apps[i];
    memset(a, 0, sizeof *a);
    t_aid(&a->aid, aid, n);
    a->sd = st->apps[sd < 0 ? i : sd].aid;
    a->privs = privs;
    a->lcs = lcs;
    a->is_sd = (privs & GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN)) != 0;
    if (a->is_sd) {
        t_aid(&a->elf, ssd_pkg, sizeof ssd_pkg);
        t_aid(&a->module, ssd_mod, sizeof ssd_mod);
        a->sd_data.scp = 3;
        a->sd_data.scp_i = 0x70;
        t_add_keyset(a, 0x30, key40);
    } else {
        t_aid(&a->elf, emv_pkg, sizeof emv_pkg);
        t_aid(&a->module, emv_mod, sizeof emv_mod);
    }
    return i;
}

static int t_add_elf(struct se_card *c, const uint8_t *aid, size_t n, const uint8_t *mod,
                     size_t mod_len, int sd, bool native)
{
    struct se_state *st = &c->st;
    assert_int_equal(se_state_reserve(st, 0, st->nelfs + 1u), OT_OK);
    int i = st->nelfs++;
    struct se_elf *e = &st->elfs[i];
    memset(e, 0, sizeof *e);
    t_aid(&e->aid, aid, n);
    e->sd = st->apps[sd].aid;
    e->lcs = GP_LCS_ELF_LOADED;
    e->nmodules = 1;
    t_aid(&e->modules[0], mod, mod_len);
    e->size = 1000;
    e->native = native;
    return i;
}

/* A SECURED card: ISD 9EFE80 with the test key set, the emv-payment package. */
static struct se_card *t_card(void)
{
    struct se_card *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->st.type = SE_TYPE_ESE;
    c->st.card_lcs = GP_LCS_CARD_SECURED;
    t_add_app(c, isd_aid, sizeof isd_aid, -1, 0x9EFE80u, GP_LCS_SD_PERSONALIZED);
    c->st.apps[0].sd_data.scp_i = 0x10;
    t_add_elf(c, emv_pkg, sizeof emv_pkg, emv_mod, sizeof emv_mod, 0, true);
    for (unsigned i = 0; i < SE_MAX_CHANNELS; i++) {
        c->chans[i].selected = -1;
        c->chans[i].perso_target = -1;
        c->chans[i].status_pos = SIZE_MAX;
        c->chans[i].sc.sd = -1;
    }
    c->chans[0].open = true;
    c->chans[0].selected = 0;
    c->load.chan = -1;
    return c;
}

static void t_card_free(struct se_card *c)
{
    if (c != NULL) {
        ot_buf_free(&c->load.data);
        se_state_clear(&c->st);
        free(c->vol);
        free(c);
    }
}

struct t_res {
    uint8_t data[256];
    size_t len;
};

/* Runs one plain command through the handler for its INS with the SD at
 * index sd selected on channel chan. A rejected command must leave the
 * persistent state untouched and the card clean. */
static uint16_t t_run_as(struct se_card *c, int sd, int chan, bool auth, const uint8_t *cmd,
                         size_t n, struct t_res *res)
{
    struct apdu a;
    struct t_res local;
    struct buf_wr w;
    if (res == NULL) {
        res = &local;
    }
    assert_int_equal(apdu_parse(cmd, n, &a), OT_OK);
    buf_wr_init(&w, res->data, sizeof res->data);
    struct se_cmd x = {
        .card = c,
        .chan = chan,
        .sd = sd,
        .a = &a,
        .sec_level = auth ? 0x33 : 0,
        .authenticated = auth,
        .out = &w,
    };
    struct ot_buf before, after;
    ot_buf_init(&before, 0);
    ot_buf_init(&after, 0);
    assert_int_equal(se_state_serialize(&c->st, &before), OT_OK);
    c->dirty = false;
    uint16_t sw = 0;
    switch (a.ins) {
    case GP_INS_INSTALL:
        sw = se_gp_install(&x);
        break;
    case GP_INS_LOAD:
        sw = se_gp_load(&x);
        break;
    case GP_INS_DELETE:
        sw = se_gp_delete(&x);
        break;
    default:
        fail();
    }
    if (sw != SW_OK) {
        /* the card's content, byte for byte as its image holds it */
        assert_int_equal(se_state_serialize(&c->st, &after), OT_OK);
        assert_int_equal(after.len, before.len);
        assert_memory_equal(after.data, before.data, before.len);
        assert_false(c->dirty);
        assert_int_equal(w.len, 0);
    } else {
        assert_int_equal(buf_wr_finish(&w, &res->len), OT_OK);
    }
    ot_buf_free(&before);
    ot_buf_free(&after);
    return sw;
}

static uint16_t t_run(struct se_card *c, int sd, const uint8_t *cmd, size_t n)
{
    return t_run_as(c, sd, 0, true, cmd, n, NULL);
}

/* INSTALL [for install (and make selectable)]; privs as 3 bytes; params
 * the C9 content. */
static size_t t_install(uint8_t *out, const uint8_t *elf, size_t elf_len, const uint8_t *mod,
                        size_t mod_len, const uint8_t *app, size_t app_len, uint32_t privs,
                        const uint8_t *c9, size_t c9_len, bool selectable)
{
    uint8_t pb[3], params[200];
    size_t plen = sizeof params, len = GP_MAX_CMD_LEN;
    struct gp_install_params ip = {.with_c9 = true, .app_params = c9, .app_params_len = c9_len};
    assert_int_equal(gp_install_params_encode(&ip, params, &plen), OT_OK);
    gp_privs_encode(privs, pb);
    struct gp_install_args a = {
        .elf_aid = elf,
        .elf_aid_len = elf_len,
        .module_aid = mod,
        .module_aid_len = mod_len,
        .app_aid = app,
        .app_aid_len = app_len,
        .privs = pb,
        .privs_len = 3,
        .params = params,
        .params_len = plen,
    };
    assert_int_equal(gp_cmd_install_for_install(0, &a, selectable, out, &len), OT_OK);
    return len;
}

static size_t t_install_emv(uint8_t *out, const uint8_t *app, size_t app_len, uint32_t privs,
                            bool selectable)
{
    return t_install(out, emv_pkg, sizeof emv_pkg, emv_mod, sizeof emv_mod, app, app_len, privs,
                     NULL, 0, selectable);
}

static size_t t_install_ssd(uint8_t *out, const uint8_t *aid, size_t n, uint32_t privs)
{
    static const uint8_t c9[] = {0x81, 0x02, 0x03, 0x70};
    return t_install(out, ssd_pkg, sizeof ssd_pkg, ssd_mod, sizeof ssd_mod, aid, n, privs, c9,
                     sizeof c9, true);
}

/* ---------------------------------------------------------------- load files */

/* A Load File Data Block: Header, a dummy Directory and an Applet component
 * (JCVM 6.4, 6.5). */
static size_t t_lfdb(uint8_t *out, const uint8_t *pkg, size_t pkg_len, const uint8_t *applet,
                     size_t applet_len)
{
    size_t n = 0;
    size_t hsize = 4 + 3 + 3 + pkg_len;
    out[n++] = 0x01;
    out[n++] = 0x00;
    out[n++] = (uint8_t)hsize;
    static const uint8_t magic[] = {0xDE, 0xCA, 0xFF, 0xED, 0x01, 0x02, 0x04, 0x03, 0x01};
    memcpy(out + n, magic, sizeof magic);
    n += sizeof magic;
    out[n++] = (uint8_t)pkg_len;
    memcpy(out + n, pkg, pkg_len);
    n += pkg_len;
    static const uint8_t dir[] = {0x02, 0x00, 0x03, 0xAA, 0xBB, 0xCC};
    memcpy(out + n, dir, sizeof dir);
    n += sizeof dir;
    out[n++] = 0x03;
    out[n++] = 0x00;
    out[n++] = (uint8_t)(1 + 1 + applet_len + 2);
    out[n++] = 0x01;
    out[n++] = (uint8_t)applet_len;
    memcpy(out + n, applet, applet_len);
    n += applet_len;
    out[n++] = 0x00;
    out[n++] = 0x10;
    return n;
}

static void t_sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    unsigned int got = 0;
    assert_int_equal(EVP_Digest(p, n, out, &got, EVP_sha256(), NULL), 1);
}

/* INSTALL [for load] of elf to sd (may be empty) with an optional hash. */
static size_t t_for_load(uint8_t *out, uint8_t p1, uint8_t p2, const uint8_t *elf, size_t elf_len,
                         const uint8_t *sd, size_t sd_len, const uint8_t *hash, size_t hash_len)
{
    size_t len = GP_MAX_CMD_LEN;
    struct gp_install_args a = {
        .elf_aid = elf,
        .elf_aid_len = elf_len,
        .sd_aid = sd,
        .sd_aid_len = sd_len,
        .hash = hash,
        .hash_len = hash_len,
    };
    assert_int_equal(gp_cmd_install(0, p1, p2, &a, out, &len), OT_OK);
    return len;
}

/* Sends the Load File in blocks of block bytes; returns the last SW. */
static uint16_t t_load_blocks(struct se_card *c, int sd, const uint8_t *file, size_t n,
                              size_t block)
{
    struct load_iter it;
    uint16_t sw = SW_OK;
    assert_int_equal(load_iter_init(&it, file, n, block, 0), OT_OK);
    while (!load_iter_done(&it) && sw == SW_OK) {
        uint8_t cmd[LOAD_MAX_APDU];
        size_t len = sizeof cmd;
        assert_int_equal(load_iter_next(&it, cmd, &len, NULL), OT_OK);
        sw = t_run(c, sd, cmd, len);
    }
    return sw;
}

/* ---------------------------------------------------------------- INSTALL tests */

static void test_install_emv_selectable(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint8_t cmd[GP_MAX_CMD_LEN];
    struct t_res res;
    size_t n = t_install(cmd, emv_pkg, sizeof emv_pkg, emv_mod, sizeof emv_mod, emv_app,
                         sizeof emv_app, 0, NULL, 0, true);
    assert_int_equal(t_run_as(c, 0, 0, true, cmd, n, &res), SW_OK);
    assert_int_equal(res.len, 1);
    assert_int_equal(res.data[0], 0x00);
    assert_true(c->dirty);
    int i = se_find_app(&c->st, emv_app, sizeof emv_app);
    assert_int_equal(i, 1);
    const struct se_app *a = &c->st.apps[i];
    assert_int_equal(a->lcs, GP_LCS_APP_SELECTABLE);
    assert_false(a->is_sd);
    assert_int_equal(a->privs, 0);
    assert_memory_equal(a->sd.b, isd_aid, sizeof isd_aid);
    assert_memory_equal(a->elf.b, emv_pkg, sizeof emv_pkg);
    assert_memory_equal(a->module.b, emv_mod, sizeof emv_mod);
    assert_int_equal(a->params_len, 0);
    t_card_free(c);
}

static void test_install_then_make_selectable(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint8_t cmd[GP_MAX_CMD_LEN], pb[3];
    size_t n = t_install_emv(cmd, emv_app, sizeof emv_app, 0, false);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    int i = se_find_app(&c->st, emv_app, sizeof emv_app);
    assert_int_equal(c->st.apps[i].lcs, GP_LCS_APP_INSTALLED);

    gp_privs_encode(GP_PRIV_BIT(GP_PRIV_CARD_RESET) | GP_PRIV_BIT(GP_PRIV_CVM_MANAGEMENT), pb);
    struct gp_install_args a = {
        .app_aid = emv_app, .app_aid_len = sizeof emv_app, .privs = pb, .privs_len = 3};
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_make_selectable(0, &a, cmd, &n), OT_OK);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    assert_int_equal(c->st.apps[i].lcs, GP_LCS_APP_SELECTABLE);
    /* Only Card Reset is honoured; the ISD gives it up. */
    assert_int_equal(c->st.apps[i].privs, GP_PRIV_BIT(GP_PRIV_CARD_RESET));
    assert_false(se_has_priv(&c->st, 0, GP_PRIV_CARD_RESET));
    /* Already selectable. */
    assert_int_equal(t_run(c, 0, cmd, n), 0x6985);
    t_card_free(c);
}

static void test_create_ssd_and_extradite(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint8_t cmd[GP_MAX_CMD_LEN];
    uint32_t am = GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN) | GP_PRIV_BIT(GP_PRIV_AUTHORIZED_MANAGEMENT);
    size_t n = t_install_ssd(cmd, ssd_aid, sizeof ssd_aid, am);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    int s = se_find_app(&c->st, ssd_aid, sizeof ssd_aid);
    assert_true(s > 0);
    const struct se_app *sd = &c->st.apps[s];
    assert_true(sd->is_sd);
    assert_int_equal(sd->privs, am);
    assert_int_equal(sd->lcs, GP_LCS_SD_SELECTABLE);
    assert_int_equal(sd->sd_data.scp, 3);
    assert_int_equal(sd->sd_data.scp_i, 0x70);
    assert_int_equal(sd->sd_data.nkeys, 3); /* the creator's key set */
    assert_int_equal(sd->sd_data.keys[0].kvn, 0x30);
    assert_memory_equal(sd->sd.b, isd_aid, sizeof isd_aid);
    assert_int_equal(sd->params_len, 4);
    assert_memory_equal(sd->params, "\x81\x02\x03\x70", 4);

    n = t_install_emv(cmd, emv_app, sizeof emv_app, 0, true);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    struct gp_install_args a = {.sd_aid = ssd_aid,
                                .sd_aid_len = sizeof ssd_aid,
                                .app_aid = emv_app,
                                .app_aid_len = sizeof emv_app};
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_extradition(0, &a, cmd, &n), OT_OK);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    int i = se_find_app(&c->st, emv_app, sizeof emv_app);
    assert_memory_equal(c->st.apps[i].sd.b, ssd_aid, sizeof ssd_aid);

    /* Personalization: only through the associated SD (now the SSD). */
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_personalization(0, emv_app, sizeof emv_app, cmd, &n),
                     OT_OK);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6985);
    assert_int_equal(c->chans[0].perso_target, -1);
    c->chans[1].open = true;
    c->chans[1].selected = s;
    struct t_res res;
    assert_int_equal(t_run_as(c, s, 1, true, cmd, n, &res), SW_OK);
    assert_int_equal(res.len, 1);
    assert_int_equal(c->chans[1].perso_target, i);
    assert_false(c->dirty); /* volatile only */
    /* Unknown application. */
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_personalization(0, emv_app2, sizeof emv_app2, cmd, &n),
                     OT_OK);
    assert_int_equal(t_run_as(c, s, 1, true, cmd, n, NULL), 0x6A88);
    t_card_free(c);
}

static void test_extradition_rules(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint32_t am = GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN) | GP_PRIV_BIT(GP_PRIV_AUTHORIZED_MANAGEMENT);
    uint32_t plain = GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN);
    int central = t_add_app(c, ssd_aid, sizeof ssd_aid, 0, am, GP_LCS_SD_PERSONALIZED);
    int other = t_add_app(c, ssd2_aid, sizeof ssd2_aid, 0, plain, GP_LCS_SD_PERSONALIZED);
    static const uint8_t sp_aid[] = {0xA0, 0x00, 0x00, 0x05, 0x59, 0x10, 0x10, 0x03};
    int sp = t_add_app(c, sp_aid, sizeof sp_aid, central, plain, GP_LCS_SD_PERSONALIZED);
    int app = t_add_app(c, emv_app, sizeof emv_app, central, 0, GP_LCS_APP_SELECTABLE);
    int isd_app = t_add_app(c, emv_app2, sizeof emv_app2, 0, 0, GP_LCS_APP_SELECTABLE);
    (void)other;
    (void)sp;
    uint8_t cmd[GP_MAX_CMD_LEN];
    struct {
        int performer;
        const uint8_t *target;
        size_t target_len;
        const uint8_t *what;
        size_t what_len;
        uint16_t sw;
    } rows[] = {
        /* central SD moves its instance into its own hierarchy */
        {central, sp_aid, sizeof sp_aid, emv_app, sizeof emv_app, SW_OK},
        /* ... but not to an SD of another hierarchy */
        {central, ssd2_aid, sizeof ssd2_aid, emv_app, sizeof emv_app, 0x6985},
        /* ... nor what is not its own */
        {central, sp_aid, sizeof sp_aid, emv_app2, sizeof emv_app2, 0x6982},
        /* an SD without AM/DM */
        {other, ssd2_aid, sizeof ssd2_aid, emv_app2, sizeof emv_app2, 0x6982},
        /* the target must be an SD */
        {0, emv_app2, sizeof emv_app2, emv_app, sizeof emv_app, 0x6A80},
        /* unknown target / object */
        {0, ssd_pkg, sizeof ssd_pkg, emv_app, sizeof emv_app, 0x6A88},
        {0, sp_aid, sizeof sp_aid, unk_pkg, sizeof unk_pkg, 0x6A88},
        /* the ISD never moves, an SD not below itself */
        {0, ssd_aid, sizeof ssd_aid, isd_aid, sizeof isd_aid, 0x6985},
        {0, sp_aid, sizeof sp_aid, ssd_aid, sizeof ssd_aid, 0x6985},
        /* the ISD may move anything anywhere, ELFs too */
        {0, ssd2_aid, sizeof ssd2_aid, emv_app2, sizeof emv_app2, SW_OK},
        {0, ssd_aid, sizeof ssd_aid, emv_pkg, sizeof emv_pkg, SW_OK},
    };
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        struct gp_install_args a = {.sd_aid = rows[k].target,
                                    .sd_aid_len = rows[k].target_len,
                                    .app_aid = rows[k].what,
                                    .app_aid_len = rows[k].what_len};
        size_t n = sizeof cmd;
        assert_int_equal(gp_cmd_install_for_extradition(0, &a, cmd, &n), OT_OK);
        print_message("row %zu\n", k);
        assert_int_equal(t_run(c, rows[k].performer, cmd, n), rows[k].sw);
    }
    assert_memory_equal(c->st.apps[app].sd.b, sp_aid, sizeof sp_aid);
    assert_memory_equal(c->st.apps[isd_app].sd.b, ssd2_aid, sizeof ssd2_aid);
    assert_memory_equal(c->st.elfs[0].sd.b, ssd_aid, sizeof ssd_aid);
    t_card_free(c);
}

static void test_install_refusals(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint32_t plain = GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN);
    uint32_t am = plain | GP_PRIV_BIT(GP_PRIV_AUTHORIZED_MANAGEMENT);
    int nopriv = t_add_app(c, ssd_aid, sizeof ssd_aid, 0, plain, GP_LCS_SD_PERSONALIZED);
    int amsd = t_add_app(c, ssd2_aid, sizeof ssd2_aid, 0, am, GP_LCS_SD_SELECTABLE);
    t_add_elf(c, unk_pkg, sizeof unk_pkg, unk_mod, sizeof unk_mod, 0, false);
    t_add_app(c, emv_app, sizeof emv_app, 0, GP_PRIV_BIT(GP_PRIV_CARD_RESET),
              GP_LCS_APP_SELECTABLE);
    uint8_t cmd[GP_MAX_CMD_LEN];
    size_t n;

    /* No Authorized / Delegated Management. */
    n = t_install_emv(cmd, emv_app2, sizeof emv_app2, 0, true);
    assert_int_equal(t_run(c, nopriv, cmd, n), 0x6982);
    /* AM SD not yet PERSONALIZED. */
    assert_int_equal(t_run(c, amsd, cmd, n), 0x6985);
    /* No secure channel. */
    assert_int_equal(t_run_as(c, 0, 0, false, cmd, n, NULL), 0x6982);
    /* Card locked / terminated. */
    c->st.card_lcs = GP_LCS_CARD_LOCKED;
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A81);
    c->st.card_lcs = GP_LCS_CARD_TERMINATED;
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A81);
    c->st.card_lcs = GP_LCS_CARD_SECURED;
    /* Duplicate instance AID (an app, an ELF, the SD package). */
    n = t_install_emv(cmd, emv_app, sizeof emv_app, 0, true);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6985);
    n = t_install_emv(cmd, unk_pkg, sizeof unk_pkg, 0, true);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6985);
    n = t_install_emv(cmd, ssd_pkg, sizeof ssd_pkg, 0, true);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6985);
    /* Unknown ELF, unknown module. */
    n = t_install(cmd, emv_app2, sizeof emv_app2, emv_mod, sizeof emv_mod, emv_app2,
                  sizeof emv_app2, 0, NULL, 0, true);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A88);
    n = t_install(cmd, emv_pkg, sizeof emv_pkg, unk_mod, sizeof unk_mod, emv_app2, sizeof emv_app2,
                  0, NULL, 0, true);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A88);
    /* A package the card has no code for: an inert instance (issue 12). */
    static const uint8_t inert_app[] = {0xD2, 0x76, 0x00, 0x01, 0x18, 0x00, 0x01, 0x01};
    n = t_install(cmd, unk_pkg, sizeof unk_pkg, unk_mod, sizeof unk_mod, inert_app,
                  sizeof inert_app, 0, NULL, 0, true);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    int ia = se_find_app(&c->st, inert_app, sizeof inert_app);
    assert_true(ia > 0);
    assert_memory_equal(c->st.apps[ia].module.b, unk_mod, sizeof unk_mod);
    assert_int_equal(c->st.apps[ia].data_len, 0);
    /* Card Reset is held by another application. */
    n = t_install_emv(cmd, emv_app2, sizeof emv_app2, GP_PRIV_BIT(GP_PRIV_CARD_RESET), true);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6985);
    /* Card Reset without make selectable. */
    n = t_install_emv(cmd, emv_app2, sizeof emv_app2, GP_PRIV_BIT(GP_PRIV_CARD_RESET), false);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A80);
    /* An SD from an application module, an application from the SD module. */
    n = t_install_emv(cmd, emv_app2, sizeof emv_app2, GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN), true);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A80);
    n = t_install_ssd(cmd, emv_app2, sizeof emv_app2, 0);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A80);
    /* Bad SCP parameter for an SD. */
    n = t_install(cmd, ssd_pkg, sizeof ssd_pkg, ssd_mod, sizeof ssd_mod, emv_app2, sizeof emv_app2,
                  plain, (const uint8_t *)"\x81\x02\x04\x00", 4, true);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A80);
    /* Memory: 3 bytes left, the new SD's 4 parameter bytes do not fit. */
    static const uint8_t big_pkg[] = {0xD2, 0x76, 0x00, 0x01, 0x18, 0x0B};
    int big = t_add_elf(c, big_pkg, sizeof big_pkg, unk_mod, sizeof unk_mod, 0, false);
    c->st.elfs[big].size += se_mem_free(&c->st) - 3;
    assert_int_equal(se_mem_free(&c->st), 3);
    static const uint8_t ssd3[] = {0xA0, 0x00, 0x00, 0x05, 0x59, 0x10, 0x10, 0x33};
    n = t_install_ssd(cmd, ssd3, sizeof ssd3, plain);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A84);
    c->st.elfs[big].size += 3;
    n = t_install_emv(cmd, emv_app2, sizeof emv_app2, 0, true);
    /* No memory left: refused unless the applet keeps no data at all. */
    if (t_run(c, 0, cmd, n) == SW_OK) {
        assert_int_equal(c->st.apps[se_find_app(&c->st, emv_app2, sizeof emv_app2)].data_len, 0);
    } else {
        assert_int_equal(t_run(c, 0, cmd, n), 0x6A84);
    }
    t_card_free(c);
}

/* Raw INSTALL data field variations. */
static void test_install_malformed(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    static const struct {
        const char *hex;
        uint16_t sw;
    } rows[] = {
        /* empty data */
        {"80E60C0000", 0x6700},
        /* trailing byte */
        {"80E60C001E06F04F54534D0207F04F54534D020107A0000000041011010002C900000000", 0x6A80},
        /* LV running past the end */
        {"80E60C000306F04F", 0x6A80},
        /* privilege length 2 */
        {"80E60C001E06F04F54534D0207F04F54534D020107A000000004101102000002C9000000", 0x6A80},
        /* params without C9 */
        {"80E60C001D06F04F54534D0207F04F54534D020107A0000000041011010002EF000000", 0x6A80},
        /* empty params */
        {"80E60C001B06F04F54534D0207F04F54534D020107A00000000410110100000000", 0x6A80},
        /* malformed TLV in params */
        {"80E60C001D06F04F54534D0207F04F54534D020107A0000000041011010002C9050000", 0x6A80},
        /* non-minimal 81 length of params */
        {"80E60C001E06F04F54534D0207F04F54534D020107A000000004101101008102C9000000", 0x6A80},
        /* short AID */
        {"80E60C001906F04F54534D0207F04F54534D020103A00000010002C9000000", 0x6A80},
        /* P2 not 00, unknown P1, combined with bad P2 */
        {"80E60C011D06F04F54534D0207F04F54534D020107A0000000041011010002C9000000", 0x6A86},
        {"80E6060000", 0x6A86},
        {"80E60E0200", 0x6A86},
        /* a token where none is allowed (AM) */
        {"80E60C001F06F04F54534D0207F04F54534D020107A0000000041011010002C90002010200", 0x6A80},
        /* C7 of 1 byte inside EF */
        {"80E60C002206F04F54534D0207F04F54534D020107A0000000041011010007C900EF03C701020000",
         0x6A80},
    };
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        uint8_t cmd[300];
        size_t n = sizeof cmd;
        assert_int_equal(hex_decode(rows[k].hex, strlen(rows[k].hex), cmd, &n), OT_OK);
        print_message("row %zu\n", k);
        assert_int_equal(t_run(c, 0, cmd, n), rows[k].sw);
    }
    t_card_free(c);
}

static void test_registry_update(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint32_t plain = GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN);
    uint32_t am = plain | GP_PRIV_BIT(GP_PRIV_AUTHORIZED_MANAGEMENT);
    int central = t_add_app(c, ssd_aid, sizeof ssd_aid, 0, am, GP_LCS_SD_PERSONALIZED);
    int sp = t_add_app(c, ssd2_aid, sizeof ssd2_aid, central, plain, GP_LCS_SD_PERSONALIZED);
    int app = t_add_app(c, emv_app, sizeof emv_app, central, 0, GP_LCS_APP_SELECTABLE);
    uint8_t cmd[GP_MAX_CMD_LEN], pb[3];
    struct {
        int performer;
        const uint8_t *sd;
        size_t sd_len;
        const uint8_t *what;
        size_t what_len;
        uint32_t privs;
        uint16_t sw;
    } rows[] = {
        /* central SD grants DAP Verification to its SP SD, moves the app */
        {central, NULL, 0, ssd2_aid, sizeof ssd2_aid, plain | GP_PRIV_BIT(GP_PRIV_DAP_VERIFICATION),
         SW_OK},
        {central, ssd2_aid, sizeof ssd2_aid, emv_app, sizeof emv_app,
         GP_PRIV_BIT(GP_PRIV_CVM_MANAGEMENT), 0x6982}, /* ISD-only privilege */
        {central, ssd2_aid, sizeof ssd2_aid, emv_app, sizeof emv_app,
         GP_PRIV_BIT(GP_PRIV_CARD_RESET), SW_OK},
        /* an SD stays an SD */
        {0, NULL, 0, ssd2_aid, sizeof ssd2_aid, 0, 0x6A80},
        /* invalid combination (DM + AM) */
        {0, NULL, 0, ssd2_aid, sizeof ssd2_aid, 0, 0x6A80},
        /* the ISD is updated by the ISD only */
        {central, NULL, 0, isd_aid, sizeof isd_aid, 0x9EFE80u, 0x6982},
        /* unknown application */
        {0, NULL, 0, unk_pkg, sizeof unk_pkg, 0, 0x6A88},
    };
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        uint8_t raw[3];
        gp_privs_encode(rows[k].privs, pb);
        struct gp_install_args a = {.sd_aid = rows[k].sd,
                                    .sd_aid_len = rows[k].sd_len,
                                    .app_aid = rows[k].what,
                                    .app_aid_len = rows[k].what_len,
                                    .privs = pb,
                                    .privs_len = 3};
        size_t n = sizeof cmd;
        if (k == 4) {
            /* The builder refuses invalid privileges: patch them in. */
            gp_privs_encode(plain, raw);
            a.privs = raw;
        }
        assert_int_equal(gp_cmd_install_for_registry_update(0, &a, cmd, &n), OT_OK);
        if (k == 4) {
            cmd[n - 6] = 0xA0; /* SD + DM */
            cmd[n - 5] = 0x40; /* + AM */
        }
        print_message("row %zu\n", k);
        assert_int_equal(t_run(c, rows[k].performer, cmd, n), rows[k].sw);
    }
    assert_int_equal(c->st.apps[sp].privs, plain | GP_PRIV_BIT(GP_PRIV_DAP_VERIFICATION));
    assert_memory_equal(c->st.apps[app].sd.b, ssd2_aid, sizeof ssd2_aid);
    assert_int_equal(c->st.apps[app].privs, GP_PRIV_BIT(GP_PRIV_CARD_RESET));
    assert_false(se_has_priv(&c->st, 0, GP_PRIV_CARD_RESET));
    /* Restricting the OPEN (no application AID) is not implemented. */
    struct gp_install_args a = {.privs = NULL};
    size_t n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_registry_update(0, &a, cmd, &n), OT_OK);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A80);
    t_card_free(c);
}

/* ---------------------------------------------------------------- tokens */

/* Adds the 16-byte token (AES-CMAC of P1 P2 Lc' data) to a command whose
 * data ends with an empty token (00) before Le. */
static size_t t_with_install_token(const uint8_t *cmd, size_t n, uint8_t *out, bool corrupt)
{
    size_t lc = cmd[4];
    assert_int_equal(n, 5 + lc + 1);
    const uint8_t *data = cmd + 5;
    size_t signed_len = lc - 1; /* without the token length byte */
    uint8_t msg[300], tok[16];
    size_t m = 0;
    msg[m++] = cmd[2];
    msg[m++] = cmd[3];
    msg[m++] = (uint8_t)signed_len;
    memcpy(msg + m, data, signed_len);
    m += signed_len;
    assert_int_equal(cmac_aes(token_key, sizeof token_key, msg, m, tok), OT_OK);
    if (corrupt) {
        tok[3] ^= 0x01;
    }
    memcpy(out, cmd, 4);
    out[4] = (uint8_t)(lc + 16);
    memcpy(out + 5, data, signed_len);
    out[5 + signed_len] = 16;
    memcpy(out + 6 + signed_len, tok, 16);
    out[6 + signed_len + 16] = 0x00;
    return 6 + signed_len + 16 + 1;
}

static void test_delegated_management_tokens(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint32_t dm = GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN) | GP_PRIV_BIT(GP_PRIV_DELEGATED_MANAGEMENT);
    int s = t_add_app(c, ssd_aid, sizeof ssd_aid, 0, dm, GP_LCS_SD_PERSONALIZED);
    c->st.elfs[0].sd = c->st.apps[s].aid;
    uint8_t cmd[GP_MAX_CMD_LEN], tcmd[GP_MAX_CMD_LEN];
    size_t n = t_install_emv(cmd, emv_app, sizeof emv_app, 0, true);
    /* No token. */
    assert_int_equal(t_run(c, s, cmd, n), 0x6982);
    size_t tn = t_with_install_token(cmd, n, tcmd, false);
    /* No token key on the card yet. */
    assert_int_equal(t_run(c, s, tcmd, tn), 0x6982);
    struct se_key *k = &c->st.apps[0].sd_data.keys[c->st.apps[0].sd_data.nkeys++];
    k->kvn = 0x70;
    k->kid = 0x01;
    k->type = SE_KEY_AES;
    k->len = 16;
    memcpy(k->val, token_key, 16);
    /* A wrong token. */
    size_t bn = t_with_install_token(cmd, n, tcmd, true);
    assert_int_equal(t_run(c, s, tcmd, bn), 0x6982);
    /* The right one, but the Receipt Generation SD (the ISD, 9EFE80) has no
     * receipt key: the operation fails (GPCS C.1.1.2). */
    tn = t_with_install_token(cmd, n, tcmd, false);
    assert_int_equal(t_run(c, s, tcmd, tn), 0x6985);
    /* Without Receipt Generation on the card: no receipt, answer 00
     * (receipts: gpconf_test.c). */
    c->st.apps[0].privs &= ~GP_PRIV_BIT(GP_PRIV_RECEIPT_GENERATION);
    assert_int_equal(t_run(c, s, tcmd, tn), SW_OK);
    int i = se_find_app(&c->st, emv_app, sizeof emv_app);
    assert_memory_equal(c->st.apps[i].sd.b, ssd_aid, sizeof ssd_aid);

    /* DELETE with a delete token: 9E over P1 P2 Lc' 4F... */
    struct gp_delete_args da = {.aid = emv_app, .aid_len = sizeof emv_app};
    n = sizeof cmd;
    assert_int_equal(gp_cmd_delete(0, &da, cmd, &n), OT_OK);
    assert_int_equal(t_run(c, s, cmd, n), 0x6982);
    uint8_t msg[64], tok[16];
    size_t m = 0;
    msg[m++] = 0x00;
    msg[m++] = 0x00;
    msg[m++] = (uint8_t)(2 + sizeof emv_app);
    msg[m++] = 0x4F;
    msg[m++] = sizeof emv_app;
    memcpy(msg + m, emv_app, sizeof emv_app);
    m += sizeof emv_app;
    assert_int_equal(cmac_aes(token_key, sizeof token_key, msg, m, tok), OT_OK);
    da.token = tok;
    da.token_len = sizeof tok;
    n = sizeof cmd;
    assert_int_equal(gp_cmd_delete(0, &da, cmd, &n), OT_OK);
    assert_int_equal(t_run(c, s, cmd, n), SW_OK);
    assert_int_equal(se_find_app(&c->st, emv_app, sizeof emv_app), -1);

    /* INSTALL [for load]: the token is mandatory, and so is the hash then. */
    uint8_t hash[32] = {1};
    n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, NULL, 0, hash, sizeof hash);
    assert_int_equal(t_run(c, s, cmd, n), 0x6982);
    tn = t_with_install_token(cmd, n, tcmd, false);
    assert_int_equal(t_run(c, s, tcmd, tn), SW_OK);
    assert_true(c->load.active);
    n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, NULL, 0, NULL, 0);
    tn = t_with_install_token(cmd, n, tcmd, false);
    assert_int_equal(t_run(c, s, tcmd, tn), 0x6A80);
    /* The combined first command carries no token. */
    n = t_for_load(cmd, 0x0E, 0x01, unk_pkg, sizeof unk_pkg, NULL, 0, hash, sizeof hash);
    assert_int_equal(t_run(c, s, cmd, n), SW_OK);
    tn = t_with_install_token(cmd, n, tcmd, false);
    assert_int_equal(t_run(c, s, tcmd, tn), 0x6A80);
    t_card_free(c);
}

/* ---------------------------------------------------------------- LOAD */

static void test_load_unknown_package(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint8_t lfdb[128], file[160], hash[32], cmd[GP_MAX_CMD_LEN];
    size_t ln = t_lfdb(lfdb, unk_pkg, sizeof unk_pkg, unk_mod, sizeof unk_mod);
    size_t fn = sizeof file;
    assert_int_equal(cap_load_file_build(lfdb, ln, NULL, 0, file, &fn), OT_OK);
    t_sha256(lfdb, ln, hash);
    size_t n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, NULL, 0, hash, sizeof hash);
    struct t_res res;
    assert_int_equal(t_run_as(c, 0, 0, true, cmd, n, &res), SW_OK);
    assert_int_equal(res.len, 1);
    assert_false(c->dirty);
    assert_int_equal(t_load_blocks(c, 0, file, fn, 16), SW_OK);
    assert_true(c->dirty);
    int e = se_find_elf(&c->st, unk_pkg, sizeof unk_pkg);
    assert_true(e >= 0);
    const struct se_elf *elf = &c->st.elfs[e];
    assert_false(elf->native);
    assert_int_equal(elf->nmodules, 1);
    assert_memory_equal(elf->modules[0].b, unk_mod, sizeof unk_mod);
    assert_int_equal(elf->version[0], 1);
    assert_int_equal(elf->version[1], 3);
    assert_int_equal(elf->size, ln);
    assert_memory_equal(elf->sd.b, isd_aid, sizeof isd_aid);
    assert_false(c->load.active);
    /* Listed, and instantiable as an inert application; a module the Load
     * File does not have is still not found. */
    n = t_install(cmd, unk_pkg, sizeof unk_pkg, emv_mod, sizeof emv_mod, emv_app2, sizeof emv_app2,
                  0, NULL, 0, true);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A88);
    n = t_install(cmd, unk_pkg, sizeof unk_pkg, unk_mod, sizeof unk_mod, emv_app2, sizeof emv_app2,
                  0, NULL, 0, true);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    /* Loading it again: the ELF exists. */
    n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, NULL, 0, NULL, 0);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6985);
    t_card_free(c);
}

static void test_load_errors(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint8_t lfdb[128], file[160], hash[32], cmd[GP_MAX_CMD_LEN];
    size_t ln = t_lfdb(lfdb, unk_pkg, sizeof unk_pkg, unk_mod, sizeof unk_mod);
    size_t fn = sizeof file;
    assert_int_equal(cap_load_file_build(lfdb, ln, NULL, 0, file, &fn), OT_OK);
    t_sha256(lfdb, ln, hash);

    /* LOAD without INSTALL [for load]. */
    static const uint8_t load0[] = {0x80, 0xE8, 0x80, 0x00, 0x02, 0xC4, 0x00, 0x00};
    assert_int_equal(t_run(c, 0, load0, sizeof load0), 0x6985);

    /* Block out of order: the load is aborted. */
    size_t n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, NULL, 0, hash, sizeof hash);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    uint8_t blk[64] = {0x80, 0xE8, 0x00, 0x01, 0x10};
    memcpy(blk + 5, file, 16);
    blk[21] = 0x00;
    assert_int_equal(t_run(c, 0, blk, 22), 0x6A86);
    blk[3] = 0x00;
    assert_int_equal(t_run(c, 0, blk, 22), 0x6985);

    /* Wrong hash. */
    uint8_t bad[32];
    memcpy(bad, hash, 32);
    bad[0] ^= 1;
    n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, NULL, 0, bad, sizeof bad);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    assert_int_equal(t_load_blocks(c, 0, file, fn, 40), 0x6A80);
    assert_int_equal(se_find_elf(&c->st, unk_pkg, sizeof unk_pkg), -1);

    /* A Load File whose package is not the one announced. */
    n = t_for_load(cmd, 0x02, 0x00, emv_app2, sizeof emv_app2, NULL, 0, NULL, 0);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    assert_int_equal(t_load_blocks(c, 0, file, fn, 40), 0x6A80);

    /* C4 length that does not match the data. */
    n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, NULL, 0, NULL, 0);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    uint8_t trunc[160];
    memcpy(trunc, file, fn);
    trunc[fn] = 0x00; /* one trailing byte after the C4 object */
    assert_int_equal(t_load_blocks(c, 0, trunc, fn + 1, 40), 0x6A80);

    /* Not a CAP: bad magic. */
    n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, NULL, 0, NULL, 0);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    uint8_t badcap[160];
    memcpy(badcap, file, fn);
    badcap[fn - ln + 3] = 0x00; /* DE -> 00 */
    assert_int_equal(t_load_blocks(c, 0, badcap, fn, 40), 0x6A80);

    /* Too big for the card's load buffer. */
    n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, NULL, 0, NULL, 0);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    uint8_t big[260] = {0x80, 0xE8, 0x00, 0x00, 0xFF};
    uint16_t sw = SW_OK;
    for (unsigned b = 0; b < 300 && sw == SW_OK; b++) {
        big[3] = (uint8_t)b;
        sw = t_run(c, 0, big, 5 + 255);
    }
    assert_int_equal(sw, 0x6A84);
    assert_false(c->load.active);

    /* Memory requirement above what is free. */
    static const uint8_t params[] = {0xEF, 0x06, 0xC8, 0x04, 0x7F, 0xFF, 0xFF, 0xFF};
    struct gp_install_args a = {.elf_aid = unk_pkg,
                                .elf_aid_len = sizeof unk_pkg,
                                .params = params,
                                .params_len = sizeof params};
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_load(0, &a, cmd, &n), OT_OK);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A84);
    /* Unknown target SD; target not an SD. */
    n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, ssd_aid, sizeof ssd_aid, NULL, 0);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A88);
    t_add_app(c, emv_app, sizeof emv_app, 0, 0, GP_LCS_APP_SELECTABLE);
    n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, emv_app, sizeof emv_app, NULL, 0);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A80);
    t_card_free(c);
}

static void test_load_dap(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint32_t dap = GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN) | GP_PRIV_BIT(GP_PRIV_DAP_VERIFICATION);
    int s = t_add_app(c, ssd_aid, sizeof ssd_aid, 0, dap, GP_LCS_SD_PERSONALIZED);
    struct se_key *k = &c->st.apps[s].sd_data.keys[c->st.apps[s].sd_data.nkeys++];
    k->kvn = 0x73;
    k->kid = 0x01;
    k->type = SE_KEY_AES;
    k->len = 16;
    memcpy(k->val, dap_key, 16);
    uint8_t lfdb[128], file[200], hash[32], sig[16], cmd[GP_MAX_CMD_LEN];
    size_t ln = t_lfdb(lfdb, unk_pkg, sizeof unk_pkg, unk_mod, sizeof unk_mod);
    t_sha256(lfdb, ln, hash);
    assert_int_equal(cmac_aes(dap_key, sizeof dap_key, hash, sizeof hash, sig), OT_OK);

    /* No DAP block for the DAP-verifying target. */
    size_t fn = sizeof file;
    assert_int_equal(cap_load_file_build(lfdb, ln, NULL, 0, file, &fn), OT_OK);
    size_t n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, ssd_aid, sizeof ssd_aid, hash,
                          sizeof hash);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    assert_int_equal(t_load_blocks(c, 0, file, fn, 50), 0x6982);
    /* A wrong signature. */
    sig[0] ^= 1;
    struct cap_dap d = {.sd_aid = ssd_aid, .sd_aid_len = sizeof ssd_aid, .sig = sig, .sig_len = 16};
    fn = sizeof file;
    assert_int_equal(cap_load_file_build(lfdb, ln, &d, 1, file, &fn), OT_OK);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    assert_int_equal(t_load_blocks(c, 0, file, fn, 50), 0x6982);
    /* The right one. */
    sig[0] ^= 1;
    fn = sizeof file;
    assert_int_equal(cap_load_file_build(lfdb, ln, &d, 1, file, &fn), OT_OK);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    assert_int_equal(t_load_blocks(c, 0, file, fn, 50), SW_OK);
    int e = se_find_elf(&c->st, unk_pkg, sizeof unk_pkg);
    assert_true(e >= 0);
    assert_memory_equal(c->st.elfs[e].sd.b, ssd_aid, sizeof ssd_aid);
    t_card_free(c);
}

/* INSTALL [for load, install and make selectable] of the native emv package
 * after its registry entry was removed (as if it came as a CAP). */
static void test_combined_load_install(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    c->st.nelfs = 0;
    memset(&c->st.elfs[0], 0, sizeof c->st.elfs[0]);
    uint8_t lfdb[128], file[200], cmd[GP_MAX_CMD_LEN];
    size_t ln = t_lfdb(lfdb, emv_pkg, sizeof emv_pkg, emv_mod, sizeof emv_mod);
    size_t fn = sizeof file;
    assert_int_equal(cap_load_file_build(lfdb, ln, NULL, 0, file, &fn), OT_OK);
    /* The final command before the load: refused. */
    uint8_t pb[3] = {0, 0, 0}, params[] = {0xC9, 0x00};
    struct gp_install_args ia = {.elf_aid = emv_pkg,
                                 .elf_aid_len = sizeof emv_pkg,
                                 .module_aid = emv_mod,
                                 .module_aid_len = sizeof emv_mod,
                                 .app_aid = emv_app,
                                 .app_aid_len = sizeof emv_app,
                                 .privs = pb,
                                 .privs_len = 3,
                                 .params = params,
                                 .params_len = sizeof params};
    uint8_t fin[GP_MAX_CMD_LEN];
    size_t finn = sizeof fin;
    assert_int_equal(gp_cmd_install(0, 0x0E, 0x03, &ia, fin, &finn), OT_OK);
    assert_int_equal(t_run(c, 0, fin, finn), 0x6985);

    size_t n = t_for_load(cmd, 0x0E, 0x01, emv_pkg, sizeof emv_pkg, NULL, 0, NULL, 0);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    assert_int_equal(t_load_blocks(c, 0, file, fn, 30), SW_OK);
    /* Nothing is registered before the final command. */
    assert_int_equal(se_find_elf(&c->st, emv_pkg, sizeof emv_pkg), -1);
    assert_false(c->dirty);
    assert_true(c->load.combined_ready);
    /* A final command that fails (the instance AID is taken) registers
     * nothing either (t_run checks the state); the process may go on. */
    t_add_app(c, emv_app, sizeof emv_app, 0, 0, GP_LCS_APP_SELECTABLE);
    assert_int_equal(t_run(c, 0, fin, finn), 0x6985);
    assert_true(c->load.combined_ready);
    c->st.napps--;
    memset(&c->st.apps[c->st.napps], 0, sizeof c->st.apps[0]);
    /* A final command with another ELF AID. */
    ia.elf_aid = unk_pkg;
    ia.elf_aid_len = sizeof unk_pkg;
    size_t badn = sizeof cmd;
    assert_int_equal(gp_cmd_install(0, 0x0E, 0x03, &ia, cmd, &badn), OT_OK);
    assert_int_equal(t_run(c, 0, cmd, badn), 0x6A80);
    /* The right one: ELF and instance appear together. */
    assert_int_equal(t_run(c, 0, fin, finn), SW_OK);
    int e = se_find_elf(&c->st, emv_pkg, sizeof emv_pkg);
    assert_true(e >= 0);
    assert_true(c->st.elfs[e].native);
    assert_int_equal(c->st.elfs[e].size, ln);
    int i = se_find_app(&c->st, emv_app, sizeof emv_app);
    assert_true(i > 0);
    assert_int_equal(c->st.apps[i].lcs, GP_LCS_APP_SELECTABLE);
    assert_false(c->load.combined_ready);
    assert_false(c->load.active);
    /* Once only. */
    assert_int_equal(t_run(c, 0, fin, finn), 0x6985);
    t_card_free(c);
}

/* ---------------------------------------------------------------- DELETE */

static uint16_t t_delete(struct se_card *c, int sd, const uint8_t *aid, size_t n, bool related)
{
    uint8_t cmd[GP_MAX_CMD_LEN];
    size_t len = sizeof cmd;
    struct gp_delete_args a = {.aid = aid, .aid_len = n, .related = related};
    assert_int_equal(gp_cmd_delete(0, &a, cmd, &len), OT_OK);
    return t_run(c, sd, cmd, len);
}

static void test_delete_content(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint32_t plain = GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN);
    uint32_t am = plain | GP_PRIV_BIT(GP_PRIV_AUTHORIZED_MANAGEMENT);
    int central = t_add_app(c, ssd_aid, sizeof ssd_aid, 0, am, GP_LCS_SD_PERSONALIZED);
    int sp = t_add_app(c, ssd2_aid, sizeof ssd2_aid, central, plain, GP_LCS_SD_PERSONALIZED);
    t_add_app(c, emv_app, sizeof emv_app, sp, GP_PRIV_BIT(GP_PRIV_CARD_RESET),
              GP_LCS_APP_SELECTABLE);
    t_add_app(c, emv_app2, sizeof emv_app2, 0, 0, GP_LCS_APP_SELECTABLE);
    t_add_elf(c, unk_pkg, sizeof unk_pkg, unk_mod, sizeof unk_mod, central, false);
    c->st.apps[0].privs &= ~GP_PRIV_BIT(GP_PRIV_CARD_RESET);

    /* Refusals (state unchanged is checked by t_run). */
    assert_int_equal(t_delete(c, 0, isd_aid, sizeof isd_aid, false), 0x6985);
    assert_int_equal(t_delete(c, 0, emv_pkg, sizeof emv_pkg, false), 0x6985);   /* has instances */
    assert_int_equal(t_delete(c, 0, ssd2_aid, sizeof ssd2_aid, false), 0x6985); /* has an app */
    assert_int_equal(t_delete(c, 0, ssd_pkg, sizeof ssd_pkg, true), 0x6A88);
    assert_int_equal(t_delete(c, 0, (const uint8_t *)"\xA0\x00\x00\x00\x99", 5, false), 0x6A88);
    assert_int_equal(t_delete(c, central, emv_app2, sizeof emv_app2, false), 0x6982);
    assert_int_equal(t_delete(c, sp, emv_app, sizeof emv_app, false), 0x6982); /* no AM */
    c->chans[2].open = true;
    c->chans[2].selected = se_find_app(&c->st, emv_app2, sizeof emv_app2);
    assert_int_equal(t_delete(c, 0, emv_app2, sizeof emv_app2, false), 0x6985);
    c->chans[2].open = false;
    c->st.card_lcs = GP_LCS_CARD_LOCKED;
    assert_int_equal(t_delete(c, 0, emv_app2, sizeof emv_app2, false), 0x6A81);
    c->st.card_lcs = GP_LCS_CARD_SECURED;
    /* The emv package with both instances (P2 80). The Card Reset holder
     * goes, the privilege returns to the ISD. */
    uint16_t sw = t_delete(c, 0, emv_pkg, sizeof emv_pkg, true);
    assert_int_equal(sw, SW_OK);
    assert_int_equal(se_find_app(&c->st, emv_app, sizeof emv_app), -1);
    assert_int_equal(se_find_app(&c->st, emv_app2, sizeof emv_app2), -1);
    assert_int_equal(se_find_elf(&c->st, emv_pkg, sizeof emv_pkg), -1);
    assert_true(se_has_priv(&c->st, 0, GP_PRIV_CARD_RESET));
    /* An instance of the central SD's ELF under the ISD: the central SD may
     * not take it along (P2 80), the ISD (Global Delete) may. */
    static const uint8_t other[] = {0xD2, 0x76, 0x00, 0x01, 0x18, 0x00, 0x01, 0x01};
    int o = t_add_app(c, other, sizeof other, 0, 0, GP_LCS_APP_SELECTABLE);
    t_aid(&c->st.apps[o].elf, unk_pkg, sizeof unk_pkg);
    assert_int_equal(t_delete(c, central, unk_pkg, sizeof unk_pkg, false), 0x6985);
    assert_int_equal(t_delete(c, central, unk_pkg, sizeof unk_pkg, true), 0x6985);
    assert_int_equal(t_delete(c, 0, unk_pkg, sizeof unk_pkg, true), SW_OK);
    assert_int_equal(se_find_app(&c->st, other, sizeof other), -1);
    assert_int_equal(se_find_elf(&c->st, unk_pkg, sizeof unk_pkg), -1);
    /* The central SD deletes its SP SD, then the ISD the central SD with
     * its ELF (related). */
    static const uint8_t pkg2[] = {0xD2, 0x76, 0x00, 0x01, 0x18, 0x02};
    t_add_elf(c, pkg2, sizeof pkg2, unk_mod, sizeof unk_mod, central, false);
    assert_int_equal(t_delete(c, central, ssd2_aid, sizeof ssd2_aid, false), SW_OK);
    assert_int_equal(t_delete(c, 0, ssd_aid, sizeof ssd_aid, false), 0x6985);
    assert_int_equal(t_delete(c, 0, ssd_aid, sizeof ssd_aid, true), SW_OK);
    assert_int_equal(c->st.napps, 1);
    assert_int_equal(c->st.nelfs, 0);
    t_card_free(c);
}

static void test_delete_keys_and_format(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    t_add_keyset(&c->st.apps[0], 0x31, key40);
    uint8_t cmd[GP_MAX_CMD_LEN];
    size_t n = sizeof cmd;
    assert_int_equal(gp_cmd_delete_key(0, 2, 0x31, false, cmd, &n), OT_OK);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    assert_int_equal(c->st.apps[0].sd_data.nkeys, 5);
    assert_int_equal(t_run(c, 0, cmd, n), 0x6A88);
    n = sizeof cmd;
    assert_int_equal(gp_cmd_delete_key(0, -1, 0x31, false, cmd, &n), OT_OK);
    assert_int_equal(t_run(c, 0, cmd, n), SW_OK);
    assert_int_equal(c->st.apps[0].sd_data.nkeys, 3);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(c->st.apps[0].sd_data.keys[i].kvn, 0x30);
    }
    static const struct {
        const char *hex;
        uint16_t sw;
    } rows[] = {
        {"80E4000000", 0x6700},
        {"80E40000024F00", 0x6A80},                   /* empty AID */
        {"80E4000003D00201", 0x6A80},                 /* truncated */
        {"80E4000004D2023031", 0x6A80},               /* KVN of 2 bytes */
        {"80E4000002C100", 0x6A80},                   /* unknown tag */
        {"80E4010003D20130", 0x6A86},                 /* P1 */
        {"80E4004003D20130", 0x6A86},                 /* P2 */
        {"80E4008003D20177", 0x6A88},                 /* related + key: as P2 00 */
        {"80E400000AD201304F05A00000000100", 0x6A80}, /* key and AID */
        {"80E4000005D201994F0000", 0x6A80},
        {"80E4000003D20177", 0x6A88}, /* no such key */
    };
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        uint8_t raw[64];
        size_t rn = sizeof raw;
        assert_int_equal(hex_decode(rows[k].hex, strlen(rows[k].hex), raw, &rn), OT_OK);
        print_message("row %zu\n", k);
        assert_int_equal(t_run(c, 0, raw, rn), rows[k].sw);
    }
    t_card_free(c);
}

/* ---------------------------------------------------------------- mutations */

static uint32_t t_rand(uint32_t *x)
{
    /* xorshift32: a fixed, reproducible sequence */
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Valid commands with random bytes changed, cut or extended, P1/P2 flipped:
 * whatever the handlers answer, a rejection leaves the state untouched
 * (checked by t_run_as) and nothing crashes (ASan build). */
static void test_mutated_commands(void **state)
{
    (void)state;
    struct se_card *c = t_card();
    uint32_t am = GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN) | GP_PRIV_BIT(GP_PRIV_AUTHORIZED_MANAGEMENT);
    int sd = t_add_app(c, ssd_aid, sizeof ssd_aid, 0, am, GP_LCS_SD_PERSONALIZED);
    t_add_app(c, emv_app2, sizeof emv_app2, sd, 0, GP_LCS_APP_SELECTABLE);
    uint8_t tpl[10][GP_MAX_CMD_LEN];
    size_t tn[10];
    uint8_t lfdb[128], file[200], hash[32];
    size_t ln = t_lfdb(lfdb, unk_pkg, sizeof unk_pkg, unk_mod, sizeof unk_mod);
    size_t fn = sizeof file;
    assert_int_equal(cap_load_file_build(lfdb, ln, NULL, 0, file, &fn), OT_OK);
    t_sha256(lfdb, ln, hash);
    tn[0] = t_install_emv(tpl[0], emv_app, sizeof emv_app, 0, true);
    tn[1] = t_install_ssd(tpl[1], ssd2_aid, sizeof ssd2_aid, am);
    tn[2] = t_for_load(tpl[2], 0x02, 0x00, unk_pkg, sizeof unk_pkg, NULL, 0, hash, sizeof hash);
    struct gp_install_args xa = {.sd_aid = ssd_aid,
                                 .sd_aid_len = sizeof ssd_aid,
                                 .app_aid = emv_app,
                                 .app_aid_len = sizeof emv_app};
    tn[3] = GP_MAX_CMD_LEN;
    assert_int_equal(gp_cmd_install_for_extradition(0, &xa, tpl[3], &tn[3]), OT_OK);
    tn[4] = GP_MAX_CMD_LEN;
    assert_int_equal(
        gp_cmd_install_for_personalization(0, emv_app2, sizeof emv_app2, tpl[4], &tn[4]), OT_OK);
    uint8_t pb[3] = {0x04, 0x00, 0x00};
    struct gp_install_args ra = {
        .app_aid = emv_app2, .app_aid_len = sizeof emv_app2, .privs = pb, .privs_len = 3};
    tn[5] = GP_MAX_CMD_LEN;
    assert_int_equal(gp_cmd_install_for_registry_update(0, &ra, tpl[5], &tn[5]), OT_OK);
    struct gp_delete_args da = {.aid = emv_app, .aid_len = sizeof emv_app};
    tn[6] = GP_MAX_CMD_LEN;
    assert_int_equal(gp_cmd_delete(0, &da, tpl[6], &tn[6]), OT_OK);
    tn[7] = GP_MAX_CMD_LEN;
    assert_int_equal(gp_cmd_delete_key(0, 1, 0x30, false, tpl[7], &tn[7]), OT_OK);
    /* LOAD blocks: first and last of a two-block file. */
    size_t half = fn / 2;
    tpl[8][0] = 0x80, tpl[8][1] = 0xE8, tpl[8][2] = 0x00, tpl[8][3] = 0x00;
    tpl[8][4] = (uint8_t)half;
    memcpy(tpl[8] + 5, file, half);
    tn[8] = 5 + half;
    tpl[9][0] = 0x80, tpl[9][1] = 0xE8, tpl[9][2] = 0x80, tpl[9][3] = 0x01;
    tpl[9][4] = (uint8_t)(fn - half);
    memcpy(tpl[9] + 5, file + half, fn - half);
    tn[9] = 5 + fn - half;

    uint32_t seed = 0x2545F491u;
    unsigned ok = 0;
    for (unsigned it = 0; it < 6000; it++) {
        unsigned k = t_rand(&seed) % 10;
        uint8_t cmd[GP_MAX_CMD_LEN + 8];
        size_t n = tn[k];
        memcpy(cmd, tpl[k], n);
        size_t lc = n > 5 ? cmd[4] : 0;
        unsigned how = t_rand(&seed) % 8;
        if (how < 4 && lc > 0) {
            for (unsigned m = 0; m <= how; m++) {
                cmd[5 + t_rand(&seed) % lc] = (uint8_t)t_rand(&seed);
            }
        } else if (how == 4 && lc > 1) {
            size_t cut = 1 + t_rand(&seed) % (lc - 1); /* shorter data, no Le */
            cmd[4] = (uint8_t)cut;
            n = 5 + cut;
        } else if (how == 5 && lc < 250) {
            cmd[4] = (uint8_t)(lc + 1); /* one more byte, no Le */
            cmd[5 + lc] = (uint8_t)t_rand(&seed);
            n = 5 + lc + 1;
        } else if (how == 6) {
            cmd[2 + t_rand(&seed) % 2] ^= (uint8_t)(1u << (t_rand(&seed) % 8));
        }
        int perf = (t_rand(&seed) % 4 == 0) ? sd : 0;
        if (perf >= (int)c->st.napps || !c->st.apps[perf].is_sd) {
            perf = 0;
        }
        if (t_run(c, perf, cmd, n) == SW_OK) {
            ok++;
        }
    }
    print_message("%u of 6000 mutated commands accepted\n", ok);
    assert_true(ok > 10); /* some commands still went through */
    t_card_free(c);
}

/* ---------------------------------------------------------------- end to end */

/* A profile in the vse.md format: the dev card plus an SD without privileges. */
static const char t_profile[] =
    "{\"type\":\"eSE\",\"card_lcs\":\"SECURED\","
    "\"isd\":{\"aid\":\"A000000151000000\",\"privileges\":\"9EFE80\",\"scp\":3,\"i\":\"10\","
    "\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"404142434445464748494A4B4C4D4E4F\","
    "\"mac\":\"404142434445464748494A4B4C4D4E4F\",\"dek\":\"404142434445464748494A4B4C4D4E4F\"}]},"
    "\"packages\":[{\"aid\":\"F04F54534D02\",\"module\":\"emv-payment\"}],"
    "\"domains\":[{\"aid\":\"A000000559101099\",\"privileges\":\"security-domain\",\"scp\":3,\"i\":"
    "\"70\","
    "\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"404142434445464748494A4B4C4D4E4F\","
    "\"mac\":\"404142434445464748494A4B4C4D4E4F\",\"dek\":\"404142434445464748494A4B4C4D4E4F\"}]}]"
    "}";

static ot_err t_xmit(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *resp_len)
{
    return se_card_transmit(ctx, cmd, n, resp, resp_len);
}

static struct gp_session *t_open(struct se_card *card, const uint8_t *sd, size_t sd_len)
{
    static struct scp03_keyset keys;
    keys.kvn = 0x30;
    keys.key_len = 16;
    memcpy(keys.enc, key40, 16);
    memcpy(keys.mac, key40, 16);
    memcpy(keys.dek, key40, 16);
    struct gp_session_cfg cfg = {
        .sd_aid = sd,
        .sd_aid_len = sd_len,
        .scp = GP_SCP_03,
        .scp03_keys = &keys,
        .level = 0x03,
    };
    struct gp_session *s = NULL;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    assert_int_equal(gp_session_open(s, t_xmit, card), OT_OK);
    return s;
}

static uint16_t t_send(struct gp_session *s, struct se_card *card, const uint8_t *cmd, size_t n)
{
    uint8_t resp[512];
    size_t rl = sizeof resp;
    uint16_t sw = 0;
    assert_int_equal(gp_session_transmit(s, t_xmit, card, cmd, n, resp, &rl, &sw), OT_OK);
    return sw;
}

static void t_read(const char *path, struct ot_buf *b)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t tmp[4096];
    size_t n;
    ot_buf_init(b, 0);
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        assert_int_equal(ot_buf_append(b, tmp, n), OT_OK);
    }
    fclose(f);
}

/* A rejected command through the runtime leaves the image file unchanged. */
static void t_expect_reject(struct gp_session *s, struct se_card *card, const char *img,
                            const uint8_t *cmd, size_t n, uint16_t want)
{
    struct ot_buf before, after;
    t_read(img, &before);
    assert_int_equal(t_send(s, card, cmd, n), want);
    t_read(img, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);
}

static void test_end_to_end(void **state)
{
    (void)state;
    struct se_card *card = NULL;
    assert_int_equal(se_card_from_profile(t_profile, strlen(t_profile), &card), OT_OK);
    char dir[] = "/tmp/gpcm_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char img[64];
    snprintf(img, sizeof img, "%s/card.img", dir);
    assert_int_equal(se_card_save_as(card, img), OT_OK);
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len = sizeof atr;
    assert_int_equal(se_card_power_on(card, atr, &atr_len), OT_OK);

    struct gp_session *s = t_open(card, NULL, 0);
    uint8_t cmd[GP_MAX_CMD_LEN];
    size_t n;
    uint32_t am = GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN) | GP_PRIV_BIT(GP_PRIV_AUTHORIZED_MANAGEMENT);

    /* Install + make selectable of the payment module under the ISD. */
    n = t_install_emv(cmd, emv_app, sizeof emv_app, 0, true);
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);
    /* Duplicate AID, unknown module: image unchanged. */
    t_expect_reject(s, card, img, cmd, n, 0x6985);
    n = t_install(cmd, emv_pkg, sizeof emv_pkg, unk_mod, sizeof unk_mod, emv_app2, sizeof emv_app2,
                  0, NULL, 0, true);
    t_expect_reject(s, card, img, cmd, n, 0x6A88);
    /* An SSD with Authorized Management, then extradition to it. */
    n = t_install_ssd(cmd, ssd_aid, sizeof ssd_aid, am);
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);
    struct gp_install_args xa = {.sd_aid = ssd_aid,
                                 .sd_aid_len = sizeof ssd_aid,
                                 .app_aid = emv_app,
                                 .app_aid_len = sizeof emv_app};
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_extradition(0, &xa, cmd, &n), OT_OK);
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);
    /* The ISD may not personalize it any more; the SSD (created with the
     * ISD's key set) may. */
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_personalization(0, emv_app, sizeof emv_app, cmd, &n),
                     OT_OK);
    t_expect_reject(s, card, img, cmd, n, 0x6985);
    gp_session_free(s);
    s = t_open(card, ssd_aid, sizeof ssd_aid);
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);
    assert_int_equal(card->chans[0].perso_target, se_find_app(&card->st, emv_app, sizeof emv_app));
    gp_session_free(s);
    s = t_open(card, NULL, 0);

    /* Load of a CAP of an unknown package, then its instantiation. */
    uint8_t lfdb[128], file[200], hash[32];
    size_t ln = t_lfdb(lfdb, unk_pkg, sizeof unk_pkg, unk_mod, sizeof unk_mod);
    size_t fn = sizeof file;
    assert_int_equal(cap_load_file_build(lfdb, ln, NULL, 0, file, &fn), OT_OK);
    t_sha256(lfdb, ln, hash);
    n = t_for_load(cmd, 0x02, 0x00, unk_pkg, sizeof unk_pkg, NULL, 0, hash, sizeof hash);
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);
    struct load_iter it;
    assert_int_equal(load_iter_init(&it, file, fn, 32, 0), OT_OK);
    /* First block, then a block out of order: the load is aborted. */
    uint8_t lc[LOAD_MAX_APDU];
    size_t lcl = sizeof lc;
    assert_int_equal(load_iter_next(&it, lc, &lcl, NULL), OT_OK);
    assert_int_equal(t_send(s, card, lc, lcl), SW_OK);
    lcl = sizeof lc;
    assert_int_equal(load_iter_next(&it, lc, &lcl, NULL), OT_OK);
    lc[3] = 0x05;
    t_expect_reject(s, card, img, lc, lcl, 0x6A86);
    /* Again, in order. */
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);
    assert_int_equal(load_iter_init(&it, file, fn, 32, 0), OT_OK);
    while (!load_iter_done(&it)) {
        lcl = sizeof lc;
        assert_int_equal(load_iter_next(&it, lc, &lcl, NULL), OT_OK);
        assert_int_equal(t_send(s, card, lc, lcl), SW_OK);
    }
    /* GET STATUS lists the stored Load File with its module. */
    struct gp_status_query q = {.p1 = GP_STATUS_P1_ELF_MODULES, .tlv = true};
    uint8_t gs[GP_MAX_CMD_LEN], resp[1024];
    size_t gsn = sizeof gs, rl = sizeof resp;
    uint16_t sw = 0;
    assert_int_equal(gp_cmd_get_status(0, &q, gs, &gsn), OT_OK);
    assert_int_equal(gp_session_transmit(s, t_xmit, card, gs, gsn, resp, &rl, &sw), OT_OK);
    assert_int_equal(sw, SW_OK);
    bool listed = false;
    for (size_t k = 0; k + 2 + sizeof unk_mod <= rl; k++) {
        listed = listed
                 || (resp[k] == 0x84 && resp[k + 1] == sizeof unk_mod
                     && memcmp(resp + k + 2, unk_mod, sizeof unk_mod) == 0);
    }
    assert_true(listed);
    /* Its module gives an inert instance (issue 12 point 5). */
    n = t_install(cmd, unk_pkg, sizeof unk_pkg, unk_mod, sizeof unk_mod, emv_app2, sizeof emv_app2,
                  0, NULL, 0, true);
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);

    /* DELETE with and without related objects: the Load File goes after its
     * instance. */
    struct gp_delete_args da = {.aid = unk_pkg, .aid_len = sizeof unk_pkg};
    n = sizeof cmd;
    assert_int_equal(gp_cmd_delete(0, &da, cmd, &n), OT_OK);
    t_expect_reject(s, card, img, cmd, n, 0x6985);
    da.aid = emv_app2;
    da.aid_len = sizeof emv_app2;
    n = sizeof cmd;
    assert_int_equal(gp_cmd_delete(0, &da, cmd, &n), OT_OK);
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);
    da.aid = unk_pkg;
    da.aid_len = sizeof unk_pkg;
    n = sizeof cmd;
    assert_int_equal(gp_cmd_delete(0, &da, cmd, &n), OT_OK);
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);
    da.aid = emv_pkg;
    da.aid_len = sizeof emv_pkg;
    n = sizeof cmd;
    assert_int_equal(gp_cmd_delete(0, &da, cmd, &n), OT_OK);
    t_expect_reject(s, card, img, cmd, n, 0x6985);
    da.related = true;
    n = sizeof cmd;
    assert_int_equal(gp_cmd_delete(0, &da, cmd, &n), OT_OK);
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);
    gp_session_free(s);

    /* An SD without privileges: INSTALL gives 6982, image unchanged. */
    static const uint8_t plain_sd[] = {0xA0, 0x00, 0x00, 0x05, 0x59, 0x10, 0x10, 0x99};
    s = t_open(card, plain_sd, sizeof plain_sd);
    n = t_install_emv(cmd, emv_app2, sizeof emv_app2, 0, true);
    t_expect_reject(s, card, img, cmd, n, 0x6982);
    gp_session_free(s);

    /* The state survives a reopen. */
    se_card_free(card);
    card = NULL;
    assert_int_equal(se_card_open(img, &card), OT_OK);
    const struct se_state *st = &card->st;
    int sd = se_find_app(st, ssd_aid, sizeof ssd_aid);
    assert_true(sd > 0);
    assert_true(st->apps[sd].is_sd);
    assert_int_equal(se_find_app(st, emv_app, sizeof emv_app), -1);
    assert_int_equal(se_find_elf(st, unk_pkg, sizeof unk_pkg), -1);
    se_card_free(card);
    unlink(img);
    rmdir(dir);
}

static struct gp_session *t_open_keys(struct se_card *card, const uint8_t *sd, size_t sd_len,
                                      uint8_t first, uint8_t level)
{
    static struct scp03_keyset keys;
    keys.kvn = 0x30;
    keys.key_len = 16;
    for (unsigned i = 0; i < 16; i++) {
        keys.enc[i] = keys.mac[i] = keys.dek[i] = (uint8_t)(first + i);
    }
    struct gp_session_cfg cfg = {
        .sd_aid = sd,
        .sd_aid_len = sd_len,
        .scp = GP_SCP_03,
        .scp03_keys = &keys,
        .level = level,
    };
    struct gp_session *s = NULL;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    assert_int_equal(gp_session_open(s, t_xmit, card), OT_OK);
    return s;
}

/* Seed 002 figure 6 (profiles/uicc-central.json): the central SD instantiates
 * under itself and extradites to its SP SDs, not into the MNO's hierarchy;
 * the MNO SD manages its own packages only. */
static void test_seed_layout_uicc_central(void **state)
{
    (void)state;
    static const uint8_t central[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x53, 0x44, 0x01};
    static const uint8_t mno[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x53, 0x44, 0x02};
    static const uint8_t sp[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x53, 0x44, 0x10};
    static const uint8_t wallet[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x05, 0x01, 0xAA};
    static const uint8_t telecom[] = {0xA0, 0x00, 0x00, 0x00, 0x87, 0x10, 0x02};
    static const uint8_t tel_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x04};
    static const uint8_t tel_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x04, 0x01};
    static const uint8_t tel2[] = {0xA0, 0x00, 0x00, 0x00, 0x87, 0x10, 0x09};
    static const uint8_t pay[] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x99};
    struct se_card *card = NULL;
    assert_int_equal(se_card_from_profile_file(OT_SOURCE_DIR "/profiles/uicc-central.json", &card),
                     OT_OK);
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len = sizeof atr;
    assert_int_equal(se_card_power_on(card, atr, &atr_len), OT_OK);
    uint8_t cmd[GP_MAX_CMD_LEN];
    size_t n;

    struct gp_session *s = t_open_keys(card, central, sizeof central, 0x50, 0x33);
    n = t_install_emv(cmd, pay, sizeof pay, 0, true);
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);
    struct {
        const uint8_t *to;
        const uint8_t *what;
        size_t what_len;
        uint16_t sw;
    } rows[] = {
        {sp, pay, sizeof pay, SW_OK},
        {mno, wallet, sizeof wallet, 0x6985},  /* another hierarchy */
        {sp, telecom, sizeof telecom, 0x6982}, /* not the central SD's */
        {sp, wallet, sizeof wallet, SW_OK},
    };
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        struct gp_install_args xa = {.sd_aid = rows[k].to,
                                     .sd_aid_len = 8,
                                     .app_aid = rows[k].what,
                                     .app_aid_len = rows[k].what_len};
        n = sizeof cmd;
        assert_int_equal(gp_cmd_install_for_extradition(0, &xa, cmd, &n), OT_OK);
        print_message("row %zu\n", k);
        assert_int_equal(t_send(s, card, cmd, n), rows[k].sw);
    }
    int i = se_find_app(&card->st, pay, sizeof pay);
    assert_true(i > 0);
    assert_memory_equal(card->st.apps[i].sd.b, sp, sizeof sp);
    gp_session_free(s);

    s = t_open_keys(card, mno, sizeof mno, 0x60, 0x33);
    /* The payment package belongs to the central SD. */
    n = t_install_emv(cmd, emv_app2, sizeof emv_app2, 0, true);
    assert_int_equal(t_send(s, card, cmd, n), 0x6985);
    n = t_install(cmd, tel_pkg, sizeof tel_pkg, tel_mod, sizeof tel_mod, tel2, sizeof tel2, 0, NULL,
                  0, true);
    assert_int_equal(t_send(s, card, cmd, n), SW_OK);
    i = se_find_app(&card->st, tel2, sizeof tel2);
    assert_true(i > 0);
    assert_memory_equal(card->st.apps[i].sd.b, mno, sizeof mno);
    /* Deleting the central SD's instance: not the MNO's. */
    struct gp_delete_args da = {.aid = pay, .aid_len = sizeof pay};
    n = sizeof cmd;
    assert_int_equal(gp_cmd_delete(0, &da, cmd, &n), OT_OK);
    assert_int_equal(t_send(s, card, cmd, n), 0x6982);
    gp_session_free(s);
    se_card_free(card);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_emv_selectable),
        cmocka_unit_test(test_install_then_make_selectable),
        cmocka_unit_test(test_create_ssd_and_extradite),
        cmocka_unit_test(test_extradition_rules),
        cmocka_unit_test(test_install_refusals),
        cmocka_unit_test(test_install_malformed),
        cmocka_unit_test(test_registry_update),
        cmocka_unit_test(test_delegated_management_tokens),
        cmocka_unit_test(test_load_unknown_package),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_dap),
        cmocka_unit_test(test_combined_load_install),
        cmocka_unit_test(test_delete_content),
        cmocka_unit_test(test_delete_keys_and_format),
        cmocka_unit_test(test_mutated_commands),
        cmocka_unit_test(test_end_to_end),
        cmocka_unit_test(test_seed_layout_uicc_central),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
