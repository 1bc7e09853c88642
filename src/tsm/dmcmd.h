/* The plain card content management command a Delegated Management SP asks
 * the central TSM to approve (docs/tsm.md §7): INSTALL [for load / install /
 * install and make selectable / make selectable / extradition] or DELETE
 * [card content], short, CLA 80-83, no secure messaging, its token field
 * still empty (GPCS 11.5.2, 11.2.2). Pure parsing, no I/O. */
#ifndef OT_TSM_DMCMD_H
#define OT_TSM_DMCMD_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

#define TSM_DMCMD_AID_MAX 16u

enum tsm_dmcmd_op {
    TSM_DMCMD_LOAD = 1,   /* INSTALL [for load]: elf, sd (may be empty) */
    TSM_DMCMD_INSTALL,    /* [for install] / [and make selectable]: elf, module, app, privs */
    TSM_DMCMD_SELECTABLE, /* [for make selectable]: app, privs */
    TSM_DMCMD_EXTRADITE,  /* [for extradition]: sd (new SD), app */
    TSM_DMCMD_DELETE,     /* DELETE: app (the AID of 4F), related (P2 80) */
};

struct tsm_dmcmd_aid {
    uint8_t b[TSM_DMCMD_AID_MAX];
    size_t n;
};

struct tsm_dmcmd {
    enum tsm_dmcmd_op op;
    uint8_t p1;
    struct tsm_dmcmd_aid elf;
    struct tsm_dmcmd_aid module;
    struct tsm_dmcmd_aid app;
    struct tsm_dmcmd_aid sd;
    uint8_t privs[3];
    size_t privs_len; /* 0, 1 or 3 */
    int related;      /* DELETE P2 80 */
};

/* Parses cmd (CLA INS P1 P2 Lc data [Le]). Errors: OT_E_ARG (NULL),
 * OT_E_APDU (not a short CLA 80-83 INSTALL / DELETE without chaining or
 * secure messaging, or another role: registry update, personalization,
 * combined load-install), OT_E_FORMAT (fields that do not add up, AIDs
 * outside 5-16 bytes, a token already present, trailing bytes). */
ot_err tsm_dmcmd_parse(const uint8_t *cmd, size_t n, struct tsm_dmcmd *out);

/* The operation's name ("load", "install", "make_selectable",
 * "extradite", "delete"). */
const char *tsm_dmcmd_op_name(enum tsm_dmcmd_op op);

#endif
