/* libFuzzer target for payterm's top-up journal parser
 * (src/payterm/journal.h): any input goes to pt_jrn_parse; what parses must
 * carry its request and, past the authorisation, a state that names it. */
#include "payterm/journal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pt_jrn j;

    if (pt_jrn_parse(data, size, &j) != OT_OK) {
        return 0;
    }
    if (j.req == NULL || j.id[0] == '\0' || j.sp[0] == '\0' || j.amount < 1
        || strcmp(pt_jstate_name(j.state), "?") == 0) {
        abort();
    }
    pt_jrn_clear(&j);
    return 0;
}
