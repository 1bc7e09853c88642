/* Fuzz target: the service host's parsers of untrusted text (src/svc).
 *
 * The first input byte picks the parser, the rest is its input:
 *   0 canonical decimal ids (svc_id_parse: path ids, principal_id)
 *   1 principal attributes (MSISDN, IMEI with its Luhn digit, IMSI, MNO
 *     instance name, display name as UTF-8 without control/bidi characters)
 *   2 services.enabled (services and named instances) through the host's
 *     config loader, with the option given as --set
 * Any result is fine; a crash, leak or sanitizer report is a finding. */
#include "net/config.h"
#include "svc/admin.h"
#include "svc/host.h"
#include "svc/kit.h"
#include "svc/table/table.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct cfg_opt fuzz_host_opts[] = {
    {"services.enabled", CFG_STR, {.s = "tsm"}, 0, 255, CFG_IMMUTABLE, "Services."},
    {"audit.reads", CFG_BOOL, {.b = false}, 0, 0, 0, "Reads."},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;
    int64_t id = 0;

    if (size < 1 || size > 4096) {
        return 0;
    }
    s = malloc(size + 32);
    if (s == NULL) {
        return 0;
    }
    switch (data[0] % 3) {
    case 0:
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        (void)svc_id_parse(s, &id);
        break;
    case 1:
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        (void)svc_admin_msisdn_ok(s);
        (void)svc_admin_imei_ok(s);
        (void)svc_admin_imsi_ok(s);
        (void)svc_admin_mno_ok(s);
        (void)svc_admin_display_ok(s);
        (void)svc_admin_label_ok(s);
        break;
    default: {
        struct svc_host *h = NULL;
        const char *sets[1];
        char why[256];
        memcpy(s, "services.enabled=", 17);
        memcpy(s + 17, data + 1, size - 1);
        s[17 + size - 1] = '\0';
        sets[0] = s;
        if (svc_host_new(svc_table, svc_table_n, fuzz_host_opts,
                         sizeof(fuzz_host_opts) / sizeof(fuzz_host_opts[0]), &h)
            == OT_OK) {
            (void)svc_host_load(h, NULL, sets, 1, why, sizeof(why));
        }
        svc_host_free(h);
        break;
    }
    }
    free(s);
    return 0;
}
