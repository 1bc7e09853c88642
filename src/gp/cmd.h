/* GlobalPlatform command builders (host side, transport-agnostic).
 *
 * Every builder writes one plain command APDU (no secure messaging; the
 * session layer wraps it) into a caller buffer:
 *   out, len: *len = capacity on input, bytes written on output; when the
 *             command does not fit, OT_E_BUF_SMALL and *len = bytes needed.
 *   ch:       logical channel 0-19, encoded into CLA (GPCS Tables 11-11/11-12);
 *             ch > 19: OT_E_RANGE.
 * GP commands use CLA 80 (ISO commands such as SELECT use 00), short Lc/Le
 * only (GPCS 11.1.5): a command data field longer than 255 bytes is
 * OT_E_TOO_LONG (GP chaining of long INSTALL/DELETE/PUT KEY data is done by
 * the session layer after wrapping, gp/chain.h). Commands that expect data
 * end with Le = 00. AIDs are 5-16 bytes (ISO 7816-5) unless a function says
 * otherwise: OT_E_RANGE. NULL pointers with a non-zero length: OT_E_ARG.
 * All functions are stateless and thread-safe.
 */
#ifndef OT_GP_CMD_H
#define OT_GP_CMD_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- class bytes (GPCS 11.1.4) ---- */
#define GP_CLA     0x80u /* GP proprietary command, channel 0, no SM */
#define GP_CLA_ISO 0x00u /* ISO interindustry command (SELECT, MANAGE CHANNEL, GET RESPONSE) */
#define GP_CLA_SM  0x04u /* b3: GP proprietary secure messaging (first interindustry CLA) */

/* ---- instruction bytes (GPCS Table 11-1) ---- */
#define GP_INS_DELETE            0xE4u /* GPCS 11.2 */
#define GP_INS_GET_DATA          0xCAu /* GPCS 11.3 */
#define GP_INS_GET_DATA_ODD      0xCBu /* GPCS 11.3 (ISO odd INS, e.g. 2F00 with ISO CLA) */
#define GP_INS_GET_STATUS        0xF2u /* GPCS 11.4 */
#define GP_INS_INSTALL           0xE6u /* GPCS 11.5 */
#define GP_INS_LOAD              0xE8u /* GPCS 11.6 */
#define GP_INS_MANAGE_CHANNEL    0x70u /* GPCS 11.7 */
#define GP_INS_PUT_KEY           0xD8u /* GPCS 11.8 */
#define GP_INS_SELECT            0xA4u /* GPCS 11.9 */
#define GP_INS_SET_STATUS        0xF0u /* GPCS 11.10 */
#define GP_INS_STORE_DATA        0xE2u /* GPCS 11.11 */
#define GP_INS_INITIALIZE_UPDATE 0x50u /* GPCS D.4.1 / E.5.1, Amd D 7.1 */
#define GP_INS_EXTERNAL_AUTH     0x82u /* GPCS D.4.2 / E.5.2, Amd D 7.2 */
#define GP_INS_BEGIN_RMAC        0x7Au /* GPCS D.4.3 / E.5.3 */
#define GP_INS_END_RMAC          0x78u /* GPCS D.4.4 / E.5.4 */
#define GP_INS_GET_RESPONSE      0xC0u /* ISO 7816-4 7.6.1 */

/* P1 b8 of DELETE, INSTALL, LOAD, PUT KEY: more commands follow (GPCS 11.1.6 chaining). */
#define GP_P1_MORE 0x80u

/* Largest short command data field and short command APDU (GPCS 11.1.5). */
#define GP_MAX_DATA    255u
#define GP_MAX_CMD_LEN (5u + GP_MAX_DATA + 1u)
#define GP_AID_MIN     5u
#define GP_AID_MAX     16u

/* ---- SELECT (GPCS 11.9) ---- */
#define GP_SELECT_P1_BY_NAME 0x04u
#define GP_SELECT_P2_FIRST   0x00u /* first or only occurrence */
#define GP_SELECT_P2_NEXT    0x02u /* next occurrence */

/* SELECT by DF name: 00 A4 04 P2 Lc AID 00. aid_len 1-16 (partial names are
 * allowed); aid_len 0 = select the ISD with no data (00 A4 04 00 00, case 2;
 * with next set: OT_E_ARG). */
