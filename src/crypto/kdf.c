#include "crypto/kdf.h"

#include "core/buf.h"

#include <string.h>

#define KDF_LABEL_ZEROS 11u /* label = 11 zero bytes || DC (Amd D 4.1.5) */

ot_err kdf_scp03(struct cmac *prf, uint8_t dc, const uint8_t *context, size_t context_len,
                 uint8_t *out, size_t out_len)
{
    uint8_t hdr[KDF_LABEL_ZEROS + 5] = {0};
    uint8_t blk[CMAC_BLOCK];
    size_t done = 0;
    ot_err err = OT_OK;

    if (!prf || !out || (!context && context_len > 0)) {
        return OT_E_ARG;
    }
    if (out_len == 0 || out_len > KDF_MAX_OUT || context_len > KDF_MAX_CONTEXT) {
        return OT_E_RANGE;
    }
    hdr[KDF_LABEL_ZEROS] = dc;
    hdr[KDF_LABEL_ZEROS + 1] = 0x00; /* separation indicator */
    ot_put_u16be(hdr + KDF_LABEL_ZEROS + 2, (uint16_t)(out_len * 8u));
    for (unsigned i = 1; done < out_len; i++) {
        hdr[KDF_LABEL_ZEROS + 4] = (uint8_t)i;
        cmac_init(prf);
        err = cmac_update(prf, hdr, sizeof hdr);
        if (err == OT_OK) {
            err = cmac_update(prf, context, context_len);
        }
        if (err == OT_OK) {
            err = cmac_final(prf, blk);
        }
        if (err != OT_OK) {
            goto out;
        }
        size_t take = out_len - done < CMAC_BLOCK ? out_len - done : CMAC_BLOCK;
        memcpy(out + done, blk, take);
        done += take;
    }
out:
    ot_mem_wipe(blk, sizeof blk);
    if (err != OT_OK) {
        ot_mem_wipe(out, out_len);
    }
    return err;
}

ot_err kdf_scp03_key(const uint8_t *key, size_t key_len, uint8_t dc, const uint8_t *context,
                     size_t context_len, uint8_t *out, size_t out_len)
{
    struct cmac *prf = NULL;
    ot_err err = cmac_new(key, key_len, &prf);

    if (err == OT_OK) {
        err = kdf_scp03(prf, dc, context, context_len, out, out_len);
    }
    cmac_free(prf);
    return err;
}
