/* datasets/json_kind.h -- the short name of a JSON value's type ("object", "number", ...) for
 * the JSONL readers' error messages (rolemrc, sft). */
#ifndef HW_JSON_KIND_H
#define HW_JSON_KIND_H

#include <jansson.h>

static inline const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    default:
        return "null";
    }
}

#endif /* HW_JSON_KIND_H */