ot_err gp_cmd_select(uint8_t ch, const uint8_t *aid, size_t aid_len, bool next, uint8_t *out,
                     size_t *len);

/* ---- INSTALL (GPCS 11.5) ---- */
#define GP_INSTALL_FOR_LOAD               0x02u
#define GP_INSTALL_FOR_INSTALL            0x04u
#define GP_INSTALL_FOR_MAKE_SELECTABLE    0x08u
#define GP_INSTALL_FOR_EXTRADITION        0x10u
#define GP_INSTALL_FOR_PERSONALIZATION    0x20u
#define GP_INSTALL_FOR_REGISTRY_UPDATE    0x40u
#define GP_INSTALL_FOR_INSTALL_SELECTABLE 0x0Cu /* install + make selectable */
#define GP_INSTALL_FOR_LOAD_INSTALL_SEL   0x0Eu /* combined load, install, make selectable */
#define GP_INSTALL_P2_NONE                0x00u
#define GP_INSTALL_P2_COMBINED_BEGIN      0x01u /* first command of a combined 0E sequence */
#define GP_INSTALL_P2_COMBINED_END        0x03u /* last command of a combined 0E sequence */

/* Parameter tags (GPCS Tables 11-49/11-50). */
#define GP_TAG_APP_PARAMS   0xC9u /* application-specific parameters */
#define GP_TAG_SYS_PARAMS   0xEFu /* system-specific parameters */
#define GP_TAG_UICC_PARAMS  0xEAu /* TS 102 226 UICC specific template */
#define GP_TAG_NV_CODE_MIN  0xC6u
#define GP_TAG_VOLATILE_MIN 0xC7u /* volatile memory minimum or quota */
#define GP_TAG_NV_DATA_MIN  0xC8u /* non-volatile data minimum or quota */
#define GP_TAG_TS102226_SYS 0xCAu /* TS 102 226 system parameters */
#define GP_TAG_IMPLICIT_SEL 0xCFu
#define GP_TAG_RESTRICT     0xD9u
#define GP_TAG_TOKEN_CRT    0xB6u /* control reference template for digital signature */
#define GP_TAG_TOKEN        0x9Eu /* delete token (GPCS 11.2.2.3) */

/* What gp_install_params_encode writes. A zero quota means "absent". */
struct gp_install_params {
    bool with_c9;              /* write C9 (mandatory in for-install data, may be empty) */
    const uint8_t *app_params; /* C9 content (may be NULL with length 0) */
    size_t app_params_len;
    uint32_t nv_code_min;    /* C6: 2 bytes when <= FFFF, else 4 */
    uint32_t nv_data_quota;  /* C8: 2 or 4 bytes */
    uint32_t volatile_quota; /* C7: 2 or 4 bytes */
    const uint8_t *ts102226; /* CA content (inside EF) */
    size_t ts102226_len;
    const uint8_t *sys_extra; /* further complete TLVs placed inside EF (CF, D9, ...) */
    size_t sys_extra_len;
    const uint8_t *uicc; /* EA content */
    size_t uicc_len;
};

/* Encodes the parameters field (without its own length): [C9 L app] [EF L
 * {C6 C8 C7 CA extra}] [EA L uicc], EF and EA only when they have content.
 * The order C8 before C7 is the one pySim and GPPro use. out/len as above
 * (max 255 bytes: OT_E_TOO_LONG). */
ot_err gp_install_params_encode(const struct gp_install_params *p, uint8_t *out, size_t *len);

/* Fields of an INSTALL data field; which are used depends on the variant
 * (reference §2.6 table), unused ones must be empty (else OT_E_ARG). */
struct gp_install_args {
    const uint8_t *elf_aid; /* load, install: Executable Load File AID */
    size_t elf_aid_len;
    const uint8_t *module_aid; /* install: Executable Module AID */
    size_t module_aid_len;
    const uint8_t *app_aid; /* install: instance AID; make selectable, perso,
                               extradition, registry update: the target */
    size_t app_aid_len;
    const uint8_t *sd_aid; /* load: associated SD (0 = current); extradition:
                              target SD; registry update: SD (may be 0) */
    size_t sd_aid_len;
    const uint8_t *hash; /* load: LFDB hash, 0-127 bytes */
    size_t hash_len;
    const uint8_t *privs; /* 0, 1 or 3 bytes (1 and 3 checked with gp_privs_validate) */
    size_t privs_len;
    const uint8_t *params; /* parameters field, e.g. from gp_install_params_encode */
    size_t params_len;
    const uint8_t *token;
    size_t token_len;
    bool more; /* P1.b8: further INSTALL commands follow */
};

