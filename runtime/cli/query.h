/*
 * query.h - sealpipe query <serial>: a device's stored data with TagoIO's
 * data-query semantics (variables, qty, skip, start/end, group, order,
 * aggregates per interval) as a table, JSON lines or CSV. The queries are
 * storage/dataquery.c's; this is the command line and the output.
 */
#ifndef SP_QUERY_H
#define SP_QUERY_H

struct conf;

/*
 * Runs the command; argv[0] is "query". conf holds the defaults (and
 * SEALPIPE_DATA_DIR); --config and --data-dir apply to it. Opens the
 * database read-only and creates nothing. Returns the exit status: 0 (also
 * for a known device without data), 1 (no data directory, no such device,
 * a database error), 2 (a usage error, said on stderr).
 */
int query_main(struct conf *conf, int argc, char **argv);

#endif
