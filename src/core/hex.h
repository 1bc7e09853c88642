/* Strict hex encoding and decoding.
 *
 * Decoding accepts only an even number of [0-9A-Fa-f] characters: no spaces,
 * no "0x" prefix, no separators. Encoding writes upper-case digits.
 */
#ifndef OT_CORE_HEX_H
#define OT_CORE_HEX_H

#include "core/buf.h"
#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

/* The value of one hex digit [0-9A-Fa-f], -1 for anything else. */
int hex_digit(char c);

/* Writes 2*n digits and a NUL into out. out_cap must be >= 2*n + 1, else
 * OT_E_BUF_SMALL. */
ot_err hex_encode(const uint8_t *in, size_t n, char *out, size_t out_cap);

/* Decodes slen characters of s. out_len: in = capacity, out = bytes written
 * (or needed on OT_E_BUF_SMALL). Odd length or a non-hex character: OT_E_HEX,
 * and nothing is reported as written. */
ot_err hex_decode(const char *s, size_t slen, uint8_t *out, size_t *out_len);

/* Decodes the NUL-terminated s and appends the bytes to b. */
ot_err hex_decode_buf(const char *s, struct ot_buf *b);

#endif
