/* payterm: the commands (payterm.h), over its modules. */
#define OT_LOG_COMPONENT "payterm"
#include "payterm/payterm.h"

#include "core/log.h"

#include "agent/conv.h"
#include "core/buf.h"
#include "core/hex.h"
#include "payterm/journal.h"
#include "payterm/pt_priv.h"

#include <openssl/rand.h>

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const uint8_t pt_sam_aid[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x06, 0x01, 0xAA};

static int64_t pt_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One reader of the converter ("NAME=" + spec), its session and its basic
 * channel (with aid selected when given). */
static ot_err pt_reader(struct pt *t, const char *name, const char *spec, const uint8_t *aid,
                        size_t aid_len, struct agent_session **s, struct agent_channel **ch)
{
    char line[512];
    char why[160];
    ot_err err;

    snprintf(line, sizeof(line), "%s=%s", name, spec);
    err = agent_service_add(t->svc, line, why, sizeof(why));
    if (err == OT_OK) {
        err = agent_reader_open_session(agent_service_reader(t->svc, name), s);
    }
    if (err == OT_OK) {
        err = agent_session_open_basic(*s, aid, aid_len, ch);
    }
    return err;
}

ot_err pt_open(struct pt *t, const struct payterm_cfg *cfg, bool need_rf)
{
    struct pay_client_cfg pc;
    ot_err err;

    memset(t, 0, sizeof(*t));
    t->cfg = cfg;
    if (cfg->url == NULL || cfg->client == NULL || cfg->sam == NULL
        || (need_rf && cfg->rf == NULL)) {
        return OT_E_ARG;
    }
    memset(&pc, 0, sizeof(pc));
    pc.url = cfg->url;
    pc.token = cfg->token;
    pc.ca_file = cfg->ca_file;
    pc.insecure = cfg->insecure;
    err = pay_client_new(&pc, &t->pay);
    if (err == OT_OK) {
        err = agent_service_new(0, &t->svc);
    }
    if (err == OT_OK) {
        err = pt_reader(t, "SAM", cfg->sam, pt_sam_aid, sizeof(pt_sam_aid), &t->sam_s, &t->sam);
    }
    if (err == OT_OK && need_rf) {
        err = pt_reader(t, "RF", cfg->rf, NULL, 0, &t->rf_s, &t->rf);
    }
    return err;
}

void pt_close(struct pt *t)
{
    agent_service_free(t->svc); /* closes the sessions and channels */
    pay_client_free(t->pay);
    memset(t, 0, sizeof(*t));
}

ot_err pt_req(struct pt *t, struct pay_msg *m, enum pay_msg_type type, const char *id,
              const char *sp)
{
    uint8_t nonce[PAY_NONCE_LEN];
    int64_t now = pt_now_us();
    ot_err err;

    /* seq: the microsecond clock, strictly increasing within a run too */
    t->seq = now > t->seq ? now : t->seq + 1;
    pay_msg_init(m, type);
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        return OT_E_CRYPTO;
    }
    if ((err = pay_msg_set_str(m, PAY_F_ID, id)) != OT_OK
        || (err = pay_msg_set_str(m, PAY_F_CLIENT, t->cfg->client)) != OT_OK
        || (err = pay_msg_set_str(m, PAY_F_SP, sp)) != OT_OK
        || (err = pay_msg_set_bytes(m, PAY_F_NONCE, nonce, sizeof(nonce))) != OT_OK) {
        return err;
    }
    pay_msg_set_int(m, PAY_F_TS, now / 1000);
    pay_msg_set_int(m, PAY_F_SEQ, t->seq);
    return OT_OK;
}

static int pt_fail(struct pt *t, const char *what, ot_err err, const struct pay_client_err *e)
{
    pt_ui_error(t, what, err, e);
    pt_close(t);
    return PAYTERM_FAIL;
}

int payterm_enrol(const struct payterm_cfg *cfg)
{
    struct pt t;
    struct pay_client_err e;
    uint8_t pub[65];
    char hex[131];
    ot_err err;

    memset(&e, 0, sizeof(e));
    err = pt_open(&t, cfg, false);
    if (err == OT_OK) {
        err = pt_sam_pub(&t, pub);
    }
    if (err == OT_OK) {
        err = pay_client_enrol(t.pay, cfg->client, pub, &e);
    }
    if (err != OT_OK) {
        return pt_fail(&t, "enrol_failed", err, &e);
    }
    (void)hex_encode(pub, sizeof(pub), hex, sizeof(hex));
    {
        const char *kv[] = {"client", cfg->client, "dongle_pub", hex, NULL, NULL};
        pt_ui_result(&t, "enrolled", kv);
    }
    pt_close(&t);
    return PAYTERM_OK;
}

