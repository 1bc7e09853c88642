/* The host's service table (table.h). testsvc is the test fixture service
 * (testsvc/testsvc.h): always built, enabled only when listed. */
#include "svc/table/table.h"

#include "cms/cms.h"
#include "mno/mno.h"
#include "pay/pay.h"
#include "svc/svc.h"
#include "testsvc/testsvc.h"
#include "tsm/tsm.h"

const struct svc_def *const svc_table[] = {
    &tsm_svc_def, &testsvc_def, &mno_svc_def, &pay_svc_def, &cms_svc_def,
};

const size_t svc_table_n = sizeof(svc_table) / sizeof(svc_table[0]);
