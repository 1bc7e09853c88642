#include "core/tlv.h"

#include <string.h>

/* ISO/IEC 7816-4 5.2.2.1 (BER, X.690 8.1.2): a first tag byte with b5..b1 all
 * set announces subsequent bytes; in each subsequent byte b8 = 1 means one
 * more follows. */
#define TLV_TAG_MORE     0x1Fu
#define TLV_TAG_NEXT     0x80u
#define TLV_CONSTRUCTED  0x20u
#define TLV_LEN_LONG     0x80u /* b8 of the first length byte: long form */
#define TLV_RESERVED_LEN 4u    /* tlv_open's placeholder: 83 xx xx xx */

/* Reads the tag at r. Cursor handling is left to the caller (tlv_next works on
 * a copy). */
static ot_err tlv_read_tag(struct buf_rd *r, uint32_t *tag)
{
    uint8_t b;
    if (buf_rd_u8(r, &b) != OT_OK) {
        return OT_E_TLV;
    }
    uint32_t t = b;
    if ((b & TLV_TAG_MORE) == TLV_TAG_MORE) {
        size_t n = 1;
        do {
            if (n == TLV_MAX_TAG_BYTES) {
                return OT_E_TLV; /* would need a fourth tag byte */
            }
            if (buf_rd_u8(r, &b) != OT_OK) {
                return OT_E_TLV;
            }
            t = (t << 8) | b;
            n++;
        } while (b & TLV_TAG_NEXT);
    }
    *tag = t;
    return OT_OK;
}

/* Definite lengths only (STYLE.md 6): 00-7F, or 81-83 followed by 1-3 bytes.
 * 80 is BER's indefinite form, which GlobalPlatform data never uses. */
static ot_err tlv_read_len(struct buf_rd *r, size_t *len)
{
    uint8_t b;
    if (buf_rd_u8(r, &b) != OT_OK) {
        return OT_E_TLV;
    }
    if (!(b & TLV_LEN_LONG)) {
        *len = b;
        return OT_OK;
    }
    size_t nbytes = b & 0x7Fu;
    if (nbytes == 0 || nbytes > TLV_MAX_LEN_BYTES - 1) {
        return OT_E_TLV;
    }
    size_t v = 0;
    for (size_t i = 0; i < nbytes; i++) {
        if (buf_rd_u8(r, &b) != OT_OK) {
            return OT_E_TLV;
        }
        v = (v << 8) | b;
    }
    *len = v;
    return OT_OK;
}

ot_err tlv_next(struct buf_rd *rd, struct tlv *out)
{
    if (!rd || !out) {
        return OT_E_ARG;
    }
    if (rd->left == 0) {
        return OT_E_TRUNCATED;
    }
    struct buf_rd r = *rd;
    uint32_t tag = 0;
    size_t len = 0;
    const uint8_t *val = NULL;
    ot_err err = tlv_read_tag(&r, &tag);
    if (err == OT_OK) {
        err = tlv_read_len(&r, &len);
    }
    if (err == OT_OK && buf_rd_take(&r, len, &val) != OT_OK) {
        err = OT_E_TLV; /* length larger than what remains */
    }
    if (err != OT_OK) {
        return err;
    }
    out->tag = tag;
    out->len = len;
    out->val = val;
    out->hdr_len = rd->left - r.left - len;
    out->constructed = (rd->p[0] & TLV_CONSTRUCTED) != 0;
    *rd = r;
    return OT_OK;
}

ot_err tlv_parse_one(const uint8_t *p, size_t n, struct tlv *out)
{
    struct buf_rd r;
    if ((!p && n > 0) || !out) {
        return OT_E_ARG;
    }
    buf_rd_init(&r, p, n);
    ot_err err = tlv_next(&r, out);
    if (err == OT_OK && r.left > 0) {
        err = OT_E_TRAILING;
    }
    return err;
}

ot_err tlv_find(const uint8_t *p, size_t n, uint32_t tag, struct tlv *out)
{
    struct buf_rd r;
    struct tlv t;
    if ((!p && n > 0) || !out) {
        return OT_E_ARG;
    }
    buf_rd_init(&r, p, n);
    while (r.left > 0) {
        ot_err err = tlv_next(&r, &t);
        if (err != OT_OK) {
            return err;
        }
        if (t.tag == tag) {
            *out = t;
            return OT_OK;
        }
    }
    return OT_E_NOT_FOUND;
}

ot_err tlv_find_path(const uint8_t *p, size_t n, const uint32_t *path, size_t depth,
                     struct tlv *out)
{
    struct tlv t;
    if ((!p && n > 0) || !path || depth == 0 || !out) {
        return OT_E_ARG;
    }
    for (size_t i = 0; i < depth; i++) {
        ot_err err = tlv_find(p, n, path[i], &t);
        if (err != OT_OK) {
            return err;
        }
        if (i + 1 < depth && !t.constructed) {
            return OT_E_NOT_FOUND;
        }
        p = t.val;
        n = t.len;
    }
    *out = t;
    return OT_OK;
}

/* Recursion is bounded by TLV_MAX_DEPTH, so the stack use is too. */
static ot_err tlv_walk_level(const uint8_t *p, size_t n, unsigned level)
{
    struct buf_rd r;
    struct tlv t;
    if (level > TLV_MAX_DEPTH) {
        return OT_E_TLV;
    }
    buf_rd_init(&r, p, n);
    while (r.left > 0) {
        ot_err err = tlv_next(&r, &t);
        if (err != OT_OK) {
            return err;
        }
        if (t.constructed) {
            err = tlv_walk_level(t.val, t.len, level + 1);
            if (err != OT_OK) {
                return err;
            }
        }
    }
    return OT_OK;
}

