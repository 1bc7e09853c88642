/* vse card runtime: card objects, power, APDU dispatch, logical channels,
 * SELECT, GET RESPONSE chaining, secure channels (SCP03 / SCP02) per channel
 * and security domain, GP command chaining, routing to the GP command
 * handlers (gpcm_*.c) and to the native applets, and the persistence of every
 * state change before the answer leaves the card. docs/vse.md describes the
 * behaviour as seen from outside. */
#define OT_LOG_COMPONENT "se.runtime"

#include "se/card.h"
#include "se/se_priv.h"

#include "core/log.h"
#include "gp/cmd.h"
#include "gp/privs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Status words (ISO 7816-4 5.1.3, GPCS 11.1.3). */
#define SW_WARN_NONE       0x6200u
#define SW_WARN_LOCKED     0x6283u /* GPCS 11.9.3: card is CARD_LOCKED */
#define SW_MORE_DATA       0x6100u
#define SW_AUTH_FAILED     0x6300u /* EXTERNAL AUTHENTICATE: host cryptogram */
#define SW_NO_DIAGNOSIS    0x6F00u
#define SW_MEMORY_FAILURE  0x6581u
#define SW_WRONG_LENGTH    0x6700u
#define SW_CHANNEL         0x6881u /* logical channel not supported / not open */
#define SW_CHAINING        0x6884u /* ISO command chaining not supported */
#define SW_SECURITY        0x6982u
#define SW_CONDITIONS      0x6985u
#define SW_FUNC_NOT_SUPP   0x6A81u
#define SW_NOT_FOUND       0x6A82u
#define SW_P1P2            0x6A86u
#define SW_REF_NOT_FOUND   0x6A88u
#define SW_WRONG_DATA      0x6A80u
#define SW_WRONG_LE        0x6C00u
#define SW_INS_UNSUPPORTED 0x6D00u
#define SW_CLA_UNSUPPORTED 0x6E00u

#define ISO_INS_MANAGE_CHANNEL GP_INS_MANAGE_CHANNEL /* ISO 7816-4 11.1.2 */
#define MANAGE_CHANNEL_OPEN    0x00u
#define MANAGE_CHANNEL_CLOSE   0x80u
#define CLA_ISO_CHAINING       0x10u /* ISO 7816-4 5.4.1: command chaining bit */

#define SE_CHAIN_MAX (APDU_MAX_EXT_NC + 64u) /* GP chain: secured data of one command */

/* Default ATR (ISO 7816-3 8.2): TS 3B (direct convention), T0 8A (TD1
 * present, 10 historical bytes), TD1 80 (TD2 present, T=0), TD2 01 (T=1),
 * historical bytes "OpenTSMvse", TCK = XOR of T0 .. last historical byte. */
static const uint8_t default_atr_body[] = {0x3B, 0x8A, 0x80, 0x01, 'O', 'p', 'e',
                                           'n',  'T',  'S',  'M',  'v', 's', 'e'};

/* ---------------------------------------------------------------- helpers (se_priv.h) */

void se_mark_dirty(struct se_card *c)
{
    c->dirty = true;
}

int se_find_app(const struct se_state *st, const uint8_t *aid, size_t len)
{
    if (len == 0 || len > SE_AID_MAX) {
        return -1;
    }
    for (int i = 0; i < (int)st->napps; i++) {
        if (st->apps[i].aid.len == len && memcmp(st->apps[i].aid.b, aid, len) == 0) {
            return i;
        }
    }
    return -1;
}

int se_find_elf(const struct se_state *st, const uint8_t *aid, size_t len)
{
    if (len == 0 || len > SE_AID_MAX) {
        return -1;
    }
    for (int i = 0; i < (int)st->nelfs; i++) {
        if (st->elfs[i].aid.len == len && memcmp(st->elfs[i].aid.b, aid, len) == 0) {
            return i;
        }
    }
    return -1;
}

int se_app_sd(const struct se_state *st, int app)
{
    if (app <= 0 || app >= (int)st->napps) {
        return 0;
    }
    const struct se_app *a = &st->apps[app];
    int sd = se_find_app(st, a->sd.b, a->sd.len);
    if (sd < 0) {
        return 0; /* dangling association: the ISD answers for it */
    }
    return sd;
}

bool se_has_priv(const struct se_state *st, int app, unsigned p)
{
    if (app < 0 || app >= (int)st->napps || p >= GP_PRIV_COUNT) {
        return false;
    }
    return (st->apps[app].privs & GP_PRIV_BIT(p)) != 0;
}

int se_priv_holder(const struct se_state *st, unsigned p)
{
    for (int i = 0; i < (int)st->napps; i++) {
        if (se_has_priv(st, i, p)) {
            return i;
        }
    }
    return 0; /* GPCS 6.6: Card Reset and Final Application fall back to the ISD */
}

static void sc_reset(struct se_sc *sc)
{
    if (sc->scp03 != NULL) {
        scp03_card_reset(sc->scp03);
    }
    if (sc->scp02 != NULL) {
        scp02_card_reset(sc->scp02);
    }
    sc->active = false;
}

static void sc_free(struct se_sc *sc)
{
    scp03_card_free(sc->scp03);
    scp02_card_free(sc->scp02);
    sc->scp03 = NULL;
    sc->scp02 = NULL;
    sc->sd = -1;
    sc->scp = 0;
    sc->active = false;
}

static bool sc_open(const struct se_sc *sc)
{
    if (sc->scp == 0x03 && sc->scp03 != NULL) {
        return scp03_card_is_open(sc->scp03);
    }
    if (sc->scp == 0x02 && sc->scp02 != NULL) {
        return scp02_card_is_open(sc->scp02);
    }
    return false;
}

static bool sc_pending(const struct se_sc *sc)
{
    if (sc->scp == 0x03 && sc->scp03 != NULL) {
        return scp03_card_is_pending(sc->scp03);
    }
    if (sc->scp == 0x02 && sc->scp02 != NULL) {
        return scp02_card_is_pending(sc->scp02);
    }
    return false;
}

static uint8_t sc_level(const struct se_sc *sc)
{
    if (!sc_open(sc)) {
        return 0;
    }
    return sc->scp == 0x03 ? scp03_card_level(sc->scp03) : scp02_card_level(sc->scp02);
}

static void chain_abort(struct se_chain *ch)
{
    ch->active = false;
    ot_buf_reset(&ch->data);
}

static void pending_clear(struct se_chan *k)
{
    ot_buf_reset(&k->pending);
    k->pending_off = 0;
    k->pending_sw = SW_OK;
}

/* Drops a load in progress, or a combined load waiting for its final
 * INSTALL: both belong to the session that started them (GPCS 9.3.5), and a
 * stale one would keep its Load File and refuse loads on other channels. */
static void load_drop(struct se_card *c)
{
    ot_buf_reset(&c->load.data);
    struct ot_buf data = c->load.data;
    memset(&c->load, 0, sizeof c->load);
    c->load.data = data;
    c->load.chan = -1;
}

/* Ends the application session of a channel (GPCS 10.2.3 / Amd D 5.4: the
 * secure channel ends with the selection), keeping the channel open. */
static void chan_end_session(struct se_card *c, int ch)
{
    struct se_chan *k = &c->chans[ch];
    sc_reset(&k->sc);
    chain_abort(&k->chain);
    pending_clear(k);
    k->perso_target = -1;
    k->store_next_block = 0;
    k->status_pos = SIZE_MAX;
    k->status_p1 = 0;
    if ((c->load.active || c->load.combined_ready) && c->load.chan == ch) {
        load_drop(c);
    }
}

static bool app_selected_elsewhere(const struct se_card *c, int app, int except)
{
    for (int ch = 0; ch < (int)SE_MAX_CHANNELS; ch++) {
        if (ch != except && c->chans[ch].open && c->chans[ch].selected == app) {
            return true;
        }
    }
    return false;
}

/* Zeroes the applet scratch of app (a row never allocated is zero). */
static void vol_clear(struct se_card *c, int app)
{
    if (app >= 0 && (unsigned)app < c->vol_cap) {
        memset(c->vol[app], 0, SE_VOL_SIZE);
    }
}

