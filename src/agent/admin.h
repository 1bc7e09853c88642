/* The admin agent: runs one job's admin session against mno (docs/ota.md
 * section 5, the RAM over HTTP shape of GP Amendment B) on one SE of the
 * device, through the protocol converter.
 *
 *   POST P/admin/jobs/<job> (empty)  -> 200 script 1 + X-Admin-Next-URI
 *                                      + X-Admin-Targeted-Application,
 *                                      202 (wait, resume), 204 (nothing to do)
 *   SELECT the targeted application on the basic channel (not reported;
 *   6A82: X-Admin-Script-Status unknown-application)
 *   run the script (agent/script.h), POST the response script to Next-URI
 *   -> 200 next script (interactive), 202 (wait Retry-After, then repeat the
 *      POST with X-Admin-Resume: true), 204 the end.
 * A POST whose answer was lost is repeated with X-Admin-Resume: true (same
 * URI, same body). The SE is the one under the job's reader, or the one with
 * the job's CIN, in the SE list; none: se-unavailable to .../scripts/0. A
 * card that stops answering mid-script is reported as interrupted.
 */
#ifndef OT_AGENT_ADMIN_H
#define OT_AGENT_ADMIN_H

#include "agent/conv.h"
#include "agent/mnolink.h"
#include "agent/selist.h"
#include "core/err.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_IMEI_MAX    16u
#define AGENT_JOB_ID_MAX  24u
#define AGENT_ADMIN_TRIES 3u /* POSTs of one message before giving up */
/* Wait before the second POST of a message after a lost answer (doubled
 * before each further one). */
#define AGENT_ADMIN_RETRY_MS 250u
#define AGENT_WAIT_MAX_S     30 /* longest wait on a 202 */
#define AGENT_ADMIN_PROTO    "globalplatform-remote-admin/1.0"

struct agent_admin_job {
    char job[AGENT_JOB_ID_MAX + 1];         /* decimal id */
    char reader[AGENT_READER_NAME_MAX + 1]; /* "" when the job names a CIN */
    uint8_t cin[AGENT_CIN_MAX];
    size_t cin_len; /* 0 when the job names a reader */
};

struct agent_admin_result {
    unsigned scripts; /* command scripts run */
    unsigned posts;   /* HTTP requests made (device round trips) */
    size_t capdus;    /* C-APDUs executed */
    bool guard_stop;  /* a script stopped on a guard mismatch */
    char status[32];  /* the last X-Admin-Script-Status sent ("ok", ...) */
};

/* Runs the session to its end (204). imei: the device's (X-Admin-From).
 * state_dir (may be NULL): where STATE/session.json records the script
 * running now (job, its URI, X-Admin-From), written before the script
 * runs and removed when the session ends, for agent_admin_recover.
 * OT_OK: the session ended normally (the job's outcome is mno's to say).
 * Errors: OT_E_NOT_FOUND (no such job), OT_E_CONFLICT (se_blocked or the
 * session is open elsewhere), OT_E_PROTOCOL (an answer that breaks ota.md),
 * transport errors, or 502/503/504 answers (a proxy that lost its node),
 * after AGENT_ADMIN_TRIES tries; why says which. */
ot_err agent_admin_run(struct agent_mno *m, struct agent_service *svc, const struct agent_selist *l,
                       const char *imei, const char *state_dir, const struct agent_admin_job *job,
                       struct agent_admin_result *res, char *why, size_t why_cap);

/* After a restart (ota.md 6.6, docs/se-agent.md "The job's steps"): when
 * STATE/session.json says a session was under way, resumes it from its
 * step: script 1 received and not sent to the card: fetched again
 * (X-Admin-Resume) and the session run on; a script executed: its kept
 * responses POSTed again (X-Admin-Resume) and the session run on;
 * executing (the card's state is unknown), or a later script whose card
 * session the restart ended: X-Admin-Script-Status: interrupted. The file
 * goes once mno answered. svc and l (may be NULL: interrupted only) give
 * the job's SE. *found: there was one. A file that does not parse:
 * OT_E_CORRUPT, kept. */
ot_err agent_admin_recover(struct agent_mno *m, struct agent_service *svc,
                           const struct agent_selist *l, const char *state_dir, bool *found,
                           char *why, size_t why_cap);

/* What agent_admin_recover reads of STATE/session.json (exposed for the fuzz
 * target fuzz/fuzz_agent_session.c). */
struct agent_admin_session_info {
    char job[AGENT_JOB_ID_MAX + 1];
    char step[16]; /* received, executing, executed */
    unsigned script;
    size_t rsp_len; /* executed: the kept response script's bytes (> 0) */
};
/* Parses the file's text: OT_OK, or OT_E_CORRUPT (the file is left for the
 * operator). */
ot_err agent_admin_session_parse(const uint8_t *text, size_t n,
                                 struct agent_admin_session_info *out);

/* The wait after a 202 (Retry-After, docs/ota.md 6.2): wait(ctx, job, s)
 * returns early, true, when the job has news (its next batch or its cancel
 * pushed, agent/push.h: agent_push_wait_job), and the session POSTs again
 * at once. Set once before sessions run (se-agent run, after its push
 * client started); none set, or NULL: the session sleeps the whole wait. */
typedef bool (*agent_admin_waiter)(void *ctx, const char *job, int seconds);
void agent_admin_set_waiter(agent_admin_waiter wait, void *ctx);
/* The agent is stopping once *stop is non-zero (a signal handler's flag;
 * NULL: never). A session waiting for its job's next script (after a 202,
 * or in a POST mno holds) then ends at once, unanswered: mno ends it as a
 * lost session (the device detaches; destructive: outcome_unknown). A POST
 * that failed is not tried again. Set once, like the waiter. */
void agent_admin_set_stop(const volatile sig_atomic_t *stop);

/* "//aid/<RID 5 bytes hex>/<PIX hex>" into aid (5..16 bytes). */
ot_err agent_admin_parse_target(const char *v, uint8_t *aid, size_t *aid_len);

#endif
