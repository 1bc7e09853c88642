/* The SCP03 submitter over mno jobs (docs/ota.md §10): one secure channel
 * with one security domain of one SE, run through the OTA job model
 * (docs/mno.md), by whoever holds the SD's keys -- tsm, cms, fleetsim,
 * bench/ota. mno and the phone's se-agent never see a key: they carry
 * C-APDUs this module protected, and this module checks the card's R-MACs.
 *
 * Two shapes (DESIGN.md 3, "Round trips are the cost that matters"):
 *
 *  - scripted, one job, two device round trips: possible when the SD uses a
 *    pseudo-random card challenge (i bit 10) and the submitter knows the
 *    card (struct otascp_card: KDD, i, last sequence counter, learned from
 *    an earlier handshake). The host computes the card's INITIALIZE UPDATE
 *    answer ahead and sends
 *        INITIALIZE UPDATE  + guard C1 = the exact answer expected
 *        EXTERNAL AUTHENTICATE
 *        every command, wrapped (the C-MAC chain needs only earlier commands)
 *    The agent SELECTs the SD (the job's "aid") first. A wrong guess (another
 *    host opened a channel meanwhile, the counter moved) stops the agent at
 *    the guard: EXTERNAL AUTHENTICATE never reaches the card with a wrong
 *    cryptogram, so no authentication failure is counted against the SE;
 *    the outcome is OTASCP_GUARD and the submitter falls back to:
 *
 *  - interactive, one job, two batches, three device round trips: batch 1 is
 *    INITIALIZE UPDATE; from its answer (the card cryptogram checked here)
 *    batch 2 is EXTERNAL AUTHENTICATE and every command, wrapped; then the
 *    job is closed.
 *
 * Sans-IO core (no network, no clock): the caller moves bytes.
 *
 *   otascp_plan(cfg, cmds, st, batch)        -> batch for a new job, scripted
 *                                                or interactive batch 1
 *   [interactive] otascp_continue(keys, cmds, st, iu_rapdu, batch)
 *                                             -> batch 2
 *   [guard stop]  otascp_fallback(st, host_challenge, batch)
 *                                             -> interactive batch 1 again
 *   otascp_verify(keys, cmds, st, rapdus, result)
 *                                             -> plain R-APDUs, R-MACs checked
 *
 * cmds are the plain C-APDUs (CLA on the basic channel, no secure-messaging
 * bit) and must be the same, in the same order, for every call of one
 * channel: the wrapping is recomputed from them (keys + state + cmds give the
 * exact bytes sent; nothing secret is stored). Each command must give a
 * short secured APDU (data <= 255 - 8 - padding: split LOAD and STORE DATA
 * yourself, gp_session_max_data()); more than OTASCP_MAX_CMDS: OT_E_LIMIT.
 * GET RESPONSE (61xx) is the agent's; a 6310 page is a result (ask the next
 * page in another job).
 *
 * The state (struct otascp_state) carries no key: host challenge, level,
 * SD AID, predicted counter, what was learned of the card, and (with the
 * blocking layer) the job id and phase. otascp_state_encode/decode give a
 * short JSON text, so a submitter stores it next to the job and verifies the
 * result after its own restart, or hours later when an offline device ran
 * the job (cms). After otascp_verify (or otascp_continue), st->card holds
 * what the card told: keep it for the next plan (for pseudo-random cards the
 * next counter is st->card.seq + 1).
 *
 * Blocking layer over mno_client (one thread per struct mno_client):
 *
 *   otascp_submit(m, target, cfg, cmds, st)   plans and submits (st->job)
 *   otascp_advance(m, target, keys, cmds, st, job, &res, &finished)
 *                  given the job as GET /jobs/{id} (or the signed callback)
 *                  shows it: sends batch 2 and closes, or submits the
 *                  fallback job after a guard stop, or -- the job over --
 *                  verifies it (finished)
 *   otascp_run(m, target, cfg, cmds, timeout_ms, &run)
 *                  submit + long-poll + advance until finished
 *
 * Errors (every call): OT_E_ARG (NULL, bad lengths, level not one of 00 01
 * 03 11 13 33, cmds malformed or already carrying SM), OT_E_LIMIT,
 * OT_E_TOO_LONG (a command whose secured form is not short), OT_E_SEC_LEVEL
 * (an R-MAC level the card's i does not allow), OT_E_SEQ_EXHAUSTED (the
 * predicted counter is past 0xFFFFFF), OT_E_NOMEM; otascp_continue and
 * otascp_verify also OT_E_CARD_CRYPTOGRAM (the INITIALIZE UPDATE answer does
 * not prove the keys: not our card, or a forged answer) and OT_E_RMAC (an
 * R-MAC does not verify: nothing of the result is trusted and *res is left
 * empty). A card that refuses (INITIALIZE UPDATE or EXTERNAL AUTHENTICATE
 * SW not 9000, e.g. 6982 or 6300) or a command that fails is an outcome, not
 * an error. The blocking layer adds mno_client's errors (*e filled) and
 * OT_E_TIMEOUT (the job had not ended: st->job names it; verify later).
 *
 * Thread-safe: no shared state; keys are copied into per-call objects and
 * wiped.
 */
