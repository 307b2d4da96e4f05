// Go's and Rust's string order (byte-wise over UTF-8), which istioctl's tables and ztunnel's dump sort
// by; JavaScript's < compares UTF-16 code units, which differs for characters beyond U+FFFF.

export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
