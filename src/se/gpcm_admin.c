/* vse: the administration commands of the security domains -- GET STATUS
 * (GPCS 11.4), SET STATUS (GPCS 11.10), PUT KEY (GPCS 11.8, Amd D 7.2),
 * STORE DATA (GPCS 11.11), GET DATA (GPCS 11.3) -- and the destroy functions
 * of seed 000 with their proprietary command.
 *
 * Every handler validates the whole command before it changes anything and
 * calls se_mark_dirty() after a change, so the runtime persists the new state
 * before the answer leaves the card (se_priv.h).
 *
 * Proprietary DESTROY command (vse only, not GlobalPlatform):
 *
 *   CLA 80-83 (84-87 with secure messaging)  INS DE  P1 01 | 02 | 03  P2 00  no data
 *
 *   P1 01  software destroy: every instance of a payment module
 *          (se_applet_ops.payment) has its payment data wiped and is deleted,
 *          then the card goes to TERMINATED (seed 000: "wipe payment data,
 *          delete payment applications, terminate").
 *   P1 02  hardware destroy: the card answers 9000 one last time, then stays
 *          mute for good (no ATR, no answer), like a burnt chip.
 *   P1 03  PUK exhaustion: the card's preinstalled procedure (seed 000,
 *          [0083]-[0087]) presents wrong PUKs to every telecom application
 *          (UNBLOCK PIN, through the applet's own code) until the eleventh
 *          blocks it, which blocks the card for good (TERMINATED); the
 *          payment applications stay, unselectable. A card without a
 *          telecom application: 6A88, nothing changed.
 *
 *   Conditions: an authenticated secure channel with the selected SD (6982
 *   without), which must hold the Card Terminate privilege (6982 without).
 *   A software or PUK destroy of a card already TERMINATED: 6985. P1 other
 *   than 01/02/03 or P2 not 00: 6A86; command data present: 6700. Both results live in
 *   the card image and survive restarts.
 */
#define OT_LOG_COMPONENT "se.admin"

#include "se/se_priv.h"

#include "core/log.h"
#include "core/tlv.h"
#include "crypto/kcv.h"
#include "crypto/keywrap.h"
#include "gp/cmd.h"
#include "gp/parse.h"
#include "gp/privs.h"

#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- status words */

#define ADM_SW_OK           0x9000u
#define ADM_SW_MORE         0x6310u /* GPCS Table 11-38 */
#define ADM_SW_WRONG_LENGTH 0x6700u
#define ADM_SW_SECURITY     0x6982u
#define ADM_SW_CONDITIONS   0x6985u
#define ADM_SW_WRONG_DATA   0x6A80u
#define ADM_SW_NO_SPACE     0x6A84u
#define ADM_SW_P1P2         0x6A86u
#define ADM_SW_REF_NOT_FND  0x6A88u
#define ADM_SW_MEMORY       0x6581u

/* GET STATUS page budget: a response of at most 200 data bytes still fits a
 * short R-APDU (256) after R-ENC padding (16) and an S16 R-MAC (16). */
#define ADM_STATUS_PAGE 200u
#define ADM_ENTRY_MAX   256u
/* Largest GET DATA object: 2F00 with SE_MAX_APPS templates of 20 bytes. */
#define ADM_GET_DATA_MAX (SE_MAX_APPS * 20u + 64u)

/* Destroy command (see the comment at the top). */
#define ADM_DESTROY_SOFTWARE 0x01u
#define ADM_DESTROY_HARDWARE 0x02u
#define ADM_DESTROY_PUK      0x03u

/* GET DATA / STORE DATA tags handled here (GPCS 11.3, 11.11, H.2). */
#define ADM_TAG_ISD_AID        0x4Fu
#define ADM_TAG_CARD_RECOG     0x73u
#define ADM_TAG_OID            0x06u
#define ADM_TAG_CM_OID         0x60u
#define ADM_TAG_ID_SCHEME      0x63u
#define ADM_TAG_SCP_OID        0x64u
#define ADM_TAG_KEY_INFO_ENTRY 0xC0u
#define ADM_TAG_APP_TEMPLATE   0x61u
#define ADM_TAG_APP_LIST_BER   0x2Fu   /* "2F00" read as BER: tag 2F, length 00 */
#define ADM_DGI_BER_TLV        0x0070u /* GPCS 11.11.2.3: BER-TLV objects in DGI format */
/* vse only: the card's life cycle state (1 byte, GPCS 11.1.1), from the ISD,
 * answered in every state, TERMINATED included: under a secure channel with
 * R-MAC it is the card's own proof of its state (docs/cms.md, reading the
 * card after an unknown outcome). */
#define ADM_TAG_CARD_LCS 0xDF7Eu

/* GP OID arc 1.2.840.114283 (GPCS H.2). */
static const uint8_t adm_gp_oid[] = {0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B};

/* ---------------------------------------------------------------- helpers */

static bool adm_aid_is(const struct se_aid *a, const uint8_t *p, size_t n)
{
    return a->len == n && n > 0 && memcmp(a->b, p, n) == 0;
}

static bool adm_aid_prefix(const struct se_aid *a, const uint8_t *p, size_t n)
{
    return a->len >= n && (n == 0 || memcmp(a->b, p, n) == 0);
}

static bool adm_card_is(const struct se_card *c, uint8_t lcs)
{
    return c->st.card_lcs == lcs;
}

/* True when SD index sd is on the association chain starting at SD index
 * first (first itself included): the entity associated with first is then
 * directly or indirectly associated with sd. */
static bool adm_chain_reaches(const struct se_state *st, int first, int sd)
{
    int cur = first;
    for (unsigned depth = 0; depth <= SE_MAX_APPS && cur >= 0 && cur < (int)st->napps; depth++) {
        if (cur == sd) {
            return true;
        }
        int up = se_app_sd(st, cur);
        if (up == cur) {
            return false;
        }
        cur = up;
    }
    return false;
}

/* GET STATUS / 2F00 visibility (GPCS 11.4.2.3): an SD with Global Registry
 * sees the whole registry; any other SD what is directly or indirectly
 * associated with it (its own entry included). */
static bool adm_app_visible(const struct se_state *st, int sd, int app)
{
    if (se_has_priv(st, sd, GP_PRIV_GLOBAL_REGISTRY) || app == sd) {
        return true;
    }
    return adm_chain_reaches(st, se_app_sd(st, app), sd);
}

static bool adm_elf_visible(const struct se_state *st, int sd, int elf)
{
    if (se_has_priv(st, sd, GP_PRIV_GLOBAL_REGISTRY)) {
        return true;
    }
    const struct se_aid *a = &st->elfs[elf].sd;
    return adm_chain_reaches(st, se_find_app(st, a->b, a->len), sd);
}

/* Copies a finished buffer to the command's output. */
static uint16_t adm_emit(struct se_cmd *x, const uint8_t *p, size_t n, uint16_t sw)
{
    buf_wr_bytes(x->out, p, n);
    if (x->out->err != OT_OK) {
        return ADM_SW_WRONG_LENGTH; /* the runtime's buffer always holds a short response */
    }
    return sw;
}

/* Minimal big-endian encoding (at least one byte) of v. */
static void adm_put_uint(struct buf_wr *w, uint32_t tag, uint32_t v)
{
    uint8_t b[4];
    size_t n = 4;
    ot_put_u32be(b, v);
    while (n > 1 && b[4 - n] == 0) {
        n--;
    }
    tlv_put(w, tag, b + 4 - n, n);
}

/* ---------------------------------------------------------------- GET STATUS */

struct adm_status_q {
    const uint8_t *aid; /* search qualifier 4F (prefix) */
    size_t aid_len;
    bool has_tags;       /* 5C present */
    const uint8_t *tags; /* concatenated tags */
    size_t tags_len;
};