#ifndef OT_CLIENT_OTASCP_H
#define OT_CLIENT_OTASCP_H

#include "client/mno_client.h"
#include "core/err.h"
#include "crypto/scp03.h"
#include "net/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTASCP_MAX_CMDS   1000u /* plain commands per channel (a script holds 1024) */
#define OTASCP_JOB_ID_MAX 24u
#define OTASCP_STATE_MAX  640u /* otascp_state_encode's longest text, NUL included */

/* What a submitter knows of one SD of one SE (no key). */
struct otascp_card {
    bool known;                 /* false: nothing learned yet (plan goes interactive) */
    uint8_t kdd[SCP03_KDD_LEN]; /* key diversification data of the SD's answer */
    uint8_t i;                  /* the SD's SCP03 i parameter */
    uint32_t seq;               /* pseudo-random: the last counter value the card used */
};

struct otascp_cfg {
    const struct scp03_keyset *keys; /* the SD's keys (kvn 0: any version) */
    uint8_t level;                   /* 00 01 03 11 13 33; R-MAC (0x10) to have results checked */
    const uint8_t *sd_aid;           /* SD to select; 5..16 bytes */
    size_t sd_aid_len;
    bool s16;                       /* S16 mode (ignored when card->known: its i says) */
    const struct otascp_card *card; /* NULL or !known: interactive */
    const uint8_t *host_challenge;  /* 8 (16 for S16) bytes for tests; NULL = random */
};

/* One plain command (input) or one R-APDU (input to verify). */
struct otascp_apdu {
    const uint8_t *p;
    size_t n;
};

/* One C-APDU of a job, with its optional guard (the exact R-APDU expected). */
struct otascp_capdu {
    uint8_t *p;
    size_t n;
    uint8_t *expect; /* NULL: none */
    size_t expect_n;
};

struct otascp_batch {
    size_t n;
    struct otascp_capdu *items;
};

enum otascp_mode { OTASCP_SCRIPTED = 1, OTASCP_INTERACTIVE = 2 };

enum otascp_phase {
    OTASCP_PH_PLANNED = 0, /* batch built, no job yet */
    OTASCP_PH_SCRIPTED,    /* the scripted job is out */
    OTASCP_PH_IU,          /* interactive: batch 1 (INITIALIZE UPDATE) is out */
    OTASCP_PH_BATCH2,      /* interactive: batch 2 is out and the job closed */
    OTASCP_PH_DONE,        /* verified */
};

/* Persistable, key-free state of one channel (otascp_state_encode). */
struct otascp_state {
    enum otascp_mode mode;
    enum otascp_phase phase;
    uint8_t level;
    bool s16;
    uint8_t kvn;
    uint8_t sd_aid[16];
    size_t sd_aid_len;
    uint8_t host_chal[16];
    uint32_t predicted_seq; /* scripted: the counter the guard expects */
    size_t n_cmds;
    struct otascp_card card;         /* learned (and the one used to predict) */
    char job[OTASCP_JOB_ID_MAX + 1]; /* blocking layer: the current job ("" none) */
    unsigned fallbacks;              /* scripted jobs that stopped at their guard */
    /* blocking layer: the job's state in the submit's answer ("queued";
     * "delivering": mno woke the phone at once); not persisted */
    char job_state[16];
};

enum otascp_outcome {
    OTASCP_OK = 0,      /* channel opened, every command ran, none failed */
    OTASCP_CMD_FAILED,  /* channel opened; failed lists the failing / not run commands */
    OTASCP_GUARD,       /* the INITIALIZE UPDATE answer was not the predicted one: nothing
                           past it ran; otascp_fallback */
    OTASCP_AUTH_FAILED, /* the card refused INITIALIZE UPDATE or EXTERNAL AUTHENTICATE
                           (iu_sw / ea_sw); no command ran */
    OTASCP_INCOMPLETE,  /* the answers stop early without a failing status word (job
                           cancelled, expired, interrupted, not delivered) */
};

/* A command's answer: plain data (R-ENC removed) and SW. */
struct otascp_resp {
    bool ran;
    uint16_t sw;
    uint8_t *data;
    size_t len;
};

struct otascp_result {
    enum otascp_outcome outcome;
    uint16_t iu_sw;     /* 0: not run */
    uint16_t ea_sw;     /* 0: not run */
    bool authenticated; /* the level has R-MAC: every answer with data/9000-class SW
                           was checked */
    size_t n;           /* = the number of commands */
    struct otascp_resp *resp;
    size_t n_failed; /* commands that failed (SW not 9000 / 61xx / 6310) or did not run */
    size_t *failed;
};

/* A status word that does not stop a script: 9000, 61xx, 6310 (docs/ota.md §5.3). */
bool otascp_sw_ok(uint16_t sw);
const char *otascp_outcome_name(enum otascp_outcome o);

