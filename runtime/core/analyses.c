/*
 * analyses.c - the analyses registry (see analyses.h): the folder watcher
 * with hot reload, NAME.env sidecars, the route from a topic to the analysis
 * that declares it, the broker subscriptions, and the error budgets.
 *
 * A version of NAME.lua is its (mtime, size, inode) with those of NAME.env:
 * a change of either is a new version, loaded once whether it works or not.
 */
#include "analyses.h"
#include "base/errors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/keytab.h"
#include "base/log.h"
#include "base/route.h"
#include "sealpipe.h"
#include "base/sp_limits.h"
#include "tipserver.h"
#include "transport/mqlink.h" /* subscriptions: the one MQTT-specific job here */

/* One analyses/NAME.lua as last seen, to notice changes. */
struct watched {
    char *name;
    struct timespec mtime, env_mtime; /* of NAME.lua, and of NAME.env (0: none) */
    off_t size, env_size;
    ino_t ino, env_ino;
    int seen;   /* in the current scan */
    int failed; /* this version did not load */
};

/* See "error budgets" below. */
#define BUDGET_SLOTS  4096 /* a power of two; at most half used */
#define BUDGET_WINDOW 60000
struct budget {
    char *key; /* analysis "\0" serial, malloc'd */
    size_t keylen;
    int64_t start; /* window start, Unix ms */
    int failures;
};

/* What budget_of looks a budget up by: the bytes of struct budget's key. */
struct budget_key {
    const char *p;
    size_t n;
};

static int budget_key_equal(const void *entry, const void *key)
{
    const struct budget *b = entry;
    const struct budget_key *k = key;

    return b->keylen == k->n && memcmp(b->key, k->p, k->n) == 0;
}

static const struct keytab_type budget_type = {.entry_size = sizeof(struct budget),
                                               .key_equal = budget_key_equal};

struct analyses {
    struct analyses_opts o;
    struct pool *pool;
    struct watched *watch; /* the folder as last scanned */
    size_t nwatch;
    int scanned, dir_warned;
    char **subs; /* filters subscribed */
    size_t nsubs;
    struct keytab budgets; /* struct budget, BUDGET_SLOTS slots */
};

static void budgets_clear(struct analyses *a);
static void budgets_forget(struct analyses *a, const char *analysis);

static void free_names(char **f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(f[i]);
    free(f);
}

int analyses_new(const struct analyses_opts *o, struct pool *pl, struct analyses **out)
{
    struct analyses *a = calloc(1, sizeof(*a));

    if (!a || keytab_init(&a->budgets, &budget_type, BUDGET_SLOTS, BUDGET_SLOTS)) {
        free(a);
        return SP_ERR_NOMEM;
    }
    a->o = *o;
    a->pool = pl;
    *out = a;
    return SP_OK;
}

void analyses_free(struct analyses *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nwatch; i++)
        free(a->watch[i].name);
    free(a->watch);
    free_names(a->subs, a->nsubs);
    budgets_clear(a);
    keytab_cleanup(&a->budgets);
    free(a);
}

/* ---- the analyses folder ------------------------------------------------ */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

static struct watched *watch_find(struct analyses *a, const char *name)
{
    for (size_t i = 0; i < a->nwatch; i++)
        if (strcmp(a->watch[i].name, name) == 0)
            return &a->watch[i];
    return NULL;
}

/*
 * Opens a file of the analyses folder for reading, refusing a symbolic link
 * (O_NOFOLLOW: ELOOP), a file with other hard links (EMLINK) and anything but
 * a regular file (EINVAL): a link could hand another analysis's secrets, or a
 * file only root may read, to the sandbox or to the log.
 */
static FILE *open_plain(const char *path, const char *mode)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0)
        return NULL;
    int e = fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ? EINVAL : st.st_nlink > 1 ? EMLINK : 0;
    if (e) {
        close(fd);
        errno = e;
        return NULL;
    }
    FILE *f = fdopen(fd, mode);
    if (!f)
        close(fd);
    return f;
}

