/*
 * sealpipe.h - the sealpipe device SDK: TagoTiP bodies, TagoTiP/S envelopes and
 * the credentials both derive from.
 *
 * This is the whole public API of libsealpipe; if it is not in this header it is
 * not the API. The same code runs on a device (sealing, building) and in the
 * sealpipe daemon (opening, parsing): a wire format is written once.
 *
 * Conventions:
 *  - Functions return 0 (SP_OK) on success or a negative enum sp_err; functions
 *    that produce a count return it as a non-negative int.
 *  - Every pointer parameter is borrowed. Nothing here allocates memory: callers
 *    pass buffers with their capacity, and out-parameters are written only on
 *    success.
 *  - Parsers never read past the length they are given and do not need NUL
 *    termination.
 *  - Parameters come in one order: a handle first (the builder), then the
 *    inputs, then the outputs. An output buffer is followed by its capacity
 *    (in bytes, counting the NUL when the result is text), then by a pointer
 *    that receives the length written, when there is one.
 *  - Error numbers and the layout of the structs are stable within a major
 *    version; new functions and errors are only added.
 *  - Call sp_init() once before anything else (it initializes libsodium).
 *  - Sizes that matter on a device: struct sp_tip_body is about 15 KB and
 *    struct sp_tip_pull about 1.6 KB (64-bit figures, checked when the library
 *    is built; less on 32-bit targets). Keep them off small stacks.
 *
 * Specifications: TagoTiP.md, TagoTiPs.md and TagoTipServers.md from the public
 * repository tago-io/tagotip (Apache-2.0). Section numbers below refer to them.
 */
#ifndef SEALPIPE_H
#define SEALPIPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * The version of this header, written here once: CMake reads it for the
 * project, the library and sealpipe.pc. sp_version() returns the version of
 * the library actually linked, so a program can compare the two.
 */
#define SP_VERSION_MAJOR 0
#define SP_VERSION_MINOR 2
#define SP_VERSION_PATCH 0
#define SP_VERSION_HEX   ((SP_VERSION_MAJOR << 16) | (SP_VERSION_MINOR << 8) | SP_VERSION_PATCH)
#define SP__STR(x)       #x
#define SP__XSTR(x)      SP__STR(x)
#define SP_VERSION_STRING                                                                          \
    SP__XSTR(SP_VERSION_MAJOR) "." SP__XSTR(SP_VERSION_MINOR) "." SP__XSTR(SP_VERSION_PATCH)

/*
 * SP_EXPORT marks the functions of this API: the library is built with
 * -fvisibility=hidden, so nothing else is visible when it is linked as a
 * shared object. SP_WUR: a status that must be checked.
 */
#if defined(__GNUC__)
#define SP_EXPORT __attribute__((visibility("default")))
#define SP_WUR    __attribute__((warn_unused_result))
#else
#define SP_EXPORT
#define SP_WUR
#endif

/* The library's version, SP_VERSION_STRING when it was built ("0.2.0"). */
SP_EXPORT const char *sp_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Every error an SDK function returns: the symbolic name, its number, the
 * TagoTiP wire code for it (TagoTiP.md §9.2, TagoTiPs.md §9) and a message
 * for people. SP_ERR_<NAME> is negative; 0 is success.
 *
 * The numbers are part of the API and never change: an error is never
 * renumbered or reused, and new errors are appended with new numbers. The
 * SDK uses -1 to -99. The sealpipe daemon has errors of its own (storage,
 * analyses, the broker) numbered from -100 down; they are not in this header
 * because no SDK function returns them.
 */
#define SP_ERRNO_MAP(XX)                                                                           \
    XX(INVAL, -1, "server_error", "invalid argument")                                              \
    XX(BUFSIZE, -2, "server_error", "output buffer too small")                                     \
    XX(PAYLOAD, -3, "invalid_payload", "malformed TagoTiP body")                                   \
    XX(TOOLARGE, -4, "payload_too_large", "frame exceeds the size limit")                          \
    XX(METHOD, -5, "invalid_method", "unknown or reserved method")                                 \
    XX(VERSION, -6, "unsupported_version", "unsupported envelope version")                         \
    XX(CIPHER, -7, "unsupported_cipher", "unsupported cipher suite")                               \
    XX(ENVTOOLARGE, -8, "envelope_too_large", "envelope exceeds the size limit")                   \
    XX(SHORT, -9, "auth_failed", "envelope too short")                                             \
    XX(AUTH, -10, "auth_failed", "envelope authentication failed")                                 \
    XX(TOKEN, -11, "invalid_token", "unknown, expired or revoked token")                           \
    XX(CRYPTO, -12, "server_error", "cryptographic library failure")

