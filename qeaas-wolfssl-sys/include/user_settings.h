/* qeaas's wolfSSL 5.9.4 configuration, shared by the host frontend (qeaas-coapd, tests) and the
 * bare-metal riscv32imc client of the ESP32-C3 firmware. build.rs defines QEAAS_WOLFSSL_HOST or
 * QEAAS_WOLFSSL_DEVICE. Only what the project uses: DTLS 1.2 and 1.3, PSK, ECDSA P-256 and
 * ML-DSA-44 certificates, ML-KEM and X25519/P-256 key exchange. */
#ifndef QEAAS_USER_SETTINGS_H
#define QEAAS_USER_SETTINGS_H

#if !defined(QEAAS_WOLFSSL_HOST) && !defined(QEAAS_WOLFSSL_DEVICE)
#error "build.rs defines QEAAS_WOLFSSL_HOST or QEAAS_WOLFSSL_DEVICE"
#endif

/* ---- Protocols ---- */
#define WOLFSSL_TLS13
#define WOLFSSL_DTLS
#define WOLFSSL_DTLS13
/* DTLS 1.3 ClientHellos with ML-KEM key shares exceed one datagram. */
#define WOLFSSL_DTLS_CH_FRAG
#define WOLFSSL_DTLS_MTU
/* Stateless HelloRetryRequest cookies: no per-peer state before the cookie is proven. */
#define WOLFSSL_SEND_HRR_COOKIE
#define HAVE_TLS_EXTENSIONS
#define HAVE_SUPPORTED_CURVES
#define HAVE_HKDF
#define HAVE_SNI
#define HAVE_ENCRYPT_THEN_MAC
#define HAVE_EXTENDED_MASTER
#define NO_OLD_TLS

/* CoAP's mandatory DTLS 1.2 suite is TLS_PSK_WITH_AES_128_CCM_8 (RFC 7252 9.1.3.1): static PSK
 * and AES-CCM. */
#define WOLFSSL_STATIC_PSK
#define HAVE_AESCCM
#define HAVE_AESGCM
#define WOLFSSL_AES_128
#define WOLFSSL_AES_256
#define HAVE_CHACHA
#define HAVE_POLY1305

/* ---- Public-key algorithms ---- */
#define HAVE_ECC
#define ECC_TIMING_RESISTANT
#define TFM_TIMING_RESISTANT
#define HAVE_CURVE25519
#define WOLFSSL_HAVE_MLKEM
#define WOLFSSL_WC_MLKEM
/* X25519MLKEM768 (and SecP256r1MLKEM768): hybrids are off unless asked for. */
#define WOLFSSL_PQC_HYBRIDS
#define WOLFSSL_HAVE_MLDSA
#define WOLFSSL_WC_MLDSA
#define WOLFSSL_SHA3
#define WOLFSSL_SHAKE128
#define WOLFSSL_SHAKE256
#define WOLFSSL_SHA384
/* A verify callback, where one is set, also sees the peer's certificate when it verified (the
 * device's not-before floor reads its notBefore there). Nothing else sets one. */
#define WOLFSSL_ALWAYS_VERIFY_CB
#define WOLFSSL_SHA512
#define WOLFSSL_SP_MATH_ALL
#define NO_RSA
#define NO_DH
#define NO_DSA
#define NO_RC4
#define NO_MD4
#define NO_MD5
#define NO_DES3
#define NO_PWDBASED
/* Deliberately not defined: WOLFSSL_ML_KEM_USE_OLD_IDS (we use the IANA code points) and
 * WC_NO_HARDEN (it removes timing resistance). */

#if defined(QEAAS_WOLFSSL_HOST)
/* ---- Host: qeaas-coapd (server) and the Rust test client ---- */
#define HAVE_SYS_TIME_H
/* coap-client-openssl aborts the handshake without the renegotiation_info extension. */
#define HAVE_SERVER_RENEGOTIATION_INFO
#define WOLFSSL_IGNORE_FILE_WARN
#define NO_WOLFSSL_DIR
/* Match iPAddress subjectAltNames (qeaas-fetch checks coaps://127.0.0.1 against them). */
#define WOLFSSL_IP_ALT_NAME
/* Keep the peer's verified certificate after the handshake: qeaas-coapd names a client by the
 * CN (or a subjectAltName) of its certificate. */
