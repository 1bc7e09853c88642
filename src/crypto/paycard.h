/* What both sides of a card payment compute with a card's keys: the dongle's
 * SAM applet (src/se/applets/sam.c) and the back ends (spsim) run the same
 * functions, so neither links the other (DESIGN.md 2).
 *
 * Card keys are diversified from the SP's issuer master key (IMK, the key an
 * SP deposits with pay and pay wraps for dongles):
 *
 *   card key = KDF(IMK, dc, card id)    16 bytes
 *
 * with the NIST SP 800-108 counter-mode KDF over AES-CMAC in its SCP03 form
 * (crypto/kdf.h), dc = PAYCARD_DC_EMV_AC for a payment card's MK_AC
 * (card id = the PAN bytes of tag 5A) and PAYCARD_DC_TRANSIT for a purse's
 * credit key (card id = the 8-byte purse id). The card holds only its card
 * key (personalized into emv-payment / transit); the IMK never leaves the
 * SP and the dongle.
 *
 * The cryptograms are those of the card applets (docs/applets.md):
 *   EMV AC      SK = AES(MK_AC, ATC || F0 || 00 x 13); AC = CMAC(SK, data)[0..8)
 *               (identical to se_emv_compute_ac of emv.c)
 *   transit MAC first 8 bytes of CMAC(K, tag || a || b || purse id), tag 52
 *               for a CREDIT command (a = amount, b = counter), D2 for the
 *               card's proof (a = new balance, b = counter)
 *
 * Errors: NULL OT_E_ARG; key lengths OT_E_KEY; id longer than
 * PAYCARD_MAX_ID or empty OT_E_RANGE; OpenSSL OT_E_CRYPTO. Thread-safe.
 */
#ifndef OT_CRYPTO_PAYCARD_H
#define OT_CRYPTO_PAYCARD_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

#define PAYCARD_KEY_LEN    16u
#define PAYCARD_AC_LEN     8u
#define PAYCARD_MAC_LEN    8u
#define PAYCARD_PURSE_ID   8u
#define PAYCARD_MAX_ID     32u
#define PAYCARD_DC_EMV_AC  0x50u
#define PAYCARD_DC_TRANSIT 0x51u
#define PAYCARD_TAG_CREDIT 0x52u
#define PAYCARD_TAG_PROOF  0xD2u

/* A PAN of 1-19 digits as the card holds it in tag 5A (EMV Book 3 annex A:
 * compressed numeric, padded with F): *n = (digits + 1) / 2 bytes of out
 * (capacity PAYCARD_PAN_BCD_MAX). Not digits OT_E_FORMAT, length OT_E_RANGE. */
#define PAYCARD_PAN_BCD_MAX 10u
ot_err paycard_pan_bcd(const char *pan, uint8_t out[PAYCARD_PAN_BCD_MAX], size_t *n);

/* imk: 16, 24 or 32 bytes. */
ot_err paycard_derive(const uint8_t *imk, size_t imk_len, uint8_t dc, const uint8_t *id,
                      size_t id_len, uint8_t out[PAYCARD_KEY_LEN]);

ot_err paycard_emv_ac(const uint8_t card_key[PAYCARD_KEY_LEN], uint16_t atc, const uint8_t *data,
                      size_t n, uint8_t ac[PAYCARD_AC_LEN]);

ot_err paycard_transit_mac(const uint8_t key[PAYCARD_KEY_LEN], uint8_t tag, uint32_t a, uint32_t b,
                           const uint8_t id[PAYCARD_PURSE_ID], uint8_t mac[PAYCARD_MAC_LEN]);

#endif
