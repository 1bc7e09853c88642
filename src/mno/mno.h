/* mno: the mobile network platform service (DESIGN.md 1 and 3, issue 10):
 * devices, their registration and status, push, OTA jobs and the admin
 * sessions the phone's se-agent runs (docs/ota.md). One instance per
 * network ("mno:orange"), under /mno/<name>/v1, tables mno_* keyed by the
 * instance. */
#ifndef OT_MNO_MNO_H
#define OT_MNO_MNO_H

#include "svc/svc.h"

extern const struct svc_def mno_svc_def;

#endif
