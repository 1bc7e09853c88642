/* libFuzzer target for the payment message parser (src/pay/msg.c).
 *
 * Any input goes to pay_msg_parse. A message that parses must encode, and
 * its canonical form must parse back to the same canonical form (abort
 * otherwise); its signature check against a fixed key must not crash, and
 * the freshness check must answer. */
#include "pay/msg.h"

#include "fuzz_pay.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pay_msg m, back;
    struct json_err je;
    char *s = NULL;
    char *s2 = NULL;
    size_t n = 0;
    size_t n2 = 0;

    memset(&je, 0, sizeof je);
    if (pay_msg_parse(data, size, &m, &je) != OT_OK) {
        return 0;
    }
    if (pay_msg_encode(&m, &s, &n) != OT_OK || pay_msg_parse(s, n, &back, NULL) != OT_OK
        || pay_msg_encode(&back, &s2, &n2) != OT_OK || n != n2 || memcmp(s, s2, n) != 0
        || back.present != m.present) {
        abort();
    }
    (void)pay_msg_verify(&m, fuzz_pay_pub);
    (void)pay_msg_fresh(&m, 1700000000000, 60000);
    free(s);
    free(s2);
    return 0;
}
