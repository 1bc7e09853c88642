/* SE record validation: one static table of columns, one validator per kind
 * of field, shared by the CSV and the JSON import paths. */
#define OT_LOG_COMPONENT "tsm.serec"
#include "tsm/serec.h"

#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

enum tsm_fkind {
    TSM_F_CIN,
    TSM_F_TYPE,
    TSM_F_MNO,
    TSM_F_MSISDN,
    TSM_F_IMSI,
    TSM_F_PROFILE,
    TSM_F_VERSION,
    TSM_F_CERT,
    TSM_F_DATE,
    TSM_F_INT,
    TSM_F_KVN,
    TSM_F_KEY,
};

enum tsm_keyrole {
    TSM_KR_NONE,
    TSM_KR_KVN,
    TSM_KR_ENC,
    TSM_KR_MAC,
    TSM_KR_DEK,
};

struct tsm_col {
    const char *name;
    enum tsm_fkind kind;
    bool required;
    int64_t min; /* TSM_F_INT */
    int64_t max;
    bool csd; /* key set: false = ISD, true = central SD */
    enum tsm_keyrole role;
};

/* Column order is the canonical CSV header. */
static const struct tsm_col tsm_cols[] = {
    {"cin", TSM_F_CIN, true, 0, 0, false, TSM_KR_NONE},
    {"se_type", TSM_F_TYPE, true, 0, 0, false, TSM_KR_NONE},
    {"mno", TSM_F_MNO, true, 0, 0, false, TSM_KR_NONE},
    {"msisdn", TSM_F_MSISDN, false, 0, 0, false, TSM_KR_NONE},
    {"imsi", TSM_F_IMSI, false, 0, 0, false, TSM_KR_NONE},
    {"profile_id", TSM_F_PROFILE, true, 0, 0, false, TSM_KR_NONE},
    {"gp_version", TSM_F_VERSION, true, 0, 0, false, TSM_KR_NONE},
    {"jc_version", TSM_F_VERSION, true, 0, 0, false, TSM_KR_NONE},
    {"cert_level", TSM_F_CERT, true, 0, 0, false, TSM_KR_NONE},
    {"expiry", TSM_F_DATE, true, 0, 0, false, TSM_KR_NONE},
    {"free_memory", TSM_F_INT, true, 0, INT32_MAX, false, TSM_KR_NONE},
    {"master_key_index", TSM_F_INT, true, 0, 255, false, TSM_KR_NONE},
    {"isd_kvn", TSM_F_KVN, false, 1, 127, false, TSM_KR_KVN},
    {"isd_enc", TSM_F_KEY, false, 0, 0, false, TSM_KR_ENC},
    {"isd_mac", TSM_F_KEY, false, 0, 0, false, TSM_KR_MAC},
    {"isd_dek", TSM_F_KEY, false, 0, 0, false, TSM_KR_DEK},
    {"csd_kvn", TSM_F_KVN, false, 1, 127, true, TSM_KR_KVN},
    {"csd_enc", TSM_F_KEY, false, 0, 0, true, TSM_KR_ENC},
    {"csd_mac", TSM_F_KEY, false, 0, 0, true, TSM_KR_MAC},
    {"csd_dek", TSM_F_KEY, false, 0, 0, true, TSM_KR_DEK},
};

#define TSM_NCOLS (sizeof(tsm_cols) / sizeof(tsm_cols[0]))

const char *const tsm_serec_columns[] = {
    "cin",        "se_type",    "mno",        "msisdn",  "imsi",        "profile_id",
    "gp_version", "jc_version", "cert_level", "expiry",  "free_memory", "master_key_index",
    "isd_kvn",    "isd_enc",    "isd_mac",    "isd_dek", "csd_kvn",     "csd_enc",
    "csd_mac",    "csd_dek",    NULL};

_Static_assert(sizeof(tsm_serec_columns) / sizeof(tsm_serec_columns[0]) == TSM_NCOLS + 1,
               "column name list matches the table");
_Static_assert(TSM_NCOLS <= 32, "columns fit a 32-bit mask");

