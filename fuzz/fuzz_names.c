/* libFuzzer target for the short text parsers that read names from the
 * network or from a provider's request: the X-Admin-Targeted-Application
 * header the agent gets from mno (agent_admin_parse_target), a privilege
 * list in a service definition (gp_privs_parse) and a key diversification
 * scheme name (kdiv_scheme_parse). The first byte picks the parser, the
 * rest is the text (cut at its first NUL). Besides "no crash, no sanitizer
 * report", it aborts when a result breaks a property: a target's AID is 5
 * to 16 bytes and the text written back from it parses to the same AID; a
 * privilege set without RFU bits written as names parses to the same set;
 * a scheme parsed is the one its name gives back. */
#include "agent/admin.h"
#include "core/hex.h"
#include "crypto/kdiv.h"
#include "gp/privs.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static void target(const char *t)
{
    uint8_t aid[16];
    uint8_t aid2[16];
    size_t n = 0;
    size_t n2 = 0;
    char hex[40];
    char pix[40];
    char again[96];

    if (agent_admin_parse_target(t, aid, &n) != OT_OK) {
        return;
    }
    check(n >= 5 && n <= sizeof(aid));
    check(hex_encode(aid, 5, hex, sizeof(hex)) == OT_OK);
    check(hex_encode(aid + 5, n - 5, pix, sizeof(pix)) == OT_OK);
    snprintf(again, sizeof(again), "//aid/%s/%s", hex, pix);
    check(agent_admin_parse_target(again, aid2, &n2) == OT_OK && n2 == n
          && memcmp(aid, aid2, n) == 0);
}

static void privs(const char *t)
{
    uint32_t v = 0;
    uint32_t v2 = 0;
    char text[512];
    size_t len = sizeof(text);

    if (gp_privs_parse(t, &v) != OT_OK) {
        return;
    }
    if (v == 0 || (v & GP_PRIVS_RFU_MASK) != 0) {
        return; /* written as "none" / "rfu=0x..", which are not names */
    }
    check(gp_privs_to_text(v, text, &len) == OT_OK);
    check(gp_privs_parse(text, &v2) == OT_OK && v2 == v);
}

static void scheme(const char *t)
{
    enum kdiv_scheme s;
    enum kdiv_scheme s2;

    if (kdiv_scheme_parse(t, &s) != OT_OK) {
        return;
    }
    check(kdiv_scheme_parse(kdiv_scheme_name(s), &s2) == OT_OK && s2 == s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char t[256];
    size_t n;

    if (size < 1) {
        return 0;
    }
    n = size - 1 < sizeof(t) - 1 ? size - 1 : sizeof(t) - 1;
    memcpy(t, data + 1, n);
    t[n] = '\0';
    switch (data[0] % 3) {
    case 0:
        target(t);
        break;
    case 1:
        privs(t);
        break;
    default:
        scheme(t);
        break;
    }
    return 0;
}