/* Reads one BER tag (1-3 bytes) from a tag list. */
static ot_err adm_read_tag(struct buf_rd *r, uint32_t *tag)
{
    uint8_t b;
    ot_err err = buf_rd_u8(r, &b);
    if (err != OT_OK) {
        return err;
    }
    uint32_t t = b;
    if ((b & 0x1Fu) == 0x1Fu) {
        for (unsigned i = 1;; i++) {
            if (i >= TLV_MAX_TAG_BYTES) {
                return OT_E_TLV;
            }
            err = buf_rd_u8(r, &b);
            if (err != OT_OK) {
                return OT_E_TLV;
            }
            t = (t << 8) | b;
            if ((b & 0x80u) == 0) {
                break;
            }
        }
    }
    *tag = t;
    return OT_OK;
}

/* Command data: 4F (mandatory unless P1 80), further criteria (ignored),
 * 5C tag list. Malformed: 6A80. */
static uint16_t adm_status_parse(const struct apdu *a, bool need_aid, struct adm_status_q *q)
{
    struct buf_rd rd;
    struct tlv t;
    bool first = true;
    memset(q, 0, sizeof *q);
    buf_rd_init(&rd, a->data, a->nc);
    if (a->nc == 0 && need_aid) {
        return ADM_SW_WRONG_DATA;
    }
    while (rd.left > 0) {
        if (tlv_next(&rd, &t) != OT_OK) {
            return ADM_SW_WRONG_DATA;
        }
        if (first && need_aid && (t.tag != GP_TAG_AID || t.len > SE_AID_MAX)) {
            return ADM_SW_WRONG_DATA;
        }
        if (first && t.tag == GP_TAG_AID) {
            if (t.len > SE_AID_MAX) {
                return ADM_SW_WRONG_DATA;
            }
            q->aid = t.val;
            q->aid_len = t.len;
        } else if (t.tag == GP_TAG_TAG_LIST) {
            struct buf_rd tr;
            uint32_t tag;
            buf_rd_init(&tr, t.val, t.len);
            while (tr.left > 0) {
                if (adm_read_tag(&tr, &tag) != OT_OK) {
                    return ADM_SW_WRONG_DATA;
                }
            }
            q->has_tags = true;
            q->tags = t.val;
            q->tags_len = t.len;
        }
        first = false;
    }
    return ADM_SW_OK;
}

enum adm_kind { ADM_KIND_ISD, ADM_KIND_APP, ADM_KIND_ELF };

/* Writes one data object of an entry if the entity has it. */
static void adm_status_obj(struct buf_wr *w, const struct se_state *st, enum adm_kind kind, int idx,
                           uint32_t tag, bool modules)
{
    if (kind == ADM_KIND_ELF) {
        const struct se_elf *e = &st->elfs[idx];
        switch (tag) {
        case GP_TAG_AID:
            tlv_put(w, tag, e->aid.b, e->aid.len);
            break;
        case GP_TAG_LCS:
            tlv_put(w, tag, &e->lcs, 1);
            break;
        case GP_TAG_ELF_VERSION:
            tlv_put(w, tag, e->version, sizeof e->version);
            break;
        case GP_TAG_MODULE_AID:
            if (modules) {
                for (unsigned m = 0; m < e->nmodules && m < SE_MAX_MODULES; m++) {
                    tlv_put(w, tag, e->modules[m].b, e->modules[m].len);
                }
            }
            break;
        case GP_TAG_ASSOC_SD:
            if (e->sd.len > 0) {
                tlv_put(w, tag, e->sd.b, e->sd.len);
            }
            break;
        default:
            break; /* not an ELF data object: omitted (GPCS 11.4.2.3) */
        }
        return;
    }
    const struct se_app *a = &st->apps[idx];
    uint8_t b[3];
    switch (tag) {
    case GP_TAG_AID:
        tlv_put(w, tag, a->aid.b, a->aid.len);
        break;
    case GP_TAG_LCS:
        b[0] = kind == ADM_KIND_ISD ? st->card_lcs : a->lcs;
        tlv_put(w, tag, b, 1);
        break;
    case GP_TAG_PRIVS:
        gp_privs_encode(a->privs, b);
        tlv_put(w, tag, b, 3);
        break;
    case GP_TAG_IMPLICIT:
        /* The Card Reset holder is implicitly selected on the basic channel
         * of the contact interface (GPCS 11.1.7: b7 contact, channel 0). */
        if (se_priv_holder(st, GP_PRIV_CARD_RESET) == idx) {
            b[0] = 0x40u;
            tlv_put(w, tag, b, 1);
        }
        break;
    case GP_TAG_ELF_AID:
        if (a->elf.len > 0) {
            tlv_put(w, tag, a->elf.b, a->elf.len);
        }
        break;
    case GP_TAG_ASSOC_SD:
        if (a->sd.len > 0 && kind != ADM_KIND_ISD) {
            tlv_put(w, tag, a->sd.b, a->sd.len);
        }
        break;
    default:
        break;
    }
}

static void adm_status_entry(struct buf_wr *w, const struct se_state *st, enum adm_kind kind,
                             int idx, uint8_t p1, bool tlv, const struct adm_status_q *q)
{
    bool modules = p1 == GP_STATUS_P1_ELF_MODULES;
    if (!tlv) {
        /* Deprecated LV format (GPCS 2.1.1 Tables 9-34/9-35). */
        if (kind == ADM_KIND_ELF) {
            const struct se_elf *e = &st->elfs[idx];
            buf_wr_u8(w, e->aid.len);
            buf_wr_bytes(w, e->aid.b, e->aid.len);
            buf_wr_u8(w, e->lcs);
            buf_wr_u8(w, 0x00);
            if (modules) {
                buf_wr_u8(w, e->nmodules);
                for (unsigned m = 0; m < e->nmodules && m < SE_MAX_MODULES; m++) {
                    buf_wr_u8(w, e->modules[m].len);
                    buf_wr_bytes(w, e->modules[m].b, e->modules[m].len);
                }
            }
        } else {
            const struct se_app *a = &st->apps[idx];
            uint8_t privs[3];
            gp_privs_encode(a->privs, privs);
            buf_wr_u8(w, a->aid.len);
            buf_wr_bytes(w, a->aid.b, a->aid.len);
            buf_wr_u8(w, kind == ADM_KIND_ISD ? st->card_lcs : a->lcs);
            buf_wr_u8(w, privs[0]);
        }
        return;
    }
    size_t mark;
    tlv_open(w, GP_TAG_STATUS_ENTRY, &mark);
    if (q->has_tags) {
        struct buf_rd tr;
        uint32_t tag;
        buf_rd_init(&tr, q->tags, q->tags_len);
        while (tr.left > 0 && adm_read_tag(&tr, &tag) == OT_OK) {
            adm_status_obj(w, st, kind, idx, tag, true);
        }
    } else if (kind == ADM_KIND_ELF) {
        static const uint32_t elf_tags[] = {GP_TAG_AID, GP_TAG_LCS, GP_TAG_ELF_VERSION,
                                            GP_TAG_MODULE_AID, GP_TAG_ASSOC_SD};
        for (size_t i = 0; i < sizeof elf_tags / sizeof elf_tags[0]; i++) {
            adm_status_obj(w, st, kind, idx, elf_tags[i], modules);
        }
    } else {
        static const uint32_t app_tags[] = {GP_TAG_AID, GP_TAG_LCS, GP_TAG_PRIVS, GP_TAG_ELF_AID,
                                            GP_TAG_ASSOC_SD};
        for (size_t i = 0; i < sizeof app_tags / sizeof app_tags[0]; i++) {
            adm_status_obj(w, st, kind, idx, app_tags[i], false);
        }
    }
    tlv_close(w, mark);
}

/* No get next pending. status_p1 0 also means none, so a zeroed channel
 * never accepts a get next. */
static void adm_status_forget(struct se_chan *ch)
{
    ch->status_pos = SIZE_MAX;
    ch->status_p1 = 0;
}

