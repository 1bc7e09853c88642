/* vse card profiles: a JSON description of a card -> struct se_state.
 *
 * The format is described in docs/vse.md and profiles/README.md. Parsing is
 * strict: an unknown field, a wrong type, bad hex, a wrong length, a
 * duplicate AID, an unknown module name or a reference to a missing package
 * or security domain is refused with OT_E_FORMAT (a cap: OT_E_LIMIT) and one
 * WARN line naming the field path ("domains[1].keys[0].enc: ...").
 *
 * Registry layout produced:
 *   apps[0]        the ISD (associated with itself)
 *   apps[1..]      the "domains" in profile order, then the "applications"
 *   elfs[0]        the GP SSD package A0000001515350 / A000000151535041
 *                  (every card has it; not a native applet module)
 *   elfs[1..]      the "packages" in profile order
 * Application data blobs are left empty: se_profile_install_apps() runs the
 * modules' install hooks once a card context exists.
 */
#include "se/se_priv.h"

#include "core/hex.h"
#include "gp/privs.h"

#define OT_LOG_COMPONENT "se.profile"
#include "core/log.h"

#include <jansson.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PF_MAX_JSON  ((size_t)1024 * 1024)
#define PF_PATH_MAX  96u
#define PF_AID_MIN   5u    /* ISO/IEC 7816-5: RID (5) + PIX (0..11) */
#define PF_KVN_MAX   0x7Fu /* GPCS 11.1.8: key version numbers 01-7F */
#define PF_SIZE_DEF  4096u
#define PF_SCP03_I   0x10u
#define PF_SCP02_I   0x55u
#define PF_SEQ03_MAX 0xFFFFFFu /* SCP03: 3-byte counter (Amd D 6.2.1) */
#define PF_SEQ02_MAX 0xFFFFu   /* SCP02: 2-byte counter (GPCS E.4.2) */
#define PF_KID_ENC   1u
#define PF_KID_MAC   2u
#define PF_KID_DEK   3u