/* Why open_plain failed, in words. */
static const char *plain_error(int e)
{
    if (e == ELOOP)
        return "is a symbolic link; links in the analyses folder are refused";
    if (e == EINVAL)
        return "is not a regular file";
    if (e == EMLINK)
        return "has other hard links; links in the analyses folder are refused";
    return strerror(e);
}

static int env_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats err and returns SP_ERR_INVAL. */
static int env_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return SP_ERR_INVAL;
}

/* 1 when line[0, klen) is a KEY of the sidecar: [A-Za-z_][A-Za-z0-9_]*. */
static int env_key(const char *line, size_t klen)
{
    int ok = klen > 0 && (line[0] == '_' || ((line[0] | 32) >= 'a' && (line[0] | 32) <= 'z'));
    for (size_t i = 0; ok && i < klen; i++)
        ok = line[i] == '_' || (line[i] >= '0' && line[i] <= '9') ||
             ((line[i] | 32) >= 'a' && (line[i] | 32) <= 'z');
    return ok;
}

/*
 * The analysis's sidecar NAME.env (lines KEY=VALUE; blank lines and lines
 * starting with # are skipped) as a JSON object of strings in b, or "" when
 * there is no such file. Returns 0 or an error with err set.
 */
static int read_env(const char *path, struct buf *b, char *err, size_t errlen)
{
    char line[4096];
    int first = 1, n = 0;
    FILE *f = open_plain(path, "r");

    buf_reset(b);
    if (!f)
        return errno == ENOENT ? SP_OK : env_error(err, errlen, "%s: %s", path, plain_error(errno));
    int rc = buf_putc(b, '{') ? SP_ERR_NOMEM : SP_OK;
    while (!rc && fgets(line, sizeof line, f)) {
        n++;
        size_t len = strcspn(line, "\r\n");
        if (len == sizeof line - 1) {
            rc = env_error(err, errlen, "%s:%d: line too long", path, n);
            break;
        }
        line[len] = '\0';
        if (!line[0] || line[0] == '#')
            continue;
        char *eq = strchr(line, '=');
        size_t klen = eq ? (size_t)(eq - line) : 0;
        if (!env_key(line, klen)) {
            rc = env_error(err, errlen, "%s:%d: expected KEY=VALUE with KEY of A-Z a-z 0-9 _", path,
                           n);
            break;
        }
        if ((!first && buf_putc(b, ',')) || json_write_string(b, line, klen) || buf_putc(b, ':') ||
            json_write_string(b, eq + 1, strlen(eq + 1)))
            rc = SP_ERR_NOMEM;
        first = 0;
    }
    fclose(f);
    if (!rc && buf_putc(b, '}'))
        rc = SP_ERR_NOMEM;
    if (rc == SP_ERR_NOMEM)
        env_error(err, errlen, "%s: too large", path);
    return rc;
}

/* Loads (or reloads) one analysis; the old version stays if the new one fails. */
static int load_file(struct analyses *a, const char *path, const char *name, int reload)
{
    char err[1024], envpath[1024];
    struct buf env;

    buf_init(&env, 64 * 1024);
    snprintf(envpath, sizeof envpath, "%s/%s.env", a->o.dir, name);
    int erc = read_env(envpath, &env, err, sizeof err);
    if (erc) {
        LOG_ERROR("analysis not loaded name=%s error=\"%s\"", name, err);
        buf_cleanup(&env);
        return erc;
    }
    FILE *f = open_plain(path, "rb");
    if (!f) {
        LOG_ERROR("analysis not loaded file=%s error=\"%s\"", path, plain_error(errno));
        buf_cleanup(&env);
        return SP_ERR_IO;
    }
    size_t max = a->o.script_max;
    char *src = malloc(max + 1);
    size_t len = src ? fread(src, 1, max + 1, f) : 0;
    fclose(f);
    err[0] = '\0';
    int rc = src ? pool_load(a->pool, name, src, len, env.len ? env.p : NULL, err, sizeof(err))
                 : SP_ERR_NOMEM;
    free(src);
    buf_cleanup(&env);
    if (rc) {
        LOG_ERROR("analysis not loaded name=%s error=\"%s\"%s", name,
                  rc == SP_ERR_TOOLARGE && !err[0] ? "script larger than lua_script_kb" : err,
                  reload && pool_find(a->pool, name) >= 0 ? "; the previous version keeps running"
                                                          : "");
        return rc;
    }
    LOG_INFO("analysis %s name=%s topics=%zu", reload ? "reloaded" : "loaded", name,
             pool_topic_count(a->pool, (size_t)pool_find(a->pool, name)));
    /* A new version is not to blame for the old one's failures. */
    budgets_forget(a, name);
    return SP_OK;
}