uint16_t se_gp_get_status(struct se_cmd *x)
{
    struct se_card *c = x->card;
    const struct se_state *st = &c->st;
    const struct apdu *a = x->a;
    struct se_chan *ch = &c->chans[x->chan];
    struct adm_status_q q;
    uint8_t page[ADM_STATUS_PAGE];
    uint8_t ent[ADM_ENTRY_MAX];
    struct buf_wr pw;
    bool next = (a->p2 & GP_STATUS_P2_NEXT) != 0;
    bool tlv = (a->p2 & GP_STATUS_P2_TLV) != 0;
    enum adm_kind kind;
    size_t count;
    size_t start = 0;
    size_t i;
    bool any = false;
    bool more = false;
    uint16_t sw;

    if (!x->authenticated) {
        return ADM_SW_SECURITY;
    }
    if (adm_card_is(c, GP_LCS_CARD_TERMINATED)) {
        return ADM_SW_CONDITIONS;
    }
    if ((a->p2 & 0xFCu) != 0) {
        return ADM_SW_P1P2;
    }
    switch (a->p1) {
    case GP_STATUS_P1_ISD:
        /* Only the ISD or an SD with Global Registry (GPCS 11.4.2.1); no get next. */
        if (next || (x->sd != 0 && !se_has_priv(st, x->sd, GP_PRIV_GLOBAL_REGISTRY))) {
            return ADM_SW_P1P2;
        }
        kind = ADM_KIND_ISD;
        count = 1;
        break;
    case GP_STATUS_P1_APPS:
        kind = ADM_KIND_APP;
        count = st->napps;
        break;
    case GP_STATUS_P1_ELF:
    case GP_STATUS_P1_ELF_MODULES:
        kind = ADM_KIND_ELF;
        count = st->nelfs;
        break;
    default:
        return ADM_SW_P1P2;
    }
    sw = adm_status_parse(a, kind != ADM_KIND_ISD, &q);
    if (sw != ADM_SW_OK) {
        adm_status_forget(ch);
        return sw;
    }
    if (next) {
        /* GPCS 11.4.2.2: get next needs a get first in this session. */
        if (ch->status_p1 == 0 || ch->status_pos == SIZE_MAX || ch->status_p1 != a->p1) {
            return ADM_SW_WRONG_DATA;
        }
        start = ch->status_pos;
    }

    buf_wr_init(&pw, page, sizeof page);
    for (i = start; i < count; i++) {
        int idx = (int)i;
        if (kind == ADM_KIND_APP) {
            if (idx == 0 || !adm_aid_prefix(&st->apps[idx].aid, q.aid, q.aid_len)
                || !adm_app_visible(st, x->sd, idx)) {
                continue; /* the ISD is only reported for P1 80 */
            }
        } else if (kind == ADM_KIND_ELF) {
            if (!adm_aid_prefix(&st->elfs[idx].aid, q.aid, q.aid_len)
                || !adm_elf_visible(st, x->sd, idx)) {
                continue;
            }
        }
        struct buf_wr ew;
        size_t elen;
        buf_wr_init(&ew, ent, sizeof ent);
        adm_status_entry(&ew, st, kind, idx, a->p1, tlv, &q);
        if (buf_wr_finish(&ew, &elen) != OT_OK) {
            return ADM_SW_WRONG_DATA; /* cannot happen: entries are < 200 bytes */
        }
        if (pw.len + elen > ADM_STATUS_PAGE) {
            more = true;
            break;
        }
        buf_wr_bytes(&pw, ent, elen);
        any = true;
    }
    if (!any) {
        adm_status_forget(ch);
        return ADM_SW_REF_NOT_FND;
    }
    if (more) {
        ch->status_pos = i;
        ch->status_p1 = a->p1;
        return adm_emit(x, page, pw.len, ADM_SW_MORE);
    }
    adm_status_forget(ch);
    return adm_emit(x, page, pw.len, ADM_SW_OK);
}

/* ---------------------------------------------------------------- SET STATUS */

/* Card life cycle (GPCS 5.1, Figure 5-1). Returns the SW. */
static uint16_t adm_set_card_state(struct se_cmd *x, uint8_t to)
{
    struct se_card *c = x->card;
    const struct se_state *st = &c->st;
    uint8_t from = st->card_lcs;

    if (to != GP_LCS_CARD_INITIALIZED && to != GP_LCS_CARD_SECURED && to != GP_LCS_CARD_LOCKED
        && to != GP_LCS_CARD_TERMINATED) {
        return ADM_SW_WRONG_DATA;
    }
    if (from == to || from == GP_LCS_CARD_TERMINATED) {
        return ADM_SW_CONDITIONS;
    }
    switch (to) {
    case GP_LCS_CARD_INITIALIZED:
        /* OP_READY -> INITIALIZED: the ISD only, irreversible. */
        if (from != GP_LCS_CARD_OP_READY) {
            return ADM_SW_CONDITIONS;
        }
        if (x->sd != 0) {
            return ADM_SW_SECURITY;
        }
        break;
    case GP_LCS_CARD_SECURED:
        if (from == GP_LCS_CARD_LOCKED) {
            /* unlock: Card Lock privilege */
            if (!se_has_priv(st, x->sd, GP_PRIV_CARD_LOCK)) {
                return ADM_SW_SECURITY;
            }
        } else if (from == GP_LCS_CARD_OP_READY || from == GP_LCS_CARD_INITIALIZED) {
            if (x->sd != 0) {
                return ADM_SW_SECURITY;
            }
        } else {
            return ADM_SW_CONDITIONS;
        }
        break;
    case GP_LCS_CARD_LOCKED:
        if (from != GP_LCS_CARD_SECURED) {
            return ADM_SW_CONDITIONS;
        }
        if (!se_has_priv(st, x->sd, GP_PRIV_CARD_LOCK)) {
            return ADM_SW_SECURITY;
        }
        break;
    default: /* TERMINATED, from any state */
        if (!se_has_priv(st, x->sd, GP_PRIV_CARD_TERMINATE)) {
            return ADM_SW_SECURITY;
        }
        break;
    }
    OT_LOG_INFO("card life cycle %s -> %s by sd %d", gp_lcs_name(GP_LCS_CARD, from),
                gp_lcs_name(GP_LCS_CARD, to), x->sd);
    c->st.card_lcs = to;
    c->st.apps[0].lcs = to; /* the ISD inherits the card life cycle */
    se_mark_dirty(c);
    return ADM_SW_OK;
}

static uint8_t adm_locked(uint8_t lcs)
{
    return (uint8_t)(lcs | GP_LCS_LOCKED_BIT);
}

static uint8_t adm_unlocked(uint8_t lcs)
{
    return (uint8_t)(lcs & (uint8_t)~GP_LCS_LOCKED_BIT);
}

