// Our own codec rather than btoa/atob: those go through a binary string, which for a 32 MB
// image is slow and memory-hungry, and Buffer does not exist in a browser worker.
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const CODES = new Uint8Array(ALPHABET.length);
for (let i = 0; i < ALPHABET.length; i++) CODES[i] = ALPHABET.charCodeAt(i);
const LOOKUP = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) LOOKUP[ALPHABET.charCodeAt(i)] = i;

export const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/** Bytes a canonical padded base64 string of this length and padding decodes to. */
export function base64ByteLength(s: string): number {
  if (s.length % 4 !== 0) return -1;
  const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
  return (s.length / 4) * 3 - pad;
}

export function encodeBase64(bytes: Uint8Array): string {
  const out = new Uint8Array(Math.ceil(bytes.length / 3) * 4);
  let o = 0;
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out[o++] = CODES[n >> 18];
    out[o++] = CODES[(n >> 12) & 63];
    out[o++] = CODES[(n >> 6) & 63];
    out[o++] = CODES[n & 63];
  }
  const rest = bytes.length - i;
  if (rest > 0) {
    const n = (bytes[i] << 16) | (rest === 2 ? bytes[i + 1] << 8 : 0);
    out[o++] = CODES[n >> 18];
    out[o++] = CODES[(n >> 12) & 63];
    out[o++] = rest === 2 ? CODES[(n >> 6) & 63] : 61;
    out[o++] = 61;
  }
  // TextDecoder turns ASCII bytes into a string in one native call, in Node and browsers.
  return new TextDecoder().decode(out);
}

export function decodeBase64(s: string): Uint8Array {
  const len = base64ByteLength(s);
  if (len < 0 || !BASE64_RE.test(s)) throw new Error("invalid base64");
  const out = new Uint8Array(len);
  let o = 0;
  for (let i = 0; i < s.length; i += 4) {
    const a = LOOKUP[s.charCodeAt(i)];
    const b = LOOKUP[s.charCodeAt(i + 1)];
    const c = s.charCodeAt(i + 2) === 61 ? 0 : LOOKUP[s.charCodeAt(i + 2)];
    const d = s.charCodeAt(i + 3) === 61 ? 0 : LOOKUP[s.charCodeAt(i + 3)];
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = n >> 16;
    if (o < len) out[o++] = (n >> 8) & 255;
    if (o < len) out[o++] = n & 255;
  }
  return out;
}
