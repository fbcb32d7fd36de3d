/*
 * origin.c - which profile a stored message came from, so that profiles are
 * namespaces (see acl.c: a device reads only what its own profile
 * published, unless plugin_opt_cross_profile is on).
 *
 * The READ check of mosquitto 2.0.11 gets the topic and the stored message's
 * payload pointer, but neither its properties nor its publisher; the MESSAGE
 * event gets the same payload pointer first, and may replace it. So auth.c's
 * MESSAGE callback notes "this payload came from that profile" here and the
 * READ check looks it up. A live message is routed (and READ-checked) right
 * after its MESSAGE event, QoS 2 at PUBREL, a queued one again when its
 * device reconnects.
 *
 * A payload address is unique while its message lives; once the broker
 * frees it the address may come back for a new message, which then passes
 * the MESSAGE event and overwrites the note. Nothing else reaches a device:
 * $ topics are checked by name, wills of devices are dropped (struct
 * session) and the daemon sets none. An empty message gets a one-byte
 * payload so that it has an address too.
 *
 * Memory is bounded by two generations of ORIGIN_WINDOW notes, each a keytab
 * of at most 2 * ORIGIN_WINDOW slots of 32 bytes (a 24-byte struct origin
 * and its hash), about 32 MiB in all: when the young one is full the old one
 * is dropped. A message still queued for an offline device after
 * 2 * ORIGIN_WINDOW newer messages has no known origin when its device
 * reconnects and is not delivered (fail closed). Retained messages are
 * noted by topic as well, without a window, and kept across a clean restart
 * (origins_save); the queued messages a restarted broker reloads have no
 * known origin.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin.h"

#ifndef ORIGIN_WINDOW
#define ORIGIN_WINDOW 262144 /* messages per origin generation */
#endif
/* Slots of a generation: 1024 at first, growing to 2 * ORIGIN_WINDOW. */
#define ORIGIN_MAX_SLOTS (2 * ORIGIN_WINDOW)
#define ORIGIN_MIN_SLOTS (ORIGIN_MAX_SLOTS < 1024 ? ORIGIN_MAX_SLOTS : 1024)
_Static_assert((ORIGIN_WINDOW & (ORIGIN_WINDOW - 1)) == 0, "ORIGIN_WINDOW: a power of two");
#define DIGEST_LEN 16

/* The origin of a retained message, by topic (they outlive any window). */
struct kept {
    struct kept *next;
    const void *payload; /* NULL: read back from plugin_opt_retained_origins */
    uint32_t len;
    uint8_t digest[DIGEST_LEN]; /* of the payload: identifies a message read back */
    int known;
    uint8_t profile[REGISTRY_HASH_LEN];
    char topic[]; /* NUL-terminated */
};

/* ------------------------------------------------------------------------ */
/* By payload address: two generations of keytab                            */
/* ------------------------------------------------------------------------ */

/* The key is struct origin's first field, the payload address. */
static const struct keytab_type origin_type = {.entry_size = sizeof(struct origin),
                                               .key_size = sizeof(const void *)};

/* On failure origins_free() undoes what was done. */
int origins_init(struct origins *os)
{
    memset(os, 0, sizeof *os);
    if (keytab_init(&os->young, &origin_type, ORIGIN_MIN_SLOTS, ORIGIN_MAX_SLOTS) ||
        keytab_init(&os->old, &origin_type, ORIGIN_MIN_SLOTS, ORIGIN_MAX_SLOTS))
        return MOSQ_ERR_NOMEM;
    return MOSQ_ERR_SUCCESS;
}

/* The young generation holds ORIGIN_WINDOW notes: it becomes the old one
 * and the old one's notes go. */
static void origins_age(struct origins *os)
{
    struct keytab t = os->old;

    os->old = os->young;
    os->young = t;
    keytab_clear(&os->young);
}

void origins_note(struct origins *os, const void *payload, const uint8_t *profile, int journaled)
{
    uint64_t h = ptr_hash(payload);
    void *slot;
    int rc = keytab_put(&os->young, h, &payload, &slot);

    if (rc == KEYTAB_FULL) {
        origins_age(os);
        rc = keytab_put(&os->young, h, &payload, &slot);
    }
    if (rc < 0) {
        /* No room: at least no stale note may speak for this payload. */
        struct origin *stale = keytab_find(&os->old, h, &payload);
        if (stale) {
            stale->known = 0;
            stale->journaled = (uint8_t)journaled;
        }
        return;
    }
    struct origin *o = slot;
    o->known = profile != NULL;
    o->journaled = (uint8_t)journaled;
    memset(o->profile, 0, sizeof o->profile);
    if (profile)
        memcpy(o->profile, profile, sizeof o->profile);
}

