/* SCP02 secure channel (GlobalPlatform Card Specification v2.3.1 Appendix E),
 * host side and card side.
 *
 * Supported: i = 15 and 55 (explicit initiation, three keys, C-MAC on the
 * modified APDU, ICV encryption; 55 adds the pseudo-random card challenge)
 * and their R-MAC variants 35 and 75 (i.b6 set); security levels 00, 01, 03
 * and, when i allows R-MAC, 10, 11, 13. Static keys are 2-key 3DES (16
 * bytes). docs/internals/scp02.md explains the byte layouts.
 *
 * Commands are short APDUs only (SCP02 MACs a one-byte Lc): a wrapped command
 * must fit Lc <= 255 and Le <= 256.
 *
 * Per-APDU work (wrap/unwrap) does not allocate and does not create cipher
 * contexts: they are created once per session object (_new) and re-keyed at
 * INITIALIZE UPDATE.
 *
 * wrap and unwrap may write their output over their input (out == cmd/resp).
 *
 * Objects are not thread-safe; one session object per channel.
 */
#ifndef OT_CRYPTO_SCP02_H
#define OT_CRYPTO_SCP02_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Security level bits (EXTERNAL AUTHENTICATE P1, GPCS Table E-11). */
#define SCP02_LVL_CMAC 0x01u
#define SCP02_LVL_CDEC 0x02u /* requires C-MAC */
#define SCP02_LVL_RMAC 0x10u

/* "i" parameter bits (GPCS Table E-1). */
#define SCP02_I_3KEYS    0x01u /* three static keys (vs one base key) */
#define SCP02_I_UNMOD    0x02u /* C-MAC on the unmodified APDU */
#define SCP02_I_EXPLICIT 0x04u /* explicit initiation (INITIALIZE UPDATE) */
#define SCP02_I_ICV_AID  0x08u /* ICV = MAC over the AID (implicit mode) */
#define SCP02_I_ICV_ENC  0x10u /* ICV encryption for C-MAC */
#define SCP02_I_RMAC     0x20u /* R-MAC supported */
#define SCP02_I_PSEUDO   0x40u /* well-known pseudo-random card challenge */

#define SCP02_KEY_LEN       16u
#define SCP02_KDD_LEN       10u
#define SCP02_HOST_CHAL_LEN 8u
#define SCP02_CARD_CHAL_LEN 6u
#define SCP02_MAC_LEN       8u
/* INITIALIZE UPDATE response data: KDD(10) KVN(1) 02 seq(2) card challenge(6)
 * card cryptogram(8) (GPCS Table E-14). */
#define SCP02_IU_RESP_LEN 28u
/* The counter never wraps: at this value INITIALIZE UPDATE is refused. */
#define SCP02_SEQ_MAX 0xFFFFu
/* A wrapped command grows by at most 8 (padding) + 8 (C-MAC) + 1 (an Lc byte
 * appears for case 1/2). */
#define SCP02_WRAP_OVERHEAD 17u
/* A wrapped response grows by the 8-byte R-MAC. */
#define SCP02_RESP_OVERHEAD 8u
#define SCP02_AID_MIN       5u
#define SCP02_AID_MAX       16u

/* Static key set: Key-ENC (KID 1), Key-MAC (KID 2), Key-DEK (KID 3), one KVN. */
struct scp02_keyset {
    uint8_t kvn;
    uint8_t enc[SCP02_KEY_LEN];
    uint8_t mac[SCP02_KEY_LEN];
    uint8_t dek[SCP02_KEY_LEN];
};

/* ---------------------------------------------------------------- host side */

struct scp02_host;

/* Creates a host session object for one key set (copied; wiped on free).
 * The host always applies ICV encryption (every supported i has it). */
ot_err scp02_host_new(const struct scp02_keyset *keys, struct scp02_host **out);
void scp02_host_free(struct scp02_host *h); /* NULL: no-op */

/* Builds INITIALIZE UPDATE (80 50 kvn 00 08 challenge 00) for logical channel
 * ch (0-19). host_chal: 8 bytes, or NULL to draw a random one. Resets any open
 * session. apdu_len: in = capacity, out = bytes written (needed on
 * OT_E_BUF_SMALL). */
ot_err scp02_host_initialize_update(struct scp02_host *h, uint8_t ch, const uint8_t *host_chal,
                                    uint8_t *apdu, size_t *apdu_len);

/* Replaces the static key set; allowed before a session answer was accepted
 * (after scp02_host_initialize_update() too), else OT_E_STATE. With
 * scp02_resp_kdd() this lets a back end diversify the keys from the KDD of
 * the very answer it is about to check. */
ot_err scp02_host_set_keys(struct scp02_host *h, const struct scp02_keyset *keys);