enum sp_err {
    SP_OK = 0,
#define SP__XX(name, num, wire, msg) SP_ERR_##name = num,
    SP_ERRNO_MAP(SP__XX)
#undef SP__XX
};

/* Human-readable message for an SDK error code (never NULL). */
SP_EXPORT const char *sp_strerror(int err);
/* Symbolic name without prefix, e.g. "AUTH" (never NULL; "UNKNOWN" if unknown). */
SP_EXPORT const char *sp_errname(int err);
/* TagoTiP wire code, e.g. "auth_failed" (never NULL; "server_error" if unknown). */
SP_EXPORT const char *sp_wirecode(int err);

/* Initializes the crypto libraries. Safe to call more than once. */
SP_EXPORT int sp_init(void) SP_WUR;

/* ------------------------------------------------------------------------ */
/* Limits (TagoTiP.md §4.5, TagoTiPs.md §5.5)                               */
/* ------------------------------------------------------------------------ */

#define SP_MAX_FRAME      16384 /* bytes of a frame or headless inner frame */
#define SP_MAX_NAME       100   /* variable name, group, metadata key */
#define SP_MAX_SERIAL     100
#define SP_MAX_UNIT       25
#define SP_MAX_VARS       100 /* variables per [] block */
#define SP_MAX_META       32  /* pairs per {} block */
#define SP_HASH_LEN       8   /* auth hash and device hash */
#define SP_TOKEN_HEX_LEN  32  /* authorization token without "at" */
#define SP_MAX_KEY_LEN    32
#define SP_ENV_HEADER_LEN 21
#define SP_ENV_MAX_TAG    16
#define SP_ENV_MAX_LEN    (SP_ENV_HEADER_LEN + SP_MAX_FRAME + SP_ENV_MAX_TAG)

/* ------------------------------------------------------------------------ */
/* Credentials (TagoTiP.md §2, TagoTiPs.md §2)                              */
/* ------------------------------------------------------------------------ */

/*
 * Authorization hash: the first 8 bytes of SHA-256 over the token without its
 * "at" prefix (a token without the prefix is hashed as given).
 * Returns 0, or SP_ERR_INVAL if token is empty.
 */
SP_EXPORT int sp_auth_hash(const char *token, size_t len, uint8_t out[SP_HASH_LEN]) SP_WUR;

/* Device hash: the first 8 bytes of SHA-256 over the serial. */
SP_EXPORT void sp_device_hash(const char *serial, size_t len, uint8_t out[SP_HASH_LEN]);

/*
 * Optional key derivation (TagoTiPs.md §2.4): HMAC-SHA256(key = token without
 * "at", msg = serial), truncated to key_len (16 or 32).
 * Returns 0, or SP_ERR_INVAL.
 */
SP_EXPORT int sp_derive_key(const char *token, size_t token_len, const char *serial,
                            size_t serial_len, uint8_t *out, size_t key_len) SP_WUR;

/*
 * Lowercase hex of n bytes into out (2n characters plus a NUL; cap counts the
 * NUL). Returns 0 or SP_ERR_BUFSIZE.
 */
SP_EXPORT int sp_hex_encode(const uint8_t *in, size_t n, char *out, size_t cap) SP_WUR;
/* The value of one hex digit (either case), or -1: for callers that report
 * where a hex string goes wrong (sp_hex_decode says only that it does). */
SP_EXPORT int sp_hex_digit(int c);
/*
 * Decodes len hex characters (either case) into out. Returns the number of
 * bytes written, SP_ERR_PAYLOAD for odd length or a non-hex character, or
 * SP_ERR_BUFSIZE.
 */
SP_EXPORT int sp_hex_decode(const char *in, size_t len, uint8_t *out, size_t cap) SP_WUR;
/* Standard base64 with padding, NUL-terminated. Returns 0 or SP_ERR_BUFSIZE. */
SP_EXPORT int sp_base64_encode(const uint8_t *in, size_t n, char *out, size_t cap) SP_WUR;
/* Strict standard base64 (padding required). Returns bytes written or an error. */
SP_EXPORT int sp_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap) SP_WUR;

