#include "gp/cap.h"

#define OT_LOG_COMPONENT "gp.cap"
#include "core/buf.h"
#include "core/log.h"
#include "core/tlv.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#define CAP_COMP_HDR_LEN      3u /* u1 tag, u2 size */
#define CAP_COMP_MAX_LEN      (CAP_COMP_HDR_LEN + 0xFFFFu)
#define CAP_DIR_NAME          "javacard/"           /* JCVM 3.0.5 6.1: <pkg>/javacard/<Comp>.cap */
#define CAP_HDR_FLAG_EXT      0x08u                 /* JC 3.1 extended CAP (ACC_EXTENDED) */
#define CAP_STATIC_RES_NAME   "StaticResources.cap" /* JC 3.1 component 13 */
#define CAP_MATCH_UNSUPPORTED (-1)
#define GP_TAG_LFDB           0xC4u /* GPCS 11.6.2.3 Load File Data Block */
#define GP_TAG_DAP_BLOCK      0xE2u /* GPCS 11.6.2.3 DAP block */
#define GP_TAG_SD_AID         0x4Fu
#define GP_TAG_DAP_SIG        0xC3u

struct cap_file {
    struct cap_info info;
    uint8_t *comp[CAP_COMP_MAX + 1]; /* indexed by tag; whole component incl. tag and size */
    size_t comp_len[CAP_COMP_MAX + 1];
};

/* Component names as the zip entries spell them. */
static const char *const cap_names[CAP_COMP_MAX + 1] = {
    [CAP_COMP_HEADER] = "Header",
    [CAP_COMP_DIRECTORY] = "Directory",
    [CAP_COMP_APPLET] = "Applet",
    [CAP_COMP_IMPORT] = "Import",
    [CAP_COMP_CONSTANT_POOL] = "ConstantPool",
    [CAP_COMP_CLASS] = "Class",
    [CAP_COMP_METHOD] = "Method",
    [CAP_COMP_STATIC_FIELD] = "StaticField",
    [CAP_COMP_REF_LOCATION] = "RefLocation",
    [CAP_COMP_EXPORT] = "Export",
    [CAP_COMP_DESCRIPTOR] = "Descriptor",
    [CAP_COMP_DEBUG] = "Debug",
};

/* Load order of the LFDB (JCVM 3.0.5 6.2; GPCS C.2). Descriptor and Debug are
 * only appended on request. */
static const enum cap_component cap_load_order[] = {
    CAP_COMP_HEADER,        CAP_COMP_DIRECTORY,    CAP_COMP_IMPORT,       CAP_COMP_APPLET,
    CAP_COMP_CLASS,         CAP_COMP_METHOD,       CAP_COMP_STATIC_FIELD, CAP_COMP_EXPORT,
    CAP_COMP_CONSTANT_POOL, CAP_COMP_REF_LOCATION,
};

static const enum cap_component cap_required[] = {
    CAP_COMP_HEADER, CAP_COMP_DIRECTORY,    CAP_COMP_IMPORT,        CAP_COMP_CLASS,
    CAP_COMP_METHOD, CAP_COMP_STATIC_FIELD, CAP_COMP_CONSTANT_POOL, CAP_COMP_REF_LOCATION,
};

const char *cap_component_name(enum cap_component c)
{
    if ((int)c < 1 || (int)c > CAP_COMP_MAX) {
        return NULL;
    }
    return cap_names[c];
}

void cap_free(struct cap_file *cap)
{
    if (!cap) {
        return;
    }
    for (int i = 0; i <= CAP_COMP_MAX; i++) {
        free(cap->comp[i]);
    }
    free(cap);
}

/* Splits an entry name into the package directory (up to and including
 * "javacard/") and the component; 0 when the name is not a known component,
 * CAP_MATCH_UNSUPPORTED for a JC 3.1 StaticResources component (loading
 * without it would silently drop the applet's resources). */