uint16_t se_gp_set_status(struct se_cmd *x)
{
    struct se_card *c = x->card;
    struct se_state *st = &c->st;
    const struct apdu *a = x->a;
    int target;
    bool lock = (a->p2 & GP_SET_STATUS_P2_LOCK) != 0;

    if (!x->authenticated) {
        return ADM_SW_SECURITY;
    }
    if (adm_card_is(c, GP_LCS_CARD_TERMINATED)) {
        return ADM_SW_CONDITIONS;
    }
    if (a->p1 == GP_SET_STATUS_P1_CARD) {
        return adm_set_card_state(x, a->p2); /* data ignored (GPCS 11.10.2.3) */
    }
    if (a->p1 != GP_SET_STATUS_P1_APP && a->p1 != GP_SET_STATUS_P1_SD_AND_APPS) {
        return ADM_SW_P1P2;
    }
    if (adm_card_is(c, GP_LCS_CARD_LOCKED)) {
        return ADM_SW_CONDITIONS;
    }
    if (a->nc < GP_AID_MIN || a->nc > GP_AID_MAX) {
        return ADM_SW_WRONG_DATA;
    }
    target = se_find_app(st, a->data, a->nc);
    if (target < 0) {
        return ADM_SW_REF_NOT_FND;
    }
    if (target == 0) {
        return ADM_SW_WRONG_DATA; /* the ISD's life cycle is the card's: P1 80 */
    }
    if (a->p1 == GP_SET_STATUS_P1_SD_AND_APPS && !st->apps[target].is_sd) {
        return ADM_SW_WRONG_DATA;
    }
    /* The requester must be (indirectly) the target's SD, or hold Global Lock. */
    if (target != x->sd && !se_has_priv(st, x->sd, GP_PRIV_GLOBAL_LOCK)
        && !adm_chain_reaches(st, se_app_sd(st, target), x->sd)) {
        return ADM_SW_SECURITY;
    }

    if (a->p1 == GP_SET_STATUS_P1_APP) {
        struct se_app *t = &st->apps[target];
        uint8_t to;
        if (target == x->sd && !lock) {
            /* An SD setting its own state: only PERSONALIZED (GPCS 11.10.2.2). */
            if (a->p2 != GP_LCS_SD_PERSONALIZED || gp_lcs_is_locked(GP_LCS_SD, t->lcs)) {
                return ADM_SW_WRONG_DATA;
            }
            if (t->lcs == GP_LCS_SD_PERSONALIZED) {
                return ADM_SW_CONDITIONS;
            }
            to = GP_LCS_SD_PERSONALIZED;
        } else {
            bool locked = (t->lcs & GP_LCS_LOCKED_BIT) != 0;
            if (locked == lock) {
                return ADM_SW_CONDITIONS; /* transition to the current state */
            }
            to = lock ? adm_locked(t->lcs) : adm_unlocked(t->lcs);
        }
        OT_LOG_INFO("life cycle of app %d: %02X -> %02X", target, t->lcs, to);
        t->lcs = to;
        se_mark_dirty(c);
        return ADM_SW_OK;
    }

    /* P1 60: the SD and its whole sub-hierarchy; entities already in the
     * requested state are left as they are (GPCS 11.10.2.1 note). */
    bool changed = false;
    for (int i = 1; i < (int)st->napps; i++) {
        if (i != target && !adm_chain_reaches(st, se_app_sd(st, i), target)) {
            continue;
        }
        uint8_t to = lock ? adm_locked(st->apps[i].lcs) : adm_unlocked(st->apps[i].lcs);
        if (to != st->apps[i].lcs) {
            st->apps[i].lcs = to;
            changed = true;
        }
    }
    if (changed) {
        OT_LOG_INFO("%s sd %d and its applications", lock ? "locked" : "unlocked", target);
        se_mark_dirty(c);
    }
    return ADM_SW_OK;
}

/* ---------------------------------------------------------------- PUT KEY */

struct adm_newkey {
    uint8_t kid;
    uint8_t type;
    uint8_t len;
    uint8_t val[32];
    uint8_t kcv[KCV_LEN];
};

/* Decrypts one key data field (GPCS 11.8.2.3, Amd D Table 7-10) at the
 * cursor. SW on failure. */
static uint16_t adm_put_key_field(const struct se_sc *sc, struct buf_rd *rd, struct adm_newkey *k)
{
    uint8_t type, blen, kcv_len;
    const uint8_t *blk;
    const uint8_t *kcv = NULL;
    size_t olen = sizeof k->val;

    if (buf_rd_u8(rd, &type) != OT_OK || buf_rd_u8(rd, &blen) != OT_OK
        || buf_rd_take(rd, blen, &blk) != OT_OK || buf_rd_u8(rd, &kcv_len) != OT_OK) {
        return ADM_SW_WRONG_DATA;
    }
    if (kcv_len != 0 && kcv_len != KCV_LEN) {
        return ADM_SW_WRONG_DATA;
    }
    if (kcv_len != 0 && buf_rd_take(rd, kcv_len, &kcv) != OT_OK) {
        return ADM_SW_WRONG_DATA;
    }
    k->type = type;
    if (type == SE_KEY_DES) {
        /* 3DES-ECB under the SCP02 session DEK, or the 16-byte static
         * Key-DEK of an SCP03 key set. */
        const uint8_t *dek = NULL;
        if (sc->scp == 0x02 && sc->scp02 != NULL) {
            dek = scp02_card_session_dek(sc->scp02);
        } else if (sc->scp == 0x03 && sc->scp03 != NULL) {
            const struct scp03_keyset *ks = scp03_card_keys(sc->scp03);
            if (ks != NULL && ks->key_len == 16) {
                dek = ks->dek;
            }
        }
        if (dek == NULL || (blen != 16 && blen != 24)) {
            return ADM_SW_WRONG_DATA;
        }
        if (keywrap_des_decrypt(dek, blk, blen, k->val, &olen) != OT_OK) {
            return ADM_SW_WRONG_DATA;
        }
        k->len = blen;
        if (kcv_des3(k->val, k->len, k->kcv) != OT_OK) {
            return ADM_SW_WRONG_DATA;
        }
    } else if (type == SE_KEY_AES) {
        /* Two encodings are in the field: "88 L keylen ciphertext" (Amd D
         * Table 7-10) and "88 L ciphertext" (16- or 32-byte keys). The first
         * has L - 1 a multiple of 16 and a key length byte that matches. */
        const struct scp03_keyset *ks =
            sc->scp == 0x03 && sc->scp03 != NULL ? scp03_card_keys(sc->scp03) : NULL;
        size_t key_len;
        const uint8_t *ct = blk;
        size_t ct_len = blen;
        if (ks == NULL) {
            return ADM_SW_WRONG_DATA; /* no AES Key-DEK under SCP02 */
        }
        if (blen > 1 && (blen - 1u) % 16u == 0 && keywrap_aes_wrapped_len(blk[0]) == blen - 1u) {
            key_len = blk[0];
            ct = blk + 1;
            ct_len = blen - 1u;
        } else if (blen == 16 || blen == 32) {
            key_len = blen;
        } else {
            return ADM_SW_WRONG_DATA;
        }
        if (keywrap_aes_decrypt(ks->dek, ks->key_len, ct, ct_len, key_len, k->val, &olen)
            != OT_OK) {
            return ADM_SW_WRONG_DATA;
        }
        k->len = (uint8_t)key_len;
        if (kcv_aes(k->val, k->len, k->kcv) != OT_OK) {
            return ADM_SW_WRONG_DATA;
        }
    } else {
        return ADM_SW_WRONG_DATA; /* other key types and the extended format */
    }
    if (kcv != NULL && !ot_mem_equal_ct(kcv, k->kcv, KCV_LEN)) {
        OT_LOG_DEBUG("put key: key check value mismatch");
        return ADM_SW_SECURITY; /* GPCS 11.8.3.2 */
    }
    return ADM_SW_OK;
}

static int adm_key_find(const struct se_sd *sd, uint8_t kvn, uint8_t kid)
{
    for (unsigned i = 0; i < sd->nkeys && i < SE_MAX_KEYS; i++) {
        if (sd->keys[i].kvn == kvn && sd->keys[i].kid == kid) {
            return (int)i;
        }
    }
    return -1;
}

static bool adm_kvn_exists(const struct se_sd *sd, uint8_t kvn)
{
    for (unsigned i = 0; i < sd->nkeys && i < SE_MAX_KEYS; i++) {
        if (sd->keys[i].kvn == kvn) {
            return true;
        }
    }
    return false;
}

/* A (re)written key set starts with sequence counter 0 (Amd D 7.2). */
static void adm_seq_reset(struct se_sd *sd, uint8_t old_kvn, uint8_t new_kvn)
{
    for (unsigned i = 0; i < sd->nseqs && i < SE_MAX_SEQS; i++) {
        if (sd->seqs[i].kvn == old_kvn || sd->seqs[i].kvn == new_kvn) {
            sd->seqs[i].kvn = new_kvn;
            sd->seqs[i].value = 0;
            return;
        }
    }
    if (sd->nseqs < SE_MAX_SEQS) {
        sd->seqs[sd->nseqs].kvn = new_kvn;
        sd->seqs[sd->nseqs].value = 0;
        sd->nseqs++;
    }
}

