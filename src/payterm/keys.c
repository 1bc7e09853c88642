/* payterm's key storage module (payterm.h): the SP keys pay delivers
 * wrapped for this dongle alone go into the dongle's SAM as they are (only
 * the SAM unwraps them); a revoked SP's floor erases its keys there. */
#include "payterm/pt_priv.h"

#include <stdlib.h>

ot_err pt_keys_sync(struct pt *t, size_t *loaded, size_t *revoked, struct pay_client_err *e)
{
    struct pay_client_key *keys = calloc(PAY_CLIENT_KEYS_MAX, sizeof(*keys));
    size_t n = 0;
    uint16_t sw = 0;
    ot_err err;

    *loaded = 0;
    *revoked = 0;
    if (keys == NULL) {
        return OT_E_NOMEM;
    }
    err = pay_client_keys(t->pay, t->cfg->client, keys, PAY_CLIENT_KEYS_MAX, &n, e);
    for (size_t i = 0; i < n && err == OT_OK; i++) {
        if (keys[i].blob_len > 0) {
            err = pt_sam_load(t, keys[i].blob, keys[i].blob_len, &sw);
            if (err == OT_OK && sw == 0x9000) {
                (*loaded)++;
                /* older versions in flight are refused from now on */
                err = pt_sam_revoke(t, keys[i].sp, keys[i].key_type, keys[i].floor, &sw);
            }
        } else {
            err = pt_sam_revoke(t, keys[i].sp, keys[i].key_type, keys[i].floor, &sw);
            if (err == OT_OK && sw == 0x9000) {
                (*revoked)++;
            }
        }
        if (err == OT_OK && sw != 0x9000) {
            snprintf(e->message, sizeof(e->message), "the dongle refused %s key type %u: %04X",
                     keys[i].sp, keys[i].key_type, sw);
            err = sw == 0x6982 ? OT_E_FORBIDDEN : OT_E_SW;
        }
    }
    free(keys);
    return err;
}
