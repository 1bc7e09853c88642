#include "pay/msg.h"

#define OT_LOG_COMPONENT "pay.msg"
#include "core/buf.h"
#include "core/log.h"

#include <stdlib.h>
#include <string.h>

/* How a member's value is written and checked. */
enum pay_kind {
    PK_ID,     /* [A-Za-z0-9._:-], 1..max */
    PK_NAME,   /* [A-Za-z0-9._-], 1..max */
    PK_TEXT,   /* printable ASCII 20-7E, 1..max */
    PK_DIGITS, /* '0'-'9', min..max */
    PK_UPPER,  /* 'A'-'Z', exactly max */
    PK_ALNUM,  /* 'A'-'Z' '0'-'9', exactly max */
    PK_HEX,    /* bytes as hex, min..max (fixed when equal) */
    PK_INT,    /* integer imin..imax */
    PK_STATUS, /* "approved" | "declined" */
    PK_REASON, /* pay_reason names */
};

struct pay_fdef {
    const char *name;
    enum pay_kind kind;
    size_t off;     /* member in struct pay_msg */
    size_t len_off; /* PK_HEX of variable length: its size_t length member; else 0 */
    size_t min, max;
    int64_t imin, imax;
};

#define PM(m) offsetof(struct pay_msg, m)

/* Indexed by enum pay_field; this order is the canonical member order. */
static const struct pay_fdef pay_fields[PAY_F_N] = {
    [PAY_F_ID] = {"id", PK_ID, PM(id), 0, 1, PAY_ID_MAX, 0, 0},
    [PAY_F_CLIENT] = {"client", PK_NAME, PM(client), 0, 1, PAY_NAME_MAX, 0, 0},
    [PAY_F_SP] = {"sp", PK_NAME, PM(sp), 0, 1, PAY_NAME_MAX, 0, 0},
    [PAY_F_NONCE] = {"nonce", PK_HEX, PM(nonce), 0, PAY_NONCE_LEN, PAY_NONCE_LEN, 0, 0},
    [PAY_F_TS] = {"ts", PK_INT, PM(ts), 0, 0, 0, 0, PAY_INT_MAX},
    [PAY_F_SEQ] = {"seq", PK_INT, PM(seq), 0, 0, 0, 1, PAY_INT_MAX},
    [PAY_F_AMOUNT] = {"amount", PK_INT, PM(amount), 0, 0, 0, 1, PAY_AMOUNT_MAX},
    [PAY_F_CURRENCY] = {"currency", PK_UPPER, PM(currency), 0, 3, 3, 0, 0},
    [PAY_F_MERCHANT] = {"merchant", PK_TEXT, PM(merchant), 0, 1, PAY_MERCHANT_MAX, 0, 0},
    [PAY_F_PAN] = {"pan", PK_DIGITS, PM(pan), 0, PAY_PAN_MIN, PAY_PAN_MAX, 0, 0},
    [PAY_F_ATC] = {"atc", PK_INT, PM(atc), 0, 0, 0, 0, 0xFFFF},
    [PAY_F_CDOL] = {"cdol", PK_HEX, PM(cdol), PM(cdol_len), 1, PAY_CDOL_MAX, 0, 0},
    [PAY_F_AC] = {"ac", PK_HEX, PM(ac), 0, PAY_AC_LEN, PAY_AC_LEN, 0, 0},
    [PAY_F_PIN_BLOCK] = {"pin_block", PK_HEX, PM(pin_block), 0, PAY_PIN_BLOCK_LEN,
                         PAY_PIN_BLOCK_LEN, 0, 0},
    [PAY_F_PURSE_ID] = {"purse_id", PK_HEX, PM(purse_id), 0, PAY_PURSE_ID_LEN, PAY_PURSE_ID_LEN, 0,
                        0},
    [PAY_F_COUNTER] = {"counter", PK_INT, PM(counter), 0, 0, 0, 0, 0xFFFFFFFFLL},
    [PAY_F_BALANCE] = {"balance", PK_INT, PM(balance), 0, 0, 0, 0, 0xFFFFFFFFLL},
    [PAY_F_MAC] = {"mac", PK_HEX, PM(mac), 0, PAY_MAC_LEN, PAY_MAC_LEN, 0, 0},
    [PAY_F_STATUS] = {"status", PK_STATUS, PM(status), 0, 0, 0, 0, 0},
    [PAY_F_REASON] = {"reason", PK_REASON, PM(reason), 0, 0, 0, 0, 0},
    [PAY_F_PIN_TRIES] = {"pin_tries", PK_INT, PM(pin_tries), 0, 0, 0, 0, 15},
    [PAY_F_AUTH_CODE] = {"auth_code", PK_ALNUM, PM(auth_code), 0, PAY_AUTH_CODE_LEN,
                         PAY_AUTH_CODE_LEN, 0, 0},
    [PAY_F_SIGNER] = {"signer", PK_NAME, PM(signer), 0, 1, PAY_NAME_MAX, 0, 0},
    [PAY_F_SIG] = {"sig", PK_HEX, PM(sig), 0, EC_P256_SIG_LEN, EC_P256_SIG_LEN, 0, 0},
};

