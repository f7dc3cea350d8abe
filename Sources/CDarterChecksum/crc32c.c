// CRC32C (Castagnoli): SSE4.2 with three interleaved streams, and a table fallback.
#include "darter_checksum.h"
#include <cpuid.h>
#include <stdlib.h>

/* ---- CRC32C ---- */
static uint32_t crc_table[8][256];
static int crc_table_ready = 0;

static void crc_init_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = crc_table[0][i];
        for (int t = 1; t < 8; t++) { c = crc_table[0][c & 0xff] ^ (c >> 8); crc_table[t][i] = c; }
    }
    __atomic_store_n(&crc_table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t darter_crc32c_sw(uint32_t crc, const void *data, size_t length) {
    if (!__atomic_load_n(&crc_table_ready, __ATOMIC_ACQUIRE)) crc_init_table();
    const uint8_t *p = data;
    crc = ~crc;
    while (length >= 8) {
        uint64_t v; __builtin_memcpy(&v, p, 8);
        v ^= crc;
        crc = crc_table[7][v & 0xff] ^ crc_table[6][(v >> 8) & 0xff] ^ crc_table[5][(v >> 16) & 0xff] ^
              crc_table[4][(v >> 24) & 0xff] ^ crc_table[3][(v >> 32) & 0xff] ^ crc_table[2][(v >> 40) & 0xff] ^
              crc_table[1][(v >> 48) & 0xff] ^ crc_table[0][v >> 56];
        p += 8; length -= 8;
    }
    while (length--) crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
/* One stream of crc32q: for short inputs and the tails of the three-stream version below. */
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw_simple(uint32_t crc, const uint8_t *p, size_t length) {
    uint64_t c = crc;
    while (length >= 8) { uint64_t v; __builtin_memcpy(&v, p, 8); c = __builtin_ia32_crc32di(c, v); p += 8; length -= 8; }
    uint32_t c32 = (uint32_t)c;
    while (length--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

/* Multiply a and b modulo the CRC32C polynomial (reflected). */
static uint32_t gf2_mul(uint32_t a, uint32_t b) {
    uint32_t prod = 0;
    for (int i = 0; i < 32; i++) {
        if (a & 0x80000000u) prod ^= b;
        a <<= 1;
        b = (b >> 1) ^ (0x82F63B78u & (0u - (b & 1u)));
    }
    return prod;
}
/* x^(8*n) mod P, reflected, for shifting a CRC over n zero bytes. */
static uint32_t x_pow_8n(size_t n) {
    uint32_t result = 0x80000000u; /* x^0 */
    uint32_t base = 0x00800000u;   /* x^8 */
    while (n) {
        if (n & 1) result = gf2_mul(result, base);
        base = gf2_mul(base, base);
        n >>= 1;
    }
    return result;
}

#define BLOCK 8192
static uint32_t shift_block = 0;

/* Three independent streams hide the 3-cycle latency of crc32q; the partial
   CRCs are merged by running the software "shift" (crc of zeros) step. */
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const void *data, size_t length) {
    const uint8_t *p = data;
    uint32_t c0 = ~crc;
    if (!shift_block) shift_block = x_pow_8n(BLOCK);
    while (length >= 3 * BLOCK) {
        uint64_t a = c0, b = 0, d = 0;
        const uint8_t *p1 = p + BLOCK, *p2 = p + 2 * BLOCK;
        for (size_t i = 0; i < BLOCK; i += 8) {
            uint64_t va, vb, vd;
            __builtin_memcpy(&va, p + i, 8); __builtin_memcpy(&vb, p1 + i, 8); __builtin_memcpy(&vd, p2 + i, 8);
            a = __builtin_ia32_crc32di(a, va);
            b = __builtin_ia32_crc32di(b, vb);
            d = __builtin_ia32_crc32di(d, vd);
        }
        /* combine: crc(A||B) = shift(crc(A), |B|) ^ crc(B) (with zero init for B) */
        uint32_t ab = gf2_mul((uint32_t)a, shift_block) ^ (uint32_t)b;
        c0 = gf2_mul(ab, shift_block) ^ (uint32_t)d;
        p += 3 * BLOCK; length -= 3 * BLOCK;
    }
    c0 = crc32c_hw_simple(c0, p, length);
    return ~c0;
}

static int hw_state = -1;
int darter_crc32c_hw_available(void) {
    if (hw_state < 0) {
        unsigned a, b, c, d;
        hw_state = (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2)) ? 1 : 0;
        if (getenv("DARTER_CRC32C_SOFTWARE")) hw_state = 0;
    }
    return hw_state;
}
#else
int darter_crc32c_hw_available(void) { return 0; }
#endif

uint32_t darter_crc32c(uint32_t crc, const void *data, size_t length) {
#if defined(__x86_64__)
    if (darter_crc32c_hw_available()) return crc32c_hw(crc, data, length);
#endif
    return darter_crc32c_sw(crc, data, length);
}

