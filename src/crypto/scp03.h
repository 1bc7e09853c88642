/* SCP03 secure channel (GlobalPlatform Card Specification Amendment D v1.1.2/1.2),
 * host side and card side.
 *
 * Supported: i = 00, 10, 20, 30, 60, 70 (+ S16 bit 01); S8 and S16; AES-128/192/256
 * static keys; security levels 00, 01, 03, 11, 13, 33 (C-MAC, C-DECRYPTION,
 * R-MAC, R-ENCRYPTION); MAC chaining; the encryption counter; pseudo-random
 * card challenge. docs/internals/scp03.md explains the byte layouts.
 *
 * Per-APDU work (wrap/unwrap) does not allocate and does not create cipher
 * contexts: they are created once per session object (_new) and re-keyed at
 * INITIALIZE UPDATE.
 *
 * Objects are not thread-safe; one session object per channel.
 *
 * Output buffers follow the usual rule (len in = capacity, out = bytes
 * written; OT_E_BUF_SMALL reports the size needed and changes no state). A
 * wrapped command needs at most n + SCP03_WRAP_OVERHEAD bytes, a wrapped
 * response n + 2 + SCP03_RESP_OVERHEAD; an unwrapped command or response is
 * never longer than its secured form.
 */
#ifndef OT_CRYPTO_SCP03_H
#define OT_CRYPTO_SCP03_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Security level bits (EXTERNAL AUTHENTICATE P1, Amd D Table 7-3). */
#define SCP03_LVL_CMAC 0x01u
#define SCP03_LVL_CDEC 0x02u
#define SCP03_LVL_RMAC 0x10u
#define SCP03_LVL_RENC 0x20u

/* "i" parameter bits (Amd D 5.1). */
#define SCP03_I_S16    0x01u /* 16-byte challenges, cryptograms and MACs */
#define SCP03_I_PSEUDO 0x10u /* pseudo-random card challenge + 3-byte sequence counter */
#define SCP03_I_RMAC   0x20u /* R-MAC supported */
#define SCP03_I_RENC   0x40u /* R-ENCRYPTION supported (with R-MAC) */

#define SCP03_KDD_LEN 10u
#define SCP03_MAX_KEY 32u
#define SCP03_SEQ_MAX 0xFFFFFFu
/* A wrapped command grows by at most 16 (padding) + 16 (S16 MAC) + 2 (Lc becomes
 * extended) + 1 (a short Le becomes the 2-byte extended form). */
#define SCP03_WRAP_OVERHEAD 35u
/* A wrapped response grows by at most 16 (padding) + 16 (S16 R-MAC). */
#define SCP03_RESP_OVERHEAD 32u

/* Static key set: Key-ENC (KID 1), Key-MAC (KID 2), Key-DEK (KID 3), one KVN. */
struct scp03_keyset {
    uint8_t kvn;
    size_t key_len; /* 16, 24 or 32; all three keys the same length */
    uint8_t enc[SCP03_MAX_KEY];
    uint8_t mac[SCP03_MAX_KEY];
    uint8_t dek[SCP03_MAX_KEY];
};

/* ---------------------------------------------------------------- host side */

struct scp03_host;

/* Creates a host session object for one key set (copied; wiped on free). */
ot_err scp03_host_new(const struct scp03_keyset *keys, struct scp03_host **out);
void scp03_host_free(struct scp03_host *h); /* NULL: no-op */

/* Builds INITIALIZE UPDATE (80 50 kvn 00 Lc challenge 00) for logical channel ch.
 * host_chal: 8 bytes (S8) or 16 bytes (s16), or NULL to draw a random one.
 * Resets any open session. apdu_len: in = capacity, out = bytes written. */
ot_err scp03_host_initialize_update(struct scp03_host *h, uint8_t ch, bool s16,
                                    const uint8_t *host_chal, uint8_t *apdu, size_t *apdu_len);

/* Consumes the INITIALIZE UPDATE R-APDU (data + SW). Checks SCP id 03, the
 * KVN, the response length for the card's i, derives the session keys and
 * verifies the card cryptogram (OT_E_CARD_CRYPTOGRAM). A non-9000 SW gives its
 * sw_to_err() code. With a minimum sequence counter set (below), a pseudo-random
 * card whose counter did not grow gives OT_E_REPLAY. */
ot_err scp03_host_on_initialize_update(struct scp03_host *h, const uint8_t *resp, size_t len);

/* Rejects INITIALIZE UPDATE answers whose sequence counter is not > last_seq
 * (pseudo-random mode), so a replayed handshake is caught. */
void scp03_host_set_last_seq(struct scp03_host *h, uint32_t last_seq);

/* Builds EXTERNAL AUTHENTICATE for the level (00 01 03 11 13 33; R-MAC levels
 * need the card's i to allow them: OT_E_SEC_LEVEL otherwise). */
ot_err scp03_host_external_authenticate(struct scp03_host *h, uint8_t level, uint8_t *apdu,
                                        size_t *apdu_len);
/* Consumes its R-APDU; 9000 opens the channel. 6300 -> OT_E_SW_VERIFY_FAILED. */
ot_err scp03_host_on_external_authenticate(struct scp03_host *h, const uint8_t *resp, size_t len);

/* Wraps a plain C-APDU (any of the seven cases; CLA carries the channel) into
 * its secured form according to the session's level. Level 00 still counts the
 * command (encryption counter). No open channel: OT_E_NO_CHANNEL. The output
 * is extended when the secured Lc exceeds 255 or cmd was extended; a command
 * with Le goes out with Le = 00 (0000 when extended). cmd already carrying SM:
 * OT_E_ARG; malformed cmd: apdu_parse()'s error; secured Lc > 65535:
 * OT_E_RANGE. out may equal cmd. */
