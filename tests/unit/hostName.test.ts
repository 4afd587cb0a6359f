import { describe, expect, it } from "vitest";
import { browserHostName, cliHostName, describeUserAgent, helloHostName, hostNameProblem } from "../../worker/client/hostName";

// Real user agent strings, as the browsers send them.
const UA = {
  chromeWindows: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  chromeMac: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  chromeLinux: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  headlessChrome: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
  chromeAndroid: "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
  chromeIos: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
  chromeOs: "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  firefoxWindows: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
  firefoxMac: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:133.0) Gecko/20100101 Firefox/133.0",
  firefoxLinux: "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
  firefoxAndroid: "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
  firefoxIos: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/133.0 Mobile/15E148 Safari/605.1.15",
  safariMac: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
  safariIphone: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
  safariIpad: "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
  edgeWindows: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
  edgeMac: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
  edgeLinux: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
  edgeAndroid: "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 EdgA/131.0.0.0",
  edgeIos: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 EdgiOS/131.0.2903.64 Mobile/15E148 Safari/605.1.15",
  opera: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
  samsung: "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
};

describe("describeUserAgent", () => {
  it.each([
    ["chromeWindows", "Chrome", "Windows"], ["chromeMac", "Chrome", "macOS"], ["chromeLinux", "Chrome", "Linux"],
    ["headlessChrome", "Chrome", "Linux"], ["chromeAndroid", "Chrome", "Android"], ["chromeIos", "Chrome", "iOS"], ["chromeOs", "Chrome", "ChromeOS"],
    ["firefoxWindows", "Firefox", "Windows"], ["firefoxMac", "Firefox", "macOS"], ["firefoxLinux", "Firefox", "Linux"],
    ["firefoxAndroid", "Firefox", "Android"], ["firefoxIos", "Firefox", "iOS"],
    ["safariMac", "Safari", "macOS"], ["safariIphone", "Safari", "iOS"], ["safariIpad", "Safari", "iOS"],
    ["edgeWindows", "Edge", "Windows"], ["edgeMac", "Edge", "macOS"], ["edgeLinux", "Edge", "Linux"], ["edgeAndroid", "Edge", "Android"], ["edgeIos", "Edge", "iOS"],
    ["opera", "Opera", "Windows"], ["samsung", "Samsung Internet", "Android"],
  ] as const)("%s is %s on %s", (key, browser, os) => {
    expect(describeUserAgent(UA[key])).toEqual({ browser, os });
  });

  it("says null for what it cannot tell", () => {
    expect(describeUserAgent("")).toEqual({ browser: null, os: null });
    expect(describeUserAgent("curl/8.5.0")).toEqual({ browser: null, os: null });
    expect(describeUserAgent("Mozilla/5.0 (X11; Linux x86_64) SomeBrowser/1.0")).toEqual({ browser: null, os: "Linux" });
  });
});

describe("default host names", () => {
  it("name a browser by browser, OS and the first 4 characters of the volunteer id", () => {
    expect(browserHostName(UA.chromeLinux, "3f9aK2x_Lq8w")).toBe("Chrome on Linux · 3f9a");
    expect(browserHostName(UA.safariIphone, "Zz-9abcdefgh")).toBe("Safari on iOS · Zz-9");
    expect(browserHostName("Mozilla/5.0 (X11; Linux x86_64) SomeBrowser/1.0", "abcdefgh")).toBe("Browser on Linux · abcd");
    expect(browserHostName("curl/8.5.0", "abcdefgh")).toBe("Browser · abcd");
  });

  it("name a CLI volunteer by its platform", () => {
    expect(cliHostName("linux", "3f9aK2x_Lq8w")).toBe("CLI on Linux · 3f9a");
    expect(cliHostName("darwin", "3f9aK2x_Lq8w")).toBe("CLI on macOS · 3f9a");
    expect(cliHostName("win32", "3f9aK2x_Lq8w")).toBe("CLI on Windows · 3f9a");
    expect(cliHostName("haiku", "3f9aK2x_Lq8w")).toBe("CLI on haiku · 3f9a");
  });

  it("the server keeps a valid hello name and makes one from an old tab's user agent or from nothing", () => {
    expect(helloHostName({ volunteerId: "3f9aK2x_Lq8w", agent: "node", name: "  lab-box-1 " })).toBe("lab-box-1");
    expect(helloHostName({ volunteerId: "3f9aK2x_Lq8w", agent: "browser", name: UA.firefoxWindows.slice(0, 100) })).toBe("Firefox on Windows · 3f9a");
    expect(helloHostName({ volunteerId: "3f9aK2x_Lq8w", agent: "browser" })).toBe("Browser · 3f9a");
    expect(helloHostName({ volunteerId: "3f9aK2x_Lq8w", agent: "node", name: "bad\u0007name" })).toBe("CLI · 3f9a");
  });
});

describe("hostNameProblem", () => {
  it("accepts 1 to 60 characters after trimming, without control characters", () => {
    expect(hostNameProblem("lab-box-1")).toBeNull();
    expect(hostNameProblem("Küche · Ümlaut 🖥️")).toBeNull();
    expect(hostNameProblem("x".repeat(60))).toBeNull();
    expect(hostNameProblem("   ")).toBe("A host name cannot be empty.");
    expect(hostNameProblem("x".repeat(61))).toBe("A host name is at most 60 characters.");
    expect(hostNameProblem("tab\there")).toBe("A host name cannot contain control characters.");
    expect(hostNameProblem("line\nbreak")).toBe("A host name cannot contain control characters.");
    expect(hostNameProblem("evil\u202Eeman")).toBe("A host name cannot contain control characters.");
  });
});
