/* CAP reader tests. The CAP zips are built here with libzip's write API.
 * With OT_CAP_WRITE_SEEDS=<dir> in the environment the test also writes the
 * fuzz seeds (fuzz/corpus/cap/) it uses. */
#include "gp/cap.h"

#include "core/buf.h"
#include "core/tlv.h"

#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include <cmocka.h>

#define PFX "com/example/javacard/"

struct entry {
    const char *name;
    const uint8_t *data;
    size_t len;
};

/* Builds a zip in memory; returns a malloc'd buffer. */
static uint8_t *make_zip(const struct entry *e, size_t n, size_t *out_len)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
    assert_non_null(src);
    zip_t *za = zip_open_from_source(src, ZIP_TRUNCATE, &ze);
    assert_non_null(za);
    zip_source_keep(src);
    for (size_t i = 0; i < n; i++) {
        zip_source_t *fs = zip_source_buffer(za, e[i].data, e[i].len, 0);
        assert_non_null(fs);
        assert_true(zip_file_add(za, e[i].name, fs, ZIP_FL_ENC_UTF_8) >= 0);
    }
    assert_int_equal(zip_close(za), 0);
    zip_stat_t st;
    assert_int_equal(zip_source_open(src), 0);
    assert_int_equal(zip_source_stat(src, &st), 0);
    uint8_t *buf = malloc((size_t)st.size);
    assert_non_null(buf);
    assert_int_equal(zip_source_read(src, buf, st.size), (zip_int64_t)st.size);
    zip_source_close(src);
    zip_source_free(src);
    zip_error_fini(&ze);
    *out_len = (size_t)st.size;
    return buf;
}

/* Component: tag, u2 size, info. Up to 512 bytes. */
struct comp {
    uint8_t b[3 + 512];
    size_t len;
};

static void comp_make(struct comp *c, uint8_t tag, const uint8_t *info, size_t n)
{
    assert_true(n <= 512);
    c->b[0] = tag;
    ot_put_u16be(c->b + 1, (uint16_t)n);
    memcpy(c->b + 3, info, n);
    c->len = 3 + n;
}

static const uint8_t pkg_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x41, 0x42, 0x43};
static const uint8_t app1_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x41, 0x42, 0x43, 0x01};
static const uint8_t app2_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x41, 0x42, 0x43, 0x02, 0x03};

static const uint8_t header_info[] = {
    0xDE, 0xCA, 0xFF, 0xED, 0x02, 0x02, /* magic, CAP 2.2 */
    0x04,                               /* ACC_APPLET */
    0x00, 0x01,                         /* package 1.0 */
    0x08, 0xA0, 0x00, 0x00, 0x01, 0x51, 0x41, 0x42, 0x43, 0x03, 'a', 'b', 'c',
};
static const uint8_t applet_info[] = {
    0x02, 0x09, 0xA0, 0x00, 0x00, 0x01, 0x51, 0x41, 0x42, 0x43, 0x01, 0x00, 0x10,
    0x0A, 0xA0, 0x00, 0x00, 0x01, 0x51, 0x41, 0x42, 0x43, 0x02, 0x03, 0x00, 0x20,
};

/* The nine components of the minimal CAP plus Descriptor, in LFDB order
 * (Header Directory Import Applet Class Method StaticField ConstantPool
 * RefLocation), Descriptor last. */
enum { C_HDR, C_DIR, C_IMP, C_APP, C_CLS, C_MTH, C_SF, C_CP, C_RL, C_DESC, C_N };
static const char *const comp_names[C_N] = {
    PFX "Header.cap",      PFX "Directory.cap",  PFX "Import.cap",      PFX "Applet.cap",
    PFX "Class.cap",       PFX "Method.cap",     PFX "StaticField.cap", PFX "ConstantPool.cap",
    PFX "RefLocation.cap", PFX "Descriptor.cap",
};
static const uint8_t comp_tags[C_N] = {1, 2, 4, 3, 6, 7, 8, 5, 9, 11};

struct capset {
    struct comp c[C_N];
};