int payterm_keys(const struct payterm_cfg *cfg)
{
    struct pt t;
    struct pay_client_err e;
    size_t loaded = 0;
    size_t revoked = 0;
    char l[24], r[24];
    ot_err err;

    memset(&e, 0, sizeof(e));
    err = pt_open(&t, cfg, false);
    if (err == OT_OK) {
        err = pt_keys_sync(&t, &loaded, &revoked, &e);
    }
    if (err != OT_OK) {
        return pt_fail(&t, "keys_failed", err, &e);
    }
    snprintf(l, sizeof(l), "#%zu", loaded);
    snprintf(r, sizeof(r), "#%zu", revoked);
    {
        const char *kv[] = {"client", cfg->client, "loaded", l, "revoked", r, NULL, NULL};
        pt_ui_result(&t, "keys", kv);
    }
    pt_close(&t);
    return PAYTERM_OK;
}

/* Reports a result message; PAYTERM_OK when approved. */
static int pt_report(struct pt *t, const char *what, const struct pay_msg *res, int64_t amount)
{
    char a[24], tries[8];
    const char *kv[] = {
        "id",        res->id,
        "sp",        res->sp,
        "status",    res->status == PAY_APPROVED ? "approved" : "declined",
        "reason",    pay_reason_name(res->reason),
        "amount",    a,
        "auth_code", (res->present & PAY_BIT(PAY_F_AUTH_CODE)) ? res->auth_code : "",
        "pin_tries", tries,
        NULL,        NULL};

    snprintf(a, sizeof(a), "#%lld", (long long)amount);
    tries[0] = '\0'; /* absent: not shown */
    if ((res->present & PAY_BIT(PAY_F_PIN_TRIES)) != 0) {
        snprintf(tries, sizeof(tries), "#%lld", (long long)res->pin_tries);
    }
    pt_ui_result(t, what, kv);
    return res->status == PAY_APPROVED ? PAYTERM_OK : PAYTERM_DECLINED;
}

int payterm_pay(const struct payterm_cfg *cfg, const char *sp, int64_t amount, const char *merchant)
{
    struct pt t;
    struct pay_client_err e;
    struct pay_msg m, res;
    char pan[20], pin[13], id[PAY_ID_MAX + 1];
    uint8_t ac[8], cdol[33], pb[16];
    uint16_t atc = 0;
    ot_err err;
    int rc;

    memset(&e, 0, sizeof(e));
    memset(pin, 0, sizeof(pin));
    err = pt_open(&t, cfg, true);
    /* the card on the RF reader starts it: its PAN and its cryptogram */
    if (err == OT_OK) {
        err = pt_rf_pan(&t, pan);
    }
    if (err == OT_OK) {
        err = pt_rf_ac(&t, amount, ac, &atc, cdol);
    }
    /* the dongle authenticates the card with the SP's key */
    if (err == OT_OK) {
        err = pt_auth_card(&t, sp, pan, atc, ac, cdol, sizeof(cdol));
    }
    /* the holder's PIN, enciphered by the dongle for the card's bank */
    if (err == OT_OK) {
        err = pt_ui_pin(&t, pin);
    }
    if (err == OT_OK) {
        err = pt_sam_pin_block(&t, sp, pan, pin, pb);
        ot_mem_wipe(pin, sizeof(pin));
    }
    if (err == OT_OK) {
        snprintf(id, sizeof(id), "pay-%.32s-%lld", cfg->client, (long long)pt_now_us());
        err = pt_req(&t, &m, PAY_MSG_PAYMENT, id, sp);
    }
    if (err == OT_OK) {
        pay_msg_set_int(&m, PAY_F_AMOUNT, amount);
        pay_msg_set_int(&m, PAY_F_ATC, atc);
        if ((err = pay_msg_set_str(&m, PAY_F_CURRENCY, "EUR")) == OT_OK
            && (err = pay_msg_set_str(&m, PAY_F_MERCHANT, merchant)) == OT_OK
            && (err = pay_msg_set_str(&m, PAY_F_PAN, pan)) == OT_OK
            && (err = pay_msg_set_bytes(&m, PAY_F_CDOL, cdol, sizeof(cdol))) == OT_OK
            && (err = pay_msg_set_bytes(&m, PAY_F_AC, ac, sizeof(ac))) == OT_OK) {
            err = pay_msg_set_bytes(&m, PAY_F_PIN_BLOCK, pb, sizeof(pb));
        }
    }
    if (err == OT_OK) {
        err = pay_client_send(t.pay, &m, &res, &e);
    }
    if (err != OT_OK) {
        return pt_fail(&t, "payment_failed", err, &e);
    }
    rc = pt_report(&t, "payment", &res, amount);
    pt_close(&t);
    return rc;
}

