/*
 * session.c - the connections that logged in through the broker plugin
 * (struct session in plugin.h): who each is, the token it logged in with,
 * and the client id it holds. auth.c adds one at every login, forgets it at
 * DISCONNECT, and sweeps on the tick: a session whose token was revoked, has
 * expired or whose device was removed is kicked. A keytab keyed by the
 * connection's address, because the ACL check asks on every publish.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* No bound but memory, as many sessions as the broker has connections: the
 * largest power of two a size_t holds (growing fails long before). */
#define SESSION_MAX_SLOTS (SIZE_MAX / 2 + 1)

/* The key is struct session's first field, the connection's address. */
static const struct keytab_type session_type = {.entry_size = sizeof(struct session),
                                                .key_size = sizeof(const struct mosquitto *)};

int sessions_init(struct sessions *s)
{
    if (keytab_init(&s->by_client, &session_type, 256, SESSION_MAX_SLOTS))
        return MOSQ_ERR_NOMEM;
    return MOSQ_ERR_SUCCESS;
}

struct session *session_find(const struct sessions *s, const struct mosquitto *client)
{
    return keytab_find(&s->by_client, ptr_hash(client), &client);
}

/* Frees session x and removes it; other session pointers are invalidated. */
static void session_drop(struct sessions *s, struct session *x)
{
    free(x->client_id);
    free(x->who);
    keytab_delete(&s->by_client, x);
}

void session_forget(struct sessions *s, const struct mosquitto *client)
{
    struct session *x = session_find(s, client);
    if (x)
        session_drop(s, x);
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
    void *slot;

    if (!client_id)
        return MOSQ_ERR_AUTH;
    for (size_t i = 0; (x = keytab_next(&s->by_client, &i)) != NULL;) {
        if (strcmp(x->client_id, client_id) == 0) {
            if (strcmp(x->who, who) != 0)
                return MOSQ_ERR_AUTH;
            session_drop(s, x);
            break;
        }
    }
    session_forget(s, client); /* a reused address: that connection is gone */
    /* KEYTAB_FOUND cannot be (forgotten just above); FULL or NOMEM: no room. */
    if (keytab_put(&s->by_client, ptr_hash(client), &client, &slot) != KEYTAB_ADDED)
        return MOSQ_ERR_NOMEM;
    x = slot;
    x->client_id = strdup(client_id);
    x->who = strdup(who);
    if (!x->client_id || !x->who) {
        session_drop(s, x);
        return MOSQ_ERR_NOMEM;
    }
    x->has_token = token_hash != NULL;
    if (token_hash)
        memcpy(x->token_hash, token_hash, sizeof x->token_hash);
    return MOSQ_ERR_SUCCESS;
}

void sessions_sweep(struct sessions *s, const struct view *v, int64_t now, struct events *ev)
{
    struct session *x;

    for (size_t i = 0; (x = keytab_next(&s->by_client, &i)) != NULL;) {
        const struct token *t;
        if (!x->has_token || view_token_live(t = view_find_token(v, x->token_hash), now))
            continue;
        char f_id[LOG_FIELD_MAX];
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "sealpipe: disconnecting client %s: its token was %s",
                             LOG_FIELD(f_id, x->client_id),
                             !t           ? "removed (or its device)"
                             : t->revoked ? "revoked"
                                          : "expired");
        events_kicking(ev, x->client,
                       !t           ? "token removed (or its device)"
                       : t->revoked ? "token revoked"
                                    : "token expired");
        char *id = strdup(x->client_id);
        session_drop(s, x);
        if (id)
            mosquitto_kick_client_by_clientid(id, false);
        free(id);
        i--; /* the deletion may have moved an unvisited entry into this slot */
    }
}

void sessions_free(struct sessions *s)
{
    struct session *x;

    for (size_t i = 0; (x = keytab_next(&s->by_client, &i)) != NULL;) {
        free(x->client_id);
        free(x->who);
    }
    keytab_cleanup(&s->by_client);
}
