/* Request body parsing and validation (src/net/json.c) with the shapes the
 * SE registry accepts: a bulk import ({"rows":[...]}, one SE per row, with
 * initial key sets) and a lookup ({"msisdn":...} or {"imsi":...}); plus the
 * pagination query values. Any result is fine; a crash, leak, sanitizer report
 * or a document that does not survive serialise-and-parse is a bug. */
#include "net/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_BODY ((size_t)64 * 1024)

static const char *const se_types[] = {"UICC", "eSE", "microSD"};
static const char *const import_fields[] = {"rows", "dry_run", NULL};
static const char *const row_fields[] = {
    "se_id",      "type",       "mno",    "msisdn",      "imsi",     "profile_id", "gp_version",
    "jc_version", "cert_level", "expiry", "free_memory", "isd_keys", NULL};
static const char *const key_fields[] = {"kvn", "enc", "mac", "dek", NULL};
static const char *const lookup_fields[] = {"msisdn", "imsi", "detail", NULL};
static const char *const details[] = {"id", "full"};

static void validate_keys(const json_t *row, struct json_err *err)
{
    const json_t *keys;
    int64_t kvn;
    uint8_t k[32];
    size_t len;
    if (json_get_obj(row, "isd_keys", &keys, err) != OT_OK
        || json_check_fields(keys, key_fields, "isd_keys", err) != OT_OK
        || json_get_int(row, "isd_keys.kvn", 1, 127, &kvn, err) != OT_OK) {
        return;
    }
    static const char *const names[] = {"isd_keys.enc", "isd_keys.mac", "isd_keys.dek"};
    for (size_t i = 0; i < 3; i++) {
        len = sizeof k;
        if (json_get_hex(row, names[i], 16, 32, k, &len, err) != OT_OK) {
            return;
        }
    }
}

static void validate_row(const json_t *row, struct json_err *err)
{
    const char *s;
    size_t idx;
    int64_t n;
    if (json_check_fields(row, row_fields, NULL, err) != OT_OK
        || json_get_str(row, "se_id", 1, 64, &s, err) != OT_OK
        || json_get_enum(row, "type", se_types, 3, &idx, err) != OT_OK
        || json_get_str(row, "mno", 1, 64, &s, err) != OT_OK
        || json_opt_str(row, "msisdn", 5, 15, &s, err) != OT_OK
        || json_opt_str(row, "imsi", 6, 15, &s, err) != OT_OK
        || json_opt_str(row, "profile_id", 1, 64, &s, err) != OT_OK
        || json_opt_str(row, "gp_version", 1, 16, &s, err) != OT_OK
        || json_opt_str(row, "jc_version", 1, 16, &s, err) != OT_OK
        || json_opt_int(row, "cert_level", 0, 7, 0, &n, err) != OT_OK
        || json_opt_str(row, "expiry", 10, 10, &s, err) != OT_OK
        || json_opt_int(row, "free_memory", 0, INT64_C(1) << 40, 0, &n, err) != OT_OK) {
        return;
    }
    validate_keys(row, err);
}

static void validate_import(const json_t *body)
{
    struct json_err err = {0};
    const json_t *rows;
    size_t n;
    bool dry;
    if (json_check_fields(body, import_fields, NULL, &err) != OT_OK
        || json_opt_bool(body, "dry_run", false, &dry, &err) != OT_OK
        || json_get_array(body, "rows", 1, 1000, &rows, &n, &err) != OT_OK) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct json_err rerr = {0};
        json_err_scope(&rerr, "rows[%zu]", i);
        validate_row(json_at(rows, i), &rerr);
    }
}

static void validate_lookup(const json_t *body)
{
    struct json_err err = {0};
    const char *s;
    size_t idx;
    if (json_check_fields(body, lookup_fields, NULL, &err) != OT_OK
        || json_opt_str(body, "msisdn", 5, 15, &s, &err) != OT_OK
        || json_opt_str(body, "imsi", 6, 15, &s, &err) != OT_OK) {
        return;
    }
    (void)json_opt_enum(body, "detail", details, 2, 0, &idx, &err);
}

static void roundtrip(const json_t *j)
{
    char *s = NULL;
    size_t len = 0;
    if (json_serialize(j, &s, &len) != OT_OK) {
        return;
    }
    json_t *again = NULL;
    struct json_err err = {0};
    /* What we parsed, we must be able to write and read back. */
    if (json_parse(s, len, (size_t)-1, &again, &err) != OT_OK) {
        abort();
    }
    json_free(again);
    free(s);
}

static void page(const uint8_t *data, size_t size)
{
    /* "cursor\0limit" as query values. */
    char buf[512];
    size_t n = size < sizeof buf - 2 ? size : sizeof buf - 2;
    memcpy(buf, data, n);
    buf[n] = '\0';
    buf[n + 1] = '\0';
    const char *cursor = buf;
    const char *limit = buf + strlen(buf) + 1;
    struct json_page pg;
    struct json_err err = {0};
    if (json_page_parse(cursor, limit[0] ? limit : NULL, 50, 500, &pg, &err) == OT_OK
        && pg.after_len > 0) {
        char enc[JSON_CURSOR_MAX + 1];
        /* A cursor that decodes re-encodes to itself (canonical form only). */
        if (json_cursor_encode(pg.after, pg.after_len, enc, sizeof enc) != OT_OK
            || strcmp(enc, cursor) != 0) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    page(data, size);
    json_t *j = NULL;
    struct json_err err = {0};
    if (json_parse(data, size, FUZZ_MAX_BODY, &j, &err) != OT_OK) {
        return 0;
    }
    validate_import(j);
    validate_lookup(j);
    roundtrip(j);
    json_free(j);
    return 0;
}
