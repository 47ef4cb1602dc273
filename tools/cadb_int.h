/* SPDX-License-Identifier: Apache-2.0 */
/* The CA directory's pieces (cadb*.c) as they call each other; not for the subcommands. */
#ifndef KWT_CADB_INT_H
#define KWT_CADB_INT_H

#include <stdbool.h>

#include "kwt.h"

/* N of the current DIR/state -> state.N link; -1 when it is missing or not such a link. */
int kwt_state_gen(const char *dir);
/* A temporary file of kwt_write_atomic or kwt_symlink_atomic that a crash left behind. */
bool kwt_is_tmp_name(const char *n);
/* Write the CA's openssl.cnf to path, its state directory being state. */
int kwt_ca_write_cnf_to(kwt_ca *ca, const char *path, const char *state);

#endif
