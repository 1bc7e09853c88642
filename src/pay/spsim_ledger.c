/* spsim's ledger and the processing of payments and top-ups (spsim.h).
 *
 * Every request that passes the message checks runs in one transaction:
 * idempotency record, nonce, client sequence, the ledger change and the
 * signed answer are committed together, so a crash leaves either nothing or
 * all of it, and a retry of the same request gets the same answer.
 *
 * Top-ups (figure 4 of the seed): an authorisation moves the amount from the
 * holder's funds to "pending" and hands out the CREDIT command for the
 * purse's next counter. Until a confirmation arrives, asking again for the
 * purse gets the same command (same counter, same MAC), which the card takes
 * at most once, so no interruption can credit twice. A confirmation with the
 * card's proof (or, without it, a counter at or past the pending one: only
 * that command can have moved it) clears the pending amount; one with the
 * counter still before it leaves it pending for the client to finish.
 * Money is conserved at every step: funds + pending + cleared = initial.
 */
#include "pay/pay_priv.h"

#define OT_LOG_COMPONENT "pay.spsim"
#include "core/buf.h"
#include "core/log.h"
#include "crypto/paycard.h"
#include "crypto/pinblock.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SPSIM_SALT_LEN 16u

static const struct db_migration spsim_migrations[] = {
    {1,
     "CREATE TABLE spsim_meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);"
     "CREATE TABLE spsim_cards (pan TEXT PRIMARY KEY, salt BLOB NOT NULL,"
     " pin_hash BLOB NOT NULL, currency TEXT NOT NULL, initial BIGINT NOT NULL,"
     " balance BIGINT NOT NULL, tries BIGINT NOT NULL, try_limit BIGINT NOT NULL,"
     " last_atc BIGINT NOT NULL);"
     "CREATE TABLE spsim_purses (purse_id BLOB PRIMARY KEY, initial BIGINT NOT NULL,"
     " funds BIGINT NOT NULL, counter BIGINT NOT NULL, pending_counter BIGINT NOT NULL,"
     " pending_amount BIGINT NOT NULL, pending_mac BLOB);"
     "CREATE TABLE spsim_requests (client TEXT NOT NULL, req_id TEXT NOT NULL,"
     " req_hash BLOB NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,"
     " reason TEXT NOT NULL, cleared BIGINT NOT NULL, answer TEXT NOT NULL,"
     " at_ms BIGINT NOT NULL, PRIMARY KEY (client, req_id));"
     "CREATE TABLE spsim_nonces (nonce BLOB PRIMARY KEY, at_ms BIGINT NOT NULL);"
     "CREATE TABLE spsim_clients (client TEXT PRIMARY KEY, last_seq BIGINT NOT NULL)",
     NULL},
    /* Nonces are kept only as long as a request carrying them can be fresh. */
    {2, "CREATE INDEX spsim_nonces_at ON spsim_nonces (at_ms)", NULL},
};

int64_t spsim_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool spsim_name_ok(const char *s)
{
    size_t n = s != NULL ? strnlen(s, PAY_NAME_MAX + 1) : 0;
    if (n == 0 || n > PAY_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '.'
              || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- keys */

static ot_err spsim_meta_get(struct db_conn *c, const char *k, uint8_t *v, size_t len, bool *found)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    const uint8_t *p = NULL;
    size_t n = 0;
    bool row = false;

    *found = false;
    OT_TRY(db_prepare(c, "SELECT v FROM spsim_meta WHERE k = $1", &st));
    OT_TRY(db_bind_text(st, 1, k));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_blob(st, 0, &p, &n));
        if (n != len) {
            OT_FAIL(OT_E_CORRUPT);
        }
        memcpy(v, p, n);
        *found = true;
    }
out:
    db_reset(st);
    return err;
}

static ot_err spsim_meta_put(struct db_conn *c, const char *k, const uint8_t *v, size_t len)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;

    OT_TRY(db_prepare(c, "INSERT INTO spsim_meta (k, v) VALUES ($1, $2)", &st));
    OT_TRY(db_bind_text(st, 1, k));
    OT_TRY(db_bind_blob(st, 2, v, len));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

