// The isolate's stack-trace callback, for program processes and threads. Node installs one of
// its own (host code) that formats every error's stack, including a program's; a program that
// makes it overflow the stack receives the host-realm RangeError it throws, and through that
// error's constructor the host's Function and `process`. Replacing it with the program
// context's formatter (worker/sandbox/vmHost.ts) means no host code runs when a program's
// stack is formatted, so whatever is thrown there belongs to the program's realm.
//
// Node has no public API for it: the internal binding needs --expose-internals (the program
// process and thread are started with it). Without it, the context's fixed
// Error.prepareStackTrace still keeps host frames out of stacks, but the overflow remains.
import type { StackFormatter } from "../sandbox/vmHost";

export function isolateStackCallback(load: (id: string) => unknown): ((f: StackFormatter) => void) | undefined {
  try {
    const { internalBinding } = load("internal/test/binding") as { internalBinding(name: string): Record<string, unknown> };
    const set = internalBinding("errors").setPrepareStackTraceCallback;
    if (typeof set !== "function") return undefined;
    return (f) => (set as (f: StackFormatter) => void)(f);
  } catch {
    return undefined;
  }
}
