/*
 * checkpointer.h - SQLite WAL checkpoints of sealpipe.db on a thread of
 * their own, off the pipeline's path.
 *
 * With SQLite's automatic checkpoint, the commit that takes the WAL past
 * 1,000 pages copies them into the database file and syncs it before the
 * pipeline goes on: at a steady 5,000 msg/s that was several times a second,
 * each a pause of milliseconds on the batch's latency, and CPU on the
 * pipeline's core while the other waited. Here the bucket's connection
 * turns the automatic checkpoint off and its WAL hook kicks this thread
 * (checkpointer_kick) past CHECKPOINT_PAGES; the thread runs a PASSIVE
 * checkpoint on its own connection, which never blocks the writer. Should
 * the thread fall far behind (a reader holding the WAL, a slow disk), the
 * hook checkpoints in the pipeline itself past CHECKPOINT_INLINE_PAGES, as
 * SQLite would have.
 */
#ifndef SP_CHECKPOINTER_H
#define SP_CHECKPOINTER_H

#include <stddef.h>

#define CHECKPOINT_PAGES        1000  /* SQLite's own default */
#define CHECKPOINT_INLINE_PAGES 16000 /* 64 MiB of 4 KiB pages */

struct checkpointer;

/* Opens its connection to path (synchronous FULL or NORMAL, as the
 * writer's) and starts the thread. 0, or SP_ERR_DB / SP_ERR_IO with err. */
int checkpointer_start(const char *path, int sync_full, struct checkpointer **out, char *err,
                       size_t errlen) __attribute__((warn_unused_result));
/* Stops the thread and closes its connection (before the writer's, so
 * that the writer's close is the last and removes the WAL). */
void checkpointer_stop(struct checkpointer *c);
/* The WAL is long: checkpoint it soon. Any thread; never blocks for long
 * (a mutex the thread holds only to read its orders). */
void checkpointer_kick(struct checkpointer *c);

#endif
