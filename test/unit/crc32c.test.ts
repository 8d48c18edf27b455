import { describe, expect, it } from 'vitest';
import { checksumValue, crc32c } from '../../core/gcp/crc32c.js';

describe('crc32c (Castagnoli)', () => {
  it('matches the standard check value', () => {
    expect(crc32c('123456789')).toBe(0xe3069283);
  });

  it('matches RFC 3720 (iSCSI) test vectors', () => {
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    const inc = Uint8Array.from({ length: 32 }, (_, i) => i);
    expect(crc32c(inc)).toBe(0x46dd794e);
    const dec = Uint8Array.from({ length: 32 }, (_, i) => 31 - i);
    expect(crc32c(dec)).toBe(0x113fdb5c);
  });

  it('handles empty input and UTF-8 strings like their bytes', () => {
    expect(crc32c('')).toBe(0);
    expect(crc32c('é✓')).toBe(crc32c(Buffer.from('é✓', 'utf8')));
    expect(crc32c('The quick brown fox jumps over the lazy dog')).toBe(0x22620404);
  });

  it('supports incremental computation via seed', () => {
    const whole = crc32c('hello world');
    expect(crc32c(' world', crc32c('hello'))).toBe(whole);
  });

  it('normalises int64 checksum representations', () => {
    expect(checksumValue('3808858755')).toBe(0xe3069283);
    expect(checksumValue(3808858755)).toBe(0xe3069283);
    expect(checksumValue({ toString: () => '42' })).toBe(42);
    expect(checksumValue(undefined)).toBeUndefined();
    expect(checksumValue(null)).toBeUndefined();
    expect(checksumValue('x')).toBeUndefined();
  });
});
