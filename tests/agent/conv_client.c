/* The protocol converter against a real card (tests/agent/conv_test.sh):
 * a vse made from profiles/dev.json behind one reader spec, through either
 * back end (NAME=socket:unix:PATH or NAME=pcsc:Virtual PCD).
 *
 *   conv_client SPEC                the scenario below; prints "conv ok"
 *   conv_client SPEC present        prints "present" or "absent"
 *   conv_client SPEC stall PID      SIGSTOPs PID (the vse) and expects the
 *                                   APDU timeout, then SIGCONTs it
 *
 * Scenario: session (ATR; a second one refused), SELECT of the ISD on the
 * basic channel; GET DATA 9F7F with Le 05 (the card answers 6C2D, the
 * converter re-issues with Le 2D) equals GET DATA 9F7F with Le 00; SELECT
 * with Le 05 (the card answers 61xx, the converter sends GET RESPONSE)
 * equals the SELECT answer with Le 00; logical channels: three open (CLA
 * carries the channel: GET DATA CIN works on each), a fourth refused by the
 * card; MANAGE CHANNEL through transmit refused; a malformed C-APDU
 * refused before it is sent. Exit 0 when all hold, 1 otherwise.
 */
#include "agent/conv.h"
#include "agent/script.h"

#include "core/err.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static const uint8_t g_isd[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};

#define CHECK(cond, ...)                                 \
    do {                                                 \
        if (!(cond)) {                                   \
            fprintf(stderr, "FAIL line %d: ", __LINE__); \
            fprintf(stderr, __VA_ARGS__);                \
            fprintf(stderr, "\n");                       \
            return 1;                                    \
        }                                                \
    } while (0)

static uint8_t g_a[AGENT_RESP_MAX];
static uint8_t g_b[AGENT_RESP_MAX];

static int xmit(struct agent_channel *ch, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *rl)
{
    *rl = AGENT_RESP_MAX;
    return (int)agent_channel_transmit(ch, cmd, n, resp, rl);
}

static int spec_table(void)
{
    static const struct {
        const char *spec;
        ot_err want;
    } rows[] = {
        {"", OT_E_FORMAT},
        {"SIM1", OT_E_FORMAT},
        {"=socket:unix:/x", OT_E_FORMAT},
        {"SIM 1=socket:unix:/x", OT_E_FORMAT},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456=socket:unix:/x", OT_E_FORMAT},
        {"SIM1=serial:/dev/ttyS0", OT_E_FORMAT},
        {"SIM1=socket:udp:1.2.3.4:5", OT_E_FORMAT},
        {"SIM1=socket:unix:", OT_E_FORMAT},
        {"SIM1=pcsc:", OT_E_FORMAT},
        {"SIM1=socket:unix:/nonexistent/x", OT_OK},
        {"SIM1=socket:unix:/nonexistent/y", OT_E_CONFLICT},
        {"eSE1=socket:tcp:127.0.0.1:1", OT_OK},
        {"SD1=pcsc:Nothing Here", OT_OK},
    };
    struct agent_service *svc = NULL;
    char why[160];
    size_t i;
    int rc = 0;

    if (agent_service_new(1000, &svc) != OT_OK) {
        return 1;
    }
    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ot_err err = agent_service_add(svc, rows[i].spec, why, sizeof why);
        if (err != rows[i].want) {
            fprintf(stderr, "FAIL spec '%s': %s, want %s\n", rows[i].spec, ot_errname(err),
                    ot_errname(rows[i].want));
            rc = 1;
        }
    }
    /* Nothing listens there: absent, and a session says no card. */
    struct agent_session *s = NULL;
    if (agent_reader_present(agent_service_reader(svc, "SIM1"))
        || agent_reader_open_session(agent_service_reader(svc, "SIM1"), &s) != OT_E_NO_CARD
        || agent_reader_open_session(agent_service_reader(svc, "SD1"), &s) != OT_E_NO_CARD) {
        fprintf(stderr, "FAIL: an absent reader is not OT_E_NO_CARD\n");
        rc = 1;
    }
    agent_service_free(svc);
    return rc;
}

static int scripts(struct agent_channel *ch);