uint16_t se_gp_put_key(struct se_cmd *x)
{
    struct se_card *c = x->card;
    const struct apdu *a = x->a;
    const struct se_sc *sc = &c->chans[x->chan].sc;
    struct adm_newkey keys[SE_MAX_KEYS];
    uint8_t resp[1 + SE_MAX_KEYS * KCV_LEN];
    size_t nkeys = 0;
    struct buf_rd rd;
    uint8_t old_kvn = a->p1 & 0x7Fu;
    uint8_t kid = a->p2 & 0x7Fu;
    bool multi = (a->p2 & GP_PUT_KEY_P2_MULTI) != 0;
    uint8_t new_kvn;
    uint16_t sw = ADM_SW_OK;
    struct se_sd *sd;
    int slot[SE_MAX_KEYS];
    struct buf_wr w;

    if (!x->authenticated || sc->sd != x->sd || !x->card->st.apps[x->sd].is_sd) {
        return ADM_SW_SECURITY;
    }
    if (adm_card_is(c, GP_LCS_CARD_LOCKED) || adm_card_is(c, GP_LCS_CARD_TERMINATED)) {
        return ADM_SW_CONDITIONS;
    }
    if (kid == 0) {
        return ADM_SW_P1P2;
    }
    sd = &c->st.apps[x->sd].sd_data;
    buf_rd_init(&rd, a->data, a->nc);
    if (buf_rd_u8(&rd, &new_kvn) != OT_OK || new_kvn == 0 || new_kvn > 0x7Fu || rd.left == 0) {
        return ADM_SW_WRONG_DATA;
    }
    while (rd.left > 0) {
        if (nkeys == SE_MAX_KEYS || (!multi && nkeys == 1) || kid + nkeys > 0x7Fu) {
            sw = nkeys == SE_MAX_KEYS ? ADM_SW_NO_SPACE : ADM_SW_WRONG_DATA;
            goto out;
        }
        keys[nkeys].kid = (uint8_t)(kid + nkeys);
        sw = adm_put_key_field(sc, &rd, &keys[nkeys]);
        nkeys++;
        if (sw != ADM_SW_OK) {
            goto out;
        }
    }

    /* Validate against the SD's keys before changing any (atomic). */
    if (old_kvn == 0) {
        if (adm_kvn_exists(sd, new_kvn)) {
            sw = ADM_SW_WRONG_DATA; /* adding a key set that exists */
            goto out;
        }
        if (sd->nkeys + nkeys > SE_MAX_KEYS) {
            sw = ADM_SW_NO_SPACE;
            goto out;
        }
        for (size_t i = 0; i < nkeys; i++) {
            slot[i] = (int)(sd->nkeys + i);
        }
    } else {
        if (!adm_kvn_exists(sd, old_kvn)) {
            sw = ADM_SW_REF_NOT_FND;
            goto out;
        }
        if (new_kvn != old_kvn && adm_kvn_exists(sd, new_kvn)) {
            sw = ADM_SW_WRONG_DATA;
            goto out;
        }
        for (size_t i = 0; i < nkeys; i++) {
            slot[i] = adm_key_find(sd, old_kvn, keys[i].kid);
            if (slot[i] < 0) {
                sw = ADM_SW_REF_NOT_FND;
                goto out;
            }
            const struct se_key *k = &sd->keys[slot[i]];
            if (k->type != keys[i].type || k->len != keys[i].len) {
                sw = ADM_SW_WRONG_DATA; /* a replaced key keeps type and length */
                goto out;
            }
        }
    }

    buf_wr_init(&w, resp, sizeof resp);
    buf_wr_u8(&w, new_kvn);
    for (size_t i = 0; i < nkeys; i++) {
        buf_wr_bytes(&w, keys[i].kcv, KCV_LEN);
    }
    if (w.err != OT_OK) {
        sw = ADM_SW_WRONG_DATA;
        goto out;
    }
    sw = adm_emit(x, resp, w.len, ADM_SW_OK);
    if (sw != ADM_SW_OK) {
        goto out;
    }

    /* Mutation. */
    for (size_t i = 0; i < nkeys; i++) {
        struct se_key *k = &sd->keys[slot[i]];
        ot_mem_wipe(k, sizeof *k);
        k->kvn = new_kvn;
        k->kid = keys[i].kid;
        k->type = keys[i].type;
        k->len = keys[i].len;
        memcpy(k->val, keys[i].val, keys[i].len);
    }
    if (old_kvn == 0) {
        sd->nkeys = (uint8_t)(sd->nkeys + nkeys);
    } else if (new_kvn != old_kvn) {
        /* The keys of the old set that were not given follow the set. */
        for (unsigned i = 0; i < sd->nkeys; i++) {
            if (sd->keys[i].kvn == old_kvn) {
                sd->keys[i].kvn = new_kvn;
            }
        }
    }
    adm_seq_reset(sd, old_kvn == 0 ? new_kvn : old_kvn, new_kvn);
    OT_LOG_INFO("put key: sd %d kvn %02X %s, %zu key(s) from kid %u", x->sd, new_kvn,
                old_kvn == 0 ? "added" : "replaced", nkeys, kid);
    se_mark_dirty(c);
out:
    ot_mem_wipe(keys, sizeof keys);
    return sw;
}

/* ---------------------------------------------------------------- STORE DATA */

/* The SD's own data objects (GPCS 11.11.2.3). apply false: validate only;
 * true: store (after a validating pass), *changed set when a stored value
 * differs from the one before. Returns the SW. */
static uint16_t adm_store_tlvs(struct se_cmd *x, const uint8_t *p, size_t n, bool apply,
                               bool *changed)
{
    struct se_state *st = &x->card->st;
    struct se_app *sda = &st->apps[x->sd];
    struct buf_rd rd;
    struct tlv t;

    buf_rd_init(&rd, p, n);
    while (rd.left > 0) {
        if (tlv_next(&rd, &t) != OT_OK) {
            return ADM_SW_WRONG_DATA;
        }
        switch (t.tag) {
        case GP_TAG_IIN:
        case GP_TAG_CIN:
            if (t.len == 0 || t.len > sizeof sda->sd_data.iin) {
                return ADM_SW_WRONG_DATA;
            }
            if (apply) {
                bool iin = t.tag == GP_TAG_IIN;
                uint8_t *v = iin ? sda->sd_data.iin : sda->sd_data.cin;
                uint8_t *vl = iin ? &sda->sd_data.iin_len : &sda->sd_data.cin_len;
                if (*vl != t.len || memcmp(v, t.val, t.len) != 0) {
                    memcpy(v, t.val, t.len);
                    *vl = (uint8_t)t.len;
                    *changed = true;
                }
            }
            break;
        case ADM_TAG_ISD_AID: {
            /* Renaming the ISD (GPCS 11.11.2.3); associations follow. */
            if (x->sd != 0 || t.len < GP_AID_MIN || t.len > GP_AID_MAX) {
                return ADM_SW_WRONG_DATA;
            }
            int other = se_find_app(st, t.val, t.len);
            if (other > 0 || se_find_elf(st, t.val, t.len) >= 0) {
                return ADM_SW_WRONG_DATA;
            }
            if (apply && !adm_aid_is(&st->apps[0].aid, t.val, t.len)) {
                struct se_aid old = st->apps[0].aid;
                *changed = true;
                for (unsigned i = 0; i < st->napps; i++) {
                    if (adm_aid_is(&st->apps[i].sd, old.b, old.len)) {
                        memcpy(st->apps[i].sd.b, t.val, t.len);
                        st->apps[i].sd.len = (uint8_t)t.len;
                    }
                }
                for (unsigned i = 0; i < st->nelfs; i++) {
                    if (adm_aid_is(&st->elfs[i].sd, old.b, old.len)) {
                        memcpy(st->elfs[i].sd.b, t.val, t.len);
                        st->elfs[i].sd.len = (uint8_t)t.len;
                    }
                }
                memset(&st->apps[0].aid, 0, sizeof st->apps[0].aid);
                memcpy(st->apps[0].aid.b, t.val, t.len);
                st->apps[0].aid.len = (uint8_t)t.len;
            }
            break;
        }
        case GP_TAG_CARD_DATA:
        case GP_TAG_CARD_CAPS:
        case GP_TAG_SD_MANAGER_URL:
            /* Accepted; the vse derives card data and capabilities itself. */
            break;
        case GP_TAG_SEC_LEVEL:
        case ADM_TAG_APP_LIST_BER:
        case GP_TAG_APP_LIST:
        case GP_TAG_EXT_CARD_RES:
        case GP_TAG_CONF_COUNTER:
        case GP_TAG_SEQ_COUNTER:
            return ADM_SW_WRONG_DATA; /* dynamic objects cannot be stored */
        default:
            return ADM_SW_REF_NOT_FND;
        }
    }
    return ADM_SW_OK;
}

