/*
 * errors.h - the errors only the sealpipe daemon returns: storage,
 * configuration, the broker link, analyses and the checks the server makes on
 * a device (replay, unknown device, plaintext refused). No SDK function
 * returns them, so they are not in sealpipe.h; they keep its SP_ERR_* names
 * and conventions (negative, 0 is success) so daemon code uses both sets the
 * same way.
 *
 * The numbers never move, like the SDK's: the SDK owns -1 to -99, the daemon
 * -100 down; new errors are appended with new numbers. errors_strerror(),
 * errors_name() and errors_wirecode() know every code of both tables: the
 * daemon calls them, never the sp_ ones that know SDK codes only.
 */
#ifndef SP_ERRORS_H
#define SP_ERRORS_H

#include "sealpipe.h"

/* name, number, TagoTiP wire code (TagoTiP.md §9.2, TagoTiPs.md §9), message. */
#define SP_DAEMON_ERRNO_MAP(XX)                                                                    \
    XX(NOMEM, -100, "server_error", "out of memory")                                               \
    XX(SERIAL, -101, "auth_failed", "inner serial does not match the device")                      \
    XX(REPLAY, -102, "invalid_seq", "counter not greater than the last accepted one")              \
    XX(NODEVICE, -103, "device_not_found", "unknown device")                                       \
    XX(PLAINTEXT, -104, "auth_failed", "device requires encryption")                               \
    XX(IO, -105, "server_error", "I/O error")                                                      \
    XX(DB, -106, "server_error", "database error")                                                 \
    XX(CONFIG, -107, "server_error", "configuration error")                                        \
    XX(NOTFOUND, -108, "server_error", "not found")                                                \
    XX(EXISTS, -109, "server_error", "already exists")                                             \
    XX(LUA, -110, "server_error", "analysis error")                                                \
    XX(TIMEOUT, -111, "server_error", "analysis exceeded its limits")                              \
    XX(MQTT, -112, "server_error", "MQTT error")                                                   \
    XX(FULL, -113, "server_error", "batch memory is full")                                         \
    XX(LIMIT, -114, "server_error", "analysis exceeded a per-message limit")                       \
    XX(CRASH, -115, "server_error", "analysis crashed its worker")                                 \
    XX(STOPPING, -116, "server_error", "the daemon is stopping")

enum sp_daemon_err {
#define SP__XX(name, num, wire, msg) SP_ERR_##name = num,
    SP_DAEMON_ERRNO_MAP(SP__XX)
#undef SP__XX
};

#define SP__XX(name, num, wire, msg)                                                               \
    _Static_assert(num <= -100, "daemon errors are numbered from -100 down: " #name);
SP_DAEMON_ERRNO_MAP(SP__XX)
#undef SP__XX

/* Human-readable message for any error code (never NULL). */
static inline const char *errors_strerror(int err)
{
    switch (err) {
#define SP__XX(name, num, wire, msg)                                                               \
    case num:                                                                                      \
        return msg;
        SP_DAEMON_ERRNO_MAP(SP__XX)
#undef SP__XX
    default:
        return sp_strerror(err);
    }
}

/* Symbolic name without prefix, e.g. "NOTFOUND" (never NULL). */
static inline const char *errors_name(int err)
{
    switch (err) {
#define SP__XX(name, num, wire, msg)                                                               \
    case num:                                                                                      \
        return #name;
        SP_DAEMON_ERRNO_MAP(SP__XX)
#undef SP__XX
    default:
        return sp_errname(err);
    }
}

/* TagoTiP wire code sent back to a device (never NULL; "server_error" if unknown). */
static inline const char *errors_wirecode(int err)
{
    switch (err) {
#define SP__XX(name, num, wire, msg)                                                               \
    case num:                                                                                      \
        return wire;
        SP_DAEMON_ERRNO_MAP(SP__XX)
#undef SP__XX
    default:
        return sp_wirecode(err);
    }
}

#endif
