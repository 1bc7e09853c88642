/* Provisioning rules of the central TSM, sans I/O (prov.h). */
#include "tsm/prov.h"

#include "core/apdu.h"
#include "core/buf.h"
#include "core/hex.h"
#include "gp/cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const tsm_is_names[TSM_IS_N] = {
    "NotDeployed",
    "UnderDeployment:Initialized",
    "UnderDeployment:Installed",
    "UnderDeployment:Personalized",
    "DeployedOperational",
    "DeployedSuspended",
    "InError",
};

static const char *const tsm_op_names[TSM_OP_N] = {
    "prepersonalize", "personalize", "activate", "deactivate", "lock", "unlock", "delete",
};

const char *tsm_inst_state_name(enum tsm_inst_state s)
{
    return (unsigned)s < TSM_IS_N ? tsm_is_names[s] : "InError";
}

ot_err tsm_inst_state_parse(const char *s, enum tsm_inst_state *out)
{
    for (unsigned i = 0; s != NULL && i < TSM_IS_N; i++) {
        if (strcmp(s, tsm_is_names[i]) == 0) {
            *out = (enum tsm_inst_state)i;
            return OT_OK;
        }
    }
    return OT_E_FORMAT;
}

const char *tsm_inst_op_name(enum tsm_inst_op op)
{
    return (unsigned)op < TSM_OP_N ? tsm_op_names[op] : "?";
}

bool tsm_inst_op_allowed(enum tsm_inst_state s, enum tsm_inst_op op, char *why, size_t cap)
{
    bool ok = false;
    const char *needs = "";

    switch (op) {
    case TSM_OP_PREPERSO:
        ok = s == TSM_IS_NOT_DEPLOYED;
        needs = "NotDeployed";
        break;
    case TSM_OP_PERSO:
        ok = s == TSM_IS_INSTALLED || s == TSM_IS_PERSONALIZED || s == TSM_IS_OPERATIONAL
             || s == TSM_IS_SUSPENDED;
        needs = "a deployed or installed instance";
        break;
    case TSM_OP_ACTIVATE:
        ok = s == TSM_IS_PERSONALIZED || s == TSM_IS_SUSPENDED;
        needs = "UnderDeployment:Personalized or DeployedSuspended";
        break;
    case TSM_OP_DEACTIVATE:
    case TSM_OP_LOCK:
        ok = s == TSM_IS_OPERATIONAL;
        needs = "DeployedOperational";
        break;
    case TSM_OP_UNLOCK:
        ok = s == TSM_IS_SUSPENDED;
        needs = "DeployedSuspended";
        break;
    case TSM_OP_DELETE:
        ok = s != TSM_IS_NOT_DEPLOYED && s != TSM_IS_INITIALIZED;
        needs = "an instance on the card";
        break;
    default:
        break;
    }
    if (!ok && why != NULL && cap > 0) {
        (void)snprintf(why, cap, "the service instance is %s; %s needs %s", tsm_inst_state_name(s),
                       tsm_inst_op_name(op), needs);
    }
    return ok;
}

enum tsm_inst_state tsm_inst_after(enum tsm_inst_state s, enum tsm_inst_op op)
{
    switch (op) {
    case TSM_OP_PREPERSO:
        return TSM_IS_INSTALLED;
    case TSM_OP_PERSO:
        return s == TSM_IS_INSTALLED ? TSM_IS_PERSONALIZED : s;
    case TSM_OP_ACTIVATE:
    case TSM_OP_UNLOCK:
        return TSM_IS_OPERATIONAL;
    case TSM_OP_DEACTIVATE:
    case TSM_OP_LOCK:
        return TSM_IS_SUSPENDED;
    case TSM_OP_DELETE:
        return TSM_IS_NOT_DEPLOYED;
    default:
        return s;
    }
}

/* Next numeric component of a dotted version; -1 when malformed. */
static long tsm_ver_next(const char **p)
{
    long v = 0;
    int digits = 0;

    if (**p == '\0') {
        return 0;
    }
    while (**p >= '0' && **p <= '9' && digits < 6) {
        v = v * 10 + (**p - '0');
        (*p)++;
        digits++;
    }
    if (digits == 0 || (**p != '.' && **p != '\0')) {
        return -1;
    }
    if (**p == '.') {
        (*p)++;
    }
    return v;
}

int tsm_version_cmp(const char *a, const char *b)
{
    for (int i = 0; i < 4; i++) {
        long x = tsm_ver_next(&a);
        long y = tsm_ver_next(&b);
        if (x != y) {
            return x < y ? -1 : 1;
        }
        if (x < 0) {
            return 0;
        }
    }
    return 0;
}

static bool tsm_level_listed(const char *list, const char *level)
{
    size_t n = strlen(level);
    const char *p = list;

    while (*p != '\0') {
        const char *e = strchr(p, ',');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, level, n) == 0) {
            return true;
        }
        p += len;
        if (*p == ',') {
            p++;
        }
    }
    return false;
}

