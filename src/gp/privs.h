/* GlobalPlatform privileges (GPCS 11.1.2, 6.6) and life-cycle states (GPCS 11.1.1).
 *
 * Privileges are handled as a 24-bit value holding the three privilege bytes
 * big-endian: byte 1 in bits 23-16, byte 2 in bits 15-8, byte 3 in bits 7-0.
 * Privilege number n (0 = Security Domain ... 19 = Contactless Self-Activation)
 * is the bit GP_PRIV_BIT(n) = 0x800000 >> n, so a value prints in hex exactly as
 * the three bytes appear on the wire ("9EFE80").
 *
 * Everything here is pure computation over caller data: no allocation, no
 * global state, thread-safe.
 */
#ifndef OT_GP_PRIVS_H
#define OT_GP_PRIVS_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Privilege numbers (GPCS Table 6-1 / 11-7..11-9). */
enum gp_priv {
    GP_PRIV_SECURITY_DOMAIN = 0,
    GP_PRIV_DAP_VERIFICATION = 1,
    GP_PRIV_DELEGATED_MANAGEMENT = 2,
    GP_PRIV_CARD_LOCK = 3,
    GP_PRIV_CARD_TERMINATE = 4,
    GP_PRIV_CARD_RESET = 5, /* formerly "Default Selected" */
    GP_PRIV_CVM_MANAGEMENT = 6,
    GP_PRIV_MANDATED_DAP = 7,
    GP_PRIV_TRUSTED_PATH = 8,
    GP_PRIV_AUTHORIZED_MANAGEMENT = 9,
    GP_PRIV_TOKEN_VERIFICATION = 10,
    GP_PRIV_GLOBAL_DELETE = 11,
    GP_PRIV_GLOBAL_LOCK = 12,
    GP_PRIV_GLOBAL_REGISTRY = 13,
    GP_PRIV_FINAL_APPLICATION = 14,
    GP_PRIV_GLOBAL_SERVICE = 15,
    GP_PRIV_RECEIPT_GENERATION = 16,
    GP_PRIV_CIPHERED_LFDB = 17,
    GP_PRIV_CONTACTLESS_ACTIVATION = 18,
    GP_PRIV_CONTACTLESS_SELF_ACTIVATION = 19,
};
#define GP_PRIV_COUNT 20

#define GP_PRIV_BIT(n) (0x800000u >> (unsigned)(n))
/* Bits of byte 3 that GPCS 2.3.1 leaves RFU (b4-b1). */
#define GP_PRIVS_RFU_MASK 0x00000Fu
#define GP_PRIVS_MASK     0xFFFFFFu

/* Who a 1-byte privilege field belongs to (for the defaults of bytes 2-3). */
enum gp_priv_role {
    GP_PRIV_ROLE_ISD = 0,
    GP_PRIV_ROLE_SSD = 1,
    GP_PRIV_ROLE_APP = 2,
};

/* Byte 2 and 3 defaults when only byte 1 is given (GPCS 11.1.2): the ISD gets
 * TP, AM, TV, GD, GL, GR, FA and RG; an SSD gets TP; an application nothing. */
#define GP_PRIVS_ISD_DEFAULT_EXT 0x00FE80u
#define GP_PRIVS_SSD_DEFAULT_EXT 0x008000u

#define GP_PRIVS_LEN 3u /* privileges field on the wire (GPCS 11.1.2) */

/* The 3 wire bytes of privs (bits above 23 ignored). */
void gp_privs_encode(uint32_t privs, uint8_t out[GP_PRIVS_LEN]);
/* The value of 3 wire bytes. */
uint32_t gp_privs_decode(const uint8_t in[GP_PRIVS_LEN]);
/* A 1-byte legacy field extended with the defaults of role. */
uint32_t gp_privs_expand1(uint8_t byte1, enum gp_priv_role role);
/* Decodes a privilege field of n bytes: 3 as is, 1 expanded for role (as
 * gp_privs_expand1), 0 = no privileges. Any other n: OT_E_FORMAT. */
ot_err gp_privs_from_bytes(const uint8_t *p, size_t n, enum gp_priv_role role, uint32_t *out);

