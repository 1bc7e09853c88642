/* vse registry listing for `vse inspect`: a tree or a JSON document.
 *
 * Both show the card (type, life cycle, CIN/IIN), the ISD with the security
 * domains and applications nested under the SD they are associated with,
 * and the executable load files with their modules. Keys are listed by
 * version, identifier, type and length only: key values never leave the
 * card, not even in a listing.
 *
 * Entries whose association does not lead to the ISD (impossible in a card
 * made by se_profile_load and the GP commands, but an image is only data)
 * are listed under "unattached" so nothing is hidden.
 */
#include "se/card.h"
#include "se/se_priv.h"

#include "core/hex.h"
#include "gp/privs.h"

#define OT_LOG_COMPONENT "se.inspect"
#include "core/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INS_OUT_MAX ((size_t)4 * 1024 * 1024)
#define INS_LINE    1024u

static const char *ins_type_name(enum se_card_type t)
{
    switch (t) {
    case SE_TYPE_UICC:
        return "UICC";
    case SE_TYPE_ESE:
        return "eSE";
    case SE_TYPE_MICROSD:
        return "microSD";
    }
    return "unknown";
}

static const char *ins_key_type(uint8_t t)
{
    if (t == SE_KEY_AES) {
        return "aes";
    }
    if (t == SE_KEY_DES) {
        return "des";
    }
    return "other";
}

static void ins_hex(const uint8_t *p, size_t n, char *out, size_t cap)
{
    if (hex_encode(p, n, out, cap) != OT_OK) {
        out[0] = '\0';
    }
}

/* Life cycle of entry i: the ISD shows the card's. */
static const char *ins_lcs(const struct se_state *st, int i)
{
    const struct se_app *a = &st->apps[i];
    if (i == 0) {
        return gp_lcs_name(GP_LCS_CARD, st->card_lcs);
    }
    return gp_lcs_name(a->is_sd ? GP_LCS_SD : GP_LCS_APP, a->lcs);
}

static const char *ins_kind(const struct se_state *st, int i)
{
    if (i == 0) {
        return "ISD";
    }
    return st->apps[i].is_sd ? "SD" : "APP";
}

static int ins_find(const struct se_state *st, const struct se_aid *a)
{
    for (int i = 0; i < (int)st->napps; i++) {
        if (st->apps[i].aid.len == a->len && memcmp(st->apps[i].aid.b, a->b, a->len) == 0) {
            return i;
        }
    }
    return -1;
}

/* Parent of app i in the tree: the SD it is associated with; -1 for the ISD
 * and for an association that names no SD. */
static int ins_parent(const struct se_state *st, int i)
{
    int p;
    if (i == 0) {
        return -1;
    }
    p = ins_find(st, &st->apps[i].sd);
    if (p < 0 || p == i || !st->apps[p].is_sd) {
        return -1;
    }
    return p;
}

