#include "gp/privs.h"

#define OT_LOG_COMPONENT "gp.privs"
#include "core/hex.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

/* Names in privilege order (GPCS Table 6-1 numbering). */
static const char *const gp_priv_names[GP_PRIV_COUNT] = {
    "security-domain",
    "dap-verification",
    "delegated-management",
    "card-lock",
    "card-terminate",
    "card-reset",
    "cvm-management",
    "mandated-dap-verification",
    "trusted-path",
    "authorized-management",
    "token-verification",
    "global-delete",
    "global-lock",
    "global-registry",
    "final-application",
    "global-service",
    "receipt-generation",
    "ciphered-load-file-data-block",
    "contactless-activation",
    "contactless-self-activation",
};

void gp_privs_encode(uint32_t privs, uint8_t out[GP_PRIVS_LEN])
{
    out[0] = (uint8_t)(privs >> 16);
    out[1] = (uint8_t)(privs >> 8);
    out[2] = (uint8_t)privs;
}

uint32_t gp_privs_decode(const uint8_t in[GP_PRIVS_LEN])
{
    return ((uint32_t)in[0] << 16) | ((uint32_t)in[1] << 8) | in[2];
}

uint32_t gp_privs_expand1(uint8_t byte1, enum gp_priv_role role)
{
    uint32_t v = (uint32_t)byte1 << 16;
    switch (role) {
    case GP_PRIV_ROLE_ISD:
        return v | GP_PRIVS_ISD_DEFAULT_EXT;
    case GP_PRIV_ROLE_SSD:
        return v | GP_PRIVS_SSD_DEFAULT_EXT;
    case GP_PRIV_ROLE_APP:
    default:
        return v;
    }
}

ot_err gp_privs_from_bytes(const uint8_t *p, size_t n, enum gp_priv_role role, uint32_t *out)
{
    if (!out || (n > 0 && !p)) {
        return OT_E_ARG;
    }
    switch (n) {
    case 0:
        *out = 0;
        return OT_OK;
    case 1:
        *out = gp_privs_expand1(p[0], role);
        return OT_OK;
    case 3:
        *out = gp_privs_decode(p);
        return OT_OK;
    default:
        return OT_E_FORMAT;
    }
}

static bool has(uint32_t privs, enum gp_priv p)
{
    return (privs & GP_PRIV_BIT(p)) != 0;
}

/* One row per rule of GPCS 6.6.1 / Table 6-1: "a" set with "b" set (excl) or
 * with "b" clear (needs) is invalid. */
static const struct {
    enum gp_priv a;
    enum gp_priv b;
    bool exclusive;
    const char *why;
} gp_priv_rules[] = {
    {GP_PRIV_AUTHORIZED_MANAGEMENT, GP_PRIV_DELEGATED_MANAGEMENT, true,
     "authorized management excludes delegated management"},
    {GP_PRIV_TOKEN_VERIFICATION, GP_PRIV_DELEGATED_MANAGEMENT, true,
     "token verification excludes delegated management"},
    {GP_PRIV_RECEIPT_GENERATION, GP_PRIV_DELEGATED_MANAGEMENT, true,
     "receipt generation excludes delegated management"},
    {GP_PRIV_DAP_VERIFICATION, GP_PRIV_SECURITY_DOMAIN, false,
     "dap verification needs security domain"},
    {GP_PRIV_DELEGATED_MANAGEMENT, GP_PRIV_SECURITY_DOMAIN, false,
     "delegated management needs security domain"},
    {GP_PRIV_AUTHORIZED_MANAGEMENT, GP_PRIV_SECURITY_DOMAIN, false,
     "authorized management needs security domain"},
    {GP_PRIV_MANDATED_DAP, GP_PRIV_SECURITY_DOMAIN, false,
     "mandated dap verification needs security domain"},
    {GP_PRIV_MANDATED_DAP, GP_PRIV_DAP_VERIFICATION, false,
     "mandated dap verification needs dap verification"},
};

ot_err gp_privs_validate(uint32_t privs, const char **why)
{
    if (why) {
        *why = NULL;
    }
    for (size_t i = 0; i < sizeof gp_priv_rules / sizeof gp_priv_rules[0]; i++) {
        bool a = has(privs, gp_priv_rules[i].a);
        bool b = has(privs, gp_priv_rules[i].b);
        if (a && (gp_priv_rules[i].exclusive ? b : !b)) {
            OT_LOG_DEBUG("privileges %06X rejected: %s", (unsigned)(privs & GP_PRIVS_MASK),
                         gp_priv_rules[i].why);
            if (why) {
                *why = gp_priv_rules[i].why;
            }
            return OT_E_RANGE;
        }
    }
    return OT_OK;
}

