/* libFuzzer target for the central TSM's script parsers (src/tsm/prov.c).
 *
 * The first input byte chooses:
 *   0 tsm_script_decode over the rest split at '\n' into hex C-APDUs (plain)
 *   1 the same, relayed (secure messaging allowed)
 *   2 tsm_put_key_wrap of the rest as a plain PUT KEY (a fixed DEK)
 * Besides "no crash, no sanitizer report", it aborts when a property fails:
 * a decoded script's commands lie inside its buffer, back to back, within the
 * caps; a wrapped PUT KEY keeps the plain command's length and header and
 * names a key version 1..127.
 */
#include "tsm/prov.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static void fuzz_script(const uint8_t *p, size_t n, bool plain)
{
    static struct tsm_script s;
    const char *hex[TSM_SCRIPT_MAX_CMDS + 1];
    char *text = malloc(n + 1);
    size_t k = 0;
    size_t bad = 0;
    char *cur;

    if (text == NULL) {
        return;
    }
    memcpy(text, p, n);
    text[n] = '\0';
    cur = text;
    while (k < TSM_SCRIPT_MAX_CMDS + 1) {
        char *nl = strchr(cur, '\n');
        hex[k++] = cur;
        if (nl == NULL) {
            break;
        }
        *nl = '\0';
        cur = nl + 1;
    }
    if (tsm_script_decode(hex, k, plain, &s, &bad) == OT_OK) {
        size_t at = 0;
        check(s.n == k && k <= TSM_SCRIPT_MAX_CMDS);
        for (size_t i = 0; i < s.n; i++) {
            check(s.off[i] == at && s.len[i] >= 4 && s.len[i] <= TSM_APDU_MAX);
            at += s.len[i];
        }
        check(at == s.bytes && at <= sizeof(s.buf));
        check(s.put_key < (int)s.n);
    } else {
        check(bad < k);
    }
    free(text);
}

static void fuzz_put_key(const uint8_t *p, size_t n)
{
    static const uint8_t dek[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                    0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
    uint8_t out[300];
    size_t on = sizeof(out);
    uint8_t kvn = 0;

    if (tsm_put_key_wrap(p, n, dek, sizeof(dek), out, &on, &kvn) == OT_OK) {
        check(on == n && memcmp(out, p, 4) == 0);
        check(kvn >= 1 && kvn <= 127);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    switch (data[0] % 3) {
    case 0:
        fuzz_script(data + 1, size - 1, true);
        break;
    case 1:
        fuzz_script(data + 1, size - 1, false);
        break;
    default:
        fuzz_put_key(data + 1, size - 1);
        break;
    }
    return 0;
}
