/* libFuzzer target for the admin-session script parser (src/mno/mno_script.c,
 * docs/ota.md §5.3): the bytes an agent POSTs reach it unauthenticated by the
 * card, so it must refuse anything malformed without reading out of bounds.
 *
 * Input: first byte selects the parser (even: command script, odd: response
 * script answering (byte >> 1) + 1 C-APDUs); the rest is the script. Besides
 * "no crash, no sanitizer report", for any input it accepts:
 *   - every item lies inside the input, lengths in range;
 *   - the builder re-encodes the items to bytes the parser accepts again
 *     with the same items (a command script's bytes are canonical: equal).
 */
#include "mno/mno_script.h"

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

static void check_items(const struct mno_script *s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < s->n; i++) {
        check(s->items[i].p >= p && s->items[i].p + s->items[i].n <= p + n);
        if (s->items[i].guard != NULL) {
            check(s->items[i].guard >= p && s->items[i].guard + s->items[i].guard_n <= p + n);
        }
    }
}

static void check_same(const struct mno_script *a, const struct mno_script *b)
{
    check(a->n == b->n && a->cont == b->cont);
    for (size_t i = 0; i < a->n; i++) {
        check(a->items[i].n == b->items[i].n);
        check(memcmp(a->items[i].p, b->items[i].p, a->items[i].n) == 0);
        check((a->items[i].guard == NULL) == (b->items[i].guard == NULL));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mno_script s;
    struct mno_script again;
    struct mno_script_err e;
    struct ot_buf b;
    const uint8_t *p;
    size_t n;
    size_t sent;

    if (size < 1) {
        return 0;
    }
    p = data + 1;
    n = size - 1;
    sent = (size_t)(data[0] >> 1) + 1;
    ot_buf_init(&b, 0);
    if ((data[0] & 1) == 0) {
        if (mno_cmd_parse(p, n, &s, &e) == OT_OK) {
            check(s.n >= 1 && s.n <= MNO_SCRIPT_MAX_APDUS);
            check_items(&s, p, n);
            check(mno_cmd_build(s.cont, s.items, s.n, &b) == OT_OK);
            check(mno_cmd_parse(b.data, b.len, &again, &e) == OT_OK);
            check_same(&s, &again);
            /* Minimal lengths and a fixed layout: the bytes are canonical,
             * except for an explicit "82 01 00", which the builder omits. */
            check(b.len == n || (b.len + 3 == n && !s.cont));
            mno_script_free(&again);
        } else {
            check(s.n == 0 && s.items == NULL);
        }
    } else {
        if (mno_rsp_parse(p, n, sent, &s, &e) == OT_OK) {
            check(s.n >= 1 && s.n <= sent && s.count == s.n);
            check_items(&s, p, n);
            check(mno_rsp_build(s.items, s.n, &b) == OT_OK);
            check(mno_rsp_parse(b.data, b.len, sent, &again, &e) == OT_OK);
            check_same(&s, &again);
            mno_script_free(&again);
        } else {
            check(s.n == 0 && s.items == NULL);
        }
    }
    mno_script_free(&s);
    ot_buf_free(&b);
    return 0;
}
