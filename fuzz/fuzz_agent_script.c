/* Fuzz target: the admin-session script parsers of the agent
 * (src/agent/script.h). The input is taken as a command script (AE 80 ...)
 * and as a response script (AF 80 ...). A parsed command script must hold
 * 1..AGENT_SCRIPT_MAX_CMDS C-APDUs whose bytes (and guards) lie inside the
 * input, with the sizes ota.md 5.3 allows. Any crash, over-read or leak is
 * a finding.
 */
#include "agent/script.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const uint8_t *p, size_t n, const uint8_t *data, size_t size)
{
    return p >= data && n <= size && (size_t)(p - data) <= size - n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct agent_script s;
    static const uint8_t *r[AGENT_SCRIPT_MAX_CMDS];
    static size_t rl[AGENT_SCRIPT_MAX_CMDS];
    char why[128];
    size_t bad = 0;
    size_t i, count;

    if (agent_script_parse(data, size, &s, &bad, why, sizeof why) == OT_OK) {
        if (s.n == 0 || s.n > AGENT_SCRIPT_MAX_CMDS || s.mode > AGENT_SCRIPT_MODE_ALL) {
            abort();
        }
        for (i = 0; i < s.n; i++) {
            if (!inside(s.cmd[i].capdu, s.cmd[i].capdu_len, data, size)
                || s.cmd[i].capdu_len < AGENT_SCRIPT_CAPDU_MIN
                || (s.cmd[i].guard != NULL
                    && (!inside(s.cmd[i].guard, s.cmd[i].guard_len, data, size)
                        || s.cmd[i].guard_len < AGENT_SCRIPT_RAPDU_MIN))) {
                abort();
            }
        }
    } else if (bad > size) {
        abort();
    }
    if (agent_resp_parse(data, size, r, rl, AGENT_SCRIPT_MAX_CMDS, &count) == OT_OK) {
        for (i = 0; i < count; i++) {
            if (!inside(r[i], rl[i], data, size) || rl[i] < AGENT_SCRIPT_RAPDU_MIN) {
                abort();
            }
        }
    }
    return 0;
}
