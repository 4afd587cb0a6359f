import { describe, expect, it } from "vitest";
import { compileJsProgram, programFileName } from "../../worker/sandbox/compileJs";
import { locateProgramError } from "../../server/services/programs/programErrors";

describe("a program's errors name the uploaded file", () => {
  it("file names are reduced to a safe last path segment", () => {
    expect(programFileName("myprog.js")).toBe("myprog.js");
    expect(programFileName("../../etc/my prog (2).js")).toBe("my_prog__2_.js");
    expect(programFileName("C:\\Users\\me\\prog.js")).toBe("prog.js");
    expect(programFileName("evil\n\u202Eprog.js")).toBe("evil__prog.js");
    expect(programFileName("")).toBe("program.js");
    expect(programFileName("..")).toBe("program.js");
    expect(programFileName(undefined)).toBe("program.js");
  });

  it("compile errors say file:line:column", async () => {
    await expect(compileJsProgram("export function run(x) {\n  return x +;\n}", { fileName: "sum.js" })).rejects.toThrow(/^sum\.js:2:\d+: Unexpected ";"/);
  });

  it("positions in the compiled script map back to the source line", async () => {
    const source = "// a comment\n\nexport function run(x) {\n  return x.missing.deeper;\n}\n";
    const c = await compileJsProgram(source, { fileName: "deep.js" });
    const lines = c.script.split("\n");
    const line = lines.findIndex((l) => l.includes("x.missing.deeper")) + 1;
    const column = lines[line - 1].indexOf("x.missing") + 1;
    expect(line).toBeGreaterThan(4); // the script is not the source: esbuild's wrapper comes first
    const error = `TypeError: Cannot read properties of undefined (at line ${line}, column ${column} of the compiled program)`;
    expect(locateProgramError(error, "deep.js", c.sourceMap)).toBe("TypeError: Cannot read properties of undefined (at deep.js:4:10)");
    expect(locateProgramError(`Error: x\n    at run (program.js:${line}:${column})`, "deep.js", c.sourceMap)).toBe("Error: x\n    at run (deep.js:4:10)");
    // Without a map (uploaded before there was one), only the file is named.
    expect(locateProgramError(error, "deep.js", null)).toBe(`TypeError: Cannot read properties of undefined (at line ${line}, column ${column} of the compiled deep.js)`);
  });
});
