/* Admin-session scripts (mno_script.h, docs/ota.md §5.3). */
#include "mno/mno_script.h"

#include "core/apdu.h"
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MNO_TAG_CMD   0xAEu
#define MNO_TAG_RSP   0xAFu
#define MNO_TAG_MODE  0x82u
#define MNO_TAG_CAPDU 0x22u
#define MNO_TAG_GUARD 0xC1u
#define MNO_TAG_COUNT 0x80u
#define MNO_TAG_RAPDU 0x23u

static ot_err mno_bad(struct mno_script_err *err, size_t off, const char *fmt, ...) OT_PRINTF(3, 4);

static ot_err mno_bad(struct mno_script_err *err, size_t off, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL) {
        err->offset = off;
        va_start(ap, fmt);
        (void)vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return OT_E_FORMAT;
}

/* One inner TLV at p[*off]: tag (one byte), minimal definite length, value
 * inside [.., end). */
static ot_err mno_tlv(const uint8_t *p, size_t end, size_t *off, uint8_t *tag, const uint8_t **v,
                      size_t *vn, struct mno_script_err *err)
{
    size_t o = *off;
    size_t len;

    *tag = p[o++];
    if (o >= end) {
        return mno_bad(err, o, "length of tag %02X missing", *tag);
    }
    if (p[o] < 0x80u) {
        len = p[o++];
    } else if (p[o] == 0x81u) {
        if (end - o < 2) {
            return mno_bad(err, o, "length of tag %02X truncated", *tag);
        }
        len = p[o + 1];
        if (len < 0x80u) {
            return mno_bad(err, o, "length of tag %02X not in its shortest form", *tag);
        }
        o += 2;
    } else if (p[o] == 0x82u) {
        if (end - o < 3) {
            return mno_bad(err, o, "length of tag %02X truncated", *tag);
        }
        len = ((size_t)p[o + 1] << 8) | p[o + 2];
        if (len < 0x100u) {
            return mno_bad(err, o, "length of tag %02X not in its shortest form", *tag);
        }
        o += 3;
    } else {
        return mno_bad(err, o, "length byte %02X of tag %02X not allowed", p[o], *tag);
    }
    if (len > end - o) {
        return mno_bad(err, *off + 1, "value of tag %02X (%zu bytes) runs past the script", *tag,
                       len);
    }
    *v = p + o;
    *vn = len;
    *off = o + len;
    return OT_OK;
}

/* The outer template: tag 80 ... 00 00, nothing after. *end = offset of the
 * end-of-contents. */
static ot_err mno_outer(const uint8_t *p, size_t n, uint8_t want, size_t *end,
                        struct mno_script_err *err)
{
    if (n < 4) {
        return mno_bad(err, 0, "script shorter than %02X 80 00 00", want);
    }
    if (p[0] != want) {
        return mno_bad(err, 0, "outer tag %02X, expected %02X", p[0], want);
    }
    if (p[1] != 0x80u) {
        return mno_bad(err, 1, "outer length must be indefinite (80)");
    }
    if (p[n - 2] != 0 || p[n - 1] != 0) {
        return mno_bad(err, n - 2, "script does not end with end-of-contents 00 00");
    }
    *end = n - 2;
    return OT_OK;
}

static ot_err mno_push(struct mno_script *s, size_t *cap, const uint8_t *v, size_t vn)
{
    if (s->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct mno_item *it = realloc(s->items, ncap * sizeof(*it));
        if (it == NULL) {
            return OT_E_NOMEM;
        }
        s->items = it;
        *cap = ncap;
    }
    s->items[s->n].p = v;
    s->items[s->n].n = vn;
    s->items[s->n].guard = NULL;
    s->items[s->n].guard_n = 0;
    s->n++;
    return OT_OK;
}

void mno_script_free(struct mno_script *s)
{
    if (s != NULL) {
        free(s->items);
        memset(s, 0, sizeof(*s));
    }
}