static const uint8_t pf_isd_aid_def[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
/* GP SSD package and module (GPCS: the card's security-domain load file). */
static const uint8_t pf_ssd_pkg[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50};
static const uint8_t pf_ssd_mod[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41};
/* GPCS 6.6.2: the ISD of a card in OP_READY holds 9EFE80. */
#define PF_ISD_PRIVS_DEF 0x9EFE80u

/* ---------------------------------------------------------------- helpers */

static ot_err pf_bad(ot_err e, const char *path, const char *why)
{
    OT_LOG_WARN("profile %s: %s", path, why);
    return e;
}

/* snprintf that tolerates truncation (paths are for log lines only). */
static void pf_fmt(char *dst, size_t cap, const char *fmt, ...) OT_PRINTF(3, 4);
static void pf_fmt(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

static void pf_path(char *dst, const char *base, const char *key)
{
    if (base[0] == '\0') {
        pf_fmt(dst, PF_PATH_MAX, "%s", key);
    } else {
        pf_fmt(dst, PF_PATH_MAX, "%s.%s", base, key);
    }
}

static void pf_path_idx(char *dst, const char *key, size_t i)
{
    pf_fmt(dst, PF_PATH_MAX, "%s[%zu]", key, i);
}

/* o must be an object whose keys are all in allowed (NULL-terminated). */
static ot_err pf_fields(const json_t *o, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *v;
    char p[PF_PATH_MAX];

    if (!json_is_object(o)) {
        return pf_bad(OT_E_FORMAT, path[0] != '\0' ? path : "(top)", "must be an object");
    }
    json_object_foreach((json_t *)o, key, v)
    {
        bool ok = false;
        (void)v;
        for (size_t i = 0; allowed[i] != NULL; i++) {
            if (strcmp(allowed[i], key) == 0) {
                ok = true;
                break;
            }
        }
        if (!ok) {
            pf_path(p, path, key);
            return pf_bad(OT_E_FORMAT, p, "unknown field");
        }
    }
    return OT_OK;
}

/* Optional hex field with a length in [min, max]; *present tells whether it
 * was there. */
static ot_err pf_hex(const json_t *o, const char *base, const char *key, uint8_t *dst, size_t min,
                     size_t max, size_t *len, bool *present)
{
    json_t *v = json_object_get(o, key);
    char p[PF_PATH_MAX];
    const char *s;
    size_t sl, n;
    uint8_t tmp[256];

    *present = false;
    if (v == NULL) {
        return OT_OK;
    }
    pf_path(p, base, key);
    if (!json_is_string(v)) {
        return pf_bad(OT_E_FORMAT, p, "must be a hex string");
    }
    s = json_string_value(v);
    sl = json_string_length(v);
    n = sizeof(tmp);
    if (sl / 2u > sizeof(tmp) || hex_decode(s, sl, tmp, &n) != OT_OK) {
        return pf_bad(OT_E_FORMAT, p, "bad hex");
    }
    if (n < min || n > max) {
        char why[64];
        pf_fmt(why, sizeof(why), "length %zu bytes, expected %zu..%zu", n, min, max);
        return pf_bad(OT_E_FORMAT, p, why);
    }
    memcpy(dst, tmp, n);
    *len = n;
    *present = true;
    return OT_OK;
}

static ot_err pf_aid(const json_t *o, const char *base, const char *key, struct se_aid *a,
                     bool required)
{
    ot_err err = OT_OK;
    size_t n = 0;
    bool present = false;
    char p[PF_PATH_MAX];

    OT_TRY(pf_hex(o, base, key, a->b, PF_AID_MIN, SE_AID_MAX, &n, &present));
    if (!present) {
        if (required) {
            pf_path(p, base, key);
            err = pf_bad(OT_E_FORMAT, p, "missing");
        }
        goto out;
    }
    a->len = (uint8_t)n;
out:
    return err;
}

static ot_err pf_int(const json_t *o, const char *base, const char *key, long long min,
                     long long max, long long *out, bool *present)
{
    json_t *v = json_object_get(o, key);
    char p[PF_PATH_MAX];
    long long x;

    *present = false;
    if (v == NULL) {
        return OT_OK;
    }
    pf_path(p, base, key);
    if (!json_is_integer(v)) {
        return pf_bad(OT_E_FORMAT, p, "must be an integer");
    }
    x = (long long)json_integer_value(v);
    if (x < min || x > max) {
        char why[80];
        pf_fmt(why, sizeof(why), "%lld out of range %lld..%lld", x, min, max);
        return pf_bad(OT_E_FORMAT, p, why);
    }
    *out = x;
    *present = true;
    return OT_OK;
}

/* Optional string field; *s NULL when absent. */
static ot_err pf_str(const json_t *o, const char *base, const char *key, const char **s)
{
    json_t *v = json_object_get(o, key);
    char p[PF_PATH_MAX];

    *s = NULL;
    if (v == NULL) {
        return OT_OK;
    }
    if (!json_is_string(v)) {
        pf_path(p, base, key);
        return pf_bad(OT_E_FORMAT, p, "must be a string");
    }
    *s = json_string_value(v);
    return OT_OK;
}

/* "privileges": "9EFE80" | "name,name" | ["name", "9EFE80", ...]. */
static ot_err pf_privs(const json_t *o, const char *base, uint32_t implied, uint32_t *out,
                       bool *present)
{
    json_t *v = json_object_get(o, "privileges");
    char p[PF_PATH_MAX];
    uint32_t privs = 0;
    const char *why = NULL;

    *present = false;
    if (v == NULL) {
        return OT_OK;
    }
    pf_path(p, base, "privileges");
    if (json_is_string(v)) {
        if (gp_privs_parse(json_string_value(v), &privs) != OT_OK) {
            return pf_bad(OT_E_FORMAT, p, "unknown privilege name or bad hex");
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            uint32_t one = 0;
            char pe[PF_PATH_MAX];
            pf_fmt(pe, sizeof(pe), "%s[%zu]", p, i);
            if (!json_is_string(e)) {
                return pf_bad(OT_E_FORMAT, pe, "must be a string");
            }
            /* One entry is one name (or one 6-digit hex value). */
            if (strpbrk(json_string_value(e), ",|+ \t") != NULL
                || gp_privs_parse(json_string_value(e), &one) != OT_OK
                || json_string_length(e) == 0) {
                return pf_bad(OT_E_FORMAT, pe, "unknown privilege name");
            }
            privs |= one;
        }
    } else {
        return pf_bad(OT_E_FORMAT, p, "must be a string or an array of names");
    }
    privs |= implied;
    if (gp_privs_validate(privs, &why) != OT_OK) {
        return pf_bad(OT_E_FORMAT, p, why != NULL ? why : "invalid combination");
    }
    *out = privs;
    *present = true;
    return OT_OK;
}

static ot_err pf_lcs(const json_t *o, const char *base, enum gp_lcs_kind kind,
                     const char *const *names, uint8_t *out)
{
    ot_err err = OT_OK;
    const char *s = NULL;
    char p[PF_PATH_MAX];
    uint8_t v = 0;
    bool ok = false;
    const char *key = kind == GP_LCS_CARD ? "card_lcs" : "lcs";

    OT_TRY(pf_str(o, base, key, &s));
    if (s == NULL) {
        goto out;
    }
    for (size_t i = 0; names[i] != NULL; i++) {
        if (strcmp(names[i], s) == 0) {
            ok = true;
        }
    }
    if (!ok || gp_lcs_from_name(kind, s, &v) != OT_OK) {
        pf_path(p, base, key);
        err = pf_bad(OT_E_FORMAT, p, "unknown life-cycle state");
        goto out;
    }
    *out = v;
out:
    return err;
}

/* ---------------------------------------------------------------- state building */

struct pf {
    struct se_state *st;
    uint32_t mem_used;
};

static bool pf_aid_eq(const struct se_aid *a, const struct se_aid *b)
{
    return a->len == b->len && memcmp(a->b, b->b, a->len) == 0;
}

static int pf_find_app(const struct se_state *st, const struct se_aid *a)
{
    for (int i = 0; i < (int)st->napps; i++) {
        if (pf_aid_eq(&st->apps[i].aid, a)) {
            return i;
        }
    }
    return -1;
}

static int pf_find_elf(const struct se_state *st, const struct se_aid *a)
{
    for (int i = 0; i < (int)st->nelfs; i++) {
        if (pf_aid_eq(&st->elfs[i].aid, a)) {
            return i;
        }
    }
    return -1;
}

/* AIDs are unique across the whole registry (applications, SDs, load files). */
static ot_err pf_unique(const struct se_state *st, const struct se_aid *a, const char *path)
{
    if (pf_find_app(st, a) >= 0 || pf_find_elf(st, a) >= 0) {
        return pf_bad(OT_E_FORMAT, path, "duplicate AID");
    }
    return OT_OK;
}

static ot_err pf_add_key(struct se_sd *sd, const char *path, uint8_t kvn, uint8_t kid, uint8_t type,
                         const uint8_t *val, size_t len)
{
    for (size_t i = 0; i < sd->nkeys; i++) {
        if (sd->keys[i].kvn == kvn && sd->keys[i].kid == kid) {
            return pf_bad(OT_E_FORMAT, path, "duplicate key version / key identifier");
        }
    }
    if (sd->nkeys >= SE_MAX_KEYS) {
        return pf_bad(OT_E_LIMIT, path, "too many keys");
    }
    struct se_key *k = &sd->keys[sd->nkeys++];
    k->kvn = kvn;
    k->kid = kid;
    k->type = type;
    k->len = (uint8_t)len;
    memcpy(k->val, val, len);
    return OT_OK;
}

static bool pf_key_len_ok(uint8_t type, size_t n)
{
    if (type == SE_KEY_AES) {
        return n == 16u || n == 24u || n == 32u;
    }
    return n == 16u || n == 24u; /* 2-key or 3-key 3DES */
}

/* One entry of "keys": a key set {kvn, type, enc, mac, dek} (key identifiers
 * 1, 2, 3) or a single key {kvn, kid, type, value} (e.g. a token or DAP key). */
static ot_err pf_key(const json_t *o, const char *path, struct se_sd *sd, uint32_t seq)
{
    static const char *const fields[] = {"kvn", "kid", "type", "enc", "mac", "dek", "value", NULL};
    static const char *const names[3] = {"enc", "mac", "dek"};
    ot_err err = OT_OK;
    long long kvn = 0, kid = 0;
    bool present = false, has_kid = false;
    const char *type_s = NULL;
    uint8_t type;
    uint8_t val[32];
    size_t n = 0;
    char p[PF_PATH_MAX];

    OT_TRY(pf_fields(o, path, fields));
    OT_TRY(pf_int(o, path, "kvn", 1, PF_KVN_MAX, &kvn, &present));
    if (!present) {
        pf_path(p, path, "kvn");
        err = pf_bad(OT_E_FORMAT, p, "missing");
        goto out;
    }
    OT_TRY(pf_str(o, path, "type", &type_s));
    pf_path(p, path, "type");
    if (type_s == NULL) {
        err = pf_bad(OT_E_FORMAT, p, "missing");
        goto out;
    }
    if (strcmp(type_s, "aes") == 0) {
        type = SE_KEY_AES;
    } else if (strcmp(type_s, "des") == 0) {
        type = SE_KEY_DES;
    } else {
        err = pf_bad(OT_E_FORMAT, p, "must be \"aes\" or \"des\"");
        goto out;
    }
    if (sd->scp == 0x02u && type == SE_KEY_AES && json_object_get(o, "value") == NULL) {
        err = pf_bad(OT_E_FORMAT, p, "an SCP02 key set must be des");
        goto out;
    }
    if (sd->scp == 0x03u && type == SE_KEY_DES && json_object_get(o, "value") == NULL) {
        err = pf_bad(OT_E_FORMAT, p, "an SCP03 key set must be aes");
        goto out;
    }
    OT_TRY(pf_int(o, path, "kid", 1, 0x7F, &kid, &has_kid));
    if (json_object_get(o, "value") != NULL) {
        /* A single key. */
        if (!has_kid) {
            pf_path(p, path, "kid");
            err = pf_bad(OT_E_FORMAT, p, "missing (a single key needs kid and value)");
            goto out;
        }
        for (size_t i = 0; i < 3; i++) {
            if (json_object_get(o, names[i]) != NULL) {
                pf_path(p, path, names[i]);
                err = pf_bad(OT_E_FORMAT, p, "not allowed with value");
                goto out;
            }
        }
        OT_TRY(pf_hex(o, path, "value", val, 1, sizeof(val), &n, &present));
        pf_path(p, path, "value");
        if (!pf_key_len_ok(type, n)) {
            err = pf_bad(OT_E_FORMAT, p, "key length does not fit its type");
            goto out;
        }
        OT_TRY(pf_add_key(sd, path, (uint8_t)kvn, (uint8_t)kid, type, val, n));
        goto out;
    }
    if (has_kid) {
        pf_path(p, path, "kid");
        err = pf_bad(OT_E_FORMAT, p, "only for a single key (with value)");
        goto out;
    }
    for (size_t i = 0; i < 3; i++) {
        pf_path(p, path, names[i]);
        OT_TRY(pf_hex(o, path, names[i], val, 1, sizeof(val), &n, &present));
        if (!present) {
            err = pf_bad(OT_E_FORMAT, p, "missing");
            goto out;
        }
        if (!pf_key_len_ok(type, n) || (sd->scp == 0x02u && n != 16u)) {
            err = pf_bad(OT_E_FORMAT, p, "key length does not fit its type");
            goto out;
        }
        OT_TRY(pf_add_key(sd, path, (uint8_t)kvn, (uint8_t)(PF_KID_ENC + i), type, val, n));
    }
    /* A key set opens secure channels: it gets a sequence counter. */
    if (sd->nseqs >= SE_MAX_SEQS) {
        err = pf_bad(OT_E_LIMIT, path, "too many key sets");
        goto out;
    }
    sd->seqs[sd->nseqs].kvn = (uint8_t)kvn;
    sd->seqs[sd->nseqs].value = seq;
    sd->nseqs++;
out:
    ot_mem_wipe(val, sizeof(val));
    return err;
}

/* What ISD and SSD entries share: scp, i, seq, keys, iin, cin. */
static ot_err pf_sd(const json_t *o, const char *path, struct se_sd *sd, bool need_keys)
{
    ot_err err = OT_OK;
    long long scp = 3, seq = 0;
    bool present = false;
    uint8_t i_byte[1];
    size_t n = 0;
    json_t *keys;
    char p[PF_PATH_MAX];

    OT_TRY(pf_int(o, path, "scp", 2, 3, &scp, &present));
    sd->scp = (uint8_t)scp;
    sd->scp_i = scp == 3 ? PF_SCP03_I : PF_SCP02_I;
    OT_TRY(pf_hex(o, path, "i", i_byte, 1, 1, &n, &present));
    if (present) {
        sd->scp_i = i_byte[0];
    }
    OT_TRY(pf_int(o, path, "seq", 0, scp == 3 ? PF_SEQ03_MAX : PF_SEQ02_MAX, &seq, &present));
    OT_TRY(pf_hex(o, path, "iin", sd->iin, 1, sizeof(sd->iin), &n, &present));
    sd->iin_len = present ? (uint8_t)n : 0u;
    OT_TRY(pf_hex(o, path, "cin", sd->cin, 1, sizeof(sd->cin), &n, &present));
    sd->cin_len = present ? (uint8_t)n : 0u;

    keys = json_object_get(o, "keys");
    pf_path(p, path, "keys");
    if (keys == NULL) {
        if (need_keys) {
            err = pf_bad(OT_E_FORMAT, p, "missing");
        }
        goto out;
    }
    if (!json_is_array(keys)) {
        err = pf_bad(OT_E_FORMAT, p, "must be an array");
        goto out;
    }
    if (need_keys && json_array_size(keys) == 0) {
        err = pf_bad(OT_E_FORMAT, p, "needs at least one key set");
        goto out;
    }
    for (size_t k = 0; k < json_array_size(keys); k++) {
        char pk[PF_PATH_MAX];
        pf_fmt(pk, sizeof(pk), "%s[%zu]", p, k);
        OT_TRY(pf_key(json_array_get(keys, k), pk, sd, (uint32_t)seq));
    }
out:
    return err;
}

static ot_err pf_card(const json_t *root, struct se_state *st)
{
    static const char *const lcs_names[] = {"OP_READY", "INITIALIZED", "SECURED", NULL};
    ot_err err = OT_OK;
    const char *type = NULL;
    size_t n = 0;
    bool present = false;

    OT_TRY(pf_str(root, "", "type", &type));
    if (type == NULL) {
        err = pf_bad(OT_E_FORMAT, "type", "missing");
        goto out;
    }
    if (strcmp(type, "eSE") == 0) {
        st->type = SE_TYPE_ESE;
    } else if (strcmp(type, "UICC") == 0) {
        st->type = SE_TYPE_UICC;
    } else if (strcmp(type, "microSD") == 0) {
        st->type = SE_TYPE_MICROSD;
    } else {
        err = pf_bad(OT_E_FORMAT, "type", "must be \"eSE\", \"UICC\" or \"microSD\"");
        goto out;
    }
    st->card_lcs = GP_LCS_CARD_SECURED;
    OT_TRY(pf_lcs(root, "", GP_LCS_CARD, lcs_names, &st->card_lcs));
    OT_TRY(pf_hex(root, "", "atr", st->atr, 2, SE_MAX_ATR, &n, &present));
    st->atr_len = present ? (uint8_t)n : 0u;
    OT_TRY(pf_hex(root, "", "kdd", st->kdd, sizeof(st->kdd), sizeof(st->kdd), &n, &present));
    OT_TRY(pf_hex(root, "", "cplc", st->cplc, sizeof(st->cplc), sizeof(st->cplc), &n, &present));
out:
    return err;
}

/* Default CPLC (GP CPLC data, tag 9F7F, 42 bytes), deterministic from the CIN
 * so two cards of different CIN differ and a card re-made from its profile is
 * the same card:
 *   IC fabricator 4F54 ("OT"), IC type 5345 ("SE"), OS id 5653 ("VS"),
 *   OS release date 6326, OS release level 0100, IC fabrication date 6326,
 *   IC serial number = SHA-256(CIN)[0..3], IC batch id = SHA-256(CIN)[4..5],
 *   then module fabricator, packaging date, ICC manufacturer, embedding date,
 *   pre-personalizer, pre-perso date, pre-perso equipment (4), personalizer,
 *   personalization date, personalization equipment (4) from the same hash. */
static void pf_default_cplc(struct se_state *st)
{
    static const uint8_t head[12] = {0x4F, 0x54, 0x53, 0x45, 0x56, 0x53,
                                     0x63, 0x26, 0x01, 0x00, 0x63, 0x26};
    const struct se_sd *isd = &st->apps[0].sd_data;
    uint8_t md[SHA256_DIGEST_LENGTH];

    (void)SHA256(isd->cin, isd->cin_len, md);
    memcpy(st->cplc, head, sizeof(head));
    memcpy(st->cplc + sizeof(head), md, sizeof(st->cplc) - sizeof(head));
}

static ot_err pf_isd(const json_t *root, struct se_state *st)
{
    static const char *const fields[] = {"aid", "privileges", "scp", "i", "keys", "seq", NULL};
    ot_err err = OT_OK;
    json_t *o = json_object_get(root, "isd");
    struct se_app *isd = &st->apps[0];
    bool present = false;
    size_t n = 0;

    if (o == NULL) {
        err = pf_bad(OT_E_FORMAT, "isd", "missing");
        goto out;
    }
    OT_TRY(pf_fields(o, "isd", fields));
    memcpy(isd->aid.b, pf_isd_aid_def, sizeof(pf_isd_aid_def));
    isd->aid.len = (uint8_t)sizeof(pf_isd_aid_def);
    OT_TRY(pf_aid(o, "isd", "aid", &isd->aid, false));
    isd->privs = PF_ISD_PRIVS_DEF;
    OT_TRY(pf_privs(o, "isd", 0, &isd->privs, &present));
    if ((isd->privs & GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN)) == 0) {
        err = pf_bad(OT_E_FORMAT, "isd.privileges", "the ISD needs security-domain");
        goto out;
    }
    if ((isd->privs & GP_PRIV_BIT(GP_PRIV_DELEGATED_MANAGEMENT)) != 0) {
        err = pf_bad(OT_E_FORMAT, "isd.privileges", "the ISD cannot have delegated-management");
        goto out;
    }
    isd->is_sd = true;
    isd->sd = isd->aid; /* the ISD is associated with itself */
    memcpy(isd->elf.b, pf_ssd_pkg, sizeof(pf_ssd_pkg));
    isd->elf.len = (uint8_t)sizeof(pf_ssd_pkg);
    memcpy(isd->module.b, pf_ssd_mod, sizeof(pf_ssd_mod));
    isd->module.len = (uint8_t)sizeof(pf_ssd_mod);
    OT_TRY(pf_sd(o, "isd", &isd->sd_data, true));
    /* The card-level iin / cin are the ISD's (tags 42 / 45). */
    OT_TRY(pf_hex(root, "", "iin", isd->sd_data.iin, 1, sizeof(isd->sd_data.iin), &n, &present));
    isd->sd_data.iin_len = present ? (uint8_t)n : 0u;
    OT_TRY(pf_hex(root, "", "cin", isd->sd_data.cin, 1, sizeof(isd->sd_data.cin), &n, &present));
    isd->sd_data.cin_len = present ? (uint8_t)n : 0u;
    isd->lcs = st->card_lcs; /* the ISD's life cycle is the card's */
    st->napps = 1;
out:
    return err;
}

static void pf_ssd_package(struct se_state *st)
{
    struct se_elf *f = &st->elfs[0];

    memcpy(f->aid.b, pf_ssd_pkg, sizeof(pf_ssd_pkg));
    f->aid.len = (uint8_t)sizeof(pf_ssd_pkg);
    f->sd = st->apps[0].aid;
    f->version[0] = 0x01;
    f->version[1] = 0x00;
    f->lcs = GP_LCS_ELF_LOADED;
    f->nmodules = 1;
    memcpy(f->modules[0].b, pf_ssd_mod, sizeof(pf_ssd_mod));
    f->modules[0].len = (uint8_t)sizeof(pf_ssd_mod);
    f->size = 0;       /* in ROM: takes no non-volatile memory */
    f->native = false; /* not an applet module: INSTALL from it creates an SD */
    st->nelfs = 1;
}

/* Resolves an "sd" reference (default: the ISD) to an SD of the profile.
 * The association is stored as an AID and checked once all domains exist. */
static ot_err pf_sd_ref(const json_t *o, const char *path, const struct se_state *st,
                        struct se_aid *out)
{
    ot_err err = OT_OK;

    *out = st->apps[0].aid;
    OT_TRY(pf_aid(o, path, "sd", out, false));
out:
    return err;
}

/* The array root[name]: NULL when absent; not an array: OT_E_FORMAT. */
static ot_err pf_array(const json_t *root, const char *name, json_t **arr)
{
    *arr = json_object_get(root, name);
    if (*arr != NULL && !json_is_array(*arr)) {
        *arr = NULL;
        return pf_bad(OT_E_FORMAT, name, "must be an array");
    }
    return OT_OK;
}

static ot_err pf_packages(const json_t *root, struct pf *ctx)
{
    static const char *const fields[] = {"aid", "module", "modules", "version", "sd", "size", NULL};
    ot_err err = OT_OK;
    struct se_state *st = ctx->st;
    json_t *arr = NULL;
    char path[PF_PATH_MAX], p[PF_PATH_MAX];

    OT_TRY(pf_array(root, "packages", &arr));
    if (arr == NULL) {
        goto out;
    }
    for (size_t k = 0; k < json_array_size(arr); k++) {
        json_t *o = json_array_get(arr, k);
        const struct se_applet_ops *mod = NULL;
        const char *name = NULL;
        struct se_elf *f;
        json_t *mods;
        long long size = PF_SIZE_DEF;
        bool present = false;
        size_t n = 0;
        uint8_t ver[2];

        pf_path_idx(path, "packages", k);
        OT_TRY(pf_fields(o, path, fields));
        if (st->nelfs >= SE_MAX_ELFS) {
            err = pf_bad(OT_E_LIMIT, path, "too many packages");
            goto out;
        }
        f = &st->elfs[st->nelfs];
        memset(f, 0, sizeof(*f));
        OT_TRY(pf_str(o, path, "module", &name));
        if (name != NULL) {
            mod = se_applet_by_name(name);
            if (mod == NULL) {
                pf_path(p, path, "module");
                err = pf_bad(OT_E_FORMAT, p, "unknown native module name");
                goto out;
            }
        }
        OT_TRY(pf_aid(o, path, "aid", &f->aid, mod == NULL));
        pf_path(p, path, "aid");
        if (mod != NULL) {
            if (f->aid.len == 0) {
                memcpy(f->aid.b, mod->pkg_aid, mod->pkg_aid_len);
                f->aid.len = (uint8_t)mod->pkg_aid_len;
            } else if (f->aid.len != mod->pkg_aid_len
                       || memcmp(f->aid.b, mod->pkg_aid, f->aid.len) != 0) {
                /* Modules are registered by package AID (applet.h). */
                err = pf_bad(OT_E_FORMAT, p, "differs from the native module's package AID");
                goto out;
            }
        }
        OT_TRY(pf_unique(st, &f->aid, p));
        /* A package whose AID names a native module is native, however it
         * was written (as a LOAD of that package's CAP would be). */
        mod = se_applet_find(f->aid.b, f->aid.len);
        f->native = mod != NULL;

        mods = json_object_get(o, "modules");
        pf_path(p, path, "modules");
        if (mods != NULL) {
            if (!json_is_array(mods)) {
                err = pf_bad(OT_E_FORMAT, p, "must be an array of hex AIDs");
                goto out;
            }
            if (json_array_size(mods) > SE_MAX_MODULES) {
                err = pf_bad(OT_E_LIMIT, p, "too many modules");
                goto out;
            }
            for (size_t m = 0; m < json_array_size(mods); m++) {
                json_t *e = json_array_get(mods, m);
                char pm[PF_PATH_MAX];
                size_t ml = SE_AID_MAX;
                pf_fmt(pm, sizeof(pm), "%s[%zu]", p, m);
                if (!json_is_string(e) || json_string_length(e) > (size_t)2 * SE_AID_MAX
                    || hex_decode(json_string_value(e), json_string_length(e), f->modules[m].b, &ml)
                           != OT_OK
                    || ml < PF_AID_MIN) {
                    err = pf_bad(OT_E_FORMAT, pm, "must be a hex AID of 5..16 bytes");
                    goto out;
                }
                f->modules[m].len = (uint8_t)ml;
                for (size_t q = 0; q < m; q++) {
                    if (pf_aid_eq(&f->modules[q], &f->modules[m])) {
                        err = pf_bad(OT_E_FORMAT, pm, "duplicate module AID");
                        goto out;
                    }
                }
            }
            f->nmodules = (uint8_t)json_array_size(mods);
        } else if (mod != NULL) {
            memcpy(f->modules[0].b, mod->module_aid, mod->module_aid_len);
            f->modules[0].len = (uint8_t)mod->module_aid_len;
            f->nmodules = 1;
        }
        f->version[0] = 0x01;
        f->version[1] = 0x00;
        OT_TRY(pf_hex(o, path, "version", ver, 2, 2, &n, &present));
        if (present) {
            memcpy(f->version, ver, sizeof(ver));
        }
        OT_TRY(pf_sd_ref(o, path, st, &f->sd));
        OT_TRY(pf_int(o, path, "size", 0, (long long)SE_MEM_TOTAL, &size, &present));
        f->size = (uint32_t)size;
        if (ctx->mem_used + f->size > SE_MEM_TOTAL) {
            pf_path(p, path, "size");
            err = pf_bad(OT_E_FORMAT, p, "the packages exceed the card's memory");
            goto out;
        }
        ctx->mem_used += f->size;
        f->lcs = GP_LCS_ELF_LOADED;
        st->nelfs++;
    }
out:
    return err;
}

/* Starts the next entry of "domains" or "applications": checks the entry's
 * fields, the card's room, and its AID (present and unique on the card). The
 * new slot is st->apps[st->napps], zeroed; the caller counts it in. */
static ot_err pf_app_begin(const json_t *o, const char *path, const char *const *fields,
                           struct se_state *st, struct se_app **out)
{
    ot_err err = OT_OK;
    struct se_app *a;
    char p[PF_PATH_MAX];

    OT_TRY(pf_fields(o, path, fields));
    if (st->napps >= SE_MAX_APPS) {
        err = pf_bad(OT_E_LIMIT, path, "too many security domains and applications");
        goto out;
    }
    a = &st->apps[st->napps];
    memset(a, 0, sizeof(*a));
    OT_TRY(pf_aid(o, path, "aid", &a->aid, true));
    pf_path(p, path, "aid");
    OT_TRY(pf_unique(st, &a->aid, p));
    *out = a;
out:
    return err;
}

static ot_err pf_domains(const json_t *root, struct se_state *st)
{
    static const char *const fields[] = {"aid",  "sd",  "privileges", "lcs", "scp", "i",
                                         "keys", "seq", "iin",        "cin", NULL};
    static const char *const lcs_names[] = {"INSTALLED", "SELECTABLE", "PERSONALIZED", "LOCKED",
                                            NULL};
    ot_err err = OT_OK;
    json_t *arr = NULL;
    char path[PF_PATH_MAX];

    OT_TRY(pf_array(root, "domains", &arr));
    if (arr == NULL) {
        goto out;
    }
    for (size_t k = 0; k < json_array_size(arr); k++) {
        json_t *o = json_array_get(arr, k);
        struct se_app *a;
        bool present = false;

        pf_path_idx(path, "domains", k);
        OT_TRY(pf_app_begin(o, path, fields, st, &a));
        OT_TRY(pf_sd_ref(o, path, st, &a->sd));
        /* A domain is an SD: security-domain is implied. */
        a->privs = GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN);
        OT_TRY(pf_privs(o, path, GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN), &a->privs, &present));
        a->lcs = GP_LCS_SD_PERSONALIZED;
        OT_TRY(pf_lcs(o, path, GP_LCS_SD, lcs_names, &a->lcs));
        if (a->lcs == GP_LCS_LOCKED_BIT) {
            a->lcs = GP_LCS_SD_PERSONALIZED | GP_LCS_LOCKED_BIT;
        }
        a->is_sd = true;
        memcpy(a->elf.b, pf_ssd_pkg, sizeof(pf_ssd_pkg));
        a->elf.len = (uint8_t)sizeof(pf_ssd_pkg);
        memcpy(a->module.b, pf_ssd_mod, sizeof(pf_ssd_mod));
        a->module.len = (uint8_t)sizeof(pf_ssd_mod);
        OT_TRY(pf_sd(o, path, &a->sd_data, false));
        st->napps++;
    }