#define B(f)        PAY_BIT(PAY_F_##f)
#define PAY_SIGNED  (B(SIGNER) | B(SIG))
#define PAY_REQ_HDR (B(ID) | B(CLIENT) | B(SP) | B(NONCE) | B(TS) | B(SEQ))
#define PAY_RES_HDR (B(ID) | B(SP) | B(STATUS) | B(REASON))

/* The members each message type requires and allows (docs/pay.md). */
static const struct {
    const char *name;
    uint32_t req;
    uint32_t opt;
} pay_types[PAY_MSG_N_TYPES] = {
    [PAY_MSG_PAYMENT] = {"payment",
                         PAY_REQ_HDR | B(AMOUNT) | B(CURRENCY) | B(MERCHANT) | B(PAN) | B(ATC)
                             | B(CDOL) | B(AC) | B(PIN_BLOCK),
                         PAY_SIGNED},
    [PAY_MSG_PAYMENT_RESULT] = {"payment_result", PAY_RES_HDR,
                                B(TS) | B(AMOUNT) | B(CURRENCY) | B(AUTH_CODE) | B(PIN_TRIES)
                                    | PAY_SIGNED},
    [PAY_MSG_TOPUP_AUTHORISE] = {"topup_authorise",
                                 PAY_REQ_HDR | B(PURSE_ID) | B(AMOUNT) | B(COUNTER) | B(BALANCE),
                                 PAY_SIGNED},
    [PAY_MSG_TOPUP_AUTHORISATION] = {"topup_authorisation", PAY_RES_HDR,
                                     B(TS) | B(PURSE_ID) | B(AMOUNT) | B(COUNTER) | B(MAC)
                                         | PAY_SIGNED},
    [PAY_MSG_TOPUP_CONFIRM] = {"topup_confirm", PAY_REQ_HDR | B(PURSE_ID) | B(COUNTER) | B(BALANCE),
                               B(MAC) | PAY_SIGNED},
    [PAY_MSG_TOPUP_CONFIRMATION] = {"topup_confirmation", PAY_RES_HDR,
                                    B(TS) | B(PURSE_ID) | B(COUNTER) | B(BALANCE) | PAY_SIGNED},
};

static const char *const pay_type_names[PAY_MSG_N_TYPES] = {
    "payment",       "payment_result",     "topup_authorise", "topup_authorisation",
    "topup_confirm", "topup_confirmation",
};
static const char *const pay_status_names[] = {"approved", "declined"};
static const char *const pay_reason_names[PAY_R_N] = {
    "ok",     "wrong_pin", "pin_blocked",   "bad_cryptogram", "insufficient_funds", "unknown_card",
    "replay", "limit",     "bad_signature", "bad_proof",      "not_credited",       "conflict",
};

const char *pay_msg_type_name(enum pay_msg_type t)
{
    return (unsigned)t < PAY_MSG_N_TYPES ? pay_type_names[t] : "unknown";
}

const char *pay_reason_name(enum pay_reason r)
{
    return (unsigned)r < PAY_R_N ? pay_reason_names[r] : "unknown";
}

void pay_msg_init(struct pay_msg *m, enum pay_msg_type t)
{
    memset(m, 0, sizeof *m);
    m->type = t;
}

static char *pay_str_at(struct pay_msg *m, const struct pay_fdef *d)
{
    return (char *)m + d->off;
}

