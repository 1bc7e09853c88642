/* Helpers shared by the native applet modules (src/se/applets only).
 *
 * Status words, CLA / Le checks, STORE DATA structure bits, DGI and DOL
 * walking, and the length-prefixed fields of the applets' persistent blobs.
 */
#ifndef OT_SE_APPLETS_APUTIL_H
#define OT_SE_APPLETS_APUTIL_H

#include "core/apdu.h"
#include "core/buf.h"
#include "core/err.h"
#include "se/applet.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ISO/IEC 7816-4 status words the applets answer with. */
#define APUTIL_SW_OK             0x9000u
#define APUTIL_SW_VERIFY_FAIL    0x63C0u /* | tries left (0-15) */
#define APUTIL_SW_MEMORY         0x6581u
#define APUTIL_SW_WRONG_LENGTH   0x6700u
#define APUTIL_SW_SM_UNSUPPORTED 0x6882u
#define APUTIL_SW_CHAIN_UNSUPP   0x6884u
#define APUTIL_SW_SECURITY       0x6982u
#define APUTIL_SW_BLOCKED        0x6983u
#define APUTIL_SW_CONDITIONS     0x6985u
#define APUTIL_SW_WRONG_DATA     0x6A80u
#define APUTIL_SW_RECORD_NF      0x6A83u
#define APUTIL_SW_NO_SPACE       0x6A84u
#define APUTIL_SW_P1P2           0x6A86u
#define APUTIL_SW_REF_NF         0x6A88u
#define APUTIL_SW_WRONG_LE       0x6C00u /* | exact length */
#define APUTIL_SW_INS            0x6D00u
#define APUTIL_SW_CLA            0x6E00u
#define APUTIL_SW_NO_DIAG        0x6F00u

/* Checks a CLA for an applet command: proprietary selects the class the
 * command must have (b8 = 1: 8x / Cx, else 0x / 4x), any logical channel.
 * Invalid CLA or wrong class: 6E00; secure messaging indicated: 6882;
 * command chaining: 6884. 0 when acceptable. */
uint16_t aputil_check_cla(uint8_t cla, bool proprietary);

/* Le check for a response of resp_len bytes: a short Le (1-255) smaller than
 * the response gives 6Cxx with the exact length; 0 when acceptable. */
uint16_t aputil_check_le(const struct apdu *a, size_t resp_len);

/* STORE DATA P1 (GPCS 11.11.2.1): structure of the data. Encrypted data
 * (b7b6 != 00) is not accepted by the applets: 6A80. */
enum aputil_sd_fmt { APUTIL_FMT_DGI = 1, APUTIL_FMT_BER = 2 };
uint16_t aputil_store_data_fmt(uint8_t p1, enum aputil_sd_fmt *fmt);

/* Checks a personalization block (the applets' personalize hook): P1's
 * structure as aputil_store_data_fmt, DGI only when dgi_ok (else 6A80), and
 * an empty block gives 6700. 0 when acceptable, *fmt set. */
uint16_t aputil_perso_check(uint8_t p1, size_t n, bool dgi_ok, enum aputil_sd_fmt *fmt);

/* Reads one DGI (GP / EMV CPS: 2-byte DGI, length 00-FE or FF xxxx). */
ot_err aputil_dgi_next(struct buf_rd *r, uint16_t *dgi, const uint8_t **v, size_t *n);

/* Sum of the lengths of a data object list (EMV Book 3 5.4): tag of 1-3
 * bytes and a one-byte length per entry. Malformed: OT_E_FORMAT. */
ot_err aputil_dol_len(const uint8_t *dol, size_t n, size_t *total);

/* One-byte length-prefixed field of a persistent blob. */
void aputil_put_lv(struct buf_wr *w, const uint8_t *p, size_t n);
/* Reads a field written by aputil_put_lv; longer than cap: OT_E_CORRUPT. */
ot_err aputil_get_lv(struct buf_rd *r, uint8_t *dst, size_t cap, uint8_t *n);

/* The select hook of a module with a plain FCI, 6F { 84 AID }: the
 * instance's volatile scratch starts cleared (ISO 7816-4 selection). */
uint16_t aputil_select_fci(struct se_applet_ctx *x, struct buf_wr *out);

/* Starts reading an instance's data blob (x->data, not empty): the first
 * byte must be the module's blob version. Any error: OT_E_CORRUPT. */
ot_err aputil_blob_open(const struct se_applet_ctx *x, uint8_t version, struct buf_rd *r);
/* Ends the reading: err from the field reads, or bytes left over, give
 * OT_E_CORRUPT with one log line naming the module. */
ot_err aputil_blob_close(const struct buf_rd *r, ot_err err, const char *module);

/* Stores a finished blob writer as the instance's data. Returns 0 on success,
 * else the status word to answer (6A84 too large, 6581 write failure). */
uint16_t aputil_save(struct se_applet_ctx *x, const struct buf_wr *w);

/* True when p is n ASCII digits '0'-'9'. */
bool aputil_is_digits(const uint8_t *p, size_t n);

#endif
