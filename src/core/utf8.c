/* UTF-8 for untrusted text (utf8.h). */
#include "core/utf8.h"

#include <stdio.h>
#include <string.h>

size_t ot_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint32_t c;
    uint32_t min;
    size_t len;

    if (n == 0) {
        return 0;
    }
    c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        c &= 0x1fu;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        c &= 0x0fu;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        c &= 0x07u;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0u) != 0x80u) {
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3fu);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        return 0;
    }
    *cp = c;
    return len;
}

bool ot_utf8_cp_unsafe(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x061c || (cp >= 0x200b && cp <= 0x200f)
           || cp == 0x2028 || cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e)
           || (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

bool ot_utf8_safe(const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;

    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t len = ot_utf8_decode(p + i, n - i, &cp);

        if (len == 0 || ot_utf8_cp_unsafe(cp)) {
            return false;
        }
        i += len;
    }
    return true;
}

size_t ot_utf8_escape(const char *s, size_t n, char *out, size_t cap, bool ellipsis, bool *changed,
                      size_t *width)
{
    const uint8_t *p = (const uint8_t *)(s != NULL ? s : "");
    size_t o = 0;
    size_t cols = 0;
    size_t keep_o = 0;
    size_t keep_cols = 0;
    bool chg = false;

    if (s == NULL) {
        n = 0;
    }
    if (cap == 0) {
        chg = n > 0;
        goto out;
    }
    for (size_t i = 0; i < n;) {
        char tmp[20];
        const char *piece = tmp;
        size_t plen = 0;
        size_t pcols = 0;
        uint32_t cp = 0;
        size_t len = ot_utf8_decode(p + i, n - i, &cp);

        if (len == 0 || (len == 1 && ot_utf8_cp_unsafe(cp)) || (cp >= 0x80 && cp <= 0x9f)) {
            /* invalid bytes and C0/DEL/C1 controls, byte by byte */
            size_t k = len == 0 ? 1 : len;
            for (size_t j = 0; j < k; j++) {
                plen += (size_t)snprintf(tmp + plen, sizeof tmp - plen, "\\x%02X", p[i + j]);
            }
            pcols = plen;
            len = k;
            chg = true;
        } else if (ot_utf8_cp_unsafe(cp)) {
            plen = (size_t)snprintf(tmp, sizeof tmp, "\\u{%04X}", (unsigned)cp);
            pcols = plen;
            chg = true;
        } else {
            piece = (const char *)p + i;
            plen = len;
            pcols = 1;
        }
        if (o + plen + 1 > cap) {
            chg = true;
            if (ellipsis) {
                o = keep_o;
                cols = keep_cols;
                if (o + 4 <= cap) {
                    memcpy(out + o, "...", 3);
                    o += 3;
                    cols += 3;
                }
            }
            break;
        }
        memcpy(out + o, piece, plen);
        o += plen;
        cols += pcols;
        i += len;
        if (o + 4 <= cap) {
            keep_o = o;
            keep_cols = cols;
        }
    }
    out[o] = '\0';
out:
    if (changed != NULL) {
        *changed = chg;
    }
    if (width != NULL) {
        *width = cols;
    }
    return o;
}
