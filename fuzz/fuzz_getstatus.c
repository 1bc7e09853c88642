/* libFuzzer target for the GlobalPlatform response parsers (src/gp/parse.c).
 *
 * The first input byte chooses the parser, the rest is the R-APDU data:
 *   0 GET STATUS E3 format    1 GET STATUS legacy (P1 from byte 1)
 *   2 CPLC (+ text)           3 card recognition data
 *   4 key information         5 SELECT FCI
 *   6 IIN / CIN               7 PUT KEY response
 * Besides "no crash, no sanitizer report", it aborts when a property that
 * must hold for any input fails: the array parser and the iterator agree on
 * the result and the count, parsed AIDs are within 1-16 bytes, values that
 * point into the input stay inside it.
 */
#include "gp/parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ENTRIES 4

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static void check_inside(const uint8_t *v, size_t n, const uint8_t *data, size_t size)
{
    if (!v) {
        check(n == 0);
        return;
    }
    check(v >= data && n <= size && (size_t)(v - data) <= size - n);
}

static void fuzz_status(const uint8_t *p, size_t n, enum gp_status_fmt fmt, uint8_t p1)
{
    struct gp_status_entry e[FUZZ_ENTRIES];
    size_t count = FUZZ_ENTRIES;
    ot_err err = gp_parse_status(p, n, fmt, p1, e, &count);

    /* The iterator must reach the same verdict. */
    struct gp_status_iter it;
    struct gp_status_entry one;
    size_t k = 0;
    bool done = false;
    ot_err ierr = OT_OK;
    gp_status_iter_init(&it, p, n, fmt, p1);
    for (;;) {
        ierr = gp_status_iter_next(&it, &one, &done);
        if (ierr != OT_OK || done) {
            break;
        }
        check(one.aid.len >= 1 && one.aid.len <= GP_AID_MAX);
        check(one.privs_len <= 3);
        k++;
    }
    if (ierr != OT_OK) {
        check(err == ierr);
        return;
    }
    check(err == OT_OK || err == OT_E_BUF_SMALL);
    check(count == k);
    check((err == OT_E_BUF_SMALL) == (k > FUZZ_ENTRIES));
    for (size_t i = 0; i < k && i < FUZZ_ENTRIES; i++) {
        check(e[i].aid.len >= 1 && e[i].aid.len <= GP_AID_MAX);
        check(e[i].elf_aid.len <= GP_AID_MAX && e[i].sd_aid.len <= GP_AID_MAX);
        size_t kept = e[i].nmodules < GP_STATUS_MAX_MODULES ? e[i].nmodules : GP_STATUS_MAX_MODULES;
        for (size_t m = 0; m < kept; m++) {
            check(e[i].modules[m].len >= 1 && e[i].modules[m].len <= GP_AID_MAX);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t p1s[] = {GP_STATUS_P1_ISD, GP_STATUS_P1_APPS, GP_STATUS_P1_ELF,
                                  GP_STATUS_P1_ELF_MODULES};
    if (size == 0) {
        return 0;
    }
    uint8_t sel = data[0] & 7u;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (sel) {
    case 0:
        fuzz_status(p, n, GP_STATUS_FMT_TLV, GP_STATUS_P1_APPS);
        break;
    case 1:
        if (n == 0) {
            break;
        }
        fuzz_status(p + 1, n - 1, GP_STATUS_FMT_LEGACY, p1s[p[0] & 3u]);
        break;
    case 2: {
        struct gp_cplc c;
        if (gp_parse_cplc(p, n, &c) == OT_OK) {
            char text[2048];
            size_t tl = sizeof text;
            check(gp_cplc_to_text(&c, text, &tl) == OT_OK);
            check(tl == strlen(text));
        }
        break;
    }
    case 3: {
        struct gp_card_data cd;
        if (gp_parse_card_data(p, n, &cd) == OT_OK) {
            check_inside(cd.card_config, cd.card_config_len, p, n);
            check_inside(cd.chip_details, cd.chip_details_len, p, n);
            check(cd.version_len <= sizeof cd.version);
        }
        break;
    }
    case 4: {
        struct gp_key_info k[FUZZ_ENTRIES];
        size_t count = FUZZ_ENTRIES;
        ot_err err = gp_parse_key_info(p, n, k, &count);
        if (err == OT_OK) {
            check(count <= FUZZ_ENTRIES);
            for (size_t i = 0; i < count; i++) {
                check(k[i].ncomp >= 1 && k[i].ncomp <= GP_KEYINFO_MAX_COMPONENTS);
            }
        } else if (err == OT_E_BUF_SMALL) {
            check(count > FUZZ_ENTRIES);
        }
        break;
    }
    case 5: {
        struct gp_fci f;
        if (gp_parse_fci(p, n, &f) == OT_OK) {
            check(f.aid.len <= GP_AID_MAX);
            check_inside(f.prop, f.prop_len, p, n);
            check_inside(f.sd_mgmt, f.sd_mgmt_len, p, n);
            check_inside(f.prod_lcd, f.prod_lcd_len, p, n);
        }
        break;
    }
    case 6: {
        const uint8_t *v = NULL;
        size_t vl = 0;
        if (gp_parse_iin(p, n, &v, &vl) == OT_OK) {
            check_inside(v, vl, p, n);
        }
        if (gp_parse_cin(p, n, &v, &vl) == OT_OK) {
            check_inside(v, vl, p, n);
        }
        break;
    }
    default: {
        /* Expect KVN = first byte, two keys with KCVs taken from the input. */
        struct gp_put_key_expect exp;
        memset(&exp, 0, sizeof exp);
        if (n >= 7) {
            exp.kvn = p[0];
            exp.nkeys = 2;
            memcpy(exp.kcv[0], p + 1, 3);
            memcpy(exp.kcv[1], p + 4, 3);
            check(gp_parse_put_key_resp(p, 7, &exp) == OT_OK);
        }
        (void)gp_parse_put_key_resp(p, n, &exp);
        break;
    }
    }
    return 0;
}
