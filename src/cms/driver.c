/* The driver (cms_priv.h): one thread per node that carries accepted
 * actions to the card through its mno (docs/cms.md, "The flow").
 *
 * An action row is claimed for claim_s seconds by a compare-and-set on
 * claimed_until (so two nodes never work one action at once), then moved one
 * step, each step committed before the next network call:
 *
 *   pending    the host challenge kept, then the OTA job submitted (otascp:
 *              SCP03 with the card's SD, Idempotency-Key
 *              "cms-<action>-<attempt>-<challenge>", so a crash after the submit
 *              and before the commit submits the same job again); the
 *              device's status from the job's answer (delivering: online),
 *              else from mno's status lookup (by IMSI)
 *   submitted  the job waited on (phone there) or read back and advanced
 *              (batch 2 of the two-batch channel, which closes the job, and
 *              the job's end waited for in the same step); once over, its
 *              answers verified (every R-MAC). Only
 *              a verified success moves the card; a success without the
 *              card's proof raises an alert and changes nothing; an unknown
 *              outcome (the phone went away mid-destroy) is resolved by
 *              reading the card first, never by sending the destroy again
 *              blindly.
 */
#define OT_LOG_COMPONENT "cms.driver"
#include "client/mno_client.h"
#include "client/otascp.h"
#include "client/tsm_client.h"
#include "cms/cms_priv.h"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "core/thread.h"
#include "core/tlv.h"
#include "db/db.h"
#include "db/keystore.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CMS_CLAIM_BATCH 64u

/* next_at and claimed_until are in milliseconds. */
static int64_t cms_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
#define CMS_CMDS_MAX      (CMS_AIDS_MAX + 1u)
#define CMS_QUEUED_MS     1000 /* first reads of a job waiting for its phone */
#define CMS_QUEUED_MAX_MS 5000 /* ... growing to this */
#define CMS_WAIT_S        1u   /* a wait on a running job (GET /jobs/{id}?wait) */
#define CMS_AGAIN_MAX     64u  /* steps of one action in a row by one worker */

/* ---- the threads: see the end of the file ------------------------------------ */

static ot_err cms_claim(struct cms *s, struct db_conn *c, int64_t *ids, size_t max, size_t *n);
static void cms_claim_release(struct cms *s, int64_t id);

/* ---- one action ------------------------------------------------------------ */

struct cms_act {
    int64_t id;
    int64_t card_row;
    enum cms_action action;
    enum cms_reason reason;
    enum cms_cause cause;
    enum cms_mode mode;
    enum cms_scope scope;
    char state[16];
    int64_t attempts;
    bool verify_first;
    char hchal[33];
    char scp[OTASCP_STATE_MAX];
    char aids[512];
};

/* What the step decided, applied in one transaction. */
struct cms_step {
    const char *set_state; /* the action's new state; NULL: unchanged */
    bool clear_job;        /* a new attempt: forget the job, the channel and the challenge */
    bool attempt;          /* count one failed attempt */
    int64_t next_at;
    bool verify_first;
    bool save_scp;
    const char *scp;
    const char *hchal;
    const char *mno_job;
    const char *result;
    /* the card */
    bool move;
    enum cms_event ev;
    bool ran_first; /* the job ran on the phone: the card moves by running first if it
                       has not yet (a wait on the job may not have seen it run) */
    /* history / alert / notification */
    const char *submitted; /* the job went out in this step: its "submitted" row (detail) first */
    const char *hist_event;
    char detail[512];
    const char *alert_kind;
    const char *notify;
};

/* The action and its card, in one statement (the card's columns first, in
 * the order of CMS_CARD_COLS, for cms_card_of_row). */
