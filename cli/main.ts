import { UsageError } from "./args";
import { kernels } from "../worker/kernels";

type Command = (argv: string[]) => Promise<number>;
/**
 * Each command's module is loaded when it runs: a volunteer needs neither the database client
 * (admin) nor the API client (submit, job), and loading every module through the TypeScript
 * loader took most of a second at each start.
 */
const commands: Record<string, () => Promise<Command>> = {
  volunteer: async () => (await import("./commands/volunteer")).volunteer,
  submit: async () => (await import("./commands/jobs")).submit,
  job: async () => (await import("./commands/jobs")).job,
  status: async () => (await import("./commands/jobs")).status,
  admin: async () => (await import("./commands/admin")).admin,
  watch: async () => (await import("./commands/watch")).watch,
  calc: async () => (await import("./commands/calc")).calc,
  files: async () => (await import("./commands/files")).files,
};

const USAGE = `tabgrid: volunteer computing from the command line

  tabgrid volunteer [--url URL] [--threads N] [--throttle 0.5] [--api-key KEY] [--identity FILE] [--name NAME]
  tabgrid submit KERNEL --chunks N [--params JSON] [--wait] [--json]
                 [--replicas R] [--quorum Q] [--max-replicas M] [--tolerance REL] [--no-adaptive] [--output FILE]
                 [--idempotency-key KEY]   (the same key again returns the first job; default: a new one per run)
  tabgrid submit --program FILE.js|FILE.wasm (--input-json FILE | --range A:B | --lines FILE | --blocks FILE --block-size N | --input-csv FILE)
                 [--chunks N] [--merge concat|reduce|mean|median|trimmed-mean [--trim F]] [--rounds N [--round-share F] [--speculate]]
                 [--time-limit S] [--output-limit BYTES] [--cpu-seconds S] [--params JSON] [--wait] [--json]
  tabgrid job ID [--wait] [--json] [--output FILE] [--units FILE] [--accept-unconfirmed] [--replicas R [--quorum Q]]
  tabgrid job ID --delete [--json]   (an ended job: its inputs, outputs and result go, and their storage with them)
  tabgrid status [--json]
  tabgrid files [ls | rm HASH...] [--json]   (your programs and data files, your storage quota; rm deletes)
  tabgrid calc "2*(3+4)/5" [--json]     (+ - * / % ^, parentheses; evaluated by a volunteer)
  tabgrid admin create-user --email E --password P [--admin] [--api-key] [--json]
  tabgrid admin grant --email E --credits N [--memo TEXT] [--json]
  tabgrid watch --url URL [--interval S] [--failures N] [--timeout S] [--webhook URL ...]
                [--webhook-format slack|alertmanager] [--email-to ADDR ...] [--smtp URL] [--once] [--json]

Kernels: ${Object.keys(kernels).join(", ")}. --url and --api-key default to TABGRID_URL
(http://localhost:3000) and TABGRID_API_KEY; volunteer --url may list the nodes of a cluster,
comma-separated, tried in turn after each disconnect. admin works on DATABASE_URL directly
(grant: credits to an account, out of the system's grants, with a memo in its ledger).
watch probes /api/health (every 30 s, down after 2 failures, 10 s timeout) and notifies on
down and recovery; env fallbacks TABGRID_WATCH_WEBHOOK, TABGRID_WATCH_EMAIL_TO, SMTP_URL.`;

const [name, ...argv] = process.argv.slice(2);
let code = 0;
if (!name || name === "help" || name === "--help" || name === "-h" || argv.includes("--help") || argv.includes("-h")) {
  console.log(USAGE);
} else if (!commands[name]) {
  console.error(`tabgrid: unknown command "${name}"\n\n${USAGE}`);
  code = 2;
} else {
  try {
    code = await (await commands[name]())(argv);
  } catch (e) {
    const { ZodError } = await import("zod");
    const { describeError } = await import("./client");
    if (e instanceof UsageError) {
      console.error(`tabgrid ${name}: ${e.message}`);
      code = 2;
    } else if (e instanceof ZodError) {
      console.error(`tabgrid ${name}: ${e.issues.map((i) => i.message).join("; ")}`);
      code = 1;
    } else {
      const urlFlag = argv.indexOf("--url");
      const url = (urlFlag >= 0 ? argv[urlFlag + 1] : undefined) ?? process.env.TABGRID_URL ?? "http://localhost:3000";
      console.error(`tabgrid ${name}: ${describeError(e, url)}`);
      code = 1;
    }
  }
}
// Output to a pipe is written asynchronously: exiting at once cut a large --json report short
// (at ~200 KB). Each stream calls back once what was written before has gone out.
const flushed = (s: NodeJS.WriteStream) => new Promise<void>((r) => s.write("", () => r()));
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);