#define KEEP_PEER_CERT
/* DTLS 1.3 resumption with session tickets (qeaas-coapd's `ticket_key_file`). Tickets are
 * sealed only by our callback (wolf.rs), keyed from the operator's secret file, so that they
 * survive a restart and die with that file. No built-in per-process key: a server without the
 * file sets no callback and issues no ticket. The padding is room for the client identity we
 * bind into each ticket after wolfSSL's own fields. */
#define HAVE_SESSION_TICKET
#define WOLFSSL_NO_DEF_TICKET_ENC_CB
#define WOLFSSL_TICKET_EXTRA_PADDING_SZ 512
#endif

#if defined(QEAAS_WOLFSSL_DEVICE)
/* ---- Device: bare-metal riscv32imc client (ESP32-C3 firmware, picolibc) ---- */
#define NO_WOLFSSL_SERVER
#define SINGLE_THREADED
#define WOLFSSL_USER_IO
#define NO_FILESYSTEM
#define NO_WRITEV
#define WOLFSSL_NO_SOCK
/* wolfio.h uses ssize_t in its DTLS I/O typedefs; without sockets nothing else includes it. */
#include <sys/types.h>
#define WOLFSSL_MLDSA_VERIFY_ONLY
/* Heap over speed on the device: verification in small pieces, key buffers sized to ML-DSA-44
 * and ML-KEM-512 (not the largest level), ML-KEM key generation in small memory.
 * VERIFY_SMALLEST_MEM (which implies VERIFY_NO_MALLOC) streams z one polynomial at a time in
 * buffers of the key instead of an 8.8 KB allocation, and the device verifies ML-DSA-44 only, so
 * those buffers are sized for it: 35 544 -> 32 600 B of session heap for about +0.45 M
 * instructions (firmware-esp32/README.md, frontier table). */
#define WOLFSSL_MLDSA_VERIFY_SMALL_MEM
#define WOLFSSL_MLDSA_VERIFY_SMALLEST_MEM
#define WOLFSSL_NO_ML_DSA_65
#define WOLFSSL_NO_ML_DSA_87
#define WOLFSSL_MLDSA_DYNAMIC_KEYS
#define WOLFSSL_MLKEM_MAKEKEY_SMALL_MEM
#define WOLFSSL_MLKEM_DYNAMIC_KEYS
/* DTLS 1.3 resumption with a session ticket, kept by the firmware itself (one
 * WOLFSSL_SESSION, taken with wolfSSL_get1_session) to reconnect after a server restart
 * without verifying the certificate again. wolfSSL's session API exists only with a session
 * cache, so the smallest one: one slot, allocated only if used, and the firmware turns it off
 * per context (wolfSSL_CTX_set_session_cache_mode) so it never is. No client cache. */
#define HAVE_SESSION_TICKET
#define MICRO_SESSION_CACHE
#define SESSION_CACHE_DYNAMIC_MEM
#define NO_CLIENT_CACHE
#define NO_SESSION_CACHE_REF
#define WOLFSSL_SP_SMALL
/* The firmware seeds the DRBG from the chip TRNG: int qeaas_rand_seed(byte *out, word32 len).
 * (CUSTOM_RAND_GENERATE_BLOCK together with HAVE_HASHDRBG does not compile.) */
#define CUSTOM_RAND_TYPE unsigned char
extern int qeaas_rand_seed(unsigned char *output, unsigned int sz);
#define CUSTOM_RAND_GENERATE_SEED qeaas_rand_seed
/* No wall clock on the chip at handshake time: certificate dates are parsed but not checked
 * (NO_ASN_TIME_CHECK). Not NO_ASN_TIME, which in wolfSSL also removes the session cache API
 * and session tickets. The firmware supplies wolfSSL's clocks (USER_TICKS: LowResTimer and
 * TimeNowInMilliseconds, time since boot), which is all ticket ages and DTLS timers need. */
#define NO_ASN_TIME_CHECK
#define USER_TICKS
#endif

#endif /* QEAAS_USER_SETTINGS_H */
