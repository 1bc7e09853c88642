/* libFuzzer target for se-agent's session state file (STATE/session.json,
 * src/agent/admin.h agent_admin_session_parse; docs/se-agent.md "The job's
 * steps"): any input parses or is refused; what parses names a job and one
 * of the three steps, and an executed step carries the card's answers. */
#include "agent/admin.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct agent_admin_session_info si;

    if (agent_admin_session_parse(data, size, &si) != OT_OK) {
        return 0;
    }
    if (si.job[0] == '\0'
        || (strcmp(si.step, "received") != 0 && strcmp(si.step, "executing") != 0
            && strcmp(si.step, "executed") != 0)
        || (strcmp(si.step, "executed") == 0) != (si.rsp_len > 0)) {
        abort();
    }
    return 0;
}
