/* vse card fuzz target: arbitrary APDU sequences against a fresh in-memory
 * card (no image path, so no disk I/O).
 *
 * Input layout:
 *   byte 0      flags: b1 open an SCP03 session with the ISD first
 *                      (deterministic host challenge, so the run repeats);
 *                      b3b2 its level (00 -> 01, 01 -> 03, 10 -> 33, 11 -> 00);
 *                      b5 wrap every command with that session (when it
 *                      wraps), so fuzzed commands reach the GP handlers
 *                      with valid MACs; b6 power-cycle after a failed command
 *   then        records [u8 n][n bytes] = one C-APDU each (at most
 *               FUZZ_MAX_CMDS); n = 0 means a power cycle.
 * Any answer is fine; a crash, leak, UB report, or a card that stops
 * answering while not mute is a bug. */
#include "core/apdu.h"
#include "gp/session.h"
#include "se/card.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_CMDS 64

#define K40 "404142434445464748494A4B4C4D4E4F"
#define K50 "505152535455565758595A5B5C5D5E5F"

/* The dev card plus an SSD with SCP02 and one with SCP03 S16, and an instance
 * of every native module. */
static const char fuzz_profile[] =
    "{\"type\":\"eSE\","
    "\"isd\":{\"aid\":\"A000000151000000\",\"privileges\":\"9EFE80\",\"scp\":3,\"i\":\"70\","
    "\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" K40 "\",\"mac\":\"" K40 "\",\"dek\":\"" K40
    "\"}]},"
    "\"packages\":[{\"module\":\"ppse\"},{\"module\":\"emv-payment\"},{\"module\":\"transit\"},"
    "{\"module\":\"telecom\"},{\"module\":\"wallet\"}],"
    "\"domains\":["
    "{\"aid\":\"F04F54534D534401\",\"privileges\":\"A00000\",\"scp\":2,\"i\":\"55\","
    "\"keys\":[{\"kvn\":32,\"type\":\"des\",\"enc\":\"" K50 "\",\"mac\":\"" K50 "\",\"dek\":\"" K50
    "\"}]},"
    "{\"aid\":\"F04F54534D534402\",\"privileges\":\"804000\",\"scp\":3,\"i\":\"71\","
    "\"keys\":[{\"kvn\":49,\"type\":\"aes\",\"enc\":\"" K50 "\",\"mac\":\"" K50 "\",\"dek\":\"" K50
    "\"}]}],"
    "\"applications\":["
    "{\"aid\":\"325041592E5359532E4444463031\",\"package\":\"F04F54534D01\"},"
    "{\"aid\":\"A0000000041010\",\"package\":\"F04F54534D02\"},"
    "{\"aid\":\"F04F54534D0301AA\",\"package\":\"F04F54534D03\"},"
    "{\"aid\":\"A0000000871002\",\"package\":\"F04F54534D04\"},"
    "{\"aid\":\"F04F54534D0501AA\",\"package\":\"F04F54534D05\"}]}";

static const struct scp03_keyset fuzz_keys = {
    .kvn = 0x30,
    .key_len = 16,
    .enc = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
    .mac = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
    .dek = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
};
static const uint8_t fuzz_host_chal[8] = {1, 2, 3, 4, 5, 6, 7, 8};
static const uint8_t fuzz_levels[4] = {0x01, 0x03, 0x33, 0x00};

static ot_err fuzz_tx(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *resp_len)
{
    return se_card_transmit(ctx, cmd, n, resp, resp_len);
}

static void fuzz_check(struct se_card *c, ot_err e, size_t rl)
{
    /* The card answers every command with at least a SW unless it is mute
     * (hardware destroy) or its image could not be written. */
    bool ok = e == OT_OK ? rl >= 2 && rl <= SE_MAX_RESP
                         : e == OT_E_DB || (e == OT_E_NO_CARD && se_card_is_mute(c));
    if (!ok) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t resp[SE_MAX_RESP];
    static uint8_t wrapped[GP_SESSION_MAX_CAPDU + 64];
    static uint8_t plain[SE_MAX_RESP];
    struct se_card *c = NULL;
    struct gp_session *s = NULL;
    uint8_t atr[SE_MAX_ATR];
    size_t al = sizeof atr;

    if (size < 1) {
        return 0;
    }
    uint8_t flags = data[0];
    data++;
    size--;
    if (se_card_from_profile(fuzz_profile, sizeof fuzz_profile - 1, &c) != OT_OK) {
        abort(); /* the profile is fixed: it must load */
    }
    if (se_card_power_on(c, atr, &al) != OT_OK) {
        abort();
    }
    if ((flags & 0x01u) != 0) {
        struct gp_session_cfg cfg = {
            .scp = GP_SCP_03,
            .scp03_keys = &fuzz_keys,
            .level = fuzz_levels[(flags >> 1) & 0x03u],
            .host_challenge = fuzz_host_chal,
        };
        if (gp_session_new(&cfg, &s) == OT_OK && gp_session_open(s, fuzz_tx, c) != OT_OK) {
            abort(); /* a fresh card with the right keys must open */
        }
    }
    for (unsigned k = 0; k < FUZZ_MAX_CMDS && size > 0; k++) {
        size_t n = data[0];
        if (n > size - 1) {
            n = size - 1;
        }
        const uint8_t *cmd = data + 1;
        data += 1 + n;
        size -= 1 + n;
        if (n == 0) {
            al = sizeof atr;
            (void)se_card_power_on(c, atr, &al);
            continue;
        }
        size_t wl = sizeof wrapped;
        if ((flags & 0x10u) != 0 && s != NULL && gp_session_is_open(s)
            && gp_session_wrap(s, cmd, n, wrapped, &wl) == OT_OK) {
            cmd = wrapped;
            n = wl;
        }
        size_t rl = sizeof resp;
        ot_err e = se_card_transmit(c, cmd, n, resp, &rl);
        fuzz_check(c, e, rl);
        if (e == OT_OK && s != NULL && cmd == wrapped) {
            size_t ul = sizeof plain;
            (void)gp_session_unwrap(s, resp, rl, plain, &ul);
        }
        if (e == OT_OK && (flags & 0x20u) != 0 && rl == 2 && resp[0] != 0x90 && resp[0] != 0x61) {
            al = sizeof atr;
            (void)se_card_power_on(c, atr, &al);
        }
    }
    gp_session_free(s);
    se_card_free(c);
    return 0;
}
