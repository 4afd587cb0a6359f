import { parse, connection, connectionOptions, plural, UsageError } from "../args";
import { apiClient } from "../client";

type Client = ReturnType<typeof apiClient>;
type Listing = Awaited<ReturnType<Client["files"]["list"]["query"]>>;

const bytes = (n: number) =>
  n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GiB` : n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;

const usage = (l: Listing) =>
  `${bytes(l.usedBytes)} used${l.quotaBytes === null ? " (no quota)" : ` of ${bytes(l.quotaBytes)}`}` +
  (l.inputBytes > 0 ? `; your jobs' inputs take ${bytes(l.inputBytes)}${l.quotaBytes === null ? "" : ` of another ${bytes(l.quotaBytes)}`} until they are removed` : "") +
  (l.outputBytes > 0 ? `; your ended jobs' outputs take ${bytes(l.outputBytes)}${l.quotaBytes === null ? "" : ` of a third ${bytes(l.quotaBytes)}`} until you delete them (tabgrid job ID --delete)` : "");

/**
 * `tabgrid files`: the programs and data files you uploaded, and how much of your storage
 * quota they take. `tabgrid files rm HASH…` deletes them (a hash may be shortened to 8 or
 * more of its first digits, as long as it names one file).
 */
export async function files(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, connectionOptions);
  const api = apiClient(connection(values));
  const [sub, ...hashes] = positionals;
  if (sub === undefined || sub === "ls" || sub === "list") {
    if (hashes.length) throw new UsageError("files ls takes no arguments");
    const listing = await api.files.list.query();
    if (values.json) console.log(JSON.stringify(listing));
    else print(listing);
    return 0;
  }
  if (sub !== "rm") throw new UsageError(`unknown files command "${sub}" (ls or rm)`);
  if (hashes.length === 0) throw new UsageError("files rm takes the hash of each file to delete (see tabgrid files)");
  const listing = await api.files.list.query();
  const targets = hashes.map((h) => pick(listing, h));
  const deleted: { hash: string; type: string; name: string; bytesFreed: number }[] = [];
  for (const matches of targets) {
    for (const f of matches) {
      const r = f.type === "data" ? await api.files.deleteData.mutate({ hash: f.hash }) : await api.files.deleteProgram.mutate({ hash: f.hash });
      deleted.push({ hash: f.hash, type: f.type, name: f.name, bytesFreed: r.bytesFreed });
      if (!values.json) console.log(`deleted ${f.type} ${f.name} (${f.hash.slice(0, 12)}…, ${bytes(f.size)})`);
    }
  }
  const after = await api.files.list.query();
  if (values.json) console.log(JSON.stringify({ deleted, usedBytes: after.usedBytes, quotaBytes: after.quotaBytes }));
  else console.log(usage(after));
  return 0;
}

/** The files a hash or prefix names: one program, one data file, or both when the same bytes were uploaded as each. */
function pick(listing: Listing, given: string): Listing["files"] {
  const h = given.toLowerCase();
  if (!/^[0-9a-f]{8,64}$/.test(h)) throw new UsageError(`"${given}" is not a file's hash (8 to 64 hex digits; see tabgrid files)`);
  const matches = listing.files.filter((f) => f.hash.startsWith(h));
  const distinct = new Set(matches.map((f) => f.hash));
  if (distinct.size === 0) throw new UsageError(`you have no file ${given} (see tabgrid files)`);
  if (distinct.size > 1) throw new UsageError(`${given} names ${plural(distinct.size, "file")}; give more of its digits`);
  return matches;
}

function print(l: Listing) {
  if (l.files.length === 0) console.log("no files");
  else {
    const rows = l.files.map((f) => [f.type === "program" ? `program (${f.kind})` : "data", bytes(f.size), f.createdAt.slice(0, 16).replace("T", " "), f.hash.slice(0, 16), f.name]);
    const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i].length)));
    for (const r of rows) console.log(r.map((c, i) => (i < 4 ? c.padEnd(widths[i]) : c)).join("  "));
  }
  console.log(usage(l));
}