/* The signing key survives restarts: answers stay verifiable by pay. */
static ot_err spsim_load_key(struct db_conn *c, void *arg)
{
    struct spsim *s = arg;
    ot_err err = OT_OK;
    bool a = false;
    bool b = false;

    OT_TRY(spsim_meta_get(c, "sign_priv", s->priv, sizeof s->priv, &a));
    OT_TRY(spsim_meta_get(c, "sign_pub", s->pub, sizeof s->pub, &b));
    if (a && b) {
        goto out;
    }
    OT_TRY(ec_p256_keygen(s->priv, s->pub));
    OT_TRY(spsim_meta_put(c, "sign_priv", s->priv, sizeof s->priv));
    OT_TRY(spsim_meta_put(c, "sign_pub", s->pub, sizeof s->pub));
out:
    return err;
}

ot_err spsim_new(const struct spsim_cfg *cfg, struct spsim **out)
{
    ot_err err = OT_OK;
    struct spsim *s = NULL;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (cfg == NULL || !spsim_name_ok(cfg->name) || cfg->db_url == NULL || cfg->imk == NULL
        || cfg->pay_pub == NULL || (cfg->kind != SPSIM_BANK && cfg->kind != SPSIM_TRANSIT)
        || cfg->window_ms < 0) {
        return OT_E_ARG;
    }
    if ((cfg->imk_len != 16 && cfg->imk_len != 24 && cfg->imk_len != 32)
        || (cfg->kind == SPSIM_BANK
            && (cfg->pin_key == NULL
                || (cfg->pin_key_len != 16 && cfg->pin_key_len != 24 && cfg->pin_key_len != 32)))
        || !ec_p256_pub_valid(cfg->pay_pub)) {
        return OT_E_KEY;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        return OT_E_NOMEM;
    }
    snprintf(s->name, sizeof s->name, "%s", cfg->name);
    snprintf(s->host, sizeof s->host, "%s", cfg->host != NULL ? cfg->host : "127.0.0.1");
    s->kind = cfg->kind;
    s->port = cfg->port;
    s->threads = cfg->threads;
    memcpy(s->imk, cfg->imk, cfg->imk_len);
    s->imk_len = cfg->imk_len;
    if (cfg->pin_key != NULL && cfg->pin_key_len <= sizeof s->pin_key) {
        memcpy(s->pin_key, cfg->pin_key, cfg->pin_key_len);
        s->pin_key_len = cfg->pin_key_len;
    }
    memcpy(s->pay_pub, cfg->pay_pub, sizeof s->pay_pub);
    s->window_ms = cfg->window_ms != 0 ? cfg->window_ms : SPSIM_WINDOW_DEFAULT_MS;
    OT_TRY(db_open(cfg->db_url, NULL, &s->db));
    OT_TRY(db_migrate(s->db, "spsim", spsim_migrations,
                      sizeof spsim_migrations / sizeof spsim_migrations[0]));
    OT_TRY(db_run_tx(s->db, spsim_load_key, s));
    *out = s;
    s = NULL;
out:
    spsim_free(s);
    return err;
}

void spsim_pub(const struct spsim *s, uint8_t pub[EC_P256_PUB_LEN])
{
    memcpy(pub, s->pub, EC_P256_PUB_LEN);
}

/* ---------------------------------------------------------------- admin */

static ot_err spsim_pin_hash(const uint8_t salt[SPSIM_SALT_LEN], const char *pan, const char *pin,
                             uint8_t out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned n = 0;
    ot_err err = OT_OK;

    if (md == NULL) {
        return OT_E_NOMEM;
    }
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(md, salt, SPSIM_SALT_LEN) != 1
        || EVP_DigestUpdate(md, pan, strlen(pan) + 1) != 1
        || EVP_DigestUpdate(md, pin, strlen(pin)) != 1 || EVP_DigestFinal_ex(md, out, &n) != 1
        || n != 32) {
        err = OT_E_CRYPTO;
    }
    EVP_MD_CTX_free(md);
    return err;
}

