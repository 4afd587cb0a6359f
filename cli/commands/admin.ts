import fs from "node:fs";
import { parse, UsageError } from "../args";
import { createPrisma } from "../../server/store/prisma";
import { databaseFile, databaseKind, redactUrl } from "../../server/store/databaseUrl";
import { createUser } from "../../server/services/users/users";
import { createApiKey } from "../../server/auth/apiKeys";
import { parseEnv } from "../../server/env";
import { MILLI } from "../../server/services/credits/accounts";

/** Works on the database directly (DATABASE_URL), like a createsuperuser command. */
export async function admin(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== "create-user") throw new UsageError("usage: tabgrid admin create-user --email E --password P [--admin] [--api-key] [--json]");
  const { values } = parse(rest, {
    email: { type: "string" }, password: { type: "string" }, admin: { type: "boolean", default: false },
    "api-key": { type: "boolean", default: false }, json: { type: "boolean", default: false },
  });
  if (!values.email || !values.password) throw new UsageError("--email and --password are required");
  const env = parseEnv();
  const url = env.DATABASE_URL;
  const setUp = `start the server once with this DATABASE_URL (npm start creates and migrates its database), or run npm run db:migrate`;
  // Opening a SQLite file that is not there would create an empty one: say so instead.
  if (databaseKind(url) === "sqlite" && !fs.existsSync(databaseFile(url))) throw new Error(`no database at ${redactUrl(url)}: ${setUp}`);
  const db = createPrisma(url);
  try {
    const user = await createUser(db, { email: values.email, password: values.password, admin: values.admin }, Math.round(env.STARTER_CREDITS * MILLI)).catch((e: Error & { code?: string }) => {
      // Prisma's codes: P1003, no such database; P2021, a missing table (a database never migrated).
      if (e.code === "P1003") throw new Error(`there is no database ${redactUrl(url)}: ${setUp}`);
      if (e.code === "P2021") throw new Error(`the database at ${redactUrl(url)} has no Tabgrid tables yet: ${setUp}`);
      throw e;
    });
    const key = values["api-key"] ? (await createApiKey(db, user.id, "created by tabgrid admin")).key : undefined;
    if (values.json) console.log(JSON.stringify({ id: user.id, email: user.email, role: user.role, ...(key ? { apiKey: key } : {}) }));
    else {
      console.log(`created ${user.role} ${user.email} (${user.id})`);
      if (key) console.log(`API key (shown once): ${key}`);
    }
    return 0;
  } finally {
    await db.$disconnect();
  }
}