/* DGI format: only DGI 0070 (BER-TLV objects) is the SD's own. */
static uint16_t adm_store_dgis(struct se_cmd *x, const uint8_t *p, size_t n, bool apply,
                               bool *changed)
{
    struct buf_rd rd;
    buf_rd_init(&rd, p, n);
    while (rd.left > 0) {
        uint16_t dgi;
        uint8_t l1;
        size_t len;
        const uint8_t *v;
        if (buf_rd_u16be(&rd, &dgi) != OT_OK || buf_rd_u8(&rd, &l1) != OT_OK) {
            return ADM_SW_WRONG_DATA;
        }
        len = l1;
        if (l1 == 0xFFu) {
            uint16_t l2;
            if (buf_rd_u16be(&rd, &l2) != OT_OK) {
                return ADM_SW_WRONG_DATA;
            }
            len = l2;
        }
        if (buf_rd_take(&rd, len, &v) != OT_OK) {
            return ADM_SW_WRONG_DATA;
        }
        if (dgi != ADM_DGI_BER_TLV) {
            return ADM_SW_REF_NOT_FND;
        }
        uint16_t sw = adm_store_tlvs(x, v, len, apply, changed);
        if (sw != ADM_SW_OK) {
            return sw;
        }
    }
    return ADM_SW_OK;
}

uint16_t se_gp_store_data(struct se_cmd *x)
{
    struct se_card *c = x->card;
    struct se_state *st = &c->st;
    struct se_chan *ch = &c->chans[x->chan];
    const struct apdu *a = x->a;
    bool last = (a->p1 & GP_STORE_P1_LAST) != 0;
    uint8_t fmt = a->p1 & GP_STORE_P1_FMT_MASK;
    uint8_t enc = a->p1 & GP_STORE_P1_ENC_MASK;
    uint16_t sw;

    if (!x->authenticated) {
        return ADM_SW_SECURITY;
    }
    if (adm_card_is(c, GP_LCS_CARD_LOCKED) || adm_card_is(c, GP_LCS_CARD_TERMINATED)) {
        return ADM_SW_CONDITIONS;
    }
    if ((a->p1 & GP_STORE_P1_RFU_MASK) != 0 || enc == 0x40u || fmt == GP_STORE_P1_FMT_MASK) {
        ch->store_next_block = 0;
        return ADM_SW_P1P2;
    }
    if (a->p2 != ch->store_next_block) {
        OT_LOG_DEBUG("store data: block %02X, expected %02X", a->p2, ch->store_next_block);
        ch->store_next_block = 0;
        return ADM_SW_P1P2;
    }
    if (a->nc == 0) {
        ch->store_next_block = 0;
        return ADM_SW_WRONG_LENGTH;
    }

    int t = ch->perso_target;
    if (t >= 0) {
        /* Personalization session (GPCS 7.3.2): forward to the applet. */
        const struct se_applet_ops *ops = NULL;
        if (t < (int)st->napps && se_app_sd(st, t) == x->sd) {
            ops = se_applet_find(st->apps[t].elf.b, st->apps[t].elf.len);
        }
        if (ops == NULL || ops->personalize == NULL) {
            ch->perso_target = -1;
            ch->store_next_block = 0;
            return ADM_SW_CONDITIONS;
        }
        struct se_applet_ctx ctx;
        se_applet_ctx_init(c, t, x->chan, &ctx);
        sw = ops->personalize(&ctx, a->p1, a->p2, a->data, a->nc);
        if (sw != ADM_SW_OK) {
            ch->store_next_block = 0;
            return sw;
        }
        if (last) {
            ch->perso_target = -1; /* the session ends with the last block */
            ch->store_next_block = 0;
        } else {
            ch->store_next_block++;
        }
        return ADM_SW_OK;
    }

    /* The SD's own data. Objects that are accepted but not kept, or equal to
     * what is stored, leave the state clean: no image is serialised. */
    bool changed = false;
    if (enc == GP_STORE_P1_ENC_ALL) {
        sw = ADM_SW_WRONG_DATA; /* the SD's own objects are never encrypted */
    } else if (fmt == GP_STORE_P1_DGI) {
        sw = adm_store_dgis(x, a->data, a->nc, false, &changed);
        if (sw == ADM_SW_OK) {
            sw = adm_store_dgis(x, a->data, a->nc, true, &changed);
        }
    } else {
        sw = adm_store_tlvs(x, a->data, a->nc, false, &changed);
        if (sw == ADM_SW_OK) {
            sw = adm_store_tlvs(x, a->data, a->nc, true, &changed);
        }
    }
    if (sw != ADM_SW_OK) {
        ch->store_next_block = 0;
        return sw;
    }
    if (changed) {
        se_mark_dirty(c);
    }
    ch->store_next_block = last ? 0 : (uint8_t)(ch->store_next_block + 1u);
    return ADM_SW_OK;
}

/* ---------------------------------------------------------------- GET DATA */

/* Card recognition data / SD management data (GPCS H.2, H.3). */
static void adm_card_data(struct buf_wr *w, const struct se_app *sd)
{
    size_t m66, m73, m;
    uint8_t arc[4];
    tlv_open(w, GP_TAG_CARD_DATA, &m66);
    tlv_open(w, ADM_TAG_CARD_RECOG, &m73);
    /* {gp 1}: GlobalPlatform card recognition data */
    tlv_open(w, ADM_TAG_OID, &m);
    buf_wr_bytes(w, adm_gp_oid, sizeof adm_gp_oid);
    buf_wr_u8(w, 0x01);
    tlv_close(w, m);
    /* {gp 2 2 3 1}: card management type and version, GPCS v2.3.1 */
    tlv_open(w, ADM_TAG_CM_OID, &m);
    arc[0] = 0x02;
    arc[1] = 0x02;
    arc[2] = 0x03;
    arc[3] = 0x01;
    tlv_put_tag(w, ADM_TAG_OID);
    tlv_put_len(w, sizeof adm_gp_oid + 4);
    buf_wr_bytes(w, adm_gp_oid, sizeof adm_gp_oid);
    buf_wr_bytes(w, arc, 4);
    tlv_close(w, m);
    /* {gp 3}: card identification scheme */
    tlv_open(w, ADM_TAG_ID_SCHEME, &m);
    tlv_put_tag(w, ADM_TAG_OID);
    tlv_put_len(w, sizeof adm_gp_oid + 1);
    buf_wr_bytes(w, adm_gp_oid, sizeof adm_gp_oid);
    buf_wr_u8(w, 0x03);
    tlv_close(w, m);
    /* {gp 4 scp i}: the SD's secure channel protocol */
    tlv_open(w, ADM_TAG_SCP_OID, &m);
    arc[0] = 0x04;
    arc[1] = sd->sd_data.scp;
    arc[2] = sd->sd_data.scp_i;
    tlv_put_tag(w, ADM_TAG_OID);
    tlv_put_len(w, sizeof adm_gp_oid + 3);
    buf_wr_bytes(w, adm_gp_oid, sizeof adm_gp_oid);
    buf_wr_bytes(w, arc, 3);
    tlv_close(w, m);
    tlv_close(w, m73);
    tlv_close(w, m66);
}