ot_err spsim_add_card(struct spsim *s, const char *pan, const char *pin, int64_t balance,
                      const char *currency, int64_t try_limit)
{
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    uint8_t salt[SPSIM_SALT_LEN];
    uint8_t h[32];
    bool row = false;

    if (s == NULL || pan == NULL || pin == NULL || currency == NULL) {
        return OT_E_ARG;
    }
    if (s->kind != SPSIM_BANK) {
        return OT_E_STATE;
    }
    if (strlen(pan) < PAY_PAN_MIN || pinblock_check_pan(pan) != OT_OK) {
        return OT_E_FORMAT;
    }
    OT_TRY(pinblock_check_pin(pin));
    if (balance < 0 || balance > PAY_AMOUNT_MAX || try_limit < 1 || try_limit > 15
        || strlen(currency) != 3) {
        return OT_E_RANGE;
    }
    for (size_t i = 0; i < 3; i++) {
        if (currency[i] < 'A' || currency[i] > 'Z') {
            return OT_E_FORMAT;
        }
    }
    if (RAND_bytes(salt, sizeof salt) != 1) {
        return OT_E_CRYPTO;
    }
    OT_TRY(spsim_pin_hash(salt, pan, pin, h));
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_prepare(c,
                      "INSERT INTO spsim_cards (pan, salt, pin_hash, currency, initial, balance,"
                      " tries, try_limit, last_atc) VALUES ($1, $2, $3, $4, $5, $5, $6, $6, -1)",
                      &st));
    OT_TRY(db_bind_text(st, 1, pan));
    OT_TRY(db_bind_blob(st, 2, salt, sizeof salt));
    OT_TRY(db_bind_blob(st, 3, h, sizeof h));
    OT_TRY(db_bind_text(st, 4, currency));
    OT_TRY(db_bind_int64(st, 5, balance));
    OT_TRY(db_bind_int64(st, 6, try_limit));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    db_release(c);
    ot_mem_wipe(h, sizeof h);
    return err;
}

ot_err spsim_add_purse(struct spsim *s, const uint8_t id[8], int64_t funds)
{
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;

    if (s == NULL || id == NULL) {
        return OT_E_ARG;
    }
    if (s->kind != SPSIM_TRANSIT) {
        return OT_E_STATE;
    }
    if (funds < 0 || funds > PAY_AMOUNT_MAX) {
        return OT_E_RANGE;
    }
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_prepare(c,
                      "INSERT INTO spsim_purses (purse_id, initial, funds, counter,"
                      " pending_counter, pending_amount) VALUES ($1, $2, $2, 0, 0, 0)",
                      &st));
    OT_TRY(db_bind_blob(st, 1, id, 8));
    OT_TRY(db_bind_int64(st, 2, funds));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    db_release(c);
    return err;
}

/* One row of integers from a fixed query. */
static ot_err spsim_ints(struct db_conn *c, const char *sql, int64_t *v, int n)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;

    OT_TRY(db_prepare(c, sql, &st));
    OT_TRY(db_step(st, &row));
    for (int i = 0; row && i < n; i++) {
        OT_TRY(db_col_int64(st, i, &v[i]));
    }
out:
    db_reset(st);
    return err;
}

ot_err spsim_totals(struct spsim *s, struct spsim_totals *out)
{
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    int64_t v[3] = {0, 0, 0};

    if (s == NULL || out == NULL) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof *out);
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_begin(c)); /* one snapshot for all the sums */
    OT_TRY(spsim_ints(c,
                      "SELECT COUNT(*), COALESCE(SUM(cleared), 0) FROM spsim_requests"
                      " WHERE cleared > 0",
                      v, 2));
    out->count = v[0];
    out->cleared = v[1];
    if (s->kind == SPSIM_BANK) {
        OT_TRY(spsim_ints(c,
                          "SELECT COALESCE(SUM(initial), 0), COALESCE(SUM(balance), 0)"
                          " FROM spsim_cards",
                          v, 2));
    } else {
        OT_TRY(spsim_ints(c,
                          "SELECT COALESCE(SUM(initial), 0), COALESCE(SUM(funds), 0),"
                          " COALESCE(SUM(pending_amount), 0) FROM spsim_purses",
                          v, 3));
        out->pending = v[2];
    }
    out->initial = v[0];
    out->balance = v[1];
    OT_TRY(db_commit(c));
out:
    if (c != NULL && err != OT_OK) {
        db_rollback(c);
    }
    db_release(c);
    return err;
}

/* ---------------------------------------------------------------- requests */

/* What the business step decides. */
struct spsim_out {
    struct pay_msg res;
    int64_t cleared; /* money cleared by this request */
};

static void spsim_result(const struct spsim *s, const struct pay_msg *m, enum pay_msg_type t,
                         enum pay_reason r, int64_t now_ms, struct pay_msg *res)
{
    pay_msg_init(res, t);
    (void)pay_msg_set_str(res, PAY_F_ID, m->id);
    (void)pay_msg_set_str(res, PAY_F_SP, s->name);
    pay_msg_set_int(res, PAY_F_STATUS, r == PAY_R_OK ? PAY_APPROVED : PAY_DECLINED);
    pay_msg_set_int(res, PAY_F_REASON, r);
    pay_msg_set_int(res, PAY_F_TS, now_ms);
}

/* The amount authorised in the CDOL1 data: its first 6 bytes are Amount,
 * Authorised (9F02, n12 BCD; EMV Book 3 annex A), so the cryptogram covers it. */
