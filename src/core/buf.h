/* Byte buffers: a bounds-checked read cursor, a writer over a caller buffer,
 * a growable buffer with a hard cap, and memory helpers for secrets.
 *
 * Every read checks what remains before touching the input (STYLE.md 6).
 * None of these objects is thread-safe; each is owned by one caller.
 */
#ifndef OT_CORE_BUF_H
#define OT_CORE_BUF_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Read cursor over borrowed input. */
struct buf_rd {
    const uint8_t *p;
    size_t left;
};

void buf_rd_init(struct buf_rd *r, const uint8_t *p, size_t n);
ot_err buf_rd_u8(struct buf_rd *r, uint8_t *out); /* left == 0: OT_E_TRUNCATED */
ot_err buf_rd_u16be(struct buf_rd *r, uint16_t *out);
ot_err buf_rd_u24be(struct buf_rd *r, uint32_t *out);
ot_err buf_rd_u32be(struct buf_rd *r, uint32_t *out);
/* *v points into the input; n > left: OT_E_TRUNCATED and the cursor is unchanged. */
ot_err buf_rd_take(struct buf_rd *r, size_t n, const uint8_t **v);
ot_err buf_rd_copy(struct buf_rd *r, void *dst, size_t n);
ot_err buf_rd_skip(struct buf_rd *r, size_t n);

/* Writer over a caller-owned buffer. Errors are sticky: after an overflow every
 * further write is dropped, w->err is OT_E_BUF_SMALL and w->need keeps counting
 * the bytes the whole output would need. */
struct buf_wr {
    uint8_t *p;
    size_t cap;
    size_t len;
    size_t need;
    ot_err err;
};

void buf_wr_init(struct buf_wr *w, uint8_t *p, size_t cap);
void buf_wr_u8(struct buf_wr *w, uint8_t v);
void buf_wr_u16be(struct buf_wr *w, uint16_t v);
void buf_wr_bytes(struct buf_wr *w, const void *src, size_t n);
/* Finish: *len = bytes written (or needed on OT_E_BUF_SMALL); returns w->err. */
ot_err buf_wr_finish(const struct buf_wr *w, size_t *len);

/* Growable buffer that never exceeds max bytes (OT_E_LIMIT beyond). */
struct ot_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max;
};

#define OT_BUF_DEFAULT_MAX ((size_t)16 * 1024 * 1024)

void ot_buf_init(struct ot_buf *b, size_t max); /* max 0: OT_BUF_DEFAULT_MAX */
ot_err ot_buf_reserve(struct ot_buf *b, size_t extra);
ot_err ot_buf_append(struct ot_buf *b, const void *src, size_t n);
ot_err ot_buf_append_u8(struct ot_buf *b, uint8_t v);
void ot_buf_reset(struct ot_buf *b); /* len = 0, keeps the allocation (wiped) */
void ot_buf_free(struct ot_buf *b);  /* wipes and frees; the struct can be reused after init */

/* Overwrite n bytes in a way the compiler may not optimise away. */
void ot_mem_wipe(void *p, size_t n);
/* Constant-time equality of two n-byte regions. */
bool ot_mem_equal_ct(const void *a, const void *b, size_t n);
/* 32-bit FNV-1a of a NUL-terminated string: for hash tables of short keys
 * (not for anything an attacker must not steer: it is not keyed). */
uint32_t ot_str_hash32(const char *s);

/* Big-endian stores and loads on raw memory. */
void ot_put_u16be(uint8_t *p, uint16_t v);
void ot_put_u32be(uint8_t *p, uint32_t v);
uint16_t ot_get_u16be(const uint8_t *p);
uint32_t ot_get_u32be(const uint8_t *p);

#endif
