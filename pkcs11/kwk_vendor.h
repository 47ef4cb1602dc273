/* SPDX-License-Identifier: Apache-2.0 */
/* keyward-pkcs11 vendor attributes, for programs that talk to the keyring token (keyward
 * keyring). "KW" = 0x4b57. */
#ifndef KWK_VENDOR_H
#define KWK_VENDOR_H

#ifndef PKCS11_H /* a user may have included it by another path */
#include <p11-kit/pkcs11.h>
#endif

/* Private keys: where the private key lives, "kernel" or "software" (read-only string). */
#define CKA_KEYWARD_MODE (CKA_VENDOR_DEFINED | 0x4b570001UL)
/* Every object: the kernel key serial (read-only CK_ULONG). */
#define CKA_KEYWARD_SERIAL (CKA_VENDOR_DEFINED | 0x4b570002UL)
/* C_CreateObject of a private key: the key as PKCS#8 DER instead of its components. */
#define CKA_KEYWARD_PKCS8 (CKA_VENDOR_DEFINED | 0x4b570003UL)

#endif