/* Extracts the 10-byte KDD from an INITIALIZE UPDATE R-APDU (data + SW),
 * with the SW and length checks of scp02_host_on_initialize_update(). */
ot_err scp02_resp_kdd(const uint8_t *resp, size_t len, uint8_t kdd[SCP02_KDD_LEN]);

/* Consumes the INITIALIZE UPDATE R-APDU (data + SW). A non-9000 SW gives its
 * sw_to_err() code. Then checks the length (not 28 data bytes:
 * OT_E_APDU_LEN), the SCP identifier 02 (OT_E_UNSUPPORTED) and the KVN
 * when the key set names one (kvn != 0; mismatch OT_E_KEY); derives the
 * session keys from the sequence counter and verifies the card cryptogram
 * (OT_E_CARD_CRYPTOGRAM). With a last sequence counter set (below), a counter
 * that is not larger gives OT_E_REPLAY. Any failure resets the session. */
ot_err scp02_host_on_initialize_update(struct scp02_host *h, const uint8_t *resp, size_t len);

/* Rejects INITIALIZE UPDATE answers whose sequence counter is not > last_seq.
 * The card moves its counter when a session's first C-MAC verifies, so pass
 * the counter of the last session that was opened (scp02_host_seq()). */
void scp02_host_set_last_seq(struct scp02_host *h, uint16_t last_seq);

/* Builds EXTERNAL AUTHENTICATE (84 82 level 00 10 host-cryptogram C-MAC) for
 * level 00 01 03 10 11 13 (others OT_E_SEC_LEVEL). Only after a successful
 * scp02_host_on_initialize_update() (OT_E_STATE otherwise). */
ot_err scp02_host_external_authenticate(struct scp02_host *h, uint8_t level, uint8_t *apdu,
                                        size_t *apdu_len);
/* Consumes its R-APDU; 9000 without data opens the channel. 6300 ->
 * OT_E_SW_VERIFY_FAILED, other SWs their sw_to_err() code, data with 9000
 * OT_E_TRAILING; every failure resets the session. */
ot_err scp02_host_on_external_authenticate(struct scp02_host *h, const uint8_t *resp, size_t len);

/* Wraps a plain C-APDU (any of the seven cases with short lengths; CLA
 * carries the channel, without secure messaging indicated) into its secured
 * form according to the session's level: C-MAC on the modified APDU, then
 * C-DECRYPTION of the data. Level 00 copies the command. Errors: no open
 * channel OT_E_NO_CHANNEL; the secured command would need Lc > 255 or
 * Le > 256 OT_E_TOO_LONG; CLA already indicating SM OT_E_APDU; malformed
 * command apdu_parse()'s code. out_len: capacity in, bytes out; n +
 * SCP02_WRAP_OVERHEAD always suffices. */
ot_err scp02_host_wrap(struct scp02_host *h, const uint8_t *cmd, size_t n, uint8_t *out,
                       size_t *out_len);

/* Unwraps the R-APDU of the command last wrapped. With R-MAC in the level the
 * last 8 data bytes are the R-MAC (OT_E_RMAC when it does not verify); the
 * output is data + SW without it. A bare status word that is neither 9000 nor
 * a warning means the card dropped the channel: it passes through and the
 * host session closes. An R-MAC that does not verify also closes the host
 * session. Without R-MAC the response is copied. Errors: no open
 * channel OT_E_NO_CHANNEL; no command wrapped since the last unwrap (R-MAC
 * levels) OT_E_STATE; n < 2 OT_E_APDU_LEN. */
ot_err scp02_host_unwrap(struct scp02_host *h, const uint8_t *resp, size_t n, uint8_t *out,
                         size_t *out_len);

bool scp02_host_is_open(const struct scp02_host *h);
uint8_t scp02_host_level(const struct scp02_host *h);
uint16_t scp02_host_seq(const struct scp02_host *h); /* from the card's answer */
/* The key diversification data the card sent (10 bytes), for back ends that
 * diversify static keys; NULL before an answer was accepted. */
const uint8_t *scp02_host_kdd(const struct scp02_host *h);
/* The 16-byte session DEK (constant 0181) that encrypts sensitive data such as
 * PUT KEY key components (3DES-ECB, keywrap_des_encrypt()); NULL until the
 * INITIALIZE UPDATE answer has been accepted. Valid until the next
 * INITIALIZE UPDATE or free. */
const uint8_t *scp02_host_session_dek(const struct scp02_host *h);

/* Copies the session keys (16 bytes each; NULL pointers are skipped) for
 * diagnostics and test vectors; available once the card cryptogram verified,
 * else OT_E_STATE. */
ot_err scp02_host_session_keys(const struct scp02_host *h, uint8_t *s_enc, uint8_t *s_cmac,
                               uint8_t *s_rmac, uint8_t *s_dek);

/* ---------------------------------------------------------------- card side */

