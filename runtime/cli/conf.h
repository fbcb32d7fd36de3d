/*
 * conf.h - the daemon's options: one table (conf.c) drives defaults, the
 * config file, command-line overrides, their validation, --help and the
 * example config.
 *
 * Precedence: built-in default < config file (--config FILE) < command line.
 * Config file lines are `name = value`. A line whose first non-blank
 * character is '#' is a comment; there are no comments after a value and no
 * quoting: the value is everything after '=' with the blanks around it
 * removed, '#' and quotes included (topic filters and passwords contain
 * them). On the command line the same names are written --name value or
 * --name=value, with '-' or '_' alike (--data-dir, data_dir); sp_cmdline.h has
 * the rules.
 *
 * A value is checked the same way wherever it comes from, and a bad one is
 * refused with the same words, "name: reason":
 *   port: '70000' is not an integer in [1, 65535]     (integers, with their range)
 *   sync: 'sometimes' is not one of full|normal       (choices)
 *   client_id: control character 0x0a in the value    (any string)
 *   client_id: value longer than 127 bytes            (any string)
 *   broker: 'x:y': expected mqtt://host:port          (the broker URL)
 *   retention: '5x' is not a duration: ...            (storage/retention.h)
 * A config file prefixes "file:line: ". Checks between options (conf_check):
 *   tls_cert and tls_key go together                  (unless --broker is set)
 */
#ifndef SP_CONF_H
#define SP_CONF_H

#include <stdio.h>

#define CONF_ERR_MAX  1024 /* room for any error text of this module */
#define CONF_HOST_MAX 256  /* bytes of a broker host name, with its NUL */

struct conf {
    char data_dir[512];
    char analyses_dir[512];
    char broker[512]; /* "" = start the embedded broker; else mqtt://host:port */
    char broker_username[256];
    char broker_password[256];
    char bind[64]; /* embedded broker listener address */
    int port;      /* embedded broker listener port */
    int tls_port;  /* its TLS listener, when a certificate is set or found */
    char tls_cert[512];
    char tls_key[512];
    int http_port;  /* TagoTiP HTTP binding; 0: off */
    int https_port; /* and HTTPS, with tls_cert */
    int udp_port;   /* TagoTiP raw binding; 0: off */
    int tcp_port;
    char broker_plugin[512];      /* sealpipe_auth.so; "" = next to the binary */
    char device_publish[512];     /* topic filters devices may publish to (%s: serial) */
    char device_subscribe[512];   /* and subscribe to */
    char device_cross_profile[8]; /* off: devices read their own profile's messages only */
    char journal[8];              /* on: the embedded broker journals device publishes */
    int journal_sync_ms;          /* how often the journal is made durable; 0: every publish */
    int journal_min_free_mb;      /* device publishes are refused under this much free space */
    char mosquitto[512];
    char client_id[128];
    char log_level[16];
    int batch;            /* messages per commit; also MQTT receive maximum */
    int commit_linger_ms; /* a small batch waits this long for more */
    char sync[16];        /* full | normal */
    int key_grace;        /* seconds a rotated key still opens envelopes */
    int stats_interval;   /* seconds between dead-letter counter log lines */
    int lua_instructions;
    int lua_memory_mb;
    int lua_timeout_ms;
    int lua_error_budget;
    int trigger_queue_max;
    int workers; /* Lua worker processes */
    int lua_records;
    int lua_publishes;
    int lua_script_kb;
    int lua_publish_kb;
    int metrics_port;      /* the /metrics endpoint; 0: off */
    char metrics_bind[64]; /* its numeric address */
    char retention[32];    /* "forever" or a duration (storage/retention.h) */
    int webhook_queue_max; /* outbox rows at most (transport/webhooks.h) */
    int webhook_attempts;
    int webhook_timeout_ms;
    int webhook_backoff_ms;
};

/* Fills c with the defaults. */
void conf_defaults(struct conf *c);

/*
 * Reads a config file into c. Returns 0, or SP_ERR_IO / SP_ERR_CONFIG with
 * "file:line: reason" in err.
 */
int conf_load_file(struct conf *c, const char *path, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Applies one option by name (with '-' or '_'). Returns 0, SP_ERR_NOTFOUND
 * (no such option) or SP_ERR_CONFIG (bad value; err says why).
 */
int conf_set(struct conf *c, const char *name, const char *value, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The options by index, for code that walks them all (tests, dumps):
 * conf_option_name(i) for i < conf_option_count(); NULL past the end. */
size_t conf_option_count(void);
const char *conf_option_name(size_t i);
/*
 * Formats option name of c as it would be written in a config file. Returns
 * 0, SP_ERR_NOTFOUND (no such option) or SP_ERR_BUFSIZE (out too small).
 */
int conf_get(const struct conf *c, const char *name, char *out, size_t cap)
    __attribute__((warn_unused_result));

/*
 * Parses options from argv (stopping at the first argument that is not an
 * option, see sp_cmdline.h); every --config FILE is read first, in order,
 * wherever it appears. Returns the index of the first unparsed argument
 * (argc when all were options), or SP_ERR_CONFIG / SP_ERR_IO with the
 * reason in err.
 */
int conf_parse_args(struct conf *c, int argc, char **argv, char *err, size_t errlen);

/*
 * The checks between options, run once the file and the command line are
 * read. Returns 0, or SP_ERR_CONFIG with the reason in err.
 */
int conf_check(const struct conf *c, char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * Splits a broker URL, [mqtt://]host[:port], into host (cap bytes) and port
 * (1883 when not given). Returns 0, or SP_ERR_CONFIG when it is not one;
 * host and port are written only on success.
 */
int conf_broker_address(const char *url, char *host, size_t cap, int *port)
    __attribute__((warn_unused_result));

/* Prints "  --name VALUE   help (default: x)" lines for every option. */
void conf_print_help(FILE *f);
/* Prints a commented example config file with every option and default. */
void conf_print_example(FILE *f);

#endif