static bool spsim_cdol_amount(const struct pay_msg *m, int64_t *amount)
{
    int64_t v = 0;
    if (m->cdol_len < 6) {
        return false;
    }
    for (size_t i = 0; i < 6; i++) {
        uint8_t hi = (uint8_t)(m->cdol[i] >> 4);
        uint8_t lo = (uint8_t)(m->cdol[i] & 0x0Fu);
        if (hi > 9 || lo > 9) {
            return false;
        }
        v = v * 100 + hi * 10 + lo;
    }
    *amount = v;
    return true;
}

static ot_err spsim_pay(struct spsim *s, struct db_conn *c, const struct pay_msg *m, int64_t now,
                        struct spsim_out *o)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;
    uint8_t salt[SPSIM_SALT_LEN];
    uint8_t want[32];
    uint8_t got[32];
    const uint8_t *p = NULL;
    size_t n = 0;
    char currency[4] = "";
    size_t cl = sizeof currency;
    int64_t balance = 0, tries = 0, limit = 0, last_atc = 0, cdol_amount = 0;
    uint8_t pan[PAYCARD_PAN_BCD_MAX];
    size_t pan_len = 0;
    uint8_t mk[PAYCARD_KEY_LEN];
    uint8_t ac[PAYCARD_AC_LEN];
    char pin[PINBLOCK_PIN_MAX + 1] = "";
    enum pay_reason r = PAY_R_OK;

    OT_TRY(db_prepare(c,
                      "SELECT salt, pin_hash, currency, balance, tries, try_limit, last_atc"
                      " FROM spsim_cards WHERE pan = $1",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->pan));
    OT_TRY(db_step(st, &row));
    if (!row) {
        spsim_result(s, m, PAY_MSG_PAYMENT_RESULT, PAY_R_UNKNOWN_CARD, now, &o->res);
        goto out;
    }
    OT_TRY(db_col_blob(st, 0, &p, &n));
    if (n != sizeof salt) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(salt, p, n);
    OT_TRY(db_col_blob(st, 1, &p, &n));
    if (n != sizeof want) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(want, p, n);
    OT_TRY(db_col_text_copy(st, 2, currency, &cl));
    OT_TRY(db_col_int64(st, 3, &balance));
    OT_TRY(db_col_int64(st, 4, &tries));
    OT_TRY(db_col_int64(st, 5, &limit));
    OT_TRY(db_col_int64(st, 6, &last_atc));
    db_reset(st);
    st = NULL;

    /* The card: its cryptogram over this amount with a fresh ATC. */
    OT_TRY(paycard_pan_bcd(m->pan, pan, &pan_len));
    OT_TRY(paycard_derive(s->imk, s->imk_len, PAYCARD_DC_EMV_AC, pan, pan_len, mk));
    OT_TRY(paycard_emv_ac(mk, (uint16_t)m->atc, m->cdol, m->cdol_len, ac));
    if (!ot_mem_equal_ct(ac, m->ac, sizeof ac) || !spsim_cdol_amount(m, &cdol_amount)
        || cdol_amount != m->amount) {
        r = PAY_R_BAD_CRYPTOGRAM;
    } else if (m->atc <= last_atc) {
        r = PAY_R_REPLAY; /* a cryptogram the card made before */
    }
    if (r != PAY_R_OK) {
        spsim_result(s, m, PAY_MSG_PAYMENT_RESULT, r, now, &o->res);
        goto out;
    }
    last_atc = m->atc;

    /* The holder: the PIN, against the try counter. */
    if (tries == 0) {
        r = PAY_R_PIN_BLOCKED;
    } else {
        ot_err e = pinblock4_decipher(s->pin_key, s->pin_key_len, m->pin_block, m->pan, pin);
        bool ok = false;
        if (e == OT_OK) {
            OT_TRY(spsim_pin_hash(salt, m->pan, pin, got));
            ok = ot_mem_equal_ct(got, want, sizeof got);
        }
        if (ok) {
            tries = limit;
        } else {
            tries--;
            r = tries == 0 ? PAY_R_PIN_BLOCKED : PAY_R_WRONG_PIN;
        }
    }
    if (r == PAY_R_OK && strcmp(currency, m->currency) != 0) {
        r = PAY_R_LIMIT;
    } else if (r == PAY_R_OK && balance < m->amount) {
        r = PAY_R_INSUFFICIENT_FUNDS;
    }
    spsim_result(s, m, PAY_MSG_PAYMENT_RESULT, r, now, &o->res);
    if (r == PAY_R_WRONG_PIN || r == PAY_R_PIN_BLOCKED) {
        pay_msg_set_int(&o->res, PAY_F_PIN_TRIES, tries);
    }
    if (r == PAY_R_OK) {
        static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        uint8_t rnd[PAY_AUTH_CODE_LEN];
        char code[PAY_AUTH_CODE_LEN + 1];
        if (RAND_bytes(rnd, sizeof rnd) != 1) {
            OT_FAIL(OT_E_CRYPTO);
        }
        for (size_t i = 0; i < PAY_AUTH_CODE_LEN; i++) {
            code[i] = alnum[rnd[i] % (sizeof alnum - 1)];
        }
        code[PAY_AUTH_CODE_LEN] = '\0';
        balance -= m->amount;
        o->cleared = m->amount;
        (void)pay_msg_set_str(&o->res, PAY_F_AUTH_CODE, code);
        pay_msg_set_int(&o->res, PAY_F_AMOUNT, m->amount);
        (void)pay_msg_set_str(&o->res, PAY_F_CURRENCY, m->currency);
    }
    OT_TRY(db_prepare(c,
                      "UPDATE spsim_cards SET balance = $2, tries = $3, last_atc = $4"
                      " WHERE pan = $1",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->pan));
    OT_TRY(db_bind_int64(st, 2, balance));
    OT_TRY(db_bind_int64(st, 3, tries));
    OT_TRY(db_bind_int64(st, 4, last_atc));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    ot_mem_wipe(mk, sizeof mk);
    ot_mem_wipe(pin, sizeof pin);
    ot_mem_wipe(want, sizeof want);
    ot_mem_wipe(got, sizeof got);
    return err;
}

