/* Host session fuzz target: a fake reader answers every C-APDU with the next
 * record of the input ([u8 n][n bytes] = one raw R-APDU), so 61xx, 6Cxx,
 * 6310 paging, STORE DATA blocks, GP chaining and the SCP03 handshake all see
 * hostile answers. Any result is fine; a crash, leak or UB report is a bug. */
#include "gp/script.h"
#include "gp/session.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fake_reader {
    const uint8_t *p;
    size_t left;
};

static ot_err fake_transmit(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp,
                            size_t *resp_len)
{
    struct fake_reader *r = ctx;
    (void)cmd;
    (void)n;
    if (r->left < 1) {
        return OT_E_NO_CARD;
    }
    size_t k = r->p[0];
    if (k > r->left - 1 || k > *resp_len) {
        return OT_E_NO_CARD;
    }
    memcpy(resp, r->p + 1, k);
    *resp_len = k;
    r->p += 1 + k;
    r->left -= 1 + k;
    return OT_OK;
}

static const struct scp03_keyset fuzz_keys = {.kvn = 0x30, .key_len = 16};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fake_reader rd = {data, size};
    struct gp_session *s = NULL;
    struct gp_script *sc = NULL;
    static uint8_t big[600];
    static uint8_t cmd[700];
    uint8_t resp[512];
    size_t rl;
    uint16_t sw;

    /* Plain relay session: the chaining and paging machinery. */
    struct gp_session_cfg cfg = {.scp = GP_SCP_NONE, .channel = 4};
    if (gp_session_new(&cfg, &s) != OT_OK) {
        return 0;
    }
    (void)gp_session_open(s, fake_transmit, &rd);
    static const uint8_t gs[] = {0x80, 0xF2, 0x40, 0x02, 0x02, 0x4F, 0x00, 0x00};
    rl = sizeof resp;
    (void)gp_session_transmit(s, fake_transmit, &rd, gs, sizeof gs, resp, &rl, &sw);
    /* STORE DATA of 600 bytes (blocks) and INSTALL of 600 bytes (GP chain). */
    static const uint8_t ins[2] = {0xE2, 0xE6};
    for (size_t i = 0; i < sizeof ins; i++) {
        cmd[0] = 0x80;
        cmd[1] = ins[i];
        cmd[2] = 0x80;
        cmd[3] = 0x00;
        cmd[4] = 0x00;
        cmd[5] = (uint8_t)(sizeof big >> 8);
        cmd[6] = (uint8_t)(sizeof big & 0xFF);
        memcpy(cmd + 7, big, sizeof big);
        rl = sizeof resp;
        (void)gp_session_transmit(s, fake_transmit, &rd, cmd, 7 + sizeof big, resp, &rl, &sw);
    }
    if (gp_script_new(NULL, &sc) == OT_OK) {
        static const uint8_t gd[] = {0x80, 0xCA, 0x00, 0x66, 0x00};
        (void)gp_script_add(sc, gd, sizeof gd);
        (void)gp_script_add(sc, gs, sizeof gs);
        (void)gp_script_run(sc, s, fake_transmit, &rd);
        gp_script_free(sc);
    }
    gp_session_free(s);
    s = NULL;

    /* SCP03 handshake against hostile answers. */
    struct gp_session_cfg c3 = {.scp = GP_SCP_03, .scp03_keys = &fuzz_keys, .level = 0x33};
    if (gp_session_new(&c3, &s) != OT_OK) {
        return 0;
    }
    if (gp_session_open(s, fake_transmit, &rd) == OT_OK) {
        rl = sizeof resp;
        (void)gp_session_transmit(s, fake_transmit, &rd, gs, sizeof gs, resp, &rl, &sw);
    }
    gp_session_free(s);
    return 0;
}
