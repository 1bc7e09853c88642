/* The native applet modules compiled into the vse (src/se/applets).
 *
 * Each module file defines one static-lifetime ops table; registry.c lists
 * them for se_applet_find / se_applet_by_name / se_applet_all (se/applet.h).
 * Package and module AIDs are fixed in docs/applets.md.
 */
#ifndef OT_SE_APPLETS_REGISTRY_H
#define OT_SE_APPLETS_REGISTRY_H

#include "se/applet.h"

extern const struct se_applet_ops se_ppse_ops;    /* ppse.c */
extern const struct se_applet_ops se_emv_ops;     /* emv.c */
extern const struct se_applet_ops se_transit_ops; /* transit.c */
extern const struct se_applet_ops se_telecom_ops; /* telecom.c */
extern const struct se_applet_ops se_wallet_ops;  /* wallet.c */
extern const struct se_applet_ops se_sam_ops;     /* sam.c */
/* Not a native module (not in se_applet_all): what instances of a Load File
 * without native code run (inert.c). */
extern const struct se_applet_ops se_inert_ops;

#endif
