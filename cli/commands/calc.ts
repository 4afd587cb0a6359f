import { parse, connection, connectionOptions, UsageError } from "../args";
import { apiClient } from "../client";

/** `tabgrid calc "2*(3+4)/5"`: one expression, evaluated by a volunteer, answered in milliseconds. */
export async function calc(argv: string[]): Promise<number> {
  // A leading space keeps "-3+4" from being read as an option (the expression is trimmed).
  const { values, positionals } = parse(argv.map((a) => (/^-[\d.(]/.test(a) ? ` ${a}` : a)), connectionOptions);
  // Words are joined, so `tabgrid calc 2 + 3` works unquoted (quote anything the shell expands, like *).
  const expression = positionals.join(" ").trim();
  if (!expression) throw new UsageError('give an expression: tabgrid calc "2*(3+4)/5"');
  const api = apiClient(connection(values));
  const r = await api.calc.evaluate.mutate({ expression });
  if (values.json) console.log(JSON.stringify({ expression: r.expression, value: r.value, volunteerId: r.volunteerId, ms: r.ms }));
  else console.log(String(r.value));
  return 0;
}
