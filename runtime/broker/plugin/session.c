/*
 * session.c - the connections that logged in through the broker plugin
 * (struct session in plugin.h): who each is, the token it logged in with,
 * and the client id it holds. auth.c adds one at every login, forgets it at
 * DISCONNECT, and sweeps on the tick: a session whose token was revoked, has
 * expired or whose device was removed is kicked. A table keyed by the
 * connection's address (open addressing, linear probing, backward-shift
 * deletion: no tombstones), because the ACL check asks on every publish.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

static size_t slot_of(const struct sessions *s, const struct mosquitto *client)
{
    return ptr_hash(client, s->cap);
}

struct session *session_find(const struct sessions *s, const struct mosquitto *client)
{
    if (!s->cap)
        return NULL;
    for (size_t i = slot_of(s, client); s->slot[i].client; i = (i + 1) & (s->cap - 1))
        if (s->slot[i].client == client)
            return &s->slot[i];
    return NULL;
}

/* Frees slot x and closes the gap (backward shift: no tombstones). */
static void session_drop(struct sessions *s, struct session *x)
{
    size_t mask = s->cap - 1, i = (size_t)(x - s->slot), j = i;

    free(x->client_id);
    free(x->who);
    for (;;) {
        j = (j + 1) & mask;
        if (!s->slot[j].client)
            break;
        size_t k = slot_of(s, s->slot[j].client);
        /* Move j back into i unless its home k lies cyclically in (i, j]. */
        if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
            s->slot[i] = s->slot[j];
            i = j;
        }
    }
    memset(&s->slot[i], 0, sizeof s->slot[i]);
    s->n--;
}

void session_forget(struct sessions *s, const struct mosquitto *client)
{
    struct session *x = session_find(s, client);
    if (x)
        session_drop(s, x);
}

static int sessions_grow(struct sessions *s)
{
    size_t cap = s->cap ? s->cap * 2 : 256;
    struct session *old = s->slot, *tab = calloc(cap, sizeof(*tab));
    size_t oldcap = s->cap;

    if (!tab)
        return -1;
    s->slot = tab;
    s->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].client) {
            size_t j = slot_of(s, old[i].client);
            while (tab[j].client)
                j = (j + 1) & (cap - 1);
            tab[j] = old[i];
        }
    free(old);
    return 0;
}

/*
 * A client id held by a live session of another identity is refused (a
 * device must not take over the daemon's or another device's session, and
 * with it their queued messages); the same identity takes its own session
 * over, and the old connection's session goes at once (so its will, sent
 * during the takeover, is refused). A linear scan: logins are rare next to
 * publishes.
 */
int session_add(struct sessions *s, const struct mosquitto *client, const char *client_id,
                const char *who, const uint8_t *token_hash)
{
    struct session *x;

    if (!client_id)
        return MOSQ_ERR_AUTH;
    for (size_t i = 0; i < s->cap; i++) {
        x = &s->slot[i];
        if (x->client && strcmp(x->client_id, client_id) == 0) {
            if (strcmp(x->who, who) != 0)
                return MOSQ_ERR_AUTH;
            session_drop(s, x);
            break;
        }
    }
    session_forget(s, client); /* a reused address: that connection is gone */
    if ((s->n + 1) * 2 > s->cap && sessions_grow(s) != 0)
        return MOSQ_ERR_NOMEM;
    size_t i = slot_of(s, client);
    while (s->slot[i].client)
        i = (i + 1) & (s->cap - 1);
    x = &s->slot[i];
    x->client_id = strdup(client_id);
    x->who = strdup(who);
    if (!x->client_id || !x->who) {
        free(x->client_id);
        free(x->who);
        memset(x, 0, sizeof *x);
        return MOSQ_ERR_NOMEM;
    }
    x->client = client;
    x->has_token = token_hash != NULL;
    if (token_hash)
        memcpy(x->token_hash, token_hash, sizeof x->token_hash);
    s->n++;
    return MOSQ_ERR_SUCCESS;
}

void sessions_sweep(struct sessions *s, const struct view *v, int64_t now)
{
    for (size_t i = 0; i < s->cap; i++) {
        struct session *x = &s->slot[i];
        const struct token *t;
        if (!x->client || !x->has_token ||
            view_token_live(t = view_find_token(v, x->token_hash), now))
            continue;
        char f_id[LOG_FIELD_MAX];
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "sealpipe: disconnecting client %s: its token was %s",
                             LOG_FIELD(f_id, x->client_id),
                             !t           ? "removed (or its device)"
                             : t->revoked ? "revoked"
                                          : "expired");
        char *id = strdup(x->client_id);
        session_drop(s, x);
        if (id)
            mosquitto_kick_client_by_clientid(id, false);
        free(id);
        i--; /* the shift may have moved an unvisited entry here */
    }
}

void sessions_free(struct sessions *s)
{
    for (size_t i = 0; i < s->cap; i++)
        if (s->slot[i].client) {
            free(s->slot[i].client_id);
            free(s->slot[i].who);
        }
    free(s->slot);
    memset(s, 0, sizeof *s);
}
