#ifndef DARTER_CHECKSUM_H
#define DARTER_CHECKSUM_H
#include <stddef.h>
#include <stdint.h>

/// CRC32C (Castagnoli). Uses SSE4.2 when the CPU has it, else a table.
uint32_t darter_crc32c(uint32_t crc, const void *data, size_t length);
/// The portable table implementation (tests compare both).
uint32_t darter_crc32c_sw(uint32_t crc, const void *data, size_t length);
/// 1 when the hardware path is in use.
int darter_crc32c_hw_available(void);

#endif