ot_err mno_cmd_parse(const uint8_t *p, size_t n, struct mno_script *out, struct mno_script_err *err)
{
    size_t end;
    size_t off = 2;
    size_t cap = 0;
    ot_err e;

    memset(out, 0, sizeof(*out));
    if (p == NULL) {
        return mno_bad(err, 0, "empty script");
    }
    e = mno_outer(p, n, MNO_TAG_CMD, &end, err);
    while (e == OT_OK && off < end) {
        size_t at = off;
        uint8_t tag;
        const uint8_t *v = NULL;
        size_t vn = 0;
        struct apdu a;

        e = mno_tlv(p, end, &off, &tag, &v, &vn, err);
        if (e != OT_OK) {
            break;
        }
        if (tag == MNO_TAG_MODE) {
            if (at != 2) {
                e = mno_bad(err, at, "error action 82 must be the first TLV");
            } else if (vn != 1 || v[0] > 1) {
                e = mno_bad(err, at, "error action must be 82 01 00 or 82 01 01");
            } else {
                out->cont = v[0] == 1;
            }
        } else if (tag == MNO_TAG_CAPDU) {
            if (vn < MNO_CAPDU_MIN || vn > MNO_CAPDU_MAX) {
                e = mno_bad(err, at, "C-APDU of %zu bytes (4..65544)", vn);
            } else if (out->n >= MNO_SCRIPT_MAX_APDUS) {
                e = mno_bad(err, at, "more than %u C-APDUs", MNO_SCRIPT_MAX_APDUS);
            } else if (apdu_parse(v, vn, &a) != OT_OK) {
                e = mno_bad(err, at, "C-APDU %zu is not a well-formed command APDU", out->n);
            } else {
                e = mno_push(out, &cap, v, vn);
            }
        } else if (tag == MNO_TAG_GUARD) {
            if (out->n == 0 || out->items[out->n - 1].guard != NULL) {
                e = mno_bad(err, at, "guard C1 must follow a C-APDU (one per C-APDU)");
            } else if (vn < MNO_RAPDU_MIN || vn > MNO_RAPDU_MAX) {
                e = mno_bad(err, at, "guard of %zu bytes (2..65538)", vn);
            } else {
                out->items[out->n - 1].guard = v;
                out->items[out->n - 1].guard_n = vn;
            }
        } else {
            e = mno_bad(err, at, "tag %02X not allowed in a command script", tag);
        }
    }
    if (e == OT_OK && out->n == 0) {
        e = mno_bad(err, end, "command script without a C-APDU");
    }
    if (e != OT_OK) {
        mno_script_free(out);
    }
    return e;
}

ot_err mno_rsp_parse(const uint8_t *p, size_t n, size_t sent, struct mno_script *out,
                     struct mno_script_err *err)
{
    size_t end;
    size_t off = 2;
    size_t cap = 0;
    size_t count = 0;
    bool have_count = false;
    ot_err e;

    memset(out, 0, sizeof(*out));
    if (p == NULL) {
        return mno_bad(err, 0, "empty script");
    }
    e = mno_outer(p, n, MNO_TAG_RSP, &end, err);
    while (e == OT_OK && off < end) {
        size_t at = off;
        uint8_t tag;
        const uint8_t *v = NULL;
        size_t vn = 0;

        e = mno_tlv(p, end, &off, &tag, &v, &vn, err);
        if (e != OT_OK) {
            break;
        }
        if (tag == MNO_TAG_COUNT) {
            if (at != 2) {
                e = mno_bad(err, at, "count 80 must be the first TLV");
            } else if (vn == 0 || vn > 2 || (vn == 2 && v[0] == 0)) {
                e = mno_bad(err, at, "count must be 1 or 2 bytes, shortest form");
            } else {
                count = vn == 1 ? v[0] : ((size_t)v[0] << 8) | v[1];
                have_count = true;
            }
        } else if (tag == MNO_TAG_RAPDU) {
            if (vn < MNO_RAPDU_MIN || vn > MNO_RAPDU_MAX) {
                e = mno_bad(err, at, "R-APDU of %zu bytes (2..65538)", vn);
            } else if (out->n >= sent) {
                e = mno_bad(err, at, "more R-APDUs than the %zu C-APDUs sent", sent);
            } else {
                e = mno_push(out, &cap, v, vn);
            }
        } else {
            e = mno_bad(err, at, "tag %02X not allowed in a response script", tag);
        }
    }
    if (e == OT_OK) {
        if (!have_count) {
            count = out->n;
        }
        if (count == 0 || count > sent) {
            e = mno_bad(err, 2, "count %zu, expected 1..%zu", count, sent);
        } else if (count != out->n) {
            e = mno_bad(err, 2, "count %zu but %zu R-APDUs", count, out->n);
        } else {
            out->count = count;
        }
    }
    if (e != OT_OK) {
        mno_script_free(out);
    }
    return e;
}