static ot_err cms_act_load(struct db_conn *c, int64_t id, struct cms_act *a, struct cms_card *card)
{
    enum { A = 15 }; /* the action's first column */
    struct db_stmt *st = NULL;
    const char *v = NULL;
    int64_t n = 0;
    bool row = false;
    size_t len;
    ot_err err = OT_OK;

    memset(a, 0, sizeof(*a));
    OT_TRY(db_prepare(c,
                      "SELECT c.id, c.card_id, c.pan_token, c.subscriber, c.cin, c.mno, c.msisdn,"
                      " c.imsi, c.imei, c.location_area, c.issuer, c.sd_aid, c.kvn, c.state,"
                      " c.version,"
                      " a.id, a.card, a.action, a.reason, a.cause, a.mode, a.scope, a.state,"
                      " a.attempts, a.verify_first, a.hchal, a.scp, c.aids FROM cms_actions a"
                      " JOIN cms_cards c ON c.id = a.card WHERE a.id = $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(cms_card_of_row(st, card));
    OT_TRY(db_col_int64(st, A + 0, &a->id));
    OT_TRY(db_col_int64(st, A + 1, &a->card_row));
    OT_TRY(db_col_text(st, A + 2, &v));
    OT_TRY(cms_action_parse(v, &a->action));
    OT_TRY(db_col_text(st, A + 3, &v));
    OT_TRY(cms_reason_parse(v, &a->reason));
    OT_TRY(db_col_text(st, A + 4, &v));
    OT_TRY(cms_cause_parse(v, &a->cause));
    OT_TRY(db_col_text(st, A + 5, &v));
    OT_TRY(cms_mode_parse(v, &a->mode));
    OT_TRY(db_col_text(st, A + 6, &v));
    OT_TRY(cms_scope_parse(v, &a->scope));
    len = sizeof(a->state);
    OT_TRY(db_col_text_copy(st, A + 7, a->state, &len));
    OT_TRY(db_col_int64(st, A + 8, &a->attempts));
    OT_TRY(db_col_int64(st, A + 9, &n));
    a->verify_first = n != 0;
    len = sizeof(a->hchal);
    OT_TRY(db_col_text_copy(st, A + 10, a->hchal, &len));
    len = sizeof(a->scp);
    OT_TRY(db_col_text_copy(st, A + 11, a->scp, &len));
    len = sizeof(a->aids);
    OT_TRY(db_col_text_copy(st, A + 12, a->aids, &len));
out:
    db_reset(st);
    if (err == OT_E_FORMAT) {
        err = OT_E_CORRUPT;
    }
    return err;
}

/* The plain commands of an action (docs/cms.md, "Destroy modes"), into
 * buf: each cmds[i] points into it. */
static ot_err cms_act_cmds(const struct cms_act *a, uint8_t *buf, size_t cap,
                           struct otascp_apdu *cmds, size_t *n)
{
    json_t *aids = NULL;
    size_t used = 0;
    ot_err err = OT_OK;

    *n = 0;
    if (a->verify_first) {
        /* Reading the card: GET DATA of the card's life cycle state (vse
         * DF7E; scope card) or of its application list (2F00; scope app),
         * both answered under the R-MAC in every state, TERMINATED too. */
        static const uint8_t lcs[] = {0x80, 0xCA, 0xDF, 0x7E, 0x00};
        static const uint8_t apps[] = {0x80, 0xCA, 0x2F, 0x00, 0x00};
        const uint8_t *q = a->scope == CMS_SC_APP && a->mode == CMS_M_SOFTWARE ? apps : lcs;
        memcpy(buf, q, 5);
        cmds[0].p = buf;
        cmds[0].n = 5;
        *n = 1;
        return OT_OK;
    }
    if (a->action == CMS_ACT_DESTROY && (a->scope == CMS_SC_CARD || a->mode != CMS_M_SOFTWARE)) {
        /* vse DESTROY: P1 01 software (wipe, delete, TERMINATED), 02
         * hardware (mute), 03 PUK exhaustion (telecom blocked, TERMINATED);
         * the last two are whole-card by nature. */
        buf[0] = 0x80;
        buf[1] = 0xDE;
        buf[2] = a->mode == CMS_M_HARDWARE ? 0x02 : a->mode == CMS_M_PUK ? 0x03 : 0x01;
        buf[3] = 0x00;
        cmds[0].p = buf;
        cmds[0].n = 4;
        *n = 1;
        return OT_OK;
    }
    if (json_parse(a->aids, strlen(a->aids), sizeof(a->aids), &aids, NULL) != OT_OK
        || !json_is_array(aids) || json_array_size(aids) == 0
        || json_array_size(aids) > CMS_AIDS_MAX) {
        OT_FAIL(OT_E_CORRUPT);
    }
    for (size_t i = 0; i < json_array_size(aids); i++) {
        const char *hx = json_string_value(json_array_get(aids, i));
        uint8_t aid[CMS_AID_MAX];
        size_t aid_n = sizeof(aid);
        if (hx == NULL || hex_decode(hx, strlen(hx), aid, &aid_n) != OT_OK
            || used + 7 + aid_n > cap) {
            OT_FAIL(OT_E_CORRUPT);
        }
        cmds[*n].p = buf + used;
        if (a->action == CMS_ACT_DESTROY) {
            /* scope app: DELETE of the payment instance (its data goes with it) */
            buf[used++] = 0x80;
            buf[used++] = 0xE4;
            buf[used++] = 0x00;
            buf[used++] = 0x00;
            buf[used++] = (uint8_t)(aid_n + 2);
            buf[used++] = 0x4F;
            buf[used++] = (uint8_t)aid_n;
        } else {
            /* SET STATUS of the application: locked (P2 80) or not (P2 00) */
            buf[used++] = 0x80;
            buf[used++] = 0xF0;
            buf[used++] = 0x40;
            buf[used++] = a->action == CMS_ACT_LOCK ? 0x80 : 0x00;
            buf[used++] = (uint8_t)aid_n;
        }
        memcpy(buf + used, aid, aid_n);
        used += aid_n;
        cmds[*n].n = (size_t)(buf + used - cmds[*n].p);
        (*n)++;
    }
out:
    json_free(aids);
    return err;
}

static ot_err cms_keys_of(struct cms *s, struct db_conn *c, const struct cms_card *card,
                          struct scp03_keyset *k)
{
    static const char *const which[3] = {"enc", "mac", "dek"};
    uint8_t *dst[3] = {k->enc, k->mac, k->dek};
    size_t lens[3] = {0, 0, 0};
    char name[128];
    ot_err err = OT_OK;

    memset(k, 0, sizeof(*k));
    k->kvn = (uint8_t)card->kvn;
    for (size_t i = 0; i < 3; i++) {
        cms_sd_key_name(card->cin, card->cin_n, card->sd_aid, card->sd_aid_n, which[i], name,
                        sizeof(name));
        lens[i] = SCP03_MAX_KEY;
        OT_TRY(keystore_get_c(s->ks, c, CMS_KEYSTORE_OWNER, name, (uint32_t)card->kvn, dst[i],
                              &lens[i], NULL));
    }
    if (lens[0] != lens[1] || lens[1] != lens[2]) {
        OT_FAIL(OT_E_KEY);
    }
    k->key_len = lens[0];
out:
    if (err != OT_OK) {
        ot_mem_wipe(k, sizeof(*k));
    }
    return err;
}

ot_err cms_new_hchal(char out[CMS_HCHAL_HEX])
{
    uint8_t b[8];

    if (RAND_bytes(b, (int)sizeof(b)) != 1) {
        return OT_E_CRYPTO;
    }
    return hex_encode(b, sizeof(b), out, CMS_HCHAL_HEX);
}

/* Applies the step in one transaction (the action row was claimed; its
 * state is checked again so a superseded action is left alone). A step
 * that forgets the job (clear_job) stores the next job's challenge with it.
 * A step due again at once (next_at 0) keeps the claim. */
static ot_err cms_step_apply(struct cms *s, const struct cms_act *a, const struct cms_card *card,
                             struct cms_step *sp)
{
    char fresh[CMS_HCHAL_HEX];
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    int64_t now = cms_now();
    bool row = false;
    ot_err err = OT_OK;

    if (sp->clear_job && sp->hchal == NULL) {
        OT_TRY(cms_new_hchal(fresh));
        sp->hchal = fresh;
    }
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_begin(c));
    OT_TRY(db_prepare(c,
                      "UPDATE cms_actions SET state = COALESCE(CAST($1 AS TEXT), state),"
                      " attempts = attempts + $2, next_at = $3, verify_first = $4,"
                      " hchal = CASE WHEN CAST($6 AS TEXT) IS NOT NULL THEN CAST($6 AS TEXT)"
                      "  WHEN $5 = 1 THEN NULL ELSE hchal END,"
                      " scp = CASE WHEN $5 = 1 THEN NULL WHEN $7 = 1 THEN CAST($8 AS TEXT)"
                      "  ELSE scp END,"
                      " mno_job = CASE WHEN $5 = 1 THEN NULL WHEN CAST($9 AS TEXT) IS NOT NULL"
                      "  THEN CAST($9 AS TEXT) ELSE mno_job END,"
                      " result = COALESCE(CAST($10 AS TEXT), result), claimed_until = $14,"
                      " updated_at = $11 WHERE id = $12 AND state = $13"
                      " AND COALESCE(hchal, '') = $15 AND COALESCE(scp, '') = $16",
                      &st));
    OT_TRY(db_bind_text(st, 1, sp->set_state));
    OT_TRY(db_bind_int64(st, 2, sp->attempt ? 1 : 0));
    OT_TRY(db_bind_int64(st, 3, sp->next_at));
    OT_TRY(db_bind_int64(st, 4, sp->verify_first ? 1 : 0));
    OT_TRY(db_bind_int64(st, 5, sp->clear_job ? 1 : 0));
    OT_TRY(db_bind_text(st, 6, sp->hchal));
    OT_TRY(db_bind_int64(st, 7, sp->save_scp ? 1 : 0));
    OT_TRY(db_bind_text(st, 8, sp->scp));
    OT_TRY(db_bind_text(st, 9, sp->mno_job));
    OT_TRY(db_bind_text(st, 10, sp->result));
    OT_TRY(db_bind_int64(st, 11, now));
    OT_TRY(db_bind_int64(st, 12, a->id));
    OT_TRY(db_bind_text(st, 13, a->state));
    /* A step due again at once stays this worker's (it goes on without
     * claiming the action again); any other lets the action go. */
    OT_TRY(db_bind_int64(st, 14, sp->next_at == 0 ? cms_now_ms() + s->claim_s * 1000 : 0));
    /* The step is about the action as this worker read it: the same state,
     * challenge and channel (so the same job). A worker whose claim ran out
     * in the middle of a step must not apply it over a later job's steps
     * (the state name alone comes back: pending -> submitted -> pending):
     * an outcome_unknown of an old job would forget the running one and a
     * second destroy would follow it. */
    OT_TRY(db_bind_text(st, 15, a->hchal));
    OT_TRY(db_bind_text(st, 16, a->scp));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) != 1) {
        OT_FAIL(OT_E_STATE); /* superseded meanwhile: nothing of this step counts */
    }
    db_reset(st);
    st = NULL;
    if (sp->submitted != NULL) {
        struct cms_card now_card;
        OT_TRY(cms_card_get(s, c, a->card_row, &now_card));
        OT_TRY(cms_history_add(s, c, a->card_row, "submitted", now_card.state, "platform", NULL,
                               sp->submitted));
    }
    if (sp->move && sp->ran_first) {
        err = cms_card_move(s, c, a->card_row, CMS_EV_RUNNING, a->cause, a->reason, NULL, NULL);
        if (err == OT_E_STATE) {
            err = OT_OK; /* destroying already */
        }
        OT_TRY(err);
    }
    if (sp->move) {
        err = cms_card_move(s, c, a->card_row, sp->ev, a->cause, a->reason,
                            sp->detail[0] ? sp->detail : NULL, NULL);
        if (err == OT_E_STATE && sp->ev != CMS_EV_DESTROYED && sp->ev != CMS_EV_LOCKED
            && sp->ev != CMS_EV_UNLOCKED) {
            err = OT_OK; /* running / interrupted: only where the table has them */
        }
        OT_TRY(err);
    } else if (sp->hist_event != NULL) {
        struct cms_card now_card;
        OT_TRY(cms_card_get(s, c, a->card_row, &now_card));
        OT_TRY(cms_history_add(s, c, a->card_row, sp->hist_event, now_card.state, "platform", NULL,
                               sp->detail[0] ? sp->detail : NULL));
    }
    if (a->action == CMS_ACT_DESTROY && !sp->move && sp->set_state != NULL
        && strcmp(sp->set_state, "stalled") == 0) {
        /* A destroy that stops for the operator waits again: a card the
         * job had moved to destroying goes back to awaiting_destroy (the
         * operator's list), the others stay where they are. */
        err = cms_card_move(s, c, a->card_row, CMS_EV_INTERRUPTED, a->cause, a->reason,
                            sp->detail[0] ? sp->detail : NULL, NULL);
        if (err == OT_E_STATE) {
            err = OT_OK;
        }
        OT_TRY(err);
    }
    if (sp->alert_kind != NULL) {
        OT_TRY(cms_alert_raise(s, c, a->card_row, a->id, sp->alert_kind, sp->detail));
    }
    if (sp->notify != NULL) {
        OT_TRY(cms_notify(s, c, card, sp->notify, sp->detail[0] ? sp->detail : NULL));
    }
    OT_TRY(db_commit(c));
    if (sp->move && sp->ev == CMS_EV_DESTROYED) {
        atomic_fetch_add(&s->m_destroyed, 1);
    }