out:
    return err;
}

static ot_err pf_applications(const json_t *root, struct se_state *st)
{
    static const char *const fields[] = {"aid",        "package", "module", "sd",
                                         "privileges", "lcs",     "params", NULL};
    static const char *const lcs_names[] = {"INSTALLED", "SELECTABLE", "LOCKED", NULL};
    ot_err err = OT_OK;
    json_t *arr = NULL;
    char path[PF_PATH_MAX], p[PF_PATH_MAX];

    OT_TRY(pf_array(root, "applications", &arr));
    if (arr == NULL) {
        goto out;
    }
    for (size_t k = 0; k < json_array_size(arr); k++) {
        json_t *o = json_array_get(arr, k);
        const struct se_applet_ops *mod;
        const struct se_elf *f;
        struct se_app *a;
        bool present = false, found = false;
        size_t n = 0;
        int e;

        pf_path_idx(path, "applications", k);
        OT_TRY(pf_app_begin(o, path, fields, st, &a));

        OT_TRY(pf_aid(o, path, "package", &a->elf, true));
        pf_path(p, path, "package");
        e = pf_find_elf(st, &a->elf);
        if (e < 0) {
            err = pf_bad(OT_E_FORMAT, p, "no such package");
            goto out;
        }
        f = &st->elfs[e];
        mod = se_applet_find(f->aid.b, f->aid.len);
        if (e == 0 || mod == NULL) {
            err = pf_bad(OT_E_FORMAT, p,
                         e == 0 ? "security domains go in \"domains\""
                                : "the package has no native module: cannot be instantiated");
            goto out;
        }
        OT_TRY(pf_aid(o, path, "module", &a->module, false));
        pf_path(p, path, "module");
        if (a->module.len == 0) {
            if (f->nmodules == 0) {
                err = pf_bad(OT_E_FORMAT, p, "the package has no module");
                goto out;
            }
            a->module = f->modules[0];
        }
        for (size_t m = 0; m < f->nmodules; m++) {
            found = found || pf_aid_eq(&f->modules[m], &a->module);
        }
        if (!found) {
            err = pf_bad(OT_E_FORMAT, p, "not a module of the package");
            goto out;
        }
        if (a->module.len != mod->module_aid_len
            || memcmp(a->module.b, mod->module_aid, a->module.len) != 0) {
            err = pf_bad(OT_E_FORMAT, p, "the native module has another module AID");
            goto out;
        }
        OT_TRY(pf_sd_ref(o, path, st, &a->sd));
        a->privs = 0;
        OT_TRY(pf_privs(o, path, 0, &a->privs, &present));
        if ((a->privs & GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN)) != 0) {
            pf_path(p, path, "privileges");
            err = pf_bad(OT_E_FORMAT, p, "security-domain: put security domains in \"domains\"");
            goto out;
        }
        a->lcs = GP_LCS_APP_SELECTABLE;
        OT_TRY(pf_lcs(o, path, GP_LCS_APP, lcs_names, &a->lcs));
        if (a->lcs == GP_LCS_LOCKED_BIT) {
            a->lcs = GP_LCS_APP_SELECTABLE | GP_LCS_LOCKED_BIT;
        }
        OT_TRY(pf_hex(o, path, "params", a->params, 0, SE_MAX_PARAMS, &n, &present));
        a->params_len = present ? (uint8_t)n : 0u;
        st->napps++;
    }
