/* What wolfSSL negotiated, for facts its public API does not expose (host build only).
 *
 * Compiled by build.rs with the same include path, defines and user_settings.h as wolfSSL
 * itself, so `struct WOLFSSL` here has the layout the library was built with. Read-only. */
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/ssl.h>
#include <wolfssl/internal.h>

/* 1 when the (D)TLS 1.3 handshake of `ssl` uses a pre-shared key, else 0.
 *
 * wolfSSL sets `pskNegotiated` from the result of its PSK selection (DoTls13ClientHello),
 * which counts a PSK only after the client's binder for it verified (DoPreSharedKeys), so the
 * client has shown it holds that key. The PSK server callback, by contrast, is asked for keys
 * of identities that are then not used (another cipher suite, a certificate handshake): its
 * being called proves nothing. */
int qeaas_wolfssl_psk_negotiated(const WOLFSSL *ssl)
{
    if (ssl == NULL)
        return 0;
#if defined(WOLFSSL_TLS13) && (!defined(NO_PSK) || defined(HAVE_SESSION_TICKET))
    return ssl->options.pskNegotiated ? 1 : 0;
#else
    return 0;
#endif
}
