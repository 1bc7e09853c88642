/* Fuzz target: what tsmctl parses or prints from untrusted bytes: profile
 * files (tsm_client_profile_parse, src/client/tsm_client.h) and server text
 * (ot_utf8_escape, src/core/utf8.h).
 *
 * The first input byte picks the path: even = a profile file's text
 * (profile "default"), odd = text from a server (escaped into a buffer
 * sized by the second byte). Checked: a
 * refused profile file leaves nothing behind; the escaped text is always
 * NUL-terminated within the buffer and holds no C0 control, DEL, C1
 * control (U+0080..U+009F) or invalid UTF-8. */
#include "client/tsm_client.h"
#include "core/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_profile(const char *p, size_t n)
{
    struct tsm_client_profile *prof = malloc(sizeof *prof);
    size_t line = 0;
    const char *why = NULL;

    if (prof == NULL) {
        return;
    }
    if (tsm_client_profile_parse(p, n, "default", prof, &line, &why) != OT_OK) {
        if (why == NULL || line == 0 || prof->url[0] != '\0' || prof->token[0] != '\0') {
            abort();
        }
    } else if (prof->url[TSM_CLIENT_PROFILE_VALUE_MAX - 1] != '\0') {
        abort();
    }
    free(prof);
}

static void fuzz_escape(const uint8_t *p, size_t n)
{
    size_t cap = n > 0 ? (size_t)p[0] + 1 : 1;
    char *out = malloc(cap);

    if (out == NULL) {
        return;
    }
    (void)ot_utf8_escape((const char *)p, n, out, cap, true, NULL, NULL);
    size_t len = strnlen(out, cap);
    if (len == cap) {
        abort(); /* not terminated */
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c == 0x7F) {
            abort();
        }
        if (c >= 0x80) {
            /* A multibyte sequence copied whole: lead byte, continuations. */
            size_t k = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
            if (k == 0 || i + k > len || (c == 0xC2 && (unsigned char)out[i + 1] < 0xA0)) {
                abort();
            }
            for (size_t j = 1; j < k; j++) {
                if (((unsigned char)out[i + j] & 0xC0) != 0x80) {
                    abort();
                }
            }
            i += k - 1;
        }
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    if ((data[0] & 1) == 0) {
        fuzz_profile((const char *)data + 1, size - 1);
    } else {
        fuzz_escape(data + 1, size - 1);
    }
    return 0;
}