/* ------------------------------------------------------------------------ */
/* TagoTiP/S envelopes (TagoTiPs.md)                                        */
/* ------------------------------------------------------------------------ */

enum sp_suite {
    SP_SUITE_AES128_CCM = 0, /* mandatory; what TagoIO's device SDKs send */
    SP_SUITE_AES128_GCM = 1,
    SP_SUITE_AES256_CCM = 2,
    SP_SUITE_AES256_GCM = 3,
    SP_SUITE_CHACHA20_POLY1305 = 4
};

enum sp_method { SP_METHOD_PUSH = 0, SP_METHOD_PULL = 1, SP_METHOD_PING = 2, SP_METHOD_ACK = 3 };

/*
 * Cipher suite by name: "aes-128-ccm", "aes-128-gcm", "aes-256-ccm",
 * "aes-256-gcm", "chacha20-poly1305" (case-insensitive). Returns the suite
 * number or SP_ERR_CIPHER.
 */
SP_EXPORT int sp_suite_from_name(const char *name);
/* Canonical name of a suite, or NULL if the number is not a suite. */
SP_EXPORT const char *sp_suite_name(int suite);
/* Key and tag lengths in bytes, or 0 for a number that is not a suite. */
SP_EXPORT size_t sp_suite_key_len(int suite);
SP_EXPORT size_t sp_suite_tag_len(int suite);
/* 1 if this build can seal and open the suite, 0 if not. */
SP_EXPORT int sp_suite_available(int suite);

struct sp_env_header {
    uint8_t flags;
    int suite;        /* bits 7-5 */
    int version;      /* bits 4-3 */
    int method;       /* bits 2-0, enum sp_method */
    uint32_t counter; /* big-endian on the wire */
    uint8_t auth_hash[SP_HASH_LEN];
    uint8_t device_hash[SP_HASH_LEN];
};

/*
 * Reads and checks the 21-byte header of an envelope of len bytes (§12 steps
 * 1-5). Returns 0, or SP_ERR_SHORT (shorter than header plus tag),
 * SP_ERR_VERSION, SP_ERR_CIPHER (reserved or unavailable suite), SP_ERR_METHOD
 * (reserved method, or the reserved flags byte 0x41), SP_ERR_ENVTOOLARGE.
 */
SP_EXPORT int sp_env_parse_header(const uint8_t *env, size_t len, struct sp_env_header *out) SP_WUR;

/*
 * Opens (decrypts and verifies) an envelope whose header h was read with
 * sp_env_parse_header. The plaintext inner frame goes to out (cap must be at
 * least len - 21 - tag length); *out_len receives its length.
 * Returns 0, SP_ERR_AUTH (wrong key or tampered), SP_ERR_INVAL (key length does
 * not fit the suite), SP_ERR_BUFSIZE or SP_ERR_CRYPTO. On failure out holds
 * no plaintext.
 */
SP_EXPORT int sp_env_open(const struct sp_env_header *h, const uint8_t *env, size_t len,
                          const uint8_t *key, size_t key_len, uint8_t *out, size_t cap,
                          size_t *out_len) SP_WUR;

/*
 * Seals inner (a headless inner frame, at most SP_MAX_FRAME bytes) into an
 * envelope written to out; *out_len receives its length (21 + inner_len + tag).
 * Returns 0, SP_ERR_INVAL, SP_ERR_CIPHER, SP_ERR_TOOLARGE, SP_ERR_BUFSIZE or
 * SP_ERR_CRYPTO. Refuses the reserved flags byte 0x41 with SP_ERR_METHOD.
 */
SP_EXPORT int sp_env_seal(int suite, int method, uint32_t counter,
                          const uint8_t auth_hash[SP_HASH_LEN],
                          const uint8_t device_hash[SP_HASH_LEN], const uint8_t *key,
                          size_t key_len, const uint8_t *inner, size_t inner_len, uint8_t *out,
                          size_t cap, size_t *out_len) SP_WUR;

/* ------------------------------------------------------------------------ */
/* TagoTiP bodies (TagoTiP.md §6, §12, §14)                                 */
/* ------------------------------------------------------------------------ */