/* Generic INSTALL: p1 is one of the GP_INSTALL_FOR_* roles (or 0C / 0E), p2
 * 00, 01 or 03 (01/03 only with 0E). The data layout follows the role: load
 * for 02 and 0E/01, install for 04, 0C and 0E/03, and so on. Invalid
 * combinations: OT_E_ARG. Invalid privileges: OT_E_RANGE. */
ot_err gp_cmd_install(uint8_t ch, uint8_t p1, uint8_t p2, const struct gp_install_args *a,
                      uint8_t *out, size_t *len);
/* L ELF ‖ L SD ‖ L hash ‖ L3 params ‖ L3 token. */
ot_err gp_cmd_install_for_load(uint8_t ch, const struct gp_install_args *a, uint8_t *out,
                               size_t *len);
/* L ELF ‖ L module ‖ L app ‖ L privs ‖ L3 params (must start with C9 or be
 * empty, in which case C9 00 is written) ‖ L3 token; P1 04, or 0C with
 * make_selectable. */
ot_err gp_cmd_install_for_install(uint8_t ch, const struct gp_install_args *a, bool make_selectable,
                                  uint8_t *out, size_t *len);
/* 00 ‖ 00 ‖ L app ‖ L privs ‖ L3 params ‖ L3 token. */
ot_err gp_cmd_install_for_make_selectable(uint8_t ch, const struct gp_install_args *a, uint8_t *out,
                                          size_t *len);
/* L target SD ‖ 00 ‖ L app-or-ELF ‖ 00 ‖ L3 params ‖ L3 token. */
ot_err gp_cmd_install_for_extradition(uint8_t ch, const struct gp_install_args *a, uint8_t *out,
                                      size_t *len);
/* L SD (0 allowed) ‖ 00 ‖ L app (0 = the OPEN itself) ‖ L privs ‖ L3 params ‖ L3 token. */
ot_err gp_cmd_install_for_registry_update(uint8_t ch, const struct gp_install_args *a, uint8_t *out,
                                          size_t *len);
/* 00 ‖ 00 ‖ L app ‖ 00 ‖ 00 ‖ 00. */
ot_err gp_cmd_install_for_personalization(uint8_t ch, const uint8_t *app_aid, size_t app_aid_len,
                                          uint8_t *out, size_t *len);

/* ---- DELETE (GPCS 11.2) ---- */
#define GP_DELETE_P2_OBJECT  0x00u
#define GP_DELETE_P2_RELATED 0x80u /* object and related objects */
#define GP_TAG_AID           0x4Fu
#define GP_TAG_DELETE_KID    0xD0u
#define GP_TAG_DELETE_KVN    0xD2u

struct gp_delete_args {
    const uint8_t *aid; /* ELF or application AID */
    size_t aid_len;
    bool related;       /* P2 80: the ELF and its applications */
    const uint8_t *crt; /* B6 content (optional; only with a token) */
    size_t crt_len;
    const uint8_t *token; /* 9E content (optional) */
    size_t token_len;
    bool more; /* P1.b8 */
};

/* 80 E4 00|80 00|80 Lc 4F L AID [B6 L crt] [9E L token] 00. */
ot_err gp_cmd_delete(uint8_t ch, const struct gp_delete_args *a, uint8_t *out, size_t *len);
/* 80 E4 00 00 Lc [D0 01 KID] [D2 01 KVN] 00. kid / kvn -1 = omitted (one of
 * them must be given: else OT_E_ARG); other values outside 0-255: OT_E_RANGE. */
ot_err gp_cmd_delete_key(uint8_t ch, int kid, int kvn, bool more, uint8_t *out, size_t *len);