static void capset_init(struct capset *s, size_t filler)
{
    uint8_t info[300];
    comp_make(&s->c[C_HDR], 1, header_info, sizeof header_info);
    comp_make(&s->c[C_APP], 3, applet_info, sizeof applet_info);
    for (int i = 0; i < C_N; i++) {
        if (i == C_HDR || i == C_APP) {
            continue;
        }
        size_t n = 4 + (size_t)i + filler;
        assert_true(n <= sizeof info);
        for (size_t k = 0; k < n; k++) {
            info[k] = (uint8_t)(0x10 * (size_t)i + k);
        }
        comp_make(&s->c[i], comp_tags[i], info, n);
    }
}

/* Zip with components [0, n) except skip (-1: none), in reverse order so the
 * reader must sort them. */
static uint8_t *capset_zip(const struct capset *s, int n, int skip, size_t *len)
{
    struct entry e[C_N + 2];
    size_t k = 0;
    static const uint8_t manifest[] = "Manifest-Version: 1.0\n";
    e[k++] = (struct entry){"META-INF/MANIFEST.MF", manifest, sizeof manifest - 1};
    for (int i = n - 1; i >= 0; i--) {
        if (i != skip) {
            e[k++] = (struct entry){comp_names[i], s->c[i].b, s->c[i].len};
        }
    }
    return make_zip(e, k, len);
}

static size_t expected_lfdb(const struct capset *s, bool desc, uint8_t *out)
{
    size_t n = 0;
    for (int i = 0; i < (desc ? C_N : C_RL + 1); i++) {
        memcpy(out + n, s->c[i].b, s->c[i].len);
        n += s->c[i].len;
    }
    return n;
}

static void test_valid_minimal(void **state)
{
    (void)state;
    struct capset s;
    capset_init(&s, 0);
    size_t zl = 0;
    uint8_t *z = capset_zip(&s, C_RL + 1, -1, &zl);
    struct cap_file *cap = NULL;
    assert_int_equal(cap_open_mem(z, zl, &cap), OT_OK);
    free(z);

    const struct cap_info *in = cap_get_info(cap);
    assert_int_equal(in->cap_major, 2);
    assert_int_equal(in->cap_minor, 2);
    assert_int_equal(in->flags, 0x04);
    assert_int_equal(in->pkg_major, 1);
    assert_int_equal(in->pkg_minor, 0);
    assert_int_equal(in->package_aid.len, sizeof pkg_aid);
    assert_memory_equal(in->package_aid.b, pkg_aid, sizeof pkg_aid);
    assert_int_equal(in->applet_count, 2);
    assert_int_equal(in->applets[0].len, sizeof app1_aid);
    assert_memory_equal(in->applets[0].b, app1_aid, sizeof app1_aid);
    assert_int_equal(in->applets[1].len, sizeof app2_aid);
    assert_memory_equal(in->applets[1].b, app2_aid, sizeof app2_aid);

    uint8_t want[4096], got[4096];
    size_t wl = expected_lfdb(&s, false, want);
    assert_int_equal(cap_lfdb_size(cap, 0), wl);
    size_t gl = sizeof got;
    assert_int_equal(cap_lfdb(cap, 0, got, &gl), OT_OK);
    assert_int_equal(gl, wl);
    assert_memory_equal(got, want, wl);
    /* Header first: C4 content starts 01 00 16 DECAFFED. */
    assert_int_equal(got[0], 0x01);
    assert_int_equal(ot_get_u32be(got + 3), CAP_MAGIC);

    /* No Descriptor present: the flag changes nothing. */
    assert_int_equal(cap_lfdb_size(cap, CAP_LFDB_DESCRIPTOR), wl);

    /* Too small a buffer reports the size. */
    gl = 10;
    assert_int_equal(cap_lfdb(cap, 0, got, &gl), OT_E_BUF_SMALL);
    assert_int_equal(gl, wl);

    const uint8_t *p = NULL;
    size_t pn = 0;
    assert_int_equal(cap_component(cap, CAP_COMP_METHOD, &p, &pn), OT_OK);
    assert_int_equal(pn, s.c[C_MTH].len);
    assert_memory_equal(p, s.c[C_MTH].b, pn);
    assert_int_equal(cap_component(cap, CAP_COMP_EXPORT, &p, &pn), OT_E_NOT_FOUND);
    assert_int_equal(cap_component(cap, (enum cap_component)13, &p, &pn), OT_E_ARG);
    assert_string_equal(cap_component_name(CAP_COMP_REF_LOCATION), "RefLocation");
    assert_null(cap_component_name((enum cap_component)0));
    cap_free(cap);
    cap_free(NULL);
}