/* Checks the exclusions and dependencies of GPCS 6.6 / Table 6-1:
 *   Authorized Management, Token Verification and Receipt Generation exclude
 *   Delegated Management; DAP Verification, Delegated Management, Authorized
 *   Management and Mandated DAP need Security Domain; Mandated DAP needs DAP
 *   Verification. RFU bits are allowed (newer specifications define them).
 * Violations: OT_E_RANGE, the reason logged at DEBUG and, when why is not NULL,
 * stored in *why (static text). OT_OK sets *why to NULL. */
ot_err gp_privs_validate(uint32_t privs, const char **why);

/* Name of a privilege ("security-domain", "card-reset" ...); NULL when p is
 * not 0..19. */
const char *gp_priv_name(enum gp_priv p);
/* Privilege by name, ASCII case-insensitive; '_' and '-' are equivalent and
 * "default-selected" is accepted for card-reset. Unknown: OT_E_FORMAT. */
ot_err gp_priv_from_name(const char *name, size_t len, enum gp_priv *out);
/* Parses a list of names separated by ',', '|', '+' or white space (empty
 * list = 0). A name may also be written as 6 hex digits ("9EFE80"), which is
 * OR-ed in. Unknown name: OT_E_FORMAT. */
ot_err gp_privs_parse(const char *list, uint32_t *out);
/* Writes the names of the privileges in privs, comma-separated, in privilege
 * order, and "rfu=0x00000F" for set RFU bits; "none" for 0. NUL-terminated.
 * len: in = capacity of out, out = characters written without the NUL (or
 * the capacity needed including the NUL on OT_E_BUF_SMALL). */
ot_err gp_privs_to_text(uint32_t privs, char *out, size_t *len);

/* ---- Life-cycle states (GPCS 11.1.1) ---- */

enum gp_lcs_kind {
    GP_LCS_CARD = 0, /* the card = ISD life cycle */
    GP_LCS_ELF = 1,  /* Executable Load File */
    GP_LCS_APP = 2,  /* application */
    GP_LCS_SD = 3,   /* security domain */
};

#define GP_LCS_CARD_OP_READY    0x01u
#define GP_LCS_CARD_INITIALIZED 0x07u
#define GP_LCS_CARD_SECURED     0x0Fu
#define GP_LCS_CARD_LOCKED      0x7Fu
#define GP_LCS_CARD_TERMINATED  0xFFu
#define GP_LCS_ELF_LOADED       0x01u
#define GP_LCS_APP_INSTALLED    0x03u
#define GP_LCS_APP_SELECTABLE   0x07u
#define GP_LCS_SD_INSTALLED     0x03u
#define GP_LCS_SD_SELECTABLE    0x07u
#define GP_LCS_SD_PERSONALIZED  0x0Fu
#define GP_LCS_LOCKED_BIT       0x80u /* applications and SDs: b8 = locked */
/* Application-specific application states: 0xxxx111 (b7-b4 free). */
#define GP_LCS_APP_SPECIFIC_MASK 0x87u
#define GP_LCS_APP_SPECIFIC_BITS 0x07u

/* OT_OK when v is a valid coding for kind; otherwise OT_E_RANGE. Card: 01 07
 * 0F 7F FF. ELF: 01. Application: 03, 07, 0xxxx111, locked 1xxxxx11. SD: 03,
 * 07, 0F, locked 1000xx11. An unknown kind: OT_E_ARG. */
ot_err gp_lcs_validate(enum gp_lcs_kind kind, uint8_t v);
/* True when v is a locked application or SD state (b8 set, b2b1 = 11). */
bool gp_lcs_is_locked(enum gp_lcs_kind kind, uint8_t v);
/* Static name of state v: "OP_READY", "INITIALIZED", "SECURED", "CARD_LOCKED",
 * "TERMINATED", "LOADED", "INSTALLED", "SELECTABLE", "PERSONALIZED", "LOCKED",
 * "APPLICATION_SPECIFIC"; "INVALID" for a coding gp_lcs_validate rejects.
 * Never NULL. */
const char *gp_lcs_name(enum gp_lcs_kind kind, uint8_t v);
/* The value of a state name for kind (case-insensitive; "LOCKED" gives the
 * card's 7F, or for apps/SDs the bare lock bit 0x80 to be OR-ed by the caller;
 * "CARD_LOCKED" is accepted for the card). Unknown: OT_E_FORMAT. */
ot_err gp_lcs_from_name(enum gp_lcs_kind kind, const char *name, uint8_t *out);
/* Name of a kind: "card", "elf", "application", "security-domain". */
const char *gp_lcs_kind_name(enum gp_lcs_kind kind);

#endif
