/* Private helpers shared by the library's sources; not installed, not part of the API. */
#ifndef PIPEVISOR_INTERNAL_H
#define PIPEVISOR_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "../pipevisor.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pipevisor's C library supports little-endian hosts only"
#endif

/* Error texts are bounded: snprintf truncates a long quote instead of overflowing. */
#define PV_ERROR_SIZE 512

void pv_set_error(char *error, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* A malloc'ed printf, or NULL when out of memory. */
char *pv_vformat(const char *format, va_list args) __attribute__((format(printf, 1, 0)));

/* 1 when the bytes are valid UTF-8 (no surrogates, no overlongs), as Python's strict decoder. */
int pv_utf8_valid(const unsigned char *bytes, size_t size);

/* Replace every byte that is not part of valid UTF-8 by '?', in place (for JSON strings). */
void pv_utf8_repair(char *text);

/* Release the frames of the last pv_encode without sending them. */
void pv_encoder_discard(pv_encoder *encoder);

/* *product = a * b, or -1 when it would not fit in a size_t. */
static inline int pv_mul_size(size_t a, size_t b, size_t *product)
{
    return __builtin_mul_overflow(a, b, product) ? -1 : 0;
}

#endif /* PIPEVISOR_INTERNAL_H */