ot_err scp03_host_wrap(struct scp03_host *h, const uint8_t *cmd, size_t n, uint8_t *out,
                       size_t *out_len);

/* Unwraps an R-APDU for the command last wrapped: verifies the R-MAC
 * (OT_E_RMAC), decrypts R-ENC data (OT_E_PADDING on bad padding), outputs
 * plain data + SW. Responses with an error SW carry no MAC and pass through.
 * A success SW without room for the R-MAC: OT_E_APDU_LEN. These failures end
 * the host session (scp03_host_is_open false). With R-ENC, out must not
 * overlap resp (OT_E_ARG). */
ot_err scp03_host_unwrap(struct scp03_host *h, const uint8_t *resp, size_t n, uint8_t *out,
                         size_t *out_len);

bool scp03_host_is_open(const struct scp03_host *h);
uint8_t scp03_host_level(const struct scp03_host *h);
uint8_t scp03_host_i(const struct scp03_host *h);    /* from the card's answer */
uint32_t scp03_host_seq(const struct scp03_host *h); /* card's counter, pseudo-random mode */
/* The key diversification data the card sent (10 bytes), for back ends that
 * diversify static keys. */
const uint8_t *scp03_host_kdd(const struct scp03_host *h);
/* Copies the session keys (key_len bytes each; NULL pointers are skipped) for
 * diagnostics and test vectors; available once the card cryptogram verified,
 * else OT_E_STATE. */
ot_err scp03_host_session_keys(const struct scp03_host *h, uint8_t *s_enc, uint8_t *s_mac,
                               uint8_t *s_rmac, size_t *key_len);

/* ---------------------------------------------------------------- card side */

struct scp03_card_cfg {
    uint8_t i_param;            /* the card's i (S16, pseudo-random, R-MAC, R-ENC bits) */
    uint8_t kdd[SCP03_KDD_LEN]; /* key diversification data sent in INITIALIZE UPDATE */
    const uint8_t *sd_aid;      /* AID of the SD opening the channel (pseudo-random challenge) */
    size_t sd_aid_len;          /* 5..16 */
};

struct scp03_card;

ot_err scp03_card_new(const struct scp03_card_cfg *cfg, struct scp03_card **out);
void scp03_card_free(struct scp03_card *c); /* NULL: no-op */

/* Processes INITIALIZE UPDATE (full C-APDU) with the key set the caller picked
 * from P1. *seq is the key set's sequence counter: in pseudo-random mode it is
 * incremented first (SCP03_SEQ_MAX reached: OT_E_SEQ_EXHAUSTED, card answers
 * 6985); the caller persists the new value. Writes the response data (no SW)
 * to resp. Any open session is closed first. */
ot_err scp03_card_initialize_update(struct scp03_card *c, const struct scp03_keyset *keys,
                                    uint32_t *seq, const uint8_t *cmd, size_t n, uint8_t *resp,
                                    size_t *resp_len);

/* Processes EXTERNAL AUTHENTICATE: checks the C-MAC (OT_E_CMAC) then the host
 * cryptogram (OT_E_HOST_CRYPTOGRAM) and the level (OT_E_SEC_LEVEL). Any
 * failure aborts the session. */
ot_err scp03_card_external_authenticate(struct scp03_card *c, const uint8_t *cmd, size_t n);

/* Unwraps a secured C-APDU: checks the protection it must carry for the
 * session's level (OT_E_SEC_LEVEL), the C-MAC (OT_E_CMAC), replay of an
 * already accepted command (OT_E_REPLAY, reported instead of OT_E_CMAC when
 * the command repeats the last accepted C-MAC) and decrypts (OT_E_PADDING).
 * Lc not matching the length: OT_E_APDU_LEN. Writes the plain C-APDU (SM bit
 * cleared, channel kept, same short/extended form; Le kept). Every failure
 * aborts the session (the card then answers 6982 until a new INITIALIZE
 * UPDATE; later calls give OT_E_NO_CHANNEL). A command without SM while the
 * session is open: OT_E_SEC_LEVEL (abort too). Exceptions that leave the
 * session alone: OT_E_BUF_SMALL (capacity n always suffices) and out == cmd
 * (OT_E_ARG). At level 00 commands pass unchanged (and are counted). */
ot_err scp03_card_unwrap(struct scp03_card *c, const uint8_t *cmd, size_t n, uint8_t *out,
                         size_t *out_len);

/* Wraps response data and SW for the command last unwrapped (R-ENC, R-MAC per
 * level; only for SW 9000/62xx/63xx, others go out as SW alone). Without an
 * open session, below R-MAC level, or for a response to EXTERNAL AUTHENTICATE
 * (no command unwrapped since) data and SW go out as given. out may equal
 * data. */
ot_err scp03_card_wrap(struct scp03_card *c, const uint8_t *data, size_t n, uint16_t sw,
                       uint8_t *out, size_t *out_len);

/* Closes the session (deselect, channel close, reset). */
void scp03_card_reset(struct scp03_card *c);
bool scp03_card_is_open(const struct scp03_card *c);
/* True between INITIALIZE UPDATE and a successful EXTERNAL AUTHENTICATE. */
bool scp03_card_is_pending(const struct scp03_card *c);
uint8_t scp03_card_level(const struct scp03_card *c);
/* The static key set the open session was created with (NULL if none); lets
 * the card decrypt PUT KEY data under its Key-DEK. */
const struct scp03_keyset *scp03_card_keys(const struct scp03_card *c);

#endif
