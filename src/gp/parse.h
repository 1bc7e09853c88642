/* GlobalPlatform response parsers (host side).
 *
 * Every parser reads untrusted R-APDU data (without SW1 SW2) through the
 * bounds-checked buf_rd cursor and tlv_next (core/tlv.h), never allocates,
 * and either fills caller-provided fixed-size structures or returns pointers
 * into the input (documented per field). Errors:
 *   OT_E_TLV        malformed BER-TLV (bad tag, bad length, length past the end)
 *   OT_E_TRUNCATED  a fixed-layout (non-TLV) field ends early
 *   OT_E_FORMAT     well-formed TLV/bytes with wrong content (missing mandatory
 *                   tag, value of the wrong size, AID longer than 16 ...)
 *   OT_E_TRAILING   bytes after a complete fixed-layout object
 *   OT_E_BUF_SMALL  more entries than the caller's array holds (the count
 *                   needed is reported)
 * NULL arguments: OT_E_ARG. All functions are thread-safe.
 */
#ifndef OT_GP_PARSE_H
#define OT_GP_PARSE_H

#include "core/buf.h"
#include "core/err.h"
#include "gp/cmd.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An AID copied out of a response. */
struct gp_aid {
    uint8_t len; /* 0 = absent */
    uint8_t b[GP_AID_MAX];
};

/* ---- GET STATUS (GPCS 11.4.3) ---- */

#define GP_TAG_STATUS_ENTRY 0xE3u   /* GP registry related data */
#define GP_TAG_LCS          0x9F70u /* life-cycle state */
#define GP_TAG_PRIVS        0xC5u
#define GP_TAG_IMPLICIT     0xCFu
#define GP_TAG_ELF_AID      0xC4u
#define GP_TAG_ELF_VERSION  0xCEu
#define GP_TAG_MODULE_AID   0x84u
#define GP_TAG_ASSOC_SD     0xCCu

#define GP_STATUS_MAX_MODULES  16u /* modules kept per ELF; more are counted only */
#define GP_STATUS_MAX_IMPLICIT 4u  /* CF values kept per entry; more are counted only */
#define GP_STATUS_MAX_VERSION  8u  /* CE bytes kept */

enum gp_status_fmt {
    GP_STATUS_FMT_TLV = 0,    /* P2.b2 = 1: E3 templates */
    GP_STATUS_FMT_LEGACY = 1, /* P2.b2 = 0: length-value records */
};

struct gp_status_entry {
    struct gp_aid aid; /* 4F; always present (5-16 bytes) */
    bool has_lcs;
    uint8_t lcs;       /* 9F70 */
    uint8_t privs_len; /* C5: 0 (absent) to 3 */
    uint8_t privs[3];  /* as received, left-aligned */
    size_t nimplicit;  /* CF occurrences (may exceed GP_STATUS_MAX_IMPLICIT) */
    uint8_t implicit[GP_STATUS_MAX_IMPLICIT];
    struct gp_aid elf_aid; /* C4 */
    uint8_t version_len;   /* CE, first GP_STATUS_MAX_VERSION bytes */
    uint8_t version[GP_STATUS_MAX_VERSION];
    size_t nmodules;                              /* 84 / legacy module count, all of them */
    struct gp_aid modules[GP_STATUS_MAX_MODULES]; /* the first GP_STATUS_MAX_MODULES */
    struct gp_aid sd_aid;                         /* CC */
};

/* Iterator over the entries of one GET STATUS response, without allocation.
 * p1 is the GET STATUS P1 of the request (needed by the legacy format: P1 10
 * records carry module lists). The iterator borrows the input. */
struct gp_status_iter {
    struct buf_rd rd;
    enum gp_status_fmt fmt;
    uint8_t p1;
};

void gp_status_iter_init(struct gp_status_iter *it, const uint8_t *p, size_t n,
                         enum gp_status_fmt fmt, uint8_t p1);
/* Decodes the next entry into *e (fully overwritten). At the end of the input:
 * OT_OK with *done = true. Errors leave the iterator at the failing entry.
 * TLV format: a top-level tag other than E3 or an E3 without one 4F of 5-16
 * bytes, a 9F70 not of 1 byte, a C5 not of 1-3 bytes, a CF not of 1 byte, an
 * AID longer than 16 bytes: OT_E_FORMAT; unknown tags inside E3 are skipped.
 * Legacy format: records "len AID LCS privs" (P1 80/40/20) or "len AID LCS
 * privs n {len AID}*n" (P1 10); a record cut short: OT_E_TRUNCATED; an AID
 * length of 0 or over 16: OT_E_FORMAT. */