/* ---- sans-IO core */

/* A fresh state and the first batch: scripted when cfg->card is known and
 * pseudo-random (predicted counter card->seq + 1), else interactive batch 1.
 * *out is the caller's (otascp_batch_free). */
ot_err otascp_plan(const struct otascp_cfg *cfg, const struct otascp_apdu *cmds, size_t n,
                   struct otascp_state *st, struct otascp_batch *out);
/* Interactive batch 2 from the card's INITIALIZE UPDATE R-APDU (data || SW):
 * learns the card into st->card. SW not 9000: its sw_to_err code (nothing to
 * send: close the job). */
ot_err otascp_continue(const struct scp03_keyset *keys, const struct otascp_apdu *cmds, size_t n,
                       struct otascp_state *st, const uint8_t *iu_rapdu, size_t iu_len,
                       struct otascp_batch *out);
/* After OTASCP_GUARD: a new host challenge (NULL = random), interactive
 * batch 1. */
ot_err otascp_fallback(struct otascp_state *st, const uint8_t *host_challenge,
                       struct otascp_batch *out);
/* Checks a job's R-APDUs, all scripts in order (the first answers
 * INITIALIZE UPDATE). *res is the caller's (otascp_result_free). */
ot_err otascp_verify(const struct scp03_keyset *keys, const struct otascp_apdu *cmds, size_t n,
                     struct otascp_state *st, const struct otascp_apdu *rapdus, size_t nr,
                     struct otascp_result *res);

void otascp_batch_free(struct otascp_batch *b);   /* NULL-safe; leaves it empty */
void otascp_result_free(struct otascp_result *r); /* NULL-safe; leaves it empty */

/* The batch as the "apdus" member of a JobSubmit or a batch (docs/mno.md):
 * hex strings, {"capdu","expect"} for a guarded one. */
ot_err otascp_batch_json(const struct otascp_batch *b, json_t **out);
/* Every R-APDU of a job (GET /jobs/{id}) in order, hex-decoded into one
 * allocation: free(*buf) after use. OT_E_FORMAT on a malformed job. */
ot_err otascp_job_rapdus(const json_t *job, struct otascp_apdu **out, size_t *n, uint8_t **buf);

/* The state as a JSON text (NUL-terminated, < OTASCP_STATE_MAX) and back.
 * decode: OT_E_FORMAT naming nothing secret on any malformed text. */
ot_err otascp_state_encode(const struct otascp_state *st, char *out, size_t cap);
ot_err otascp_state_decode(const char *text, struct otascp_state *st);

/* ---- blocking layer over mno_client */

/* The job fields passed through to POST /jobs (docs/mno.md). */
struct otascp_target {
    const char *device; /* device id, or NULL and: */
    const char *msisdn;
    const char *se_cin;    /* CIN in hex, or NULL and: */
    const char *se_reader; /* the agent's reader name (SIM1, eSE1, ...) */
    int priority;          /* 0..9; -1 = mno's default */
    int64_t ttl_s;         /* 0 = mno's default */
    int max_attempts;      /* 0 = mno's default */
    bool destructive;
    /* required; the fallback and batch 2 use <key>.f<n> / <key>.b2.s<session>
     * (one batch 2 per session of the job) */
    const char *idem_key;
    const char *callback; /* NULL: none */
};

/* Plans (otascp_plan) and submits the first job; st->job names it. */
ot_err otascp_submit(struct mno_client *m, const struct otascp_target *t,
                     const struct otascp_cfg *cfg, const struct otascp_apdu *cmds, size_t n,
                     struct otascp_state *st, struct tsm_client_err *e);
/* One step from the job as mno shows it (st->job's). *finished: *res holds
 * the verified result (st->phase DONE); else the next step is out (batch 2,
 * or a fallback job: st->job changed) or there is nothing to do yet. */
ot_err otascp_advance(struct mno_client *m, const struct otascp_target *t,
                      const struct scp03_keyset *keys, const struct otascp_apdu *cmds, size_t n,
                      struct otascp_state *st, const json_t *job, struct otascp_result *res,
                      bool *finished, struct tsm_client_err *e);

struct otascp_run_result {
    struct otascp_result res;  /* verified */
    struct otascp_state state; /* keep state.card for the next plan */
    char job_state[24];        /* mno's final state of the last job (done, failed, ...) */
    char reason[64];           /* mno's reason ("" none) */
    unsigned jobs;             /* jobs submitted (2 after a fallback) */
};

/* Submits, long-polls (GET /jobs/{id}?wait) and advances until the result
 * is verified or timeout_ms passed (OT_E_TIMEOUT, out->state.job names the
 * job). out is the caller's: otascp_result_free(&out->res). */
ot_err otascp_run(struct mno_client *m, const struct otascp_target *t, const struct otascp_cfg *cfg,
                  const struct otascp_apdu *cmds, size_t n, unsigned timeout_ms,
                  struct otascp_run_result *out, struct tsm_client_err *e);

#endif