static ot_err vol_reserve(struct se_card *c, unsigned n)
{
    if (n <= c->vol_cap) {
        return OT_OK;
    }
    if (n > SE_MAX_APPS) {
        return OT_E_LIMIT;
    }
    uint8_t(*v)[SE_VOL_SIZE] = realloc(c->vol, (size_t)n * SE_VOL_SIZE);
    if (v == NULL) {
        return OT_E_NOMEM;
    }
    memset(v[c->vol_cap], 0, (size_t)(n - c->vol_cap) * SE_VOL_SIZE);
    c->vol = v;
    c->vol_cap = n;
    return OT_OK;
}

ot_err se_card_reserve_apps(struct se_card *c, unsigned napps)
{
    if (c == NULL) {
        return OT_E_ARG;
    }
    ot_err err = se_state_reserve(&c->st, napps, 0);
    if (err == OT_OK) {
        err = vol_reserve(c, napps);
    }
    return err;
}

/* Deselects the channel's application; its volatile scratch is cleared unless
 * another channel still has it selected. */
static void chan_deselect(struct se_card *c, int ch)
{
    struct se_chan *k = &c->chans[ch];
    int app = k->selected;
    chan_end_session(c, ch);
    k->selected = -1;
    if (app >= 0 && !app_selected_elsewhere(c, app, ch)) {
        vol_clear(c, app);
    }
}

static int adjust_index(int v, int removed)
{
    if (v == removed) {
        return -1;
    }
    return v > removed ? v - 1 : v;
}

void se_remove_app(struct se_card *c, int i)
{
    struct se_state *st = &c->st;
    if (i < 0 || i >= (int)st->napps) {
        return;
    }
    for (int ch = 0; ch < (int)SE_MAX_CHANNELS; ch++) {
        struct se_chan *k = &c->chans[ch];
        if (k->sc.sd == i) {
            sc_reset(&k->sc);
            k->sc.sd = -1;
        } else if (k->sc.sd > i) {
            k->sc.sd--;
        }
        if (k->selected == i) {
            /* Keep the channel's secure channel only if it was not with i. */
            k->selected = -1;
            chain_abort(&k->chain);
        } else if (k->selected > i) {
            k->selected--;
        }
        k->perso_target = adjust_index(k->perso_target, i);
    }
    size_t tail = (size_t)(st->napps - 1 - (unsigned)i);
    se_app_wipe(&st->apps[i]); /* its data blob freed */
    memmove(&st->apps[i], &st->apps[i + 1], tail * sizeof st->apps[0]);
    /* The moved-from last slot's data pointer now belongs to its new slot. */
    ot_mem_wipe(&st->apps[st->napps - 1], sizeof st->apps[0]);
    if ((unsigned)i < c->vol_cap) {
        unsigned rows = c->vol_cap < st->napps ? c->vol_cap : st->napps;
        memmove(c->vol[i], c->vol[i + 1], (size_t)(rows - 1u - (unsigned)i) * SE_VOL_SIZE);
        vol_clear(c, (int)rows - 1);
    }
    st->napps--;
}

void se_remove_elf(struct se_card *c, int i)
{
    struct se_state *st = &c->st;
    if (i < 0 || i >= (int)st->nelfs) {
        return;
    }
    size_t tail = (size_t)(st->nelfs - 1 - (unsigned)i);
    memmove(&st->elfs[i], &st->elfs[i + 1], tail * sizeof st->elfs[0]);
    st->nelfs--;
    memset(&st->elfs[st->nelfs], 0, sizeof st->elfs[0]);
}

uint32_t se_mem_free(const struct se_state *st)
{
    uint64_t used = 0;
    for (unsigned i = 0; i < st->nelfs; i++) {
        used += st->elfs[i].size;
    }
    for (unsigned i = 0; i < st->napps; i++) {
        used += (uint64_t)st->apps[i].data_len + st->apps[i].params_len;
    }
    const uint32_t total = SE_MEM_TOTAL;
    return used >= total ? 0u : (uint32_t)(total - used);
}

/* ---------------------------------------------------------------- applet support (applet.h) */

ot_err se_applet_set_data(struct se_applet_ctx *x, const uint8_t *p, size_t n)
{
    if (x == NULL || x->card == NULL || (p == NULL && n > 0)) {
        return OT_E_ARG;
    }
    if (n > SE_APPLET_MAX_DATA || n > SE_MAX_APP_DATA) {
        return OT_E_LIMIT;
    }
    struct se_state *st = &x->card->st;
    if (x->app < 0 || x->app >= (int)st->napps) {
        return OT_E_ARG;
    }
    struct se_app *a = &st->apps[x->app];
    if (a->data_len != n || (n > 0 && memcmp(a->data, p, n) != 0)) {
        if (n == a->data_len) {
            memmove(a->data, p, n); /* same size: in place */
        } else {
            ot_err err = se_app_set_data(a, p, n);
            if (err != OT_OK) {
                return err;
            }
        }
        se_mark_dirty(x->card);
    }
    x->data = a->data;
    x->data_len = a->data_len;
    return OT_OK;
}

void se_applet_block_card(struct se_applet_ctx *x)
{
    if (x == NULL || x->card == NULL) {
        return;
    }
    struct se_card *c = x->card;
    if (c->st.card_lcs == GP_LCS_CARD_TERMINATED) {
        return;
    }
    c->st.card_lcs = GP_LCS_CARD_TERMINATED;
    c->st.apps[0].lcs = GP_LCS_CARD_TERMINATED; /* the ISD's is the card's */
    se_mark_dirty(c);
    /* Blocking is for good whatever status word the applet answers with: commit
     * now so the runtime's error-SW rollback cannot undo it. If the write
     * fails, persist() puts the block back after each rollback and retries. */
    if (se_commit(c) != OT_OK) {
        OT_LOG_ERROR("card block could not be written; it stays pending");
        c->dirty = true;
        c->block_pending = true;
    }
}

static const struct se_applet_ops *app_ops(const struct se_state *st, int app)
{
    const struct se_app *a = &st->apps[app];
    if (a->is_sd) {
        return NULL;
    }
    return se_applet_for_instance(a->elf.b, a->elf.len);
}

static bool app_lcs_selectable(const struct se_state *st, int app)
{
    const struct se_app *a = &st->apps[app];
    if (app == 0) {
        return true; /* the ISD's life cycle is the card's */
    }
    if ((a->lcs & GP_LCS_LOCKED_BIT) != 0) {
        return false;
    }
    return (a->lcs & GP_LCS_APP_SPECIFIC_BITS) == GP_LCS_APP_SPECIFIC_BITS; /* 0xxxx111 */
}

void se_applet_ctx_init(struct se_card *c, int app, int ch, struct se_applet_ctx *x)
{
    struct se_app *a = &c->st.apps[app];
    memset(x, 0, sizeof *x);
    x->card = c;
    x->app = app;
    x->channel = (uint8_t)ch;
    x->aid = a->aid.b;
    x->aid_len = a->aid.len;
    x->data = a->data;
    x->data_len = a->data_len;
    /* The scratch row of app, grown on the applet's first run. */
    if (app >= 0 && vol_reserve(c, (unsigned)app + 1u) == OT_OK) {
        x->vol = c->vol[app];
    } else {
        memset(c->vol_spare, 0, sizeof c->vol_spare);
        x->vol = c->vol_spare;
    }
}

ot_err se_applet_ppse_list(const struct se_applet_ctx *x, struct buf_wr *out)
{
    if (x == NULL || x->card == NULL || out == NULL) {
        return OT_E_ARG;
    }
    struct se_card *c = x->card;
    for (int i = 0; i < (int)c->st.napps; i++) {
        if (i == x->app || c->st.apps[i].is_sd || !app_lcs_selectable(&c->st, i)) {
            continue;
        }
        const struct se_applet_ops *ops = app_ops(&c->st, i);
        if (ops == NULL || ops->ppse_entry == NULL) {
            continue;
        }
        struct se_applet_ctx e;
        se_applet_ctx_init(c, i, x->channel, &e);
        (void)ops->ppse_entry(&e, out);
    }
    return out->err;
}

/* ---------------------------------------------------------------- card objects */

static void card_reset_volatile(struct se_card *c)
{
    for (int ch = 0; ch < (int)SE_MAX_CHANNELS; ch++) {
        struct se_chan *k = &c->chans[ch];
        chan_end_session(c, ch);
        k->open = false;
        k->selected = -1;
    }
    load_drop(c);
    if (c->vol != NULL) {
        memset(c->vol, 0, (size_t)c->vol_cap * SE_VOL_SIZE);
    }
}

