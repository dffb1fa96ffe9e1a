/* The bsread type table (bsread.md §1.12) and small helpers shared by the codec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static const struct {
    const char *name;
    size_t size;
} TYPES[PV_TYPE_COUNT_] = {
    [PV_TYPE_BOOL] = {"bool", 1},       [PV_TYPE_INT8] = {"int8", 1},
    [PV_TYPE_UINT8] = {"uint8", 1},     [PV_TYPE_INT16] = {"int16", 2},
    [PV_TYPE_UINT16] = {"uint16", 2},   [PV_TYPE_INT32] = {"int32", 4},
    [PV_TYPE_UINT32] = {"uint32", 4},   [PV_TYPE_INT64] = {"int64", 8},
    [PV_TYPE_UINT64] = {"uint64", 8},   [PV_TYPE_FLOAT32] = {"float32", 4},
    [PV_TYPE_FLOAT64] = {"float64", 8}, [PV_TYPE_STRING] = {"string", 1},
};

size_t pv_type_size(pv_type type)
{
    return (unsigned)type < PV_TYPE_COUNT_ ? TYPES[type].size : 0;
}

const char *pv_type_name(pv_type type)
{
    return (unsigned)type < PV_TYPE_COUNT_ ? TYPES[type].name : NULL;
}

int pv_type_parse(const char *name, pv_type *type)
{
    for (int i = 0; i < PV_TYPE_COUNT_; i++) {
        if (strcasecmp(name, TYPES[i].name) == 0) {
            *type = (pv_type)i;
            return 0;
        }
    }
    return -1;
}

void pv_set_error(char *error, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(error, PV_ERROR_SIZE, format, args);
    va_end(args);
}

char *pv_vformat(const char *format, va_list args)
{
    va_list copy;
    va_copy(copy, args);
    int size = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (size < 0)
        return NULL;
    char *text = malloc((size_t)size + 1);
    if (text != NULL)
        vsnprintf(text, (size_t)size + 1, format, args);
    return text;
}

/* Length of the valid UTF-8 sequence at s[0], or 0 when it is invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int pv_utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = utf8_sequence(s + i, n - i);
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

void pv_utf8_repair(char *text)
{
    unsigned char *s = (unsigned char *)text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_sequence(s + i, n - i);
        if (len == 0) {
            s[i] = '?';
            len = 1;
        }
        i += len;
    }
}
