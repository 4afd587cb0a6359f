/**
 * Binary min-heap of lease deadlines with lazy deletion.
 *
 * Most leases end by a result long before their deadline; removing them from the middle of
 * a heap would need a position index kept up to date on every swap. Instead the owner
 * calls `discard()` when an entry goes dead and the heap skips dead entries as they reach
 * the top; when dead entries outnumber live ones it rebuilds itself, so memory stays
 * proportional to the live leases.
 */
export class LeaseHeap<T> {
  private keys: number[] = [];
  private items: T[] = [];
  private dead = 0;

  /**
   * @param isLive tells whether an entry pushed with this key still stands. Passing the
   *   key lets an owner re-push an item with a new deadline (lease extension) and have the
   *   old entry count as dead.
   * @param minCompact below this many dead entries a rebuild is not worth it.
   */
  constructor(
    private readonly isLive: (item: T, key: number) => boolean,
    private readonly minCompact = 1024,
  ) {}

  /** Entries stored, dead ones included. */
  get size(): number {
    return this.keys.length;
  }

  /** Entries that still stand. */
  get liveSize(): number {
    return this.keys.length - this.dead;
  }

  push(key: number, item: T): void {
    this.keys.push(key);
    this.items.push(item);
    this.siftUp(this.keys.length - 1);
  }

  /** One entry previously pushed is no longer live; call after `isLive` turns false. */
  discard(): void {
    this.dead++;
    if (this.dead > this.minCompact && this.dead > this.keys.length - this.dead) this.compact();
  }

  /** Smallest live key, dropping dead entries found on top. */
  peekKey(): number | undefined {
    this.dropDeadTop();
    return this.keys.length === 0 ? undefined : this.keys[0];
  }

  /**
   * Removes and returns every live entry with key <= now, earliest first. The entries
   * popped stay "live" as far as the heap knows: the owner must not `discard()` them.
   */
  popDue(now: number): T[] {
    const out: T[] = [];
    for (;;) {
      this.dropDeadTop();
      if (this.keys.length === 0 || (this.keys[0] as number) > now) return out;
      out.push(this.items[0] as T);
      this.removeTop();
    }
  }

  /** Rebuilds from live entries only, in O(n). */
  compact(): void {
    const keys: number[] = [];
    const items: T[] = [];
    for (let i = 0; i < this.keys.length; i++) {
      const key = this.keys[i] as number;
      const item = this.items[i] as T;
      if (this.isLive(item, key)) {
        keys.push(key);
        items.push(item);
      }
    }
    this.keys = keys;
    this.items = items;
    this.dead = 0;
    for (let i = (keys.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private dropDeadTop(): void {
    while (this.keys.length > 0 && !this.isLive(this.items[0] as T, this.keys[0] as number)) {
      this.removeTop();
      this.dead--;
    }
  }

  private removeTop(): void {
    const lastKey = this.keys.pop() as number;
    const lastItem = this.items.pop() as T;
    if (this.keys.length > 0) {
      this.keys[0] = lastKey;
      this.items[0] = lastItem;
      this.siftDown(0);
    }
  }

  private siftUp(i: number): void {
    const keys = this.keys;
    const items = this.items;
    const key = keys[i] as number;
    const item = items[i] as T;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pk = keys[parent] as number;
      if (pk <= key) break;
      keys[i] = pk;
      items[i] = items[parent] as T;
      i = parent;
    }
    keys[i] = key;
    items[i] = item;
  }

  private siftDown(i: number): void {
    const keys = this.keys;
    const items = this.items;
    const n = keys.length;
    const key = keys[i] as number;
    const item = items[i] as T;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      const right = child + 1;
      if (right < n && (keys[right] as number) < (keys[child] as number)) child = right;
      const ck = keys[child] as number;
      if (ck >= key) break;
      keys[i] = ck;
      items[i] = items[child] as T;
      i = child;
    }
    keys[i] = key;
    items[i] = item;
  }
}
