/*
 * tablepoll.h - what the sources that read a table of sealpipe.db share
 * (dlretry.c: the dead-letter retries; trigsrc.c: the trigger queue): a
 * timerfd that says when to look again, and the answer() of a source whose
 * messages have no sender waiting.
 */
#ifndef SP_TABLEPOLL_H
#define SP_TABLEPOLL_H

#include <stddef.h>
#include <stdint.h>

#include "core/ingest.h"

/* A non-blocking timerfd readable every every_ms (< 1000), or -1. */
int tablepoll_timer(long every_ms);
/* 1 when more is set, or the timer fired since the last look (it is then
 * drained); waits up to timeout_ms for the timer first. */
int tablepoll_due(int tfd, int more, int timeout_ms);
/* ingest_source.answer for messages nobody waits an answer for: does nothing. */
int tablepoll_no_answer(void *ctx, const struct ingest_msg *m, const char *topic,
                        const uint8_t *payload, size_t len);

#endif