/* Card Capability Information (GPCS H.4), ISD only:
 *   A0   one per secure channel protocol in use (the ISD's first): 80 the
 *        protocol, 81 the "i" values the card runs for it (those of its SDs,
 *        and for SCP03 always 10 and 70, the ISD and SSD defaults), 82 the
 *        SCP03 key lengths;
 *   81   privileges SSDs may get: every GPCS 2.3.1 privilege but Ciphered
 *        LFDB, which the card refuses (gpcm_install.c: no LFDB decryption);
 *   82   privileges applications may get;
 *   83   LFDB hash algorithms (SHA-1, -256, -384, -512: all four checked);
 *   85, 86, 87  signature schemes of tokens, receipts and DAPs (Table H-9):
 *        AES-CMAC with 128, 192 and 256-bit keys (gpcm_install.c). */
#define ADM_TAG_SCP_INFO   0xA0u
#define ADM_CAPS_SSD_PRIVS 0xFFFFB0u /* all but Ciphered Load File Data Block */
#define ADM_CAPS_APP_PRIVS 0x1E9F30u /* CL CT CR CVM, TP GD GL GR FA GS, CLA CLSA */
#define ADM_SCP03_KEYS_ALL 0x07u     /* AES-128, AES-192, AES-256 */
#define ADM_SIG_AES_CMAC   0x38u     /* Table H-9: CMAC with AES-128, AES-192, AES-256 */
#define ADM_MAX_I          16u

/* The distinct "i" values of the SDs running protocol scp, the ISD's first. */
static size_t adm_scp_options(const struct se_state *st, uint8_t scp, uint8_t *out)
{
    size_t n = 0;
    uint8_t cand[SE_MAX_APPS + 2];
    size_t nc = 0;
    for (int i = 0; i < (int)st->napps; i++) {
        if (st->apps[i].is_sd && st->apps[i].sd_data.scp == scp) {
            cand[nc++] = st->apps[i].sd_data.scp_i;
        }
    }
    if (scp == 0x03) {
        cand[nc++] = 0x10;
        cand[nc++] = 0x70;
    }
    for (size_t k = 0; k < nc && n < ADM_MAX_I; k++) {
        bool seen = false;
        for (size_t j = 0; j < n; j++) {
            seen = seen || out[j] == cand[k];
        }
        if (!seen) {
            out[n++] = cand[k];
        }
    }
    return n;
}

static void adm_scp_info(struct buf_wr *w, const struct se_state *st, uint8_t scp)
{
    uint8_t opts[ADM_MAX_I], b = ADM_SCP03_KEYS_ALL;
    size_t ma0;
    size_t n = adm_scp_options(st, scp, opts);
    tlv_open(w, ADM_TAG_SCP_INFO, &ma0);
    tlv_put(w, 0x80u, &scp, 1);
    tlv_put(w, 0x81u, opts, n);
    if (scp == 0x03) {
        tlv_put(w, 0x82u, &b, 1);
    }
    tlv_close(w, ma0);
}

static void adm_card_caps(struct buf_wr *w, const struct se_state *st)
{
    static const uint8_t hashes[] = {0x01, 0x02, 0x03, 0x04};
    static const uint8_t sig[] = {ADM_SIG_AES_CMAC};
    size_t m67;
    uint8_t b[3];
    uint8_t first = st->apps[0].sd_data.scp;
    bool other = false;
    for (int i = 1; i < (int)st->napps; i++) {
        other = other || (st->apps[i].is_sd && st->apps[i].sd_data.scp != first);
    }
    tlv_open(w, GP_TAG_CARD_CAPS, &m67);
    adm_scp_info(w, st, first);
    if (other) {
        adm_scp_info(w, st, first == 0x03 ? 0x02 : 0x03);
    }
    gp_privs_encode(ADM_CAPS_SSD_PRIVS, b);
    tlv_put(w, 0x81u, b, 3);
    gp_privs_encode(ADM_CAPS_APP_PRIVS, b);
    tlv_put(w, 0x82u, b, 3);
    tlv_put(w, 0x83u, hashes, sizeof hashes);
    tlv_put(w, 0x85u, sig, sizeof sig);
    tlv_put(w, 0x86u, sig, sizeof sig);
    tlv_put(w, 0x87u, sig, sizeof sig);
    tlv_close(w, m67);
}

static uint32_t adm_seq_of(const struct se_sd *sd, uint8_t kvn)
{
    for (unsigned i = 0; i < sd->nseqs && i < SE_MAX_SEQS; i++) {
        if (sd->seqs[i].kvn == kvn) {
            return sd->seqs[i].value;
        }
    }
    return 0;
}

uint16_t se_gp_get_data(struct se_cmd *x)
{
    struct se_card *c = x->card;
    const struct se_state *st = &c->st;
    const struct apdu *a = x->a;
    const struct se_app *sda = &st->apps[x->sd];
    const struct se_sd *sd = &sda->sd_data;
    uint16_t tag = (uint16_t)((a->p1 << 8) | a->p2);
    bool full = apdu_cla_is_proprietary(a->cla); /* GP CLA: the whole TLV */
    uint8_t tmp[ADM_GET_DATA_MAX];
    struct buf_wr w;
    size_t mark;
    uint8_t b[4];
    uint16_t sw = ADM_SW_OK;

    buf_wr_init(&w, tmp, sizeof tmp);

    switch (tag) {
    case GP_TAG_IIN:
    case GP_TAG_CIN: {
        uint8_t n = tag == GP_TAG_IIN ? sd->iin_len : sd->cin_len;
        if (n == 0) {
            sw = ADM_SW_REF_NOT_FND;
            break;
        }
        tlv_put(&w, tag, tag == GP_TAG_IIN ? sd->iin : sd->cin, n);
        break;
    }
    case GP_TAG_CARD_DATA:
        if (!sda->is_sd) {
            sw = ADM_SW_REF_NOT_FND;
            break;
        }
        adm_card_data(&w, sda);
        break;
    case GP_TAG_CARD_CAPS:
        if (x->sd != 0) {
            sw = ADM_SW_REF_NOT_FND;
            break;
        }
        adm_card_caps(&w, st);
        break;
    case GP_TAG_KEY_INFO:
        tlv_open(&w, GP_TAG_KEY_INFO, &mark);
        for (unsigned i = 0; i < sd->nkeys && i < SE_MAX_KEYS; i++) {
            b[0] = sd->keys[i].kid;
            b[1] = sd->keys[i].kvn;
            b[2] = sd->keys[i].type;
            b[3] = sd->keys[i].len;
            tlv_put(&w, ADM_TAG_KEY_INFO_ENTRY, b, 4);
        }
        tlv_close(&w, mark);
        break;
    case GP_TAG_SEQ_COUNTER: {
        /* Counter of the default key set: the SD's first key set. */
        uint32_t v = sd->nkeys > 0 ? adm_seq_of(sd, sd->keys[0].kvn) : 0;
        size_t n = sd->scp == 0x02 ? 2 : 3;
        ot_put_u32be(b, v);
        tlv_put(&w, tag, b + 4 - n, n);
        break;
    }
    case GP_TAG_CONF_COUNTER:
        /* GPCS 11.3.2.1: an SD with Receipt Generation (C.5: 16 bits). */
        if (!se_has_priv(st, x->sd, GP_PRIV_RECEIPT_GENERATION)) {
            sw = ADM_SW_REF_NOT_FND;
            break;
        }
        ot_put_u16be(b, sd->confirm_ctr);
        tlv_put(&w, tag, b, 2);
        break;
    case GP_TAG_SEC_LEVEL:
        b[0] = x->sec_level;
        tlv_put(&w, tag, b, 1);
        break;
    case GP_TAG_KDD:
        tlv_put(&w, tag, st->kdd, sizeof st->kdd);
        break;
    case ADM_TAG_CARD_LCS:
        if (x->sd != 0) {
            sw = ADM_SW_REF_NOT_FND;
            break;
        }
        tlv_put(&w, tag, &st->card_lcs, 1);
        break;
    case GP_TAG_CPLC:
        tlv_put(&w, tag, st->cplc, sizeof st->cplc);
        break;
    case GP_TAG_EXT_CARD_RES: {
        /* TS 102 226 8.2.1.7.2: 81 installed applications, 82 free
         * non-volatile memory, 83 free volatile memory. */
        uint32_t napps = st->napps > 0 ? st->napps - 1u : 0;
        tlv_open(&w, GP_TAG_EXT_CARD_RES, &mark);
        adm_put_uint(&w, 0x81, napps);
        adm_put_uint(&w, 0x82, se_mem_free(st));
        adm_put_uint(&w, 0x83, (uint32_t)(SE_MAX_APPS - st->napps) * SE_VOL_SIZE);
        tlv_close(&w, mark);
        break;
    }
    case GP_TAG_APP_LIST:
        /* 61 {4F AID} per visible application (GPCS 11.3.3.1.3). */
        for (int i = 1; i < (int)st->napps; i++) {
            if (!adm_app_visible(st, x->sd, i)) {
                continue;
            }
            tlv_open(&w, ADM_TAG_APP_TEMPLATE, &mark);
            tlv_put(&w, GP_TAG_AID, st->apps[i].aid.b, st->apps[i].aid.len);
            tlv_close(&w, mark);
        }
        full = true; /* a list of templates either way */
        break;
    default:
        sw = ADM_SW_REF_NOT_FND;
        break;
    }
    if (sw == ADM_SW_OK) {
        size_t n;
        struct tlv t;
        ot_err fe = buf_wr_finish(&w, &n);
        if (fe == OT_OK && (full || n == 0)) {
            sw = adm_emit(x, tmp, n, ADM_SW_OK);
        } else if (fe == OT_OK && tlv_parse_one(tmp, n, &t) == OT_OK) {
            sw = adm_emit(x, t.val, t.len, ADM_SW_OK); /* ISO CLA: the value only */
        } else {
            sw = ADM_SW_MEMORY; /* cannot happen: ADM_GET_DATA_MAX covers the largest */
        }
    }
    return sw;
}

