/* The host's one table of service descriptors (STYLE.md 16): the only place
 * that knows which services exist. tsmd iterates it and names none. */
#ifndef OT_SVC_TABLE_H
#define OT_SVC_TABLE_H

#include <stddef.h>

struct svc_def;

extern const struct svc_def *const svc_table[];
extern const size_t svc_table_n;

#endif
