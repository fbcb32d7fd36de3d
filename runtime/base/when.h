/*
 * when.h - conditions on stored data, as an analysis declares them in
 * `when` (sdk/lua/README.md, "Conditions"), and how one record moves a
 * condition's state. The worker turns the Lua table into the JSON text
 * when_parse reads (one object, or a list of up to WHEN_MAX), and the daemon
 * parses that text again: one set of rules for both.
 *
 *   {"variable": "temperature", "above": 30, "hysteresis": 1, "for": "5m"}
 *   {"variable": "temperature", "above": {"param": "threshold", "default": 30}}
 *   {"variable": "door", "equals": "open"}     {"variable": "mode", "changes": true}
 *
 * Pure: no clock, no allocation.
 */
#ifndef SP_WHEN_H
#define SP_WHEN_H

#include <stddef.h>
#include <stdint.h>

#include "base/sp_limits.h"

#define WHEN_MAX       16  /* conditions per analysis */
#define WHEN_PARAM_MAX 64  /* bytes of a param name */
#define WHEN_TEXT_MAX  128 /* bytes of an equals string */
#define WHEN_JSON_MAX  8192

enum when_op { WHEN_ABOVE, WHEN_BELOW, WHEN_EQUALS, WHEN_CHANGES };

/* A value to compare: a number, a string or a boolean. */
struct when_value {
    int type; /* 'n', 's', 'b' */
    double number;
    char text[WHEN_TEXT_MAX + 1];
    int boolean;
};

struct when_cond {
    char variable[SP_LIMIT_VARIABLE + 1]; /* lowercase, as records are stored */
    int op;                               /* enum when_op */
    struct when_value value;              /* above/below: a number; equals: any */
    char param[WHEN_PARAM_MAX + 1];       /* above/below: the device param that overrides value */
    double hysteresis;                    /* above/below, >= 0 */
    int64_t for_ms;                       /* how long it must hold before it fires; 0: at once */
    char key[17];                         /* its state's key: a hash of its canonical text */
};

struct when {
    struct when_cond c[WHEN_MAX];
    size_t n;
};

/*
 * Parses and checks the JSON text of `when`. Returns 0 with *out, or
 * SP_ERR_INVAL with err naming the condition and field ("when[2].above must
 * be a number or {param =, default =}").
 */
int when_parse(const char *json, struct when *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* A condition's state for one device, as condition_state keeps it. */
enum when_state { WHEN_ARMED, WHEN_PENDING, WHEN_FIRED };

/*
 * One record's value v (of the condition's variable) against c with
 * threshold t (c->value.number, or the device's param): 1 when it makes the
 * condition hold, 0 when not. release is set when it lets a fired
 * above/below condition re-arm (past the hysteresis) or an equals one (no
 * longer equal).
 */
int when_holds(const struct when_cond *c, const struct when_value *v, double t, int *release);

#endif
