/* cms: the card management platform (DESIGN.md 1 and 3, issue 13, seed 000):
 * issued cards, the subscriber's remote lock and destroy of a lost or stolen
 * card through the card's mno, offline hand-over, the card's history, the
 * operator's alerts and retries (docs/cms.md). One instance under /cms/v1,
 * tables cms_*. */
#ifndef OT_CMS_CMS_H
#define OT_CMS_CMS_H

#include "svc/svc.h"

extern const struct svc_def cms_svc_def;

#endif