static int name_cmp(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/*
 * The analysis names in the folder (NAME.lua, NAME of at most 64 bytes, no
 * leading dot), sorted so that loading order, and so which of two
 * overlapping analyses wins, does not depend on the file system. Returns
 * the count (*out to free with free_names) or -1 when the folder is
 * unreadable.
 */
static long list_analyses(struct analyses *a, char ***out)
{
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    DIR *d = opendir(a->o.dir);

    if (!d)
        return -1;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".lua") || len - 4 > 64)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nv = realloc(v, nc * sizeof(*nv));
            if (!nv)
                break;
            v = nv;
            cap = nc;
        }
        if (!(v[n] = strndup(e->d_name, len - 4)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof(*v), name_cmp);
    *out = v;
    return (long)n;
}

/* 1 when w still describes the files st (NAME.lua) and es (NAME.env). */
static int watch_same(const struct watched *w, const struct stat *st, const struct stat *es)
{
    return w->mtime.tv_sec == st->st_mtim.tv_sec && w->mtime.tv_nsec == st->st_mtim.tv_nsec &&
           w->size == st->st_size && w->ino == st->st_ino &&
           w->env_mtime.tv_sec == es->st_mtim.tv_sec &&
           w->env_mtime.tv_nsec == es->st_mtim.tv_nsec && w->env_size == es->st_size &&
           w->env_ino == es->st_ino;
}

static struct watched *watch_add(struct analyses *a, const char *name)
{
    struct watched *v = realloc(a->watch, (a->nwatch + 1) * sizeof(*v));
    char *copy = strdup(name);

    if (v)
        a->watch = v;
    if (!v || !copy) {
        free(copy);
        return NULL;
    }
    struct watched *w = &a->watch[a->nwatch++];
    *w = (struct watched){.name = copy, .seen = 1};
    return w;
}

/* Loads analysis name if its files changed since the last scan; 1 when it loaded. */
static int scan_one(struct analyses *a, const char *name)
{
    char path[1024], envpath[1024];
    struct stat st, es;

    snprintf(path, sizeof(path), "%s/%s.lua", a->o.dir, name);
    snprintf(envpath, sizeof envpath, "%s/%s.env", a->o.dir, name);
    /* lstat: a link, a directory or a FIFO is a version of its own,
     * refused (with a log line) by load_file. */
    if (lstat(path, &st) < 0)
        return 0;
    /* The sidecar NAME.env is part of the version. */
    if (lstat(envpath, &es) < 0)
        memset(&es, 0, sizeof es);
    struct watched *w = watch_find(a, name);
    if (w) {
        w->seen = 1;
        if (watch_same(w, &st, &es))
            return 0;
    } else if (!(w = watch_add(a, name))) {
        return 0;
    }
    /* Remember this version even if it fails: retry when it changes. */
    w->mtime = st.st_mtim;
    w->size = st.st_size;
    w->ino = st.st_ino;
    w->env_mtime = es.st_mtim;
    w->env_size = es.st_size;
    w->env_ino = es.st_ino;
    w->failed = load_file(a, path, name, a->scanned) != SP_OK;
    return !w->failed;
}

/* Unloads the analyses whose file is gone; 1 when one was loaded. */
static int scan_gone(struct analyses *a)
{
    int changed = 0;

    for (size_t i = 0; i < a->nwatch;) {
        if (a->watch[i].seen) {
            i++;
            continue;
        }
        if (pool_unload(a->pool, a->watch[i].name) == SP_OK) {
            LOG_INFO("analysis removed name=%s", a->watch[i].name);
            changed = 1;
        }
        free(a->watch[i].name);
        a->watch[i] = a->watch[--a->nwatch];
    }
    return changed;
}

