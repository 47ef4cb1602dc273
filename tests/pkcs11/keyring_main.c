/* SPDX-License-Identifier: Apache-2.0 */
/* Stand-alone `keyward keyring` for tests: kwk-keyring import|list|remove ... */
#include "keyring.h"

int main(int argc, char **argv)
{
    argv[0] = "keyring";
    return kwt_keyring_main(argc, argv);
}
