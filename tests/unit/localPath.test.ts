import { describe, expect, it } from "vitest";
import { localPath } from "../../app/_components/localPath";

// The sign-in page goes to its callbackUrl afterwards: only a path on this site.
describe("localPath", () => {
  it("keeps a path on this site", () => {
    expect(localPath("/jobs/abc?tab=units")).toBe("/jobs/abc?tab=units");
    expect(localPath("/admin")).toBe("/admin");
  });

  it("refuses anything a browser would read as another host, or no path", () => {
    for (const next of ["//evil.example", "/\\evil.example", "/\t/evil.example", "https://evil.example", "javascript:alert(1)", "evil", "", null, undefined]) {
      expect(localPath(next), JSON.stringify(next)).toBe("/jobs");
    }
  });
});
