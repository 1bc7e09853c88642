/* libFuzzer target for the parser of the plain Delegated Management
 * commands an SP asks the central TSM to approve (src/tsm/dmcmd.c): the
 * input is a C-APDU. Besides "no crash, no sanitizer report", it aborts
 * when a parsed command breaks a property: AIDs within 5-16 bytes (a load
 * file's SD may be empty), privileges of 0, 1 or 3 bytes, and a command
 * that parses still parses with its Le byte added and not with a byte cut. */
#include "tsm/dmcmd.h"

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

static void aid_ok(const struct tsm_dmcmd_aid *a, int empty_ok)
{
    check((a->n == 0 && empty_ok) || (a->n >= 5 && a->n <= TSM_DMCMD_AID_MAX));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tsm_dmcmd d;
    uint8_t buf[300];

    if (tsm_dmcmd_parse(data, size, &d) != OT_OK) {
        return 0;
    }
    check(d.privs_len == 0 || d.privs_len == 1 || d.privs_len == 3);
    switch (d.op) {
    case TSM_DMCMD_LOAD:
        aid_ok(&d.elf, 0);
        aid_ok(&d.sd, 1);
        break;
    case TSM_DMCMD_INSTALL:
        aid_ok(&d.elf, 0);
        aid_ok(&d.module, 0);
        aid_ok(&d.app, 0);
        break;
    case TSM_DMCMD_SELECTABLE:
    case TSM_DMCMD_DELETE:
        aid_ok(&d.app, 0);
        break;
    case TSM_DMCMD_EXTRADITE:
        aid_ok(&d.app, 0);
        aid_ok(&d.sd, 0);
        break;
    default:
        check(0);
    }
    check(strcmp(tsm_dmcmd_op_name(d.op), "unknown") != 0);
    if (size == 5u + data[4] && size < sizeof(buf)) {
        struct tsm_dmcmd d2;
        memcpy(buf, data, size);
        buf[size] = 0x00;
        check(tsm_dmcmd_parse(buf, size + 1, &d2) == OT_OK && d2.op == d.op);
        check(tsm_dmcmd_parse(data, size - 1, &d2) != OT_OK);
    }
    return 0;
}
