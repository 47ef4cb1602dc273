/* SPDX-License-Identifier: Apache-2.0 */
/* C_GenerateKeyPair: the pair is made in user space (private libcrypto context), loaded into the
 * keyring, and wiped. Such keys report CKA_LOCAL, CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE
 * as TRUE: they never existed outside this module and the kernel. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/rsa.h>

#include "kw_log.h"
#include "kwk.h"

static CK_RV gen(CK_MECHANISM_TYPE mech, const CK_ATTRIBUTE *pt, CK_ULONG pn, EVP_PKEY **out)
{
    EVP_PKEY_CTX *c = NULL;
    CK_RV rv;
    if (mech == CKM_RSA_PKCS_KEY_PAIR_GEN) {
        CK_ULONG bits;
        rv = kwk_attr_ulong(pt, pn, CKA_MODULUS_BITS, &bits);
        if (rv != CKR_OK)
            return rv;
        if (bits < 1024 || bits > 4096 || bits % 8)
            return CKR_KEY_SIZE_RANGE;
        BIGNUM *e = BN_new();
        const CK_ATTRIBUTE *ea = kwk_attr_get(pt, pn, CKA_PUBLIC_EXPONENT);
        if (e == NULL)
            return CKR_HOST_MEMORY;
        if (ea && (ea->ulValueLen == 0 || ea->ulValueLen > 8 ||
                   !BN_bin2bn(ea->pValue, (int)ea->ulValueLen, e) || !BN_is_odd(e) ||
                   BN_cmp(e, BN_value_one()) <= 0)) {
            BN_free(e);
            return CKR_ATTRIBUTE_VALUE_INVALID;
        }
        if (ea == NULL)
            BN_set_word(e, RSA_F4);
        c = EVP_PKEY_CTX_new_from_name(kwk_libctx(), "RSA", NULL);
        if (c == NULL || EVP_PKEY_keygen_init(c) <= 0 ||
            EVP_PKEY_CTX_set_rsa_keygen_bits(c, (int)bits) <= 0 ||
            EVP_PKEY_CTX_set1_rsa_keygen_pubexp(c, e) <= 0) {
            BN_free(e);
            EVP_PKEY_CTX_free(c);
            return kwk_rv_ossl("RSA keygen setup");
        }
        BN_free(e);
    } else {
        int edwards;
        const CK_ATTRIBUTE *pa = kwk_attr_get(pt, pn, CKA_EC_PARAMS);
        if (pa == NULL)
            return CKR_TEMPLATE_INCOMPLETE;
        const char *curve = kwk_curve_name(pa, &edwards);
        if (curve == NULL)
            return CKR_CURVE_NOT_SUPPORTED;
        if (edwards != (mech == CKM_EC_EDWARDS_KEY_PAIR_GEN))
            return CKR_TEMPLATE_INCONSISTENT;
        c = EVP_PKEY_CTX_new_from_name(kwk_libctx(), edwards ? curve : "EC", NULL);
        if (c == NULL || EVP_PKEY_keygen_init(c) <= 0 ||
            (!edwards && EVP_PKEY_CTX_set_group_name(c, curve) <= 0)) {
            EVP_PKEY_CTX_free(c);
            return kwk_rv_ossl("EC keygen setup");
        }
    }
    *out = NULL;
    rv = EVP_PKEY_generate(c, out) > 0 ? CKR_OK : kwk_rv_ossl("keygen");
    EVP_PKEY_CTX_free(c);
    return rv;
}

CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pt,
                        CK_ULONG pn, CK_ATTRIBUTE_PTR vt, CK_ULONG vn, CK_OBJECT_HANDLE_PTR pub_out,
                        CK_OBJECT_HANDLE_PTR priv_out)
{
    static const CK_ATTRIBUTE_TYPE pub_extra[] = {CKA_KEY_TYPE, CKA_MODULUS_BITS,
                                                  CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS};
    static const CK_ATTRIBUTE_TYPE priv_extra[] = {CKA_KEY_TYPE};
    kwk_session *s;
    kwk_new_obj pm, vm;
    CK_RV rv = kwk_session_get(h, &s);
    if (rv != CKR_OK)
        return rv;
    if (mech == NULL || pub_out == NULL || priv_out == NULL || (pt == NULL && pn) ||
        (vt == NULL && vn))
        rv = CKR_ARGUMENTS_BAD;
    else if (mech->mechanism != CKM_RSA_PKCS_KEY_PAIR_GEN &&
             mech->mechanism != CKM_EC_KEY_PAIR_GEN &&
             mech->mechanism != CKM_EC_EDWARDS_KEY_PAIR_GEN)
        rv = CKR_MECHANISM_INVALID;
    else if (mech->pParameter != NULL || mech->ulParameterLen != 0)
        rv = CKR_MECHANISM_PARAM_INVALID;
    else if (!(s->flags & CKF_RW_SESSION))
        rv = CKR_SESSION_READ_ONLY;
    else if (kwk_token_need_login(s->tok))
        rv = CKR_USER_NOT_LOGGED_IN;
    else if ((rv = kwk_tmpl_common(pt, pn, CKO_PUBLIC_KEY, &pm, pub_extra, 4)) == CKR_OK)
        rv = kwk_tmpl_common(vt, vn, CKO_PRIVATE_KEY, &vm, priv_extra, 1);
    if (rv == CKR_OK) {
        CK_ULONG kt, want = mech->mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN ? CKK_RSA
                            : mech->mechanism == CKM_EC_KEY_PAIR_GEN     ? CKK_EC
                                                                         : CKK_EC_EDWARDS;
        if ((kwk_attr_ulong(pt, pn, CKA_KEY_TYPE, &kt) == CKR_OK && kt != want) ||
            (kwk_attr_ulong(vt, vn, CKA_KEY_TYPE, &kt) == CKR_OK && kt != want))
            rv = CKR_TEMPLATE_INCONSISTENT;
        /* Another key type's parameters would be dropped: inconsistent with this mechanism. */
        if (want == CKK_RSA ? kwk_attr_get(pt, pn, CKA_EC_PARAMS) != NULL
                            : (kwk_attr_get(pt, pn, CKA_MODULUS_BITS) != NULL ||
                               kwk_attr_get(pt, pn, CKA_PUBLIC_EXPONENT) != NULL))
            rv = CKR_TEMPLATE_INCONSISTENT;
        if (rv == CKR_OK &&
            (rv = kwk_tmpl_usage(pt, pn, CKO_PUBLIC_KEY, want, &pm.flags)) == CKR_OK)
            rv = kwk_tmpl_usage(vt, vn, CKO_PRIVATE_KEY, want, &vm.flags);
    }
    EVP_PKEY *pk = NULL;
    if (rv == CKR_OK)
        rv = gen(mech->mechanism, pt, pn, &pk);
    if (rv == CKR_OK) {
        /* Each half keeps its own template's label, ID, usages, list, subject and dates; a label
         * or ID only one template gives names both halves. */
        if (vm.label[0] == '\0')
            memcpy(vm.label, pm.label, sizeof(vm.label));
        else if (pm.label[0] == '\0')
            memcpy(pm.label, vm.label, sizeof(pm.label));
        if (vm.id_len == 0) {
            memcpy(vm.id, pm.id, pm.id_len);
            vm.id_len = pm.id_len;
        } else if (pm.id_len == 0) {
            memcpy(pm.id, vm.id, vm.id_len);
            pm.id_len = vm.id_len;
        }
        vm.flags |= KWK_F_LOCAL;
        pm.flags = KWK_F_LOCAL |
                   (pm.flags & (KWK_F_ENCRYPT | KWK_F_DERIVE | KWK_F_PRIVATE | KWK_F_READONLY));
        kwk_serial ps, us;
        pthread_mutex_lock(&kwk_lock);
        rv = kwk_token_open(s->tok);
        if (rv == CKR_OK)
            rv = kwk_store_keypair(s->tok, pk, &vm, &pm, &ps, &us);
        if (rv == CKR_OK) {
            *priv_out = (CK_OBJECT_HANDLE)ps;
            *pub_out = (CK_OBJECT_HANDLE)us;
            kwk_objects_refresh(s->tok);
        }
        pthread_mutex_unlock(&kwk_lock);
    }
    EVP_PKEY_free(pk); /* libcrypto clears private key material on free */
    kwk_session_put(s);
    return rv;
}