static int cap_match_name(const char *name, size_t *prefix_len)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    size_t dir_len = (size_t)(base - name);
    size_t jl = strlen(CAP_DIR_NAME);

    if (dir_len < jl || memcmp(base - jl, CAP_DIR_NAME, jl) != 0) {
        return 0;
    }
    /* "javacard/" must be a whole directory name. */
    if (dir_len > jl && base[-(ptrdiff_t)jl - 1] != '/') {
        return 0;
    }
    if (strcmp(base, CAP_STATIC_RES_NAME) == 0) {
        *prefix_len = dir_len;
        return CAP_MATCH_UNSUPPORTED;
    }
    for (int t = 1; t <= CAP_COMP_MAX; t++) {
        size_t nl = strlen(cap_names[t]);
        if (strncmp(base, cap_names[t], nl) == 0 && strcmp(base + nl, ".cap") == 0) {
            *prefix_len = dir_len;
            return t;
        }
    }
    return 0;
}

/* A cursor over the info of a component read by cap_read_component(), which
 * checked that it holds at least its tag and size. */
static void cap_comp_rd(const struct cap_file *cap, int tag, struct buf_rd *r)
{
    buf_rd_init(r, cap->comp[tag] + CAP_COMP_HDR_LEN, cap->comp_len[tag] - CAP_COMP_HDR_LEN);
}

static ot_err cap_read_aid(struct buf_rd *r, struct cap_aid *aid)
{
    ot_err err = OT_OK;
    uint8_t l = 0;

    OT_TRY(buf_rd_u8(r, &l));
    if (l < CAP_AID_MIN || l > CAP_AID_MAX) {
        OT_LOG_DEBUG("AID length %u outside 5..16", l);
        OT_FAIL(OT_E_CAP);
    }
    OT_TRY(buf_rd_copy(r, aid->b, l));
    aid->len = l;
out:
    return err;
}

/* Header component (JCVM 3.0.5 6.4): magic, CAP version, flags, package_info
 * {minor, major, AID}, then package_name_info (CAP 2.2+) which is not needed. */
static ot_err cap_parse_header(struct cap_file *cap)
{
    ot_err err = OT_OK;
    struct buf_rd r;
    uint32_t magic = 0;
    struct cap_info *in = &cap->info;

    cap_comp_rd(cap, CAP_COMP_HEADER, &r);
    OT_TRY(buf_rd_u32be(&r, &magic));
    if (magic != CAP_MAGIC) {
        OT_LOG_DEBUG("bad Header magic %08x", (unsigned)magic);
        OT_FAIL(OT_E_CAP);
    }
    OT_TRY(buf_rd_u8(&r, &in->cap_minor));
    OT_TRY(buf_rd_u8(&r, &in->cap_major));
    OT_TRY(buf_rd_u8(&r, &in->flags));
    if (in->flags & CAP_HDR_FLAG_EXT) {
        OT_FAIL(OT_E_UNSUPPORTED);
    }
    OT_TRY(buf_rd_u8(&r, &in->pkg_minor));
    OT_TRY(buf_rd_u8(&r, &in->pkg_major));
    OT_TRY(cap_read_aid(&r, &in->package_aid));
    /* package_name_info: u1 length + name; checked for bounds only. */
    if (r.left > 0) {
        uint8_t nl = 0;
        OT_TRY(buf_rd_u8(&r, &nl));
        OT_TRY(buf_rd_skip(&r, nl));
    }
    if (r.left != 0) {
        OT_FAIL(OT_E_CAP);
    }
out:
    return err;
}

/* Applet component (JCVM 3.0.5 6.5): u1 count, then per applet
 * {u1 AID_length, AID, u2 install_method_offset}. */
