/* libFuzzer target for the dongle key wrap (src/crypto/ecwrap.c) and the
 * format 4 PIN block decipher (src/crypto/pinblock.c).
 *
 * The whole input goes to ecwrap_parse and to ecwrap_unwrap with a fixed
 * dongle key (the RFC 6979 A.2.5 P-256 key, for which the corpus holds a
 * valid blob); a parse that succeeds must describe a blob whose parts lie in
 * the input, and an unwrap that succeeds must give a key of the parsed length.
 * The first 16 bytes are also deciphered as a PIN block against a PAN made
 * of the next digits of the input.
 */
#include "crypto/ecwrap.h"
#include "crypto/pinblock.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_priv[32] = {
    0xC9, 0xAF, 0xA9, 0xD8, 0x45, 0xBA, 0x75, 0x16, 0x6B, 0x5C, 0x21, 0x57, 0x67, 0xB1, 0xD6, 0x93,
    0x4E, 0x50, 0xC3, 0xDB, 0x36, 0xE8, 0x9B, 0x12, 0x7B, 0x8A, 0x62, 0x2B, 0x12, 0x0F, 0x67, 0x21};
static const uint8_t fuzz_pub[65] = {
    0x04, 0x60, 0xFE, 0xD4, 0xBA, 0x25, 0x5A, 0x9D, 0x31, 0xC9, 0x61, 0xEB, 0x74,
    0xC6, 0x35, 0x6D, 0x68, 0xC0, 0x49, 0xB8, 0x92, 0x3B, 0x61, 0xFA, 0x6C, 0xE6,
    0x69, 0x62, 0x2E, 0x60, 0xF2, 0x9F, 0xB6, 0x79, 0x03, 0xFE, 0x10, 0x08, 0xB8,
    0xBC, 0x99, 0xA4, 0x1A, 0xE9, 0xE9, 0x56, 0x28, 0xBC, 0x64, 0xF2, 0xF1, 0xB2,
    0x0C, 0x2D, 0x7E, 0x9F, 0x51, 0x77, 0xA3, 0xC2, 0x94, 0xD4, 0x46, 0x22, 0x99};

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ecwrap_view v;
    struct ecwrap_meta m;
    struct ecwrap_policy pol = {.dongle_id = "dongle-1", .min_version = 0};
    uint8_t key[ECWRAP_MAX_KEY];
    size_t kl = 0;

    if (ecwrap_parse(data, size, &v) == OT_OK) {
        check(v.hdr_len + v.key_len + ECWRAP_TAG_LEN == size);
        check(v.epk == data + v.hdr_len - 1 - ECWRAP_NONCE_LEN - ECWRAP_PUB_LEN);
        check(v.tag + ECWRAP_TAG_LEN == data + size);
        check(strlen(v.meta.sp_id) > 0 && strlen(v.meta.dongle_id) > 0);
        pol.dongle_id = v.meta.dongle_id;
    }
    if (ecwrap_unwrap(fuzz_priv, fuzz_pub, &pol, data, size, &m, key, sizeof key, &kl) == OT_OK) {
        check(kl == v.key_len);
    }
    if (size >= PINBLOCK_LEN) {
        char pan[PINBLOCK_PAN_MAX + 1];
        char pin[PINBLOCK_PIN_MAX + 1];
        size_t np = 0;
        for (size_t i = PINBLOCK_LEN; i < size && np < PINBLOCK_PAN_MAX; i++) {
            pan[np++] = (char)('0' + data[i] % 10);
        }
        pan[np] = '\0';
        if (pinblock4_decipher(fuzz_priv, 16, data, pan, pin) == OT_OK) {
            check(pinblock_check_pin(pin) == OT_OK);
        }
    }
    return 0;
}
