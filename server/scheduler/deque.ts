/**
 * Double-ended queue on a power-of-two ring buffer. A job's queue can hold millions of
 * units and re-queued units go to the front, so Array.shift/unshift (O(n) each) are out.
 */
export class Deque<T> {
  private buf: (T | undefined)[];
  private head = 0;
  private count = 0;

  constructor(initialCapacity = 16) {
    let cap = 16;
    while (cap < initialCapacity) cap *= 2;
    this.buf = new Array<T | undefined>(cap);
  }

  get size(): number {
    return this.count;
  }

  pushBack(item: T): void {
    if (this.count === this.buf.length) this.grow();
    this.buf[(this.head + this.count) & (this.buf.length - 1)] = item;
    this.count++;
  }

  pushFront(item: T): void {
    if (this.count === this.buf.length) this.grow();
    this.head = (this.head - 1) & (this.buf.length - 1);
    this.buf[this.head] = item;
    this.count++;
  }

  popFront(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.buf[this.head];
    // Drop the reference so finished units can be garbage-collected.
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) & (this.buf.length - 1);
    this.count--;
    return item;
  }

  peekFront(): T | undefined {
    return this.count === 0 ? undefined : this.buf[this.head];
  }

  clear(): void {
    this.buf = new Array<T | undefined>(16);
    this.head = 0;
    this.count = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    const mask = this.buf.length - 1;
    for (let i = 0; i < this.count; i++) yield this.buf[(this.head + i) & mask] as T;
  }

  private grow(): void {
    const old = this.buf;
    const mask = old.length - 1;
    const next = new Array<T | undefined>(old.length * 2);
    for (let i = 0; i < this.count; i++) next[i] = old[(this.head + i) & mask];
    this.buf = next;
    this.head = 0;
  }
}