/* ---- GET STATUS (GPCS 11.4) ---- */
#define GP_STATUS_P1_ISD         0x80u
#define GP_STATUS_P1_APPS        0x40u /* applications and SSDs */
#define GP_STATUS_P1_ELF         0x20u
#define GP_STATUS_P1_ELF_MODULES 0x10u
#define GP_STATUS_P2_NEXT        0x01u /* b1: get next occurrence */
#define GP_STATUS_P2_TLV         0x02u /* b2: E3 TLV format (else legacy) */
#define GP_TAG_TAG_LIST          0x5Cu

struct gp_status_query {
    uint8_t p1;         /* one GP_STATUS_P1_* value */
    bool tlv;           /* P2.b2: E3 format */
    bool next;          /* P2.b1: get next (not with P1 80: OT_E_ARG) */
    const uint8_t *aid; /* search qualifier 4F (0-16 bytes, prefix match; 0 = all) */
    size_t aid_len;
    const uint32_t *tags; /* tag list 5C: NULL = none, ntags 0 = "5C 00"; 1-3 byte tags */
    size_t ntags;
};

/* 80 F2 P1 P2 Lc 4F L AID [5C L tags] 00. */
ot_err gp_cmd_get_status(uint8_t ch, const struct gp_status_query *q, uint8_t *out, size_t *len);

/* ---- SET STATUS (GPCS 11.10) ---- */
#define GP_SET_STATUS_P1_CARD        0x80u
#define GP_SET_STATUS_P1_APP         0x40u
#define GP_SET_STATUS_P1_SD_AND_APPS 0x60u
#define GP_SET_STATUS_P2_LOCK        0x80u /* another SD locking an app */
#define GP_SET_STATUS_P2_UNLOCK      0x00u

/* 80 F0 P1 P2 [Lc AID] (no Le). P1 80 (card): p2 must be 07, 0F, 7F or FF
 * (else OT_E_RANGE); aid (the ISD AID) is optional there (0 = case 1).
 * P1 40 / 60: aid required. Other P1: OT_E_ARG. */
ot_err gp_cmd_set_status(uint8_t ch, uint8_t p1, uint8_t p2, const uint8_t *aid, size_t aid_len,
                         uint8_t *out, size_t *len);

/* ---- PUT KEY (GPCS 11.8, Amd D 7.2) ---- */
#define GP_PUT_KEY_P2_MULTI  0x80u /* b8: several keys in the data field */
#define GP_PUT_KEY_MAX_KEYS  6u    /* 6 AES-256 keys fill the 255-byte data field */
#define GP_KEY_TYPE_DES      0x80u /* GPCS 11.1.8 (3DES, mode implicit) */
#define GP_KEY_TYPE_TLS_PSK  0x85u
#define GP_KEY_TYPE_AES      0x88u
#define GP_KEY_TYPE_EXTENDED 0xFFu
#define GP_KCV_LEN           3u

struct gp_put_key_key {
    uint8_t type;         /* GP_KEY_TYPE_AES (16/24/32 bytes) or GP_KEY_TYPE_DES (16/24) */
    const uint8_t *value; /* the clear key */
    size_t len;
};

struct gp_put_key_args {
    uint8_t old_kvn; /* P1 b7-b1: key set replaced; 0 = add a new key set */
    uint8_t new_kvn; /* 01-7F */
    uint8_t kid;     /* P2 b7-b1: identifier of the first key (01-7F) */
    const struct gp_put_key_key *keys;
    size_t nkeys; /* 1..GP_PUT_KEY_MAX_KEYS; > 1 sets P2.b8 */
    /* AES keys are wrapped with AES-CBC (IV 0) under an AES DEK of 16/24/32
     * bytes; 3DES keys with 3DES-ECB under a 16-byte DEK. */
    const uint8_t *dek;
    size_t dek_len;
    bool more; /* P1.b8 */
};

/* What the card must answer to a PUT KEY (gp_parse_put_key_resp). */
struct gp_put_key_expect {
    uint8_t kvn;
    size_t nkeys;
    uint8_t kcv[GP_PUT_KEY_MAX_KEYS][GP_KCV_LEN];
};

/* 80 D8 P1 P2 Lc KVN {key data}... 00 with, per key,
 *   AES:  88 L 10|18|20 <AES-CBC(DEK, key padded to 16)> 03 <KCV>  (Amd D Table 7-10)
 *   3DES: 80 10|18 <3DES-ECB(DEK, key)> 03 <KCV>                  (GPCS 11.8.2.3)
 * Mixed types in one command are allowed. Bad lengths, KVN, KID, nkeys, or a
 * DEK of the wrong size: OT_E_ARG / OT_E_KEY; crypto failures as returned by
 * src/crypto. expect (may be NULL) receives the KVN and KCVs the card's
 * answer must carry. Temporary key material is wiped. */