int tsm_serec_column(const char *name)
{
    size_t i;

    for (i = 0; i < TSM_NCOLS; i++) {
        if (strcmp(tsm_cols[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

void tsm_serec_init(struct tsm_serec *r)
{
    memset(r, 0, sizeof(*r));
}

void tsm_serec_wipe(struct tsm_serec *r)
{
    ot_mem_wipe(&r->isd, sizeof(r->isd));
    ot_mem_wipe(&r->csd, sizeof(r->csd));
}

static ot_err tsm_row_fail(struct tsm_row_err *e, const char *field, ot_err code, const char *msg)
{
    e->field = field;
    snprintf(e->message, sizeof(e->message), "%s", msg);
    return code;
}

static bool tsm_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool tsm_is_alnum(char c)
{
    return tsm_is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* len chars of s, all digits, within [min, max] chars. */
static bool tsm_digits(const char *s, size_t len, size_t min, size_t max)
{
    size_t i;

    if (len < min || len > max) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (!tsm_is_digit(s[i])) {
            return false;
        }
    }
    return true;
}

/* 1..max chars, each alphanumeric or in extra. */
static bool tsm_word(const char *s, size_t len, size_t max, const char *extra)
{
    size_t i;

    if (len < 1 || len > max) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (!tsm_is_alnum(s[i]) && (s[i] == '\0' || strchr(extra, s[i]) == NULL)) {
            return false;
        }
    }
    return true;
}

static ot_err tsm_copy(char *out, size_t cap, const char *s, size_t len)
{
    if (len >= cap) {
        return OT_E_TOO_LONG;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return OT_OK;
}

ot_err tsm_serec_norm_msisdn(const char *s, char *out, size_t cap)
{
    size_t len = strlen(s);

    if (len > 0 && s[0] == '+') {
        s++;
        len--;
    }
    if (!tsm_digits(s, len, 5, TSM_MSISDN_MAX)) {
        return OT_E_FORMAT;
    }
    return tsm_copy(out, cap, s, len);
}

ot_err tsm_serec_norm_imsi(const char *s, char *out, size_t cap)
{
    size_t len = strlen(s);

    if (!tsm_digits(s, len, 6, TSM_IMSI_MAX)) {
        return OT_E_FORMAT;
    }
    return tsm_copy(out, cap, s, len);
}

ot_err tsm_serec_norm_cin(const char *s, char *out, size_t cap)
{
    size_t len = strlen(s);
    size_t i;

    if (len < 8 || len > TSM_CIN_MAX || len % 2 != 0 || len >= cap) {
        return OT_E_FORMAT;
    }
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (c >= 'a' && c <= 'f') {
            c = (char)(c - 'a' + 'A');
        } else if (!tsm_is_digit(c) && !(c >= 'A' && c <= 'F')) {
            return OT_E_FORMAT;
        }
        out[i] = c;
    }
    out[len] = '\0';
    return OT_OK;
}

bool tsm_serec_type_ok(const char *s)
{
    return strcmp(s, "UICC") == 0 || strcmp(s, "eSE") == 0 || strcmp(s, "microSD") == 0;
}

bool tsm_serec_mno_ok(const char *s)
{
    return tsm_word(s, strlen(s), TSM_MNO_MAX, "._-");
}

/* "2.2.1": 2 or 3 numbers of 1..3 digits separated by dots. */
static bool tsm_version_ok(const char *s, size_t len)
{
    size_t i = 0;
    size_t parts = 0;

    if (len > TSM_VERSION_MAX) {
        return false;
    }
    while (i < len) {
        size_t d = 0;
        while (i < len && tsm_is_digit(s[i]) && d < 4) {
            i++;
            d++;
        }
        if (d == 0 || d > 3) {
            return false;
        }
        parts++;
        if (i == len) {
            break;
        }
        if (s[i] != '.') {
            return false;
        }
        i++;
        if (i == len) {
            return false;
        }
    }
    return parts >= 2 && parts <= 3;
}

/* YYYY-MM-DD, a real date, years 2000..2199. */
static bool tsm_date_ok(const char *s, size_t len)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y;
    int m;
    int d;

    if (len != 10 || s[4] != '-' || s[7] != '-' || !tsm_digits(s, 4, 4, 4)
        || !tsm_digits(s + 5, 2, 2, 2) || !tsm_digits(s + 8, 2, 2, 2)) {
        return false;
    }
    y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    m = (s[5] - '0') * 10 + (s[6] - '0');
    d = (s[8] - '0') * 10 + (s[9] - '0');
    if (y < 2000 || y > 2199 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) {
        return false;
    }
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) {
        return false;
    }
    return true;
}

/* Decimal text without sign or leading zeros (except "0"), within [min, max]. */
static bool tsm_int_text(const char *s, size_t len, int64_t min, int64_t max, int64_t *out)
{
    int64_t v = 0;
    size_t i;

    if (len < 1 || len > 10 || !tsm_digits(s, len, 1, 10) || (len > 1 && s[0] == '0')) {
        return false;
    }
    for (i = 0; i < len; i++) {
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static struct tsm_keyset *tsm_keyset_of(struct tsm_serec *r, const struct tsm_col *c)
{
    return c->csd ? &r->csd : &r->isd;
}

/* Sets an integer-valued column (TSM_F_INT, TSM_F_KVN) after range checks. */
static ot_err tsm_set_int(struct tsm_serec *r, int col, int64_t v, struct tsm_row_err *e)
{
    const struct tsm_col *c = &tsm_cols[col];
    char msg[TSM_ROW_MSG_MAX];

    if (v < c->min || v > c->max) {
        snprintf(msg, sizeof(msg), "must be an integer from %lld to %lld", (long long)c->min,
                 (long long)c->max);
        return tsm_row_fail(e, c->name, OT_E_RANGE, msg);
    }
    if (c->kind == TSM_F_KVN) {
        tsm_keyset_of(r, c)->kvn = (uint8_t)v;
    } else if (strcmp(c->name, "free_memory") == 0) {
        r->se.free_memory = v;
    } else {
        r->se.master_key_index = v;
    }
    return OT_OK;
}

/* Sets a text-valued column (every kind but TSM_F_INT/KVN). */
static ot_err tsm_set_str(struct tsm_serec *r, int col, const char *val, size_t len,
                          struct tsm_row_err *e)
{
    const struct tsm_col *c = &tsm_cols[col];
    struct tsm_se *se = &r->se;
    char tmp[TSM_KEY_MAX * 2 + 2];
    struct tsm_keyset *ks;
    uint8_t *dst = NULL;
    size_t klen;
    ot_err err = OT_OK;

    if (memchr(val, '\0', len) != NULL) {
        return tsm_row_fail(e, c->name, OT_E_FORMAT, "contains a NUL character");
    }
    switch (c->kind) {
    case TSM_F_CIN:
        if (len >= sizeof(tmp) || tsm_copy(tmp, sizeof(tmp), val, len) != OT_OK
            || tsm_serec_norm_cin(tmp, se->cin, sizeof(se->cin)) != OT_OK) {
            return tsm_row_fail(e, c->name, OT_E_FORMAT,
                                "must be 8 to 32 hexadecimal digits, an even count");
        }
        break;
    case TSM_F_TYPE:
        if (tsm_copy(se->se_type, sizeof(se->se_type), val, len) != OT_OK
            || !tsm_serec_type_ok(se->se_type)) {
            se->se_type[0] = '\0';
            return tsm_row_fail(e, c->name, OT_E_FORMAT, "must be one of UICC, eSE, microSD");
        }
        break;
    case TSM_F_MNO:
        if (!tsm_word(val, len, TSM_MNO_MAX, "._-")) {
            return tsm_row_fail(e, c->name, OT_E_FORMAT,
                                "must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
        }
        err = tsm_copy(se->mno, sizeof(se->mno), val, len);
        break;
    case TSM_F_MSISDN:
        if (len >= sizeof(tmp) || tsm_copy(tmp, sizeof(tmp), val, len) != OT_OK
            || tsm_serec_norm_msisdn(tmp, se->msisdn, sizeof(se->msisdn)) != OT_OK) {
            return tsm_row_fail(e, c->name, OT_E_FORMAT,
                                "must be 5 to 15 digits, optionally after a '+'");
        }
        break;
    case TSM_F_IMSI:
        if (len >= sizeof(tmp) || tsm_copy(tmp, sizeof(tmp), val, len) != OT_OK
            || tsm_serec_norm_imsi(tmp, se->imsi, sizeof(se->imsi)) != OT_OK) {
            return tsm_row_fail(e, c->name, OT_E_FORMAT, "must be 6 to 15 digits");
        }
        break;
    case TSM_F_PROFILE:
        if (!tsm_word(val, len, TSM_PROFILE_MAX, "._:-")) {
            return tsm_row_fail(e, c->name, OT_E_FORMAT,
                                "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -");
        }
        err = tsm_copy(se->profile_id, sizeof(se->profile_id), val, len);
        break;
    case TSM_F_VERSION:
        if (!tsm_version_ok(val, len)) {
            return tsm_row_fail(e, c->name, OT_E_FORMAT,
                                "must be a version of 2 or 3 numbers such as 2.2.1");
        }
        err = tsm_copy(strcmp(c->name, "gp_version") == 0 ? se->gp_version : se->jc_version,
                       TSM_VERSION_MAX + 1, val, len);
        break;
    case TSM_F_CERT:
        /* It starts with a letter or a digit: a leading + or - (or = @)
         * would be a formula where the registry is exported to a sheet. */
        if (!tsm_word(val, len, TSM_CERT_MAX, " +._-") || val[len - 1] == ' '
            || !((val[0] >= 'A' && val[0] <= 'Z') || (val[0] >= 'a' && val[0] <= 'z')
                 || tsm_is_digit(val[0]))) {
            return tsm_row_fail(e, c->name, OT_E_FORMAT,
                                "must be 1 to 32 characters of A-Z a-z 0-9 space + . _ -, "
                                "starting with a letter or a digit");
        }
        err = tsm_copy(se->cert_level, sizeof(se->cert_level), val, len);
        break;
    case TSM_F_DATE:
        if (!tsm_date_ok(val, len)) {
            return tsm_row_fail(e, c->name, OT_E_FORMAT,
                                "must be a date YYYY-MM-DD between 2000 and 2199");
        }
        err = tsm_copy(se->expiry, sizeof(se->expiry), val, len);
        break;
    case TSM_F_KEY:
        ks = tsm_keyset_of(r, c);
        dst = c->role == TSM_KR_ENC ? ks->enc : c->role == TSM_KR_MAC ? ks->mac : ks->dek;
        klen = TSM_KEY_MAX;
        if (hex_decode(val, len, dst, &klen) != OT_OK || (klen != 16 && klen != 24 && klen != 32)) {
            ot_mem_wipe(dst, TSM_KEY_MAX);
            return tsm_row_fail(e, c->name, OT_E_FORMAT,
                                "must be a key of 16, 24 or 32 bytes in hexadecimal");
        }
        if (ks->key_len != 0 && ks->key_len != klen) {
            return tsm_row_fail(e, c->name, OT_E_FORMAT,
                                "keys of one key set must have the same length");
        }
        ks->key_len = klen;
        break;
    case TSM_F_INT:
    case TSM_F_KVN:
        return tsm_row_fail(e, c->name, OT_E_INTERNAL, "not a text field");
    }
    if (err != OT_OK) {
        return tsm_row_fail(e, c->name, OT_E_FORMAT, "too long");
    }
    return OT_OK;
}

ot_err tsm_serec_set_text(struct tsm_serec *r, int col, const char *val, size_t len,
                          struct tsm_row_err *e)
{
    const struct tsm_col *c;
    int64_t v = 0;
    char msg[TSM_ROW_MSG_MAX];

    if (col < 0 || (size_t)col >= TSM_NCOLS) {
        return tsm_row_fail(e, "", OT_E_ARG, "unknown column");
    }
    c = &tsm_cols[col];
    if (len == 0) {
        if (c->required) {
            return tsm_row_fail(e, c->name, OT_E_FORMAT, "is required");
        }
        return OT_OK;
    }
    if (c->kind == TSM_F_INT || c->kind == TSM_F_KVN) {
        if (!tsm_int_text(val, len, INT64_MIN, INT64_MAX, &v)) {
            snprintf(msg, sizeof(msg), "must be an integer from %lld to %lld", (long long)c->min,
                     (long long)c->max);
            return tsm_row_fail(e, c->name, OT_E_FORMAT, msg);
        }
        return tsm_set_int(r, col, v, e);
    }
    return tsm_set_str(r, col, val, len, e);
}

ot_err tsm_serec_finish(struct tsm_serec *r, uint32_t mask, struct tsm_row_err *e)
{
    size_t i;
    int set;
    uint32_t ks_mask;

    for (i = 0; i < TSM_NCOLS; i++) {
        if (tsm_cols[i].required && (mask & (1u << i)) == 0) {
            return tsm_row_fail(e, tsm_cols[i].name, OT_E_FORMAT, "is required");
        }
    }
    /* A key set is all four columns or none. */
    for (set = 0; set < 2; set++) {
        struct tsm_keyset *ks = set == 0 ? &r->isd : &r->csd;
        const char *first_missing = NULL;
        ks_mask = 0;
        for (i = 0; i < TSM_NCOLS; i++) {
            if (tsm_cols[i].role != TSM_KR_NONE && tsm_cols[i].csd == (set == 1)) {
                if (mask & (1u << i)) {
                    ks_mask |= 1u << tsm_cols[i].role;
                } else if (first_missing == NULL) {
                    first_missing = tsm_cols[i].name;
                }
            }
        }
        if (ks_mask != 0 && first_missing != NULL) {
            return tsm_row_fail(e, first_missing, OT_E_FORMAT,
                                "a key set needs kvn, enc, mac and dek together");
        }
        ks->present = ks_mask != 0;
    }
    return OT_OK;
}

ot_err tsm_serec_from_json(const json_t *obj, struct tsm_serec *r, struct tsm_row_err *e)
{
    struct json_err jerr;
    uint32_t mask = 0;
    ot_err err = OT_OK;
    size_t i;

    tsm_serec_init(r);
    memset(&jerr, 0, sizeof(jerr));
    if (!json_is_obj(obj)) {
        return tsm_row_fail(e, "", OT_E_FORMAT, "must be a JSON object");
    }
    if (json_check_fields(obj, tsm_serec_columns, "", &jerr) != OT_OK) {
        e->field = "";
        snprintf(e->message, sizeof(e->message), "unknown field \"%.64s\"", jerr.field);
        return OT_E_FORMAT;
    }
    for (i = 0; i < TSM_NCOLS; i++) {
        const struct tsm_col *c = &tsm_cols[i];
        if (c->kind == TSM_F_INT || c->kind == TSM_F_KVN) {
            int64_t v = 0;
            int64_t none = INT64_MIN;
            if (json_opt_int(obj, c->name, INT64_MIN, INT64_MAX, none, &v, &jerr) != OT_OK) {
                return tsm_row_fail(e, c->name, OT_E_FORMAT, "must be an integer");
            }
            if (v == none) {
                continue;
            }
            err = tsm_set_int(r, (int)i, v, e);
            if (err != OT_OK) {
                return err;
            }
            mask |= 1u << i;
        } else {
            const char *s = NULL;
            if (json_opt_str(obj, c->name, 0, 256, &s, &jerr) != OT_OK) {
                return tsm_row_fail(e, c->name, OT_E_FORMAT,
                                    "must be a string of at most 256 bytes");
            }
            if (s == NULL || s[0] == '\0') {
                continue; /* absent, null or empty: tsm_serec_finish names a required one */
            }
            err = tsm_serec_set_text(r, (int)i, s, strlen(s), e);
            if (err != OT_OK) {
                return err;
            }
            mask |= 1u << i;
        }
    }
    return tsm_serec_finish(r, mask, e);
}

json_t *tsm_se_to_json(const struct tsm_se *se)
{
    json_t *o = json_obj_new();

    if (o == NULL) {
        return NULL;
    }
    if (json_put_str(o, "cin", se->cin) != OT_OK || json_put_str(o, "se_type", se->se_type) != OT_OK
        || json_put_str(o, "mno", se->mno) != OT_OK
        || json_put_str(o, "msisdn", se->msisdn[0] ? se->msisdn : NULL) != OT_OK
        || json_put_str(o, "imsi", se->imsi[0] ? se->imsi : NULL) != OT_OK
        || json_put_str(o, "profile_id", se->profile_id) != OT_OK
        || json_put_str(o, "gp_version", se->gp_version) != OT_OK
        || json_put_str(o, "jc_version", se->jc_version) != OT_OK
        || json_put_str(o, "cert_level", se->cert_level) != OT_OK
        || json_put_str(o, "expiry", se->expiry) != OT_OK
        || json_put_int(o, "free_memory", se->free_memory) != OT_OK
        || json_put_int(o, "master_key_index", se->master_key_index) != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

bool tsm_se_same(const struct tsm_se *a, const struct tsm_se *b)
{
    return strcmp(a->cin, b->cin) == 0 && strcmp(a->se_type, b->se_type) == 0
           && strcmp(a->mno, b->mno) == 0 && strcmp(a->msisdn, b->msisdn) == 0
           && strcmp(a->imsi, b->imsi) == 0 && strcmp(a->profile_id, b->profile_id) == 0
           && strcmp(a->gp_version, b->gp_version) == 0 && strcmp(a->jc_version, b->jc_version) == 0
           && strcmp(a->cert_level, b->cert_level) == 0 && strcmp(a->expiry, b->expiry) == 0
           && a->free_memory == b->free_memory && a->master_key_index == b->master_key_index;
}
