/* The device's verify callback needs the peer's leaf certificate (DER) while wolfSSL verifies
 * it, to read its notBefore against the device's not-before floor. WOLFSSL_X509_STORE_CTX's
 * layout depends on the build's settings, so it is read here, compiled with those settings,
 * rather than mirrored in Rust. */
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/ssl.h>

/* 1 with `*der`/`*len` set when this call of the verify callback is for the peer's own
 * (leaf) certificate, 0 for a CA certificate of its chain, -1 without a store. `*user` is
 * the context given to wolfSSL_SetCertCbCtx. */
int qeaas_wolfssl_store_leaf(WOLFSSL_X509_STORE_CTX *s, const unsigned char **der,
                             unsigned int *len, void **user)
{
    if (s == NULL || der == NULL || len == NULL || user == NULL)
        return -1;
    *user = s->userCtx;
    if (s->error_depth != 0 || s->certs == NULL || s->totalCerts < 1)
        return 0;
    *der = s->certs[0].buffer;
    *len = s->certs[0].length;
    return 1;
}