/* A slice of the caller's input. Text in it is still escaped. */
struct sp_span {
    const char *p;
    size_t n;
};

/* 1 when s[0..n) is a serial (TagoTiP.md §13: 1-SP_MAX_SERIAL characters of
 * A-Z a-z 0-9 - _), else 0. */
SP_EXPORT int sp_serial_valid(const char *s, size_t n);

/*
 * Splits a headless inner frame (TagoTiPs.md §4.1) at its first unescaped '|':
 * "SERIAL|BODY". For PING (no body) *body is empty. Checks the serial's
 * characters and length. Returns 0 or SP_ERR_PAYLOAD.
 */
SP_EXPORT int sp_inner_split(const char *inner, size_t len, int method, struct sp_span *serial,
                             struct sp_span *body) SP_WUR;

/*
 * Strips the optional "!N|" counter prefix of an MQTT-binding payload
 * (TagoTipServers.md §3.3). *has_counter is set to 0 or 1.
 * Returns 0 or SP_ERR_PAYLOAD (a "!" not followed by a valid counter and '|').
 */
SP_EXPORT int sp_tip_split_counter(const char *payload, size_t len, int *has_counter,
                                   uint32_t *counter, struct sp_span *body) SP_WUR;

enum sp_tip_type { SP_TIP_NUMBER, SP_TIP_STRING, SP_TIP_BOOLEAN, SP_TIP_LOCATION };

struct sp_tip_var {
    struct sp_span name;
    int type;             /* enum sp_tip_type */
    struct sp_span value; /* as written; strings still escaped */
    double number;        /* SP_TIP_NUMBER */
    int boolean;          /* SP_TIP_BOOLEAN */
    /*
     * A location (Revision D): the value of an SP_TIP_LOCATION variable, or
     * the "@=lat,lng[,alt]" suffix of any other, else the body-level one it
     * inherits (§6.4: never onto an SP_TIP_LOCATION variable). has_loc says
     * whether lat/lng hold one (always 1 for SP_TIP_LOCATION); has_alt
     * whether alt does (else alt is 0).
     */
    double lat, lng, alt;
    int has_alt;
    int has_loc;
    struct sp_span unit; /* n == 0: none */
    int has_time;        /* own timestamp, else inherited from the body */
    int64_t time_ms;
    struct sp_span group; /* own group, else inherited; n == 0: none */
    struct sp_span meta;  /* own {...} pairs without the braces; n == 0: none */
};

/*
 * 15,312 bytes on 64-bit targets (SP_MAX_VARS variables of 152 bytes each),
 * roughly two thirds of that on 32-bit ones: make it static or allocate it
 * rather than putting it on a small task stack.
 */
struct sp_tip_body {
    int passthrough;     /* 0 for structured, 'x' (hex) or 'b' (base64) */
    struct sp_span data; /* passthrough data after ">x" / ">b" */
    struct sp_span group;
    int has_time;
    int64_t time_ms;
    struct sp_span meta; /* body-level {...} pairs without the braces */
    int has_loc;         /* body-level "@=lat,lng[,alt]" (Revision D) */
    int has_alt;
    double lat, lng, alt;
    size_t nvars;
    struct sp_tip_var vars[SP_MAX_VARS];
};

/*
 * Parses a PUSH body: structured variables or passthrough. Validates every
 * rule of the grammar and the limits of §4.5; a body that breaks any rule is
 * rejected whole. Reads TagoTiP Revision D (location suffix and body-level
 * location), and Revision B's body-level order "^GROUP@TIMESTAMP" too.
 * Inherited location, group and timestamp are already applied to each
 * variable (a location only to variables that are not locations themselves);
 * metadata is not merged (iterate var.meta first, then body meta, skipping
 * keys the variable has: variable wins).
 * Returns 0, SP_ERR_PAYLOAD or SP_ERR_TOOLARGE (more than SP_MAX_FRAME bytes).
 */
SP_EXPORT int sp_tip_parse_body(const char *body, size_t len, struct sp_tip_body *out) SP_WUR;

/*
 * Iterates the pairs of a validated metadata span. Start with *cursor = meta.
 * Returns 1 and sets key/value (value still escaped) while pairs remain, 0 at
 * the end.
 */