static ot_err cap_parse_applets(struct cap_file *cap)
{
    ot_err err = OT_OK;
    struct buf_rd r;
    uint8_t count = 0;
    uint16_t off = 0;

    if (!cap->comp[CAP_COMP_APPLET]) {
        return OT_OK;
    }
    cap_comp_rd(cap, CAP_COMP_APPLET, &r);
    OT_TRY(buf_rd_u8(&r, &count));
    for (size_t i = 0; i < count; i++) {
        OT_TRY(cap_read_aid(&r, &cap->info.applets[i]));
        OT_TRY(buf_rd_u16be(&r, &off));
    }
    if (r.left != 0) {
        OT_FAIL(OT_E_CAP);
    }
    cap->info.applet_count = count;
out:
    return err;
}

/* Reads one zip entry known to be a component and checks its tag and size. */
static ot_err cap_read_component(zip_t *za, zip_uint64_t idx, int tag, zip_uint64_t size,
                                 struct cap_file *cap)
{
    ot_err err = OT_OK;
    zip_file_t *zf = NULL;
    uint8_t *buf = NULL;
    uint8_t extra = 0;

    if (size < CAP_COMP_HDR_LEN) {
        OT_LOG_DEBUG("%s component of %u bytes", cap_names[tag], (unsigned)size);
        OT_FAIL(OT_E_TRUNCATED);
    }
    /* A u2 size bounds every component: refuse before allocating anything. */
    if (size > CAP_COMP_MAX_LEN) {
        OT_FAIL(OT_E_CAP);
    }
    buf = malloc((size_t)size);
    if (!buf) {
        OT_FAIL(OT_E_NOMEM);
    }
    zf = zip_fopen_index(za, idx, 0);
    if (!zf) {
        OT_LOG_DEBUG("cannot open %s: %s", cap_names[tag], zip_strerror(za));
        OT_FAIL(OT_E_CAP);
    }
    if (zip_fread(zf, buf, size) != (zip_int64_t)size || zip_fread(zf, &extra, 1) != 0) {
        OT_LOG_DEBUG("cannot read %s: %s", cap_names[tag], zip_file_strerror(zf));
        OT_FAIL(OT_E_CAP);
    }
    if (buf[0] != tag) {
        OT_LOG_DEBUG("%s component has tag %u", cap_names[tag], buf[0]);
        OT_FAIL(OT_E_CAP);
    }
    size_t declared = (size_t)ot_get_u16be(buf + 1) + CAP_COMP_HDR_LEN;
    if (declared > size) {
        OT_LOG_DEBUG("%s declares %zu bytes, entry has %u", cap_names[tag], declared,
                     (unsigned)size);
        OT_FAIL(OT_E_TRUNCATED);
    }
    if (declared < size) {
        OT_LOG_DEBUG("%s declares %zu bytes, entry has %u", cap_names[tag], declared,
                     (unsigned)size);
        OT_FAIL(OT_E_CAP);
    }
    cap->comp[tag] = buf;
    cap->comp_len[tag] = (size_t)size;
    buf = NULL;
out:
    if (zf) {
        zip_fclose(zf);
    }
    free(buf);
    return err;
}