ot_err gp_cmd_put_key(uint8_t ch, const struct gp_put_key_args *a, uint8_t *out, size_t *len,
                      struct gp_put_key_expect *expect);

/* ---- STORE DATA (GPCS 11.11) ---- */
#define GP_STORE_P1_LAST     0x80u /* b8 */
#define GP_STORE_P1_ENC_APP  0x20u /* b7b6 = 01: application-dependent encryption */
#define GP_STORE_P1_ENC_ALL  0x60u /* b7b6 = 11: all values encrypted */
#define GP_STORE_P1_ENC_MASK 0x60u
#define GP_STORE_P1_DGI      0x08u /* b5b4 = 01: DGI format */
#define GP_STORE_P1_BER      0x10u /* b5b4 = 10: BER-TLV format */
#define GP_STORE_P1_FMT_MASK 0x18u
#define GP_STORE_P1_RESPONSE 0x01u /* b1: response data expected (case 4) */
#define GP_STORE_P1_RFU_MASK 0x06u

/* 80 E2 P1 block Lc data [00 when P1.b1]. data 1-255 bytes. P1 with RFU bits
 * (b3 b2, b7b6 = 10, b5b4 = 11): OT_E_ARG. */
ot_err gp_cmd_store_data(uint8_t ch, uint8_t p1, uint8_t block, const uint8_t *data, size_t n,
                         uint8_t *out, size_t *len);

/* Splits a data stream into STORE DATA commands (the split is at arbitrary
 * byte positions; GPCS 11.11.2 lets DGIs and TLVs span blocks). Blocks are
 * numbered from 00; the last carries P1.b8. More than 256 blocks: OT_E_LIMIT.
 * The splitter borrows data until the last block was produced. */
struct gp_store_split {
    const uint8_t *data;
    size_t left;
    uint8_t p1;       /* flags of every block, without b8 */
    size_t block_max; /* data bytes per block */
    unsigned block;   /* number of the next block */
    bool done;
};

/* p1: format/encryption/response flags (b8 is ignored); block_max 1-255 (0 =
 * 255; smaller values leave room for secure messaging). n 0: OT_E_ARG. */
ot_err gp_store_split_init(struct gp_store_split *s, const uint8_t *data, size_t n, uint8_t p1,
                           size_t block_max);
/* Writes the next command; *last is set on the final block. Called again
 * after the final block: OT_E_STATE. */
ot_err gp_store_split_next(struct gp_store_split *s, uint8_t ch, uint8_t *out, size_t *len,
                           bool *last);

/* ---- GET DATA (GPCS 11.3) ---- */
#define GP_TAG_IIN            0x0042u /* issuer identification number */
#define GP_TAG_CIN            0x0045u /* card image number */
#define GP_TAG_CARD_DATA      0x0066u /* card recognition data */
#define GP_TAG_CARD_CAPS      0x0067u /* card capability information */
#define GP_TAG_SEQ_COUNTER    0x00C1u /* sequence counter of the default key version */
#define GP_TAG_CONF_COUNTER   0x00C2u /* confirmation counter */
#define GP_TAG_KDD            0x00CFu /* key diversification data (vendor) */
#define GP_TAG_SEC_LEVEL      0x00D3u /* current security level */
#define GP_TAG_KEY_INFO       0x00E0u /* key information template */
#define GP_TAG_APP_LIST       0x2F00u /* list of applications */
#define GP_TAG_SD_MANAGER_URL 0x5F50u
#define GP_TAG_CPLC           0x9F7Fu /* card production life cycle (Visa GP) */
#define GP_TAG_EXT_CARD_RES   0xFF21u /* extended card resources (TS 102 226) */

/* 80 CA P1 P2 00 with P1 P2 = tag; for 2F00 the tag list 5C 00 is sent as
 * command data (80 CA 2F 00 02 5C 00 00). */
ot_err gp_cmd_get_data(uint8_t ch, uint16_t tag, uint8_t *out, size_t *len);

#endif
