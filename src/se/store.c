/* vse card image: serialisation of struct se_state and atomic writes.
 *
 * Image layout (all integers big-endian, every field written on its own,
 * never a raw struct, so the format does not depend on the compiler):
 *
 *   magic "OTVSE\x01" (6)  version u16
 *   card:  type u8, card_lcs u8, mute u8, atr_len u8 + atr, cplc[42], kdd[10]
 *   napps u8, then per application:
 *          aid, elf, module, sd       (each: len u8 <= 16, then len bytes)
 *          privs u32 (<= 0xFFFFFF), lcs u8, is_sd u8
 *          if is_sd: scp u8, scp_i u8,
 *                    nkeys u8, per key: kvn u8, kid u8, type u8, len u8 + value
 *                    nseqs u8, per counter: kvn u8, value u32
 *                    iin_len u8 + iin, cin_len u8 + cin, confirm_ctr u16
 *          params_len u8 + params, data_len u16 + data
 *   nelfs u8, then per load file:
 *          aid, sd, version[2], lcs u8, nmodules u8 + module aids,
 *          size u32, native u8
 *   SHA-256 over every byte before it (32)
 *
 * The image holds the key values: the card is the secure element and its
 * image is its non-volatile memory. The image file is therefore created
 * with mode 0600 (se_store_write) and must be protected like a key file.
 */
#include "se/se_priv.h"

#include "gp/privs.h"

#define OT_LOG_COMPONENT "se.store"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SE_IMAGE_MAGIC_LEN (sizeof(SE_IMAGE_MAGIC) - 1u)
#define SE_IMAGE_HASH_LEN  32u
/* Largest image the caps allow is about 600 KiB; anything bigger is not ours. */
#define SE_IMAGE_MAX ((size_t)1024 * 1024)

enum {
    SE_STEP_OPEN = 0,
    SE_STEP_WRITE = 1,
    SE_STEP_FSYNC = 2,
    SE_STEP_RENAME = 3,
    SE_STEP_DIRSYNC = 4,
};

/* ---------------------------------------------------------------- encoding */

struct se_enc {
    struct ot_buf *b;
    ot_err err;
};

static void enc_bytes(struct se_enc *e, const void *p, size_t n)
{
    if (e->err == OT_OK && n > 0) {
        e->err = ot_buf_append(e->b, p, n);
    }
}

static void enc_u8(struct se_enc *e, uint8_t v)
{
    enc_bytes(e, &v, 1);
}

static void enc_u16(struct se_enc *e, uint16_t v)
{
    uint8_t b[2];
    ot_put_u16be(b, v);
    enc_bytes(e, b, sizeof(b));
}

static void enc_u32(struct se_enc *e, uint32_t v)
{
    uint8_t b[4];
    ot_put_u32be(b, v);
    enc_bytes(e, b, sizeof(b));
}

static void enc_bool(struct se_enc *e, bool v)
{
    enc_u8(e, v ? 1u : 0u);
}

/* A length-prefixed field; a length above its cap is an internal error. */
static void enc_lv(struct se_enc *e, const uint8_t *p, size_t n, size_t cap)
{
    if (n > cap || n > 0xFFu) {
        if (e->err == OT_OK) {
            e->err = OT_E_INTERNAL;
        }
        return;
    }
    enc_u8(e, (uint8_t)n);
    enc_bytes(e, p, n);
}

static void enc_aid(struct se_enc *e, const struct se_aid *a)
{
    enc_lv(e, a->b, a->len, SE_AID_MAX);
}