out:
    db_reset(st);
    if (c != NULL) {
        (void)db_rollback(c);
        db_release(c);
    }
    return err;
}

/* A failed attempt: back off and try again, or stop with an alert. */
static void cms_step_failed(struct cms *s, const struct cms_act *a, struct cms_step *sp,
                            const char *why)
{
    int64_t n = a->attempts + 1;

    sp->attempt = true;
    sp->clear_job = true;
    sp->verify_first = a->verify_first;
    if (n >= s->max_attempts) {
        sp->alert_kind = "retries_exhausted";
        sp->result = why;
        if (a->action == CMS_ACT_DESTROY) {
            sp->set_state = "stalled"; /* a destroy is never given up: the operator retries */
            sp->hist_event = "stalled";
            sp->notify = "destroy.delayed";
        } else {
            sp->set_state = "failed";
            sp->move = true;
            sp->ev = a->action == CMS_ACT_LOCK ? CMS_EV_LOCK_FAILED : CMS_EV_UNLOCK_FAILED;
            sp->notify = a->action == CMS_ACT_LOCK ? "lock.failed" : "unlock.failed";
        }
    } else {
        int64_t shift = n - 1 < 16 ? n - 1 : 16;
        sp->set_state = "pending";
        sp->next_at = cms_now_ms() + ((s->backoff_s * 1000) << shift);
        sp->hist_event = "retry";
    }
    snprintf(sp->detail, sizeof(sp->detail),
             "{\"action\":\"%lld\",\"attempt\":%lld,\"why\":\"%s\"}", (long long)a->id,
             (long long)n, why);
}