/* Takes one top-up on from its journal state; stop_after: stop (as if
 * killed) once that state is written. */
static ot_err pt_topup_run(struct pt *t, struct pt_jrn *j, const char *stop_after, int *rc,
                           struct pay_client_err *e)
{
    struct pay_msg m, res;
    uint32_t bal = 0, ctr = 0, nctr = 0;
    uint8_t purse[8];
    char cid[PAY_ID_MAX + 1];
    size_t len = 0;
    ot_err err = OT_OK;

    *rc = PAYTERM_OK;
    if (j->state == PT_J_ASKED) {
        OT_TRY(pay_client_send_raw(t->pay, PAY_MSG_TOPUP_AUTHORISE, j->req, &res, e));
        if (res.status != PAY_APPROVED || res.counter > UINT32_MAX || res.amount != j->amount) {
            *rc = pt_report(t, "topup", &res, j->amount);
            j->state = PT_J_CONFIRMED; /* nothing to finish */
            return pt_jrn_save(t->cfg->journal, j);
        }
        j->counter = res.counter;
        memcpy(j->mac, res.mac, 8);
        j->state = PT_J_AUTHORISED;
        OT_TRY(pt_jrn_save(t->cfg->journal, j));
        if (stop_after != NULL && strcmp(stop_after, "authorised") == 0) {
            return OT_OK;
        }
    }
    if (j->state == PT_J_AUTHORISED) {
        OT_TRY(pt_rf_purse(t, &bal, &ctr, purse));
        if (memcmp(purse, j->purse, 8) != 0) {
            return OT_E_NO_CARD; /* another card on the reader */
        }
        if (ctr >= j->counter) {
            /* the card took it before the client could write so */
            j->balance = bal;
            j->has_proof = false;
        } else {
            /* the dongle checks the operator's command, then the card */
            OT_TRY(pt_sam_transit(t, 0, j->sp, j->purse, (uint32_t)j->amount, (uint32_t)j->counter,
                                  j->mac));
            OT_TRY(pt_rf_credit(t, (uint32_t)j->amount, (uint32_t)j->counter, j->mac, &bal, &nctr,
                                j->proof));
            OT_TRY(pt_sam_transit(t, 1, j->sp, j->purse, bal, nctr, j->proof));
            j->balance = bal;
            j->has_proof = true;
        }
        snprintf(cid, sizeof(cid), "%.60s:c", j->id);
        OT_TRY(pt_req(t, &m, PAY_MSG_TOPUP_CONFIRM, cid, j->sp));
        OT_TRY(pay_msg_set_bytes(&m, PAY_F_PURSE_ID, j->purse, 8));
        pay_msg_set_int(&m, PAY_F_COUNTER, j->counter);
        pay_msg_set_int(&m, PAY_F_BALANCE, j->balance);
        if (j->has_proof) {
            OT_TRY(pay_msg_set_bytes(&m, PAY_F_MAC, j->proof, 8));
        }
        free(j->confirm);
        j->confirm = NULL;
        OT_TRY(pay_msg_encode(&m, &j->confirm, &len));
        j->state = PT_J_CREDITED;
        OT_TRY(pt_jrn_save(t->cfg->journal, j));
        if (stop_after != NULL && strcmp(stop_after, "credited") == 0) {
            return OT_OK;
        }
    }
    if (j->state == PT_J_CREDITED) {
        OT_TRY(pay_client_send_raw(t->pay, PAY_MSG_TOPUP_CONFIRM, j->confirm, &res, e));
        *rc = pt_report(t, "topup", &res, j->amount);
        if (res.status == PAY_APPROVED) {
            j->state = PT_J_CONFIRMED;
            OT_TRY(pt_jrn_save(t->cfg->journal, j));
        }
    }
out:
    return err;
}

