import { expect, it } from "vitest";
import { parseEnv } from "../../server/env";

it("grows the heap 25% between full collections unless told otherwise, and refuses a step that is not a whole percentage", () => {
  expect(parseEnv({}).HEAP_GROWTH_PERCENT).toBe(25);
  expect(parseEnv({ HEAP_GROWTH_PERCENT: "0" }).HEAP_GROWTH_PERCENT).toBe(0);
  for (const bad of ["-5", "12.5", "lots", "1000"]) {
    expect(() => parseEnv({ HEAP_GROWTH_PERCENT: bad })).toThrow(/HEAP_GROWTH_PERCENT/);
  }
});
