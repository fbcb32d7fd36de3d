/*
 * props.c - the MQTT v5 user properties the broker plugin owns: the
 * identity stamp IDENTITY_PROP (set by the plugin on every message a device
 * publishes) and PROFILE_PROP (set by the daemon only, naming the profile an
 * analysis's publish is for). auth.c's MESSAGE callback removes both from
 * every other client's messages and reads PROFILE_PROP from the daemon's.
 */
#include <stdbool.h>
#include <string.h>

#include <mqtt_protocol.h>

#include "plugin.h"

static int reserved_name(const char *k)
{
    return strcmp(k, IDENTITY_PROP) == 0 || strcmp(k, PROFILE_PROP) == 0;
}

char *props_user_property(const mosquitto_property *props, const char *name)
{
    char *k = NULL, *v = NULL;
    const mosquitto_property *p = props;
    int first = 1;

    while ((p = mosquitto_property_read_string_pair(first ? props : p, MQTT_PROP_USER_PROPERTY, &k,
                                                    &v, !first))) {
        first = 0;
        int hit = strcmp(k, name) == 0;
        mosquitto_free(k);
        if (hit)
            return v;
        mosquitto_free(v);
        k = v = NULL;
    }
    return NULL;
}

/* 1 if props hold a user property with a reserved name. */
static int has_reserved(const mosquitto_property *props)
{
    char *k = NULL, *v = NULL;
    const mosquitto_property *p = props;
    int first = 1, found = 0;

    while (!found && (p = mosquitto_property_read_string_pair(
                          first ? props : p, MQTT_PROP_USER_PROPERTY, &k, &v, !first))) {
        first = 0;
        found = reserved_name(k);
        mosquitto_free(k);
        mosquitto_free(v);
        k = v = NULL;
    }
    return found;
}

/* Appends a copy of property p to *out unless it is a reserved user
 * property. Each property of a PUBLISH is copied by its type. */
static int copy_unreserved(const mosquitto_property *p, mosquitto_property **out)
{
    int id = mosquitto_property_identifier(p), rc = MOSQ_ERR_SUCCESS;
    char *s = NULL, *k = NULL;
    void *bin = NULL;
    uint16_t blen = 0, v16 = 0;
    uint32_t v32 = 0;
    uint8_t v8 = 0;

    switch (id) {
    case MQTT_PROP_USER_PROPERTY:
        mosquitto_property_read_string_pair(p, id, &k, &s, false);
        if (k && s && !reserved_name(k))
            rc = mosquitto_property_add_string_pair(out, id, k, s);
        break;
    case MQTT_PROP_CONTENT_TYPE:
    case MQTT_PROP_RESPONSE_TOPIC:
        mosquitto_property_read_string(p, id, &s, false);
        if (s)
            rc = mosquitto_property_add_string(out, id, s);
        break;
    case MQTT_PROP_CORRELATION_DATA:
        mosquitto_property_read_binary(p, id, &bin, &blen, false);
        rc = mosquitto_property_add_binary(out, id, bin, blen);
        break;
    case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
        mosquitto_property_read_byte(p, id, &v8, false);
        rc = mosquitto_property_add_byte(out, id, v8);
        break;
    case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
        mosquitto_property_read_int32(p, id, &v32, false);
        rc = mosquitto_property_add_int32(out, id, v32);
        break;
    case MQTT_PROP_TOPIC_ALIAS:
        mosquitto_property_read_int16(p, id, &v16, false);
        rc = mosquitto_property_add_int16(out, id, v16);
        break;
    case MQTT_PROP_SUBSCRIPTION_IDENTIFIER:
        mosquitto_property_read_varint(p, id, &v32, false);
        rc = mosquitto_property_add_varint(out, id, v32);
        break;
    default:
        break; /* not a PUBLISH property */
    }
    mosquitto_free(s);
    mosquitto_free(k);
    mosquitto_free(bin);
    return rc;
}

int props_drop_reserved(mosquitto_property **props)
{
    mosquitto_property *out = NULL;
    int rc = MOSQ_ERR_SUCCESS;

    if (!has_reserved(*props))
        return MOSQ_ERR_SUCCESS;
    for (const mosquitto_property *p = *props; p && rc == MOSQ_ERR_SUCCESS;
         p = mosquitto_property_next(p))
        rc = copy_unreserved(p, &out);
    if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_property_free_all(&out);
        return rc;
    }
    mosquitto_property_free_all(props);
    *props = out;
    return MOSQ_ERR_SUCCESS;
}