static void enc_sd(struct se_enc *e, const struct se_sd *sd)
{
    enc_u8(e, sd->scp);
    enc_u8(e, sd->scp_i);
    if (sd->nkeys > SE_MAX_KEYS || sd->nseqs > SE_MAX_SEQS) {
        e->err = e->err == OT_OK ? OT_E_INTERNAL : e->err;
        return;
    }
    enc_u8(e, sd->nkeys);
    for (size_t i = 0; i < sd->nkeys; i++) {
        const struct se_key *k = &sd->keys[i];
        enc_u8(e, k->kvn);
        enc_u8(e, k->kid);
        enc_u8(e, k->type);
        enc_lv(e, k->val, k->len, sizeof(k->val));
    }
    enc_u8(e, sd->nseqs);
    for (size_t i = 0; i < sd->nseqs; i++) {
        enc_u8(e, sd->seqs[i].kvn);
        enc_u32(e, sd->seqs[i].value);
    }
    enc_lv(e, sd->iin, sd->iin_len, sizeof(sd->iin));
    enc_lv(e, sd->cin, sd->cin_len, sizeof(sd->cin));
    enc_u16(e, sd->confirm_ctr);
}

static void enc_app(struct se_enc *e, const struct se_app *a)
{
    enc_aid(e, &a->aid);
    enc_aid(e, &a->elf);
    enc_aid(e, &a->module);
    enc_aid(e, &a->sd);
    enc_u32(e, a->privs);
    enc_u8(e, a->lcs);
    enc_bool(e, a->is_sd);
    if (a->is_sd) {
        enc_sd(e, &a->sd_data);
    }
    enc_lv(e, a->params, a->params_len, SE_MAX_PARAMS);
    if (a->data_len > SE_MAX_APP_DATA) {
        e->err = e->err == OT_OK ? OT_E_INTERNAL : e->err;
        return;
    }
    if (a->data_len > a->data_cap) {
        e->err = e->err == OT_OK ? OT_E_INTERNAL : e->err;
        return;
    }
    enc_u16(e, a->data_len);
    enc_bytes(e, a->data, a->data_len);
}

static void enc_elf(struct se_enc *e, const struct se_elf *f)
{
    enc_aid(e, &f->aid);
    enc_aid(e, &f->sd);
    enc_bytes(e, f->version, sizeof(f->version));
    enc_u8(e, f->lcs);
    if (f->nmodules > SE_MAX_MODULES) {
        e->err = e->err == OT_OK ? OT_E_INTERNAL : e->err;
        return;
    }
    enc_u8(e, f->nmodules);
    for (size_t i = 0; i < f->nmodules; i++) {
        enc_aid(e, &f->modules[i]);
    }
    enc_u32(e, f->size);
    enc_bool(e, f->native);
}

/* The invariants se_state_deserialize checks beyond lengths and counts: an
 * image we write must always open again, so a state breaking them is refused
 * here (the runtime then rolls the command back) instead of being written. */
static bool store_state_ok(const struct se_state *st)
{
    if (st->napps == 0 || st->napps > SE_MAX_APPS || st->nelfs > SE_MAX_ELFS
        || st->napps > st->apps_cap || st->nelfs > st->elfs_cap || st->atr_len > SE_MAX_ATR
        || (unsigned)st->type > (unsigned)SE_TYPE_MICROSD || !st->apps[0].is_sd) {
        return false;
    }
    for (size_t i = 0; i < st->napps; i++) {
        const struct se_app *a = &st->apps[i];
        if (a->aid.len == 0 || a->privs > GP_PRIVS_MASK
            || a->is_sd != ((a->privs & GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN)) != 0)) {
            return false;
        }
    }
    for (size_t i = 0; i < st->nelfs; i++) {
        if (st->elfs[i].aid.len == 0) {
            return false;
        }
    }
    return true;
}