struct spsim_purse {
    int64_t funds, counter, pending_counter, pending_amount;
    uint8_t pending_mac[PAY_MAC_LEN];
};

static ot_err spsim_purse_get(struct db_conn *c, const uint8_t id[8], struct spsim_purse *pu,
                              bool *found)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    const uint8_t *p = NULL;
    size_t n = 0;

    memset(pu, 0, sizeof *pu);
    OT_TRY(db_prepare(c,
                      "SELECT funds, counter, pending_counter, pending_amount, pending_mac"
                      " FROM spsim_purses WHERE purse_id = $1",
                      &st));
    OT_TRY(db_bind_blob(st, 1, id, 8));
    OT_TRY(db_step(st, found));
    if (*found) {
        OT_TRY(db_col_int64(st, 0, &pu->funds));
        OT_TRY(db_col_int64(st, 1, &pu->counter));
        OT_TRY(db_col_int64(st, 2, &pu->pending_counter));
        OT_TRY(db_col_int64(st, 3, &pu->pending_amount));
        OT_TRY(db_col_blob(st, 4, &p, &n));
        if (pu->pending_counter != 0) {
            if (n != PAY_MAC_LEN) {
                OT_FAIL(OT_E_CORRUPT);
            }
            memcpy(pu->pending_mac, p, n);
        }
    }
out:
    db_reset(st);
    return err;
}

static ot_err spsim_purse_put(struct db_conn *c, const uint8_t id[8], const struct spsim_purse *pu)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;

    OT_TRY(db_prepare(c,
                      "UPDATE spsim_purses SET funds = $2, counter = $3, pending_counter = $4,"
                      " pending_amount = $5, pending_mac = $6 WHERE purse_id = $1",
                      &st));
    OT_TRY(db_bind_blob(st, 1, id, 8));
    OT_TRY(db_bind_int64(st, 2, pu->funds));
    OT_TRY(db_bind_int64(st, 3, pu->counter));
    OT_TRY(db_bind_int64(st, 4, pu->pending_counter));
    OT_TRY(db_bind_int64(st, 5, pu->pending_amount));
    if (pu->pending_counter != 0) {
        OT_TRY(db_bind_blob(st, 6, pu->pending_mac, PAY_MAC_LEN));
    }
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

static void spsim_credit_cmd(struct pay_msg *res, const uint8_t id[8], const struct spsim_purse *pu)
{
    (void)pay_msg_set_bytes(res, PAY_F_PURSE_ID, id, 8);
    pay_msg_set_int(res, PAY_F_AMOUNT, pu->pending_amount);
    pay_msg_set_int(res, PAY_F_COUNTER, pu->pending_counter);
    (void)pay_msg_set_bytes(res, PAY_F_MAC, pu->pending_mac, PAY_MAC_LEN);
}

