/* Secure-element records of the TSM registry (seed 002): the fields, their
 * validation and their JSON form.
 *
 * One row of a manufacturer's import file (CSV column or JSON member names):
 *   cin               card image number: 8..32 hex digits, even count (stored upper case)
 *   se_type           UICC | eSE | microSD
 *   mno               network operator name: 1..64 of [A-Za-z0-9._-]
 *   msisdn            optional; 5..15 digits, an optional leading '+' is dropped
 *   imsi              optional mobile subscription identity; 6..15 digits
 *   profile_id        1..64 of [A-Za-z0-9._:-]
 *   gp_version        GlobalPlatform version, "2.2.1": 2 or 3 dot-separated numbers
 *   jc_version        Java Card version, same form
 *   cert_level        certification level, 1..32 of [A-Za-z0-9 +._-], e.g. "EAL5+"
 *   expiry            date YYYY-MM-DD (a real calendar date, years 2000..2199)
 *   free_memory       bytes, integer 0..2^31-1
 *   master_key_index  integer 0..255
 *   isd_kvn isd_enc isd_mac isd_dek   optional initial ISD key set
 *   csd_kvn csd_enc csd_mac csd_dek   optional central-SD key set
 * A key set is all four or none: kvn 1..127, enc/mac/dek 16, 24 or 32 bytes in
 * hex, all three the same length. Keys go to the key store, never into the
 * registry tables nor into any answer.
 *
 * In CSV every value is text (an empty optional value is absent); in JSON the
 * integers are JSON integers, optional strings may be null or absent, and
 * unknown members are rejected. Validation stops at the first bad field and
 * names it (struct tsm_row_err).
 */
#ifndef OT_TSM_SEREC_H
#define OT_TSM_SEREC_H

#include "core/err.h"
#include "net/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TSM_CIN_MAX     32
#define TSM_MNO_MAX     64
#define TSM_MSISDN_MAX  15
#define TSM_IMSI_MAX    15
#define TSM_PROFILE_MAX 64
#define TSM_VERSION_MAX 16
#define TSM_CERT_MAX    32
#define TSM_KEY_MAX     32 /* AES-256 */
#define TSM_ROW_MSG_MAX 128

/* One SE as stored (no keys). Empty msisdn / imsi: none. */
struct tsm_se {
    int64_t id;
    char cin[TSM_CIN_MAX + 1];
    char se_type[8];
    char mno[TSM_MNO_MAX + 1];
    char msisdn[TSM_MSISDN_MAX + 1];
    char imsi[TSM_IMSI_MAX + 1];
    char profile_id[TSM_PROFILE_MAX + 1];
    char gp_version[TSM_VERSION_MAX + 1];
    char jc_version[TSM_VERSION_MAX + 1];
    char cert_level[TSM_CERT_MAX + 1];
    char expiry[11];
    int64_t free_memory;
    int64_t master_key_index;
    int64_t created_at; /* unix seconds */
};

/* A key set of the import; wiped by tsm_serec_wipe. */
struct tsm_keyset {
    bool present;
    uint8_t kvn;
    size_t key_len;
    uint8_t enc[TSM_KEY_MAX];
    uint8_t mac[TSM_KEY_MAX];
    uint8_t dek[TSM_KEY_MAX];
};

struct tsm_serec {
    struct tsm_se se;
    struct tsm_keyset isd;
    struct tsm_keyset csd;
};

/* Why a row was rejected: the field (a static name, or "" for the whole row)
 * and an English message. */
struct tsm_row_err {
    const char *field;
    char message[TSM_ROW_MSG_MAX];
};

/* The column names in canonical order (NULL-terminated), for CSV headers. */
extern const char *const tsm_serec_columns[];

/* Index of a column name, or -1 if unknown. */
int tsm_serec_column(const char *name);

/* Starts an empty record. */
void tsm_serec_init(struct tsm_serec *r);
/* Sets column col (tsm_serec_column) from text: the CSV path. An empty value
 * leaves an optional field absent. OT_E_FORMAT / OT_E_RANGE + e. */
ot_err tsm_serec_set_text(struct tsm_serec *r, int col, const char *val, size_t len,
                          struct tsm_row_err *e);
/* Checks required fields and key-set completeness after all columns were
 * set. mask: bit i set when column i was given a value. */
ot_err tsm_serec_finish(struct tsm_serec *r, uint32_t mask, struct tsm_row_err *e);
/* Whole-row parse of one JSON object: the JSON path. */
ot_err tsm_serec_from_json(const json_t *obj, struct tsm_serec *r, struct tsm_row_err *e);
/* Wipes the key material. */
void tsm_serec_wipe(struct tsm_serec *r);

/* Field-level validators shared with the query parameters. Each checks and
 * normalises s into out (capacity cap): OT_E_FORMAT when malformed. */
ot_err tsm_serec_norm_msisdn(const char *s, char *out, size_t cap);
ot_err tsm_serec_norm_imsi(const char *s, char *out, size_t cap);
ot_err tsm_serec_norm_cin(const char *s, char *out, size_t cap);
bool tsm_serec_type_ok(const char *s);
bool tsm_serec_mno_ok(const char *s);

/* Full SE data as a new JSON object (never keys); NULL on allocation failure. */
json_t *tsm_se_to_json(const struct tsm_se *se);
/* true when the stored fields (not id nor created_at) are equal. */
bool tsm_se_same(const struct tsm_se *a, const struct tsm_se *b);

#endif
