#include "core/hex.h"

#include <string.h>

int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

ot_err hex_encode(const uint8_t *in, size_t n, char *out, size_t out_cap)
{
    static const char digits[] = "0123456789ABCDEF";
    if (!out || (n > 0 && !in)) {
        return OT_E_ARG;
    }
    if (n > (SIZE_MAX - 1) / 2 || out_cap < 2 * n + 1) {
        return OT_E_BUF_SMALL;
    }
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0F];
    }
    out[2 * n] = '\0';
    return OT_OK;
}

ot_err hex_decode(const char *s, size_t slen, uint8_t *out, size_t *out_len)
{
    if (!out_len || (slen > 0 && !s)) {
        return OT_E_ARG;
    }
    if (slen % 2 != 0) {
        return OT_E_HEX;
    }
    for (size_t i = 0; i < slen; i++) {
        if (hex_digit(s[i]) < 0) {
            return OT_E_HEX;
        }
    }
    size_t n = slen / 2;
    if (*out_len < n || (n > 0 && !out)) {
        *out_len = n;
        return OT_E_BUF_SMALL;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = (uint8_t)((hex_digit(s[2 * i]) << 4) | hex_digit(s[2 * i + 1]));
    }
    *out_len = n;
    return OT_OK;
}

ot_err hex_decode_buf(const char *s, struct ot_buf *b)
{
    if (!s || !b) {
        return OT_E_ARG;
    }
    size_t slen = strlen(s);
    size_t n = slen / 2;
    if (slen % 2 != 0) {
        return OT_E_HEX;
    }
    ot_err err = ot_buf_reserve(b, n);
    if (err != OT_OK) {
        return err;
    }
    err = hex_decode(s, slen, b->data + b->len, &n);
    if (err == OT_OK) {
        b->len += n;
    }
    return err;
}
