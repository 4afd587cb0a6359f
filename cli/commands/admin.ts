import { parse, UsageError } from "../args";
import { createPrisma } from "../../server/store/prisma";
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
  const db = createPrisma(env.DATABASE_URL);
  try {
    const user = await createUser(db, { email: values.email, password: values.password, admin: values.admin }, Math.round(env.STARTER_CREDITS * MILLI));
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
