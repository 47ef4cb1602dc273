/* SPDX-License-Identifier: Apache-2.0 */
/* ENCODERs: a token private key is written as the URI key file (PEM or DER) or as text; its
 * value is never written because keyward never has it. */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>

#include <keyward/keyward.h>

#include "kwp.h"

static OSSL_FUNC_encoder_newctx_fn enc_newctx;
static OSSL_FUNC_encoder_freectx_fn enc_freectx;
static OSSL_FUNC_encoder_does_selection_fn enc_does_private;
static OSSL_FUNC_encoder_does_selection_fn enc_does_any;
static OSSL_FUNC_encoder_encode_fn enc_uri_pem;
static OSSL_FUNC_encoder_encode_fn enc_uri_der;
static OSSL_FUNC_encoder_encode_fn enc_text;

static void *enc_newctx(void *provctx)
{
    return provctx;
}

static void enc_freectx(void *ctx)
{
}

static int enc_does_private(void *provctx, int selection)
{
    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
}

static int enc_does_any(void *provctx, int selection)
{
    return 1;
}

static int enc_uri(void *vctx, OSSL_CORE_BIO *cout, const void *obj, const OSSL_PARAM abstract[],
                   int selection, int pem)
{
    kwp_ctx *pctx = vctx;
    const kwp_key *k = obj;
    unsigned char *der = NULL;
    int derlen = 0, ok = 0;
    BIO *out;

    if (k == NULL || !k->has_private || k->uri == NULL) {
        kwp_raise(pctx, KWP_R(KW_ERR_EXPORT),
                  "private key cannot be exported: only token keys can be written, as a key "
                  "file that carries their URI");
        return 0;
    }
    if (!kwp_keyfile_der_encode(k->uri, &der, &derlen))
        return 0;
    out = BIO_new_from_core_bio(pctx->libctx, cout);
    if (out != NULL)
        ok = pem ? PEM_write_bio(out, KEYWARD_PEM_LABEL_URI, "", der, derlen) > 0
                 : BIO_write(out, der, derlen) == derlen;
    BIO_free(out);
    OPENSSL_free(der);
    return ok;
}

static int enc_uri_pem(void *vctx, OSSL_CORE_BIO *cout, const void *obj,
                       const OSSL_PARAM abstract[], int selection, OSSL_PASSPHRASE_CALLBACK *cb,
                       void *cbarg)
{
    return enc_uri(vctx, cout, obj, abstract, selection, 1);
}

static int enc_uri_der(void *vctx, OSSL_CORE_BIO *cout, const void *obj,
                       const OSSL_PARAM abstract[], int selection, OSSL_PASSPHRASE_CALLBACK *cb,
                       void *cbarg)
{
    return enc_uri(vctx, cout, obj, abstract, selection, 0);
}

static int enc_text(void *vctx, OSSL_CORE_BIO *cout, const void *obj, const OSSL_PARAM abstract[],
                    int selection, OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    kwp_ctx *pctx = vctx;
    const kwp_key *k = obj;
    BIO *out;
    int ok;

    if (k == NULL || k->pub == NULL)
        return 0;
    out = BIO_new_from_core_bio(pctx->libctx, cout);
    if (out == NULL)
        return 0;
    ok = BIO_printf(out, "keyward %s key, %d bits\n", k->alg, k->bits) > 0 &&
         BIO_printf(out, "URI: %s\n", k->uri ? k->uri : "(none: public key only)") > 0 &&
         BIO_printf(out, "Private key: %s\n",
                    k->has_private ? "on the token, not extractable from keyward" : "none") > 0 &&
         EVP_PKEY_print_public(out, k->pub, 0, NULL) > 0;
    BIO_free(out);
    return ok;
}

const OSSL_DISPATCH kwp_encoder_uri_pem_functions[] = {
    {OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))enc_newctx},
    {OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))enc_freectx},
    {OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))enc_does_private},
    {OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))enc_uri_pem},
    {0, NULL}};

const OSSL_DISPATCH kwp_encoder_uri_der_functions[] = {
    {OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))enc_newctx},
    {OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))enc_freectx},
    {OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))enc_does_private},
    {OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))enc_uri_der},
    {0, NULL}};

const OSSL_DISPATCH kwp_encoder_text_functions[] = {
    {OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))enc_newctx},
    {OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))enc_freectx},
    {OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))enc_does_any},
    {OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))enc_text},
    {0, NULL}};