bool tsm_eligible(const struct tsm_se *se, const struct tsm_flavor_req *req, const char *today,
                  char *why, size_t cap)
{
    char tmp[8];

    if (cap == 0) {
        why = tmp;
        cap = sizeof(tmp);
    }
    why[0] = '\0';
    if (req->se_type != NULL && req->se_type[0] != '\0' && strcmp(req->se_type, se->se_type) != 0) {
        (void)snprintf(why, cap, "the service needs an SE of type %s; this SE is %s", req->se_type,
                       se->se_type);
        return false;
    }
    if (req->min_gp != NULL && req->min_gp[0] != '\0'
        && tsm_version_cmp(se->gp_version, req->min_gp) < 0) {
        (void)snprintf(why, cap, "the service needs GlobalPlatform %s; this SE has %s", req->min_gp,
                       se->gp_version);
        return false;
    }
    if (req->min_jc != NULL && req->min_jc[0] != '\0'
        && tsm_version_cmp(se->jc_version, req->min_jc) < 0) {
        (void)snprintf(why, cap, "the service needs Java Card %s; this SE has %s", req->min_jc,
                       se->jc_version);
        return false;
    }
    if (se->free_memory < req->min_free_memory) {
        (void)snprintf(why, cap, "the service needs %lld bytes free; this SE has %lld",
                       (long long)req->min_free_memory, (long long)se->free_memory);
        return false;
    }
    if (req->cert_levels != NULL && req->cert_levels[0] != '\0'
        && !tsm_level_listed(req->cert_levels, se->cert_level)) {
        (void)snprintf(why, cap, "the service accepts certification levels %s; this SE is %s",
                       req->cert_levels, se->cert_level);
        return false;
    }
    if (today != NULL && strcmp(se->expiry, today) < 0) {
        (void)snprintf(why, cap, "this SE expired on %s", se->expiry);
        return false;
    }
    return true;
}

ot_err tsm_script_decode(const char *const *hex, size_t n, bool plain, struct tsm_script *s,
                         size_t *bad)
{
    size_t used = 0;

    s->n = 0;
    s->bytes = 0;
    s->put_key = -1;
    *bad = 0;
    if (n > TSM_SCRIPT_MAX_CMDS) {
        return OT_E_LIMIT;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = TSM_APDU_MAX;
        struct apdu a;
        size_t sl = hex[i] != NULL ? strlen(hex[i]) : 0;

        *bad = i;
        if (sl == 0 || sl > TSM_APDU_MAX * 2
            || hex_decode(hex[i], sl, s->buf + used, &len) != OT_OK) {
            return OT_E_APDU;
        }
        if (apdu_parse(s->buf + used, len, &a) != OT_OK || a.extended) {
            return OT_E_APDU;
        }
        if (plain && (a.cla & 0x80u) != 0 && (a.cla & 0x04u) != 0) {
            return OT_E_APDU; /* secure messaging already: the TSM wraps */
        }
        if (a.ins == GP_INS_PUT_KEY && (a.cla & 0x80u) != 0 && s->put_key < 0) {
            s->put_key = (int)i;
        }
        s->off[i] = used;
        s->len[i] = len;
        used += len;
        s->n++;
    }
    s->bytes = used;
    return OT_OK;
}

ot_err tsm_put_key_wrap(const uint8_t *plain, size_t n, const uint8_t *dek, size_t dek_len,
                        uint8_t *out, size_t *out_len, uint8_t *new_kvn)
{
    struct gp_put_key_key keys[GP_PUT_KEY_MAX_KEYS];
    uint8_t kcv_given[GP_PUT_KEY_MAX_KEYS][GP_KCV_LEN];
    struct gp_put_key_args args;
    struct gp_put_key_expect exp;
    struct apdu a;
    size_t nk = 0;
    size_t i = 1;
    ot_err err;

    if (apdu_parse(plain, n, &a) != OT_OK || a.ins != GP_INS_PUT_KEY || a.nc < 1
        || (a.p1 & 0x80u) != 0) {
        return OT_E_APDU;
    }
    while (i < a.nc) {
        size_t l;
        if (nk == GP_PUT_KEY_MAX_KEYS || i + 2 > a.nc || a.data[i] != GP_KEY_TYPE_AES) {
            return OT_E_APDU;
        }
        l = a.data[i + 1];
        /* 88 L klen key 03 kcv: L = 1 + klen */
        if (l < 17 || i + 2 + l + 1 + GP_KCV_LEN > a.nc || a.data[i + 2] != l - 1
            || (l - 1 != 16 && l - 1 != 24 && l - 1 != 32) || a.data[i + 2 + l] != GP_KCV_LEN) {
            return OT_E_APDU;
        }
        keys[nk].type = GP_KEY_TYPE_AES;
        keys[nk].value = a.data + i + 3;
        keys[nk].len = l - 1;
        memcpy(kcv_given[nk], a.data + i + 2 + l + 1, GP_KCV_LEN);
        nk++;
        i += 2 + l + 1 + GP_KCV_LEN;
    }
    if (nk == 0 || i != a.nc) {
        return OT_E_APDU;
    }
    memset(&args, 0, sizeof(args));
    args.old_kvn = a.p1 & 0x7Fu;
    args.new_kvn = a.data[0];
    args.kid = a.p2 & 0x7Fu;
    args.keys = keys;
    args.nkeys = nk;
    args.dek = dek;
    args.dek_len = dek_len;
    if (args.new_kvn == 0 || args.new_kvn > 0x7F || args.kid == 0) {
        return OT_E_APDU;
    }
    err = gp_cmd_put_key((uint8_t)(a.cla & 0x03u), &args, out, out_len, &exp);
    if (err != OT_OK) {
        return err == OT_E_BUF_SMALL ? err : OT_E_APDU;
    }
    for (size_t k = 0; k < nk; k++) {
        if (memcmp(exp.kcv[k], kcv_given[k], GP_KCV_LEN) != 0) {
            ot_mem_wipe(out, *out_len);
            *out_len = 0;
            return OT_E_KCV;
        }
    }
    if (a.ne == 0 && *out_len > 0) {
        (*out_len)--; /* the builder ends with Le 00; keep the SP's command shape */
    }
    *new_kvn = args.new_kvn;
    return OT_OK;
}
