/* EMV-style payment applet: the issuer-side application cryptogram.
 *
 * The card's GENERATE AC and an issuer host compute the same 8-byte
 * cryptogram with this function (docs/applets.md, "emv-payment"):
 *
 *   SK = AES-128-ECB(MK_AC, ATC[2] || 'F0' || '00' x 13)
 *        (EMV Book 2 A1.3.1, common session key derivation, R = ATC || 00..,
 *         key length = block length)
 *   AC = leftmost 8 bytes of AES-CMAC(SK, data)   (EMV Book 2 A1.2.2)
 *
 * data is the whole MAC input: on this card the CDOL1 data of the GENERATE
 * AC command, then the AIP (2 bytes), then the ATC (2 bytes).
 */
#ifndef OT_SE_APPLETS_EMV_H
#define OT_SE_APPLETS_EMV_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

#define SE_EMV_KEY_LEN 16u
#define SE_EMV_AC_LEN  8u

/* card_key: the ICC master key for AC (MK_AC, AES-128, key_len 16, else
 * OT_E_KEY). n may be 0. OpenSSL failure: OT_E_CRYPTO. */
ot_err se_emv_compute_ac(const uint8_t *card_key, size_t key_len, uint16_t atc, const uint8_t *data,
                         size_t n, uint8_t ac[SE_EMV_AC_LEN]);

#endif
