/**
 * Sockets open at once per network address, up to `limit` each: `admit` takes one and gives
 * the release to call when it closes, or undefined when the address has its fill. `keyOf`
 * says what counts as one address (an IPv6 /64 or /48 rather than each of its addresses).
 */
export class AddressCounts {
  private readonly open = new Map<string, number>();

  constructor(
    private readonly limit: number,
    private readonly keyOf: (address: string) => string,
  ) {}

  admit(address: string): (() => void) | undefined {
    const key = this.keyOf(address);
    const n = this.open.get(key) ?? 0;
    if (n >= this.limit) return undefined;
    this.open.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(key) ?? 1) - 1;
      if (left > 0) this.open.set(key, left);
      else this.open.delete(key);
    };
  }
}
