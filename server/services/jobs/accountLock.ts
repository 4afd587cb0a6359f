/**
 * One holder at a time per key, in this process: calls with the same key run in turn, others
 * at once. For a check that must hold until its write is durable (a budget: check, then commit).
 */
const tails = new Map<string, Promise<void>>();

export async function withAccountLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const before = tails.get(key) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const tail = before.then(() => mine);
  tails.set(key, tail);
  await before;
  try {
    return await fn();
  } finally {
    release();
    if (tails.get(key) === tail) tails.delete(key);
  }
}