/* *tc: the calling thread's client of the mno instances, made on first use. */
static ot_err cms_client(struct cms *s, struct tsm_client **tc)
{
    struct tsm_client_cfg cfg;
    struct tsm_client_err e;

    if (*tc != NULL) {
        return OT_OK;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.url = s->mno_url;
    cfg.token = s->mno_token;
    cfg.ca_file = s->mno_ca[0] ? s->mno_ca : NULL;
    cfg.timeout_ms = 15000;
    if (tsm_client_new(&cfg, tc, &e) != OT_OK) {
        OT_LOG_ERROR("mno_url: %s", e.text);
        return OT_E_ARG;
    }
    return OT_OK;
}

/* The card moves on the destroy job's progress while it runs
 * (awaiting_destroy <-> destroying). A job that only reads the card after
 * an unknown outcome leaves it awaiting_destroy: otherwise the destroy
 * submitted after it, seen queued, would record a second "interrupted"
 * for an interruption that did not happen. */
static void cms_progress(struct cms *s, const struct cms_act *a, const struct cms_card *card,
                         const char *job_state, struct cms_step *sp)
{
    (void)s;
    if (a->action != CMS_ACT_DESTROY || a->verify_first) {
        return;
    }
    if (strcmp(job_state, "running") == 0 && card->state == CMS_S_AWAITING_DESTROY) {
        sp->move = true;
        sp->ev = CMS_EV_RUNNING;
    } else if ((strcmp(job_state, "queued") == 0 || strcmp(job_state, "delivering") == 0)
               && card->state == CMS_S_DESTROYING) {
        sp->move = true;
        sp->ev = CMS_EV_INTERRUPTED;
    }
}

/* What a verified read of the card says (cms_act_cmds, verify_first): 1
 * the destroy is done (card TERMINATED; scope app: none of the card's
 * payment applications listed), 0 not done, -1 an answer that says
 * neither. */
static int cms_read_verdict(const struct cms_act *a, const struct otascp_resp *r)
{
    struct tlv t;
    json_t *aids = NULL;
    struct buf_rd rd;
    int v = 1;

    if (!(a->scope == CMS_SC_APP && a->mode == CMS_M_SOFTWARE)) {
        if (tlv_parse_one(r->data, r->len, &t) != OT_OK || t.tag != 0xDF7Eu || t.len != 1) {
            return -1;
        }
        return t.val[0] == 0xFFu ? 1 : 0; /* GPCS 11.1.1: FF TERMINATED */
    }
    if (json_parse(a->aids, strlen(a->aids), sizeof(a->aids), &aids, NULL) != OT_OK
        || !json_is_array(aids)) {
        json_free(aids);
        return -1;
    }
    buf_rd_init(&rd, r->data, r->len);
    while (rd.left > 0 && v >= 0) {
        struct tlv aid;
        if (tlv_next(&rd, &t) != OT_OK || t.tag != 0x61u
            || tlv_find(t.val, t.len, 0x4Fu, &aid) != OT_OK) {
            v = -1;
            break;
        }
        for (size_t i = 0; i < json_array_size(aids); i++) {
            const char *hx = json_string_value(json_array_get(aids, i));
            uint8_t b[CMS_AID_MAX];
            size_t bn = sizeof(b);
            if (hx != NULL && hex_decode(hx, strlen(hx), b, &bn) == OT_OK && bn == aid.len
                && memcmp(b, aid.val, bn) == 0) {
                v = 0; /* a payment application is still there */
            }
        }
    }
    json_free(aids);
    return v;
}

/* The verified result of a finished job. */
static void cms_judge(struct cms *s, const struct cms_act *a, const struct otascp_result *res,
                      const char *job_state, const char *job_id, struct cms_step *sp)
{
    bool all_ok = res->n > 0;

    for (size_t i = 0; i < res->n; i++) {
        if (!res->resp[i].ran || res->resp[i].sw != 0x9000) {
            all_ok = false;
        }
    }
    if (a->verify_first) {
        /* Reading the card after an unknown outcome: only an answer under a
         * verified R-MAC says anything. */
        int v = res->outcome == OTASCP_OK && res->authenticated && all_ok && res->n == 1
                    ? cms_read_verdict(a, &res->resp[0])
                    : -1;
        if (v == 0) {
            sp->set_state = "pending";
            sp->clear_job = true;
            sp->verify_first = false;
            sp->hist_event = "verified_not_destroyed";
            snprintf(sp->detail, sizeof(sp->detail),
                     "{\"job\":\"%s\",\"proof\":\"r-mac verified\",\"card\":\"alive\"}", job_id);
            return;
        }
        if (v == 1) {
            sp->set_state = "done";
            sp->result = a->scope == CMS_SC_APP && a->mode == CMS_M_SOFTWARE
                             ? "destroyed (card read: the payment applications are gone)"
                             : "destroyed (card read: TERMINATED)";
            sp->move = true;
            sp->ev = CMS_EV_DESTROYED;
            sp->notify = "destroyed";
            snprintf(sp->detail, sizeof(sp->detail),
                     "{\"job\":\"%s\",\"proof\":\"r-mac verified\",\"card\":\"%s\"}", job_id,
                     a->scope == CMS_SC_APP && a->mode == CMS_M_SOFTWARE ? "applications gone"
                                                                         : "terminated");
            return;
        }
        cms_step_failed(s, a, sp, "the card could not be read");
        return;
    }
    if (res->outcome == OTASCP_OK && all_ok && res->authenticated) {
        sp->set_state = "done";
        sp->result = "ok";
        sp->move = true;
        sp->ev = a->action == CMS_ACT_DESTROY ? CMS_EV_DESTROYED
                 : a->action == CMS_ACT_LOCK  ? CMS_EV_LOCKED
                                              : CMS_EV_UNLOCKED;
        sp->notify = a->action == CMS_ACT_DESTROY ? "destroyed"
                     : a->action == CMS_ACT_LOCK  ? "locked"
                                                  : "unlocked";
        snprintf(sp->detail, sizeof(sp->detail), "{\"job\":\"%s\",\"proof\":\"r-mac verified\"}",
                 job_id);
        return;
    }
    if (res->outcome == OTASCP_OK && !res->authenticated) {
        sp->set_state = "stalled";
        sp->alert_kind = "no_proof";
        sp->hist_event = "result_refused";
        snprintf(sp->detail, sizeof(sp->detail),
                 "{\"job\":\"%s\",\"why\":\"success without the card's R-MAC\"}", job_id);
        return;
    }
    if (res->outcome == OTASCP_AUTH_FAILED) {
        sp->set_state = "stalled";
        sp->alert_kind = "auth_failed";
        sp->hist_event = "stalled";
        snprintf(sp->detail, sizeof(sp->detail),
                 "{\"job\":\"%s\",\"iu_sw\":\"%04X\",\"ea_sw\":\"%04X\"}", job_id, res->iu_sw,
                 res->ea_sw);
        return;
    }
    if (res->outcome == OTASCP_INCOMPLETE && strcmp(job_state, "outcome_unknown") == 0) {
        /* The phone went away mid-destroy: read the card before anything else. */
        sp->set_state = "pending";
        sp->clear_job = true;
        sp->verify_first = true;
        sp->hist_event = "outcome_unknown";
        if (a->action == CMS_ACT_DESTROY) {
            sp->move = true;
            sp->ran_first = true;
            sp->ev = CMS_EV_INTERRUPTED;
        }
        snprintf(sp->detail, sizeof(sp->detail), "{\"job\":\"%s\",\"next\":\"read the card\"}",
                 job_id);
        return;
    }
    {
        char why[96];
        snprintf(why, sizeof(why), "job %s: %s (%s)", job_id, otascp_outcome_name(res->outcome),
                 job_state);
        cms_step_failed(s, a, sp, why);
        sp->result = NULL;
    }
}

/* Whether the worker waits on the job (GET /jobs/{id}?wait) rather than
 * reading it again later: the job runs (the phone is there), or it is
 * queued but the phone was online at the submit (live: the job is about to
 * be delivered), and it has nothing for the next step yet. */
static bool cms_job_worth_waiting(const struct otascp_state *st, const json_t *doc, bool live)
{
    const char *js = json_string_value(json_object_get(doc, "state"));
    const json_t *scripts = json_object_get(doc, "scripts");

    if (js == NULL
        || !(strcmp(js, "queued") == 0 || strcmp(js, "delivering") == 0
             || strcmp(js, "running") == 0)) {
        return false; /* over (done, failed, outcome_unknown, ...) */
    }
    if (strcmp(js, "queued") == 0 && !live) {
        return false; /* the phone is away: read again later */
    }
    if (st->phase == OTASCP_PH_IU) {
        for (size_t i = 0; i < json_array_size(scripts); i++) {
            const json_t *sc = json_array_get(scripts, i);
            if (json_integer_value(json_object_get(sc, "seq")) == 1
                && !json_is_null(json_object_get(sc, "rapdus"))
                && json_object_get(sc, "rapdus") != NULL) {
                return false; /* the card answered INITIALIZE UPDATE: batch 2 now */
            }
        }
    }
    return true;
}

/* How long a job queued for an away phone waits for its next read: a
 * second, growing with the time it has been queued up to CMS_QUEUED_MAX_MS
 * (tens of thousands of phones off must not keep the driver busy). */
static int64_t cms_queued_poll_ms(const json_t *doc)
{
    json_t *u = json_object_get(doc, "updated_at");
    int64_t age_ms = u != NULL ? (cms_now() - json_integer_value(u)) * 1000 : 0;
    int64_t ms = age_ms / 4;

    return ms < CMS_QUEUED_MS ? CMS_QUEUED_MS : ms > CMS_QUEUED_MAX_MS ? CMS_QUEUED_MAX_MS : ms;
}

/* What a worker keeps between the steps of the one action it goes on with
 * (cms_act_work), in memory only: a step reads the action and its card
 * again and applies by a compare-and-set, so this saves reads and requests
 * and decides nothing. */
struct cms_work {
    bool live;  /* the phone is there: the job is waited on at once, not read first */
    bool keyed; /* keys are the SD's keys of card_row's card */
    int64_t card_row;
    struct scp03_keyset keys;
};

/* Whether mno's job state says the phone has the job (woken, or running it). */
static bool cms_job_live(const char *job_state)
{
    return strcmp(job_state, "delivering") == 0 || strcmp(job_state, "running") == 0;
}

/* One step of action id (claimed by the caller) with the client *tc; w
 * (in/out): what this worker kept from the action's previous step. True
 * when the step is committed and the action is due again at once (the
 * caller claims it again and goes on). */
static bool cms_act_run(struct cms *s, struct tsm_client **tc, int64_t id, struct cms_work *w)
{
    struct db_conn *c = NULL;
    struct cms_act a;
    struct cms_card card;
    struct cms_step sp;
    struct otascp_state st;
    struct otascp_result res;
    struct otascp_target t;
    struct otascp_cfg cfg;
    struct otascp_apdu cmds[CMS_CMDS_MAX];
    struct mno_client *m = NULL;
    struct tsm_client_err e;
    uint8_t cmdbuf[CMS_CMDS_MAX * 32];
    uint8_t hchal[8];
    size_t hn = sizeof(hchal);
    size_t ncmds = 0;
    char cin[2 * CMS_CIN_MAX + 1];
    char idem[64];
    char scp[OTASCP_STATE_MAX];
    char hchal_hex[CMS_HCHAL_HEX];
    char submitted[256];
    json_t *doc = NULL;
    bool finished = false;
    bool again = false;
    bool was_live = w->live;
    ot_err err = OT_OK;

    w->live = false;
    memset(&sp, 0, sizeof(sp));
    memset(&st, 0, sizeof(st));
    memset(&res, 0, sizeof(res));
    memset(&e, 0, sizeof(e));
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(cms_act_load(c, id, &a, &card));
    if (w->keyed && w->card_row != a.card_row) {
        ot_mem_wipe(&w->keys, sizeof(w->keys));
        w->keyed = false;
    }
    if (!w->keyed && strcmp(a.state, "pending") == 0) {
        /* The submit needs them; a read of a job still queued does not. */
        OT_TRY(cms_keys_of(s, c, &card, &w->keys));
        w->keyed = true;
        w->card_row = a.card_row;
    }
    db_release(c);
    c = NULL;
    sp.verify_first = a.verify_first;
    sp.next_at = cms_now_ms() + s->tick_ms;
    err = cms_act_cmds(&a, cmdbuf, sizeof(cmdbuf), cmds, &ncmds);
    OT_TRY(err);
    OT_TRY(cms_client(s, tc));
    OT_TRY(mno_client_new(*tc, card.mno, &m));
    OT_TRY(hex_encode(card.cin, card.cin_n, cin, sizeof(cin)));
    /* The host challenge is fresh for every new job (and kept with the
     * action before the submit): one key per job's content, so a resubmit
     * after a crash finds its job and a new job after reading the card
     * (same attempt) is not taken for a replay of the old one. */
    snprintf(idem, sizeof(idem), "cms-%lld-%lld-%.16s%s", (long long)a.id, (long long)a.attempts,
             a.hchal, a.verify_first ? "-read" : "");
    memset(&t, 0, sizeof(t));
    t.msisdn = card.msisdn;
    t.se_cin = cin;
    t.priority = a.action == CMS_ACT_DESTROY ? 9 : 7;
    t.ttl_s = s->job_ttl_s;
    t.max_attempts = 10;
    t.destructive = a.action == CMS_ACT_DESTROY && !a.verify_first;
    t.idem_key = idem;
    memset(&cfg, 0, sizeof(cfg));
    cfg.keys = &w->keys;
    cfg.level = 0x33;
    cfg.sd_aid = card.sd_aid;
    cfg.sd_aid_len = card.sd_aid_n;

    if (strcmp(a.state, "pending") == 0) {
        static const char *const fmt =
            "{\"job\":\"%s\",\"device\":\"%s\",\"location_area\":\"%s\"%s}";
        char device[16] = "unknown";
        char la[33] = "";
        if (a.hchal[0] == '\0') {
            /* The challenge is kept before the job goes out: a crash after
             * the submit submits the very same job again. (An action gets
             * its first one with its row, the next ones with the step that
             * forgets a job: this is for an operator's retry.) */
            OT_TRY(cms_new_hchal(hchal_hex));
            sp.hchal = hchal_hex;
            sp.set_state = "pending";
            sp.next_at = 0;
            OT_TRY(cms_step_apply(s, &a, &card, &sp));
            again = true;
            goto out;
        }
        OT_TRY(hex_decode(a.hchal, strlen(a.hchal), hchal, &hn));
        cfg.host_challenge = hchal;
        /* The job first: mno wakes an online phone in the submit's own
         * transaction, so its answer is the seed's status lookup for a
         * phone that is there (delivering: online). */
        err = otascp_submit(m, &t, &cfg, cmds, ncmds, &st, &e);
        if (err != OT_OK && e.fail != TSM_CLIENT_HTTP && e.fail != TSM_CLIENT_LOCAL) {
            /* mno did not answer: the very same job later (its key finds
             * it if it was taken), no attempt counted */
            OT_LOG_WARN("action=%lld submit: %s", (long long)a.id, e.text);
            sp.next_at = cms_now_ms() + (s->backoff_s > 0 ? s->backoff_s * 1000 : 1000);
            sp.set_state = "pending";
            err = cms_step_apply(s, &a, &card, &sp);
            goto out;
        }
        if (err != OT_OK) {
            char why[160];
            snprintf(why, sizeof(why), "submit: %.140s", e.code[0] ? e.code : e.text);
            cms_step_failed(s, &a, &sp, why);
            err = cms_step_apply(s, &a, &card, &sp);
            goto out;
        }
        if (cms_job_live(st.job_state)) {
            /* The phone has the job: it is waited on at once, in this step
             * (a crash before the step's commit submits the very same job
             * again, which mno answers with the job it has). */
            snprintf(submitted, sizeof(submitted), fmt, st.job, "online", "",
                     a.verify_first ? ",\"purpose\":\"read the card\"" : "");
            sp.submitted = submitted;
            OT_TRY(otascp_state_encode(&st, scp, sizeof(scp)));
            sp.save_scp = true;
            sp.scp = scp;
            sp.mno_job = st.job;
            was_live = true;
            goto job;
        } else {
            /* Queued: the phone is off (the card waits awaiting_destroy in
             * both platforms) or busy with another job. The status lookup
             * by mobile identity says which, with its location area. */
            err = mno_client_status(m, "imsi", card.imsi, &doc, &e);
            if (err == OT_OK) {
                const char *o = json_string_value(json_object_get(doc, "state"));
                const char *l = json_string_value(json_object_get(doc, "location_area"));
                snprintf(device, sizeof(device), "%s", o != NULL ? o : "unknown");
                snprintf(la, sizeof(la), "%s", l != NULL ? l : "");
            } else {
                OT_LOG_WARN("action=%lld status lookup: %s", (long long)a.id, e.text);
                err = OT_OK; /* the job is out: read like any queued job */
            }
        }
        OT_TRY(otascp_state_encode(&st, scp, sizeof(scp)));
        sp.set_state = "submitted";
        sp.save_scp = true;
        sp.scp = scp;
        sp.mno_job = st.job;
        sp.hist_event = "submitted";
        if (strcmp(device, "offline") != 0) {
            /* The phone is there: wait on the job at once. */
            sp.next_at = 0;
        } else {
            sp.next_at = cms_now_ms() + CMS_QUEUED_MS;
        }
        snprintf(sp.detail, sizeof(sp.detail), fmt, st.job, device, la,
                 a.verify_first ? ",\"purpose\":\"read the card\"" : "");
        OT_TRY(cms_step_apply(s, &a, &card, &sp));
        again = sp.next_at == 0;
        w->live = again;
        goto out;
    }

    /* submitted: where is the job? */
    if (otascp_state_decode(a.scp, &st) != OT_OK) {
        OT_FAIL(OT_E_CORRUPT);
    }
job:
    for (unsigned round = 0;; round++) {
        const char *js;
        char job_state[24];
        char job_id[OTASCP_JOB_ID_MAX + 1];
        bool iu = st.phase == OTASCP_PH_IU;
        json_free(doc);
        doc = NULL;
        if (was_live) {
            /* The phone is there: wait on the job at once (mno answers when
             * the card answered or the job ended: no timer in between, at
             * most CMS_WAIT_S). */
            err = mno_client_job_wait(m, st.job, CMS_WAIT_S, iu ? 1 : 0, &doc, &e);
        } else {
            err = mno_client_job(m, st.job, &doc, &e);
            if (err == OT_OK && cms_job_worth_waiting(&st, doc, false)) {
                json_t *wd = NULL;
                if (mno_client_job_wait(m, st.job, CMS_WAIT_S, iu ? 1 : 0, &wd, &e) == OT_OK) {
                    json_free(doc);
                    doc = wd;
                }
            }
        }
        if (err != OT_OK) {
            OT_LOG_WARN("action=%lld job %s: %s", (long long)a.id, st.job, e.text);
            sp.set_state = "submitted";
            sp.next_at = cms_now_ms() + (s->backoff_s > 0 ? s->backoff_s * 1000 : 1000);
            err = cms_step_apply(s, &a, &card, &sp);
            goto out;
        }
        js = json_string_value(json_object_get(doc, "state"));
        snprintf(job_state, sizeof(job_state), "%s", js != NULL ? js : "?");
        snprintf(job_id, sizeof(job_id), "%s", st.job);
        if (!w->keyed && strcmp(job_state, "queued") != 0 && strcmp(job_state, "delivering") != 0) {
            /* The card answered or the job is over: batch 2 or the
             * verification need the keys (a job still waiting for its phone
             * is read without them: otascp_advance touches them only then). */
            OT_TRY(db_acquire(s->db, &c));
            err = cms_keys_of(s, c, &card, &w->keys);
            db_release(c);
            c = NULL;
            OT_TRY(err);
            w->keyed = true;
            w->card_row = a.card_row;
        }
        err = otascp_advance(m, &t, &w->keys, cmds, ncmds, &st, doc, &res, &finished, &e);
        sp.set_state = "submitted";
        if (err == OT_E_RMAC || err == OT_E_CARD_CRYPTOGRAM
            || (err != OT_OK && e.fail == TSM_CLIENT_LOCAL && strcmp(job_state, "done") == 0)) {
            /* mno or the device says how it went, the card does not prove it
             * (a forged cryptogram, an R-MAC that does not verify, or a job
             * mno calls done whose answers are not the card's: no R-MAC). */
            sp.set_state = "stalled";
            sp.alert_kind = "no_proof";
            sp.hist_event = "result_refused";
            snprintf(sp.detail, sizeof(sp.detail), "{\"job\":\"%s\",\"why\":\"%s\"}", job_id,
                     err == OT_E_RMAC              ? "an R-MAC does not verify"
                     : err == OT_E_CARD_CRYPTOGRAM ? "the card cryptogram does not verify"
                                                   : "done without the card's R-MACs: the answers "
                                                     "do not verify");
            err = cms_step_apply(s, &a, &card, &sp);
            goto out;
        }
        if (err != OT_OK && e.fail == TSM_CLIENT_LOCAL) {
            /* The channel cannot go on (a level the card does not allow, a
             * malformed answer): the operator looks at it. */
            sp.set_state = "stalled";
            sp.alert_kind = "channel_failed";
            sp.hist_event = "stalled";
            snprintf(sp.detail, sizeof(sp.detail), "{\"job\":\"%s\",\"why\":\"%.200s: %s\"}",
                     job_id, e.text, ot_strerror(err));
            err = cms_step_apply(s, &a, &card, &sp);
            goto out;
        }
        if (err != OT_OK) {
            OT_LOG_WARN("action=%lld job %s: %s", (long long)a.id, job_id, e.text);
            err = cms_step_apply(s, &a, &card, &sp);
            goto out;
        }
        OT_TRY(otascp_state_encode(&st, scp, sizeof(scp)));
        sp.save_scp = true;
        sp.scp = scp;
        sp.mno_job = st.job;
        if (!finished && round == 0 && iu && st.phase == OTASCP_PH_BATCH2
            && strcmp(job_state, "running") == 0) {
            /* Batch 2 is out: the job's end is waited for at once, in this
             * step (nothing is committed in between: a crash sends the very
             * same batch 2 again under its key, which mno answers as sent,
             * and the answers verify the same). */
            was_live = true;
            sp.ran_first = a.action == CMS_ACT_DESTROY && !a.verify_first;
            continue;
        }
        if (!finished) {
            if (strcmp(job_state, "queued") == 0 && !was_live) {
                sp.next_at = cms_now_ms() + cms_queued_poll_ms(doc); /* the phone is away */
            } else if (strcmp(job_state, "queued") == 0) {
                /* live at the submit but not delivered yet: waited on once
                 * more, then read like any queued job */
                sp.next_at = 0;
            } else {
                sp.next_at = 0; /* it runs: wait on it again */
            }
            sp.ran_first = false;
            cms_progress(s, &a, &card, job_state, &sp);
            OT_TRY(cms_step_apply(s, &a, &card, &sp));
            again = sp.next_at == 0;
            w->live = again && cms_job_live(job_state);
            goto out;
        }
        if (strcmp(job_state, "outcome_unknown") == 0) {
            json_t *ans = NULL;
            (void)mno_client_job_resolve(m, job_id, "fail", &ans, &e);
            json_free(ans);
        }
        cms_judge(s, &a, &res, job_state, job_id, &sp);
        OT_TRY(cms_step_apply(s, &a, &card, &sp));
        OT_LOG_INFO("action=%lld card=%s job=%s %s -> %s", (long long)a.id, card.card_id, job_id,
                    otascp_outcome_name(res.outcome), sp.set_state ? sp.set_state : "-");
        break;
    }
out:
    if (err != OT_OK && err != OT_E_STATE) {
        OT_LOG_WARN("action=%lld: %s", (long long)id, ot_strerror(err));
    }
    otascp_result_free(&res);
    json_free(doc);
    mno_client_free(m);
    db_release(c);
    return err == OT_OK && again;
}

/* A superseded lock or unlock: cancel its job once (best effort: if the card
 * ran it meanwhile, the destroy follows anyway). */
static void cms_cancel_superseded(struct cms *s, struct tsm_client **tc, int64_t id,
                                  const char *card_mno, const char *job)
{
    struct mno_client *m = NULL;
    struct tsm_client_err e;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    json_t *ans = NULL;
    bool row = false;
    ot_err err = OT_OK;

    if (cms_client(s, tc) == OT_OK && mno_client_new(*tc, card_mno, &m) == OT_OK) {
        (void)mno_client_job_cancel(m, job, &ans, &e);
    }
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_prepare(c, "UPDATE cms_actions SET result = 'cancelled' WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    db_release(c);
    json_free(ans);
    mno_client_free(m);
}

/* The superseded actions whose job is still out: cancelled once (at most
 * one tick apart; tc: the calling thread's client). */
static ot_err cms_superseded_pass(struct cms *s, struct tsm_client **tc, struct db_conn *c)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    for (;;) {
        char mno[SVC_NAME_MAX + 1];
        char job[OTASCP_JOB_ID_MAX + 1];
        int64_t id = 0;
        size_t len;
        OT_TRY(db_prepare(c,
                          "SELECT a.id, c.mno, a.mno_job FROM cms_actions a JOIN cms_cards c"
                          " ON c.id = a.card WHERE a.state = 'superseded'"
                          " AND a.mno_job IS NOT NULL AND a.result IS NULL LIMIT 1",
                          &st));
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_int64(st, 0, &id));
        len = sizeof(mno);
        OT_TRY(db_col_text_copy(st, 1, mno, &len));
        len = sizeof(job);
        OT_TRY(db_col_text_copy(st, 2, job, &len));
        db_reset(st);
        st = NULL;
        cms_cancel_superseded(s, tc, id, mno, job);
    }
out:
    db_reset(st);
    return err;
}