/* ------------------------------------------------------------------------ */
/* Retained messages, by topic: chained                                     */
/* ------------------------------------------------------------------------ */

static size_t topic_hash(const char *t, size_t cap)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *t; t++)
        h = (h ^ (unsigned char)*t) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32)) & (cap - 1);
}

static struct kept **kept_link(const struct origins *os, const char *topic)
{
    if (!os->capkept)
        return NULL;
    struct kept **k = &os->kept[topic_hash(topic, os->capkept)];
    while (*k && strcmp((*k)->topic, topic) != 0)
        k = &(*k)->next;
    return k;
}

/* Doubles the chains (256 at first). 0 or -1. */
static int kept_grow(struct origins *os)
{
    size_t cap = os->capkept ? os->capkept * 2 : 256;
    struct kept **tab = calloc(cap, sizeof(*tab)), *x;

    if (!tab)
        return -1;
    for (size_t i = 0; i < os->capkept; i++)
        while ((x = os->kept[i]) != NULL) {
            os->kept[i] = x->next;
            size_t j = topic_hash(x->topic, cap);
            x->next = tab[j];
            tab[j] = x;
        }
    free(os->kept);
    os->kept = tab;
    os->capkept = cap;
    return 0;
}

/* The entry for topic, made if there is none; NULL if out of memory. */
static struct kept *kept_entry(struct origins *os, const char *topic)
{
    struct kept **k = kept_link(os, topic), *x;

    if (k && *k)
        return *k;
    if (os->nkept >= os->capkept && kept_grow(os) != 0)
        return NULL;
    size_t len = strlen(topic);
    if (!(x = calloc(1, sizeof(*x) + len + 1)))
        return NULL;
    memcpy(x->topic, topic, len + 1);
    k = &os->kept[topic_hash(topic, os->capkept)];
    x->next = *k;
    *k = x;
    os->nkept++;
    return x;
}

void origins_unretain(struct origins *os, const char *topic)
{
    struct kept **k = kept_link(os, topic), *x;

    if (k && (x = *k) != NULL) {
        *k = x->next;
        free(x);
        os->nkept--;
    }
}

static void payload_digest(const void *payload, uint32_t len, uint8_t digest[DIGEST_LEN])
{
    crypto_generichash(digest, DIGEST_LEN, payload, len, NULL, 0);
}

void origins_retain(struct origins *os, const char *topic, const void *payload, uint32_t len,
                    const uint8_t *profile)
{
    struct kept *x = kept_entry(os, topic);

    if (!x)
        return; /* the origin note by payload still holds, for a while */
    x->payload = payload;
    x->len = len;
    payload_digest(payload, len, x->digest);
    x->known = profile != NULL;
    memset(x->profile, 0, sizeof x->profile);
    if (profile)
        memcpy(x->profile, profile, sizeof x->profile);
}

/* Does entry x describe the stored message (payload, len)? An entry read
 * back at start is bound to the first message with its length and digest. */
static int kept_matches(struct kept *x, const void *payload, uint32_t len)
{
    uint8_t d[DIGEST_LEN];

    if (x->payload)
        return x->payload == payload;
    if (x->len != len)
        return 0;
    payload_digest(payload, len, d);
    if (sodium_memcmp(d, x->digest, sizeof d) != 0)
        return 0;
    x->payload = payload;
    return 1;
}

int origins_of(struct origins *os, const char *topic, const void *payload, uint32_t len,
               uint8_t profile[REGISTRY_HASH_LEN])
{
    uint64_t h = ptr_hash(payload);
    const struct origin *o = keytab_find(&os->young, h, &payload);
    struct kept **k;

    if (!o)
        o = keytab_find(&os->old, h, &payload);
    if (o) {
        memcpy(profile, o->profile, REGISTRY_HASH_LEN);
        return o->known;
    }
    if ((k = kept_link(os, topic)) != NULL && *k && kept_matches(*k, payload, len)) {
        memcpy(profile, (*k)->profile, REGISTRY_HASH_LEN);
        return (*k)->known;
    }
    return 0;
}