SP_EXPORT int sp_tip_meta_next(struct sp_span *cursor, struct sp_span *key, struct sp_span *value);

/*
 * Iterates the effective metadata of variable v of body b (TagoTiP.md §6.4):
 * the variable's pairs merged over the body's, every key once. A variable
 * pair wins over a body pair with the same key, and within one block a later
 * pair wins over an earlier one. Start with *pos = 0. Returns 1 and sets
 * key/value (value still escaped) while pairs remain, 0 at the end.
 */
SP_EXPORT int sp_tip_meta_each(const struct sp_tip_body *b, const struct sp_tip_var *v, size_t *pos,
                               struct sp_span *key, struct sp_span *value);

/*
 * Decodes escapes (§4.4) of a validated value span into out, NUL-terminated;
 * cap counts the NUL. Returns the decoded length or SP_ERR_BUFSIZE.
 */
SP_EXPORT int sp_tip_unescape(struct sp_span s, char *out, size_t cap) SP_WUR;

/*
 * Escapes text for a string or metadata value, NUL-terminated. Returns the
 * escaped length or SP_ERR_BUFSIZE / SP_ERR_PAYLOAD (a NUL byte or a control
 * character other than newline).
 */
SP_EXPORT int sp_tip_escape(const char *in, size_t n, char *out, size_t cap) SP_WUR;

/* ------------------------------------------------------------------------ */
/* Frames (TagoTiP.md §4, §7, §9, §12; TagoTipServers.md §3)                */
/* ------------------------------------------------------------------------ */

/* An uplink frame: METHOD|[!N|]AUTH|SERIAL[|BODY]. Spans point into the input. */
struct sp_tip_frame {
    int method; /* SP_METHOD_PUSH, SP_METHOD_PULL or SP_METHOD_PING */
    int has_counter;
    uint32_t counter;
    uint8_t auth_hash[SP_HASH_LEN];
    struct sp_span serial;
    struct sp_span body; /* validated but not parsed; empty for PING */
};

/*
 * Parses and validates a whole uplink frame (one trailing LF allowed),
 * including its body: a PUSH body by the rules of sp_tip_parse_body, a PULL
 * body as "[name;...]". Errors: SP_ERR_TOOLARGE (over SP_MAX_FRAME bytes:
 * payload_too_large) first, then SP_ERR_METHOD (not PUSH, PULL or PING,
 * including the future "PUSH/2" form: invalid_method), then the fields left
 * to right: SP_ERR_TOKEN (AUTH is not 16 hex digits: invalid_token) or
 * SP_ERR_PAYLOAD (anything else, e.g. a bad "!N" before AUTH:
 * invalid_payload).
 */
SP_EXPORT int sp_tip_parse_frame(const char *frame, size_t len, struct sp_tip_frame *out) SP_WUR;

/*
 * The "!N" counter of uplink frame METHOD|!N|..., read from its first two
 * fields alone: for the ERR answer to a frame sp_tip_parse_frame refused
 * (TagoTiP.md §4.2 echoes the counter). Returns 1 with *counter, or 0 when
 * the frame does not start with a method and a valid counter.
 */
SP_EXPORT int sp_tip_frame_counter(const char *frame, size_t len, uint32_t *counter);

/* The variable names of a PULL request: 1,608 bytes on 64-bit targets. */
struct sp_tip_pull {
    size_t nvars;
    struct sp_span vars[SP_MAX_VARS];
};

/*
 * Parses a PULL body "[name;name;...]" (TagoTiP.md §7.1, §12.3), or with
 * csv set the MQTT binding's "name,name,..." (TagoTipServers.md §3.3, after
 * sp_tip_split_counter). 1 to SP_MAX_VARS names of 1-100 VARNAMECHAR.
 * Returns 0, SP_ERR_PAYLOAD or SP_ERR_TOOLARGE.
 */
SP_EXPORT int sp_tip_parse_pull(const char *body, size_t len, int csv,
                                struct sp_tip_pull *out) SP_WUR;