int payterm_topup(const struct payterm_cfg *cfg, const char *sp, int64_t amount,
                  const char *stop_after)
{
    struct pt t;
    struct pt_jrn j;
    struct pay_client_err e;
    struct pay_msg m;
    uint32_t bal = 0, ctr = 0;
    size_t len = 0;
    int rc = PAYTERM_FAIL;
    ot_err err;

    memset(&e, 0, sizeof(e));
    memset(&j, 0, sizeof(j));
    if (cfg->journal == NULL || amount < 1 || amount > UINT32_MAX) {
        return PAYTERM_USAGE;
    }
    err = pt_open(&t, cfg, true);
    if (err == OT_OK) {
        err = pt_rf_purse(&t, &bal, &ctr, j.purse);
    }
    if (err == OT_OK) {
        snprintf(j.id, sizeof(j.id), "tu-%.32s-%lld", cfg->client, (long long)pt_now_us());
        snprintf(j.sp, sizeof(j.sp), "%s", sp);
        j.amount = amount;
        err = pt_req(&t, &m, PAY_MSG_TOPUP_AUTHORISE, j.id, sp);
    }
    if (err == OT_OK) {
        pay_msg_set_int(&m, PAY_F_AMOUNT, amount);
        pay_msg_set_int(&m, PAY_F_COUNTER, ctr);
        pay_msg_set_int(&m, PAY_F_BALANCE, bal);
        err = pay_msg_set_bytes(&m, PAY_F_PURSE_ID, j.purse, 8);
    }
    /* written before it leaves: a retry is this very request */
    if (err == OT_OK) {
        err = pay_msg_encode(&m, &j.req, &len);
    }
    if (err == OT_OK) {
        j.state = PT_J_ASKED;
        err = pt_jrn_save(cfg->journal, &j);
    }
    if (err == OT_OK) {
        err = pt_topup_run(&t, &j, stop_after, &rc, &e);
    }
    if (err != OT_OK) {
        pt_jrn_clear(&j);
        return pt_fail(&t, "topup_failed", err, &e);
    }
    if (j.state != PT_J_CONFIRMED) {
        const char *kv[] = {"id", j.id, "state", pt_jstate_name(j.state), NULL, NULL};
        pt_ui_result(&t, "topup_open", kv);
    }
    pt_jrn_clear(&j);
    pt_close(&t);
    return rc;
}

int payterm_journal(const struct payterm_cfg *cfg, bool recover)
{
    struct pt t;
    struct pay_client_err e;
    DIR *d;
    struct dirent *de;
    int rc = PAYTERM_OK;
    ot_err err = OT_OK;

    memset(&t, 0, sizeof(t));
    memset(&e, 0, sizeof(e));
    t.cfg = cfg;
    if (cfg->journal == NULL) {
        return PAYTERM_USAGE;
    }
    if (recover) {
        err = pt_open(&t, cfg, true);
        if (err != OT_OK) {
            return pt_fail(&t, "journal_failed", err, &e);
        }
    }
    d = opendir(cfg->journal);
    if (d == NULL) {
        pt_ui_error(&t, "journal_failed", OT_E_IO, NULL);
        pt_close(&t);
        return PAYTERM_FAIL;
    }
    while ((de = readdir(d)) != NULL) {
        struct pt_jrn j;
        char path[1024], a[24];
        size_t n = strlen(de->d_name);
        int one = PAYTERM_OK;
        if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", cfg->journal, de->d_name);
        err = pt_jrn_load(path, &j);
        if (err != OT_OK) {
            const char *kv[] = {"file", de->d_name, "error", ot_strerror(err), NULL, NULL};
            pt_ui_result(&t, "journal_bad", kv);
            rc = PAYTERM_FAIL;
            continue;
        }
        if (recover && j.state != PT_J_CONFIRMED) {
            err = pt_topup_run(&t, &j, NULL, &one, &e);
            if (err != OT_OK) {
                pt_ui_error(&t, "recover_failed", err, &e);
                rc = PAYTERM_FAIL;
            } else if (one != PAYTERM_OK && rc == PAYTERM_OK) {
                rc = one;
            }
        }
        snprintf(a, sizeof(a), "#%lld", (long long)j.amount);
        {
            const char *kv[] = {
                "id", j.id, "sp", j.sp, "amount", a, "state", pt_jstate_name(j.state), NULL, NULL};
            pt_ui_result(&t, "topup_entry", kv);
        }
        pt_jrn_clear(&j);
    }
    closedir(d);
    pt_close(&t);
    return rc;
}