ot_err se_state_serialize(const struct se_state *st, struct ot_buf *out)
{
    ot_err err = OT_OK;
    struct se_enc e = {.b = out, .err = OT_OK};
    uint8_t md[SE_IMAGE_HASH_LEN];

    if (st == NULL || out == NULL) {
        return OT_E_ARG;
    }
    if (!store_state_ok(st)) {
        OT_LOG_ERROR("card state breaks an image invariant: not written");
        return OT_E_INTERNAL;
    }
    ot_buf_reset(out);
    enc_bytes(&e, SE_IMAGE_MAGIC, SE_IMAGE_MAGIC_LEN);
    enc_u16(&e, SE_IMAGE_VERSION);
    enc_u8(&e, (uint8_t)st->type);
    enc_u8(&e, st->card_lcs);
    enc_bool(&e, st->mute);
    enc_lv(&e, st->atr, st->atr_len, SE_MAX_ATR);
    enc_bytes(&e, st->cplc, sizeof(st->cplc));
    enc_bytes(&e, st->kdd, sizeof(st->kdd));
    enc_u8(&e, st->napps);
    for (size_t i = 0; i < st->napps; i++) {
        enc_app(&e, &st->apps[i]);
    }
    enc_u8(&e, st->nelfs);
    for (size_t i = 0; i < st->nelfs; i++) {
        enc_elf(&e, &st->elfs[i]);
    }
    OT_TRY(e.err);
    if (SHA256(out->data, out->len, md) == NULL) {
        err = OT_E_CRYPTO;
        goto out;
    }
    OT_TRY(ot_buf_append(out, md, sizeof(md)));
out:
    if (err != OT_OK) {
        ot_buf_reset(out);
    }
    return err;
}

/* ---------------------------------------------------------------- decoding */

/* Every decoding failure is OT_E_CORRUPT: the image is our own format, so a
 * short read or a bad value means the stored bytes were damaged. */
static ot_err dec_u8(struct buf_rd *r, uint8_t *v)
{
    return buf_rd_u8(r, v) == OT_OK ? OT_OK : OT_E_CORRUPT;
}

static ot_err dec_u16(struct buf_rd *r, uint16_t *v)
{
    return buf_rd_u16be(r, v) == OT_OK ? OT_OK : OT_E_CORRUPT;
}

static ot_err dec_u32(struct buf_rd *r, uint32_t *v)
{
    return buf_rd_u32be(r, v) == OT_OK ? OT_OK : OT_E_CORRUPT;
}

static ot_err dec_copy(struct buf_rd *r, void *dst, size_t n)
{
    return buf_rd_copy(r, dst, n) == OT_OK ? OT_OK : OT_E_CORRUPT;
}

static ot_err dec_bool(struct buf_rd *r, bool *v)
{
    uint8_t b = 0;
    if (dec_u8(r, &b) != OT_OK || b > 1u) {
        return OT_E_CORRUPT;
    }
    *v = b != 0;
    return OT_OK;
}

/* len u8 (<= cap) + bytes into dst. */
static ot_err dec_lv(struct buf_rd *r, uint8_t *len, uint8_t *dst, size_t cap)
{
    ot_err err = OT_OK;
    uint8_t n = 0;

    OT_TRY(dec_u8(r, &n));
    if (n > cap) {
        err = OT_E_CORRUPT;
        goto out;
    }
    OT_TRY(dec_copy(r, dst, n));
    *len = n;
out:
    return err;
}

static ot_err dec_aid(struct buf_rd *r, struct se_aid *a)
{
    return dec_lv(r, &a->len, a->b, SE_AID_MAX);
}

static ot_err dec_sd(struct buf_rd *r, struct se_sd *sd)
{
    ot_err err = OT_OK;

    OT_TRY(dec_u8(r, &sd->scp));
    OT_TRY(dec_u8(r, &sd->scp_i));
    OT_TRY(dec_u8(r, &sd->nkeys));
    if (sd->nkeys > SE_MAX_KEYS) {
        err = OT_E_CORRUPT;
        goto out;
    }
    for (size_t i = 0; i < sd->nkeys; i++) {
        struct se_key *k = &sd->keys[i];
        OT_TRY(dec_u8(r, &k->kvn));
        OT_TRY(dec_u8(r, &k->kid));
        OT_TRY(dec_u8(r, &k->type));
        OT_TRY(dec_lv(r, &k->len, k->val, sizeof(k->val)));
    }
    OT_TRY(dec_u8(r, &sd->nseqs));
    if (sd->nseqs > SE_MAX_SEQS) {
        err = OT_E_CORRUPT;
        goto out;
    }
    for (size_t i = 0; i < sd->nseqs; i++) {
        OT_TRY(dec_u8(r, &sd->seqs[i].kvn));
        OT_TRY(dec_u32(r, &sd->seqs[i].value));
    }
    OT_TRY(dec_lv(r, &sd->iin_len, sd->iin, sizeof(sd->iin)));
    OT_TRY(dec_lv(r, &sd->cin_len, sd->cin, sizeof(sd->cin)));
    OT_TRY(dec_u16(r, &sd->confirm_ctr));
out:
    return err;
}