int origins_journaled(struct origins *os, const void *payload)
{
    uint64_t h = ptr_hash(payload);
    const struct origin *o = keytab_find(&os->young, h, &payload);

    if (!o)
        o = keytab_find(&os->old, h, &payload);
    return o && o->journaled;
}

int origins_retained_by(struct origins *os, const char *topic, uint8_t profile[REGISTRY_HASH_LEN])
{
    struct kept **k = kept_link(os, topic);

    if (!k || !*k || !(*k)->known)
        return 0;
    memcpy(profile, (*k)->profile, REGISTRY_HASH_LEN);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Across a clean restart                                                   */
/* ------------------------------------------------------------------------ */

/*
 * The retained messages' origins outlive the broker: at a clean stop they
 * are written to plugin_opt_retained_origins (one line per message of a
 * known profile: profile hash, length, digest, topic; topics hold no control
 * characters), and read back, then removed, at the next start. A message is
 * matched by topic, length and digest, so a broker that reloads an older
 * snapshot (or none) gets no wrong origin; after a crash there is no file and
 * reloaded retained messages reach no device.
 */
void origins_save(const struct origins *os, const char *path)
{
    char tmp[4096], hex[2 * DIGEST_LEN + 1];
    FILE *f;
    int fd;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return;
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
        !(f = fdopen(fd, "w"))) {
        if (fd >= 0)
            close(fd);
        return;
    }
    for (size_t i = 0; i < os->capkept; i++)
        for (const struct kept *x = os->kept[i]; x; x = x->next) {
            if (!x->known)
                continue;
            sodium_bin2hex(hex, sizeof hex, x->profile, REGISTRY_HASH_LEN);
            fprintf(f, "%s %" PRIu32 " ", hex, x->len);
            sodium_bin2hex(hex, sizeof hex, x->digest, DIGEST_LEN);
            fprintf(f, "%s %s\n", hex, x->topic);
        }
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0)
        unlink(tmp);
}

static int hex_exact(const char *hex, size_t n, uint8_t *out)
{
    size_t got = 0;
    return strlen(hex) == 2 * n && sodium_hex2bin(out, n, hex, 2 * n, NULL, &got, NULL) == 0 &&
           got == n;
}

/* One line of origins_save's file into an entry: 1, or 0 if it is not one. */
static int restore_line(struct origins *os, char *line)
{
    char *sp1, *sp2, *sp3, *end;
    uint8_t profile[REGISTRY_HASH_LEN], digest[DIGEST_LEN];
    struct kept *x;

    if (!(sp1 = strchr(line, ' ')) || !(sp2 = strchr(sp1 + 1, ' ')) ||
        !(sp3 = strchr(sp2 + 1, ' ')))
        return 0;
    *sp1 = *sp2 = *sp3 = '\0';
    unsigned long plen = strtoul(sp1 + 1, &end, 10);
    if (*end || plen > UINT32_MAX || !hex_exact(line, REGISTRY_HASH_LEN, profile) ||
        !hex_exact(sp2 + 1, DIGEST_LEN, digest) || !sp3[1] || !(x = kept_entry(os, sp3 + 1)))
        return 0;
    x->payload = NULL;
    x->len = (uint32_t)plen;
    memcpy(x->digest, digest, sizeof digest);
    memcpy(x->profile, profile, sizeof profile);
    x->known = 1;
    return 1;
}

void origins_restore(struct origins *os, const char *path)
{
    char *line = NULL, f_path[LOG_FIELD_MAX];
    size_t cap = 0, n = 0;
    ssize_t len;
    FILE *f = fopen(path, "r");

    if (!f)
        return;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        n += (size_t)restore_line(os, line);
    }
    free(line);
    fclose(f);
    unlink(path); /* never again: a later crash must not reuse it */
    mosquitto_log_printf(MOSQ_LOG_INFO, "sealpipe: %zu retained message origins read from %s", n,
                         LOG_FIELD(f_path, path));
}

void origins_free(struct origins *os)
{
    keytab_cleanup(&os->young);
    keytab_cleanup(&os->old);
    for (size_t i = 0; i < os->capkept; i++)
        for (struct kept *x = os->kept[i], *next; x; x = next) {
            next = x->next;
            free(x);
        }
    free(os->kept);
    memset(os, 0, sizeof *os);
}
