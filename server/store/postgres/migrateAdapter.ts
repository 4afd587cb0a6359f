import pg from "pg";
import { PrismaPg } from "@prisma/adapter-pg";

// The Prisma CLI's adapter for PostgreSQL. Prisma 6.19's schema engine reads catalog columns
// of type `name` (an internal 63-byte string type), which @prisma/adapter-pg refuses to
// describe ("Column type 'name' could not be deserialized", prisma/orm#27403, open), so every
// migrate command fails. Each connection here reports `name` columns as `text`: their values
// already arrive as strings, only the type id changes.

const NAME_OID = 19;
const TEXT_OID = 25;

type Fields = { fields?: Array<{ dataTypeID: number }> };

function namesAsText<T>(result: T): T {
  for (const f of (result as Fields)?.fields ?? []) if (f.dataTypeID === NAME_OID) f.dataTypeID = TEXT_OID;
  return result;
}

export function migrateAdapter(connectionString: string): PrismaPg {
  const pool = new pg.Pool({ connectionString, max: 2 });
  pool.on("connect", (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      const cb = args.at(-1);
      if (typeof cb === "function") {
        args[args.length - 1] = (err: unknown, res: unknown) => cb(err, err ? res : namesAsText(res));
        return query(...args);
      }
      const out = query(...args) as Promise<unknown> | undefined;
      return out && typeof out.then === "function" ? out.then(namesAsText) : out;
    };
  });
  return new PrismaPg(pool);
}