static ot_err dec_app(struct buf_rd *r, struct se_app *a)
{
    ot_err err = OT_OK;
    uint16_t n = 0;

    OT_TRY(dec_aid(r, &a->aid));
    OT_TRY(dec_aid(r, &a->elf));
    OT_TRY(dec_aid(r, &a->module));
    OT_TRY(dec_aid(r, &a->sd));
    OT_TRY(dec_u32(r, &a->privs));
    OT_TRY(dec_u8(r, &a->lcs));
    OT_TRY(dec_bool(r, &a->is_sd));
    if (a->privs > GP_PRIVS_MASK || a->aid.len == 0) {
        err = OT_E_CORRUPT;
        goto out;
    }
    /* is_sd mirrors the Security Domain privilege (se_priv.h). */
    if (a->is_sd != ((a->privs & GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN)) != 0)) {
        err = OT_E_CORRUPT;
        goto out;
    }
    if (a->is_sd) {
        OT_TRY(dec_sd(r, &a->sd_data));
    }
    OT_TRY(dec_lv(r, &a->params_len, a->params, SE_MAX_PARAMS));
    OT_TRY(dec_u16(r, &n));
    if (n > SE_MAX_APP_DATA || n > r->left) {
        err = OT_E_CORRUPT;
        goto out;
    }
    OT_TRY(se_app_set_data(a, r->p, n));
    OT_TRY(buf_rd_skip(r, n));
out:
    return err;
}

static ot_err dec_elf(struct buf_rd *r, struct se_elf *f)
{
    ot_err err = OT_OK;

    OT_TRY(dec_aid(r, &f->aid));
    OT_TRY(dec_aid(r, &f->sd));
    OT_TRY(dec_copy(r, f->version, sizeof(f->version)));
    OT_TRY(dec_u8(r, &f->lcs));
    OT_TRY(dec_u8(r, &f->nmodules));
    if (f->nmodules > SE_MAX_MODULES || f->aid.len == 0) {
        err = OT_E_CORRUPT;
        goto out;
    }
    for (size_t i = 0; i < f->nmodules; i++) {
        OT_TRY(dec_aid(r, &f->modules[i]));
    }
    OT_TRY(dec_u32(r, &f->size));
    OT_TRY(dec_bool(r, &f->native));
out:
    return err;
}