static const char *pay_cstr_at(const struct pay_msg *m, const struct pay_fdef *d)
{
    return (const char *)m + d->off;
}

static int64_t *pay_int_at(struct pay_msg *m, const struct pay_fdef *d)
{
    return (int64_t *)(void *)((char *)m + d->off);
}

static bool pay_is_str_kind(enum pay_kind k)
{
    return k == PK_ID || k == PK_NAME || k == PK_TEXT || k == PK_DIGITS || k == PK_UPPER
           || k == PK_ALNUM;
}

ot_err pay_msg_set_str(struct pay_msg *m, enum pay_field f, const char *s)
{
    if (m == NULL || s == NULL || (unsigned)f >= PAY_F_N || !pay_is_str_kind(pay_fields[f].kind)) {
        return OT_E_ARG;
    }
    size_t n = strlen(s);
    if (n > pay_fields[f].max) {
        return OT_E_TOO_LONG;
    }
    memcpy(pay_str_at(m, &pay_fields[f]), s, n + 1);
    m->present |= PAY_BIT(f);
    return OT_OK;
}

void pay_msg_set_int(struct pay_msg *m, enum pay_field f, int64_t v)
{
    if (m == NULL || (unsigned)f >= PAY_F_N) {
        return;
    }
    if (pay_fields[f].kind == PK_INT) {
        *pay_int_at(m, &pay_fields[f]) = v;
    } else if (f == PAY_F_STATUS) {
        m->status = v == PAY_APPROVED ? PAY_APPROVED : PAY_DECLINED;
    } else if (f == PAY_F_REASON) {
        m->reason = (v >= 0 && v < PAY_R_N) ? (enum pay_reason)v : PAY_R_N;
    } else {
        return;
    }
    m->present |= PAY_BIT(f);
}

ot_err pay_msg_set_bytes(struct pay_msg *m, enum pay_field f, const uint8_t *p, size_t n)
{
    if (m == NULL || p == NULL || (unsigned)f >= PAY_F_N || pay_fields[f].kind != PK_HEX) {
        return OT_E_ARG;
    }
    const struct pay_fdef *d = &pay_fields[f];
    if (n < d->min || n > d->max) {
        return OT_E_RANGE;
    }
    memcpy((uint8_t *)m + d->off, p, n);
    if (d->len_off != 0) {
        *(size_t *)(void *)((uint8_t *)m + d->len_off) = n;
    }
    m->present |= PAY_BIT(f);
    return OT_OK;
}

/* ---------------------------------------------------------------- checks */

static bool pay_char_ok(enum pay_kind k, char c)
{
    bool digit = c >= '0' && c <= '9';
    bool upper = c >= 'A' && c <= 'Z';
    bool lower = c >= 'a' && c <= 'z';
    switch (k) {
    case PK_ID:
        return digit || upper || lower || c == '.' || c == '_' || c == '-' || c == ':';
    case PK_NAME:
        return digit || upper || lower || c == '.' || c == '_' || c == '-';
    case PK_TEXT:
        return c >= 0x20 && c <= 0x7E;
    case PK_DIGITS:
        return digit;
    case PK_UPPER:
        return upper;
    case PK_ALNUM:
        return upper || digit;
    default:
        return false;
    }
}

