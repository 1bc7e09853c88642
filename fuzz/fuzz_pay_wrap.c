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

#include "fuzz_pay.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    if (ecwrap_unwrap(fuzz_pay_priv, fuzz_pay_pub, &pol, data, size, &m, key, sizeof key, &kl)
        == OT_OK) {
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
        if (pinblock4_decipher(fuzz_pay_priv, 16, data, pan, pin) == OT_OK) {
            check(pinblock_check_pin(pin) == OT_OK);
        }
    }
    return 0;
}