int analyses_scan(struct analyses *a)
{
    char path[1024];
    char **names = NULL;
    int changed = 0;
    long n = list_analyses(a, &names);

    if (n < 0) {
        if (!a->dir_warned)
            LOG_WARN("analyses folder unreadable dir=%s error=\"%s\"", a->o.dir, strerror(errno));
        a->dir_warned = 1;
        return 0;
    }
    a->dir_warned = 0;
    for (size_t i = 0; i < a->nwatch; i++)
        a->watch[i].seen = 0;
    for (size_t i = 0; i < (size_t)n; i++)
        changed |= scan_one(a, names[i]);
    free_names(names, (size_t)n);
    changed |= scan_gone(a);
    /* An analysis refused because its filters overlapped another's may load
     * now that the other changed or left. */
    for (size_t i = 0; changed && a->scanned && i < a->nwatch; i++) {
        struct watched *w = &a->watch[i];
        if (!w->failed || pool_find(a->pool, w->name) >= 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s.lua", a->o.dir, w->name);
        w->failed = load_file(a, path, w->name, 0) != SP_OK;
    }
    a->scanned = 1;
    return changed;
}

int analyses_match(struct analyses *a, const char *topic, char *serial, size_t cap)
{
    for (size_t i = 0; i < pool_count(a->pool); i++)
        for (size_t j = 0; j < pool_topic_count(a->pool, i); j++)
            if (route_match(pool_topic(a->pool, i, j), topic, serial, cap))
                return (int)i;
    return -1;
}

/* ---- subscriptions ------------------------------------------------------ */

static int has_filter(char **f, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(f[i], s) == 0)
            return 1;
    return 0;
}

/* The filters to subscribe: the TagoTiP topics and every declared one. */
static size_t wanted_filters(struct analyses *a, char ***out)
{
    static const char *const tip[TIPSERVER_NFILTERS] = TIPSERVER_FILTERS;
    char buf[SP_LIMIT_TOPIC];
    size_t max = TIPSERVER_NFILTERS, n = 0;

    for (size_t i = 0; i < pool_count(a->pool); i++)
        max += pool_topic_count(a->pool, i);
    char **f = calloc(max, sizeof(*f));
    if (!f)
        return 0;
    for (; n < TIPSERVER_NFILTERS; n++)
        f[n] = strdup(tip[n]);
    for (size_t i = 0; i < pool_count(a->pool); i++)
        for (size_t j = 0; j < pool_topic_count(a->pool, i); j++) {
            if (route_mqtt_filter(pool_topic(a->pool, i, j), buf, sizeof(buf)))
                continue;
            int dup = 0;
            for (size_t k = 0; k < n && !dup; k++)
                dup = f[k] && strcmp(f[k], buf) == 0;
            if (!dup)
                f[n++] = strdup(buf);
        }
    for (size_t k = 0; k < n; k++)
        if (!f[k]) {
            free_names(f, n);
            return 0;
        }
    *out = f;
    return n;
}

