/* Provisioning rules of the central TSM, sans I/O (docs/tsm.md): the
 * service-instance states of BSI TR-03165 and their transitions, the
 * eligibility of an SE for a service flavor, the SP's scripts (lists of
 * C-APDUs) and the SP's key rotation (a PUT KEY carrying its new keys in
 * the clear, which the TSM wraps under the SD's DEK it holds).
 *
 * Pure functions over caller buffers; thread-safe.
 */
#ifndef OT_TSM_PROV_H
#define OT_TSM_PROV_H

#include "core/err.h"
#include "tsm/serec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A service instance on an SE (TR-03165 ServiceInstanceState). */
enum tsm_inst_state {
    TSM_IS_NOT_DEPLOYED = 0,
    TSM_IS_INITIALIZED,  /* UnderDeployment:Initialized - accepted, nothing on the card yet */
    TSM_IS_INSTALLED,    /* UnderDeployment:Installed - SP SD, instance, extradited (pre-perso) */
    TSM_IS_PERSONALIZED, /* UnderDeployment:Personalized - the SP's personalization ran */
    TSM_IS_OPERATIONAL,  /* DeployedOperational - activated */
    TSM_IS_SUSPENDED,    /* DeployedSuspended - deactivated or locked */
    TSM_IS_ERROR,        /* InError - a card operation failed; see the reason */
    TSM_IS_N
};

/* "NotDeployed", "UnderDeployment:Initialized", ... (never NULL). */
const char *tsm_inst_state_name(enum tsm_inst_state s);
/* The name back; OT_E_FORMAT for any other text. */
ot_err tsm_inst_state_parse(const char *s, enum tsm_inst_state *out);

/* SP operations on a service instance. */
enum tsm_inst_op {
    TSM_OP_PREPERSO = 0,
    TSM_OP_PERSO,    /* a personalization script (the first one moves Installed -> Personalized) */
    TSM_OP_ACTIVATE, /* Personalized | Suspended -> Operational */
    TSM_OP_DEACTIVATE, /* Operational -> Suspended */
    TSM_OP_LOCK,       /* Operational -> Suspended (reason lock) */
    TSM_OP_UNLOCK,     /* Suspended -> Operational */
    TSM_OP_DELETE,     /* any deployed state or InError -> NotDeployed */
    TSM_OP_N
};
const char *tsm_inst_op_name(enum tsm_inst_op op);

/* Whether op may start from state s; *why (may be NULL) gets the reason of
 * a refusal ("the service instance is UnderDeployment:Installed; activate
 * needs ..."). */
bool tsm_inst_op_allowed(enum tsm_inst_state s, enum tsm_inst_op op, char *why, size_t cap);
/* The state after op succeeded on the card (from s). */
enum tsm_inst_state tsm_inst_after(enum tsm_inst_state s, enum tsm_inst_op op);

/* "2.2.1" against "2.2": -1, 0, 1 by numeric components (missing = 0).
 * Malformed text sorts lowest. */
int tsm_version_cmp(const char *a, const char *b);

/* A service flavor's technical requirements (TR-03165 flavor). */
struct tsm_flavor_req {
    const char *se_type;     /* "eSE", "UICC", "microSD" */
    const char *min_gp;      /* "" none */
    const char *min_jc;      /* "" none */
    int64_t min_free_memory; /* bytes, 0 none */
    const char *cert_levels; /* comma-separated accepted levels, "" any */
};

/* Eligibility of se for req on day today ("YYYY-MM-DD"). false with the
 * reason in why (always NUL-terminated). */
bool tsm_eligible(const struct tsm_se *se, const struct tsm_flavor_req *req, const char *today,
                  char *why, size_t cap);

/* ---- scripts */

#define TSM_SCRIPT_MAX_CMDS 256u /* C-APDUs per script */
#define TSM_APDU_MAX        261u /* a short C-APDU: 5 + 255 + 1 */

/* One script: C-APDUs decoded from hex into one buffer. */
struct tsm_script {
    size_t n;
    size_t bytes; /* total C-APDU bytes */
    uint8_t buf[TSM_SCRIPT_MAX_CMDS * TSM_APDU_MAX];
    size_t off[TSM_SCRIPT_MAX_CMDS];
    size_t len[TSM_SCRIPT_MAX_CMDS];
    int put_key; /* index of the first PUT KEY (INS D8), -1 none */
};

/* Decodes hex[0..n) (NUL-terminated strings) into s: every element must be
 * a well-formed short C-APDU (core/apdu.h); plain means without secure
 * messaging (CLA b3 clear, as the TSM wraps it). Errors: OT_E_LIMIT (more
 * than TSM_SCRIPT_MAX_CMDS), OT_E_APDU naming the index in *bad. */
ot_err tsm_script_decode(const char *const *hex, size_t n, bool plain, struct tsm_script *s,
                         size_t *bad);

/* The SP's key rotation: a PUT KEY (80 D8 P1 P2 Lc KVN {88 L len key 03
 * KCV}...) whose AES key values are in the clear. Re-encodes it for the card
 * with each key wrapped under dek (gp_cmd_put_key) after checking each KCV
 * the SP gave against the key (OT_E_KCV: nothing is built). *new_kvn gets
 * the key version the SD will have. Malformed: OT_E_APDU. The clear keys
 * are wiped from the caller's script buffer by the caller. */
ot_err tsm_put_key_wrap(const uint8_t *plain, size_t n, const uint8_t *dek, size_t dek_len,
                        uint8_t *out, size_t *out_len, uint8_t *new_kvn);

#endif