static ot_err cap_scan(zip_t *za, struct cap_file *cap)
{
    ot_err err = OT_OK;
    char *prefix = NULL; /* package directory of the first component seen */
    size_t prefix_len = 0;
    size_t total = 0;
    zip_int64_t count = zip_get_num_entries(za, 0);

    if (count < 0) {
        OT_FAIL(OT_E_CAP);
    }
    if ((zip_uint64_t)count > CAP_MAX_ENTRIES) {
        OT_LOG_DEBUG("%lld zip entries", (long long)count);
        OT_FAIL(OT_E_LIMIT);
    }
    for (zip_uint64_t i = 0; i < (zip_uint64_t)count; i++) {
        zip_stat_t st;
        size_t pl = 0;
        zip_stat_init(&st);
        if (zip_stat_index(za, i, ZIP_FL_ENC_RAW, &st) != 0 || !(st.valid & ZIP_STAT_NAME)
            || !(st.valid & ZIP_STAT_SIZE)) {
            OT_FAIL(OT_E_CAP);
        }
        int tag = cap_match_name(st.name, &pl);
        if (tag == 0) {
            continue;
        }
        if (tag == CAP_MATCH_UNSUPPORTED) {
            OT_LOG_DEBUG("%s: static resources are not supported", st.name);
            OT_FAIL(OT_E_UNSUPPORTED);
        }
        if (!prefix) {
            prefix = malloc(pl + 1);
            if (!prefix) {
                OT_FAIL(OT_E_NOMEM);
            }
            memcpy(prefix, st.name, pl);
            prefix[pl] = '\0';
            prefix_len = pl;
        } else if (pl != prefix_len || memcmp(prefix, st.name, pl) != 0) {
            OT_LOG_DEBUG("components of two packages: %s and %s", prefix, st.name);
            OT_FAIL(OT_E_CAP);
        }
        if (cap->comp[tag]) {
            OT_LOG_DEBUG("duplicate %s", st.name);
            OT_FAIL(OT_E_CAP);
        }
        if (st.size > CAP_MAX_TOTAL || total > CAP_MAX_TOTAL - (size_t)st.size) {
            OT_FAIL(OT_E_LIMIT);
        }
        total += (size_t)st.size;
        OT_TRY(cap_read_component(za, i, tag, st.size, cap));
    }
    for (size_t k = 0; k < sizeof cap_required / sizeof cap_required[0]; k++) {
        if (!cap->comp[cap_required[k]]) {
            OT_LOG_DEBUG("missing %s component", cap_names[cap_required[k]]);
            OT_FAIL(OT_E_CAP);
        }
    }
    OT_TRY(cap_parse_header(cap));
    OT_TRY(cap_parse_applets(cap));
out:
    free(prefix);
    return err;
}

ot_err cap_open_mem(const uint8_t *zipdata, size_t n, struct cap_file **out)
{
    ot_err err = OT_OK;
    struct cap_file *cap = NULL;
    zip_source_t *src = NULL;
    zip_t *za = NULL;
    zip_error_t ze;

    zip_error_init(&ze);
    if (!out || (!zipdata && n > 0)) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (n > CAP_MAX_FILE_SIZE) {
        return OT_E_LIMIT;
    }
    if (n == 0) {
        return OT_E_CAP;
    }
    cap = calloc(1, sizeof *cap);
    if (!cap) {
        OT_FAIL(OT_E_NOMEM);
    }
    /* libzip reads the caller's buffer in place; it is only used during this call. */
    src = zip_source_buffer_create(zipdata, n, 0, &ze);
    if (!src) {
        OT_FAIL(OT_E_NOMEM);
    }
    za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
    if (!za) {
        OT_LOG_DEBUG("not a readable zip: %s", zip_error_strerror(&ze));
        zip_source_free(src);
        OT_FAIL(OT_E_CAP);
    }
    OT_TRY(cap_scan(za, cap));
    *out = cap;
    cap = NULL;
out:
    if (za) {
        zip_discard(za);
    }
    zip_error_fini(&ze);
    cap_free(cap);
    return err;
}

ot_err cap_open_path(const char *path, struct cap_file **out)
{
    ot_err err = OT_OK;
    FILE *f = NULL;
    struct ot_buf data;
    uint8_t chunk[16384];

    ot_buf_init(&data, CAP_MAX_FILE_SIZE);
    if (!path || !out) {
        return OT_E_ARG;
    }
    *out = NULL;
    f = fopen(path, "rb");
    if (!f) {
        OT_FAIL(OT_E_IO);
    }
    for (;;) {
        size_t n = fread(chunk, 1, sizeof chunk, f);
        if (n > 0) {
            /* More than CAP_MAX_FILE_SIZE: ot_buf's cap says OT_E_LIMIT. */
            OT_TRY(ot_buf_append(&data, chunk, n));
        }
        if (n < sizeof chunk) {
            break;
        }
    }
    if (ferror(f)) {
        OT_FAIL(OT_E_IO);
    }
    OT_TRY(cap_open_mem(data.data, data.len, out));
out:
    if (f) {
        fclose(f);
    }
    ot_buf_free(&data);
    return err;
}

