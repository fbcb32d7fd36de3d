/*
 * tmpdb.h - what test_bucket.c and test_devstate.c share: a fresh folder in
 * /tmp (dir) for a bucket (dbpath, its sealpipe.db), and its removal with
 * the SQLite files beside it. tmp_setup() names the folder after TMPDB_NAME,
 * which the including file defines first.
 */
#ifndef SP_TMPDB_H
#define SP_TMPDB_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[64];
static char dbpath[128];

static void tmp_setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/sp-%s-XXXXXX", TMPDB_NAME);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(dbpath, sizeof dbpath, "%s/sealpipe.db", dir);
}

static void tmp_teardown(void)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[192];

    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        snprintf(p, sizeof p, "%s%s", dbpath, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
}

#endif
