/* CAP reader fuzz target: arbitrary bytes as a CAP zip read from memory.
 * When the CAP opens, every derived output is built too (LFDB, load file with
 * and without Descriptor, hash), so their size arithmetic is exercised. */
#include "gp/cap.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cap_file *cap = NULL;
    if (cap_open_mem(data, size, &cap) != OT_OK) {
        return 0;
    }
    for (unsigned flags = 0; flags <= (CAP_LFDB_DESCRIPTOR | CAP_LFDB_DEBUG); flags++) {
        size_t n = cap_lfdb_size(cap, flags);
        size_t lf = cap_load_file_size(n, NULL, 0);
        uint8_t *buf = malloc(lf ? lf : 1);
        if (!buf) {
            break;
        }
        size_t len = lf;
        (void)cap_load_file(cap, flags, NULL, 0, buf, &len);
        len = n;
        (void)cap_lfdb(cap, flags, buf, &len);
        uint8_t h[CAP_HASH_MAX];
        size_t hl = sizeof h;
        (void)cap_lfdb_hash(cap, flags, CAP_HASH_SHA256, h, &hl);
        free(buf);
    }
    (void)cap_get_info(cap);
    cap_free(cap);
    return 0;
}