ot_err tlv_walk_all(const uint8_t *p, size_t n)
{
    if (!p && n > 0) {
        return OT_E_ARG;
    }
    return tlv_walk_level(p, n, 1);
}

size_t tlv_tag_size(uint32_t tag)
{
    uint8_t b0, b1, b2;
    if (tag <= 0xFFu) {
        return (tag & TLV_TAG_MORE) == TLV_TAG_MORE ? 0 : 1;
    }
    if (tag <= 0xFFFFu) {
        b0 = (uint8_t)(tag >> 8);
        b1 = (uint8_t)tag;
        return (b0 & TLV_TAG_MORE) == TLV_TAG_MORE && !(b1 & TLV_TAG_NEXT) ? 2 : 0;
    }
    if (tag <= 0xFFFFFFu) {
        b0 = (uint8_t)(tag >> 16);
        b1 = (uint8_t)(tag >> 8);
        b2 = (uint8_t)tag;
        return (b0 & TLV_TAG_MORE) == TLV_TAG_MORE && (b1 & TLV_TAG_NEXT) && !(b2 & TLV_TAG_NEXT)
                   ? 3
                   : 0;
    }
    return 0;
}

size_t tlv_len_size(size_t len)
{
    if (len < 0x80u) {
        return 1;
    }
    if (len <= 0xFFu) {
        return 2;
    }
    if (len <= 0xFFFFu) {
        return 3;
    }
    if (len <= TLV_MAX_LEN) {
        return 4;
    }
    return 0;
}

size_t tlv_hdr_size(uint32_t tag, size_t len)
{
    size_t t = tlv_tag_size(tag);
    size_t l = tlv_len_size(len);
    return t && l ? t + l : 0;
}

/* Argument errors replace a pending OT_E_BUF_SMALL: retrying with a bigger
 * buffer would not help the caller. */
static void tlv_wr_fail(struct buf_wr *w, ot_err e)
{
    if (w->err == OT_OK || w->err == OT_E_BUF_SMALL) {
        w->err = e;
    }
}

/* Encodes len minimally into b (room for TLV_MAX_LEN_BYTES); returns the size. */
static size_t tlv_enc_len(uint8_t *b, size_t len)
{
    size_t n = tlv_len_size(len);
    if (n == 1) {
        b[0] = (uint8_t)len;
        return 1;
    }
    b[0] = (uint8_t)(TLV_LEN_LONG | (n - 1));
    for (size_t i = 1; i < n; i++) {
        b[i] = (uint8_t)(len >> (8 * (n - 1 - i)));
    }
    return n;
}

void tlv_put_tag(struct buf_wr *w, uint32_t tag)
{
    uint8_t b[TLV_MAX_TAG_BYTES];
    size_t n = tlv_tag_size(tag);
    if (n == 0) {
        tlv_wr_fail(w, OT_E_ARG);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        b[i] = (uint8_t)(tag >> (8 * (n - 1 - i)));
    }
    buf_wr_bytes(w, b, n);
}

void tlv_put_len(struct buf_wr *w, size_t len)
{
    uint8_t b[TLV_MAX_LEN_BYTES];
    if (len > TLV_MAX_LEN) {
        tlv_wr_fail(w, OT_E_RANGE);
        return;
    }
    buf_wr_bytes(w, b, tlv_enc_len(b, len));
}

void tlv_put(struct buf_wr *w, uint32_t tag, const uint8_t *val, size_t len)
{
    if (!val && len > 0) {
        tlv_wr_fail(w, OT_E_ARG);
        return;
    }
    tlv_put_tag(w, tag);
    tlv_put_len(w, len);
    buf_wr_bytes(w, val, len);
}

/* Marks are positions in w->need, the size of the output so far whether or not
 * it fit, so that closing after an overflow still knows the content length. */
void tlv_open(struct buf_wr *w, uint32_t tag, size_t *mark)
{
    static const uint8_t reserved[TLV_RESERVED_LEN] = {TLV_LEN_LONG | 3u, 0, 0, 0};
    tlv_put_tag(w, tag);
    *mark = w->need;
    buf_wr_bytes(w, reserved, sizeof reserved);
}

void tlv_close(struct buf_wr *w, size_t mark)
{
    uint8_t b[TLV_MAX_LEN_BYTES];
    if (mark > w->need || w->need - mark < TLV_RESERVED_LEN) {
        tlv_wr_fail(w, OT_E_ARG);
        return;
    }
    size_t content = w->need - mark - TLV_RESERVED_LEN;
    if (content > TLV_MAX_LEN) {
        tlv_wr_fail(w, OT_E_RANGE);
        return;
    }
    if (w->err != OT_OK) {
        return; /* keep need at its reserved size: see tlv.h */
    }
    size_t n = tlv_enc_len(b, content);
    memcpy(w->p + mark, b, n);
    if (n < TLV_RESERVED_LEN) {
        memmove(w->p + mark + n, w->p + mark + TLV_RESERVED_LEN, content);
        w->len -= TLV_RESERVED_LEN - n;
        w->need = w->len;
    }
}