const struct cap_info *cap_get_info(const struct cap_file *cap)
{
    return cap ? &cap->info : NULL;
}

ot_err cap_component(const struct cap_file *cap, enum cap_component c, const uint8_t **p, size_t *n)
{
    if (!cap || !p || !n || (int)c < 1 || (int)c > CAP_COMP_MAX) {
        return OT_E_ARG;
    }
    if (!cap->comp[c]) {
        return OT_E_NOT_FOUND;
    }
    *p = cap->comp[c];
    *n = cap->comp_len[c];
    return OT_OK;
}

/* Calls fn on each component of the LFDB in load order. */
static ot_err cap_each_lfdb(const struct cap_file *cap, unsigned flags,
                            ot_err (*fn)(void *ctx, const uint8_t *p, size_t n), void *ctx)
{
    ot_err err = OT_OK;
    enum cap_component extra[2];
    size_t nextra = 0;

    if (flags & CAP_LFDB_DESCRIPTOR) {
        extra[nextra++] = CAP_COMP_DESCRIPTOR;
    }
    if (flags & CAP_LFDB_DEBUG) {
        extra[nextra++] = CAP_COMP_DEBUG;
    }
    for (size_t i = 0; i < sizeof cap_load_order / sizeof cap_load_order[0]; i++) {
        enum cap_component c = cap_load_order[i];
        if (cap->comp[c]) {
            OT_TRY(fn(ctx, cap->comp[c], cap->comp_len[c]));
        }
    }
    for (size_t i = 0; i < nextra; i++) {
        if (cap->comp[extra[i]]) {
            OT_TRY(fn(ctx, cap->comp[extra[i]], cap->comp_len[extra[i]]));
        }
    }
out:
    return err;
}

static ot_err cap_count_cb(void *ctx, const uint8_t *p, size_t n)
{
    (void)p;
    *(size_t *)ctx += n;
    return OT_OK;
}

static ot_err cap_write_cb(void *ctx, const uint8_t *p, size_t n)
{
    buf_wr_bytes(ctx, p, n);
    return OT_OK;
}

static ot_err cap_hash_cb(void *ctx, const uint8_t *p, size_t n)
{
    return EVP_DigestUpdate(ctx, p, n) == 1 ? OT_OK : OT_E_CRYPTO;
}

size_t cap_lfdb_size(const struct cap_file *cap, unsigned flags)
{
    size_t n = 0;
    if (cap) {
        (void)cap_each_lfdb(cap, flags, cap_count_cb, &n);
    }
    return n;
}

ot_err cap_lfdb(const struct cap_file *cap, unsigned flags, uint8_t *out, size_t *len)
{
    struct buf_wr w;

    if (!cap || !len) {
        return OT_E_ARG;
    }
    buf_wr_init(&w, out, *len);
    (void)cap_each_lfdb(cap, flags, cap_write_cb, &w);
    return buf_wr_finish(&w, len);
}