static ot_err mno_put_tlv(struct ot_buf *b, uint8_t tag, const uint8_t *v, size_t n)
{
    uint8_t h[4];
    size_t hn = 0;
    ot_err e;

    if (n > 0xFFFFu) {
        return OT_E_ARG;
    }
    h[hn++] = tag;
    if (n >= 0x100u) {
        h[hn++] = 0x82u;
        h[hn++] = (uint8_t)(n >> 8);
        h[hn++] = (uint8_t)n;
    } else if (n >= 0x80u) {
        h[hn++] = 0x81u;
        h[hn++] = (uint8_t)n;
    } else {
        h[hn++] = (uint8_t)n;
    }
    e = ot_buf_append(b, h, hn);
    if (e == OT_OK && n > 0) {
        e = ot_buf_append(b, v, n);
    }
    return e;
}

ot_err mno_cmd_build(bool cont, const struct mno_item *items, size_t n, struct ot_buf *out)
{
    static const uint8_t head[] = {MNO_TAG_CMD, 0x80u};
    static const uint8_t eoc[] = {0, 0};
    static const uint8_t mode[] = {0x01u};
    ot_err e;

    if (n == 0 || n > MNO_SCRIPT_MAX_APDUS) {
        return OT_E_ARG;
    }
    e = ot_buf_append(out, head, sizeof(head));
    if (e == OT_OK && cont) {
        e = mno_put_tlv(out, MNO_TAG_MODE, mode, 1);
    }
    for (size_t i = 0; e == OT_OK && i < n; i++) {
        e = mno_put_tlv(out, MNO_TAG_CAPDU, items[i].p, items[i].n);
        if (e == OT_OK && items[i].guard != NULL) {
            e = mno_put_tlv(out, MNO_TAG_GUARD, items[i].guard, items[i].guard_n);
        }
    }
    return e == OT_OK ? ot_buf_append(out, eoc, sizeof(eoc)) : e;
}

ot_err mno_rsp_build(const struct mno_item *items, size_t n, struct ot_buf *out)
{
    static const uint8_t head[] = {MNO_TAG_RSP, 0x80u};
    static const uint8_t eoc[] = {0, 0};
    uint8_t cnt[2];
    ot_err e;

    if (n == 0 || n > 0xFFFFu) {
        return OT_E_ARG;
    }
    cnt[0] = (uint8_t)(n >> 8);
    cnt[1] = (uint8_t)n;
    e = ot_buf_append(out, head, sizeof(head));
    if (e == OT_OK) {
        e = n < 0x100u ? mno_put_tlv(out, MNO_TAG_COUNT, cnt + 1, 1)
                       : mno_put_tlv(out, MNO_TAG_COUNT, cnt, 2);
    }
    for (size_t i = 0; e == OT_OK && i < n; i++) {
        e = mno_put_tlv(out, MNO_TAG_RAPDU, items[i].p, items[i].n);
    }
    return e == OT_OK ? ot_buf_append(out, eoc, sizeof(eoc)) : e;
}

bool mno_sw_ok(uint16_t sw)
{
    return sw == 0x9000u || (sw >> 8) == 0x61u || sw == 0x6310u;
}

ot_err mno_script_outcome(const struct mno_script *cmd, const struct mno_script *rsp, size_t *stop,
                          uint16_t *sw)
{
    *stop = 0;
    *sw = 0;
    if (rsp->n == 0 || rsp->n > cmd->n) {
        return OT_E_ARG;
    }
    for (size_t i = 0; i < rsp->n; i++) {
        const struct mno_item *r = &rsp->items[i];
        const struct mno_item *c = &cmd->items[i];
        uint16_t s = (uint16_t)((r->p[r->n - 2] << 8) | r->p[r->n - 1]);
        bool guard_bad =
            c->guard != NULL && (c->guard_n != r->n || memcmp(c->guard, r->p, r->n) != 0);

        *stop = i;
        *sw = s;
        if (guard_bad || (!cmd->cont && !mno_sw_ok(s))) {
            return OT_E_SW;
        }
    }
    return rsp->n == cmd->n ? OT_OK : OT_E_SW;
}

bool mno_script_guard_stop(const struct mno_script *cmd, const struct mno_script *rsp, size_t stop)
{
    const struct mno_item *c;
    const struct mno_item *r;

    if (stop >= cmd->n || stop >= rsp->n) {
        return false;
    }
    c = &cmd->items[stop];
    r = &rsp->items[stop];
    return c->guard != NULL && (c->guard_n != r->n || memcmp(c->guard, r->p, r->n) != 0);
}
