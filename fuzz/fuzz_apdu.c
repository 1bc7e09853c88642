/* libFuzzer target for the command and response APDU codec
 * (src/core/apdu.c).
 *
 * Properties checked (abort on violation):
 *   - a command that parses re-encodes to exactly the input bytes (the
 *     parser keeps short/extended, so every accepted layout is reproduced);
 *   - re-encoding without forcing extended gives a command that parses to
 *     the same fields and is never longer;
 *   - the response parser splits off the last two bytes as SW;
 *   - CLA channel helpers: a CLA maps to itself on its own channel, and to
 *     every channel 0-19 and back.
 */
#include "core/apdu.h"

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

static void fuzz_command(const uint8_t *data, size_t size)
{
    struct apdu a;
    struct apdu b;
    size_t len = 0;
    uint8_t *out = NULL;
    if (apdu_parse(data, size, &a) != OT_OK) {
        return;
    }
    check(a.nc <= APDU_MAX_EXT_NC && a.ne <= APDU_MAX_EXT_NE);
    check(a.nc == 0 || (a.data > data && a.data + a.nc <= data + size));
    check(apdu_encode(&a, NULL, &len) == OT_E_BUF_SMALL && len == size);
    out = malloc(size + 3);
    check(out != NULL);
    check(apdu_encode(&a, out, &len) == OT_OK && len == size);
    check(memcmp(out, data, size) == 0);

    enum apdu_case c = apdu_case_of(&a);
    check(c >= APDU_CASE_1 && c <= APDU_CASE_4E);
    check(c == APDU_CASE_1 || (c >= APDU_CASE_2E) == a.extended);

    /* Minimal form: short whenever the lengths allow it. */
    a.extended = false;
    len = size;
    check(apdu_encode(&a, out, &len) == OT_OK && len <= size);
    check(apdu_parse(out, len, &b) == OT_OK);
    check(b.cla == a.cla && b.ins == a.ins && b.p1 == a.p1 && b.p2 == a.p2);
    check(b.nc == a.nc && b.ne == a.ne);
    check(a.nc == 0 || memcmp(b.data, a.data, a.nc) == 0);
    check(b.extended == (a.nc > APDU_MAX_SHORT_NC || a.ne > APDU_MAX_SHORT_NE));

    /* A follow-up for the status word in the last two bytes always parses:
     * a GET RESPONSE (5 bytes) or the command with a new Le (at most 2
     * bytes longer). */
    size_t next_len = size + 3;
    uint16_t sw = (uint16_t)(data[size - 2] << 8 | data[size - 1]);
    uint8_t ch = 0;
    ot_err err = apdu_followup(&a, sw, out, &next_len);
    if (sw1(sw) == 0x61 && apdu_cla_channel(a.cla, &ch) != OT_OK) {
        check(err == OT_E_APDU); /* no channel to send GET RESPONSE on */
        free(out);
        return;
    }
    check(err == OT_OK);
    check(next_len == 0 || next_len == 5 || next_len <= size + 2);
    if (next_len > 0) {
        check(apdu_parse(out, next_len, &b) == OT_OK);
        check(b.ne == (sw2(sw) ? sw2(sw) : APDU_MAX_SHORT_NE));
    }
    free(out);
}

static void fuzz_response(const uint8_t *data, size_t size)
{
    struct rapdu r;
    ot_err err = rapdu_parse(data, size, &r);
    if (size < 2) {
        check(err == OT_E_APDU_LEN);
        return;
    }
    check(err == OT_OK && r.len == size - 2 && r.data == data);
    check(r.sw == (uint16_t)(data[size - 2] << 8 | data[size - 1]));
    check(sw_describe(r.sw) != NULL);
    ot_err e = sw_to_err(r.sw);
    check(e == OT_OK || (e >= OT_E_SW && e < OT_E_IO));
    check(e != OT_OK || sw_is_success_or_warning(r.sw));
}

static void fuzz_cla(uint8_t cla)
{
    uint8_t ch = 0;
    uint8_t out = 0;
    if (apdu_cla_channel(cla, &ch) != OT_OK) {
        check(!apdu_cla_has_sm(cla));
        check(apdu_cla_with_channel(cla, 0, &out) == OT_E_APDU);
        return;
    }
    check(ch <= APDU_MAX_CHANNEL);
    check(apdu_cla_with_channel(cla, ch, &out) == OT_OK && out == cla);
    for (uint8_t c = 0; c <= APDU_MAX_CHANNEL; c++) {
        uint8_t back = 0xFF;
        if (apdu_cla_with_channel(cla, c, &out) != OT_OK) {
            continue; /* only GP + SM + chaining on channel 19 (would be FF) */
        }
        check(apdu_cla_channel(out, &back) == OT_OK && back == c);
        check(apdu_cla_has_sm(out) == apdu_cla_has_sm(cla));
        check(apdu_cla_is_proprietary(out) == apdu_cla_is_proprietary(cla));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_command(data, size);
    fuzz_response(data, size);
    if (size > 0) {
        fuzz_cla(data[0]);
    }
    return 0;
}