/* True when app i's chain of associations reaches the ISD. */
static bool ins_attached(const struct se_state *st, int i)
{
    int cur = i;
    for (int steps = 0; steps <= (int)st->napps; steps++) {
        if (cur == 0) {
            return true;
        }
        cur = ins_parent(st, cur);
        if (cur < 0) {
            return false;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- tree */

static void ins_line(struct ot_buf *b, ot_err *err, unsigned depth, const char *fmt, ...)
    OT_PRINTF(4, 5);
static void ins_line(struct ot_buf *b, ot_err *err, unsigned depth, const char *fmt, ...)
{
    char line[INS_LINE];
    va_list ap;
    int n;

    if (*err != OT_OK) {
        return;
    }
    for (unsigned d = 0; d < depth && *err == OT_OK; d++) {
        *err = ot_buf_append(b, "  ", 2);
    }
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0) {
        *err = OT_E_INTERNAL;
        return;
    }
    if (*err == OT_OK) {
        *err = ot_buf_append(b, line, strlen(line));
    }
    if (*err == OT_OK) {
        *err = ot_buf_append_u8(b, '\n');
    }
}

static void ins_tree_app(const struct se_state *st, int i, unsigned depth, bool *shown,
                         struct ot_buf *b, ot_err *err)
{
    const struct se_app *a = &st->apps[i];
    char aid[2u * SE_AID_MAX + 1u], elf[2u * SE_AID_MAX + 1u], mod[2u * SE_AID_MAX + 1u];
    char privs[512];
    size_t plen = sizeof(privs);

    if (shown[i] || *err != OT_OK) {
        return;
    }
    shown[i] = true;
    ins_hex(a->aid.b, a->aid.len, aid, sizeof(aid));
    ins_hex(a->elf.b, a->elf.len, elf, sizeof(elf));
    ins_hex(a->module.b, a->module.len, mod, sizeof(mod));
    if (gp_privs_to_text(a->privs & GP_PRIVS_MASK, privs, &plen) != OT_OK) {
        (void)snprintf(privs, sizeof(privs), "%06X", (unsigned)(a->privs & GP_PRIVS_MASK));
    }
    ins_line(b, err, depth, "%s %s lcs=%s (%02X) privileges=%s elf=%s module=%s", ins_kind(st, i),
             aid, ins_lcs(st, i), i == 0 ? st->card_lcs : a->lcs, privs, elf, mod);
    if (a->is_sd) {
        const struct se_sd *sd = &a->sd_data;
        char iin[33], cin[33];
        ins_hex(sd->iin, sd->iin_len, iin, sizeof(iin));
        ins_hex(sd->cin, sd->cin_len, cin, sizeof(cin));
        ins_line(b, err, depth + 1, "scp=%02X i=%02X%s%s%s%s", sd->scp, sd->scp_i,
                 sd->iin_len > 0 ? " iin=" : "", iin, sd->cin_len > 0 ? " cin=" : "", cin);
        for (size_t k = 0; k < sd->nkeys; k++) {
            const struct se_key *key = &sd->keys[k];
            ins_line(b, err, depth + 1, "key kvn=%02X kid=%02X type=%s len=%u", key->kvn, key->kid,
                     ins_key_type(key->type), (unsigned)key->len);
        }
        for (size_t q = 0; q < sd->nseqs; q++) {
            ins_line(b, err, depth + 1, "sequence kvn=%02X counter=%06X", sd->seqs[q].kvn,
                     (unsigned)sd->seqs[q].value);
        }
        if ((a->privs & GP_PRIV_BIT(GP_PRIV_RECEIPT_GENERATION)) != 0) {
            ins_line(b, err, depth + 1, "confirmation counter=%04X", (unsigned)sd->confirm_ctr);
        }
    }
    if (a->data_len > 0 || a->params_len > 0) {
        ins_line(b, err, depth + 1, "params=%u bytes data=%u bytes", (unsigned)a->params_len,
                 (unsigned)a->data_len);
    }
    if (!a->is_sd) {
        return;
    }
    /* SDs first, then applications, each in registry order. */
    for (int pass = 0; pass < 2; pass++) {
        for (int j = 1; j < (int)st->napps; j++) {
            if (ins_parent(st, j) == i && st->apps[j].is_sd == (pass == 0)) {
                ins_tree_app(st, j, depth + 1, shown, b, err);
            }
        }
    }
}

static ot_err ins_tree(const struct se_state *st, struct ot_buf *b)
{
    ot_err err = OT_OK;
    bool shown[SE_MAX_APPS] = {false};
    char cin[33], iin[33];
    const struct se_sd *isd = &st->apps[0].sd_data;
    bool header = false;

    ins_hex(isd->cin, isd->cin_len, cin, sizeof(cin));
    ins_hex(isd->iin, isd->iin_len, iin, sizeof(iin));
    ins_line(b, &err, 0, "card type=%s lcs=%s (%02X) cin=%s iin=%s%s", ins_type_name(st->type),
             gp_lcs_name(GP_LCS_CARD, st->card_lcs), st->card_lcs, cin[0] ? cin : "-",
             iin[0] ? iin : "-", st->mute ? " MUTE (hardware destroyed)" : "");
    ins_tree_app(st, 0, 0, shown, b, &err);
    for (int i = 1; i < (int)st->napps; i++) {
        if (!shown[i] && !ins_attached(st, i)) {
            if (!header) {
                ins_line(b, &err, 0, "unattached:");
                header = true;
            }
            ins_tree_app(st, i, 1, shown, b, &err);
        }
    }
    for (size_t e = 0; e < st->nelfs; e++) {
        const struct se_elf *f = &st->elfs[e];
        char aid[2u * SE_AID_MAX + 1u], sd[2u * SE_AID_MAX + 1u];
        ins_hex(f->aid.b, f->aid.len, aid, sizeof(aid));
        ins_hex(f->sd.b, f->sd.len, sd, sizeof(sd));
        ins_line(b, &err, 0, "ELF %s lcs=%s version=%02X%02X sd=%s size=%u%s", aid,
                 gp_lcs_name(GP_LCS_ELF, f->lcs), f->version[0], f->version[1], sd,
                 (unsigned)f->size, f->native ? " native" : "");
        for (size_t m = 0; m < f->nmodules; m++) {
            ins_hex(f->modules[m].b, f->modules[m].len, aid, sizeof(aid));
            ins_line(b, &err, 1, "module %s", aid);
        }
    }
    return err;
}

/* ---------------------------------------------------------------- JSON */

static json_t *ins_jhex(const uint8_t *p, size_t n)
{
    char s[2u * 64u + 1u];
    ins_hex(p, n, s, sizeof(s));
    return json_string(s);
}

/* Adds v under key; a NULL v (allocation failed) makes *ok false. */
static void ins_set(json_t *o, const char *key, json_t *v, bool *ok)
{
    if (v == NULL || json_object_set_new(o, key, v) != 0) {
        *ok = false;
    }
}

static json_t *ins_json_app(const struct se_state *st, int i, bool *shown, bool *ok)
{
    const struct se_app *a = &st->apps[i];
    json_t *o = json_object();
    json_t *privs = json_array();
    uint8_t pb[3];
    char hex3[7];

    if (o == NULL || privs == NULL) {
        json_decref(o);
        json_decref(privs);
        *ok = false;
        return NULL;
    }
    shown[i] = true;
    ins_set(o, "aid", ins_jhex(a->aid.b, a->aid.len), ok);
    ins_set(o, "kind", json_string(ins_kind(st, i)), ok);
    ins_set(o, "lcs", json_string(ins_lcs(st, i)), ok);
    ins_set(o, "lcs_value", json_integer(i == 0 ? st->card_lcs : a->lcs), ok);
    for (unsigned p = 0; p < GP_PRIV_COUNT; p++) {
        if ((a->privs & GP_PRIV_BIT(p)) != 0) {
            if (json_array_append_new(privs, json_string(gp_priv_name((enum gp_priv)p))) != 0) {
                *ok = false;
            }
        }
    }
    ins_set(o, "privileges", privs, ok);
    gp_privs_encode(a->privs, pb);
    ins_hex(pb, sizeof(pb), hex3, sizeof(hex3));
    ins_set(o, "privileges_hex", json_string(hex3), ok);
    ins_set(o, "elf", ins_jhex(a->elf.b, a->elf.len), ok);
    ins_set(o, "module", ins_jhex(a->module.b, a->module.len), ok);
    ins_set(o, "sd", ins_jhex(a->sd.b, a->sd.len), ok);
    ins_set(o, "params_len", json_integer(a->params_len), ok);
    ins_set(o, "data_len", json_integer(a->data_len), ok);
    if (a->is_sd) {
        const struct se_sd *sd = &a->sd_data;
        json_t *keys = json_array();
        json_t *seqs = json_array();
        json_t *children = json_array();
        ins_set(o, "scp", json_integer(sd->scp), ok);
        ins_set(o, "i", ins_jhex(&sd->scp_i, 1), ok);
        if (sd->iin_len > 0) {
            ins_set(o, "iin", ins_jhex(sd->iin, sd->iin_len), ok);
        }
        if (sd->cin_len > 0) {
            ins_set(o, "cin", ins_jhex(sd->cin, sd->cin_len), ok);
        }
        for (size_t k = 0; keys != NULL && k < sd->nkeys; k++) {
            const struct se_key *key = &sd->keys[k];
            json_t *ko =
                json_pack("{s:i, s:i, s:s, s:i}", "kvn", (int)key->kvn, "kid", (int)key->kid,
                          "type", ins_key_type(key->type), "len", (int)key->len);
            if (ko == NULL || json_array_append_new(keys, ko) != 0) {
                *ok = false;
            }
        }
        ins_set(o, "keys", keys, ok);
        for (size_t q = 0; seqs != NULL && q < sd->nseqs; q++) {
            json_t *qo = json_pack("{s:i, s:I}", "kvn", (int)sd->seqs[q].kvn, "counter",
                                   (json_int_t)sd->seqs[q].value);
            if (qo == NULL || json_array_append_new(seqs, qo) != 0) {
                *ok = false;
            }
        }
        ins_set(o, "sequence_counters", seqs, ok);
        if ((a->privs & GP_PRIV_BIT(GP_PRIV_RECEIPT_GENERATION)) != 0) {
            ins_set(o, "confirmation_counter", json_integer(sd->confirm_ctr), ok);
        }
        for (int pass = 0; children != NULL && pass < 2; pass++) {
            for (int j = 1; j < (int)st->napps; j++) {
                if (!shown[j] && ins_parent(st, j) == i && st->apps[j].is_sd == (pass == 0)) {
                    json_t *c = ins_json_app(st, j, shown, ok);
                    if (c == NULL || json_array_append_new(children, c) != 0) {
                        *ok = false;
                    }
                }
            }
        }
        ins_set(o, "children", children, ok);
    }
    return o;
}

static ot_err ins_json(const struct se_state *st, struct ot_buf *b)
{
    ot_err err = OT_OK;
    bool shown[SE_MAX_APPS] = {false};
    bool ok = true;
    json_t *root = json_object();
    json_t *elfs = json_array();
    json_t *orphans = json_array();
    const struct se_sd *isd = &st->apps[0].sd_data;
    char *text = NULL;

    if (root == NULL || elfs == NULL || orphans == NULL) {
        json_decref(elfs);
        json_decref(orphans);
        err = OT_E_NOMEM;
        goto out;
    }
    ins_set(root, "type", json_string(ins_type_name(st->type)), &ok);
    ins_set(root, "lcs", json_string(gp_lcs_name(GP_LCS_CARD, st->card_lcs)), &ok);
    ins_set(root, "lcs_value", json_integer(st->card_lcs), &ok);
    ins_set(root, "mute", json_boolean(st->mute), &ok);
    ins_set(root, "cin", ins_jhex(isd->cin, isd->cin_len), &ok);
    ins_set(root, "iin", ins_jhex(isd->iin, isd->iin_len), &ok);
    ins_set(root, "cplc", ins_jhex(st->cplc, sizeof(st->cplc)), &ok);
    ins_set(root, "isd", ins_json_app(st, 0, shown, &ok), &ok);
    for (int i = 1; i < (int)st->napps; i++) {
        if (!shown[i] && !ins_attached(st, i)) {
            json_t *c = ins_json_app(st, i, shown, &ok);
            if (c == NULL || json_array_append_new(orphans, c) != 0) {
                ok = false;
            }
        }
    }
    ins_set(root, "unattached", orphans, &ok);
    for (size_t e = 0; e < st->nelfs; e++) {
        const struct se_elf *f = &st->elfs[e];
        json_t *fo = json_object();
        json_t *mods = json_array();
        if (fo == NULL || mods == NULL) {
            json_decref(fo);
            json_decref(mods);
            ok = false;
            break;
        }
        ins_set(fo, "aid", ins_jhex(f->aid.b, f->aid.len), &ok);
        ins_set(fo, "lcs", json_string(gp_lcs_name(GP_LCS_ELF, f->lcs)), &ok);
        ins_set(fo, "version", ins_jhex(f->version, sizeof(f->version)), &ok);
        ins_set(fo, "sd", ins_jhex(f->sd.b, f->sd.len), &ok);
        ins_set(fo, "size", json_integer(f->size), &ok);
        ins_set(fo, "native", json_boolean(f->native), &ok);
        for (size_t m = 0; m < f->nmodules; m++) {
            if (json_array_append_new(mods, ins_jhex(f->modules[m].b, f->modules[m].len)) != 0) {
                ok = false;
            }
        }
        ins_set(fo, "modules", mods, &ok);
        if (json_array_append_new(elfs, fo) != 0) {
            ok = false;
        }
    }
    ins_set(root, "load_files", elfs, &ok);
    if (!ok) {
        err = OT_E_NOMEM;
        goto out;
    }
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text == NULL) {
        err = OT_E_NOMEM;
        goto out;
    }
    OT_TRY(ot_buf_append(b, text, strlen(text)));
    OT_TRY(ot_buf_append_u8(b, '\n'));
out:
    free(text);
    json_decref(root);
    return err;
}

ot_err se_card_inspect(const struct se_card *card, enum se_inspect_fmt fmt, char *out,
                       size_t *out_len)
{
    ot_err err = OT_OK;
    struct ot_buf b;

    ot_buf_init(&b, INS_OUT_MAX);
    if (card == NULL || out_len == NULL || (out == NULL && *out_len > 0)) {
        return OT_E_ARG;
    }
    if (card->st.napps == 0 || card->st.napps > SE_MAX_APPS || card->st.nelfs > SE_MAX_ELFS) {
        return OT_E_STATE;
    }
    if (fmt == SE_INSPECT_TREE) {
        OT_TRY(ins_tree(&card->st, &b));
    } else if (fmt == SE_INSPECT_JSON) {
        OT_TRY(ins_json(&card->st, &b));
    } else {
        err = OT_E_ARG;
        goto out;
    }
    if (b.len + 1u > *out_len) {
        *out_len = b.len + 1u;
        err = OT_E_BUF_SMALL;
        goto out;
    }
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    *out_len = b.len;
out:
    ot_buf_free(&b);
    return err;
}