int analyses_subscribe(struct analyses *a, struct mqlink *link, char *err, size_t errlen)
{
    char **f = NULL;
    size_t n = wanted_filters(a, &f);

    if (!n) {
        snprintf(err, errlen, "out of memory");
        return SP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        LOG_INFO("subscribe filter=%s", f[i]);
    int rc = mqlink_subscribe(link, (const char *const *)f, n, err, errlen);
    free_names(a->subs, a->nsubs);
    a->subs = f;
    a->nsubs = n;
    return rc;
}

void analyses_resubscribe(struct analyses *a, struct mqlink *link)
{
    char **f = NULL;
    size_t n = wanted_filters(a, &f);

    if (!n)
        return;
    /* Queued now, written with the next flush (after the next commit). */
    for (size_t i = 0; i < n; i++)
        if (!has_filter(a->subs, a->nsubs, f[i])) {
            LOG_INFO("subscribe filter=%s", f[i]);
            if (mqlink_subscribe_one(link, f[i]))
                LOG_WARN("subscribe failed filter=%s", f[i]);
        }
    for (size_t i = 0; i < a->nsubs; i++)
        if (!has_filter(f, n, a->subs[i])) {
            LOG_INFO("unsubscribe filter=%s", a->subs[i]);
            if (mqlink_unsubscribe(link, a->subs[i]))
                LOG_WARN("unsubscribe failed filter=%s", a->subs[i]);
        }
    free_names(a->subs, a->nsubs);
    a->subs = f;
    a->nsubs = n;
}

/* ---- error budgets ------------------------------------------------------ */

/* Forgets every budget. */
static void budgets_clear(struct analyses *a)
{
    struct budget *b;

    for (size_t i = 0; (b = keytab_next(&a->budgets, &i)) != NULL;)
        free(b->key);
    keytab_clear(&a->budgets);
}

/* Forgets the budgets of analysis, every device's. */
static void budgets_forget(struct analyses *a, const char *analysis)
{
    size_t an = strlen(analysis) + 1; /* with its NUL: the key's separator */
    struct budget *b;

    for (size_t i = 0; (b = keytab_next(&a->budgets, &i)) != NULL;) {
        if (b->keylen < an || memcmp(b->key, analysis, an) != 0)
            continue;
        free(b->key);
        keytab_delete(&a->budgets, b);
        i--; /* the entry that moved into its slot is next */
    }
}

/*
 * The budget of (analysis, serial), created if create; NULL if none. The
 * table hashes with SipHash under a key of its own (keytab_hash), so device
 * serials cannot be chosen to collide.
 */
static struct budget *budget_of(struct analyses *a, const char *analysis, const char *serial,
                                int64_t now, int create)
{
    char key[SP_LIMIT_TOPIC + SP_MAX_SERIAL + 2];
    size_t an = strlen(analysis), s = serial ? strlen(serial) : 0;
    void *slot;

    if (an + s + 1 >= sizeof(key))
        return NULL;
    memcpy(key, analysis, an + 1);
    memcpy(key + an + 1, serial ? serial : "", s);
    struct budget_key k = {key, an + 1 + s};
    uint64_t h = keytab_hash(&a->budgets, key, k.n);
    if (!create)
        return keytab_find(&a->budgets, h, &k);
    int rc = keytab_put(&a->budgets, h, &k, &slot);
    if (rc == KEYTAB_FULL) {
        /* Full of windows: start over (old windows only made devices wait). */
        budgets_clear(a);
        rc = keytab_put(&a->budgets, h, &k, &slot);
    }
    if (rc < 0)
        return NULL;
    struct budget *b = slot;
    if (rc == KEYTAB_ADDED) {
        char *copy = malloc(k.n);
        if (!copy) {
            keytab_delete(&a->budgets, b);
            return NULL;
        }
        memcpy(copy, key, k.n);
        *b = (struct budget){.key = copy, .keylen = k.n, .start = now};
    }
    return b;
}

int analyses_budget_spent(struct analyses *a, const char *analysis, const char *serial, int64_t now)
{
    struct budget *b = a->o.error_budget ? budget_of(a, analysis, serial, now, 0) : NULL;
    if (!b || now - b->start >= BUDGET_WINDOW)
        return 0;
    return b->failures >= a->o.error_budget;
}

void analyses_budget_fail(struct analyses *a, const char *analysis, const char *serial, int64_t now)
{
    struct budget *b = a->o.error_budget ? budget_of(a, analysis, serial, now, 1) : NULL;
    if (!b)
        return;
    if (now - b->start >= BUDGET_WINDOW) {
        b->start = now;
        b->failures = 0;
    }
    if (++b->failures == a->o.error_budget)
        LOG_WARN("analysis %s: device %s failed it %d times within a minute; its messages skip "
                 "it until the minute ends",
                 analysis, serial ? serial : "-", b->failures);
}