/* One member's value against its definition. */
static ot_err pay_check_field(const struct pay_msg *m, enum pay_field f, struct json_err *err)
{
    const struct pay_fdef *d = &pay_fields[f];

    if (pay_is_str_kind(d->kind)) {
        const char *s = pay_cstr_at(m, d);
        size_t n = strnlen(s, d->max + 1);
        if (n < d->min || n > d->max) {
            return json_err_set(err, n > d->max ? OT_E_TOO_LONG : OT_E_RANGE, d->name,
                                "length must be %zu..%zu", d->min, d->max);
        }
        for (size_t i = 0; i < n; i++) {
            if (!pay_char_ok(d->kind, s[i])) {
                return json_err_set(err, OT_E_FORMAT, d->name, "character not allowed at %zu", i);
            }
        }
        return OT_OK;
    }
    switch (d->kind) {
    case PK_INT: {
        int64_t v = *(const int64_t *)(const void *)((const char *)m + d->off);
        if (v < d->imin || v > d->imax) {
            return json_err_set(err, OT_E_RANGE, d->name, "must be %lld..%lld", (long long)d->imin,
                                (long long)d->imax);
        }
        return OT_OK;
    }
    case PK_HEX:
        if (d->len_off != 0) {
            size_t n = *(const size_t *)(const void *)((const char *)m + d->len_off);
            if (n < d->min || n > d->max) {
                return json_err_set(err, OT_E_RANGE, d->name, "must be %zu..%zu bytes", d->min,
                                    d->max);
            }
        }
        return OT_OK;
    case PK_STATUS:
        return (unsigned)m->status <= PAY_DECLINED
                   ? OT_OK
                   : json_err_set(err, OT_E_RANGE, d->name, "unknown status");
    case PK_REASON:
        return (unsigned)m->reason < PAY_R_N
                   ? OT_OK
                   : json_err_set(err, OT_E_RANGE, d->name, "unknown reason");
    default:
        return json_err_set(err, OT_E_INTERNAL, d->name, "bad field kind");
    }
}

static bool pay_has(const struct pay_msg *m, enum pay_field f)
{
    return (m->present & PAY_BIT(f)) != 0;
}

/* Rules across members (docs/pay.md): a signature comes with its signer; an
 * approval says "ok" and a decline says why; an approved payment carries
 * its authorisation code and a decline none; an approved top-up
 * authorisation carries the whole credit command and a declined one no MAC. */
static ot_err pay_check_rules(const struct pay_msg *m, struct json_err *err)
{
    if (pay_has(m, PAY_F_SIGNER) != pay_has(m, PAY_F_SIG)) {
        return json_err_set(err, OT_E_FORMAT, pay_has(m, PAY_F_SIG) ? "signer" : "sig",
                            "signer and sig go together");
    }
    if (pay_has(m, PAY_F_STATUS)) {
        bool ok = m->status == PAY_APPROVED;
        if (ok != (m->reason == PAY_R_OK)) {
            return json_err_set(err, OT_E_FORMAT, "reason",
                                ok ? "an approval has reason ok" : "a decline needs a reason");
        }
        if (m->type == PAY_MSG_PAYMENT_RESULT && ok != pay_has(m, PAY_F_AUTH_CODE)) {
            return json_err_set(err, OT_E_FORMAT, "auth_code",
                                ok ? "missing" : "not allowed in a decline");
        }
        if (m->type == PAY_MSG_TOPUP_AUTHORISATION) {
            uint32_t cmd = B(PURSE_ID) | B(AMOUNT) | B(COUNTER) | B(MAC);
            if (ok && (m->present & cmd) != cmd) {
                return json_err_set(err, OT_E_FORMAT, "mac",
                                    "an approval carries purse_id, amount, counter and mac");
            }
            if (!ok && pay_has(m, PAY_F_MAC)) {
                return json_err_set(err, OT_E_FORMAT, "mac", "not allowed in a decline");
            }
        }
    }
    return OT_OK;
}

/* The whole message against its type: members present, allowed, valid. */
static ot_err pay_check(const struct pay_msg *m, struct json_err *err)
{
    ot_err e = OT_OK;

    if ((unsigned)m->type >= PAY_MSG_N_TYPES) {
        return json_err_set(err, OT_E_FORMAT, "type", "unknown message type");
    }
    uint32_t req = pay_types[m->type].req;
    uint32_t allowed = req | pay_types[m->type].opt;
    for (unsigned f = 0; f < PAY_F_N; f++) {
        uint32_t bit = PAY_BIT(f);
        if ((req & bit) != 0 && (m->present & bit) == 0) {
            return json_err_set(err, OT_E_FORMAT, pay_fields[f].name, "missing");
        }
        if ((m->present & bit) != 0 && (allowed & bit) == 0) {
            return json_err_set(err, OT_E_FORMAT, pay_fields[f].name, "not allowed in %s",
                                pay_types[m->type].name);
        }
        if ((m->present & bit) != 0 && (e = pay_check_field(m, (enum pay_field)f, err)) != OT_OK) {
            return e;
        }
    }
    return pay_check_rules(m, err);
}

/* ---------------------------------------------------------------- encode */

