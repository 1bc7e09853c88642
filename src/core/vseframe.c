/* vse socket frames (core/vseframe.h). */
#include "core/vseframe.h"

#include "core/buf.h"

#include <string.h>

#define SOCK_LEN_BYTES 4u

_Static_assert(VSE_SOCK_HDR == SOCK_LEN_BYTES + 1u, "header = length + type");

ot_err vse_sock_frame_parse(const uint8_t *p, size_t n, struct vse_sock_frame *out, size_t *used)
{
    uint32_t len;

    if ((p == NULL && n > 0) || out == NULL || used == NULL) {
        return OT_E_ARG;
    }
    if (n < SOCK_LEN_BYTES) {
        return OT_E_TRUNCATED;
    }
    len = ot_get_u32be(p);
    if (len == 0) {
        return OT_E_PROTOCOL;
    }
    if (len > VSE_SOCK_FRAME_MAX) {
        return OT_E_TOO_LONG;
    }
    if (len > n - SOCK_LEN_BYTES) {
        return OT_E_TRUNCATED;
    }
    out->type = p[SOCK_LEN_BYTES];
    out->payload = p + VSE_SOCK_HDR;
    out->len = (size_t)len - 1u;
    *used = SOCK_LEN_BYTES + (size_t)len;
    return OT_OK;
}

ot_err vse_sock_frame_encode(uint8_t type, const uint8_t *payload, size_t len, uint8_t *out,
                             size_t *out_len)
{
    if (out_len == NULL || (payload == NULL && len > 0)) {
        return OT_E_ARG;
    }
    if (len > VSE_SOCK_FRAME_MAX - 1u) {
        return OT_E_TOO_LONG;
    }
    if (out == NULL || *out_len < VSE_SOCK_HDR + len) {
        *out_len = VSE_SOCK_HDR + len;
        return OT_E_BUF_SMALL;
    }
    ot_put_u32be(out, (uint32_t)(len + 1u));
    out[SOCK_LEN_BYTES] = type;
    if (len > 0) {
        memcpy(out + VSE_SOCK_HDR, payload, len);
    }
    *out_len = VSE_SOCK_HDR + len;
    return OT_OK;
}

ot_err vse_sock_error_parse(const struct vse_sock_frame *f, ot_err *code, const char **text,
                            size_t *text_len)
{
    if (f == NULL || code == NULL || text == NULL || text_len == NULL) {
        return OT_E_ARG;
    }
    if (f->type != VSE_SOCK_ERROR || f->len < 2u || f->len - 2u > VSE_SOCK_ERR_TEXT_MAX) {
        return OT_E_PROTOCOL;
    }
    *code = (ot_err)ot_get_u16be(f->payload);
    *text = (const char *)f->payload + 2;
    *text_len = f->len - 2u;
    return OT_OK;
}
