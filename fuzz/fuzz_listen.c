/* Fuzz target: the listen-address parser of the configuration
 * (cfg_parse_listen, src/net/config.h), which checks http.listen wherever it
 * is set (file, environment, --set).
 *
 * The input is the option's text (cut at the first NUL). A parse that
 * succeeds must give a non-empty host and a text that, put back together as
 * HOST:PORT (or [HOST]:PORT for IPv6), parses again to the same host and
 * port; a refusal must say why. Any crash or over-read is a finding.
 */
#include "net/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[512];
    char host[256];
    char host2[256];
    char why[CFG_ERR_MAX];
    char again[300];
    uint16_t port = 0;
    uint16_t port2 = 0;
    size_t n = size < sizeof in - 1 ? size : sizeof in - 1;

    memcpy(in, data, n);
    in[n] = '\0';
    why[0] = '\0';
    if (cfg_parse_listen(in, host, sizeof host, &port, why, sizeof why) != OT_OK) {
        if (why[0] == '\0') {
            abort(); /* a refusal always says why */
        }
        return 0;
    }
    if (host[0] == '\0') {
        abort();
    }
    snprintf(again, sizeof again, strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host,
             (unsigned)port);
    if (cfg_parse_listen(again, host2, sizeof host2, &port2, NULL, 0) != OT_OK
        || strcmp(host, host2) != 0 || port != port2) {
        abort();
    }
    return 0;
}