out:
    return err;
}

/* Every association names an SD of the card, the SDs' associations lead to
 * the ISD without a loop, and one-holder privileges have one holder. */
static ot_err pf_links(struct se_state *st)
{
    ot_err err = OT_OK;
    char path[PF_PATH_MAX];
    int holder_cr = -1, holder_fa = -1;

    for (int i = 1; i < (int)st->napps; i++) {
        const struct se_app *a = &st->apps[i];
        int sd = pf_find_app(st, &a->sd);
        const char *kind = a->is_sd ? "domains" : "applications";
        size_t idx = 0;

        /* profile index: domains come first, then applications */
        for (int j = 1; j < i; j++) {
            if (st->apps[j].is_sd == a->is_sd) {
                idx++;
            }
        }
        pf_fmt(path, sizeof(path), "%s[%zu].sd", kind, idx);
        if (sd < 0 || !st->apps[sd].is_sd) {
            err = pf_bad(OT_E_FORMAT, path, "no such security domain");
            goto out;
        }
        if (sd == i) {
            err = pf_bad(OT_E_FORMAT, path, "a domain cannot be associated with itself");
            goto out;
        }
        if (a->is_sd) {
            int cur = sd;
            int steps = 0;
            while (cur != 0 && steps <= (int)st->napps) {
                cur = pf_find_app(st, &st->apps[cur].sd);
                steps++;
            }
            if (cur != 0) {
                err = pf_bad(OT_E_FORMAT, path, "associations form a loop");
                goto out;
            }
        }
    }
    for (int i = 0; i < (int)st->nelfs; i++) {
        int sd = pf_find_app(st, &st->elfs[i].sd);
        if (sd < 0 || !st->apps[sd].is_sd) {
            pf_fmt(path, sizeof(path), "packages[%d].sd", i - 1);
            err = pf_bad(OT_E_FORMAT, path, "no such security domain");
            goto out;
        }
    }
    for (int i = 0; i < (int)st->napps; i++) {
        if ((st->apps[i].privs & GP_PRIV_BIT(GP_PRIV_CARD_RESET)) != 0 && i != 0) {
            if (holder_cr > 0) {
                err = pf_bad(OT_E_FORMAT, "privileges", "card-reset held twice");
                goto out;
            }
            holder_cr = i;
        }
        if ((st->apps[i].privs & GP_PRIV_BIT(GP_PRIV_FINAL_APPLICATION)) != 0 && i != 0) {
            if (holder_fa > 0) {
                err = pf_bad(OT_E_FORMAT, "privileges", "final-application held twice");
                goto out;
            }
            holder_fa = i;
        }
    }
    /* One holder per card (GPCS 6.6.2): another holder takes the privilege
     * from the ISD; when no other entity holds it the ISD does, whatever its
     * "privileges" list says. */
    if (holder_cr > 0) {
        st->apps[0].privs &= ~GP_PRIV_BIT(GP_PRIV_CARD_RESET);
    } else {
        st->apps[0].privs |= GP_PRIV_BIT(GP_PRIV_CARD_RESET);
    }
    if (holder_fa > 0) {
        st->apps[0].privs &= ~GP_PRIV_BIT(GP_PRIV_FINAL_APPLICATION);
    } else {
        st->apps[0].privs |= GP_PRIV_BIT(GP_PRIV_FINAL_APPLICATION);
    }
out:
    return err;
}

