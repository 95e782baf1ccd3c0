// Browser stand-in for node:os: only the byte order is used (checkpoint I/O assumes little-endian).
export function endianness(): 'LE' | 'BE' {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 'LE' : 'BE';
}
