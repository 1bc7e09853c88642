/* Helpers shared by the files of src/agent (never included from elsewhere). */
#ifndef OT_AGENT_AGENT_PRIV_H
#define OT_AGENT_AGENT_PRIV_H

#include "core/log.h"

#include <stddef.h>

/* printf into a caller's reason buffer (why NULL or cap 0: nothing). */
void agent_why(char *why, size_t cap, const char *fmt, ...) OT_PRINTF(3, 4);

#endif