ot_err se_profile_load(const char *json, size_t len, struct se_state *st)
{
    static const char *const fields[] = {"type",     "card_lcs", "cin",          "iin",
                                         "cplc",     "kdd",      "atr",          "isd",
                                         "packages", "domains",  "applications", NULL};
    ot_err err = OT_OK;
    json_t *root = NULL;
    json_error_t jerr;
    struct se_state *tmp = NULL;
    struct pf ctx;
    bool cplc_given;

    if (json == NULL || st == NULL) {
        return OT_E_ARG;
    }
    if (len > PF_MAX_JSON) {
        return pf_bad(OT_E_TOO_LONG, "(top)", "profile larger than 1 MiB");
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        OT_LOG_WARN("profile: line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        err = OT_E_FORMAT;
        goto out;
    }
    OT_TRY(pf_fields(root, "", fields));
    tmp = calloc(1, sizeof(*tmp));
    if (tmp == NULL) {
        err = OT_E_NOMEM;
        goto out;
    }
    /* Room for the largest profile while loading; trimmed to size below. */
    OT_TRY(se_state_reserve(tmp, SE_MAX_APPS, SE_MAX_ELFS));
    ctx.st = tmp;
    ctx.mem_used = 0;
    OT_TRY(pf_card(root, tmp));
    cplc_given = json_object_get(root, "cplc") != NULL;
    OT_TRY(pf_isd(root, tmp));
    if (!cplc_given) {
        pf_default_cplc(tmp);
    }
    pf_ssd_package(tmp);
    OT_TRY(pf_packages(root, &ctx));
    OT_TRY(pf_domains(root, tmp));
    OT_TRY(pf_applications(root, tmp));
    OT_TRY(pf_links(tmp));
    OT_TRY(se_state_trim(tmp));
    se_state_move(st, tmp);
out:
    if (tmp != NULL) {
        se_state_clear(tmp);
        free(tmp);
    }
    json_decref(root);
    return err;
}

ot_err se_profile_install_apps(struct se_card *c)
{
    ot_err err = OT_OK;

    if (c == NULL) {
        return OT_E_ARG;
    }
    for (int i = 0; i < (int)c->st.napps; i++) {
        struct se_app *a = &c->st.apps[i];
        const struct se_applet_ops *mod;
        struct se_applet_ctx x;

        if (a->is_sd) {
            continue;
        }
        mod = se_applet_find(a->elf.b, a->elf.len);
        if (mod == NULL) {
            /* se_profile_load only instantiates native packages. */
            err = OT_E_INTERNAL;
            goto out;
        }
        if (mod->install == NULL) {
            continue;
        }
        se_applet_ctx_init(c, i, 0, &x);
        err = mod->install(&x, a->params, a->params_len);
        if (err != OT_OK) {
            char aid[2u * SE_AID_MAX + 1u];
            (void)hex_encode(a->aid.b, a->aid.len, aid, sizeof(aid));
            OT_LOG_WARN("profile: application %s: module %s refused its params: %s", aid, mod->name,
                        ot_strerror(err));
            err = OT_E_FORMAT;
            goto out;
        }
    }
out:
    return err;
}
