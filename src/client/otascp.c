/* The SCP03 submitter over mno jobs (otascp.h). */
#define OT_LOG_COMPONENT "otascp"
#include "client/otascp.h"

#include "core/apdu.h"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"

#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OTASCP_IU_MAX   (5u + 16u + 1u)
#define OTASCP_IUR_MAX  (SCP03_KDD_LEN + 3u + 32u + 3u + 2u) /* answer + SW */
#define OTASCP_EA_MAX   (5u + 32u)
#define OTASCP_WRAP_MAX (5u + 255u + 1u)
#define OTASCP_WAIT_S   10u /* one long-poll */

static const char *const otascp_outcome_names[] = {"ok", "cmd_failed", "guard", "auth_failed",
                                                   "incomplete"};

bool otascp_sw_ok(uint16_t sw)
{
    return sw == 0x9000u || (sw & 0xFF00u) == 0x6100u || sw == 0x6310u;
}

const char *otascp_outcome_name(enum otascp_outcome o)
{
    return (size_t)o < sizeof(otascp_outcome_names) / sizeof(otascp_outcome_names[0])
               ? otascp_outcome_names[o]
               : "?";
}

void otascp_batch_free(struct otascp_batch *b)
{
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < b->n && b->items != NULL; i++) {
        free(b->items[i].p);
        free(b->items[i].expect);
    }
    free(b->items);
    b->items = NULL;
    b->n = 0;
}

void otascp_result_free(struct otascp_result *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n && r->resp != NULL; i++) {
        if (r->resp[i].data != NULL) {
            ot_mem_wipe(r->resp[i].data, r->resp[i].len);
        }
        free(r->resp[i].data);
    }
    free(r->resp);
    free(r->failed);
    memset(r, 0, sizeof(*r));
}

static bool otascp_level_ok(uint8_t level)
{
    return level == 0x00 || level == 0x01 || level == 0x03 || level == 0x11 || level == 0x13
           || level == 0x33;
}

/* Plain commands: well formed, short, basic channel, no secure messaging. */
static ot_err otascp_cmds_check(const struct otascp_apdu *cmds, size_t n)
{
    if (n > OTASCP_MAX_CMDS) {
        return OT_E_LIMIT;
    }
    if (n > 0 && cmds == NULL) {
        return OT_E_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        struct apdu a;
        uint8_t ch = 0;
        if (cmds[i].p == NULL || apdu_parse(cmds[i].p, cmds[i].n, &a) != OT_OK) {
            return OT_E_ARG;
        }
        if (a.extended) {
            return OT_E_TOO_LONG;
        }
        if (apdu_cla_has_sm(a.cla) || apdu_cla_channel(a.cla, &ch) != OT_OK || ch != 0) {
            return OT_E_ARG;
        }
    }
    return OT_OK;
}

static ot_err otascp_batch_alloc(struct otascp_batch *b, size_t n)
{
    b->n = 0;
    b->items = calloc(n ? n : 1, sizeof(*b->items));
    return b->items != NULL ? OT_OK : OT_E_NOMEM;
}

/* Appends a copy of p (and of expect when given). */
static ot_err otascp_batch_add(struct otascp_batch *b, const uint8_t *p, size_t n,
                               const uint8_t *expect, size_t expect_n)
{
    struct otascp_capdu *c = &b->items[b->n];

    c->p = malloc(n);
    if (c->p == NULL) {
        return OT_E_NOMEM;
    }
    memcpy(c->p, p, n);
    c->n = n;
    b->n++; /* owned from here: freed with the batch */
    if (expect != NULL) {
        c->expect = malloc(expect_n);
        if (c->expect == NULL) {
            return OT_E_NOMEM;
        }
        memcpy(c->expect, expect, expect_n);
        c->expect_n = expect_n;
    }
    return OT_OK;
}

static size_t otascp_chal_len(const struct otascp_state *st)
{
    return st->s16 ? 16u : 8u;
}

/* INITIALIZE UPDATE as the state's host challenge gives it. */
static ot_err otascp_iu(struct scp03_host *h, const struct otascp_state *st, uint8_t *iu,
                        size_t *iu_len)
{
    *iu_len = OTASCP_IU_MAX;
    return scp03_host_initialize_update(h, 0, st->s16, st->host_chal, iu, iu_len);
}

/* The card's answer to INITIALIZE UPDATE, computed ahead (pseudo-random card
 * challenge, Amd D 6.2.2.1): the card side of the protocol run here with the
 * SD's keys and the counter the card will use. */
static ot_err otascp_predict(const struct scp03_keyset *keys, const struct otascp_state *st,
                             const uint8_t *iu, size_t iu_len, uint8_t *out, size_t *out_len)
{
    struct scp03_card_cfg cc;
    struct scp03_card *card = NULL;
    uint32_t seq = st->predicted_seq - 1;
    size_t n = OTASCP_IUR_MAX - 2;
    ot_err err = OT_OK;

    memset(&cc, 0, sizeof(cc));
    cc.i_param = st->card.i;
    memcpy(cc.kdd, st->card.kdd, SCP03_KDD_LEN);
    cc.sd_aid = st->sd_aid;
    cc.sd_aid_len = st->sd_aid_len;
    OT_TRY(scp03_card_new(&cc, &card));
    OT_TRY(scp03_card_initialize_update(card, keys, &seq, iu, iu_len, out, &n));
    out[n] = 0x90;
    out[n + 1] = 0x00;
    *out_len = n + 2;
out:
    scp03_card_free(card);
    return err;
}