/* Power off: an idle card keeps only its state; the runtime scratch and the
 * channels' buffers are allocated again by the next commands. */
static void buf_release(struct ot_buf *b)
{
    size_t max = b->max;
    ot_buf_free(b);
    ot_buf_init(b, max);
}

static void card_release_scratch(struct se_card *c)
{
    for (int ch = 0; ch < (int)SE_MAX_CHANNELS; ch++) {
        buf_release(&c->chans[ch].chain.data);
        buf_release(&c->chans[ch].pending);
    }
    buf_release(&c->load.data);
    if (c->rt_cmd != NULL) {
        ot_mem_wipe(c->rt_cmd, SE_RT_BUF);
    }
    free(c->rt_cmd);
    free(c->rt_resp);
    c->rt_cmd = NULL;
    c->rt_resp = NULL;
    if (c->vol != NULL) {
        ot_mem_wipe(c->vol, (size_t)c->vol_cap * SE_VOL_SIZE);
    }
    free(c->vol);
    c->vol = NULL;
    c->vol_cap = 0;
}

static ot_err card_scratch(struct se_card *c)
{
    if (c->rt_cmd == NULL) {
        c->rt_cmd = malloc(SE_RT_BUF);
    }
    if (c->rt_resp == NULL) {
        c->rt_resp = malloc(SE_RT_BUF);
    }
    return c->rt_cmd != NULL && c->rt_resp != NULL ? OT_OK : OT_E_NOMEM;
}

static ot_err card_alloc(struct se_card **out)
{
    struct se_card *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return OT_E_NOMEM;
    }
    ot_buf_init(&c->committed, 0);
    for (int ch = 0; ch < (int)SE_MAX_CHANNELS; ch++) {
        struct se_chan *k = &c->chans[ch];
        k->sc.sd = -1;
        k->selected = -1;
        k->perso_target = -1;
        k->status_pos = SIZE_MAX;
        ot_buf_init(&k->chain.data, SE_CHAIN_MAX);
        ot_buf_init(&k->pending, APDU_MAX_EXT_NE + 64u);
    }
    ot_buf_init(&c->load.data, SE_MAX_LOAD);
    *out = c;
    return OT_OK;
}

ot_err se_card_from_profile(const char *profile_json, size_t len, struct se_card **out)
{
    ot_err err = OT_OK;
    struct se_card *c = NULL;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (profile_json == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(card_alloc(&c));
    OT_TRY(se_profile_load(profile_json, len, &c->st));
    OT_TRY(se_profile_install_apps(c));
    OT_TRY(se_state_serialize(&c->st, &c->committed));
    c->dirty = false;
    *out = c;
    c = NULL;
out:
    se_card_free(c);
    return err;
}

ot_err se_card_from_profile_file(const char *path, struct se_card **out)
{
    ot_err err = OT_OK;
    FILE *f = NULL;
    char *text = NULL;
    size_t n = 0, cap = 0;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (path == NULL) {
        return OT_E_ARG;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        OT_LOG_DEBUG("cannot open profile %s", path);
        OT_FAIL(OT_E_NOT_FOUND);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= (size_t)4 * 1024 * 1024) {
                OT_FAIL(OT_E_LIMIT); /* profiles are small; refuse anything huge */
            }
            size_t ncap = cap == 0 ? 4096 : cap * 2;
            char *t = realloc(text, ncap);
            if (t == NULL) {
                OT_FAIL(OT_E_NOMEM);
            }
            text = t;
            cap = ncap;
        }
        size_t r = fread(text + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                OT_FAIL(OT_E_IO);
            }
            break;
        }
    }
    OT_TRY(se_card_from_profile(text, n, out));
out:
    if (f != NULL) {
        fclose(f);
    }
    free(text);
    return err;
}

