/* SPDX-License-Identifier: Apache-2.0 */
/* Public names of keyward: provider config keys, parameters, PEM labels. */
#ifndef KEYWARD_KEYWARD_H
#define KEYWARD_KEYWARD_H

/* KEYWARD_VERSION_STR: meson's project version, generated into the build tree. */
#include <keyward/version.h>

#define KEYWARD_PROVIDER_NAME "keyward"

/* Keys of the provider's section in openssl.cnf. */
#define KEYWARD_CONF_MODULE     "keyward-module"
#define KEYWARD_CONF_PIN_SOURCE "keyward-pin-source"
#define KEYWARD_CONF_LOAD       "keyward-load"

/* Environment variables. */
#define KEYWARD_ENV_MODULE "KEYWARD_MODULE"
#define KEYWARD_ENV_DEBUG  "KEYWARD_DEBUG"

/* Key generation parameter: the pkcs11: URI the new key is created at. */
#define KEYWARD_PARAM_URI "keyward_uri"

/* PEM label of a key file that carries a pkcs11: URI instead of a key. */
#define KEYWARD_PEM_LABEL_URI "KEYWARD KEY URI"

#endif
