import { execFile } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";

const repoRoot = path.resolve(import.meta.dirname, "../..");

// A million nested parentheses (2 MB, within the upload limit) overflow the stack of esbuild's
// service process; every later compile in the server failed until a restart. Run in a child
// process: the dying service prints its whole stack to the stderr it shares.
const script = `
import { compileJsProgram } from ${JSON.stringify(path.join(repoRoot, "worker/sandbox/compileJs.ts"))};
const deep = "export function run() { return " + "(".repeat(1_000_000) + "1" + ")".repeat(1_000_000) + "; }";
const outcome = (p) => p.then((c) => "compiled, exports " + c.exports.join(","), (e) => e.message);
// Another account's upload compiles while the deep one is parsed; a third after the service died.
const [mallory, alice] = await Promise.all([
  outcome(compileJsProgram(deep, { owner: "mallory" })),
  new Promise((r) => setTimeout(r, 50)).then(() => outcome(compileJsProgram("export function run() { return 1; }", { owner: "alice" }))),
]);
const later = await outcome(compileJsProgram("export const run = () => 2;", { owner: "bob" }));
const malloryAgain = await outcome(compileJsProgram("export function run() { return 3; }", { owner: "mallory" }));
console.log(JSON.stringify({ mallory, alice, later, malloryAgain }));
`;

describe("esbuild's service", () => {
  it("is started again when a program kills it; the program is refused and its owner waits", async () => {
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: repoRoot, timeout: 60_000, maxBuffer: 64 * 2 ** 20 }, (e, stdout, stderr) =>
        e ? reject(new Error(`${e.message}\n${stderr.slice(-2000)}`)) : resolve(stdout));
    });
    expect(JSON.parse(out.trim().split("\n").at(-1)!)).toEqual({
      mallory: "the program could not be compiled: it stopped the compiler (nested too deep, or too large to parse)",
      alice: "compiled, exports run",
      later: "compiled, exports run",
      malloryAgain: "your last program stopped the compiler; upload another in 10 min",
    });
  }, 90_000);
});