const char *gp_priv_name(enum gp_priv p)
{
    if ((unsigned)p >= GP_PRIV_COUNT) {
        return NULL;
    }
    return gp_priv_names[p];
}

static char fold(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return (char)(c - 'A' + 'a');
    }
    if (c == '_') {
        return '-';
    }
    return c;
}

/* Case- and '_'/'-'-insensitive comparison of s[0..n) with the NUL-terminated
 * lower-case name. */
static bool name_eq(const char *s, size_t n, const char *name)
{
    size_t i = 0;
    for (; i < n && name[i] != '\0'; i++) {
        if (fold(s[i]) != name[i]) {
            return false;
        }
    }
    return i == n && name[i] == '\0';
}

ot_err gp_priv_from_name(const char *name, size_t len, enum gp_priv *out)
{
    if (!name || !out) {
        return OT_E_ARG;
    }
    for (unsigned i = 0; i < GP_PRIV_COUNT; i++) {
        if (name_eq(name, len, gp_priv_names[i])) {
            *out = (enum gp_priv)i;
            return OT_OK;
        }
    }
    if (name_eq(name, len, "default-selected")) {
        *out = GP_PRIV_CARD_RESET;
        return OT_OK;
    }
    return OT_E_FORMAT;
}

static bool is_sep(char c)
{
    return c == ',' || c == '|' || c == '+' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

ot_err gp_privs_parse(const char *list, uint32_t *out)
{
    if (!list || !out) {
        return OT_E_ARG;
    }
    uint32_t v = 0;
    const char *p = list;
    while (*p != '\0') {
        if (is_sep(*p)) {
            p++;
            continue;
        }
        const char *start = p;
        while (*p != '\0' && !is_sep(*p)) {
            p++;
        }
        size_t n = (size_t)(p - start);
        enum gp_priv pr;
        if (gp_priv_from_name(start, n, &pr) == OT_OK) {
            v |= GP_PRIV_BIT(pr);
            continue;
        }
        if (n == (size_t)2 * GP_PRIVS_LEN) {
            uint8_t raw[GP_PRIVS_LEN];
            size_t raw_len = sizeof raw;
            if (hex_decode(start, n, raw, &raw_len) == OT_OK) {
                v |= gp_privs_decode(raw);
                continue;
            }
        }
        OT_LOG_DEBUG("unknown privilege name '%.*s'", (int)n, start);
        return OT_E_FORMAT;
    }
    *out = v;
    return OT_OK;
}

static void text_add(char *out, size_t cap, size_t *pos, const char *s)
{
    size_t n = strlen(s);
    if (*pos + n < cap) {
        memcpy(out + *pos, s, n);
        out[*pos + n] = '\0';
    }
    *pos += n;
}

ot_err gp_privs_to_text(uint32_t privs, char *out, size_t *len)
{
    if (!len || (!out && *len > 0)) {
        return OT_E_ARG;
    }
    size_t cap = *len;
    size_t pos = 0;
    if (cap > 0) {
        out[0] = '\0';
    }
    bool first = true;
    for (unsigned i = 0; i < GP_PRIV_COUNT; i++) {
        if (!has(privs, (enum gp_priv)i)) {
            continue;
        }
        if (!first) {
            text_add(out, cap, &pos, ",");
        }
        text_add(out, cap, &pos, gp_priv_names[i]);
        first = false;
    }
    if ((privs & GP_PRIVS_RFU_MASK) != 0) {
        char rfu[24];
        (void)snprintf(rfu, sizeof rfu, "%srfu=0x%06X", first ? "" : ",",
                       (unsigned)(privs & GP_PRIVS_RFU_MASK));
        text_add(out, cap, &pos, rfu);
        first = false;
    }
    if (first) {
        text_add(out, cap, &pos, "none");
    }
    if (pos >= cap) {
        *len = pos + 1;
        if (cap > 0) {
            out[0] = '\0';
        }
        return OT_E_BUF_SMALL;
    }
    *len = pos;
    return OT_OK;
}

/* ---- life cycles ---- */

ot_err gp_lcs_validate(enum gp_lcs_kind kind, uint8_t v)
{
    switch (kind) {
    case GP_LCS_CARD:
        if (v == GP_LCS_CARD_OP_READY || v == GP_LCS_CARD_INITIALIZED || v == GP_LCS_CARD_SECURED
            || v == GP_LCS_CARD_LOCKED || v == GP_LCS_CARD_TERMINATED) {
            return OT_OK;
        }
        return OT_E_RANGE;
    case GP_LCS_ELF:
        return v == GP_LCS_ELF_LOADED ? OT_OK : OT_E_RANGE;
    case GP_LCS_APP:
        if (v == GP_LCS_APP_INSTALLED) {
            return OT_OK;
        }
        /* SELECTABLE (07) and application-specific 0xxxx111 share one pattern. */
        if ((v & GP_LCS_APP_SPECIFIC_MASK) == GP_LCS_APP_SPECIFIC_BITS) {
            return OT_OK;
        }
        return gp_lcs_is_locked(kind, v) ? OT_OK : OT_E_RANGE;
    case GP_LCS_SD:
        if (v == GP_LCS_SD_INSTALLED || v == GP_LCS_SD_SELECTABLE || v == GP_LCS_SD_PERSONALIZED) {
            return OT_OK;
        }
        return gp_lcs_is_locked(kind, v) ? OT_OK : OT_E_RANGE;
    default:
        return OT_E_ARG;
    }
}

bool gp_lcs_is_locked(enum gp_lcs_kind kind, uint8_t v)
{
    switch (kind) {
    case GP_LCS_APP:
        return (v & 0x83u) == 0x83u; /* 1xxxxx11 */
    case GP_LCS_SD:
        return (v & 0xF3u) == 0x83u; /* 1000xx11 */
    case GP_LCS_CARD:
        return v == GP_LCS_CARD_LOCKED;
    case GP_LCS_ELF:
    default:
        return false;
    }
}

const char *gp_lcs_name(enum gp_lcs_kind kind, uint8_t v)
{
    if (gp_lcs_validate(kind, v) != OT_OK) {
        return "INVALID";
    }
    switch (kind) {
    case GP_LCS_CARD:
        switch (v) {
        case GP_LCS_CARD_OP_READY:
            return "OP_READY";
        case GP_LCS_CARD_INITIALIZED:
            return "INITIALIZED";
        case GP_LCS_CARD_SECURED:
            return "SECURED";
        case GP_LCS_CARD_LOCKED:
            return "CARD_LOCKED";
        default:
            return "TERMINATED";
        }
    case GP_LCS_ELF:
        return "LOADED";
    case GP_LCS_APP:
    case GP_LCS_SD:
        if (gp_lcs_is_locked(kind, v)) {
            return "LOCKED";
        }
        if (v == GP_LCS_APP_INSTALLED) {
            return "INSTALLED";
        }
        if (v == GP_LCS_APP_SELECTABLE) {
            return "SELECTABLE";
        }
        if (kind == GP_LCS_SD) {
            return "PERSONALIZED";
        }
        return "APPLICATION_SPECIFIC";
    default:
        return "INVALID";
    }
}

static bool str_ieq(const char *a, const char *b)
{
    return name_eq(a, strlen(a), b);
}

ot_err gp_lcs_from_name(enum gp_lcs_kind kind, const char *name, uint8_t *out)
{
    if (!name || !out) {
        return OT_E_ARG;
    }
    /* Names are compared after fold(): lower case, '_' as '-'. */
    static const struct {
        enum gp_lcs_kind kind;
        const char *name;
        uint8_t v;
    } names[] = {
        {GP_LCS_CARD, "op-ready", GP_LCS_CARD_OP_READY},
        {GP_LCS_CARD, "initialized", GP_LCS_CARD_INITIALIZED},
        {GP_LCS_CARD, "secured", GP_LCS_CARD_SECURED},
        {GP_LCS_CARD, "card-locked", GP_LCS_CARD_LOCKED},
        {GP_LCS_CARD, "locked", GP_LCS_CARD_LOCKED},
        {GP_LCS_CARD, "terminated", GP_LCS_CARD_TERMINATED},
        {GP_LCS_ELF, "loaded", GP_LCS_ELF_LOADED},
        {GP_LCS_APP, "installed", GP_LCS_APP_INSTALLED},
        {GP_LCS_APP, "selectable", GP_LCS_APP_SELECTABLE},
        {GP_LCS_APP, "locked", GP_LCS_LOCKED_BIT},
        {GP_LCS_SD, "installed", GP_LCS_SD_INSTALLED},
        {GP_LCS_SD, "selectable", GP_LCS_SD_SELECTABLE},
        {GP_LCS_SD, "personalized", GP_LCS_SD_PERSONALIZED},
        {GP_LCS_SD, "locked", GP_LCS_LOCKED_BIT},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].kind == kind && str_ieq(name, names[i].name)) {
            *out = names[i].v;
            return OT_OK;
        }
    }
    return OT_E_FORMAT;
}

const char *gp_lcs_kind_name(enum gp_lcs_kind kind)
{
    switch (kind) {
    case GP_LCS_CARD:
        return "card";
    case GP_LCS_ELF:
        return "elf";
    case GP_LCS_APP:
        return "application";
    case GP_LCS_SD:
        return "security-domain";
    default:
        return "unknown";
    }
}