struct scp02_card_cfg {
    uint8_t i_param;            /* 15, 35, 55 or 75 */
    uint8_t kdd[SCP02_KDD_LEN]; /* key diversification data sent in INITIALIZE UPDATE */
    const uint8_t *sd_aid;      /* AID of the SD opening the channel (pseudo-random challenge) */
    size_t sd_aid_len;          /* 5..16; required when i has SCP02_I_PSEUDO; copied */
};

struct scp02_card;

/* Unsupported i: OT_E_UNSUPPORTED; missing or bad AID for i 55/75: OT_E_ARG. */
ot_err scp02_card_new(const struct scp02_card_cfg *cfg, struct scp02_card **out);
void scp02_card_free(struct scp02_card *c); /* NULL: no-op */

/* Processes INITIALIZE UPDATE (full C-APDU) with the key set the caller picked
 * from P1. *seq is the key set's sequence counter (read, not retained);
 * SCP02_SEQ_MAX gives OT_E_SEQ_EXHAUSTED (the card answers 6985): the counter
 * never wraps. Writes the 28 response data bytes (no SW) to resp. Any open
 * session is closed first. Errors: INS not 50 or P2 not 00 OT_E_APDU; Lc not
 * 8 OT_E_APDU_LEN; malformed APDU apdu_parse()'s code. */
ot_err scp02_card_initialize_update(struct scp02_card *c, const struct scp02_keyset *keys,
                                    const uint16_t *seq, const uint8_t *cmd, size_t n,
                                    uint8_t *resp, size_t *resp_len);

/* Processes EXTERNAL AUTHENTICATE: checks the C-MAC (OT_E_CMAC), moves the
 * sequence counter (the session's first C-MAC verified), then checks the host
 * cryptogram (OT_E_HOST_CRYPTOGRAM) and the level (OT_E_SEC_LEVEL). No
 * INITIALIZE UPDATE before: OT_E_STATE. Any failure aborts the session.
 * Whatever the result, the caller then stores scp02_card_seq() as the key
 * set's counter. */
ot_err scp02_card_external_authenticate(struct scp02_card *c, const uint8_t *cmd, size_t n);

/* Unwraps a secured C-APDU: checks the protection it must carry for the
 * session's level (OT_E_SEC_LEVEL), decrypts C-DEC data (OT_E_PADDING), checks
 * the C-MAC (OT_E_CMAC; OT_E_REPLAY when the command is the previous accepted
 * one sent again). Writes the plain C-APDU (SM indication cleared, channel
 * kept; out_len: capacity in, bytes out; n always suffices). Every failure
 * except OT_E_BUF_SMALL (nothing consumed, retry) aborts the session; afterwards and before any
 * session: OT_E_NO_CHANNEL. A command with SM indicated at level 00/10, or without it at a C-MAC
 * level: OT_E_SEC_LEVEL (abort too). */
ot_err scp02_card_unwrap(struct scp02_card *c, const uint8_t *cmd, size_t n, uint8_t *out,
                         size_t *out_len);

/* Builds the R-APDU for the command last unwrapped: data + SW, with the R-MAC
 * appended to the data at R-MAC levels. A SW other than 9000/61xx/62xx/63xx
 * goes out without data (its R-MAC covers Li = 00). No open session: data +
 * SW pass through unprotected (so the caller can always route through here).
 * R-MAC level with no command unwrapped since the last wrap: OT_E_STATE. */
ot_err scp02_card_wrap(struct scp02_card *c, const uint8_t *data, size_t n, uint16_t sw,
                       uint8_t *out, size_t *out_len);

/* Closes the session (deselect, channel close, reset). */
void scp02_card_reset(struct scp02_card *c);
bool scp02_card_is_open(const struct scp02_card *c);
/* True between INITIALIZE UPDATE and a successful EXTERNAL AUTHENTICATE. */
bool scp02_card_is_pending(const struct scp02_card *c);
uint8_t scp02_card_level(const struct scp02_card *c);
/* The key set's sequence counter as it must now be stored: the value read at
 * INITIALIZE UPDATE, plus one once EXTERNAL AUTHENTICATE's C-MAC verified. */
uint16_t scp02_card_seq(const struct scp02_card *c);
/* The static key set the session was created with (NULL if none). */
const struct scp02_keyset *scp02_card_keys(const struct scp02_card *c);
/* The session DEK (16 bytes) for decrypting PUT KEY key components
 * (keywrap_des_decrypt()); NULL if no session. */
const uint8_t *scp02_card_session_dek(const struct scp02_card *c);
/* Known-answer tests only: the next INITIALIZE UPDATE of a card with random
 * challenges (i 15/35) uses chal instead of drawing one. */
void scp02_card_set_next_challenge(struct scp02_card *c, const uint8_t chal[SCP02_CARD_CHAL_LEN]);

#endif
