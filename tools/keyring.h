/* SPDX-License-Identifier: Apache-2.0 */
/* `keyward keyring import|list|remove`: keys in the kernel keyring token (keyward-pkcs11.so). */
#ifndef KWT_KEYRING_H
#define KWT_KEYRING_H

/* argv[0] is "keyring", argv[1] the subcommand. Returns the process exit status. */
int kwt_keyring_main(int argc, char **argv);

#endif