/* Claims up to max due actions in one statement: claimed_until moves past
 * now only where it had passed (a compare-and-set per row), so an action is
 * worked by one node and one worker at a time; PostgreSQL skips the rows
 * another node is claiming (FOR UPDATE SKIP LOCKED) instead of waiting for
 * them. ids[0..*n) are this caller's. */
static ot_err cms_claim(struct cms *s, struct db_conn *c, int64_t *ids, size_t max, size_t *n)
{
    /* The candidates are picked once (a CTE): an UPDATE ... WHERE id IN
     * (SELECT ... LIMIT) may run its subquery again and claim more rows
     * than asked for. They come from the partial index cms_actions_live in
     * next_at order (a seek and the limit, no sort); PostgreSQL updates
     * them by primary key (= ANY of the array: a join with the CTE was
     * planned as a scan of every live action once the plan went generic). */
    static const char *const sql =
        "WITH due AS (SELECT id FROM cms_actions"
        " WHERE state IN ('pending', 'submitted') AND next_at <= $2 AND claimed_until < $2"
        " ORDER BY next_at, id LIMIT $3)"
        " UPDATE cms_actions SET claimed_until = $1 WHERE id IN (SELECT id FROM due)"
        " AND claimed_until < $2 AND state IN ('pending', 'submitted') RETURNING id";
    static const char *const sql_pg =
        "WITH due AS MATERIALIZED (SELECT id FROM cms_actions"
        " WHERE state IN ('pending', 'submitted') AND next_at <= $2 AND claimed_until < $2"
        " ORDER BY next_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)"
        " UPDATE cms_actions a SET claimed_until = $1 WHERE a.id = ANY(ARRAY(SELECT id FROM due))"
        " AND a.claimed_until < $2 AND a.state IN ('pending', 'submitted') RETURNING a.id";
    struct db_stmt *st = NULL;
    int64_t now = cms_now_ms();
    int64_t extra[CMS_CLAIM_BATCH];
    size_t n_extra = 0;
    bool row = false;
    ot_err err = OT_OK;

    *n = 0;
    if (max == 0) {
        return OT_OK;
    }
    OT_TRY(db_prepare(c, db_kind(s->db) == DB_PG ? sql_pg : sql, &st));
    OT_TRY(db_bind_int64(st, 1, now + s->claim_s * 1000));
    OT_TRY(db_bind_int64(st, 2, now));
    OT_TRY(db_bind_int64(st, 3, (int64_t)max));
    for (;;) {
        int64_t id = 0;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_int64(st, 0, &id));
        if (*n < max) {
            ids[(*n)++] = id;
        } else if (n_extra < CMS_CLAIM_BATCH) {
            extra[n_extra++] = id;
        }
    }
    db_reset(st);
    st = NULL;
    /* Never more than asked for; should it happen, the surplus is let go at
     * once rather than held for claim_s. */
    for (size_t i = 0; i < n_extra; i++) {
        OT_TRY(db_prepare(c, "UPDATE cms_actions SET claimed_until = 0 WHERE id = $1", &st));
        OT_TRY(db_bind_int64(st, 1, extra[i]));
        OT_TRY(db_step(st, &row));
        db_reset(st);
        st = NULL;
    }