static ot_err dec_state(struct buf_rd *r, struct se_state *st)
{
    ot_err err = OT_OK;
    uint8_t magic[SE_IMAGE_MAGIC_LEN];
    uint16_t version = 0;
    uint8_t type = 0;

    OT_TRY(dec_copy(r, magic, sizeof(magic)));
    if (memcmp(magic, SE_IMAGE_MAGIC, sizeof(magic)) != 0) {
        OT_LOG_WARN("card image: bad magic");
        err = OT_E_CORRUPT;
        goto out;
    }
    OT_TRY(dec_u16(r, &version));
    if (version != SE_IMAGE_VERSION) {
        OT_LOG_WARN("card image: unsupported version %u", (unsigned)version);
        err = OT_E_CORRUPT;
        goto out;
    }
    OT_TRY(dec_u8(r, &type));
    if (type > (uint8_t)SE_TYPE_MICROSD) {
        err = OT_E_CORRUPT;
        goto out;
    }
    st->type = (enum se_card_type)type;
    OT_TRY(dec_u8(r, &st->card_lcs));
    OT_TRY(dec_bool(r, &st->mute));
    OT_TRY(dec_lv(r, &st->atr_len, st->atr, SE_MAX_ATR));
    OT_TRY(dec_copy(r, st->cplc, sizeof(st->cplc)));
    OT_TRY(dec_copy(r, st->kdd, sizeof(st->kdd)));
    OT_TRY(dec_u8(r, &st->napps));
    /* apps[0] is the ISD: a card without one is not a card. */
    if (st->napps == 0 || st->napps > SE_MAX_APPS) {
        err = OT_E_CORRUPT;
        goto out;
    }
    OT_TRY(se_state_reserve(st, st->napps, 0));
    for (size_t i = 0; i < st->napps; i++) {
        OT_TRY(dec_app(r, &st->apps[i]));
    }
    if (!st->apps[0].is_sd) {
        err = OT_E_CORRUPT;
        goto out;
    }
    OT_TRY(dec_u8(r, &st->nelfs));
    if (st->nelfs > SE_MAX_ELFS) {
        err = OT_E_CORRUPT;
        goto out;
    }
    OT_TRY(se_state_reserve(st, 0, st->nelfs));
    for (size_t i = 0; i < st->nelfs; i++) {
        OT_TRY(dec_elf(r, &st->elfs[i]));
    }
    if (r->left != 0) {
        err = OT_E_CORRUPT;
        goto out;
    }
out:
    return err;
}

ot_err se_state_deserialize(const uint8_t *p, size_t n, struct se_state *st)
{
    ot_err err = OT_OK;
    struct se_state *tmp = NULL;
    struct buf_rd r;
    uint8_t md[SE_IMAGE_HASH_LEN];

    if ((p == NULL && n > 0) || st == NULL) {
        return OT_E_ARG;
    }
    /* An empty file is a damaged image like any other short one. */
    if (n < SE_IMAGE_MAGIC_LEN + 2u + SE_IMAGE_HASH_LEN || n > SE_IMAGE_MAX) {
        OT_LOG_WARN("card image: size %zu out of range", n);
        return OT_E_CORRUPT;
    }
    /* The checksum first: a damaged image is refused before any field is
     * interpreted; the field checks below then guard against images that
     * carry a valid checksum but were not written by us. */
    if (SHA256(p, n - SE_IMAGE_HASH_LEN, md) == NULL) {
        return OT_E_CRYPTO;
    }
    if (!ot_mem_equal_ct(md, p + n - SE_IMAGE_HASH_LEN, SE_IMAGE_HASH_LEN)) {
        OT_LOG_WARN("card image: checksum mismatch");
        return OT_E_CORRUPT;
    }
    /* Decode into a zeroed temporary so *st is untouched on failure. */
    tmp = calloc(1, sizeof(*tmp));
    if (tmp == NULL) {
        return OT_E_NOMEM;
    }
    buf_rd_init(&r, p, n - SE_IMAGE_HASH_LEN);
    err = dec_state(&r, tmp);
    if (err != OT_OK) {
        OT_LOG_WARN("card image: malformed content");
        err = err == OT_E_NOMEM ? err : OT_E_CORRUPT;
        goto out;
    }
    se_state_move(st, tmp);
out:
    se_state_clear(tmp);
    free(tmp);
    return err;
}

/* ---------------------------------------------------------------- storage */

/* Grows a table of entries of size sz from *cap to at least want (new
 * entries zeroed). */
