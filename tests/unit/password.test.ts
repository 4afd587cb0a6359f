import { describe, expect, it } from "vitest";
import { CONCURRENT_HASHES, hashesRunning, hashPassword, verifyPassword } from "../../server/auth/password";

describe("password hashes", () => {
  it("verify the right password only", async () => {
    const stored = await hashPassword("correct horse battery");
    expect(stored).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(await verifyPassword("correct horse battery", stored)).toBe(true);
    expect(await verifyPassword("correct horse batterY", stored)).toBe(false);
  });

  it(`take at most ${CONCURRENT_HASHES} of libuv's threads however many are asked for at once`, async () => {
    const stored = await hashPassword("a password");
    let most = 0;
    const watch = setInterval(() => (most = Math.max(most, hashesRunning())), 1);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => verifyPassword(i % 2 ? "a password" : "wrong", stored)));
    clearInterval(watch);
    expect(results).toEqual([false, true, false, true, false, true, false, true]);
    expect(most).toBe(CONCURRENT_HASHES);
    expect(hashesRunning()).toBe(0);
  });
});
