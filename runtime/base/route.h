/*
 * route.h - topic filters as analyses declare them.
 *
 * A declared filter is an MQTT topic filter in which one level may be exactly
 * "{serial}": it matches any single level and names the device, e.g.
 * "devices/{serial}/data" takes devices/sensor-01/data in for sensor-01.
 * Matching follows MQTT rules ('+' one level, '#' last and any number of
 * levels including none, wildcards never match a leading '$' level).
 */
#ifndef SP_ROUTE_H
#define SP_ROUTE_H

#include <stddef.h>

/*
 * Writes the MQTT subscription filter for a declared filter ("{serial}"
 * becomes '+'). Returns 0, SP_ERR_INVAL (malformed filter) or SP_ERR_BUFSIZE.
 */
int route_mqtt_filter(const char *filter, char *out, size_t cap)
    __attribute__((warn_unused_result));

/*
 * Matches a topic against a declared filter. Returns 1 on a match and copies
 * the "{serial}" level into serial (empty when the filter has none; cap
 * counts the NUL, a longer level does not match), else 0.
 */
int route_match(const char *filter, const char *topic, char *serial, size_t cap);

/* 1 when some topic matches both declared filters (well-formed ones), else 0. */
int route_overlap(const char *a, const char *b);

#endif