static void test_descriptor_and_hash(void **state)
{
    (void)state;
    struct capset s;
    capset_init(&s, 0);
    size_t zl = 0;
    uint8_t *z = capset_zip(&s, C_N, -1, &zl);
    struct cap_file *cap = NULL;
    assert_int_equal(cap_open_mem(z, zl, &cap), OT_OK);
    free(z);

    uint8_t want[4096], got[4096];
    size_t wl = expected_lfdb(&s, false, want);
    size_t gl = sizeof got;
    assert_int_equal(cap_lfdb(cap, 0, got, &gl), OT_OK);
    assert_int_equal(gl, wl);
    assert_memory_equal(got, want, wl);

    size_t wdl = expected_lfdb(&s, true, want);
    gl = sizeof got;
    assert_int_equal(cap_lfdb(cap, CAP_LFDB_DESCRIPTOR, got, &gl), OT_OK);
    assert_int_equal(gl, wdl);
    assert_memory_equal(got, want, wdl);

    /* Hashes cover exactly the LFDB (no C4 header). */
    uint8_t h[CAP_HASH_MAX], ref[EVP_MAX_MD_SIZE];
    unsigned rl = 0;
    size_t hl = sizeof h;
    assert_int_equal(cap_lfdb_hash(cap, 0, CAP_HASH_SHA256, h, &hl), OT_OK);
    assert_int_equal(hl, 32);
    assert_int_equal(EVP_Digest(want, wl, ref, &rl, EVP_sha256(), NULL), 1);
    assert_memory_equal(h, ref, 32);
    hl = sizeof h;
    assert_int_equal(cap_lfdb_hash(cap, CAP_LFDB_DESCRIPTOR, CAP_HASH_SHA1, h, &hl), OT_OK);
    assert_int_equal(hl, 20);
    assert_int_equal(EVP_Digest(want, wdl, ref, &rl, EVP_sha1(), NULL), 1);
    assert_memory_equal(h, ref, 20);
    hl = 19;
    assert_int_equal(cap_lfdb_hash(cap, 0, CAP_HASH_SHA1, h, &hl), OT_E_BUF_SMALL);
    assert_int_equal(hl, 20);
    hl = sizeof h;
    assert_int_equal(cap_lfdb_hash(cap, 0, (enum cap_hash)7, h, &hl), OT_E_ARG);
    cap_free(cap);
}

/* C4 length encodings 1, 2 and 3 bytes; DAP blocks before C4. */
static void test_load_file(void **state)
{
    (void)state;
    static const struct {
        size_t filler;
        size_t len_bytes; /* of the C4 length field */
    } rows[] = {{0, 2}, {20, 3}};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        struct capset s;
        size_t filler = rows[r].filler;
        capset_init(&s, filler);
        size_t zl = 0;
        uint8_t *z = capset_zip(&s, C_RL + 1, -1, &zl);
        struct cap_file *cap = NULL;
        assert_int_equal(cap_open_mem(z, zl, &cap), OT_OK);
        free(z);
        uint8_t lfdb[4096], lf[4200];
        size_t ll = expected_lfdb(&s, false, lfdb);
        /* filler 0 gives 128..255 bytes, 20 more than 255 */
        assert_true(rows[r].len_bytes == 2 ? (ll >= 128 && ll <= 255) : ll > 255);
        size_t lfl = sizeof lf;
        assert_int_equal(cap_load_file(cap, 0, NULL, 0, lf, &lfl), OT_OK);
        assert_int_equal(lfl, 1 + rows[r].len_bytes + ll);
        assert_int_equal(cap_load_file_size(ll, NULL, 0), lfl);
        assert_int_equal(lf[0], 0xC4);
        if (rows[r].len_bytes == 2) {
            assert_int_equal(lf[1], 0x81);
            assert_int_equal(lf[2], ll);
        } else {
            assert_int_equal(lf[1], 0x82);
            assert_int_equal(ot_get_u16be(lf + 2), ll);
        }
        assert_memory_equal(lf + 1 + rows[r].len_bytes, lfdb, ll);
        /* cap_load_file_build over the same LFDB gives the same bytes. */
        uint8_t lf2[4200];
        size_t lf2l = sizeof lf2;
        assert_int_equal(cap_load_file_build(lfdb, ll, NULL, 0, lf2, &lf2l), OT_OK);
        assert_int_equal(lf2l, lfl);
        assert_memory_equal(lf2, lf, lfl);
        lf2l = 3;
        assert_int_equal(cap_load_file(cap, 0, NULL, 0, lf2, &lf2l), OT_E_BUF_SMALL);
        assert_int_equal(lf2l, lfl);
        cap_free(cap);
    }
}