out:
    db_reset(st);
    return err;
}

/* Lets action id go (the worker kept its claim to go on with it). */
static void cms_claim_release(struct cms *s, int64_t id)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_prepare(c, "UPDATE cms_actions SET claimed_until = 0 WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    db_release(c);
}

/* Runs claimed action id and the steps that follow at once (the worker
 * keeps the claim between them; at most CMS_AGAIN_MAX in a row: then it
 * goes back to the queue like any due action). */
static void cms_act_work(struct cms *s, struct tsm_client **tc, int64_t id)
{
    struct cms_work w;
    unsigned runs = 0;

    memset(&w, 0, sizeof(w));
    while (cms_act_run(s, tc, id, &w)) {
        bool stop;
        pthread_mutex_lock(&s->mu);
        stop = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stop || ++runs >= CMS_AGAIN_MAX) {
            cms_claim_release(s, id); /* due at once: the next pass takes it */
            break;
        }
    }
    ot_mem_wipe(&w, sizeof(w));
}

void cms_driver_once(struct cms *s)
{
    struct db_conn *c = NULL;
    int64_t ids[CMS_CLAIM_BATCH];
    size_t n = 0;
    ot_err err = OT_OK;

    if (s->mno_token[0] == '\0') {
        return; /* nothing can be sent (docs/CONFIG.md cms.mno_token) */
    }
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(cms_superseded_pass(s, &s->tc, c));
    OT_TRY(cms_claim(s, c, ids, CMS_CLAIM_BATCH, &n));
    db_release(c);
    c = NULL;
    for (size_t i = 0; i < n; i++) {
        cms_act_work(s, &s->tc, ids[i]);
    }
out:
    db_release(c);
    if (err != OT_OK) {
        OT_LOG_WARN("driver pass: %s", ot_strerror(err));
    }
}