static ot_err pay_put_field(json_t *o, const struct pay_msg *m, const struct pay_fdef *d)
{
    if (pay_is_str_kind(d->kind)) {
        return json_put_str(o, d->name, pay_cstr_at(m, d));
    }
    switch (d->kind) {
    case PK_INT:
        return json_put_int(o, d->name, *(const int64_t *)(const void *)((const char *)m + d->off));
    case PK_HEX: {
        size_t n = d->len_off != 0 ? *(const size_t *)(const void *)((const char *)m + d->len_off)
                                   : d->max;
        return json_put_hex(o, d->name, (const uint8_t *)m + d->off, n);
    }
    case PK_STATUS:
        return json_put_str(o, d->name, pay_status_names[m->status]);
    case PK_REASON:
        return json_put_str(o, d->name, pay_reason_names[m->reason]);
    default:
        return OT_E_INTERNAL;
    }
}

/* Serialises the members of m in mask, in canonical order. */
static ot_err pay_encode_mask(const struct pay_msg *m, uint32_t mask, char **out, size_t *len)
{
    ot_err err = OT_OK;
    json_t *o = json_obj_new();

    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(json_put_int(o, "v", PAY_MSG_VERSION));
    OT_TRY(json_put_str(o, "type", pay_type_names[m->type]));
    for (unsigned f = 0; f < PAY_F_N; f++) {
        if ((mask & PAY_BIT(f)) != 0) {
            OT_TRY(pay_put_field(o, m, &pay_fields[f]));
        }
    }
    OT_TRY(json_serialize(o, out, len));
out:
    json_free(o);
    return err;
}

