/* SPDX-License-Identifier: Apache-2.0 */
#include "kwt.h"
int kwt_cmd_ca_ocsp(int argc, char **argv)
{
    return kwt_err(KWT_FAIL, "not yet");
}