static ot_err table_grow(void **tab, uint8_t *cap, unsigned want, unsigned max, size_t sz)
{
    if (want <= *cap) {
        return OT_OK;
    }
    if (want > max) {
        return OT_E_LIMIT;
    }
    /* Grow by a few entries at a time: cards hold a handful of each. */
    unsigned n = want + 2u > max ? max : want + 2u;
    uint8_t *t = realloc(*tab, (size_t)n * sz);
    if (t == NULL) {
        return OT_E_NOMEM;
    }
    memset(t + (size_t)*cap * sz, 0, (size_t)(n - *cap) * sz);
    *tab = t;
    *cap = (uint8_t)n;
    return OT_OK;
}

ot_err se_state_reserve(struct se_state *st, unsigned napps, unsigned nelfs)
{
    ot_err err = OT_OK;

    if (st == NULL) {
        return OT_E_ARG;
    }
    void *apps = st->apps;
    void *elfs = st->elfs;
    err = table_grow(&apps, &st->apps_cap, napps, SE_MAX_APPS, sizeof(struct se_app));
    st->apps = apps;
    OT_TRY(err);
    err = table_grow(&elfs, &st->elfs_cap, nelfs, SE_MAX_ELFS, sizeof(struct se_elf));
    st->elfs = elfs;
out:
    return err;
}

ot_err se_state_trim(struct se_state *st)
{
    if (st == NULL || st->napps > st->apps_cap || st->nelfs > st->elfs_cap) {
        return OT_E_ARG;
    }
    unsigned na = st->napps + 2u > SE_MAX_APPS ? SE_MAX_APPS : st->napps + 2u;
    unsigned ne = st->nelfs + 2u > SE_MAX_ELFS ? SE_MAX_ELFS : st->nelfs + 2u;
    if (st->apps != NULL && na < st->apps_cap) {
        for (unsigned i = na; i < st->apps_cap; i++) {
            se_app_wipe(&st->apps[i]);
        }
        struct se_app *t = realloc(st->apps, (size_t)na * sizeof *t);
        if (t != NULL) {
            st->apps = t;
            st->apps_cap = (uint8_t)na;
        }
    }
    if (st->elfs != NULL && ne < st->elfs_cap) {
        struct se_elf *t = realloc(st->elfs, (size_t)ne * sizeof *t);
        if (t != NULL) {
            st->elfs = t;
            st->elfs_cap = (uint8_t)ne;
        }
    }
    return OT_OK;
}

void se_app_wipe(struct se_app *a)
{
    if (a == NULL) {
        return;
    }
    if (a->data != NULL) {
        ot_mem_wipe(a->data, a->data_cap);
        free(a->data);
    }
    ot_mem_wipe(a, sizeof *a);
}

ot_err se_app_set_data(struct se_app *a, const uint8_t *p, size_t n)
{
    if (a == NULL || (p == NULL && n > 0)) {
        return OT_E_ARG;
    }
    if (n > SE_MAX_APP_DATA) {
        return OT_E_LIMIT;
    }
    uint8_t *d = NULL;
    if (n > 0) {
        d = malloc(n);
        if (d == NULL) {
            return OT_E_NOMEM;
        }
        memcpy(d, p, n); /* p may point into a->data */
    }
    if (a->data != NULL) {
        ot_mem_wipe(a->data, a->data_cap);
        free(a->data);
    }
    a->data = d;
    a->data_len = (uint16_t)n;
    a->data_cap = (uint16_t)n;
    return OT_OK;
}

void se_state_clear(struct se_state *st)
{
    if (st == NULL) {
        return;
    }
    if (st->apps != NULL) {
        for (unsigned i = 0; i < st->apps_cap; i++) {
            se_app_wipe(&st->apps[i]);
        }
        free(st->apps);
    }
    free(st->elfs);
    ot_mem_wipe(st, sizeof *st);
}

void se_state_move(struct se_state *dst, struct se_state *src)
{
    if (dst == NULL || src == NULL || dst == src) {
        return;
    }
    se_state_clear(dst);
    memcpy(dst, src, sizeof *dst);
    memset(src, 0, sizeof *src);
}

/* ---------------------------------------------------------------- files */