ot_err gp_status_iter_next(struct gp_status_iter *it, struct gp_status_entry *e, bool *done);

/* Parses a whole response into entries[0..*count): *count = capacity in,
 * entries out. The whole input is validated first; more entries than the
 * capacity: OT_E_BUF_SMALL with *count = entries needed (entries[] then holds
 * the first ones). A 6310 response is parsed the same way: the caller pages
 * with "get next" (gp_status_more) and appends. */
ot_err gp_parse_status(const uint8_t *p, size_t n, enum gp_status_fmt fmt, uint8_t p1,
                       struct gp_status_entry *entries, size_t *count);

/* GET STATUS paging (GPCS 11.4.3): 6310 = more data, send the same command
 * with P2.b1 set. */
#define GP_SW_MORE_DATA 0x6310u
bool gp_status_more(uint16_t sw);
/* Status word of a GET STATUS response: 9000 -> OT_OK, *more = false; 6310 ->
 * OT_OK, *more = true; anything else -> its sw_to_err code (6A88 "nothing
 * matches" is OT_E_SW_REF_NOT_FOUND), never OT_OK. */
ot_err gp_status_check_sw(uint16_t sw, bool *more);

/* ---- PUT KEY response (GPCS 11.8.3) ---- */

/* Checks "KVN KCV1 [KCV2...]" against what gp_cmd_put_key expected. Short:
 * OT_E_TRUNCATED; extra bytes: OT_E_TRAILING; other KVN: OT_E_FORMAT; a
 * different KCV: OT_E_KCV. */
ot_err gp_parse_put_key_resp(const uint8_t *p, size_t n, const struct gp_put_key_expect *exp);

/* ---- CPLC (GET DATA 9F7F) ---- */

#define GP_CPLC_LEN 42u

/* Card Production Life Cycle data, fields as 2- or 4-byte big-endian values. */
struct gp_cplc {
    uint16_t ic_fabricator;
    uint16_t ic_type;
    uint16_t os_id;
    uint16_t os_release_date; /* YDDD BCD */
    uint16_t os_release_level;
    uint16_t ic_fabrication_date;
    uint32_t ic_serial;
    uint16_t ic_batch;
    uint16_t module_fabricator;
    uint16_t module_packaging_date;
    uint16_t icc_manufacturer;
    uint16_t ic_embedding_date;
    uint16_t pre_perso_id;
    uint16_t pre_perso_date;
    uint32_t pre_perso_equipment;
    uint16_t perso_id;
    uint16_t perso_date;
    uint32_t perso_equipment;
};

/* Accepts the bare 42 bytes, or the TLV 9F7F 2A <42 bytes> (GP CLA response).
 * Exactly 42 bytes are always read as the bare form. Any other input starting
 * with 9F 7F follows TLV rules (OT_E_TLV, OT_E_TRAILING) and a value that is
 * not 42 bytes is OT_E_FORMAT; otherwise shorter than 42 is OT_E_TRUNCATED and
 * longer OT_E_TRAILING. */
ot_err gp_parse_cplc(const uint8_t *p, size_t n, struct gp_cplc *out);
/* One "Name=HEX" line per field, dates with their decoded year digit and day
 * ("OSReleaseDate=1234 (year x1, day 234)"). NUL-terminated; len in =
 * capacity, out = characters written without the NUL (needed with the NUL on
 * OT_E_BUF_SMALL). */
ot_err gp_cplc_to_text(const struct gp_cplc *c, char *out, size_t *len);

/* ---- Card recognition data (GET DATA 66, GPCS H.2) ---- */

#define GP_CARD_DATA_MAX_SCP 4u