#define PT_RELAY_MAX_STEPS 32 /* handshake, INSTALL, GET STATUS and their pages */

int payterm_install(const struct payterm_cfg *cfg, const char *sp, const char *app, const char *op,
                    const char *purse_hex, bool flip_install)
{
    struct pt t;
    struct pay_client_err e;
    struct pay_client_relay rl;
    char body[2 * 258 + 64]; /* the opening, or a step with a whole R-APDU */
    char relay[33];
    ot_err err;
    int steps = 0;

    memset(&e, 0, sizeof(e));
    err = pt_open(&t, cfg, true);
    if (err != OT_OK) {
        return pt_fail(&t, "install_failed", err, &e);
    }
    snprintf(body, sizeof(body),
             "{\"client\":\"%s\",\"sp\":\"%s\",\"app\":\"%s\",\"operator\":\"%s\","
             "\"purse_id\":\"%s\"}",
             cfg->client, sp, app, op, purse_hex);
    err = pay_client_install(t.pay, NULL, body, &rl, &e);
    while (err == OT_OK && rl.capdu_len > 0) {
        uint8_t r[1024];
        size_t n = sizeof(r);
        char rh[2 * 258 + 1];
        if (++steps > PT_RELAY_MAX_STEPS) {
            err = OT_E_LIMIT;
            break;
        }
        if (flip_install && rl.capdu_len > 6 && rl.capdu[1] == 0xE6) {
            rl.capdu[6] ^= 0x01; /* a byte of the ELF AID: the C-MAC no longer matches */
        }
        err = pt_rf_relay(&t, rl.capdu, rl.capdu_len, r, &n);
        if (err == OT_OK && n > 258) {
            err = OT_E_LIMIT;
        }
        if (err == OT_OK) {
            err = hex_encode(r, n, rh, sizeof(rh));
        }
        if (err == OT_OK) {
            snprintf(relay, sizeof(relay), "%s", rl.relay);
            snprintf(body, sizeof(body), "{\"step\":%lld,\"rapdu\":\"%.*s\"}", (long long)rl.step,
                     (int)(sizeof(body) - 40), rh);
            if (strlen(rh) > sizeof(body) - 40) {
                err = OT_E_LIMIT;
            }
        }
        if (err == OT_OK) {
            err = pay_client_install(t.pay, relay, body, &rl, &e);
        }
    }
    if (err != OT_OK) {
        return pt_fail(&t, "install_failed", err, &e);
    }
    {
        const char *kv[] = {"status", rl.result, "sp",           sp,      "app", app,
                            "sw",     rl.sw,     "applications", rl.apps, NULL,  NULL};
        pt_ui_result(&t, "install", kv);
    }
    pt_close(&t);
    return strcmp(rl.result, "installed") == 0 ? PAYTERM_OK : PAYTERM_FAIL;
}

int payterm_debit(const struct payterm_cfg *cfg, int64_t amount)
{
    struct pt t;
    struct pay_client_err e;
    uint32_t balance = 0;
    uint16_t sw = 0;
    char b[24], swh[5];
    ot_err err;

    memset(&e, 0, sizeof(e));
    err = pt_open(&t, cfg, true);
    if (err == OT_OK && amount > UINT32_MAX) {
        err = OT_E_RANGE;
    }
    if (err == OT_OK) {
        err = pt_rf_debit(&t, (uint32_t)amount, &balance, &sw);
    }
    if (err != OT_OK) {
        return pt_fail(&t, "debit_failed", err, &e);
    }
    snprintf(b, sizeof(b), "#%lu", (unsigned long)balance);
    snprintf(swh, sizeof(swh), "%04X", (unsigned)sw);
    {
        const char *kv[] = {"status",  sw == 0x9000 ? "approved" : "declined",
                            "sw",      swh,
                            "balance", sw == 0x9000 ? b : "",
                            NULL,      NULL};
        pt_ui_result(&t, "debit", kv);
    }
    pt_close(&t);
    return sw == 0x9000 ? PAYTERM_OK : PAYTERM_DECLINED;
}