static int scenario(struct agent_reader *r)
{
    static const uint8_t cplc_le5[] = {0x80, 0xCA, 0x9F, 0x7F, 0x05};
    static const uint8_t cplc_le0[] = {0x80, 0xCA, 0x9F, 0x7F, 0x00};
    static const uint8_t cin[] = {0x80, 0xCA, 0x00, 0x45, 0x00};
    static const uint8_t manage[] = {0x00, 0x70, 0x00, 0x00, 0x01};
    static const uint8_t bad[] = {0x80, 0xCA, 0x00, 0x45, 0x05, 0x01};
    uint8_t sel[5 + sizeof g_isd + 1];
    struct agent_session *s = NULL;
    struct agent_session *s2 = NULL;
    struct agent_channel *ch = NULL;
    struct agent_channel *lc[3] = {NULL, NULL, NULL};
    struct agent_channel *extra = NULL;
    const uint8_t *p;
    size_t la, lb, n;
    int err;
    size_t i;

    CHECK(agent_reader_present(r), "reader not present");
    err = (int)agent_reader_open_session(r, &s);
    CHECK(err == OT_OK, "open session: %s", ot_errname((ot_err)err));
    p = agent_session_atr(s, &n);
    CHECK(n >= 2 && p[0] == 0x3B, "ATR");
    printf("ATR ");
    for (i = 0; i < n; i++) {
        printf("%02X", p[i]);
    }
    printf("\n");
    CHECK(agent_reader_open_session(r, &s2) == OT_E_STATE, "second session not refused");
    err = (int)agent_session_open_basic(s, g_isd, sizeof g_isd, &ch);
    CHECK(err == OT_OK, "select ISD: %s", ot_errname((ot_err)err));
    p = agent_channel_select_response(ch, &n);
    CHECK(n > 2 && p[0] == 0x6F && p[n - 2] == 0x90 && p[n - 1] == 0x00, "FCI of the ISD");

    /* 6Cxx: Le too small for CPLC. */
    CHECK(xmit(ch, cplc_le5, sizeof cplc_le5, g_a, &la) == OT_OK, "CPLC Le 05");
    CHECK(xmit(ch, cplc_le0, sizeof cplc_le0, g_b, &lb) == OT_OK, "CPLC Le 00");
    CHECK(la == lb && la > 40 && memcmp(g_a, g_b, la) == 0, "6Cxx re-issue: %zu vs %zu bytes", la,
          lb);
    CHECK(g_a[la - 2] == 0x90, "CPLC status");

    /* 61xx: SELECT with Le 05 on a longer FCI. */
    sel[0] = 0x00;
    sel[1] = 0xA4;
    sel[2] = 0x04;
    sel[3] = 0x00;
    sel[4] = sizeof g_isd;
    memcpy(sel + 5, g_isd, sizeof g_isd);
    sel[5 + sizeof g_isd] = 0x05;
    CHECK(xmit(ch, sel, sizeof sel, g_a, &la) == OT_OK, "SELECT Le 05");
    sel[5 + sizeof g_isd] = 0x00;
    CHECK(xmit(ch, sel, sizeof sel, g_b, &lb) == OT_OK, "SELECT Le 00");
    CHECK(lb > 7 && la == lb && memcmp(g_a, g_b, la) == 0, "61xx GET RESPONSE: %zu vs %zu", la, lb);

    if (scripts(ch) != 0) {
        return 1;
    }

    /* Logical channels. */
    for (i = 0; i < 3; i++) {
        err = (int)agent_session_open_logical(s, g_isd, sizeof g_isd, &lc[i]);
        CHECK(err == OT_OK, "logical channel %zu: %s", i + 1, ot_errname((ot_err)err));
        CHECK(agent_channel_number(lc[i]) == i + 1, "channel number %u",
              agent_channel_number(lc[i]));
        CHECK(xmit(lc[i], cin, sizeof cin, g_a, &la) == OT_OK && la > 2 && g_a[0] == 0x45
                  && g_a[la - 2] == 0x90,
              "CIN on channel %zu", i + 1);
    }
    err = (int)agent_session_open_logical(s, g_isd, sizeof g_isd, &extra);
    CHECK(err != OT_OK && extra == NULL, "a fourth logical channel was opened");
    CHECK(xmit(lc[0], manage, sizeof manage, g_a, &la) == OT_E_FORBIDDEN,
          "MANAGE CHANNEL through transmit");
    CHECK(xmit(lc[0], bad, sizeof bad, g_a, &la) == OT_E_APDU_LEN, "malformed C-APDU");
    agent_channel_close(lc[1]);
    err = (int)agent_session_open_logical(s, g_isd, sizeof g_isd, &lc[1]);
    CHECK(err == OT_OK && agent_channel_number(lc[1]) == 2, "channel 2 reopened after close");
    agent_session_close(s);
    /* A new session after close works (the card is powered again). */
    CHECK(agent_reader_open_session(r, &s) == OT_OK, "session after close");
    agent_session_close(s);
    return 0;
}

/* Admin-session scripts on the card (ota.md 5.3): mode 00 stops at the
 * first failing status word, mode 01 runs all, a guard that differs stops
 * the script (in both modes) right after its C-APDU. */
