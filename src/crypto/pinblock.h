/* ISO 9564-1:2017 format 4 PIN block (AES), encipher and decipher.
 *
 * Plain text PIN field (16 bytes = 32 nibbles):
 *   C = 4 | N = PIN length (4..12) | N PIN digits | fill A (hex) up to
 *   nibble 15 | 16 nibbles of random fill (0..F)
 * PAN field (16 bytes):
 *   M = PAN length - 12 (0..7; 0 when the PAN has fewer than 12 digits,
 *   which are then right-justified in 12 with leading zeros) | the 12 + M
 *   PAN digits | zero pad to 32 nibbles
 * Encipherment with the AES key K (the "PIN encryption key" of the card's
 * bank):
 *   A = AES(K, PIN field); B = A xor PAN field; block = AES(K, B)
 * Decipherment runs it backwards and checks every nibble of the PIN field.
 *
 * Errors: NULL pointer OT_E_ARG; key not 16/24/32 bytes OT_E_KEY; PIN length
 * outside 4..12 OT_E_RANGE; a PIN character other than '0'..'9' OT_E_FORMAT;
 * PAN length outside 1..19 OT_E_RANGE; a PAN character other than a digit
 * OT_E_FORMAT; on decipher, a block that does not decode to a format 4 PIN
 * field (wrong key, wrong PAN, altered block) OT_E_PADDING. Stateless,
 * thread-safe; intermediate values are wiped.
 */
#ifndef OT_CRYPTO_PINBLOCK_H
#define OT_CRYPTO_PINBLOCK_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

#define PINBLOCK_LEN      16u
#define PINBLOCK_PIN_MIN  4u
#define PINBLOCK_PIN_MAX  12u
#define PINBLOCK_PAN_MAX  19u
#define PINBLOCK_FILL_LEN 8u /* the random half of the PIN field */

/* Checks a PIN string (length, digits) without enciphering it. */
ot_err pinblock_check_pin(const char *pin);
/* Checks a PAN string (length, digits). */
ot_err pinblock_check_pan(const char *pan);

/* Enciphers with fresh random fill (RAND_bytes). */
ot_err pinblock4_encipher(const uint8_t *key, size_t key_len, const char *pin, const char *pan,
                          uint8_t out[PINBLOCK_LEN]);
/* Same with the given random fill: for known-answer tests. */
ot_err pinblock4_encipher_fill(const uint8_t *key, size_t key_len, const char *pin, const char *pan,
                               const uint8_t fill[PINBLOCK_FILL_LEN], uint8_t out[PINBLOCK_LEN]);
/* Deciphers block for pan; pin gets the NUL-terminated digits (capacity
 * PINBLOCK_PIN_MAX + 1). */
ot_err pinblock4_decipher(const uint8_t *key, size_t key_len, const uint8_t block[PINBLOCK_LEN],
                          const char *pan, char pin[PINBLOCK_PIN_MAX + 1]);

#endif
