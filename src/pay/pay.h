/* pay: the trusted payment platform as a service of the host (issue 11,
 * docs/pay.md, DESIGN.md 3), under /pay/v1, tables pay_*.
 *
 * Service providers' back ends (banks, transit operators) are registered
 * with their endpoint and their signing key, and deposit their keys (stored
 * sealed in the key store, never logged). Clients (payterm installations, a
 * device principal each) enrol with their dongle's public key and get the SP
 * keys wrapped for that dongle alone (crypto/ecwrap.h). Payments and top-ups
 * (pay/msg.h) are checked (enrolled and not revoked, fresh, nonce and seq not
 * seen), signed by pay and forwarded to the SP's back end; its signed answer
 * is checked and relayed. */
#ifndef OT_PAY_PAY_H
#define OT_PAY_PAY_H

#include "svc/svc.h"

extern const struct svc_def pay_svc_def;

#endif