/* ---- the threads ---------------------------------------------------------- */

struct cms_worker {
    struct cms *s;
    pthread_t th;
    bool on;
    struct tsm_client *tc;
};

void cms_driver_kick(struct cms *s)
{
    pthread_mutex_lock(&s->mu);
    s->kicked = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void *cms_worker_main(void *arg)
{
    struct cms_worker *w = arg;
    struct cms *s = w->s;

    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        int64_t id;
        if (s->q_len == 0) {
            pthread_cond_wait(&s->work_cv, &s->mu);
            continue;
        }
        id = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % s->n_wk;
        s->q_len--;
        s->busy++;
        pthread_mutex_unlock(&s->mu);
        cms_act_work(s, &w->tc, id);
        pthread_mutex_lock(&s->mu);
        s->busy--;
        s->kicked = true; /* a free worker: the dispatcher claims more */
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The dispatcher: claims as many due actions as there are idle workers,
 * at once after a request (kick) or a worker's end, else every tick_ms. A
 * claimed action waits in the queue (claimed, so no other node takes it). */
static void *cms_driver_main(void *arg)
{
    struct cms *s = arg;
    int64_t last_superseded = 0;

    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        struct timespec until;
        size_t room = s->n_wk - s->q_len - s->busy;
        int64_t ids[CMS_CLAIM_BATCH];
        size_t n = 0;
        s->kicked = false;
        pthread_mutex_unlock(&s->mu);
        if (s->mno_token[0] != '\0') {
            struct db_conn *c = NULL;
            int64_t now = cms_now_ms();
            if (db_acquire(s->db, &c) == OT_OK) {
                if (now - last_superseded >= s->tick_ms) {
                    last_superseded = now;
                    if (cms_superseded_pass(s, &s->tc, c) != OT_OK) {
                        OT_LOG_WARN("driver: superseded actions not cancelled");
                    }
                }
                if (cms_claim(s, c, ids, room < CMS_CLAIM_BATCH ? room : CMS_CLAIM_BATCH, &n)
                    != OT_OK) {
                    OT_LOG_WARN("driver: no action claimed");
                    n = 0;
                }
                db_release(c);
            }
        }
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < n; i++) {
            s->queue[(s->q_head + s->q_len) % s->n_wk] = ids[i];
            s->q_len++;
        }
        if (n > 0) {
            pthread_cond_broadcast(&s->work_cv);
        }
        if (s->stopping || s->kicked) {
            continue;
        }
        ot_deadline_after_ms((long)s->tick_ms, &until);
        (void)pthread_cond_timedwait(&s->cv, &s->mu, &until);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

ot_err cms_driver_start(struct cms *s)
{
    ot_err err = OT_OK;

    s->n_wk = (size_t)(s->workers > 0 ? s->workers : 1);
    s->wk = calloc(s->n_wk, sizeof(*s->wk));
    s->queue = calloc(s->n_wk, sizeof(*s->queue));
    if (s->wk == NULL || s->queue == NULL) {
        err = OT_E_NOMEM;
    }
    for (size_t i = 0; i < s->n_wk && err == OT_OK; i++) {
        s->wk[i].s = s;
        err = ot_thread_start(&s->wk[i].th, cms_worker_main, &s->wk[i]);
        s->wk[i].on = err == OT_OK;
    }
    if (err == OT_OK) {
        err = ot_thread_start(&s->driver, cms_driver_main, s);
        s->driver_on = err == OT_OK;
    }
    if (err != OT_OK) {
        cms_driver_stop(s);
    }
    return err;
}

void cms_driver_stop(struct cms *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    if (s->driver_on) {
        pthread_join(s->driver, NULL);
        s->driver_on = false;
    }
    for (size_t i = 0; s->wk != NULL && i < s->n_wk; i++) {
        if (s->wk[i].on) {
            pthread_join(s->wk[i].th, NULL);
            s->wk[i].on = false;
        }
        tsm_client_free(s->wk[i].tc);
        s->wk[i].tc = NULL;
    }
    free(s->wk);
    s->wk = NULL;
    free(s->queue);
    s->queue = NULL;
    s->n_wk = 0;
    s->q_len = 0;
    tsm_client_free(s->tc);
    s->tc = NULL;
}