/* What the card's INITIALIZE UPDATE answer (verified) told of it. */
static void otascp_learn(struct otascp_state *st, const struct scp03_host *h)
{
    uint8_t i = scp03_host_i(h);

    st->card.known = true;
    memcpy(st->card.kdd, scp03_host_kdd(h), SCP03_KDD_LEN);
    st->card.i = i;
    if (i & SCP03_I_PSEUDO) {
        st->card.seq = scp03_host_seq(h);
    }
}

/* The host side up to the open channel: INITIALIZE UPDATE with the state's
 * challenge, the card's answer (its cryptogram checked), EXTERNAL
 * AUTHENTICATE (written to ea), taken as answered 9000. */
static ot_err otascp_open(const struct scp03_keyset *keys, struct otascp_state *st,
                          const uint8_t *iu_rapdu, size_t iu_rlen, struct scp03_host **out,
                          uint8_t *ea, size_t *ea_len)
{
    struct scp03_host *h = NULL;
    uint8_t iu[OTASCP_IU_MAX];
    size_t iu_len = 0;
    ot_err err = OT_OK;

    *out = NULL;
    OT_TRY(scp03_host_new(keys, &h));
    OT_TRY(otascp_iu(h, st, iu, &iu_len));
    OT_TRY(scp03_host_on_initialize_update(h, iu_rapdu, iu_rlen));
    otascp_learn(st, h);
    *ea_len = OTASCP_EA_MAX;
    OT_TRY(scp03_host_external_authenticate(h, st->level, ea, ea_len));
    OT_TRY(scp03_host_on_external_authenticate(h, (const uint8_t *)"\x90\x00", 2));
    *out = h;
    h = NULL;
out:
    scp03_host_free(h);
    return err;
}

/* Wraps one plain command; the secured form must be short. */
static ot_err otascp_wrap(struct scp03_host *h, const struct otascp_apdu *cmd, uint8_t *out,
                          size_t *out_len)
{
    struct apdu a;
    size_t n = cmd->n + SCP03_WRAP_OVERHEAD;
    uint8_t *tmp = malloc(n);
    ot_err err = OT_OK;

    if (tmp == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(scp03_host_wrap(h, cmd->p, cmd->n, tmp, &n));
    OT_TRY(apdu_parse(tmp, n, &a));
    if (a.extended || n > OTASCP_WRAP_MAX) {
        OT_FAIL(OT_E_TOO_LONG);
    }
    memcpy(out, tmp, n);
    *out_len = n;
out:
    free(tmp);
    return err;
}

/* EXTERNAL AUTHENTICATE and every command, wrapped, appended to b. */
static ot_err otascp_tail(struct scp03_host *h, const uint8_t *ea, size_t ea_len,
                          const struct otascp_apdu *cmds, size_t n, struct otascp_batch *b)
{
    uint8_t w[OTASCP_WRAP_MAX];
    size_t wn = 0;
    ot_err err = OT_OK;

    OT_TRY(otascp_batch_add(b, ea, ea_len, NULL, 0));
    for (size_t i = 0; i < n; i++) {
        OT_TRY(otascp_wrap(h, &cmds[i], w, &wn));
        OT_TRY(otascp_batch_add(b, w, wn, NULL, 0));
    }
out:
    return err;
}

/* Interactive batch 1: INITIALIZE UPDATE alone. */
static ot_err otascp_batch1(struct otascp_state *st, const struct scp03_keyset *keys,
                            struct otascp_batch *out)
{
    struct scp03_host *h = NULL;
    struct scp03_keyset dummy;
    uint8_t iu[OTASCP_IU_MAX];
    size_t iu_len = 0;
    ot_err err = OT_OK;

    /* INITIALIZE UPDATE carries only the key version and the challenge. */
    memset(&dummy, 0, sizeof(dummy));
    dummy.kvn = st->kvn;
    dummy.key_len = 16;
    OT_TRY(scp03_host_new(keys != NULL ? keys : &dummy, &h));
    OT_TRY(otascp_iu(h, st, iu, &iu_len));
    OT_TRY(otascp_batch_alloc(out, 1));
    OT_TRY(otascp_batch_add(out, iu, iu_len, NULL, 0));
    st->mode = OTASCP_INTERACTIVE;
out:
    scp03_host_free(h);
    return err;
}

static ot_err otascp_challenge(struct otascp_state *st, const uint8_t *given)
{
    size_t cl = otascp_chal_len(st);

    memset(st->host_chal, 0, sizeof(st->host_chal));
    if (given != NULL) {
        memcpy(st->host_chal, given, cl);
        return OT_OK;
    }
    return RAND_bytes(st->host_chal, (int)cl) == 1 ? OT_OK : OT_E_CRYPTO;
}

ot_err otascp_plan(const struct otascp_cfg *cfg, const struct otascp_apdu *cmds, size_t n,
                   struct otascp_state *st, struct otascp_batch *out)
{
    struct scp03_host *h = NULL;
    uint8_t iu[OTASCP_IU_MAX];
    uint8_t want[OTASCP_IUR_MAX];
    uint8_t ea[OTASCP_EA_MAX];
    size_t iu_len = 0;
    size_t want_len = 0;
    size_t ea_len = 0;
    const struct otascp_card *card;
    bool pseudo;
    ot_err err = OT_OK;

    if (cfg == NULL || st == NULL || out == NULL || cfg->keys == NULL || cfg->sd_aid == NULL
        || cfg->sd_aid_len < 5 || cfg->sd_aid_len > 16 || !otascp_level_ok(cfg->level)) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof(*out));
    OT_TRY(otascp_cmds_check(cmds, n));
    card = cfg->card != NULL && cfg->card->known ? cfg->card : NULL;
    memset(st, 0, sizeof(*st));
    st->phase = OTASCP_PH_PLANNED;
    st->level = cfg->level;
    st->kvn = cfg->keys->kvn;
    st->s16 = card != NULL ? (card->i & SCP03_I_S16) != 0 : cfg->s16;
    memcpy(st->sd_aid, cfg->sd_aid, cfg->sd_aid_len);
    st->sd_aid_len = cfg->sd_aid_len;
    st->n_cmds = n;
    if (card != NULL) {
        st->card = *card;
        if ((cfg->level & SCP03_LVL_RMAC) && !(card->i & SCP03_I_RMAC)) {
            OT_FAIL(OT_E_SEC_LEVEL);
        }
    }
    OT_TRY(otascp_challenge(st, cfg->host_challenge));
    pseudo = card != NULL && (card->i & SCP03_I_PSEUDO) && cfg->keys->kvn != 0;
    if (!pseudo) {
        OT_TRY(otascp_batch1(st, cfg->keys, out));
        goto out;
    }
    if (card->seq >= SCP03_SEQ_MAX) {
        OT_FAIL(OT_E_SEQ_EXHAUSTED);
    }
    st->mode = OTASCP_SCRIPTED;
    st->predicted_seq = card->seq + 1;
    OT_TRY(scp03_host_new(cfg->keys, &h));
    OT_TRY(otascp_iu(h, st, iu, &iu_len));
    OT_TRY(otascp_predict(cfg->keys, st, iu, iu_len, want, &want_len));
    scp03_host_free(h);
    h = NULL;
    OT_TRY(otascp_open(cfg->keys, st, want, want_len, &h, ea, &ea_len));
    OT_TRY(otascp_batch_alloc(out, n + 2));
    OT_TRY(otascp_batch_add(out, iu, iu_len, want, want_len));
    OT_TRY(otascp_tail(h, ea, ea_len, cmds, n, out));
out:
    scp03_host_free(h);
    ot_mem_wipe(want, sizeof(want));
    ot_mem_wipe(ea, sizeof(ea));
    if (err != OT_OK) {
        otascp_batch_free(out);
    }
    return err;
}