ot_err pay_msg_encode(const struct pay_msg *m, char **out, size_t *len)
{
    ot_err e;

    if (out == NULL || len == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (m == NULL) {
        return OT_E_ARG;
    }
    e = pay_check(m, NULL);
    return e != OT_OK ? e : pay_encode_mask(m, m->present, out, len);
}

/* ---------------------------------------------------------------- parse */

/* Reads member d of j into m when present; a missing required member is the
 * caller's to report (pay_check). */
static ot_err pay_get_field(const json_t *j, struct pay_msg *m, enum pay_field f,
                            struct json_err *err)
{
    ot_err e = OT_OK;
    const struct pay_fdef *d = &pay_fields[f];
    bool present = false;

    if (pay_is_str_kind(d->kind)) {
        const char *s = NULL;
        e = json_opt_str(j, d->name, 0, d->max, &s, err);
        if (e == OT_OK && s != NULL) {
            memcpy(pay_str_at(m, d), s, strlen(s) + 1);
            present = true;
        }
    } else if (d->kind == PK_INT) {
        int64_t v = INT64_MIN;
        e = json_opt_int(j, d->name, d->imin, d->imax, INT64_MIN, &v, err);
        if (e == OT_OK && v != INT64_MIN) {
            *pay_int_at(m, d) = v;
            present = true;
        }
    } else if (d->kind == PK_HEX) {
        size_t n = d->max;
        e = json_opt_hex(j, d->name, d->min, d->max, (uint8_t *)m + d->off, &n, &present, err);
        if (e == OT_OK && present && d->len_off != 0) {
            *(size_t *)(void *)((uint8_t *)m + d->len_off) = n;
        }
    } else {
        size_t idx = SIZE_MAX;
        if (d->kind == PK_STATUS) {
            e = json_opt_enum(j, d->name, pay_status_names, 2, SIZE_MAX, &idx, err);
            if (e == OT_OK && idx != SIZE_MAX) {
                m->status = (enum pay_status)idx;
            }
        } else {
            e = json_opt_enum(j, d->name, pay_reason_names, PAY_R_N, SIZE_MAX, &idx, err);
            if (e == OT_OK && idx != SIZE_MAX) {
                m->reason = (enum pay_reason)idx;
            }
        }
        present = e == OT_OK && idx != SIZE_MAX;
    }
    if (present) {
        m->present |= PAY_BIT(f);
    }
    return e;
}

ot_err pay_msg_parse(const void *p, size_t n, struct pay_msg *m, struct json_err *err)
{
    ot_err err_ = OT_OK;
    json_t *j = NULL;
    const char *allowed[PAY_F_N + 3];
    size_t na = 0;
    size_t t = 0;
    int64_t v = 0;

    if (m == NULL || (p == NULL && n > 0)) {
        return OT_E_ARG;
    }
    memset(m, 0, sizeof *m);
    if (n > PAY_MSG_MAX) {
        return json_err_set(err, OT_E_LIMIT, "", "message over %u bytes", PAY_MSG_MAX);
    }
    err_ = json_parse(p, n, PAY_MSG_MAX, &j, err);
    if (err_ == OT_OK && !json_is_obj(j)) {
        err_ = json_err_set(err, OT_E_FORMAT, "", "not an object");
    }
    if (err_ == OT_OK) {
        err_ = json_get_int(j, "v", PAY_MSG_VERSION, PAY_MSG_VERSION, &v, err);
    }
    if (err_ == OT_OK) {
        err_ = json_get_enum(j, "type", pay_type_names, PAY_MSG_N_TYPES, &t, err);
    }
    if (err_ == OT_OK) {
        uint32_t mask = pay_types[t].req | pay_types[t].opt;
        m->type = (enum pay_msg_type)t;
        allowed[na++] = "v";
        allowed[na++] = "type";
        for (unsigned f = 0; f < PAY_F_N; f++) {
            if ((mask & PAY_BIT(f)) != 0) {
                allowed[na++] = pay_fields[f].name;
            }
        }
        allowed[na] = NULL;
        err_ = json_check_fields(j, allowed, NULL, err);
        for (unsigned f = 0; err_ == OT_OK && f < PAY_F_N; f++) {
            if ((mask & PAY_BIT(f)) != 0) {
                err_ = pay_get_field(j, m, (enum pay_field)f, err);
            }
        }
    }
    if (err_ == OT_OK) {
        err_ = pay_check(m, err);
    }
    json_free(j);
    if (err_ != OT_OK) {
        memset(m, 0, sizeof *m);
    }
    return err_;
}

/* ---------------------------------------------------------------- signatures */

/* The signed bytes: the canonical form without "sig". */
static ot_err pay_signed_bytes(const struct pay_msg *m, char **out, size_t *len)
{
    return pay_encode_mask(m, m->present & ~PAY_BIT(PAY_F_SIG), out, len);
}

ot_err pay_msg_sign(struct pay_msg *m, const char *signer, const uint8_t priv[EC_P256_PRIV_LEN],
                    const uint8_t pub[EC_P256_PUB_LEN])
{
    ot_err err = OT_OK;
    char *bytes = NULL;
    size_t n = 0;
    struct pay_msg c;

    if (m == NULL || signer == NULL || priv == NULL || pub == NULL) {
        return OT_E_ARG;
    }
    c = *m;
    OT_TRY(pay_msg_set_str(&c, PAY_F_SIGNER, signer));
    c.present |= PAY_BIT(PAY_F_SIG); /* checked as the message will be sent */
    OT_TRY(pay_check(&c, NULL));
    OT_TRY(pay_signed_bytes(&c, &bytes, &n));
    OT_TRY(ec_p256_sign(priv, pub, (const uint8_t *)bytes, n, c.sig));
    *m = c;
out:
    free(bytes);
    return err;
}

ot_err pay_msg_verify(const struct pay_msg *m, const uint8_t pub[EC_P256_PUB_LEN])
{
    ot_err err = OT_OK;
    char *bytes = NULL;
    size_t n = 0;

    if (m == NULL || pub == NULL) {
        return OT_E_ARG;
    }
    if (!pay_has(m, PAY_F_SIG) || !pay_has(m, PAY_F_SIGNER)) {
        return OT_E_AUTH;
    }
    OT_TRY(pay_signed_bytes(m, &bytes, &n));
    err = ec_p256_verify(pub, (const uint8_t *)bytes, n, m->sig);
out:
    free(bytes);
    return err;
}

ot_err pay_msg_fresh(const struct pay_msg *m, int64_t now_ms, int64_t window_ms)
{
    if (m == NULL || window_ms < 0) {
        return OT_E_ARG;
    }
    if (!pay_has(m, PAY_F_TS)) {
        return OT_E_REPLAY;
    }
    int64_t d = m->ts > now_ms ? m->ts - now_ms : now_ms - m->ts;
    return d <= window_ms ? OT_OK : OT_E_REPLAY;
}
