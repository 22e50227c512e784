/* What wolfSSL negotiated, for facts its public API does not expose (host build only).
 *
 * Compiled by build.rs with the same include path, defines and user_settings.h as wolfSSL
 * itself, so `struct WOLFSSL` here has the layout the library was built with. Read-only. */
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/ssl.h>
#include <wolfssl/internal.h>
#include <stddef.h>

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

/* The size of wolfSSL's ticket plaintext (InternalTicket) and where its resumption master
 * secret sits in it: our ticket callback appends its own record after these bytes and keys
 * that record by the secret (wolf.rs). Both are fixed by this build's settings. */
unsigned int qeaas_wolfssl_ticket_internal_len(void)
{
#ifdef HAVE_SESSION_TICKET
    return (unsigned int)WOLFSSL_INTERNAL_TICKET_LEN;
#else
    return 0;
#endif
}

unsigned int qeaas_wolfssl_ticket_secret_offset(void)
{
#ifdef HAVE_SESSION_TICKET
    return (unsigned int)offsetof(InternalTicket, msecret);
#else
    return 0;
#endif
}

/* Server, (D)TLS 1.3, once the ClientHello is processed: when the handshake resumes a session
 * from a ticket (a PSK from a ticket whose binder verified, not an external PSK, for which
 * wolfSSL clears `resuming`), copies the ticket's resumption master secret into `out` and
 * returns its length; else 0. wolfSSL replaces the secret later in the handshake, so this is
 * read right after the ClientHello. */
int qeaas_wolfssl_resumed_secret(const WOLFSSL *ssl, unsigned char *out, unsigned int len)
{
#if defined(WOLFSSL_TLS13) && defined(HAVE_SESSION_TICKET)
    if (ssl == NULL || out == NULL || ssl->session == NULL || len < SECRET_LEN)
        return 0;
    if (!ssl->options.resuming || !ssl->options.pskNegotiated)
        return 0;
    XMEMCPY(out, ssl->session->masterSecret, SECRET_LEN);
    return SECRET_LEN;
#else
    (void)ssl;
    (void)out;
    (void)len;
    return 0;
#endif
}