static int scripts(struct agent_channel *ch)
{
    static const uint8_t cin[] = {0x80, 0xCA, 0x00, 0x45, 0x00};
    static struct agent_script s;
    struct ot_buf out;
    const uint8_t *r[4];
    size_t rl[4];
    uint8_t sc[256];
    uint8_t want[64];
    size_t wl = sizeof want;
    size_t n, ran, count;
    bool by_guard;
    int mode;

    CHECK(xmit(ch, cin, sizeof cin, want, &wl) == OT_OK && wl < 60, "CIN for the guard");
    for (mode = 0; mode < 2; mode++) {
        n = 0;
        memcpy(sc + n, "\xAE\x80\x82\x01", 4);
        n += 4;
        sc[n++] = (uint8_t)mode;
        memcpy(sc + n, "\x22\x05\x80\xCA\x00\x45\x00", 7); /* CIN: 9000 */
        n += 7;
        memcpy(sc + n, "\x22\x05\x80\xCA\xDF\x7D\x00", 7); /* no such object */
        n += 7;
        memcpy(sc + n, "\x22\x05\x80\xCA\x00\x66\x00\x00\x00", 9); /* card data */
        n += 9;
        CHECK(agent_script_parse(sc, n, &s, NULL, NULL, 0) == OT_OK, "script mode %d", mode);
        ot_buf_init(&out, AGENT_SCRIPT_RESP_MAX);
        CHECK(agent_script_run(ch, &s, &out, &ran, &by_guard) == OT_OK, "run mode %d", mode);
        CHECK(agent_resp_parse(out.data, out.len, r, rl, 4, &count) == OT_OK && count == ran,
              "response script mode %d", mode);
        CHECK(ran == (mode == 0 ? 2u : 3u) && !by_guard, "mode %d ran %zu", mode, ran);
        CHECK(rl[0] == wl && memcmp(r[0], want, wl) == 0, "R-APDU 1");
        CHECK(agent_sw_failing((uint16_t)((r[1][rl[1] - 2] << 8) | r[1][rl[1] - 1])),
              "the unknown object does not fail");
        ot_buf_free(&out);
    }
    /* Guards: the right one lets the script go on, a wrong one stops it. */
    n = 0;
    memcpy(sc + n, "\xAE\x80\x22\x05\x80\xCA\x00\x45\x00\xC1", 10);
    n += 10;
    sc[n++] = (uint8_t)wl;
    memcpy(sc + n, want, wl);
    n += wl;
    memcpy(sc + n, "\x22\x05\x80\xCA\x00\x45\x00\xC1\x02\x90\x00", 11);
    n += 11;
    memcpy(sc + n, "\x22\x05\x80\xCA\x00\x66\x00\x00\x00", 9);
    n += 9;
    CHECK(agent_script_parse(sc, n, &s, NULL, NULL, 0) == OT_OK, "guard script");
    CHECK(s.cmd[0].guard != NULL && s.cmd[1].guard != NULL, "guards parsed");
    ot_buf_init(&out, AGENT_SCRIPT_RESP_MAX);
    CHECK(agent_script_run(ch, &s, &out, &ran, &by_guard) == OT_OK, "run guard script");
    CHECK(ran == 2 && by_guard, "guard: ran %zu, by_guard %d", ran, by_guard);
    CHECK(agent_resp_parse(out.data, out.len, r, rl, 4, &count) == OT_OK && count == 2,
          "guard response script");
    ot_buf_free(&out);
    printf("scripts ok\n");
    return 0;
}

static int stall(struct agent_reader *r, pid_t pid)
{
    static const uint8_t cin[] = {0x80, 0xCA, 0x00, 0x45, 0x00};
    struct agent_session *s = NULL;
    struct agent_channel *ch = NULL;
    size_t la;
    int err;

    CHECK(agent_reader_open_session(r, &s) == OT_OK, "session");
    CHECK(agent_session_open_basic(s, g_isd, sizeof g_isd, &ch) == OT_OK, "select");
    CHECK(kill(pid, SIGSTOP) == 0, "SIGSTOP");
    err = xmit(ch, cin, sizeof cin, g_a, &la);
    (void)kill(pid, SIGCONT);
    CHECK(err == OT_E_TIMEOUT, "stalled card: %s, want OT_E_TIMEOUT", ot_errname((ot_err)err));
    /* The session is dead now: no more commands on it. */
    CHECK(xmit(ch, cin, sizeof cin, g_a, &la) == OT_E_STATE, "dead session still used");
    agent_session_close(s);
    printf("timeout ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    struct agent_service *svc = NULL;
    struct agent_reader *r;
    char why[160];
    int rc;

    if (argc < 2) {
        fprintf(stderr, "usage: conv_client SPEC [present | stall PID]\n");
        return 2;
    }
    if (agent_service_new(argc > 2 && strcmp(argv[2], "stall") == 0 ? 1000 : 0, &svc) != OT_OK
        || agent_service_add(svc, argv[1], why, sizeof why) != OT_OK) {
        fprintf(stderr, "bad spec: %s\n", why);
        return 2;
    }
    r = agent_service_reader_at(svc, 0);
    if (argc == 3 && strcmp(argv[2], "present") == 0) {
        printf("%s\n", agent_reader_present(r) ? "present" : "absent");
        rc = 0;
    } else if (argc == 4 && strcmp(argv[2], "stall") == 0) {
        rc = stall(r, (pid_t)strtol(argv[3], NULL, 10));
    } else {
        rc = spec_table();
        if (rc == 0) {
            rc = scenario(r);
        }
        if (rc == 0) {
            printf("conv ok\n");
        }
    }
    agent_service_free(svc);
    return rc;
}
