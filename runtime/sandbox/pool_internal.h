/*
 * pool_internal.h - what pool.c (the analyses and the worker processes) and
 * pool_run.c (the jobs: a batch's, and those a batch left running) share.
 */
#ifndef SP_POOL_INTERNAL_H
#define SP_POOL_INTERNAL_H

#include <stdint.h>
#include <sys/types.h>

#include "base/buf.h"
#include "pool.h"

struct wire_in;

struct analysis {
    char *name;
    char *src;
    size_t len;
    char *env; /* JSON object text, or NULL */
    char **topics;
    size_t ntopics;
    int broken;        /* killed a fresh worker while loading: left out of it */
    int timeout_ms;    /* its own wall-clock budget, 0: the pool's */
    unsigned handlers; /* HOST_BIT of each handler it declares */
    char *schedule;    /* checked with schedule_parse; NULL: none */
    unsigned events;   /* HOST_BIT of each event in `on` */
    int64_t offline_after_ms;
    struct when *when; /* its conditions, checked again; NULL: none */
    char *scope;       /* a JSON object of tags; NULL: every device */
    char **webhooks;   /* its `webhooks` list, each webhook_entry_check'ed */
    size_t nwebhooks;  /* entries in it */
    size_t worker;     /* the one worker that holds its Lua state */
};

/* A job sent to a worker and not answered yet. */
struct pend {
    uint64_t ticket;      /* 0: attached, its result goes to job; else detached */
    struct pool_job *job; /* attached: in the running batch's jobs */
    char *name, *serial;  /* detached: copies, for the log */
    int ms;               /* its wall-clock budget */
    size_t start, end;    /* its frame in the worker's out buffer */
    unsigned char deaths; /* workers that died while it was running */
    int handler;          /* the handler it runs (enum host_handler): its limits */
    size_t asked;         /* query(), devices(), aggregate() answered for it */
};

/* One worker process, the analyses pinned to it, and the jobs it was sent:
 * it runs them in order, one reply each, so q[head] is the one running. */
struct worker {
    pid_t pid;          /* 0: not running (started again at its next use) */
    int fd;             /* jobs and their replies */
    int qfd;            /* query() calls and their answers */
    int started;        /* it ran before: a new start is a restart */
    struct buf out, in; /* job frames (from q[0]'s); replies being read */
    struct pend *q;
    size_t head, n, cap;
    size_t attached;    /* pends of the running batch (attached) */
    size_t sent;        /* bytes of out the current process was given */
    int alone;          /* q[head] runs alone in a fresh worker */
    int full;           /* the batch arena is full: its later jobs get SP_ERR_FULL */
    int broke;          /* it sent a frame over the size limit */
    size_t held;        /* q[head]'s reply, of this size, waits in `in` (pool_run.c) */
    int64_t deadline;   /* for q[head] */
    int64_t started_us; /* q[head]'s clock (metrics): the last reply, or the start */
};

/* A detached job's result, kept until the pipeline claims it by tag. */
enum ticket_state { T_FREE, T_RUNNING, T_DONE, T_LOST };
struct ticket {
    uint64_t id;
    int64_t tag; /* the caller's (a deferred row), 0: not tagged yet */
    enum ticket_state state;
    int rc; /* T_DONE without a frame: the pool's verdict (timeout, crash) */
    char *err;
    char *frame; /* T_DONE: the worker's reply, header included */
    size_t len;
    int handler; /* the handler the job ran: what its reply may hold */
};

struct pool {
    struct pool_opts o;
    struct analysis *v; /* sorted by name */
    size_t n;
    struct worker *w;
    size_t nw;
    host_query_fn query;
    void *query_ctx;
    struct buf ctl;      /* load and unload frames (also sent in mid-batch) */
    struct arena qarena; /* one query() answer at a time */
    unsigned long spawns;
    struct ticket *t; /* by id, ascending */
    size_t nt, capt, nfree;
    uint64_t next_ticket;
    size_t running;          /* tickets T_RUNNING */
    size_t kept;             /* bytes of the kept frames */
    int keep_all;            /* a batch waits for every job: results are kept past the bound */
    int64_t refused_log;     /* when "not detached: bounds" was last logged */
    host_devices_fn devices; /* pool_set_reads */
    host_aggregate_fn aggregate;
    void *reads_ctx;
};

int pool_stop_worker(struct worker *w);
const char *pool_describe(int status, char *b, size_t n);
long pool_read_frame_on(int fd, struct buf *b, int64_t deadline);
void pool_consume(struct buf *b, size_t n);
int pool_spawn(struct pool *pl, size_t w, char *err, size_t errlen);
int pool_answer_query(struct pool *pl, struct worker *w, int64_t deadline);
/* Worker w's detached jobs are given up (their tickets T_LOST: run them
 * again) and the worker stopped: before a load or unload changes it. */
void pool_abandon(struct pool *pl, struct worker *w);
void pool_tickets_free(struct pool *pl);
/* pool_reads.c: 1 (err set) when job p has asked more than its handler's
 * queries limit, counting this one; else 0. */
int pool__over_queries(struct pend *p, char *err, size_t errlen);
/* pool_reads.c: the answer to request `type` (devices{}, aggregate{}, or
 * anything else: malformed) in *in, for job p, into pl->ctl from wire_begin
 * on (without wire_end). 0, or -1 when it cannot be written. */
int pool__answer_read(struct pool *pl, struct pend *p, unsigned type, struct wire_in *in);

#endif
