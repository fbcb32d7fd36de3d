/*
 * checkpointer.c - see checkpointer.h.
 */
#include "checkpointer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "base/errors.h"
#include "base/log.h"

struct checkpointer {
    sqlite3 *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int kicked; /* a checkpoint is wanted */
    int stop;
};

static void *run(void *arg)
{
    struct checkpointer *c = arg;
    int log_frames, done_frames;

    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->kicked && !c->stop)
            pthread_cond_wait(&c->cond, &c->mu);
        if (c->stop)
            break;
        c->kicked = 0;
        pthread_mutex_unlock(&c->mu);
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                           &done_frames);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            LOG_WARN("checkpoint of sealpipe.db failed: %s", sqlite3_errmsg(c->db));
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int checkpointer_start(const char *path, int sync_full, struct checkpointer **out, char *err,
                       size_t errlen)
{
    struct checkpointer *c = calloc(1, sizeof *c);

    *out = NULL;
    if (!c) {
        snprintf(err, errlen, "checkpointer: out of memory");
        return SP_ERR_NOMEM;
    }
    /* Its own connection, used by its thread alone. */
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(c->db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "checkpointer: %s: %s", path,
                 c->db ? sqlite3_errmsg(c->db) : "cannot allocate a connection");
        sqlite3_close(c->db);
        free(c);
        return SP_ERR_DB;
    }
    sqlite3_busy_timeout(c->db, 100);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (pthread_create(&c->thread, NULL, run, c) != 0) {
        snprintf(err, errlen, "checkpointer: cannot start its thread");
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->mu);
        sqlite3_close(c->db);
        free(c);
        return SP_ERR_IO;
    }
    *out = c;
    return SP_OK;
}

void checkpointer_kick(struct checkpointer *c)
{
    pthread_mutex_lock(&c->mu);
    c->kicked = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

void checkpointer_stop(struct checkpointer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    sqlite3_close(c->db);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
