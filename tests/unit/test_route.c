/* test_route.c - declared topic filters: conversion and matching. */
#include "check.h"
#include "base/route.h"
#include "sealpipe.h"

static void test_filter(void)
{
    char out[64];
    CHECK_EQ_INT(route_mqtt_filter("devices/{serial}/data", out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "devices/+/data");
    CHECK_EQ_INT(route_mqtt_filter("a/#", out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "a/#");
    CHECK_EQ_INT(route_mqtt_filter("a/#/b", out, sizeof(out)), SP_ERR_INVAL);
    CHECK_EQ_INT(route_mqtt_filter("a/b+", out, sizeof(out)), SP_ERR_INVAL);
    CHECK_EQ_INT(route_mqtt_filter("{serial}/{serial}", out, sizeof(out)), SP_ERR_INVAL);
    CHECK_EQ_INT(route_mqtt_filter("a/{seria}", out, sizeof(out)), SP_ERR_INVAL);
    CHECK_EQ_INT(route_mqtt_filter("", out, sizeof(out)), SP_ERR_INVAL);
    CHECK_EQ_INT(route_mqtt_filter("abcdefgh", out, 4), SP_ERR_BUFSIZE);
}

static void test_match(void)
{
    char s[16];
    CHECK_EQ_INT(route_match("devices/{serial}/data", "devices/sensor-01/data", s, sizeof(s)), 1);
    CHECK_EQ_STR(s, "sensor-01");
    CHECK_EQ_INT(route_match("devices/{serial}/data", "devices/sensor-01/x", s, sizeof(s)), 0);
    CHECK_EQ_INT(route_match("devices/{serial}/data", "devices//data", s, sizeof(s)), 0);
    CHECK_EQ_INT(route_match("devices/{serial}", "devices/a-very-long-serial-x", s, sizeof(s)), 0);
    CHECK_EQ_INT(route_match("a/+/c", "a/b/c", s, sizeof(s)), 1);
    CHECK_EQ_STR(s, "");
    CHECK_EQ_INT(route_match("a/#", "a", s, sizeof(s)), 1);
    CHECK_EQ_INT(route_match("a/#", "a/b/c", s, sizeof(s)), 1);
    CHECK_EQ_INT(route_match("#", "$SYS/x", s, sizeof(s)), 0);
    CHECK_EQ_INT(route_match("+/x", "$tip/x", s, sizeof(s)), 0);
    CHECK_EQ_INT(route_match("$tip/{serial}/push", "$tip/d1/push", s, sizeof(s)), 1);
    CHECK_EQ_STR(s, "d1");
    CHECK_EQ_INT(route_match("a/b", "a/b/c", s, sizeof(s)), 0);
    CHECK_EQ_INT(route_match("a/b/c", "a/b", s, sizeof(s)), 0);
}

/* Two declared filters overlap when one topic matches both. */
static void test_overlap(void)
{
    static const struct {
        const char *a, *b;
        int overlap;
    } cases[] = {
        {"#", "devices/{serial}/data", 1},
        {"a/#", "a", 1},
        {"a", "a/#", 1},
        {"a/#", "a/b/c", 1},
        {"a/+/c", "a/b/+", 1},
        {"a/{serial}/c", "a/+/c", 1},
        {"devices/{serial}/data", "devices/{serial}/json", 0},
        {"a/b", "a/b/c", 0},
        {"a/b/c", "a/b", 0},
        {"a/+", "b/+", 0},
        {"+/+", "a/b", 1},
        {"+/+", "a/b/c", 0},
        {"+", "a/b", 0},
        {"x/#", "y/#", 0},
        {"same/topic", "same/topic", 1},
        {"#", "$SYS/x", 0},
        {"+/x", "$tip/x", 0},
        {"$tip/+/ack", "$tip/d1/#", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_EQ_INT(route_overlap(cases[i].a, cases[i].b), cases[i].overlap);
        CHECK_EQ_INT(route_overlap(cases[i].b, cases[i].a), cases[i].overlap);
    }
}

int main(void)
{
    RUN(test_filter);
    RUN(test_match);
    RUN(test_overlap);
    return check_done();
}
