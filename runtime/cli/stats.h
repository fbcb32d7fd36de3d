/*
 * stats.h - `sealpipe stats [--json]`: the running daemon's metrics, read
 * from its /metrics endpoint (transport/metricsd.h) at the address it wrote
 * to <data_dir>/metrics.addr, printed readably: counters and gauges as
 * they are, histograms as count, average, p50 and p99 (estimated from the
 * buckets, as Prometheus' histogram_quantile does); --json prints one
 * object.
 */
#ifndef SP_STATS_H
#define SP_STATS_H

struct conf;

/*
 * argv[0] is "stats"; options --json, --data-dir DIR, --config FILE,
 * --help. Returns the exit status: 0, 1 (the daemon is not running or does
 * not answer), 2 (usage).
 */
int stats_command(struct conf *c, int argc, char **argv);

#endif
