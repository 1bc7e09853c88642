/* libFuzzer target for the BER-TLV parser (src/core/tlv.c).
 *
 * Besides "no crash, no sanitizer report", it checks properties that must
 * hold for any input, and aborts when one does not:
 *   - when tlv_walk_all accepts the input, tlv_next reads it to the end;
 *   - tlv_find_path along the chain of first children finds the same object
 *     the cursor walk found;
 *   - every top-level TLV re-encoded with tlv_put, and with tlv_open/close,
 *     gives the same bytes both ways, and that header parses back to the
 *     same tag and length and is never longer than the original one.
 */
#include "core/tlv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_PATH_MAX 4

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static void check_inside(const struct tlv *t, const uint8_t *data, size_t size)
{
    check(t->val >= data && t->len <= size && (size_t)(t->val - data) <= size - t->len);
}

/* Follows the first child of each constructed object from the start of
 * data and looks the same chain up with tlv_find_path. */
static void fuzz_first_chain(const uint8_t *data, size_t size)
{
    uint32_t path[FUZZ_PATH_MAX];
    struct tlv t = {0};
    struct tlv found;
    const uint8_t *p = data;
    size_t n = size;
    size_t depth = 0;
    while (depth < FUZZ_PATH_MAX && n > 0) {
        struct buf_rd r;
        buf_rd_init(&r, p, n);
        if (tlv_next(&r, &t) != OT_OK) {
            break;
        }
        path[depth++] = t.tag;
        if (!t.constructed) {
            break;
        }
        p = t.val;
        n = t.len;
    }
    if (depth == 0) {
        return;
    }
    check(tlv_find_path(data, size, path, depth, &found) == OT_OK);
    check(found.val == t.val && found.len == t.len && found.tag == t.tag);
}

/* Paths made of the input's last bytes (two 1-byte tags, one 2-byte tag):
 * any answer is fine as long as an object found lies inside the input. */
static void fuzz_tail_path(const uint8_t *data, size_t size)
{
    uint32_t path[2];
    struct tlv t;
    if (size < 2) {
        return;
    }
    path[0] = data[size - 2];
    path[1] = data[size - 1];
    if (tlv_find_path(data, size, path, 2, &t) == OT_OK) {
        check_inside(&t, data, size);
        check(t.tag == path[1]);
    }
    path[0] = (uint32_t)data[size - 2] << 8 | data[size - 1];
    if (tlv_find_path(data, size, path, 1, &t) == OT_OK) {
        check_inside(&t, data, size);
        check(t.tag == path[0]);
    }
}

static void fuzz_reencode(const struct tlv *t)
{
    size_t total = t->hdr_len + t->len;
    size_t n1 = 0;
    size_t n2 = 0;
    size_t mark = 0;
    struct buf_wr w;
    struct tlv back;
    uint8_t *a = malloc(total + 4);
    uint8_t *b = malloc(total + 4);
    check(a != NULL && b != NULL);

    buf_wr_init(&w, a, total + 4);
    tlv_put(&w, t->tag, t->val, t->len);
    check(buf_wr_finish(&w, &n1) == OT_OK);
    check(n1 == tlv_hdr_size(t->tag, t->len) + t->len);
    check(n1 <= total); /* minimal header is never longer than the parsed one */

    buf_wr_init(&w, b, total + 4);
    tlv_open(&w, t->tag, &mark);
    buf_wr_bytes(&w, t->val, t->len);
    tlv_close(&w, mark);
    check(buf_wr_finish(&w, &n2) == OT_OK);
    check(n2 == n1 && memcmp(a, b, n1) == 0);

    check(tlv_parse_one(a, n1, &back) == OT_OK);
    check(back.tag == t->tag && back.len == t->len && back.constructed == t->constructed);
    check(back.hdr_len == n1 - t->len);
    check(t->len == 0 || memcmp(back.val, t->val, t->len) == 0);
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf_rd r;
    struct tlv t;
    ot_err walk = tlv_walk_all(data, size);
    fuzz_first_chain(data, size);
    fuzz_tail_path(data, size);
    buf_rd_init(&r, data, size);
    while (r.left > 0) {
        size_t before = r.left;
        if (tlv_next(&r, &t) != OT_OK) {
            check(r.left == before); /* a failed read leaves the cursor */
            break;
        }
        check_inside(&t, data, size);
        check(before - r.left == t.hdr_len + t.len);
        check(t.hdr_len >= 2 && t.hdr_len <= TLV_MAX_HDR);
        fuzz_reencode(&t);
    }
    check(walk != OT_OK || r.left == 0); /* a valid sequence parses to its end */
    return 0;
}
