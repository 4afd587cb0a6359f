// Compiles every examples/**/*.wat into a .wasm beside it with the wabt package (the same
// source always gives the same bytes, so a program's sha256 is reproducible).
import fs from "node:fs";
import path from "node:path";
import wabtInit from "wabt";

const root = path.resolve(import.meta.dirname, "..", "examples");
const wabt = await wabtInit();
const sources = fs.readdirSync(root, { recursive: true }).filter((f) => f.endsWith(".wat"));
for (const rel of sources) {
  const file = path.join(root, rel);
  const mod = wabt.parseWat(rel, fs.readFileSync(file, "utf8"));
  mod.validate();
  const { buffer } = mod.toBinary({ write_debug_names: false });
  mod.destroy();
  const out = file.replace(/\.wat$/, ".wasm");
  fs.writeFileSync(out, buffer);
  console.log(`${path.relative(process.cwd(), out)}: ${buffer.length} bytes`);
}