static void test_load_file_dap(void **state)
{
    (void)state;
    static const uint8_t lfdb[] = {0x01, 0x00, 0x01, 0xAA};
    static const uint8_t sd[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
    static const uint8_t sig[] = {0x11, 0x22, 0x33};
    struct cap_dap d = {sd, sizeof sd, sig, sizeof sig};
    uint8_t out[64];
    size_t ol = sizeof out;
    assert_int_equal(cap_load_file_build(lfdb, sizeof lfdb, &d, 1, out, &ol), OT_OK);
    static const uint8_t want[] = {0xE2, 0x0F, 0x4F, 0x08, 0xA0, 0x00, 0x00, 0x01,
                                   0x51, 0x00, 0x00, 0x00, 0xC3, 0x03, 0x11, 0x22,
                                   0x33, 0xC4, 0x04, 0x01, 0x00, 0x01, 0xAA};
    assert_int_equal(ol, sizeof want);
    assert_memory_equal(out, want, sizeof want);
    assert_int_equal(cap_load_file_size(sizeof lfdb, &d, 1), sizeof want);

    /* Invalid arguments. */
    struct cap_dap bad = {sd, 4, sig, sizeof sig};
    ol = sizeof out;
    assert_int_equal(cap_load_file_build(lfdb, sizeof lfdb, &bad, 1, out, &ol), OT_E_ARG);
    assert_int_equal(cap_load_file_size(sizeof lfdb, &bad, 1), 0);
    ol = sizeof out;
    assert_int_equal(cap_load_file_build(lfdb, 0, NULL, 0, out, &ol), OT_E_ARG);
    ol = sizeof out;
    assert_int_equal(cap_load_file_build(lfdb, sizeof lfdb, NULL, 1, out, &ol), OT_E_ARG);
    ol = sizeof out;
    assert_int_equal(cap_load_file_build(lfdb, sizeof lfdb, &d, CAP_MAX_DAPS + 1, out, &ol),
                     OT_E_ARG);
}

/* ------------------------------------------------------------ negatives */

enum mutation {
    M_NOT_ZIP,
    M_EMPTY,
    M_MISSING_HEADER,
    M_MISSING_METHOD,
    M_SIZE_BIGGER,
    M_SIZE_SMALLER,
    M_WRONG_TAG,
    M_SHORT_ENTRY,
    M_HEADER_TRUNCATED,
    M_BAD_MAGIC,
    M_AID_SHORT,
    M_APPLET_TRAILING,
    M_APPLET_TRUNCATED,
    M_EXTENDED,
    M_ZIP_CUT,
    M_TWO_PACKAGES,
    M_DUPLICATE,
    M_TOO_MANY_ENTRIES,
    M_HEADER_TRAILING,
    M_STATIC_RESOURCES,
};

static const struct {
    enum mutation m;
    ot_err want;
    const char *what;
} neg_cases[] = {
    {M_NOT_ZIP, OT_E_CAP, "not a zip"},
    {M_EMPTY, OT_E_CAP, "zero bytes"},
    {M_MISSING_HEADER, OT_E_CAP, "no Header component"},
    {M_MISSING_METHOD, OT_E_CAP, "no Method component"},
    {M_SIZE_BIGGER, OT_E_TRUNCATED, "u2 size larger than the entry"},
    {M_SIZE_SMALLER, OT_E_CAP, "u2 size smaller than the entry"},
    {M_WRONG_TAG, OT_E_CAP, "Class.cap with tag 7"},
    {M_SHORT_ENTRY, OT_E_TRUNCATED, "2-byte component"},
    {M_HEADER_TRUNCATED, OT_E_TRUNCATED, "Header AID runs past its component"},
    {M_BAD_MAGIC, OT_E_CAP, "magic DECAFFEE"},
    {M_AID_SHORT, OT_E_CAP, "package AID of 4 bytes"},
    {M_APPLET_TRAILING, OT_E_CAP, "byte after the last applet"},
    {M_APPLET_TRUNCATED, OT_E_TRUNCATED, "applet count 3, two present"},
    {M_EXTENDED, OT_E_UNSUPPORTED, "JC 3.1 extended format flag"},
    {M_ZIP_CUT, OT_E_CAP, "zip cut in the middle"},
    {M_TWO_PACKAGES, OT_E_CAP, "components in two javacard directories"},
    {M_DUPLICATE, OT_E_CAP, "Method.cap twice"},
    {M_TOO_MANY_ENTRIES, OT_E_LIMIT, "257 zip entries"},
    {M_HEADER_TRAILING, OT_E_CAP, "bytes after the package name"},
    {M_STATIC_RESOURCES, OT_E_UNSUPPORTED, "JC 3.1 StaticResources component"},
};

static uint8_t *neg_build(enum mutation m, size_t *len)
{
    struct capset s;
    capset_init(&s, 0);
    uint8_t info[600];
    switch (m) {
    case M_NOT_ZIP: {
        uint8_t *b = malloc(16);
        assert_non_null(b);
        memcpy(b, "PK\x03\x04 not a zip", 15); /* with its NUL; 14 bytes count */
        *len = 14;
        return b;
    }
    case M_EMPTY:
        *len = 0;
        return malloc(1);
    case M_MISSING_HEADER:
        return capset_zip(&s, C_RL + 1, C_HDR, len);
    case M_MISSING_METHOD:
        return capset_zip(&s, C_RL + 1, C_MTH, len);
    case M_SIZE_BIGGER:
        s.c[C_CLS].b[2]++;
        break;
    case M_SIZE_SMALLER:
        s.c[C_CLS].b[2]--;
        break;
    case M_WRONG_TAG:
        s.c[C_CLS].b[0] = 7;
        break;
    case M_SHORT_ENTRY:
        s.c[C_IMP].len = 2;
        break;
    case M_HEADER_TRUNCATED:
        comp_make(&s.c[C_HDR], 1, header_info, 12); /* AID length 8, 3 bytes present */
        break;
    case M_BAD_MAGIC:
        memcpy(info, header_info, sizeof header_info);
        info[3] = 0xEE;
        comp_make(&s.c[C_HDR], 1, info, sizeof header_info);
        break;
    case M_AID_SHORT:
        memcpy(info, header_info, sizeof header_info);
        info[9] = 4;
        comp_make(&s.c[C_HDR], 1, info, 14);
        break;
    case M_APPLET_TRAILING:
        memcpy(info, applet_info, sizeof applet_info);
        info[sizeof applet_info] = 0;
        comp_make(&s.c[C_APP], 3, info, sizeof applet_info + 1);
        break;
    case M_APPLET_TRUNCATED:
        memcpy(info, applet_info, sizeof applet_info);
        info[0] = 3;
        comp_make(&s.c[C_APP], 3, info, sizeof applet_info);
        break;
    case M_EXTENDED:
        memcpy(info, header_info, sizeof header_info);
        info[6] |= 0x08;
        comp_make(&s.c[C_HDR], 1, info, sizeof header_info);
        break;
    case M_ZIP_CUT: {
        uint8_t *z = capset_zip(&s, C_RL + 1, -1, len);
        *len /= 2;
        return z;
    }
    case M_STATIC_RESOURCES: {
        struct entry e[C_N + 1];
        size_t k = 0;
        for (int i = 0; i <= C_RL; i++) {
            e[k++] = (struct entry){comp_names[i], s.c[i].b, s.c[i].len};
        }
        static const uint8_t sr[] = {13, 0x00, 0x01, 0x00};
        e[k++] = (struct entry){PFX "StaticResources.cap", sr, sizeof sr};
        return make_zip(e, k, len);
    }
    case M_TWO_PACKAGES:
    case M_DUPLICATE: {
        struct entry e[C_N + 1];
        size_t k = 0;
        for (int i = 0; i <= C_RL; i++) {
            e[k++] = (struct entry){comp_names[i], s.c[i].b, s.c[i].len};
        }
        e[k++] = (struct entry){m == M_TWO_PACKAGES ? "other/javacard/Export.cap"
                                                    : "com/example/javacard/Methoz.cap",
                                s.c[C_MTH].b, s.c[C_MTH].len};
        uint8_t *z = make_zip(e, k, len);
        if (m == M_DUPLICATE) {
            /* libzip refuses duplicate names on write: rename in the raw bytes
             * (local and central headers; CRCs cover only the data). */
            for (size_t i = 0; i + 6 <= *len; i++) {
                if (memcmp(z + i, "Methoz", 6) == 0) {
                    z[i + 5] = 'd';
                }
            }
        }
        return z;
    }
    case M_TOO_MANY_ENTRIES: {
        static char names[CAP_MAX_ENTRIES + 1 - (C_RL + 1)][32];
        struct entry e[CAP_MAX_ENTRIES + 1];
        size_t k = 0;
        for (int i = 0; i <= C_RL; i++) {
            e[k++] = (struct entry){comp_names[i], s.c[i].b, s.c[i].len};
        }
        for (size_t j = 0; k < CAP_MAX_ENTRIES + 1; j++) {
            snprintf(names[j], sizeof names[j], "res/%zu.bin", j);
            e[k++] = (struct entry){names[j], (const uint8_t *)"x", 1};
        }
        return make_zip(e, k, len);
    }
    case M_HEADER_TRAILING:
        memcpy(info, header_info, sizeof header_info);
        info[sizeof header_info] = 0x55;
        comp_make(&s.c[C_HDR], 1, info, sizeof header_info + 1);
        break;
    }
    return capset_zip(&s, C_RL + 1, -1, len);
}

static void test_negative(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof neg_cases / sizeof neg_cases[0]; i++) {
        size_t len = 0;
        uint8_t *z = NULL;
        z = neg_build(neg_cases[i].m, &len);
        struct cap_file *cap = (struct cap_file *)(uintptr_t)1;
        ot_err got = cap_open_mem(z, len, &cap);
        if (got != neg_cases[i].want) {
            print_error("case '%s': got %s want %s\n", neg_cases[i].what, ot_errname(got),
                        ot_errname(neg_cases[i].want));
        }
        assert_int_equal(got, neg_cases[i].want);
        assert_null(cap);
        free(z);
    }
}

