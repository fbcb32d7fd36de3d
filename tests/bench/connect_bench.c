/*
 * connect_bench.c - connection rate for scripts/bench-broker: N times in a
 * row, an MQTT client connects with the given credentials, waits for its
 * CONNACK and disconnects; prints "connects=N ok=K seconds=S" on stdout.
 * One client at a time, so the figure is the broker's time per CONNECT
 * (authentication included) plus one round trip on loopback.
 *
 * usage: connect_bench --port P --count N [--version 311|5] [--username U --password W]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

struct state {
    int done, rc;
};

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    struct state *s = obj;
    (void)m;
    s->done = 1;
    s->rc = rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *user = NULL, *pass = NULL;
    int port = 0, version = MQTT_PROTOCOL_V311;
    long n = 0, ok = 0;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--count") == 0)
            n = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--username") == 0)
            user = argv[i + 1];
        else if (strcmp(argv[i], "--password") == 0)
            pass = argv[i + 1];
        else if (strcmp(argv[i], "--version") == 0)
            version = atoi(argv[i + 1]) == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311;
    }
    if (port <= 0 || n <= 0) {
        fprintf(stderr, "usage: connect_bench --port P --count N [--version 311|5] "
                        "[--username U --password W]\n");
        return 2;
    }
    mosquitto_lib_init();
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        struct state s = {0, -1};
        struct mosquitto *m = mosquitto_new(NULL, true, &s);
        if (!m)
            return 1;
        mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, version);
        mosquitto_connect_callback_set(m, on_connect);
        if (user)
            mosquitto_username_pw_set(m, user, pass);
        if (mosquitto_connect(m, "127.0.0.1", port, 60) == MOSQ_ERR_SUCCESS) {
            while (!s.done && mosquitto_loop(m, 1000, 1) == MOSQ_ERR_SUCCESS)
                ;
            if (s.rc == 0)
                ok++;
            mosquitto_disconnect(m);
        }
        mosquitto_destroy(m);
    }
    printf("connects=%ld ok=%ld seconds=%.6f\n", n, ok, now_s() - t0);
    mosquitto_lib_cleanup();
    return ok == n ? 0 : 1;
}