ot_err otascp_fallback(struct otascp_state *st, const uint8_t *host_challenge,
                       struct otascp_batch *out)
{
    ot_err err = OT_OK;

    if (st == NULL || out == NULL) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof(*out));
    OT_TRY(otascp_challenge(st, host_challenge));
    st->predicted_seq = 0;
    st->fallbacks++;
    st->phase = OTASCP_PH_PLANNED;
    OT_TRY(otascp_batch1(st, NULL, out));
out:
    if (err != OT_OK) {
        otascp_batch_free(out);
    }
    return err;
}

ot_err otascp_continue(const struct scp03_keyset *keys, const struct otascp_apdu *cmds, size_t n,
                       struct otascp_state *st, const uint8_t *iu_rapdu, size_t iu_len,
                       struct otascp_batch *out)
{
    struct scp03_host *h = NULL;
    struct rapdu r;
    uint8_t ea[OTASCP_EA_MAX];
    size_t ea_len = 0;
    ot_err err = OT_OK;

    if (keys == NULL || st == NULL || out == NULL || iu_rapdu == NULL
        || st->mode != OTASCP_INTERACTIVE || n != st->n_cmds) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof(*out));
    OT_TRY(otascp_cmds_check(cmds, n));
    OT_TRY(rapdu_parse(iu_rapdu, iu_len, &r));
    if (r.sw != SW_OK) {
        OT_FAIL(sw_to_err(r.sw) != OT_OK ? sw_to_err(r.sw) : OT_E_SW);
    }
    OT_TRY(otascp_open(keys, st, iu_rapdu, iu_len, &h, ea, &ea_len));
    OT_TRY(otascp_batch_alloc(out, n + 1));
    OT_TRY(otascp_tail(h, ea, ea_len, cmds, n, out));
out:
    scp03_host_free(h);
    ot_mem_wipe(ea, sizeof(ea));
    if (err != OT_OK) {
        otascp_batch_free(out);
    }
    return err;
}

static uint16_t otascp_sw_of(const struct otascp_apdu *r)
{
    return r->n >= 2 ? (uint16_t)((r->p[r->n - 2] << 8) | r->p[r->n - 1]) : 0;
}

/* Every command from index from on did not run (or could not). */
static ot_err otascp_fail_rest(struct otascp_result *res, size_t from)
{
    for (size_t i = from; i < res->n; i++) {
        res->failed[res->n_failed++] = i;
    }
    return OT_OK;
}

/* The commands' answers through the open channel h (rapdus from the EXTERNAL
 * AUTHENTICATE answer's successor on). */
static ot_err otascp_unwrap_all(struct scp03_host *h, const struct otascp_apdu *cmds,
                                const struct otascp_apdu *rapdus, size_t nr,
                                struct otascp_result *res)
{
    uint8_t w[OTASCP_WRAP_MAX];
    size_t wn = 0;
    bool bad = false;
    ot_err err = OT_OK;