/* The sum of component sizes is capped: 8 full-size (65538-byte) components
 * exceed CAP_MAX_TOTAL. */
static void test_total_limit(void **state)
{
    (void)state;
    struct capset s;
    capset_init(&s, 0);
    size_t big_len = 3 + 0xFFFF;
    uint8_t *big[C_N] = {0};
    struct entry e[C_N];
    size_t k = 0;
    for (int i = 0; i < C_N; i++) {
        if (i == C_HDR || i == C_APP) {
            e[k++] = (struct entry){comp_names[i], s.c[i].b, s.c[i].len};
            continue;
        }
        big[i] = calloc(1, big_len);
        big[i][0] = comp_tags[i];
        big[i][1] = 0xFF;
        big[i][2] = 0xFF;
        e[k++] = (struct entry){comp_names[i], big[i], big_len};
    }
    assert_true(8 * big_len > CAP_MAX_TOTAL);
    size_t zl = 0;
    uint8_t *z = make_zip(e, k, &zl);
    struct cap_file *cap = NULL;
    assert_int_equal(cap_open_mem(z, zl, &cap), OT_E_LIMIT);
    assert_null(cap);
    free(z);
    for (int i = 0; i < C_N; i++) {
        free(big[i]);
    }
}

static void test_args_and_path(void **state)
{
    (void)state;
    struct cap_file *cap = NULL;
    uint8_t b[4] = {0};
    assert_int_equal(cap_open_mem(NULL, 4, &cap), OT_E_ARG);
    assert_int_equal(cap_open_mem(b, sizeof b, NULL), OT_E_ARG);
    uint8_t *huge = calloc(1, CAP_MAX_FILE_SIZE + 1);
    assert_int_equal(cap_open_mem(huge, CAP_MAX_FILE_SIZE + 1, &cap), OT_E_LIMIT);
    free(huge);
    assert_int_equal(cap_open_path("/nonexistent/dir/x.cap", &cap), OT_E_IO);
    assert_null(cap);

    /* Round trip through a file; package path empty (javacard/ at the root). */
    struct capset s;
    capset_init(&s, 0);
    struct entry e[C_RL + 1];
    static char names[C_RL + 1][40];
    for (int i = 0; i <= C_RL; i++) {
        snprintf(names[i], sizeof names[i], "javacard/%s", comp_names[i] + strlen(PFX));
        e[i] = (struct entry){names[i], s.c[i].b, s.c[i].len};
    }
    size_t zl = 0;
    uint8_t *z = make_zip(e, C_RL + 1, &zl);
    char path[] = "/tmp/ot_cap_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, z, zl), (ssize_t)zl);
    close(fd);
    assert_int_equal(cap_open_path(path, &cap), OT_OK);
    assert_int_equal(cap_get_info(cap)->applet_count, 2);
    cap_free(cap);

    /* A file over CAP_MAX_FILE_SIZE, and an empty one. */
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t *zeros = calloc(1, CAP_MAX_FILE_SIZE + 1);
    assert_int_equal(fwrite(zeros, 1, CAP_MAX_FILE_SIZE + 1, f), CAP_MAX_FILE_SIZE + 1);
    fclose(f);
    free(zeros);
    assert_int_equal(cap_open_path(path, &cap), OT_E_LIMIT);
    assert_null(cap);
    f = fopen(path, "wb");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(cap_open_path(path, &cap), OT_E_CAP);
    unlink(path);

    /* "xjavacard/" is not a javacard directory: nothing found -> missing Header. */
    for (int i = 0; i <= C_RL; i++) {
        snprintf(names[i], sizeof names[i], "xjavacard/%s", comp_names[i] + strlen(PFX));
    }
    free(z);
    z = make_zip(e, C_RL + 1, &zl);
    assert_int_equal(cap_open_mem(z, zl, &cap), OT_E_CAP);
    free(z);
}

/* Optional: writes the fuzz seeds. */
static void write_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void test_write_seeds(void **state)
{
    (void)state;
    const char *dir = getenv("OT_CAP_WRITE_SEEDS");
    if (!dir) {
        skip();
    }
    struct capset s;
    capset_init(&s, 0);
    size_t zl = 0;
    uint8_t *z = capset_zip(&s, C_RL + 1, -1, &zl);
    assert_true(zl < 4096);
    write_file(dir, "minimal.cap", z, zl);
    write_file(dir, "truncated.cap", z, zl * 2 / 3);
    free(z);
    z = capset_zip(&s, C_N, -1, &zl);
    assert_true(zl < 4096);
    write_file(dir, "with_descriptor.cap", z, zl);
    free(z);
    z = neg_build(M_SIZE_BIGGER, &zl);
    write_file(dir, "size_mismatch.cap", z, zl);
    free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_minimal), cmocka_unit_test(test_descriptor_and_hash),
        cmocka_unit_test(test_load_file),     cmocka_unit_test(test_load_file_dap),
        cmocka_unit_test(test_negative),      cmocka_unit_test(test_total_limit),
        cmocka_unit_test(test_args_and_path), cmocka_unit_test(test_write_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
