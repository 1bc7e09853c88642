/* The vse socket frame codec (docs/vse.md, "Transports"), shared by the card
 * side (src/se/transport_sock.c) and the device side (src/agent's socket
 * back end), neither of which may link the other.
 *
 * Frame: u32be L (type + payload, 1..VSE_SOCK_FRAME_MAX), u8 type, payload.
 * Every request gets exactly one answer frame, in order: the request type |
 * VSE_SOCK_REPLY on success, VSE_SOCK_ERROR otherwise. Pure functions: no I/O.
 */
#ifndef OT_CORE_VSEFRAME_H
#define OT_CORE_VSEFRAME_H

#include "core/apdu.h"
#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

#define VSE_SOCK_APDU         0x01u /* payload: C-APDU      -> 0x81 R-APDU */
#define VSE_SOCK_POWER_ON     0x02u /* empty                -> 0x82 ATR (cold reset) */
#define VSE_SOCK_POWER_OFF    0x03u /* empty                -> 0x83 empty */
#define VSE_SOCK_RESET        0x04u /* empty                -> 0x84 ATR (warm reset) */
#define VSE_SOCK_REPLY        0x80u /* reply type = request type | 0x80 */
#define VSE_SOCK_ERROR        0xFFu /* payload: u16be ot_err code, ASCII text (<= 120 bytes) */
#define VSE_SOCK_HDR          5u
#define VSE_SOCK_FRAME_MAX    (1u + APDU_MAX_CMD_SIZE) /* largest L */
#define VSE_SOCK_ERR_TEXT_MAX 120u

struct vse_sock_frame {
    uint8_t type;
    const uint8_t *payload; /* points into the input */
    size_t len;
};

/* One complete frame at the head of p[0..n); *used: its size. Incomplete:
 * OT_E_TRUNCATED. L = 0: OT_E_PROTOCOL; L > VSE_SOCK_FRAME_MAX: OT_E_TOO_LONG
 * (both unrecoverable: the server answers an error frame and closes). */
ot_err vse_sock_frame_parse(const uint8_t *p, size_t n, struct vse_sock_frame *out, size_t *used);
/* Writes one frame. out_len: capacity in, bytes out (OT_E_BUF_SMALL + the
 * size needed). Payload over VSE_SOCK_FRAME_MAX - 1: OT_E_TOO_LONG. */
ot_err vse_sock_frame_encode(uint8_t type, const uint8_t *payload, size_t len, uint8_t *out,
                             size_t *out_len);

/* The content of an VSE_SOCK_ERROR frame: *code the peer's ot_err, *text and
 * *text_len its reason (pointing into the frame, not terminated). Not an
 * error frame, or a payload under 2 bytes or with a text over
 * VSE_SOCK_ERR_TEXT_MAX: OT_E_PROTOCOL. */
ot_err vse_sock_error_parse(const struct vse_sock_frame *f, ot_err *code, const char **text,
                            size_t *text_len);

#endif