static ot_err store_step(const struct se_store_ops *ops, unsigned step)
{
    if (ops == NULL || ops->before_step == NULL) {
        return OT_OK;
    }
    return ops->before_step(ops->ctx, step);
}

static ot_err store_write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return OT_E_DB;
        }
        p += (size_t)w;
        n -= (size_t)w;
    }
    return OT_OK;
}

/* fsync of the directory holding path, so the rename itself is durable. */
static ot_err store_sync_dir(const char *path)
{
    ot_err err = OT_OK;
    char *dir = NULL;
    const char *slash = strrchr(path, '/');
    int fd = -1;

    if (slash == NULL) {
        dir = strdup(".");
    } else if (slash == path) {
        dir = strdup("/");
    } else {
        dir = strndup(path, (size_t)(slash - path));
    }
    if (dir == NULL) {
        return OT_E_NOMEM;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        OT_LOG_WARN("fsync of directory %s: %s", dir, strerror(errno));
        err = OT_E_DB;
    }
    if (fd >= 0) {
        close(fd);
    }
    free(dir);
    return err;
}

/* Steps (before_step numbering): 0 open path.tmp, 1 write, 2 fsync, 3 rename
 * over path, 4 fsync of the directory. A failure in steps 0-3 leaves the old
 * image as it was (the temporary is removed; one left behind by a real power
 * cut is deleted by the next write and never read). A failure at step 4
 * happens after the rename: the new image is in place but its durability is
 * unknown, and OT_E_DB is returned all the same. */
ot_err se_store_write(const char *path, const uint8_t *p, size_t n, const struct se_store_ops *ops)
{
    ot_err err = OT_OK;
    char *tmp = NULL;
    size_t plen;
    int fd = -1;
    bool renamed = false;

    if (path == NULL || (p == NULL && n > 0)) {
        return OT_E_ARG;
    }
    plen = strlen(path);
    tmp = malloc(plen + 5u);
    if (tmp == NULL) {
        return OT_E_NOMEM;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5u);

    OT_TRY(store_step(ops, SE_STEP_OPEN));
    /* A temporary left by a power cut is removed, never reused: it may have
     * another mode or be a link. 0600: the image holds the card's keys. */
    if (unlink(tmp) != 0 && errno != ENOENT) {
        OT_LOG_WARN("unlink %s: %s", tmp, strerror(errno));
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        OT_LOG_WARN("open %s: %s", tmp, strerror(errno));
        err = OT_E_DB;
        goto out;
    }
    OT_TRY(store_step(ops, SE_STEP_WRITE));
    err = store_write_all(fd, p, n);
    if (err != OT_OK) {
        OT_LOG_WARN("write %s: %s", tmp, strerror(errno));
        goto out;
    }
    OT_TRY(store_step(ops, SE_STEP_FSYNC));
    if (fsync(fd) != 0) {
        OT_LOG_WARN("fsync %s: %s", tmp, strerror(errno));
        err = OT_E_DB;
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        err = OT_E_DB;
        goto out;
    }
    fd = -1;
    OT_TRY(store_step(ops, SE_STEP_RENAME));
    if (rename(tmp, path) != 0) {
        OT_LOG_WARN("rename %s: %s", tmp, strerror(errno));
        err = OT_E_DB;
        goto out;
    }
    renamed = true;
    OT_TRY(store_step(ops, SE_STEP_DIRSYNC));
    OT_TRY(store_sync_dir(path));
out:
    if (fd >= 0) {
        close(fd);
    }
    if (err != OT_OK && !renamed) {
        (void)unlink(tmp);
    }
    free(tmp);
    return err;
}