ot_err se_card_open(const char *image_path, struct se_card **out)
{
    ot_err err = OT_OK;
    struct se_card *c = NULL;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (image_path == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(card_alloc(&c));
    OT_TRY(se_store_read(image_path, &c->committed));
    OT_TRY(se_state_deserialize(c->committed.data, c->committed.len, &c->st));
    c->image_path = strdup(image_path);
    if (c->image_path == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    *out = c;
    c = NULL;
out:
    se_card_free(c);
    return err;
}

ot_err se_card_save_as(struct se_card *card, const char *image_path)
{
    ot_err err = OT_OK;
    struct ot_buf img;
    char *p = NULL;

    if (card == NULL || image_path == NULL) {
        return OT_E_ARG;
    }
    ot_buf_init(&img, 0);
    OT_TRY(se_state_serialize(&card->st, &img));
    OT_TRY(se_store_write(image_path, img.data, img.len, &card->store_ops));
    p = strdup(image_path);
    if (p == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    free(card->image_path);
    card->image_path = p;
    p = NULL;
    ot_buf_reset(&card->committed);
    OT_TRY(ot_buf_append(&card->committed, img.data, img.len));
    card->dirty = false;
out:
    free(p);
    ot_buf_free(&img);
    return err;
}

void se_card_free(struct se_card *card)
{
    if (card == NULL) {
        return;
    }
    for (int ch = 0; ch < (int)SE_MAX_CHANNELS; ch++) {
        sc_free(&card->chans[ch].sc);
        ot_buf_free(&card->chans[ch].chain.data);
        ot_buf_free(&card->chans[ch].pending);
    }
    ot_buf_free(&card->load.data);
    ot_buf_free(&card->committed);
    /* rt_cmd is wiped after each command that deciphered into it; rt_resp
     * only ever holds answers the terminal received. */
    card_release_scratch(card);
    free(card->image_path);
    se_state_clear(&card->st); /* keys, applet data and parameters wiped */
    free(card);
}

bool se_card_is_mute(const struct se_card *card)
{
    return card != NULL && card->st.mute;
}

static bool card_restricted(const struct se_state *st)
{
    return st->card_lcs == GP_LCS_CARD_LOCKED || st->card_lcs == GP_LCS_CARD_TERMINATED;
}

/* Application implicitly selected on a channel that opens (GPCS 11.7.2: the
 * default-selected application, i.e. the Card Reset holder; only the Final
 * Application holder while the card is locked or terminated). */
static int default_app(const struct se_state *st)
{
    int app = card_restricted(st) ? se_priv_holder(st, GP_PRIV_FINAL_APPLICATION)
                                  : se_priv_holder(st, GP_PRIV_CARD_RESET);
    if (app < 0 || app >= (int)st->napps || !app_lcs_selectable(st, app)) {
        return st->napps > 0 && !card_restricted(st) ? 0 : -1;
    }
    return app;
}

/* Remembers the channels' indexes before a command (see persist()). */
static void snap_take(struct se_card *c)
{
    for (int i = 0; i < (int)SE_MAX_CHANNELS; i++) {
        c->rt_snap_sel[i] = c->chans[i].selected;
        c->rt_snap_perso[i] = c->chans[i].perso_target;
    }
    c->rt_snap_napps = c->st.napps;
}

/* Persists or rolls back the state after a command (se_priv.h rule): a dirty
 * state is committed when the command succeeded (9000, 61xx, 62xx, 63xx) and
 * rolled back otherwise. Returns the SW to send (6581 when the write failed,
 * with *db_err set). */
static uint16_t persist(struct se_card *c, uint16_t sw, ot_err *db_err)
{
    if (!c->dirty) {
        return sw;
    }
    if (sw_is_success_or_warning(sw)) {
        ot_err e = se_commit(c);
        if (e == OT_OK) {
            c->dirty = false;
            c->block_pending = false;
            return sw;
        }
        OT_LOG_ERROR("card image write failed (%s); command rolled back", ot_strerror(e));
        *db_err = OT_E_DB;
        sw = SW_MEMORY_FAILURE;
    }
    unsigned napps_before = c->st.napps;
    ot_err r = se_rollback(c);
    if (r != OT_OK) {
        OT_LOG_ERROR("rollback failed: %s", ot_strerror(r));
        *db_err = OT_E_DB;
    }
    c->dirty = false;
    /* An application removed or added by the rolled-back command moved the
     * channels' indexes: the ones from before the command fit the restored
     * state again. A secure channel whose SD index moved is dropped. */
    bool moved = c->rt_snap_napps != napps_before;
    for (int ch = 0; ch < (int)SE_MAX_CHANNELS; ch++) {
        struct se_chan *k = &c->chans[ch];
        if (moved && k->open) {
            if (k->sc.sd >= 0 && k->sc.sd != c->rt_snap_sel[ch]) {
                sc_free(&k->sc);
            }
            k->selected = c->rt_snap_sel[ch];
            k->perso_target = c->rt_snap_perso[ch];
        }
        if (k->selected >= (int)c->st.napps) {
            k->selected = -1;
        }
        if (k->perso_target >= (int)c->st.napps) {
            k->perso_target = -1;
        }
        if (k->sc.sd >= (int)c->st.napps) {
            sc_reset(&k->sc);
            k->sc.sd = -1;
        }
    }
    if (c->block_pending) {
        /* A card block that could not be written survives the rollback. */
        c->st.card_lcs = GP_LCS_CARD_TERMINATED;
        c->st.apps[0].lcs = GP_LCS_CARD_TERMINATED;
        c->dirty = true;
        if (se_commit(c) == OT_OK) {
            c->block_pending = false;
        } else {
            *db_err = OT_E_DB;
        }
    }
    return sw;
}

/* Calls the select op of the applet selected on ch (power on, channel open),
 * discarding its FCI. */
static void applet_implicit_select(struct se_card *c, int ch)
{
    int app = c->chans[ch].selected;
    if (app < 0 || c->st.apps[app].is_sd) {
        return;
    }
    const struct se_applet_ops *ops = app_ops(&c->st, app);
    if (ops == NULL || ops->select == NULL) {
        return;
    }
    struct se_applet_ctx x;
    struct buf_wr w;
    snap_take(c);
    se_applet_ctx_init(c, app, ch, &x);
    buf_wr_init(&w, c->rt_resp, SE_RT_BUF);
    uint16_t sw = ops->select(&x, &w);
    ot_err dbe = OT_OK;
    (void)persist(c, sw, &dbe);
}

ot_err se_card_power_on(struct se_card *card, uint8_t *atr, size_t *atr_len)
{
    if (card == NULL || atr_len == NULL || (atr == NULL && *atr_len > 0)) {
        return OT_E_ARG;
    }
    if (card->st.mute) {
        card->powered = false;
        return OT_E_NO_CARD;
    }
    const uint8_t *src = card->st.atr;
    size_t n = card->st.atr_len;
    uint8_t def[sizeof default_atr_body + 1];
    if (n == 0) {
        uint8_t tck = 0;
        memcpy(def, default_atr_body, sizeof default_atr_body);
        for (size_t i = 1; i < sizeof default_atr_body; i++) {
            tck ^= default_atr_body[i];
        }
        def[sizeof default_atr_body] = tck;
        src = def;
        n = sizeof def;
    }
    if (*atr_len < n) {
        *atr_len = n;
        return OT_E_BUF_SMALL;
    }
    card_reset_volatile(card);
    card->chans[0].open = true;
    card->chans[0].selected = default_app(&card->st);
    card->powered = true;
    applet_implicit_select(card, 0);
    memcpy(atr, src, n);
    *atr_len = n;
    return OT_OK;
}

void se_card_power_off(struct se_card *card)
{
    if (card == NULL) {
        return;
    }
    card_reset_volatile(card);
    card_release_scratch(card);
    card->powered = false;
}

/* ---------------------------------------------------------------- responses */

/* One command's outcome, before transport-level segmentation. */
struct reply {
    const uint8_t *data; /* response data (secured form when wrapped) */
    size_t len;
    uint16_t sw;
    bool allow_6c; /* a plain case-2 command with no side effect: 6Cxx may be answered */
};

/* Writes r to resp: data up to the command's Le (256 for short commands
 * without Le, 65536 for extended ones) and the caller's capacity; more data
 * waits for GET RESPONSE (61xx, ISO 7816-4 5.3.4). A short case-2 command
 * whose Le is too small for an answer that fits 256 bytes gets 6Cxx. */
static void emit(struct se_card *c, int ch, const struct apdu *a, const struct reply *r,
                 uint8_t *resp, size_t *resp_len)
{
    struct se_chan *k = &c->chans[ch];
    size_t limit = a->ne > 0 ? a->ne : (a->extended ? APDU_MAX_EXT_NE : APDU_MAX_SHORT_NE);
    if (limit > *resp_len - 2) {
        limit = *resp_len - 2;
    }
    if (r->len <= limit) {
        if (r->len > 0) {
            memmove(resp, r->data, r->len);
        }
        resp[r->len] = sw1(r->sw);
        resp[r->len + 1] = sw2(r->sw);
        *resp_len = r->len + 2;
        return;
    }
    if (r->allow_6c && !a->extended && a->ne > 0 && a->nc == 0 && r->len <= APDU_MAX_SHORT_NE
        && *resp_len - 2 >= r->len) {
        uint16_t sw = (uint16_t)(SW_WRONG_LE | (r->len & 0xFFu));
        resp[0] = sw1(sw);
        resp[1] = sw2(sw);
        *resp_len = 2;
        return;
    }
    pending_clear(k);
    if (ot_buf_append(&k->pending, r->data + limit, r->len - limit) != OT_OK) {
        resp[0] = sw1(SW_NO_DIAGNOSIS);
        resp[1] = sw2(SW_NO_DIAGNOSIS);
        *resp_len = 2;
        return;
    }
    k->pending_sw = r->sw;
    size_t rest = r->len - limit;
    memmove(resp, r->data, limit);
    resp[limit] = sw1(SW_MORE_DATA);
    resp[limit + 1] = (uint8_t)(rest >= 256 ? 0 : rest);
    *resp_len = limit + 2;
}

static void emit_sw(uint16_t sw, uint8_t *resp, size_t *resp_len)
{
    resp[0] = sw1(sw);
    resp[1] = sw2(sw);
    *resp_len = 2;
}

/* GET RESPONSE (ISO 7816-4 11.6.1): the next part of the pending answer. */
static void do_get_response(struct se_card *c, int ch, const struct apdu *a, uint8_t *resp,
                            size_t *resp_len)
{
    struct se_chan *k = &c->chans[ch];
    if (a->p1 != 0 || a->p2 != 0) {
        emit_sw(SW_P1P2, resp, resp_len);
        return;
    }
    if (a->nc != 0) {
        emit_sw(SW_WRONG_LENGTH, resp, resp_len);
        return;
    }
    size_t left = k->pending.len - k->pending_off;
    if (left == 0) {
        emit_sw(SW_CONDITIONS, resp, resp_len);
        return;
    }
    size_t want = a->ne > 0 ? a->ne : APDU_MAX_SHORT_NE;
    if (want > *resp_len - 2) {
        want = *resp_len - 2;
    }
    size_t n = left < want ? left : want;
    memcpy(resp, k->pending.data + k->pending_off, n);
    k->pending_off += n;
    left -= n;
    uint16_t sw = k->pending_sw;
    if (left > 0) {
        sw = (uint16_t)(SW_MORE_DATA | (left >= 256 ? 0 : left));
    } else {
        pending_clear(k);
    }
    resp[n] = sw1(sw);
    resp[n + 1] = sw2(sw);
    *resp_len = n + 2;
}

/* ---------------------------------------------------------------- channels, selection */

static uint16_t do_manage_channel(struct se_card *c, int ch, const struct apdu *a,
                                  struct buf_wr *out)
{
    if (a->nc != 0) {
        return SW_WRONG_LENGTH;
    }
    if (a->p1 == MANAGE_CHANNEL_OPEN) {
        int target = -1;
        if (a->p2 == 0) {
            for (int i = 1; i < (int)SE_MAX_CHANNELS; i++) {
                if (!c->chans[i].open) {
                    target = i;
                    break;
                }
            }
            if (target < 0) {
                return SW_FUNC_NOT_SUPP; /* no channel left */
            }
        } else {
            if (a->p2 > APDU_MAX_CHANNEL) {
                return SW_P1P2;
            }
            if (a->p2 >= SE_MAX_CHANNELS) {
                return SW_CHANNEL;
            }
            if (c->chans[a->p2].open) {
                return SW_P1P2;
            }
            target = a->p2;
        }
        struct se_chan *k = &c->chans[target];
        chan_end_session(c, target);
        k->open = true;
        /* ISO 7816-4 5.4.2: opened from the basic channel, the new channel
         * gets the default application; from another channel, the
         * application selected there. */
        k->selected = ch == 0 ? default_app(&c->st) : c->chans[ch].selected;
        if (a->p2 == 0) {
            buf_wr_u8(out, (uint8_t)target);
        }
        applet_implicit_select(c, target);
        return SW_OK;
    }
    if (a->p1 == MANAGE_CHANNEL_CLOSE) {
        int target = a->p2 == 0 ? ch : a->p2;
        if (target == 0) {
            return SW_FUNC_NOT_SUPP; /* the basic channel never closes */
        }
        if (target > (int)APDU_MAX_CHANNEL) {
            return SW_P1P2;
        }
        if (target >= (int)SE_MAX_CHANNELS) {
            return SW_CHANNEL;
        }
        if (!c->chans[target].open) {
            return SW_WARN_NONE; /* already closed */
        }
        chan_deselect(c, target);
        c->chans[target].open = false;
        return SW_OK;
    }
    return SW_P1P2;
}

static bool aid_prefix(const struct se_aid *aid, const uint8_t *p, size_t n)
{
    return aid->len >= n && memcmp(aid->b, p, n) == 0;
}

static bool selectable_now(const struct se_state *st, int app)
{
    if (!app_lcs_selectable(st, app)) {
        return false;
    }
    if (card_restricted(st)) {
        return app == se_priv_holder(st, GP_PRIV_FINAL_APPLICATION);
    }
    return true;
}

/* Security domain FCI (GPCS Table 11-82): 6F { 84 AID, A5 { 73 {SD management
 * data = card recognition data}, 9F65 max command data } }. */
static void sd_fci(const struct se_state *st, int sd, struct buf_wr *w)
{
    static const uint8_t gp_oid[] = {0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B}; /* 1.2.840.114283 */
    const struct se_app *a = &st->apps[sd];
    uint8_t m[64];
    struct buf_wr mw;
    buf_wr_init(&mw, m, sizeof m);
    /* 06 OID {gp 1}: card recognition data / SD management data */
    buf_wr_u8(&mw, 0x06);
    buf_wr_u8(&mw, sizeof gp_oid + 1);
    buf_wr_bytes(&mw, gp_oid, sizeof gp_oid);
    buf_wr_u8(&mw, 0x01);
    /* 60 { 06 {gp 2 2 3 1} }: card management type and version GP 2.3.1 */
    buf_wr_u8(&mw, 0x60);
    buf_wr_u8(&mw, 2 + sizeof gp_oid + 4);
    buf_wr_u8(&mw, 0x06);
    buf_wr_u8(&mw, sizeof gp_oid + 4);
    buf_wr_bytes(&mw, gp_oid, sizeof gp_oid);
    static const uint8_t ver[] = {0x02, 0x02, 0x03, 0x01};
    buf_wr_bytes(&mw, ver, sizeof ver);
    /* 63 { 06 {gp 3} }: card identification scheme */
    buf_wr_u8(&mw, 0x63);
    buf_wr_u8(&mw, 2 + sizeof gp_oid + 1);
    buf_wr_u8(&mw, 0x06);
    buf_wr_u8(&mw, sizeof gp_oid + 1);
    buf_wr_bytes(&mw, gp_oid, sizeof gp_oid);
    buf_wr_u8(&mw, 0x03);
    /* 64 { 06 {gp 4 scp i} }: secure channel protocol of this SD */
    buf_wr_u8(&mw, 0x64);
    buf_wr_u8(&mw, 2 + sizeof gp_oid + 3);
    buf_wr_u8(&mw, 0x06);
    buf_wr_u8(&mw, sizeof gp_oid + 3);
    buf_wr_bytes(&mw, gp_oid, sizeof gp_oid);
    buf_wr_u8(&mw, 0x04);
    buf_wr_u8(&mw, a->sd_data.scp);
    buf_wr_u8(&mw, a->sd_data.scp_i);
    size_t ml = mw.len;

    size_t a5 = 2 + ml + 4; /* 73 L m, 9F65 01 FF */
    size_t f = 2 + a->aid.len + 2 + a5;
    buf_wr_u8(w, 0x6F);
    buf_wr_u8(w, (uint8_t)f);
    buf_wr_u8(w, 0x84);
    buf_wr_u8(w, a->aid.len);
    buf_wr_bytes(w, a->aid.b, a->aid.len);
    buf_wr_u8(w, 0xA5);
    buf_wr_u8(w, (uint8_t)a5);
    buf_wr_u8(w, 0x73);
    buf_wr_u8(w, (uint8_t)ml);
    buf_wr_bytes(w, m, ml);
    buf_wr_u8(w, 0x9F);
    buf_wr_u8(w, 0x65);
    buf_wr_u8(w, 0x01);
    buf_wr_u8(w, GP_MAX_DATA);
}

/* SELECT by DF name (ISO 7816-4 11.2.2, GPCS 11.9). */
static uint16_t do_select(struct se_card *c, int ch, const struct apdu *a, struct buf_wr *out)
{
    struct se_state *st = &c->st;
    struct se_chan *k = &c->chans[ch];
    if (a->p2 != GP_SELECT_P2_FIRST && a->p2 != GP_SELECT_P2_NEXT) {
        return SW_P1P2;
    }
    if (a->nc > SE_AID_MAX) {
        return SW_NOT_FOUND;
    }
    int found = -1;
    bool restricted_hit = false;
    if (a->nc == 0) {
        /* GPCS 11.9.2.1: SELECT without data selects the ISD. */
        if (a->p2 == GP_SELECT_P2_FIRST && st->napps > 0) {
            if (selectable_now(st, 0)) {
                found = 0;
            } else {
                restricted_hit = card_restricted(st);
            }
        }
    } else {
        int start = 0;
        if (a->p2 == GP_SELECT_P2_NEXT) {
            start = k->selected >= 0 && aid_prefix(&st->apps[k->selected].aid, a->data, a->nc)
                        ? k->selected + 1
                        : 0;
        }
        for (int i = start; i < (int)st->napps; i++) {
            if (!aid_prefix(&st->apps[i].aid, a->data, a->nc)) {
                continue;
            }
            if (!app_lcs_selectable(st, i)) {
                continue;
            }
            if (!selectable_now(st, i)) {
                restricted_hit = true;
                continue;
            }
            if (!st->apps[i].is_sd && app_ops(st, i) == NULL) {
                continue; /* no module behind it: nothing can answer */
            }
            found = i;
            break;
        }
    }
    if (found < 0) {
        return restricted_hit ? SW_FUNC_NOT_SUPP : SW_NOT_FOUND;
    }
    chan_deselect(c, ch);
    k->selected = found;
    uint16_t sw = SW_OK;
    if (st->apps[found].is_sd || found == 0) {
        sd_fci(st, found, out);
        if (st->card_lcs == GP_LCS_CARD_LOCKED) {
            sw = SW_WARN_LOCKED;
        }
    } else {
        const struct se_applet_ops *ops = app_ops(st, found);
        struct se_applet_ctx x;
        se_applet_ctx_init(c, found, ch, &x);
        sw = ops->select != NULL ? ops->select(&x, out) : SW_OK;
        if (!sw_is_success_or_warning(sw)) {
            k->selected = -1; /* the applet refused the selection */
            vol_clear(c, found);
        } else if (st->card_lcs == GP_LCS_CARD_LOCKED) {
            sw = SW_WARN_LOCKED;
        }
    }
    if (out->err != OT_OK) {
        return SW_NO_DIAGNOSIS;
    }
    return sw;
}

/* ---------------------------------------------------------------- secure channels */

/* Picks the SD's static key set for INITIALIZE UPDATE: KVN p1, or the first
 * complete set when p1 is 0. A set is ENC/MAC/DEK (KID 1/2/3) of the SD's
 * protocol's key type and one length. Returns the KVN or -1. */
static int pick_keyset(const struct se_sd *sd, uint8_t kvn, uint8_t type, uint8_t want_len,
                       const struct se_key *out[3])
{
    for (unsigned i = 0; i < sd->nkeys; i++) {
        uint8_t v = sd->keys[i].kvn;
        if (kvn != 0 && v != kvn) {
            continue;
        }
        const struct se_key *ks[3] = {NULL, NULL, NULL};
        for (unsigned j = 0; j < sd->nkeys; j++) {
            const struct se_key *k = &sd->keys[j];
            if (k->kvn == v && k->kid >= 1 && k->kid <= 3) {
                ks[k->kid - 1] = k;
            }
        }
        bool ok = true;
        for (int j = 0; j < 3; j++) {
            if (ks[j] == NULL || ks[j]->type != type || ks[j]->len != ks[0]->len
                || (want_len != 0 && ks[j]->len != want_len)) {
                ok = false;
            }
        }
        if (ok && type == SE_KEY_AES && ks[0]->len != 16 && ks[0]->len != 24 && ks[0]->len != 32) {
            ok = false;
        }
        if (ok) {
            out[0] = ks[0];
            out[1] = ks[1];
            out[2] = ks[2];
            return v;
        }
        if (kvn != 0) {
            return -1;
        }
    }
    return -1;
}

static struct se_seq *seq_slot(struct se_sd *sd, uint8_t kvn, bool create)
{
    for (unsigned i = 0; i < sd->nseqs; i++) {
        if (sd->seqs[i].kvn == kvn) {
            return &sd->seqs[i];
        }
    }
    if (!create) {
        return NULL;
    }
    if (sd->nseqs < SE_MAX_SEQS) {
        struct se_seq *s = &sd->seqs[sd->nseqs++];
        s->kvn = kvn;
        s->value = 0;
        return s;
    }
    return NULL;
}

static uint16_t sw_of_sc_err(ot_err e)
{
    switch (e) {
    case OT_E_SEQ_EXHAUSTED:
        return SW_CONDITIONS;
    case OT_E_APDU_LEN:
    case OT_E_TRUNCATED:
        return SW_WRONG_LENGTH;
    case OT_E_APDU:
        return SW_P1P2;
    default:
        return SW_WRONG_DATA;
    }
}

/* INITIALIZE UPDATE (GPCS E.5.1 / Amd D 7.1). */
static uint16_t do_initialize_update(struct se_card *c, int ch, int sd, const uint8_t *cmd,
                                     size_t n, const struct apdu *a, struct buf_wr *out)
{
    struct se_chan *k = &c->chans[ch];
    struct se_app *app = &c->st.apps[sd];
    struct se_sd *sdd = &app->sd_data;
    const struct se_key *ks[3];
    uint8_t scp = sdd->scp;
    uint16_t sw = SW_OK;

    sc_reset(&k->sc);
    if (scp != 0x02 && scp != 0x03) {
        return SW_REF_NOT_FOUND;
    }
    int kvn = pick_keyset(sdd, a->p1, scp == 0x03 ? SE_KEY_AES : SE_KEY_DES,
                          scp == 0x02 ? SCP02_KEY_LEN : 0, ks);
    if (kvn < 0) {
        return SW_REF_NOT_FOUND;
    }
    if (k->sc.sd != sd || k->sc.scp != scp) {
        sc_free(&k->sc);
        ot_err e;
        if (scp == 0x03) {
            struct scp03_card_cfg cfg = {
                .i_param = sdd->scp_i, .sd_aid = app->aid.b, .sd_aid_len = app->aid.len};
            memcpy(cfg.kdd, c->st.kdd, SCP03_KDD_LEN);
            e = scp03_card_new(&cfg, &k->sc.scp03);
        } else {
            struct scp02_card_cfg cfg = {
                .i_param = sdd->scp_i, .sd_aid = app->aid.b, .sd_aid_len = app->aid.len};
            memcpy(cfg.kdd, c->st.kdd, SCP02_KDD_LEN);
            e = scp02_card_new(&cfg, &k->sc.scp02);
        }
        if (e != OT_OK) {
            OT_LOG_WARN("SD secure channel setup failed: %s", ot_strerror(e));
            sc_free(&k->sc);
            return SW_REF_NOT_FOUND;
        }
        k->sc.sd = sd;
        k->sc.scp = scp;
    }
    uint8_t r[64];
    size_t rl = sizeof r;
    struct se_seq *slot = seq_slot(sdd, (uint8_t)kvn, false);
    ot_err e;
    if (scp == 0x03) {
        struct scp03_keyset keys = {.kvn = (uint8_t)kvn, .key_len = ks[0]->len};
        memcpy(keys.enc, ks[0]->val, ks[0]->len);
        memcpy(keys.mac, ks[1]->val, ks[1]->len);
        memcpy(keys.dek, ks[2]->val, ks[2]->len);
        uint32_t seq = slot != NULL ? slot->value : 0;
        uint32_t before = seq;
        e = scp03_card_initialize_update(k->sc.scp03, &keys, &seq, cmd, n, r, &rl);
        ot_mem_wipe(&keys, sizeof keys);
        if (e == OT_OK && seq != before) {
            slot = seq_slot(sdd, (uint8_t)kvn, true);
            if (slot == NULL) {
                scp03_card_reset(k->sc.scp03);
                return SW_CONDITIONS; /* no room to keep the counter */
            }
            slot->value = seq;
            se_mark_dirty(c);
        }
    } else {
        struct scp02_keyset keys = {.kvn = (uint8_t)kvn};
        memcpy(keys.enc, ks[0]->val, SCP02_KEY_LEN);
        memcpy(keys.mac, ks[1]->val, SCP02_KEY_LEN);
        memcpy(keys.dek, ks[2]->val, SCP02_KEY_LEN);
        uint16_t seq = slot != NULL ? (uint16_t)slot->value : 0;
        e = scp02_card_initialize_update(k->sc.scp02, &keys, &seq, cmd, n, r, &rl);
        ot_mem_wipe(&keys, sizeof keys);
    }
    if (e != OT_OK) {
        sw = sw_of_sc_err(e);
        OT_LOG_DEBUG("INITIALIZE UPDATE refused: %s", ot_strerror(e));
        return sw;
    }
    k->sc.active = true;
    k->sc.kvn = (uint8_t)kvn;
    buf_wr_bytes(out, r, rl);
    ot_mem_wipe(r, sizeof r);
    return SW_OK;
}

/* EXTERNAL AUTHENTICATE (GPCS E.5.2 / Amd D 7.2). */
static uint16_t do_external_authenticate(struct se_card *c, int ch, int sd, const uint8_t *cmd,
                                         size_t n, ot_err *db_err)
{
    struct se_chan *k = &c->chans[ch];
    if (!k->sc.active || k->sc.sd != sd || !sc_pending(&k->sc)) {
        sc_reset(&k->sc);
        return SW_CONDITIONS; /* no INITIALIZE UPDATE before */
    }
    ot_err e;
    if (k->sc.scp == 0x03) {
        e = scp03_card_external_authenticate(k->sc.scp03, cmd, n);
    } else {
        e = scp02_card_external_authenticate(k->sc.scp02, cmd, n);
        /* GPCS E.4.1: the counter moved once the first C-MAC verified,
         * whatever happens next: store it now. */
        struct se_sd *sdd = &c->st.apps[sd].sd_data;
        struct se_seq *slot = seq_slot(sdd, k->sc.kvn, false);
        uint16_t now = scp02_card_seq(k->sc.scp02);
        uint32_t old = slot != NULL ? slot->value : 0;
        if (now != old) {
            slot = seq_slot(sdd, k->sc.kvn, true);
            if (slot != NULL) {
                slot->value = now;
                se_mark_dirty(c);
                (void)persist(c, SW_OK, db_err);
            }
        }
    }
    switch (e) {
    case OT_OK:
        OT_LOG_DEBUG("secure channel open on channel %d, level %02X", ch, sc_level(&k->sc));
        return SW_OK;
    case OT_E_HOST_CRYPTOGRAM:
        return SW_AUTH_FAILED;
    case OT_E_CMAC:
        return SW_SECURITY;
    case OT_E_APDU_LEN:
        return SW_WRONG_LENGTH;
    case OT_E_SEC_LEVEL:
        return SW_P1P2;
    default:
        return SW_SECURITY;
    }
}

/* ---------------------------------------------------------------- command routing */

static bool needs_secure_channel(uint8_t ins)
{
    switch (ins) {
    case GP_INS_INSTALL:
    case GP_INS_LOAD:
    case GP_INS_DELETE:
    case GP_INS_GET_STATUS:
    case GP_INS_SET_STATUS:
    case GP_INS_PUT_KEY:
    case GP_INS_STORE_DATA:
    case SE_INS_DESTROY:
        return true;
    default:
        return false;
    }
}

static bool ins_chains(uint8_t ins)
{
    return ins == GP_INS_INSTALL || ins == GP_INS_DELETE || ins == GP_INS_PUT_KEY;
}

/* Commands an SD still processes in TERMINATED (GPCS 5.1.1.5: GET DATA; the
 * secure channel is kept so the destroy command can reach the ISD). */
static bool allowed_terminated(uint8_t ins)
{
    return ins == GP_INS_GET_DATA || ins == GP_INS_GET_DATA_ODD || ins == GP_INS_INITIALIZE_UPDATE
           || ins == GP_INS_EXTERNAL_AUTH || ins == SE_INS_DESTROY;
}

static uint16_t call_handler(struct se_card *c, int ch, int sd, const struct apdu *p,
                             struct buf_wr *out)
{
    struct se_chan *k = &c->chans[ch];
    bool auth = sc_open(&k->sc) && k->sc.sd == sd;
    struct se_cmd x = {
        .card = c,
        .chan = ch,
        .sd = sd,
        .a = p,
        .sec_level = auth ? sc_level(&k->sc) : 0,
        .authenticated = auth,
        .out = out,
    };
    bool gp = apdu_cla_is_proprietary(p->cla);
    if (needs_secure_channel(p->ins) && !gp) {
        return SW_CLA_UNSUPPORTED;
    }
    if (needs_secure_channel(p->ins) && !auth) {
        return SW_SECURITY;
    }
    switch (p->ins) {
    case GP_INS_INSTALL:
        return se_gp_install(&x);
    case GP_INS_LOAD:
        return se_gp_load(&x);
    case GP_INS_DELETE:
        return se_gp_delete(&x);
    case GP_INS_GET_STATUS:
        return se_gp_get_status(&x);
    case GP_INS_SET_STATUS:
        return se_gp_set_status(&x);
    case GP_INS_PUT_KEY:
        return se_gp_put_key(&x);
    case GP_INS_STORE_DATA:
        return se_gp_store_data(&x);
    case GP_INS_GET_DATA:
    case GP_INS_GET_DATA_ODD:
        return se_gp_get_data(&x);
    case SE_INS_DESTROY:
        return se_gp_destroy(&x);
    default:
        return SW_INS_UNSUPPORTED;
    }
}

/* Builds the unsegmented command of a finished GP chain (GPCS 11.1.5) in
 * c->rt_cmd: the header of the last segment, all the data, a short Lc when it
 * fits (else the 3-byte form the C-MAC was computed over) and Le when the
 * last segment had one. */
static ot_err chain_build(struct se_card *c, struct se_chain *chn, const struct apdu *last,
                          size_t *len)
{
    struct apdu v = {
        .cla = last->cla,
        .ins = last->ins,
        .p1 = last->p1,
        .p2 = last->p2,
        .data = chn->data.data,
        .nc = chn->data.len,
        .ne = last->ne > 0 ? (chn->data.len > APDU_MAX_SHORT_NC ? APDU_MAX_EXT_NE : last->ne) : 0,
    };
    if (v.nc > APDU_MAX_EXT_NC) {
        return OT_E_LIMIT;
    }
    *len = SE_RT_BUF;
    return apdu_encode(&v, c->rt_cmd, len);
}

/* A command for the security domain selected on ch. Returns the reply in
 * *r (data in c->rt_resp). */
static void sd_command_run(struct se_card *c, int ch, int sd, const uint8_t *cmd, size_t n,
                           const struct apdu *a, struct reply *r, ot_err *db_err, size_t *used)
{
    struct se_chan *k = &c->chans[ch];
    struct se_sc *sc = &k->sc;
    struct buf_wr out;
    uint16_t sw = SW_OK;
    bool gp = apdu_cla_is_proprietary(a->cla);
    bool sm = apdu_cla_has_sm(a->cla);
    bool wrapped = false;
    const uint8_t *pcmd = cmd;
    size_t plen = n;
    struct apdu p = *a;

    buf_wr_init(&out, c->rt_resp, APDU_MAX_EXT_NE);
    r->data = c->rt_resp;
    r->len = 0;
    r->allow_6c = false;

    if (c->st.card_lcs == GP_LCS_CARD_TERMINATED && !allowed_terminated(a->ins)) {
        chain_abort(&k->chain);
        sw = SW_FUNC_NOT_SUPP;
        goto done;
    }

    /* GP chaining (GPCS 11.1.5): segments of one command share the header
     * except P1 b8; security was applied to the whole command. */
    if (k->chain.active) {
        struct se_chain *chn = &k->chain;
        if (!gp || a->cla != chn->cla || a->ins != chn->ins || a->p2 != chn->p2
            || (a->p1 & 0x7Fu) != chn->p1) {
            chain_abort(chn);
            sw = SW_CONDITIONS;
            goto done;
        }
        if (ot_buf_append(&chn->data, a->data, a->nc) != OT_OK) {
            chain_abort(chn);
            sw = SW_P1P2; /* chain too long */
            goto done;
        }
        if ((a->p1 & GP_P1_MORE) != 0) {
            sw = SW_OK; /* intermediate segment: no data, no R-MAC */
            goto done;
        }
        size_t vl = 0;
        if (chain_build(c, chn, a, &vl) != OT_OK) {
            chain_abort(chn);
            sw = SW_P1P2;
            goto done;
        }
        chain_abort(chn);
        /* The reassembled command continues below as if it had come whole,
         * from rt_resp (unwrap writes the plain form to rt_cmd). */
        *used = vl;
        memcpy(c->rt_resp, c->rt_cmd, vl);
        pcmd = c->rt_resp;
        plen = vl;
        if (apdu_parse(pcmd, plen, &p) != OT_OK) {
            sw = SW_WRONG_LENGTH;
            goto done;
        }
    } else if (gp && ins_chains(a->ins) && (a->p1 & GP_P1_MORE) != 0) {
        if (!sc_open(sc) || sc->sd != sd) {
            sw = SW_SECURITY;
            goto done;
        }
        struct se_chain *chn = &k->chain;
        ot_buf_reset(&chn->data);
        if (ot_buf_append(&chn->data, a->data, a->nc) != OT_OK) {
            sw = SW_P1P2;
            goto done;
        }
        chn->active = true;
        chn->cla = a->cla;
        chn->ins = a->ins;
        chn->p1 = (uint8_t)(a->p1 & 0x7Fu);
        chn->p2 = a->p2;
        sw = SW_OK;
        goto done;
    }

    switch (p.ins) {
    case GP_INS_INITIALIZE_UPDATE:
        if (!gp || sm) {
            sw = SW_CLA_UNSUPPORTED;
            goto done;
        }
        sw = do_initialize_update(c, ch, sd, pcmd, plen, &p, &out);
        goto done;
    case GP_INS_EXTERNAL_AUTH:
        if (!gp) {
            sw = SW_CLA_UNSUPPORTED;
            goto done;
        }
        sw = do_external_authenticate(c, ch, sd, pcmd, plen, db_err);
        goto done;
    default:
        break;
    }

    if (sc->active && (sc->sd != sd || !sc_open(sc))) {
        /* Amd D 5.4 / GPCS E.4.2: a failed or half-open session rejects
         * everything until a new INITIALIZE UPDATE or a reselection. */
        sc_reset(sc);
        sc->active = true;
        sw = SW_SECURITY;
        goto done;
    }
    if (sc->active) {
        /* pcmd is the caller's buffer or rt_resp (a reassembled chain); the
         * plain command goes to rt_cmd, the handler writes to rt_resp. */
        size_t ul = SE_RT_BUF;
        *used = plen;
        ot_err e = sc->scp == 0x03 ? scp03_card_unwrap(sc->scp03, pcmd, plen, c->rt_cmd, &ul)
                                   : scp02_card_unwrap(sc->scp02, pcmd, plen, c->rt_cmd, &ul);
        if (e != OT_OK) {
            OT_LOG_DEBUG("secured command refused on channel %d: %s", ch, ot_strerror(e));
            sw = SW_SECURITY; /* the library aborted the session */
            goto done;
        }
        if (apdu_parse(c->rt_cmd, ul, &p) != OT_OK) {
            sw = SW_WRONG_LENGTH;
            goto done;
        }
        wrapped = true;
    } else if (sm) {
        sw = SW_SECURITY; /* secure messaging without a secure channel */
        goto done;
    } else if (pcmd == c->rt_resp) {
        memcpy(c->rt_cmd, pcmd, plen);
        *used = plen;
        if (apdu_parse(c->rt_cmd, plen, &p) != OT_OK) {
            sw = SW_WRONG_LENGTH;
            goto done;
        }
    }

    if (!gp && p.ins != GP_INS_GET_DATA && p.ins != GP_INS_GET_DATA_ODD) {
        sw = needs_secure_channel(p.ins) ? SW_CLA_UNSUPPORTED : SW_INS_UNSUPPORTED;
    } else {
        sw = call_handler(c, ch, sd, &p, &out);
    }
    if (out.err != OT_OK) {
        sw = SW_NO_DIAGNOSIS;
        out.len = 0;
    }
    r->len = out.len;
    r->allow_6c = !wrapped && !c->dirty;
    sw = persist(c, sw, db_err);
    if (!sw_is_success_or_warning(sw)) {
        r->len = 0;
    }
    if (wrapped) {
        size_t wl = SE_RT_BUF;
        ot_err e = sc->scp == 0x03
                       ? scp03_card_wrap(sc->scp03, c->rt_resp, r->len, sw, c->rt_resp, &wl)
                       : scp02_card_wrap(sc->scp02, c->rt_resp, r->len, sw, c->rt_resp, &wl);
        if (e != OT_OK || wl < 2) {
            OT_LOG_WARN("response wrap failed: %s", ot_strerror(e));
            r->len = 0;
            r->sw = SW_NO_DIAGNOSIS;
            return;
        }
        r->len = wl - 2;
        r->sw = ot_get_u16be(c->rt_resp + wl - 2);
        return;
    }
    r->sw = sw;
    return;

done:
    r->len = sw_is_success_or_warning(sw) && out.err == OT_OK ? out.len : 0;
    r->sw = persist(c, sw, db_err);
    if (!sw_is_success_or_warning(r->sw)) {
        r->len = 0;
    }
}

/* A command for the SD selected on ch; the plain (deciphered) command left
 * in rt_cmd is wiped afterwards. */
static void sd_command(struct se_card *c, int ch, int sd, const uint8_t *cmd, size_t n,
                       const struct apdu *a, struct reply *r, ot_err *db_err)
{
    size_t used = 0;
    sd_command_run(c, ch, sd, cmd, n, a, r, db_err, &used);
    if (used > 0) {
        ot_mem_wipe(c->rt_cmd, used < SE_RT_BUF ? used : SE_RT_BUF);
    }
}

static void applet_command(struct se_card *c, int ch, int app, const struct apdu *a,
                           struct reply *r, ot_err *db_err)
{
    struct buf_wr out;
    buf_wr_init(&out, c->rt_resp, APDU_MAX_EXT_NE);
    r->data = c->rt_resp;
    r->len = 0;
    const struct se_applet_ops *ops = app_ops(&c->st, app);
    uint16_t sw;
    if (ops == NULL || ops->process == NULL) {
        sw = SW_INS_UNSUPPORTED;
    } else {
        struct se_applet_ctx x;
        se_applet_ctx_init(c, app, ch, &x);
        sw = ops->process(&x, a, &out);
        if (out.err != OT_OK) {
            sw = SW_NO_DIAGNOSIS;
            out.len = 0;
        }
    }
    bool changed = c->dirty;
    r->sw = persist(c, sw, db_err);
    r->len = r->sw == sw ? out.len : 0;
    r->allow_6c = !changed;
}

ot_err se_card_transmit(struct se_card *card, const uint8_t *cmd, size_t n, uint8_t *resp,
                        size_t *resp_len)
{
    if (card == NULL || resp == NULL || resp_len == NULL || (cmd == NULL && n > 0)) {
        return OT_E_ARG;
    }
    if (card->st.mute || !card->powered) {
        return OT_E_NO_CARD;
    }
    if (*resp_len < 2) {
        *resp_len = 2;
        return OT_E_BUF_SMALL;
    }
    if (card_scratch(card) != OT_OK) {
        return OT_E_NOMEM;
    }
    struct apdu a;
    uint8_t chb = 0;
    ot_err pe = apdu_parse(cmd, n, &a);
    if (pe != OT_OK) {
        bool bad_cla = n >= 1 && apdu_cla_channel(cmd[0], &chb) != OT_OK;
        emit_sw(bad_cla ? SW_CLA_UNSUPPORTED : SW_WRONG_LENGTH, resp, resp_len);
        return OT_OK;
    }
    if (apdu_cla_channel(a.cla, &chb) != OT_OK) {
        emit_sw(SW_CLA_UNSUPPORTED, resp, resp_len);
        return OT_OK;
    }
    if (chb >= SE_MAX_CHANNELS || !card->chans[chb].open) {
        emit_sw(SW_CHANNEL, resp, resp_len);
        return OT_OK;
    }
    int ch = chb;
    struct se_chan *k = &card->chans[ch];
    bool iso = !apdu_cla_is_proprietary(a.cla);

    if (iso && a.ins == GP_INS_GET_RESPONSE && !apdu_cla_has_sm(a.cla)) {
        do_get_response(card, ch, &a, resp, resp_len);
        return OT_OK;
    }
    pending_clear(k);
    if ((a.cla & CLA_ISO_CHAINING) != 0) {
        emit_sw(SW_CHAINING, resp, resp_len);
        return OT_OK;
    }

    ot_err db_err = OT_OK;
    struct reply r = {.data = card->rt_resp};
    snap_take(card);
    struct buf_wr out;
    buf_wr_init(&out, card->rt_resp, APDU_MAX_EXT_NE);
    if (iso && a.ins == ISO_INS_MANAGE_CHANNEL) {
        chain_abort(&k->chain);
        r.sw = do_manage_channel(card, ch, &a, &out);
        r.len = r.sw == SW_OK ? out.len : 0;
        emit(card, ch, &a, &r, resp, resp_len);
        return OT_OK;
    }
    if (iso && a.ins == GP_INS_SELECT && a.p1 == GP_SELECT_P1_BY_NAME) {
        r.sw = do_select(card, ch, &a, &out);
        r.len = sw_is_success_or_warning(r.sw) ? out.len : 0;
        r.sw = persist(card, r.sw, &db_err);
        r.allow_6c = false; /* selection happened: never ask for a resend */
        emit(card, ch, &a, &r, resp, resp_len);
        return db_err;
    }
    int sel = k->selected;
    if (iso && a.ins == GP_INS_SELECT
        && (sel < 0 || sel >= (int)card->st.napps || card->st.apps[sel].is_sd || sel == 0)) {
        emit_sw(SW_P1P2, resp, resp_len); /* only SELECT by DF name (P1 04) */
        return OT_OK;
    }
    if (sel < 0 || sel >= (int)card->st.napps) {
        chain_abort(&k->chain);
        emit_sw(SW_CONDITIONS, resp, resp_len); /* no application selected */
        return OT_OK;
    }
    if (card_restricted(&card->st) && sel != se_priv_holder(&card->st, GP_PRIV_FINAL_APPLICATION)) {
        emit_sw(SW_FUNC_NOT_SUPP, resp, resp_len);
        return OT_OK;
    }
    if (card->st.apps[sel].is_sd || sel == 0) {
        sd_command(card, ch, sel, cmd, n, &a, &r, &db_err);
    } else {
        applet_command(card, ch, sel, &a, &r, &db_err);
    }
    emit(card, ch, &a, &r, resp, resp_len);
    if (card->st.mute) {
        /* Hardware destroy: the command is acknowledged, then the chip is
         * burnt: no ATR, no answer any more. */
        card_reset_volatile(card);
        card_release_scratch(card);
        card->powered = false;
    }
    return db_err;
}