static ot_err spsim_topup(struct spsim *s, struct db_conn *c, const struct pay_msg *m, int64_t now,
                          struct spsim_out *o)
{
    ot_err err = OT_OK;
    struct spsim_purse pu;
    bool found = false;
    uint8_t k[PAYCARD_KEY_LEN];
    enum pay_reason r = PAY_R_OK;

    OT_TRY(spsim_purse_get(c, m->purse_id, &pu, &found));
    if (!found) {
        r = PAY_R_UNKNOWN_CARD;
    } else if (pu.pending_counter != 0) {
        /* One top-up at a time per purse: the pending one is offered again
         * while the card has not taken it (its counter is before it). */
        if (m->counter != pu.pending_counter - 1 || m->amount != pu.pending_amount) {
            r = PAY_R_CONFLICT;
        }
    } else if (m->counter < pu.counter || m->counter >= 0xFFFFFFFFLL) {
        r = PAY_R_CONFLICT; /* a card counter never goes back */
    } else if (m->balance + m->amount > SPSIM_PURSE_LIMIT) {
        r = PAY_R_LIMIT;
    } else if (pu.funds < m->amount) {
        r = PAY_R_INSUFFICIENT_FUNDS;
    } else {
        pu.funds -= m->amount;
        pu.pending_counter = m->counter + 1;
        pu.pending_amount = m->amount;
        OT_TRY(paycard_derive(s->imk, s->imk_len, PAYCARD_DC_TRANSIT, m->purse_id, 8, k));
        OT_TRY(paycard_transit_mac(k, PAYCARD_TAG_CREDIT, (uint32_t)pu.pending_amount,
                                   (uint32_t)pu.pending_counter, m->purse_id, pu.pending_mac));
        OT_TRY(spsim_purse_put(c, m->purse_id, &pu));
    }
    spsim_result(s, m, PAY_MSG_TOPUP_AUTHORISATION, r, now, &o->res);
    if (r == PAY_R_OK) {
        spsim_credit_cmd(&o->res, m->purse_id, &pu);
    }
out:
    ot_mem_wipe(k, sizeof k);
    return err;
}

static ot_err spsim_confirm(struct spsim *s, struct db_conn *c, const struct pay_msg *m,
                            int64_t now, struct spsim_out *o)
{
    ot_err err = OT_OK;
    struct spsim_purse pu;
    bool found = false;
    bool settle = false;
    uint8_t k[PAYCARD_KEY_LEN];
    uint8_t proof[PAYCARD_MAC_LEN];
    enum pay_reason r = PAY_R_OK;

    OT_TRY(spsim_purse_get(c, m->purse_id, &pu, &found));
    if (!found) {
        r = PAY_R_UNKNOWN_CARD;
    } else if (pu.pending_counter == 0) {
        r = PAY_R_CONFLICT; /* nothing pending */
    } else if ((m->present & PAY_BIT(PAY_F_MAC)) != 0) {
        OT_TRY(paycard_derive(s->imk, s->imk_len, PAYCARD_DC_TRANSIT, m->purse_id, 8, k));
        OT_TRY(paycard_transit_mac(k, PAYCARD_TAG_PROOF, (uint32_t)m->balance, (uint32_t)m->counter,
                                   m->purse_id, proof));
        if (m->counter != pu.pending_counter || !ot_mem_equal_ct(proof, m->mac, sizeof proof)) {
            r = PAY_R_BAD_PROOF;
        } else {
            settle = true;
        }
    } else if (m->counter >= pu.pending_counter) {
        settle = true; /* only the pending command can have moved the counter there */
    } else if (m->counter == pu.pending_counter - 1) {
        r = PAY_R_NOT_CREDITED; /* stays pending: the client finishes it later */
    } else {
        r = PAY_R_CONFLICT;
    }
    if (settle) {
        o->cleared = pu.pending_amount;
        pu.counter = pu.pending_counter;
        pu.pending_counter = 0;
        pu.pending_amount = 0;
        OT_TRY(spsim_purse_put(c, m->purse_id, &pu));
    }
    spsim_result(s, m, PAY_MSG_TOPUP_CONFIRMATION, r, now, &o->res);
    if (settle) {
        (void)pay_msg_set_bytes(&o->res, PAY_F_PURSE_ID, m->purse_id, 8);
        pay_msg_set_int(&o->res, PAY_F_COUNTER, pu.counter);
    }
out:
    ot_mem_wipe(k, sizeof k);
    return err;
}

/* ---------------------------------------------------------------- one request */