    if (nr > res->n) {
        return OT_E_FORMAT; /* more answers than commands */
    }
    for (size_t i = 0; i < nr; i++) {
        struct otascp_resp *o = &res->resp[i];
        size_t pn = rapdus[i].n;
        uint8_t *plain;
        if (rapdus[i].p == NULL || rapdus[i].n < 2) {
            OT_FAIL(OT_E_FORMAT);
        }
        OT_TRY(otascp_wrap(h, &cmds[i], w, &wn));
        plain = malloc(pn);
        if (plain == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        err = scp03_host_unwrap(h, rapdus[i].p, rapdus[i].n, plain, &pn);
        if (err != OT_OK) {
            free(plain);
            goto out;
        }
        o->ran = true;
        o->sw = (uint16_t)((plain[pn - 2] << 8) | plain[pn - 1]);
        o->len = pn - 2;
        o->data = plain;
        if (!otascp_sw_ok(o->sw)) {
            res->failed[res->n_failed++] = i;
            bad = true;
        }
    }
    OT_TRY(otascp_fail_rest(res, nr));
    res->outcome = bad ? OTASCP_CMD_FAILED : nr < res->n ? OTASCP_INCOMPLETE : OTASCP_OK;
out:
    return err;
}

ot_err otascp_verify(const struct scp03_keyset *keys, const struct otascp_apdu *cmds, size_t n,
                     struct otascp_state *st, const struct otascp_apdu *rapdus, size_t nr,
                     struct otascp_result *res)
{
    struct scp03_host *h = NULL;
    uint8_t iu[OTASCP_IU_MAX];
    uint8_t want[OTASCP_IUR_MAX];
    uint8_t ea[OTASCP_EA_MAX];
    size_t iu_len = 0;
    size_t want_len = 0;
    size_t ea_len = 0;
    ot_err err = OT_OK;