ot_err cap_lfdb_hash(const struct cap_file *cap, unsigned flags, enum cap_hash alg, uint8_t *out,
                     size_t *len)
{
    ot_err err = OT_OK;
    EVP_MD_CTX *md = NULL;
    const EVP_MD *type = NULL;
    unsigned int dl = 0;
    size_t need = 0;

    if (!cap || !len) {
        return OT_E_ARG;
    }
    switch (alg) {
    case CAP_HASH_SHA1:
        type = EVP_sha1();
        need = 20;
        break;
    case CAP_HASH_SHA256:
        type = EVP_sha256();
        need = 32;
        break;
    default:
        return OT_E_ARG;
    }
    if (!out || *len < need) {
        *len = need;
        return OT_E_BUF_SMALL;
    }
    md = EVP_MD_CTX_new();
    if (!md) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (EVP_DigestInit_ex(md, type, NULL) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    OT_TRY(cap_each_lfdb(cap, flags, cap_hash_cb, md));
    if (EVP_DigestFinal_ex(md, out, &dl) != 1 || dl != need) {
        OT_FAIL(OT_E_CRYPTO);
    }
    *len = need;
out:
    EVP_MD_CTX_free(md);
    return err;
}

static bool cap_daps_valid(const struct cap_dap *daps, size_t ndap)
{
    if (ndap > CAP_MAX_DAPS || (ndap > 0 && !daps)) {
        return false;
    }
    for (size_t i = 0; i < ndap; i++) {
        if (!daps[i].sd_aid || daps[i].sd_aid_len < CAP_AID_MIN || daps[i].sd_aid_len > CAP_AID_MAX
            || !daps[i].sig || daps[i].sig_len == 0 || daps[i].sig_len > 0xFFFFu) {
            return false;
        }
    }
    return true;
}

static size_t cap_dap_inner(const struct cap_dap *d)
{
    return 1 + tlv_len_size(d->sd_aid_len) + d->sd_aid_len + 1 + tlv_len_size(d->sig_len)
           + d->sig_len;
}

static void cap_put_daps(struct buf_wr *w, const struct cap_dap *daps, size_t ndap)
{
    for (size_t i = 0; i < ndap; i++) {
        tlv_put_tag(w, GP_TAG_DAP_BLOCK);
        tlv_put_len(w, cap_dap_inner(&daps[i]));
        tlv_put(w, GP_TAG_SD_AID, daps[i].sd_aid, daps[i].sd_aid_len);
        tlv_put(w, GP_TAG_DAP_SIG, daps[i].sig, daps[i].sig_len);
    }
}

size_t cap_load_file_size(size_t lfdb_len, const struct cap_dap *daps, size_t ndap)
{
    size_t n = 0;

    if (lfdb_len == 0 || lfdb_len > TLV_MAX_LEN || !cap_daps_valid(daps, ndap)) {
        return 0;
    }
    for (size_t i = 0; i < ndap; i++) {
        size_t inner = cap_dap_inner(&daps[i]);
        n += 1 + tlv_len_size(inner) + inner;
    }
    return n + 1 + tlv_len_size(lfdb_len) + lfdb_len;
}

ot_err cap_load_file_build(const uint8_t *lfdb, size_t lfdb_len, const struct cap_dap *daps,
                           size_t ndap, uint8_t *out, size_t *len)
{
    struct buf_wr w;

    if (!lfdb || !len || lfdb_len == 0 || lfdb_len > TLV_MAX_LEN || !cap_daps_valid(daps, ndap)) {
        return OT_E_ARG;
    }
    buf_wr_init(&w, out, *len);
    cap_put_daps(&w, daps, ndap);
    tlv_put(&w, GP_TAG_LFDB, lfdb, lfdb_len);
    return buf_wr_finish(&w, len);
}

ot_err cap_load_file(const struct cap_file *cap, unsigned flags, const struct cap_dap *daps,
                     size_t ndap, uint8_t *out, size_t *len)
{
    struct buf_wr w;
    size_t lfdb_len = 0;

    if (!cap || !len || !cap_daps_valid(daps, ndap)) {
        return OT_E_ARG;
    }
    lfdb_len = cap_lfdb_size(cap, flags);
    buf_wr_init(&w, out, *len);
    cap_put_daps(&w, daps, ndap);
    tlv_put_tag(&w, GP_TAG_LFDB);
    tlv_put_len(&w, lfdb_len);
    (void)cap_each_lfdb(cap, flags, cap_write_cb, &w);
    return buf_wr_finish(&w, len);
}