/*
 * Writes the headless inner frame a TagoTiP/S envelope seals (TagoTiPs.md
 * §4.1): "SERIAL|BODY" for PUSH and PULL, "SERIAL" for PING (body ignored),
 * NUL-terminated. Checks the serial and that the result splits back into
 * the same fields (sp_inner_split); the body is copied as given, so
 * validate it first (sp_tip_parse_body, or write a PULL body with
 * sp_tip_build_pull). Returns the length, or SP_ERR_PAYLOAD (bad serial, an
 * empty body, a NUL or LF in it), SP_ERR_METHOD, SP_ERR_TOOLARGE (over
 * SP_MAX_FRAME), SP_ERR_BUFSIZE or SP_ERR_INVAL.
 */
SP_EXPORT int sp_inner_build(int method, const char *serial, const char *body, size_t body_len,
                             char *out, size_t cap) SP_WUR;

/*
 * Writes the PULL body "[name;name;...]" (TagoTiP.md §7.1) of the names in
 * pull (e.g. from sp_tip_parse_pull of the MQTT binding's "a,b"),
 * NUL-terminated. The result is read back with sp_tip_parse_pull, so a name
 * that breaks the rules is refused. Returns the length, or SP_ERR_PAYLOAD,
 * SP_ERR_TOOLARGE, SP_ERR_BUFSIZE or SP_ERR_INVAL.
 */
SP_EXPORT int sp_tip_build_pull(const struct sp_tip_pull *pull, char *out, size_t cap) SP_WUR;

enum sp_ack_status { SP_ACK_OK, SP_ACK_PONG, SP_ACK_CMD, SP_ACK_ERR };

/* The three spellings of a downlink ACK. */
enum sp_ack_form {
    SP_ACK_FRAME, /* "ACK|[!N|]STATUS[|DETAIL]": raw frames (TagoTiP.md §4.2) */
    SP_ACK_MQTT,  /* "[!N|]STATUS[|DETAIL]": $tip/{serial}/ack (TagoTipServers.md §3.5) */
    SP_ACK_INNER  /* "STATUS[|DETAIL]": inside a TagoTiP/S envelope (TagoTiPs.md §4.2) */
};

struct sp_tip_ack {
    int has_counter;
    uint32_t counter;
    int status;            /* enum sp_ack_status */
    struct sp_span detail; /* n == 0: none */
};

/*
 * Parses a downlink ACK in the given form (one trailing LF allowed). The
 * detail must fit its status: OK carries a count (1*DIGIT) or a PULL
 * response ("[" var-list "]"), PONG none, CMD and ERR 1*DETAILCHAR
 * (printable ASCII without space and '|'). Returns 0, SP_ERR_PAYLOAD or
 * SP_ERR_TOOLARGE.
 */
SP_EXPORT int sp_tip_parse_ack(const char *frame, size_t len, int form,
                               struct sp_tip_ack *out) SP_WUR;

/*
 * Writes an ACK in the given form into out, NUL-terminated (cap counts the
 * NUL); detail may be NULL. The counter is written only when has_counter is
 * set (never in SP_ACK_INNER). The result is checked with sp_tip_parse_ack,
 * so nothing that breaks the grammar leaves. Returns the length written,
 * SP_ERR_PAYLOAD (a detail that does not fit its status, or holds a NUL),
 * SP_ERR_TOOLARGE, SP_ERR_BUFSIZE or SP_ERR_INVAL.
 */
SP_EXPORT int sp_tip_build_ack(int form, int has_counter, uint32_t counter, int status,
                               const char *detail, size_t detail_len, char *out, size_t cap) SP_WUR;

/*
 * Writes an uplink frame METHOD|[!N|]AUTH|SERIAL[|BODY] (raw binding) into
 * out, NUL-terminated; body is ignored for PING. The result is validated
 * with sp_tip_parse_frame. Returns the length, or an error of
 * sp_tip_parse_frame, SP_ERR_BUFSIZE or SP_ERR_INVAL.
 */
SP_EXPORT int sp_tip_build_frame(int method, int has_counter, uint32_t counter,
                                 const uint8_t auth_hash[SP_HASH_LEN], const char *serial,
                                 const char *body, size_t body_len, char *out, size_t cap) SP_WUR;