static void spsim_fail(struct spsim_ans *ans, ot_err e, const char *code, const char *field,
                       const char *msg)
{
    ans->err = e;
    ans->code = code;
    snprintf(ans->field, sizeof ans->field, "%s", field != NULL ? field : "");
    snprintf(ans->message, sizeof ans->message, "%s", msg);
}

static ot_err spsim_sha256(const char *p, size_t n, uint8_t out[32])
{
    unsigned len = 0;
    return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32 ? OT_OK : OT_E_CRYPTO;
}

/* A request seen before: its stored answer (same body) or a mismatch. */
static ot_err spsim_idem(struct db_conn *c, const struct pay_msg *m, const uint8_t hash[32],
                         struct spsim_ans *ans, bool *seen)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    const uint8_t *h = NULL;
    const char *answer = NULL;
    size_t hn = 0;

    *seen = false;
    OT_TRY(db_prepare(c,
                      "SELECT req_hash, answer FROM spsim_requests WHERE client = $1"
                      " AND req_id = $2",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->client));
    OT_TRY(db_bind_text(st, 2, m->id));
    OT_TRY(db_step(st, seen));
    if (*seen) {
        OT_TRY(db_col_blob(st, 0, &h, &hn));
        OT_TRY(db_col_text(st, 1, &answer));
        if (hn != 32 || memcmp(h, hash, 32) != 0 || answer == NULL) {
            spsim_fail(ans, OT_E_IDEM_MISMATCH, NULL, "id",
                       "request id already used with another request");
        } else {
            ans->body = strdup(answer);
            ans->len = strlen(answer);
            if (ans->body == NULL) {
                OT_FAIL(OT_E_NOMEM);
            }
        }
    }
out:
    db_reset(st);
    return err;
}

/* Nonce never seen, sequence above the client's last. */
static ot_err spsim_fresh(struct db_conn *c, const struct pay_msg *m, int64_t now,
                          int64_t window_ms, struct spsim_ans *ans, bool *ok)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t last = 0;

    *ok = false;
    OT_TRY(db_prepare(c, "SELECT last_seq FROM spsim_clients WHERE client = $1", &st));
    OT_TRY(db_bind_text(st, 1, m->client));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_int64(st, 0, &last));
    }
    db_reset(st);
    st = NULL;
    if (row && m->seq <= last) {
        spsim_fail(ans, OT_E_CONFLICT, "replay", "seq", "sequence number not above the last one");
        goto out;
    }
    /* A request's ts is within the window of its arrival, and a replay's
     * within the window of its own: a nonce older than twice the window can
     * no longer come with a fresh request, so it is dropped. */
    OT_TRY(db_prepare(c, "DELETE FROM spsim_nonces WHERE at_ms < $1", &st));
    OT_TRY(db_bind_int64(st, 1, now - 2 * window_ms));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c, "INSERT INTO spsim_nonces (nonce, at_ms) VALUES ($1, $2)", &st));
    OT_TRY(db_bind_blob(st, 1, m->nonce, sizeof m->nonce));
    OT_TRY(db_bind_int64(st, 2, now));
    err = db_step(st, &row);
    if (err == OT_E_CONFLICT) {
        err = OT_OK;
        spsim_fail(ans, OT_E_CONFLICT, "replay", "nonce", "nonce seen before");
        goto out;
    }
    OT_TRY(err);
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c,
                      "INSERT INTO spsim_clients (client, last_seq) VALUES ($1, $2)"
                      " ON CONFLICT (client) DO UPDATE SET last_seq = excluded.last_seq",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->client));
    OT_TRY(db_bind_int64(st, 2, m->seq));
    OT_TRY(db_step(st, &row));
    *ok = true;
out:
    db_reset(st);
    return err;
}

static ot_err spsim_record(struct db_conn *c, const struct pay_msg *m, const uint8_t hash[32],
                           const struct spsim_out *o, const char *answer, int64_t now)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;

    OT_TRY(db_prepare(c,
                      "INSERT INTO spsim_requests (client, req_id, req_hash, type, status,"
                      " reason, cleared, answer, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
                      " $9)",
                      &st));
    OT_TRY(db_bind_text(st, 1, m->client));
    OT_TRY(db_bind_text(st, 2, m->id));
    OT_TRY(db_bind_blob(st, 3, hash, 32));
    OT_TRY(db_bind_text(st, 4, pay_msg_type_name(m->type)));
    OT_TRY(db_bind_text(st, 5, o->res.status == PAY_APPROVED ? "approved" : "declined"));
    OT_TRY(db_bind_text(st, 6, pay_reason_name(o->res.reason)));
    OT_TRY(db_bind_int64(st, 7, o->cleared));
    OT_TRY(db_bind_text(st, 8, answer));
    OT_TRY(db_bind_int64(st, 9, now));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

