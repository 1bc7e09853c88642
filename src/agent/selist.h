/* The SE configurator (seed 001): the device's SE list, kept on disk, and
 * the verification an SE passes before it enters the list.
 *
 * Verification (agent_se_verify): open a session on the reader, SELECT the
 * ISD on the basic channel, read CIN (GET DATA 0045), IIN (0042, optional),
 * CPLC (9F7F) and card recognition data (0066), check that the answers are
 * well formed (gp/parse.h), then ask the identity check whether the platform
 * knows this CIN for this device. Only then is the SE added or updated.
 *
 * The list is one JSON file (STATE_DIR/selist.json) written crash-safely:
 * a temporary file, fsync, rename over the old one, fsync of the directory.
 * A crash leaves either the old or the new list. A file that does not parse
 * or breaks a rule is OT_E_CORRUPT and is never overwritten silently.
 */
#ifndef OT_AGENT_SELIST_H
#define OT_AGENT_SELIST_H

#include "agent/conv.h"
#include "core/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_SE_MAX        16u /* ota.md 7: at most 16 SEs */
#define AGENT_CIN_MAX       32u
#define AGENT_IIN_MAX       32u
#define AGENT_CPLC_MAX      64u
#define AGENT_CARD_DATA_MAX 255u
#define AGENT_ISD_AID_DEF   "A000000151000000"

struct agent_se {
    char reader[AGENT_READER_NAME_MAX + 1];
    uint8_t cin[AGENT_CIN_MAX];
    size_t cin_len;
    uint8_t iin[AGENT_IIN_MAX]; /* iin_len 0: the card has none */
    size_t iin_len;
    uint8_t cplc[AGENT_CPLC_MAX]; /* GET DATA 9F7F answer (9F7F 2A ...) */
    size_t cplc_len;
    uint8_t card_data[AGENT_CARD_DATA_MAX]; /* GET DATA 0066 answer (66 L 73 ...) */
    size_t card_data_len;
    uint8_t atr[AGENT_ATR_MAX];
    size_t atr_len;
    int64_t verified_at; /* unix seconds */
};

struct agent_selist {
    size_t n;
    struct agent_se se[AGENT_SE_MAX];
};

/* Loads STATE_DIR/selist.json (absent: an empty list). Corrupt: OT_E_CORRUPT
 * with the reason in why (may be NULL). */
ot_err agent_selist_load(const char *state_dir, struct agent_selist *l, char *why, size_t why_cap);
/* Writes the list crash-safely. OT_E_IO with errno's reason logged. */
ot_err agent_selist_save(const char *state_dir, const struct agent_selist *l);

/* By reader name / by CIN; NULL when absent. */
struct agent_se *agent_selist_by_reader(struct agent_selist *l, const char *reader);
struct agent_se *agent_selist_by_cin(struct agent_selist *l, const uint8_t *cin, size_t n);
/* Adds se or replaces the entry of the same reader. Another reader with the
 * same CIN: OT_E_CONFLICT; full: OT_E_LIMIT. */
ot_err agent_selist_put(struct agent_selist *l, const struct agent_se *se);
/* Removes the reader's entry; OT_E_NOT_FOUND when there is none. */
ot_err agent_selist_remove(struct agent_selist *l, const char *reader);

/* The identity check: OT_OK when the platform knows cin for this device,
 * OT_E_FORBIDDEN when it does not (why says so), another error when the
 * check itself failed (platform unreachable). */
struct agent_idcheck {
    ot_err (*check)(void *ctx, const struct agent_se *se, char *why, size_t why_cap);
    void *ctx;
};

/* The check against a list of known CINs (what mno's GET P/device answers
 * as known_cins, docs/ota.md section 3). */
struct agent_known_cins {
    size_t n;
    struct {
        uint8_t b[AGENT_CIN_MAX];
        size_t len;
    } cin[AGENT_SE_MAX * 4];
};
ot_err agent_known_cins_check(void *ctx, const struct agent_se *se, char *why, size_t why_cap);

/* Reads the card behind the reader into se (reader, ATR, CIN, IIN, CPLC,
 * card data; verified_at = now) and runs the identity check. isd_aid: the
 * ISD's AID (5..16 bytes). No card: OT_E_NO_CARD; a card answer that does
 * not parse: that parser's error (why tells which object); the check's
 * refusal: OT_E_FORBIDDEN. */
ot_err agent_se_verify(struct agent_reader *r, const uint8_t *isd_aid, size_t isd_aid_len,
                       const struct agent_idcheck *chk, struct agent_se *se, char *why,
                       size_t why_cap);
/* The SE object of ota.md section 7 ({"cin","reader","iin","cplc","card_data",
 * "verified_at"}); a new reference, NULL when out of memory. */
json_t *agent_se_to_json(const struct agent_se *se);

#endif