/* ---------------------------------------------------------------- destroy */

void se_destroy_software(struct se_card *c)
{
    struct se_state *st = &c->st;
    for (int i = (int)st->napps - 1; i >= 1; i--) {
        const struct se_app *a = &st->apps[i];
        if (a->is_sd) {
            continue;
        }
        const struct se_applet_ops *ops = se_applet_find(a->elf.b, a->elf.len);
        if (ops == NULL || !ops->payment) {
            continue;
        }
        if (ops->wipe != NULL) {
            struct se_applet_ctx ctx;
            se_applet_ctx_init(c, i, 0, &ctx);
            ops->wipe(&ctx);
        }
        OT_LOG_INFO("software destroy: deleting payment instance %d (%s)", i, ops->name);
        se_remove_app(c, i);
    }
    for (unsigned ch = 0; ch < SE_MAX_CHANNELS; ch++) {
        c->chans[ch].perso_target = -1;
        c->chans[ch].store_next_block = 0;
        adm_status_forget(&c->chans[ch]);
    }
    st->card_lcs = GP_LCS_CARD_TERMINATED;
    st->apps[0].lcs = GP_LCS_CARD_TERMINATED;
    se_mark_dirty(c);
}

void se_destroy_hardware(struct se_card *c)
{
    OT_LOG_INFO("hardware destroy: the card goes mute for good");
    c->st.mute = true;
    se_mark_dirty(c);
}

/* A telecom instance: the module named "telecom". */
static bool adm_is_telecom(const struct se_state *st, int i)
{
    const struct se_app *a = &st->apps[i];
    const struct se_applet_ops *ops;

    if (a->is_sd) {
        return false;
    }
    ops = se_applet_find(a->elf.b, a->elf.len);
    return ops != NULL && strcmp(ops->name, "telecom") == 0;
}

int se_destroy_puk(struct se_card *c)
{
    /* Two wrong-PUK candidates (PUK || new PIN): at most one of them is the
     * PUK, so when one unblocks (9000, the counters reset) the other is
     * wrong for good. */
    static const uint8_t guess[2][16] = {
        {'0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', 0xFF, 0xFF, 0xFF, 0xFF},
        {'9', '9', '9', '9', '9', '9', '9', '9', '0', '0', '0', '0', 0xFF, 0xFF, 0xFF, 0xFF},
    };
    struct se_state *st = &c->st;
    const struct se_applet_ops *ops = NULL;
    unsigned g = 0;
    int i;

    for (i = 1; i < (int)st->napps && !adm_is_telecom(st, i); i++) {
    }
    if (i >= (int)st->napps) {
        return 0;
    }
    ops = se_applet_find(st->apps[i].elf.b, st->apps[i].elf.len);
    /* 10 wrong PUKs and the eleventh, twice over after a lucky guess */
    for (unsigned t = 0; t < 32u && st->card_lcs != GP_LCS_CARD_TERMINATED; t++) {
        struct se_applet_ctx ctx;
        struct apdu cmd = {
            .cla = 0x00, .ins = 0x2C, .p1 = 0x00, .p2 = 0x01, .data = guess[g], .nc = 16};
        uint8_t rbuf[64];
        struct buf_wr out;
        buf_wr_init(&out, rbuf, sizeof rbuf);
        se_applet_ctx_init(c, i, 0, &ctx);
        if (ops->process(&ctx, &cmd, &out) == ADM_SW_OK) {
            g ^= 1u; /* that one was the PUK: the other is wrong */
        }
    }
    if (st->card_lcs != GP_LCS_CARD_TERMINATED) {
        return -1;
    }
    OT_LOG_INFO("PUK destroy: telecom instance %d blocked the card", i);
    for (unsigned ch = 0; ch < SE_MAX_CHANNELS; ch++) {
        c->chans[ch].perso_target = -1;
        c->chans[ch].store_next_block = 0;
        adm_status_forget(&c->chans[ch]);
    }
    se_mark_dirty(c);
    return 1;
}

uint16_t se_gp_destroy(struct se_cmd *x)
{
    struct se_card *c = x->card;
    const struct apdu *a = x->a;

    if (a->p2 != 0x00
        || (a->p1 != ADM_DESTROY_SOFTWARE && a->p1 != ADM_DESTROY_HARDWARE
            && a->p1 != ADM_DESTROY_PUK)) {
        return ADM_SW_P1P2;
    }
    if (a->nc != 0) {
        return ADM_SW_WRONG_LENGTH;
    }
    if (!x->authenticated || !se_has_priv(&c->st, x->sd, GP_PRIV_CARD_TERMINATE)) {
        return ADM_SW_SECURITY;
    }
    if (a->p1 == ADM_DESTROY_SOFTWARE) {
        if (adm_card_is(c, GP_LCS_CARD_TERMINATED)) {
            return ADM_SW_CONDITIONS;
        }
        se_destroy_software(c);
    } else if (a->p1 == ADM_DESTROY_PUK) {
        int r;
        if (adm_card_is(c, GP_LCS_CARD_TERMINATED)) {
            return ADM_SW_CONDITIONS;
        }
        r = se_destroy_puk(c);
        if (r == 0) {
            return ADM_SW_REF_NOT_FND; /* no telecom application */
        }
        if (r < 0) {
            return ADM_SW_MEMORY; /* the applet did not block (cannot happen) */
        }
    } else {
        se_destroy_hardware(c);
    }
    return ADM_SW_OK;
}