ot_err se_store_read(const char *path, struct ot_buf *out)
{
    ot_err err = OT_OK;
    int fd = -1;
    struct stat sb;
    uint8_t chunk[4096];

    if (path == NULL || out == NULL) {
        return OT_E_ARG;
    }
    ot_buf_reset(out);
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused
     * below); on a regular file the flag changes nothing. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        err = errno == ENOENT ? OT_E_NOT_FOUND : OT_E_DB;
        OT_LOG_DEBUG("open %s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &sb) != 0) {
        err = OT_E_DB;
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        OT_LOG_WARN("card image %s is not a regular file", path);
        err = OT_E_FORMAT;
        goto out;
    }
    if ((uint64_t)sb.st_size > SE_IMAGE_MAX) {
        OT_LOG_WARN("card image %s: %lld bytes, more than any image", path, (long long)sb.st_size);
        err = OT_E_CORRUPT;
        goto out;
    }
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof(chunk));
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            err = OT_E_DB;
            goto out;
        }
        if (got == 0) {
            break;
        }
        /* The file may grow while read: the cap holds regardless. */
        if (out->len + (size_t)got > SE_IMAGE_MAX) {
            err = OT_E_CORRUPT;
            goto out;
        }
        OT_TRY(ot_buf_append(out, chunk, (size_t)got));
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    ot_mem_wipe(chunk, sizeof(chunk));
    if (err != OT_OK) {
        ot_buf_reset(out);
    }
    return err;
}

/* ---------------------------------------------------------------- lock */

ot_err se_image_lock(const char *image_path, int *fd_out, long *holder)
{
    char *lp = NULL;
    size_t pl;
    struct flock fl;
    int fd = -1;
    ot_err err = OT_OK;

    if (fd_out != NULL) {
        *fd_out = -1;
    }
    if (holder != NULL) {
        *holder = 0;
    }
    if (image_path == NULL || fd_out == NULL) {
        return OT_E_ARG;
    }
    pl = strlen(image_path);
    lp = malloc(pl + 6u);
    if (lp == NULL) {
        return OT_E_NOMEM;
    }
    memcpy(lp, image_path, pl);
    memcpy(lp + pl, ".lock", 6u);
    /* The image itself is replaced by rename on every commit, so the lock
     * lives on a file of its own that stays. */
    fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        OT_LOG_ERROR("cannot open the lock file %s: %s", lp, strerror(errno));
        OT_FAIL(OT_E_IO);
    }
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        if (errno != EACCES && errno != EAGAIN) {
            OT_LOG_ERROR("cannot lock %s: %s", lp, strerror(errno));
            OT_FAIL(OT_E_IO);
        }
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (holder != NULL && fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
            *holder = (long)fl.l_pid;
        }
        OT_FAIL(OT_E_CONFLICT);
    }
    *fd_out = fd;
    fd = -1;
out:
    if (fd >= 0) {
        close(fd);
    }
    free(lp);
    return err;
}

/* ---------------------------------------------------------------- commit */

ot_err se_commit(struct se_card *c)
{
    ot_err err = OT_OK;
    struct ot_buf img;

    if (c == NULL) {
        return OT_E_ARG;
    }
    ot_buf_init(&img, SE_IMAGE_MAX);
    if (!c->dirty && c->committed.len > 0) {
        goto out;
    }
    OT_TRY(se_state_serialize(&c->st, &img));
    /* A command that changed nothing visible (same bytes) costs no write. */
    if (c->committed.len == img.len && memcmp(c->committed.data, img.data, img.len) == 0) {
        c->dirty = false;
        goto out;
    }
    if (c->image_path != NULL) {
        OT_TRY(se_store_write(c->image_path, img.data, img.len, &c->store_ops));
    }
    /* Swap the buffers: committed takes the new image, img the old one. */
    {
        struct ot_buf old = c->committed;
        c->committed = img;
        img = old;
    }
    c->dirty = false;
out:
    ot_buf_free(&img);
    return err;
}

ot_err se_rollback(struct se_card *c)
{
    ot_err err = OT_OK;

    if (c == NULL) {
        return OT_E_ARG;
    }
    if (c->committed.len == 0) {
        return OT_E_STATE;
    }
    OT_TRY(se_state_deserialize(c->committed.data, c->committed.len, &c->st));
    c->dirty = false;
out:
    return err;
}
