/* libFuzzer target for the dongle's SAM applet (src/se/applets/sam.c): its
 * command parsers (LOAD KEY blobs, REVOKE, VERIFY AC, PIN BLOCK, TRANSIT
 * MAC, GET DATA) on a fresh in-memory card per input.
 *
 * Input layout:
 *   byte 0   flags: b0 load one key of each type for SP "sp" first (wrapped
 *            for the card's own public key), so the commands reach the
 *            cryptography and not only the "no key" answer
 *   then     records [u8 n][n bytes]: byte 0 picks the INS (index into
 *            fuzz_ins), byte 1 is P1 (for GET DATA: P1 DF, P2 this byte),
 *            the rest is the command data (short Lc; a record of fewer than
 *            2 bytes is skipped).
 * Any status word is fine; a crash, a sanitizer report, or a card that stops
 * answering is a bug. */
#include "crypto/ecwrap.h"
#include "se/card.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_profile[] =
    "{\"type\":\"eSE\","
    "\"isd\":{\"aid\":\"A000000151000000\",\"privileges\":\"9EFE80\",\"scp\":3,\"i\":\"70\","
    "\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"404142434445464748494A4B4C4D4E4F\","
    "\"mac\":\"404142434445464748494A4B4C4D4E4F\",\"dek\":\"404142434445464748494A4B4C4D4E4F\"}]},"
    "\"packages\":[{\"module\":\"sam\"}],"
    "\"applications\":[{\"aid\":\"F04F54534D0601AA\",\"package\":\"F04F54534D06\","
    "\"params\":\"DF1003646731\"}]}";

static const uint8_t fuzz_ins[] = {0xCA, 0xD8, 0xDA, 0xA0, 0xA2, 0xA4};
static const uint8_t fuzz_select[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xF0, 0x4F,
                                      0x54, 0x53, 0x4D, 0x06, 0x01, 0xAA, 0x00};

static bool fuzz_tx(struct se_card *c, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *rl)
{
    *rl = SE_MAX_RESP;
    ot_err e = se_card_transmit(c, cmd, n, resp, rl);
    if (e != OT_OK || *rl < 2) {
        abort(); /* an in-memory card always answers */
    }
    return resp[*rl - 2] == 0x90 && resp[*rl - 1] == 0x00;
}

static void fuzz_load_keys(struct se_card *c, uint8_t *resp)
{
    static const uint8_t key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    static const uint8_t get_pub[] = {0x80, 0xCA, 0xDF, 0x11, 0x00};
    uint8_t pub[ECWRAP_PUB_LEN];
    uint8_t cmd[5 + ECWRAP_MAX_BLOB + 1];
    size_t rl = 0;

    if (!fuzz_tx(c, get_pub, sizeof get_pub, resp, &rl) || rl != ECWRAP_PUB_LEN + 2) {
        abort();
    }
    memcpy(pub, resp, sizeof pub);
    for (uint8_t kt = 1; kt <= 3; kt++) {
        struct ecwrap_meta m = {
            .key_type = kt, .sp_id = "sp", .key_version = 1, .dongle_id = "dg1"};
        size_t n = ECWRAP_MAX_BLOB;
        if (ecwrap_wrap(pub, &m, key, sizeof key, cmd + 5, &n) != OT_OK) {
            abort();
        }
        cmd[0] = 0x80;
        cmd[1] = 0xD8;
        cmd[2] = 0x00;
        cmd[3] = 0x00;
        cmd[4] = (uint8_t)n;
        if (!fuzz_tx(c, cmd, 5 + n, resp, &rl)) {
            abort(); /* a blob made for this card must load */
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t resp[SE_MAX_RESP];
    uint8_t cmd[5 + 255];
    uint8_t atr[SE_MAX_ATR];
    size_t al = sizeof atr;
    size_t rl = 0;
    struct se_card *c = NULL;

    if (size < 1) {
        return 0;
    }
    if (se_card_from_profile(fuzz_profile, sizeof fuzz_profile - 1, &c) != OT_OK
        || se_card_power_on(c, atr, &al) != OT_OK) {
        abort();
    }
    if (!fuzz_tx(c, fuzz_select, sizeof fuzz_select, resp, &rl)) {
        abort();
    }
    if ((data[0] & 0x01u) != 0) {
        fuzz_load_keys(c, resp);
    }
    size_t off = 1;
    while (off < size) {
        size_t n = data[off++];
        if (n > size - off) {
            n = size - off;
        }
        const uint8_t *rec = data + off;
        off += n;
        if (n < 2) {
            continue;
        }
        cmd[0] = 0x80;
        cmd[1] = fuzz_ins[rec[0] % sizeof fuzz_ins];
        cmd[2] = cmd[1] == 0xCA ? 0xDF : rec[1]; /* GET DATA: tag DF xx */
        cmd[3] = cmd[1] == 0xCA ? rec[1] : 0x00;
        cmd[4] = (uint8_t)(n - 2);
        memcpy(cmd + 5, rec + 2, n - 2);
        (void)fuzz_tx(c, cmd, n - 2 > 0 ? 5 + n - 2 : 4, resp, &rl);
    }
    se_card_free(c);
    return 0;
}