/*
 * Builder for a structured PUSH body (or a PULL response), writing into a
 * caller buffer:
 *
 *   struct sp_tip_builder b;
 *   sp_tip_build_init(&b, buf, sizeof buf);
 *   sp_tip_body_location(&b, 39.74, -104.99, 0, 0);  body-level modifiers
 *   sp_tip_body_time(&b, 1694567890000);         first, in this order
 *   sp_tip_body_group(&b, "batch_42");          (TagoTiP Revision D), each
 *   sp_tip_body_meta(&b, "firmware", "2.1");     optional (repeat for pairs)
 *   sp_tip_add_number(&b, "temp", 21.5, "C");    then variables, each
 *   sp_tip_var_location(&b, 39.75, -105, 1, 1600);  followed by its optional
 *   sp_tip_var_time(&b, 1694567891000);          suffixes in this order
 *   sp_tip_var_group(&b, "reading_1");
 *   sp_tip_var_meta(&b, "source", "dht22");
 *   sp_tip_build_end(&b, &len);
 *
 * An error sticks: later calls do nothing and sp_tip_build_end returns it
 * (SP_ERR_PAYLOAD for a rule broken: a bad name, an empty value, a suffix out
 * of order or twice, a unit or a location suffix on a location, a coordinate
 * that is not finite, a limit of §4.5; SP_ERR_BUFSIZE;
 * SP_ERR_TOOLARGE past SP_MAX_FRAME). A failed call leaves the buffer as it
 * was before it. Names are checked against the identifier rules; string and
 * metadata values are escaped; numbers are written in plain decimal with the
 * fewest digits that read back as the same double. sp_tip_build_end may be
 * called again (same result); adds after it are refused, and
 * sp_tip_build_drop_last after it reopens the block.
 */
struct sp_tip_builder {
    char *buf;
    size_t cap;
    size_t len;
    size_t nvars;
    size_t var_start; /* offset of the last variable, its separator included */
    size_t nmeta;     /* pairs in the open {} block */
    int stage;        /* how far the current element got; internal */
    int loc;          /* the last variable is a location */
    int err;
};
SP_EXPORT void sp_tip_build_init(struct sp_tip_builder *b, char *buf, size_t cap);
/* "@=lat,lng[,alt]" before the block; alt is written only when has_alt is set. */
SP_EXPORT void sp_tip_body_location(struct sp_tip_builder *b, double lat, double lng, int has_alt,
                                    double alt);
SP_EXPORT void sp_tip_body_group(struct sp_tip_builder *b, const char *group);
SP_EXPORT void sp_tip_body_time(struct sp_tip_builder *b, int64_t time_ms);
SP_EXPORT void sp_tip_body_meta(struct sp_tip_builder *b, const char *key, const char *value);
/* unit may be NULL or "" for none. */
SP_EXPORT void sp_tip_add_number(struct sp_tip_builder *b, const char *name, double v,
                                 const char *unit);
SP_EXPORT void sp_tip_add_string(struct sp_tip_builder *b, const char *name, const char *v,
                                 const char *unit);
SP_EXPORT void sp_tip_add_bool(struct sp_tip_builder *b, const char *name, int v);
SP_EXPORT void sp_tip_add_location(struct sp_tip_builder *b, const char *name, double lat,
                                   double lng, int has_alt, double alt);
/* Adds a unit to the last variable when the add call had none. */
SP_EXPORT void sp_tip_var_unit(struct sp_tip_builder *b, const char *unit);
/* The "@=lat,lng[,alt]" suffix of the last variable (not of an @= location one). */
SP_EXPORT void sp_tip_var_location(struct sp_tip_builder *b, double lat, double lng, int has_alt,
                                   double alt);
SP_EXPORT void sp_tip_var_time(struct sp_tip_builder *b, int64_t time_ms);
SP_EXPORT void sp_tip_var_group(struct sp_tip_builder *b, const char *group);
SP_EXPORT void sp_tip_var_meta(struct sp_tip_builder *b, const char *key, const char *value);
/*
 * Removes the last variable with its suffixes and clears a sticky error, so
 * a caller filling a limited buffer can keep what fit. Does nothing when
 * there is no variable. Note that after a failed add the last variable is
 * the previous, complete one: compare nvars before and after the add.
 */
SP_EXPORT void sp_tip_build_drop_last(struct sp_tip_builder *b);
/* Closes the block, NUL-terminates; returns 0 with *len set, or the first error. */
SP_EXPORT int sp_tip_build_end(struct sp_tip_builder *b, size_t *len) SP_WUR;

#ifdef __cplusplus
}
#endif
#endif /* SEALPIPE_H */
