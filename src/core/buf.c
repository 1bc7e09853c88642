/* explicit_bzero (glibc >= 2.25, musl, the BSDs) is outside strict C11. */
#define _DEFAULT_SOURCE
#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

void buf_rd_init(struct buf_rd *r, const uint8_t *p, size_t n)
{
    r->p = p;
    r->left = p ? n : 0;
}

ot_err buf_rd_u8(struct buf_rd *r, uint8_t *out)
{
    if (r->left < 1) {
        return OT_E_TRUNCATED;
    }
    *out = r->p[0];
    r->p++;
    r->left--;
    return OT_OK;
}

ot_err buf_rd_u16be(struct buf_rd *r, uint16_t *out)
{
    if (r->left < 2) {
        return OT_E_TRUNCATED;
    }
    *out = ot_get_u16be(r->p);
    r->p += 2;
    r->left -= 2;
    return OT_OK;
}

ot_err buf_rd_u24be(struct buf_rd *r, uint32_t *out)
{
    if (r->left < 3) {
        return OT_E_TRUNCATED;
    }
    *out = ((uint32_t)r->p[0] << 16) | ((uint32_t)r->p[1] << 8) | r->p[2];
    r->p += 3;
    r->left -= 3;
    return OT_OK;
}

ot_err buf_rd_u32be(struct buf_rd *r, uint32_t *out)
{
    if (r->left < 4) {
        return OT_E_TRUNCATED;
    }
    *out = ot_get_u32be(r->p);
    r->p += 4;
    r->left -= 4;
    return OT_OK;
}

ot_err buf_rd_take(struct buf_rd *r, size_t n, const uint8_t **v)
{
    if (n > r->left) {
        return OT_E_TRUNCATED;
    }
    *v = r->p;
    r->p += n;
    r->left -= n;
    return OT_OK;
}

ot_err buf_rd_copy(struct buf_rd *r, void *dst, size_t n)
{
    const uint8_t *v = NULL;
    ot_err err = buf_rd_take(r, n, &v);
    if (err == OT_OK && n > 0) {
        memcpy(dst, v, n);
    }
    return err;
}

ot_err buf_rd_skip(struct buf_rd *r, size_t n)
{
    const uint8_t *v = NULL;
    return buf_rd_take(r, n, &v);
}

void buf_wr_init(struct buf_wr *w, uint8_t *p, size_t cap)
{
    w->p = p;
    w->cap = p ? cap : 0;
    w->len = 0;
    w->need = 0;
    w->err = OT_OK;
}

void buf_wr_bytes(struct buf_wr *w, const void *src, size_t n)
{
    w->need += n;
    if (w->err != OT_OK) {
        return;
    }
    if (n > w->cap - w->len) {
        w->err = OT_E_BUF_SMALL;
        return;
    }
    if (n > 0) {
        memmove(w->p + w->len, src, n);
    }
    w->len += n;
}

void buf_wr_u8(struct buf_wr *w, uint8_t v)
{
    buf_wr_bytes(w, &v, 1);
}

void buf_wr_u16be(struct buf_wr *w, uint16_t v)
{
    uint8_t b[2];
    ot_put_u16be(b, v);
    buf_wr_bytes(w, b, 2);
}

ot_err buf_wr_finish(const struct buf_wr *w, size_t *len)
{
    if (len) {
        *len = w->err == OT_OK ? w->len : w->need;
    }
    return w->err;
}

void ot_buf_init(struct ot_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : OT_BUF_DEFAULT_MAX;
}

ot_err ot_buf_reserve(struct ot_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra) {
        return OT_E_LIMIT;
    }
    size_t want = b->len + extra;
    if (want <= b->cap) {
        return OT_OK;
    }
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < want) {
        ncap = ncap > b->max / 2 ? b->max : ncap * 2;
    }
    /* Fresh allocation + copy + wipe rather than realloc: the old block may hold secrets. */
    uint8_t *n = malloc(ncap);
    if (!n) {
        return OT_E_NOMEM;
    }
    if (b->len > 0) {
        memcpy(n, b->data, b->len);
    }
    if (b->data) {
        ot_mem_wipe(b->data, b->cap);
        free(b->data);
    }
    b->data = n;
    b->cap = ncap;
    return OT_OK;
}

ot_err ot_buf_append(struct ot_buf *b, const void *src, size_t n)
{
    ot_err err = ot_buf_reserve(b, n);
    if (err != OT_OK) {
        return err;
    }
    if (n > 0) {
        memcpy(b->data + b->len, src, n);
    }
    b->len += n;
    return OT_OK;
}

ot_err ot_buf_append_u8(struct ot_buf *b, uint8_t v)
{
    return ot_buf_append(b, &v, 1);
}

void ot_buf_reset(struct ot_buf *b)
{
    if (b->data) {
        ot_mem_wipe(b->data, b->len);
    }
    b->len = 0;
}

void ot_buf_free(struct ot_buf *b)
{
    if (b->data) {
        ot_mem_wipe(b->data, b->cap);
        free(b->data);
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* explicit_bzero is memset-fast and never optimised away; a byte-wise volatile
 * loop costs a millisecond per card image on every rollback. */
void ot_mem_wipe(void *p, size_t n)
{
    if (p && n > 0) {
        explicit_bzero(p, n);
    }
}

bool ot_mem_equal_ct(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a;
    const uint8_t *y = b;
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc |= (uint8_t)(x[i] ^ y[i]);
    }
    return acc == 0;
}

uint32_t ot_str_hash32(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a offset basis and prime */

    for (; *s != '\0'; s++) {
        h ^= (uint8_t)*s;
        h *= 16777619u;
    }
    return h;
}

void ot_put_u16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void ot_put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint16_t ot_get_u16be(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

uint32_t ot_get_u32be(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
