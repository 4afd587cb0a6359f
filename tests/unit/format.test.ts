import { describe, expect, it } from "vitest";
import { creditCount, times } from "../../app/_components/format";

describe("figures as the pages show them", () => {
  it("shows ratios with two decimals, and small ones with two significant digits rather than 0.00", () => {
    expect(times(2)).toBe("2.00×");
    expect(times(1.234)).toBe("1.23×");
    expect(times(0.25)).toBe("0.25×");
    expect(times(0.003281)).toBe("0.0033×");
    expect(times(0)).toBe("0.00×");
  });

  it("says 1 credit, not 1 credits", () => {
    expect(creditCount(1000)).toBe("1 credit");
    expect(creditCount(2500)).toBe("2.5 credits");
  });
});