struct gp_card_data {
    bool gp_rid;        /* 06 {gp 1}: GP card recognition data OID */
    size_t version_len; /* 60 {gp 2 v...}: card management version arcs */
    uint8_t version[4]; /* e.g. 2, 1, 1 */
    bool id_scheme;     /* 63 {gp 3} */
    size_t nscp;        /* 64 {gp 4 scp i} entries (first GP_CARD_DATA_MAX_SCP kept) */
    struct {
        uint8_t id; /* 01, 02, 03, 81 ... */
        uint8_t i;  /* implementation option */
    } scp[GP_CARD_DATA_MAX_SCP];
    const uint8_t *card_config; /* 65 content, points into the input (NULL = absent) */
    size_t card_config_len;
    const uint8_t *chip_details; /* 66 content inside 73, points into the input */
    size_t chip_details_len;
};

/* Accepts "66 L 73 L {...}" (GP CLA) or "73 L {...}" (ISO CLA: value only).
 * No 73 template: OT_E_FORMAT; an OID in 60/63/64 not under the GP arc
 * 1.2.840.114283 or too short: OT_E_FORMAT; unknown tags are skipped. */
ot_err gp_parse_card_data(const uint8_t *p, size_t n, struct gp_card_data *out);

/* ---- Key information template (GET DATA E0, GPCS 11.3.3.1) ---- */

#define GP_KEYINFO_MAX_COMPONENTS 8u

struct gp_key_info {
    uint8_t kid;
    uint8_t kvn;
    bool extended; /* FF tt type coding, 2-byte lengths */
    size_t ncomp;
    struct {
        uint16_t type; /* 80, 88, A1 ...; extended: the tt of FF tt */
        uint16_t len;  /* key component length in bytes */
    } comp[GP_KEYINFO_MAX_COMPONENTS];
    uint8_t usage_len; /* extended only: key usage qualifier (0-2 bytes) */
    uint8_t usage[2];
    uint8_t access_len; /* extended only: key access (0-2 bytes) */
    uint8_t access[2];
};

/* Accepts "E0 L {C0 L ...}..." or a bare sequence of C0 templates. Each C0:
 * KID KVN then (type len)+ in basic format, or (FF tt len2)+ [L usage [L
 * access]] in extended format. An empty C0 is skipped. A C0 shorter than 4
 * bytes or cut inside a component: OT_E_FORMAT; more than
 * GP_KEYINFO_MAX_COMPONENTS components: OT_E_FORMAT; other tags are skipped.
 * keys/count as for gp_parse_status (OT_E_BUF_SMALL + needed). */
ot_err gp_parse_key_info(const uint8_t *p, size_t n, struct gp_key_info *keys, size_t *count);

/* ---- IIN / CIN (GET DATA 42 / 45) ---- */

/* The value of the data object with the expected tag; accepts the full TLV
 * (GP CLA) only. Points into p. Other tag: OT_E_FORMAT; trailing bytes:
 * OT_E_TRAILING; empty value: OT_E_FORMAT. */
ot_err gp_parse_iin(const uint8_t *p, size_t n, const uint8_t **v, size_t *vlen);
ot_err gp_parse_cin(const uint8_t *p, size_t n, const uint8_t **v, size_t *vlen);

/* ---- FCI of SELECT (GPCS 11.9.3, Table 11-82) ---- */

#define GP_TAG_FCI          0x6Fu
#define GP_TAG_DF_NAME      0x84u
#define GP_TAG_FCI_PROP     0xA5u
#define GP_TAG_SD_MGMT_DATA 0x73u
#define GP_TAG_APP_PROD_LCD 0x9F6Eu
#define GP_TAG_MAX_CMD_LEN  0x9F65u

struct gp_fci {
    struct gp_aid aid;   /* 84 (len 0 when absent) */
    const uint8_t *prop; /* A5 content, into the input (NULL = absent) */
    size_t prop_len;
    const uint8_t *sd_mgmt; /* 73 inside A5, into the input */
    size_t sd_mgmt_len;
    const uint8_t *prod_lcd; /* 9F6E inside A5, into the input */
    size_t prod_lcd_len;
    bool has_max_cmd_len;
    uint32_t max_cmd_len; /* 9F65 (1-4 bytes) */
};

/* Input starts with 6F (else OT_E_FORMAT; trailing bytes after it:
 * OT_E_TRAILING). 84 longer than 16 bytes, 9F65 empty or over 4 bytes:
 * OT_E_FORMAT. Unknown tags are skipped. */
ot_err gp_parse_fci(const uint8_t *p, size_t n, struct gp_fci *out);

#endif