    if (keys == NULL || st == NULL || res == NULL || (nr > 0 && rapdus == NULL) || n != st->n_cmds
        || (st->mode != OTASCP_SCRIPTED && st->mode != OTASCP_INTERACTIVE)) {
        return OT_E_ARG;
    }
    memset(res, 0, sizeof(*res));
    OT_TRY(otascp_cmds_check(cmds, n));
    res->n = n;
    res->resp = calloc(n ? n : 1, sizeof(*res->resp));
    res->failed = calloc(n ? n : 1, sizeof(*res->failed));
    if (res->resp == NULL || res->failed == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    res->authenticated = (st->level & SCP03_LVL_RMAC) != 0;
    for (size_t i = 0; i < nr; i++) {
        if (rapdus[i].p == NULL || rapdus[i].n < 2) {
            OT_FAIL(OT_E_FORMAT);
        }
    }
    if (nr == 0) {
        res->outcome = OTASCP_INCOMPLETE;
        OT_TRY(otascp_fail_rest(res, 0));
        goto done;
    }
    res->iu_sw = otascp_sw_of(&rapdus[0]);
    if (st->mode == OTASCP_SCRIPTED) {
        OT_TRY(scp03_host_new(keys, &h));
        OT_TRY(otascp_iu(h, st, iu, &iu_len));
        OT_TRY(otascp_predict(keys, st, iu, iu_len, want, &want_len));
        scp03_host_free(h);
        h = NULL;
        if (want_len != rapdus[0].n || memcmp(want, rapdus[0].p, want_len) != 0) {
            /* The guard stopped it: learn the card's counter when its
             * answer proves our keys. */
            res->outcome = OTASCP_GUARD;
            OT_TRY(otascp_fail_rest(res, 0));
            if (res->iu_sw == SW_OK
                && otascp_open(keys, st, rapdus[0].p, rapdus[0].n, &h, ea, &ea_len) != OT_OK) {
                OT_LOG_WARN("a guarded INITIALIZE UPDATE answer does not verify with our keys");
            }
            if (nr > 1) {
                OT_LOG_WARN("%zu answers past a guard that did not match", nr - 1);
            }
            goto done;
        }
    }
    if (res->iu_sw != SW_OK) {
        res->outcome = OTASCP_AUTH_FAILED;
        OT_TRY(otascp_fail_rest(res, 0));
        goto done;
    }
    OT_TRY(otascp_open(keys, st, rapdus[0].p, rapdus[0].n, &h, ea, &ea_len));
    if (nr < 2) {
        res->outcome = OTASCP_INCOMPLETE;
        OT_TRY(otascp_fail_rest(res, 0));
        goto done;
    }
    res->ea_sw = otascp_sw_of(&rapdus[1]);
    if (res->ea_sw != SW_OK) {
        res->outcome = OTASCP_AUTH_FAILED;
        OT_TRY(otascp_fail_rest(res, 0));
        goto done;
    }
    OT_TRY(otascp_unwrap_all(h, cmds, rapdus + 2, nr - 2, res));
done:
    st->phase = OTASCP_PH_DONE;
out:
    scp03_host_free(h);
    ot_mem_wipe(want, sizeof(want));
    ot_mem_wipe(ea, sizeof(ea));
    if (err != OT_OK) {
        otascp_result_free(res);
    }
    return err;
}

/* ---- JSON forms */

ot_err otascp_batch_json(const struct otascp_batch *b, json_t **out)
{
    json_t *arr = NULL;
    char *hex = NULL;
    ot_err err = OT_OK;

    if (b == NULL || out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    arr = json_array();
    if (arr == NULL) {
        return OT_E_NOMEM;
    }
    for (size_t i = 0; i < b->n; i++) {
        const struct otascp_capdu *c = &b->items[i];
        size_t cap = 2 * (c->n > c->expect_n ? c->n : c->expect_n) + 1;
        json_t *v;
        hex = malloc(cap);
        if (hex == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(hex_encode(c->p, c->n, hex, cap));
        v = json_string(hex);
        if (v != NULL && c->expect != NULL) {
            json_t *o = json_object();
            if (o == NULL || json_object_set_new(o, "capdu", v) != 0) {
                json_decref(o);
                OT_FAIL(OT_E_NOMEM);
            }
            v = o;
            OT_TRY(hex_encode(c->expect, c->expect_n, hex, cap));
            if (json_object_set_new(o, "expect", json_string(hex)) != 0) {
                json_decref(o);
                OT_FAIL(OT_E_NOMEM);
            }
        }
        if (v == NULL || json_array_append_new(arr, v) != 0) {
            OT_FAIL(OT_E_NOMEM);
        }
        free(hex);
        hex = NULL;
    }
    *out = arr;
    arr = NULL;
out:
    free(hex);
    json_decref(arr);
    return err;
}

ot_err otascp_job_rapdus(const json_t *job, struct otascp_apdu **out, size_t *n, uint8_t **buf)
{
    const json_t *scripts = json_object_get(job, "scripts");
    size_t total = 0;
    size_t count = 0;
    size_t used = 0;
    size_t k = 0;
    struct otascp_apdu *v = NULL;
    uint8_t *b = NULL;
    ot_err err = OT_OK;

    if (out == NULL || n == NULL || buf == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    *n = 0;
    *buf = NULL;
    if (!json_is_array(scripts)) {
        return OT_E_FORMAT;
    }
    for (size_t i = 0; i < json_array_size(scripts); i++) {
        const json_t *ra = json_object_get(json_array_get(scripts, i), "rapdus");
        if (json_is_null(ra)) {
            continue;
        }
        if (!json_is_array(ra)) {
            return OT_E_FORMAT;
        }
        for (size_t j = 0; j < json_array_size(ra); j++) {
            const char *s = json_string_value(json_array_get(ra, j));
            if (s == NULL) {
                return OT_E_FORMAT;
            }
            total += strlen(s) / 2;
            count++;
        }
    }
    v = calloc(count ? count : 1, sizeof(*v));
    b = malloc(total ? total : 1);
    if (v == NULL || b == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (size_t i = 0; i < json_array_size(scripts); i++) {
        const json_t *ra = json_object_get(json_array_get(scripts, i), "rapdus");
        for (size_t j = 0; json_is_array(ra) && j < json_array_size(ra); j++) {
            const char *s = json_string_value(json_array_get(ra, j));
            size_t bn = total - used;
            if (hex_decode(s, strlen(s), b + used, &bn) != OT_OK || bn < 2) {
                OT_FAIL(OT_E_FORMAT);
            }
            v[k].p = b + used;
            v[k].n = bn;
            used += bn;
            k++;
        }
    }
    *out = v;
    *n = k;
    *buf = b;
    v = NULL;
    b = NULL;
out:
    free(v);
    free(b);
    return err;
}

/* ---- the state as text */

ot_err otascp_state_encode(const struct otascp_state *st, char *out, size_t cap)
{
    char aid[33];
    char chal[33];
    char kdd[2 * SCP03_KDD_LEN + 1];
    int w;

    if (st == NULL || out == NULL || st->sd_aid_len < 5 || st->sd_aid_len > 16) {
        return OT_E_ARG;
    }
    if (hex_encode(st->sd_aid, st->sd_aid_len, aid, sizeof(aid)) != OT_OK
        || hex_encode(st->host_chal, otascp_chal_len(st), chal, sizeof(chal)) != OT_OK
        || hex_encode(st->card.kdd, SCP03_KDD_LEN, kdd, sizeof(kdd)) != OT_OK) {
        return OT_E_ARG;
    }
    w = snprintf(out, cap,
                 "{\"v\":1,\"mode\":%d,\"phase\":%d,\"level\":%u,\"s16\":%s,\"kvn\":%u,"
                 "\"aid\":\"%s\",\"host_challenge\":\"%s\",\"predicted_seq\":%lu,\"n_cmds\":%zu,"
                 "\"card\":{\"known\":%s,\"kdd\":\"%s\",\"i\":%u,\"seq\":%lu},"
                 "\"job\":\"%s\",\"fallbacks\":%u}",
                 (int)st->mode, (int)st->phase, (unsigned)st->level, st->s16 ? "true" : "false",
                 (unsigned)st->kvn, aid, chal, (unsigned long)st->predicted_seq, st->n_cmds,
                 st->card.known ? "true" : "false", kdd, (unsigned)st->card.i,
                 (unsigned long)st->card.seq, st->job, st->fallbacks);
    if (w < 0 || (size_t)w >= cap) {
        return OT_E_BUF_SMALL;
    }
    return OT_OK;
}

ot_err otascp_state_decode(const char *text, struct otascp_state *st)
{
    static const char *const top[] = {"v",
                                      "mode",
                                      "phase",
                                      "level",
                                      "s16",
                                      "kvn",
                                      "aid",
                                      "host_challenge",
                                      "predicted_seq",
                                      "n_cmds",
                                      "card",
                                      "job",
                                      "fallbacks",
                                      NULL};
    static const char *const card_f[] = {"known", "kdd", "i", "seq", NULL};
    struct json_err je;
    struct otascp_state s;
    json_t *doc = NULL;
    const json_t *card = NULL;
    const char *job = NULL;
    int64_t v = 0;
    size_t len;
    bool b = false;
    ot_err err = OT_OK;

    if (text == NULL || st == NULL) {
        return OT_E_ARG;
    }
    memset(&je, 0, sizeof(je));
    memset(&s, 0, sizeof(s));
    if (json_parse(text, strlen(text), OTASCP_STATE_MAX, &doc, &je) != OT_OK || !json_is_obj(doc)
        || json_check_fields(doc, top, "", &je) != OT_OK
        || json_get_int(doc, "v", 1, 1, &v, &je) != OT_OK) {
        OT_FAIL(OT_E_FORMAT);
    }
    if (json_get_int(doc, "mode", OTASCP_SCRIPTED, OTASCP_INTERACTIVE, &v, &je) != OT_OK) {
        OT_FAIL(OT_E_FORMAT);
    }
    s.mode = (enum otascp_mode)v;
    if (json_get_int(doc, "phase", OTASCP_PH_PLANNED, OTASCP_PH_DONE, &v, &je) != OT_OK) {
        OT_FAIL(OT_E_FORMAT);
    }
    s.phase = (enum otascp_phase)v;
    if (json_get_int(doc, "level", 0, 0x33, &v, &je) != OT_OK || !otascp_level_ok((uint8_t)v)) {
        OT_FAIL(OT_E_FORMAT);
    }
    s.level = (uint8_t)v;
    if (json_get_bool(doc, "s16", &s.s16, &je) != OT_OK
        || json_get_int(doc, "kvn", 0, 255, &v, &je) != OT_OK) {
        OT_FAIL(OT_E_FORMAT);
    }
    s.kvn = (uint8_t)v;
    len = sizeof(s.sd_aid);
    if (json_get_hex(doc, "aid", 5, 16, s.sd_aid, &len, &je) != OT_OK) {
        OT_FAIL(OT_E_FORMAT);
    }
    s.sd_aid_len = len;
    len = sizeof(s.host_chal);
    if (json_get_hex(doc, "host_challenge", 8, 16, s.host_chal, &len, &je) != OT_OK
        || len != otascp_chal_len(&s)) {
        OT_FAIL(OT_E_FORMAT);
    }
    if (json_get_int(doc, "predicted_seq", 0, SCP03_SEQ_MAX, &v, &je) != OT_OK) {
        OT_FAIL(OT_E_FORMAT);
    }
    s.predicted_seq = (uint32_t)v;
    if (json_get_int(doc, "n_cmds", 0, OTASCP_MAX_CMDS, &v, &je) != OT_OK) {
        OT_FAIL(OT_E_FORMAT);
    }
    s.n_cmds = (size_t)v;
    if (json_get_obj(doc, "card", &card, &je) != OT_OK
        || json_check_fields(card, card_f, "card", &je) != OT_OK
        || json_get_bool(card, "known", &b, &je) != OT_OK) {
        OT_FAIL(OT_E_FORMAT);
    }
    s.card.known = b;
    len = SCP03_KDD_LEN;
    if (json_get_hex(card, "kdd", SCP03_KDD_LEN, SCP03_KDD_LEN, s.card.kdd, &len, &je) != OT_OK
        || json_get_int(card, "i", 0, 255, &v, &je) != OT_OK) {
        OT_FAIL(OT_E_FORMAT);
    }
    s.card.i = (uint8_t)v;
    if (json_get_int(card, "seq", 0, SCP03_SEQ_MAX, &v, &je) != OT_OK) {
        OT_FAIL(OT_E_FORMAT);
    }
    s.card.seq = (uint32_t)v;
    if (json_get_str(doc, "job", 0, OTASCP_JOB_ID_MAX, &job, &je) != OT_OK
        || strspn(job, "0123456789") != strlen(job)
        || json_get_int(doc, "fallbacks", 0, 1000, &v, &je) != OT_OK) {
        OT_FAIL(OT_E_FORMAT);
    }
    memcpy(s.job, job, strlen(job) + 1);
    s.fallbacks = (unsigned)v;
    *st = s;
out:
    json_free(doc);
    return err;
}

/* ---- blocking layer */

static ot_err otascp_local_fail(struct tsm_client_err *e, ot_err err, const char *text)
{
    memset(e, 0, sizeof(*e));
    e->fail = TSM_CLIENT_LOCAL;
    e->err = err;
    e->retry_after = -1;
    (void)snprintf(e->text, sizeof(e->text), "%s", text);
    return err;
}

/* POST /jobs with the batch (kind by the state's mode). */
static ot_err otascp_submit_batch(struct mno_client *m, const struct otascp_target *t,
                                  struct otascp_state *st, const struct otascp_batch *b,
                                  const char *idem, struct tsm_client_err *e)
{
    json_t *job = json_object();
    json_t *se = json_object();
    json_t *apdus = NULL;
    json_t *ans = NULL;
    const char *id;
    char aid[33];
    ot_err err = OT_OK;

    if (job == NULL || se == NULL) {
        json_decref(job);
        json_decref(se);
        return otascp_local_fail(e, OT_E_NOMEM, "out of memory");
    }
    (void)json_object_set_new(job, "se", se);
    if (t->device != NULL) {
        (void)json_object_set_new(job, "device", json_string(t->device));
    } else {
        (void)json_object_set_new(job, "msisdn", json_string(t->msisdn));
    }
    if (t->se_cin != NULL) {
        (void)json_object_set_new(se, "cin", json_string(t->se_cin));
    } else {
        (void)json_object_set_new(se, "reader", json_string(t->se_reader));
    }
    (void)json_object_set_new(
        job, "kind", json_string(st->mode == OTASCP_SCRIPTED ? "scripted" : "interactive"));
    (void)hex_encode(st->sd_aid, st->sd_aid_len, aid, sizeof(aid));
    (void)json_object_set_new(job, "aid", json_string(aid));
    if (t->priority >= 0) {
        (void)json_object_set_new(job, "priority", json_integer(t->priority));
    }
    if (t->ttl_s > 0) {
        (void)json_object_set_new(job, "ttl_s", json_integer(t->ttl_s));
    }
    if (t->max_attempts > 0) {
        (void)json_object_set_new(job, "max_attempts", json_integer(t->max_attempts));
    }
    if (t->destructive) {
        (void)json_object_set_new(job, "destructive", json_true());
    }
    if (t->callback != NULL) {
        (void)json_object_set_new(job, "callback", json_string(t->callback));
    }
    err = otascp_batch_json(b, &apdus);
    if (err != OT_OK || json_object_set_new(job, "apdus", apdus) != 0) {
        json_decref(job);
        return otascp_local_fail(e, err != OT_OK ? err : OT_E_NOMEM, "the job does not build");
    }
    err = mno_client_job_submit(m, job, idem, &ans, e);
    json_decref(job);
    if (err != OT_OK) {
        return err;
    }
    id = json_string_value(json_object_get(ans, "id"));
    if (id == NULL || strlen(id) > OTASCP_JOB_ID_MAX) {
        json_decref(ans);
        return otascp_local_fail(e, OT_E_PROTOCOL, "the job answer has no id");
    }
    memcpy(st->job, id, strlen(id) + 1);
    {
        const char *js = json_string_value(json_object_get(ans, "state"));
        (void)snprintf(st->job_state, sizeof(st->job_state), "%s", js != NULL ? js : "");
    }
    st->phase = st->mode == OTASCP_SCRIPTED ? OTASCP_PH_SCRIPTED : OTASCP_PH_IU;
    json_decref(ans);
    return OT_OK;
}

static bool otascp_target_ok(const struct otascp_target *t)
{
    return t != NULL && (t->device != NULL) != (t->msisdn != NULL)
           && (t->se_cin != NULL || t->se_reader != NULL) && t->idem_key != NULL
           && t->idem_key[0] != '\0' && strlen(t->idem_key) <= 120;
}

ot_err otascp_submit(struct mno_client *m, const struct otascp_target *t,
                     const struct otascp_cfg *cfg, const struct otascp_apdu *cmds, size_t n,
                     struct otascp_state *st, struct tsm_client_err *e)
{
    struct otascp_batch b;
    ot_err err;

    memset(&b, 0, sizeof(b));
    if (m == NULL || e == NULL || !otascp_target_ok(t)) {
        return e != NULL ? otascp_local_fail(e, OT_E_ARG, "a target, an SE and a key") : OT_E_ARG;
    }
    err = otascp_plan(cfg, cmds, n, st, &b);
    if (err != OT_OK) {
        return otascp_local_fail(e, err, "the plan does not build");
    }
    err = otascp_submit_batch(m, t, st, &b, t->idem_key, e);
    otascp_batch_free(&b);
    return err;
}

static bool otascp_state_is(const json_t *job, const char *s)
{
    const char *v = json_string_value(json_object_get(job, "state"));
    return v != NULL && strcmp(v, s) == 0;
}

static bool otascp_pending(const json_t *job)
{
    return otascp_state_is(job, "queued") || otascp_state_is(job, "delivering")
           || otascp_state_is(job, "running");
}

/* Script seq's R-APDUs (NULL: none yet). */
static const json_t *otascp_script_rapdus(const json_t *job, int64_t seq)
{
    const json_t *scripts = json_object_get(job, "scripts");

    for (size_t i = 0; i < json_array_size(scripts); i++) {
        const json_t *sc = json_array_get(scripts, i);
        if (json_integer_value(json_object_get(sc, "seq")) == seq) {
            const json_t *r = json_object_get(sc, "rapdus");
            return json_is_array(r) ? r : NULL;
        }
    }
    return NULL;
}

ot_err otascp_advance(struct mno_client *m, const struct otascp_target *t,
                      const struct scp03_keyset *keys, const struct otascp_apdu *cmds, size_t n,
                      struct otascp_state *st, const json_t *job, struct otascp_result *res,
                      bool *finished, struct tsm_client_err *e)
{
    struct otascp_apdu *rap = NULL;
    struct otascp_batch b;
    uint8_t *buf = NULL;
    size_t nr = 0;
    json_t *ans = NULL;
    char idem[160];
    ot_err err = OT_OK;

    memset(&b, 0, sizeof(b));
    if (m == NULL || e == NULL || keys == NULL || st == NULL || job == NULL || res == NULL
        || finished == NULL || !otascp_target_ok(t)) {
        return e != NULL ? otascp_local_fail(e, OT_E_ARG, "missing argument") : OT_E_ARG;
    }
    *finished = false;
    memset(res, 0, sizeof(*res));
    if (st->phase == OTASCP_PH_BATCH2 && otascp_pending(job)
        && json_array_size(json_object_get(job, "scripts")) == 1
        && !json_is_true(json_object_get(job, "closed"))) {
        /* mno runs the job again from the start (its session was lost,
         * docs/mno.md): batch 1 only, open again; batch 2 is written again
         * from the new INITIALIZE UPDATE answer. */
        st->phase = OTASCP_PH_IU;
    }
    if (st->phase == OTASCP_PH_IU) {
        const json_t *r1 = otascp_script_rapdus(job, 1);
        const char *hx = json_string_value(json_array_get(r1, 0));
        if (r1 != NULL && hx != NULL && otascp_state_is(job, "running")) {
            uint8_t iur[OTASCP_IUR_MAX];
            size_t iun = sizeof(iur);
            ot_err cerr;
            if (hex_decode(hx, strlen(hx), iur, &iun) != OT_OK || iun < 2) {
                return otascp_local_fail(e, OT_E_FORMAT, "a malformed INITIALIZE UPDATE answer");
            }
            /* A refusal (SW not 9000) sends nothing more: the verify says how. */
            if (iur[iun - 2] == 0x90 && iur[iun - 1] == 0x00) {
                err = otascp_continue(keys, cmds, n, st, iur, iun, &b);
            }
            if (err == OT_OK && b.n > 0) {
                json_t *body = json_object();
                json_t *apdus = NULL;
                err = otascp_batch_json(&b, &apdus);
                otascp_batch_free(&b);
                /* Batch 2 is the last: it closes the job in the same request. */
                if (body == NULL || err != OT_OK || json_object_set_new(body, "apdus", apdus) != 0
                    || json_object_set_new(body, "close", json_true()) != 0) {
                    json_decref(body);
                    return otascp_local_fail(e, OT_E_NOMEM, "out of memory");
                }
                /* One key per session of the job: a run again from the
                 * start takes a new batch 2. */
                (void)snprintf(idem, sizeof(idem), "%s.b2.s%lld", t->idem_key,
                               (long long)json_integer_value(json_object_get(job, "session")));
                err = mno_client_job_batch(m, st->job, body, idem, &ans, e);
                json_decref(body);
                json_decref(ans);
                ans = NULL;
                if (err != OT_OK) {
                    return err;
                }
                st->phase = OTASCP_PH_BATCH2;
                return OT_OK;
            }
            /* No more batches (the card refused, or its answer does not
             * prove our keys). */
            cerr = mno_client_job_close(m, st->job, &ans, e);
            json_decref(ans);
            if (err != OT_OK) {
                return otascp_local_fail(e, err,
                                         err == OT_E_CARD_CRYPTOGRAM
                                             ? "the card cryptogram does not verify: not our card"
                                             : "batch 2 does not build");
            }
            if (cerr != OT_OK) {
                return cerr;
            }
            st->phase = OTASCP_PH_BATCH2;
            return OT_OK;
        }
    }
    if (otascp_pending(job)) {
        return OT_OK;
    }
    err = otascp_job_rapdus(job, &rap, &nr, &buf);
    if (err != OT_OK) {
        return otascp_local_fail(e, err, "the job's R-APDUs do not parse");
    }
    err = otascp_verify(keys, cmds, n, st, rap, nr, res);
    free(rap);
    free(buf);
    if (err != OT_OK) {
        return otascp_local_fail(e, err,
                                 err == OT_E_RMAC ? "an R-MAC does not verify: result not trusted"
                                                  : "the job's answers do not verify");
    }
    if (res->outcome == OTASCP_GUARD) {
        /* The card's counter was not the one predicted: the two-batch form. */
        OT_LOG_INFO("job %s stopped at its guard: falling back", st->job);
        otascp_result_free(res);
        OT_TRY(otascp_fallback(st, NULL, &b));
        (void)snprintf(idem, sizeof(idem), "%s.f%u", t->idem_key, st->fallbacks);
        err = otascp_submit_batch(m, t, st, &b, idem, e);
        otascp_batch_free(&b);
        return err;
    }
    *finished = true;
    return OT_OK;
out:
    otascp_batch_free(&b);
    return otascp_local_fail(e, err, "the fallback does not build");
}

static int64_t otascp_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ot_err otascp_run(struct mno_client *m, const struct otascp_target *t, const struct otascp_cfg *cfg,
                  const struct otascp_apdu *cmds, size_t n, unsigned timeout_ms,
                  struct otascp_run_result *out, struct tsm_client_err *e)
{
    int64_t deadline = otascp_mono_ms() + timeout_ms;
    json_t *job = NULL;
    bool finished = false;
    ot_err err;

    if (out == NULL || cfg == NULL || e == NULL) {
        return e != NULL ? otascp_local_fail(e, OT_E_ARG, "missing argument") : OT_E_ARG;
    }
    memset(out, 0, sizeof(*out));
    err = otascp_submit(m, t, cfg, cmds, n, &out->state, e);
    if (err != OT_OK) {
        return err;
    }
    out->jobs = 1;
    while (!finished) {
        int64_t left = deadline - otascp_mono_ms();
        unsigned wait_s;
        char before[OTASCP_JOB_ID_MAX + 1];
        if (left <= 0) {
            return otascp_local_fail(e, OT_E_TIMEOUT, "the job has not ended yet");
        }
        wait_s =
            left >= (int64_t)OTASCP_WAIT_S * 1000 ? OTASCP_WAIT_S : (unsigned)(left + 999) / 1000;
        err = mno_client_job_wait(m, out->state.job, wait_s,
                                  out->state.phase == OTASCP_PH_IU ? 1 : 0, &job, e);
        if (err != OT_OK) {
            return err;
        }
        memcpy(before, out->state.job, sizeof(before));
        err = otascp_advance(m, t, cfg->keys, cmds, n, &out->state, job, &out->res, &finished, e);
        if (err == OT_OK && finished) {
            const char *js = json_string_value(json_object_get(job, "state"));
            const char *jr = json_string_value(json_object_get(job, "reason"));
            (void)snprintf(out->job_state, sizeof(out->job_state), "%s", js != NULL ? js : "");
            (void)snprintf(out->reason, sizeof(out->reason), "%s", jr != NULL ? jr : "");
        }
        json_decref(job);
        job = NULL;
        if (err != OT_OK) {
            return err;
        }
        if (strcmp(before, out->state.job) != 0) {
            out->jobs++;
        }
    }
    return OT_OK;
}
