/* libFuzzer target for the Delegated Management response parsers
 * (src/gp/dm.c): the input is the response data of a delegated INSTALL /
 * LOAD / DELETE. Besides "no crash, no sanitizer report", it aborts when a
 * property that must hold for any input fails: parse and verify agree on
 * malformed input, parsed lengths stay within their caps, a receipt that
 * verifies for a fixed key and operation is rejected once one byte of the
 * expected data differs.
 */
#include "gp/dm.h"

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
    static const uint8_t key[16] = {0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78,
                                    0x79, 0x7A, 0x7B, 0x7C, 0x7D, 0x7E, 0x7F, 0x80};
    static const uint8_t aid[] = {0xD2, 0x76, 0x00, 0x01, 0x18, 0xAA};
    struct gp_dm_confirmation cf;
    ot_err pe = gp_dm_parse_confirmation(data, size, &cf);
    if (pe == OT_OK) {
        check(cf.receipt_len == GP_DM_SIG_LEN);
        check(cf.sd_unique_len >= 1 && cf.sd_unique_len <= GP_DM_UNIQUE_MAX);
        check(cf.token_id_len <= GP_DM_TOKEN_ID_MAX);
    }
    struct gp_dm_expect e;
    memset(&e, 0, sizeof e);
    e.op = GP_DM_DELETE;
    e.app = aid;
    e.app_len = sizeof aid;
    ot_err ve = gp_dm_receipt_verify(key, sizeof key, &e, data, size, NULL);
    if (pe != OT_OK) {
        check(ve == pe);
    } else {
        check(ve == OT_OK || ve == OT_E_RMAC);
    }
    if (ve == OT_OK) {
        uint8_t other[sizeof aid];
        memcpy(other, aid, sizeof aid);
        other[5] ^= 0x01;
        e.app = other;
        check(gp_dm_receipt_verify(key, sizeof key, &e, data, size, NULL) == OT_E_RMAC);
    }
    uint16_t ctr = 0;
    (void)gp_dm_parse_counter(data, size, &ctr);
    return 0;
}