void spsim_handle(struct spsim *s, enum pay_msg_type want, const uint8_t *p, size_t n,
                  int64_t now_ms, struct spsim_ans *ans)
{
    ot_err err = OT_OK;
    struct pay_msg m;
    struct json_err je;
    struct spsim_out o;
    struct db_conn *c = NULL;
    char *canon = NULL;
    size_t canon_len = 0;
    uint8_t hash[32];
    bool seen = false;
    bool ok = false;
    ot_err e;

    memset(ans, 0, sizeof *ans);
    memset(&je, 0, sizeof je);
    memset(&o, 0, sizeof o);
    e = pay_msg_parse(p, n, &m, &je);
    if (e != OT_OK) {
        spsim_fail(ans, e, NULL, je.field, je.message[0] != '\0' ? je.message : ot_strerror(e));
        return;
    }
    if (m.type != want) {
        spsim_fail(ans, OT_E_FORMAT, NULL, "type", "wrong message type for this route");
        return;
    }
    if (strcmp(m.sp, s->name) != 0) {
        spsim_fail(ans, OT_E_NOT_FOUND, NULL, "sp", "this back end is another SP");
        return;
    }
    e = pay_msg_verify(&m, s->pay_pub);
    if (e != OT_OK) {
        spsim_fail(ans, OT_E_AUTH, e == OT_E_AUTH ? "unsigned" : "bad_signature", "sig",
                   e == OT_E_AUTH ? "request not signed by pay"
                                  : "signature does not verify with pay's key");
        return;
    }
    if (pay_msg_fresh(&m, now_ms, s->window_ms) != OT_OK) {
        spsim_fail(ans, OT_E_CONFLICT, "replay", "ts", "request outside the time window");
        return;
    }
    OT_TRY(pay_msg_encode(&m, &canon, &canon_len));
    OT_TRY(spsim_sha256(canon, canon_len, hash));
    free(canon);
    canon = NULL;

    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_begin(c));
    OT_TRY(spsim_idem(c, &m, hash, ans, &seen));
    if (seen) {
        OT_TRY(db_rollback(c));
        goto out;
    }
    OT_TRY(spsim_fresh(c, &m, now_ms, s->window_ms, ans, &ok));
    if (!ok) {
        OT_TRY(db_rollback(c));
        goto out;
    }
    switch (m.type) {
    case PAY_MSG_PAYMENT:
        OT_TRY(s->kind == SPSIM_BANK ? spsim_pay(s, c, &m, now_ms, &o) : OT_E_UNSUPPORTED);
        break;
    case PAY_MSG_TOPUP_AUTHORISE:
        OT_TRY(s->kind == SPSIM_TRANSIT ? spsim_topup(s, c, &m, now_ms, &o) : OT_E_UNSUPPORTED);
        break;
    case PAY_MSG_TOPUP_CONFIRM:
        OT_TRY(s->kind == SPSIM_TRANSIT ? spsim_confirm(s, c, &m, now_ms, &o) : OT_E_UNSUPPORTED);
        break;
    default:
        OT_FAIL(OT_E_UNSUPPORTED);
    }
    OT_TRY(pay_msg_sign(&o.res, s->name, s->priv, s->pub));
    OT_TRY(pay_msg_encode(&o.res, &ans->body, &ans->len));
    OT_TRY(spsim_record(c, &m, hash, &o, ans->body, now_ms));
    OT_TRY(db_commit(c));
    OT_LOG_INFO("sp=%s %s id=%s client=%s %s reason=%s cleared=%lld", s->name,
                pay_msg_type_name(m.type), m.id, m.client,
                o.res.status == PAY_APPROVED ? "approved" : "declined",
                pay_reason_name(o.res.reason), (long long)o.cleared);
out:
    free(canon);
    if (err != OT_OK) {
        if (c != NULL) {
            db_rollback(c);
        }
        free(ans->body);
        ans->body = NULL;
        ans->len = 0;
        if (err == OT_E_UNSUPPORTED) {
            spsim_fail(ans, OT_E_NOT_FOUND, "wrong_back_end", "type",
                       "this back end does not take this message");
        } else {
            spsim_fail(ans, err, NULL, NULL, ot_strerror(err));
        }
    }
    db_release(c);
}
