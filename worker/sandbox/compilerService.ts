import * as esbuild from "esbuild";
import { Semaphore } from "async-mutex";

// esbuild compiles in a service process of its own (Go), shared by the whole server. Input it
// cannot parse can kill it: a 2 MB upload of a million nested parentheses overflowed its
// stack, and from then on every compile in the process failed ("The service is no longer
// running") until a restart. Now the service is started afresh and the compile tried once
// more; a program that stops it twice is refused, and its owner's next JavaScript uploads
// wait COMPILER_COOL_DOWN_MS (each crash also prints the service's whole stack to stderr).

/** How long an owner whose program stopped the compiler waits before uploading another. */
export const COMPILER_COOL_DOWN_MS = 10 * 60_000;

/** Bumped at each restart, so compiles that failed on the same dead service restart it once. */
let generation = 0;
/**
 * Compiles share the service; a second try has it alone (all the permits), so that what kills
 * the service then is that program, not one compiled beside it, and the others' first tries
 * are not killed by it.
 */
const ALONE = 1_000;
const service = new Semaphore(ALONE);
const stoppedBy = new Map<string, number>();

const serviceDied = (e: unknown) => /The service (is no longer running|was stopped)/.test(String((e as Error | undefined)?.message));

/** Why `owner` may not compile now, or undefined. */
export function compilerRefusal(owner: string | undefined, now = Date.now()): string | undefined {
  const until = owner === undefined ? undefined : stoppedBy.get(owner);
  if (until === undefined) return undefined;
  if (until <= now) {
    stoppedBy.delete(owner!);
    return undefined;
  }
  return `your last program stopped the compiler; upload another in ${Math.ceil((until - now) / 60_000)} min`;
}

/**
 * Runs `compile` (esbuild calls), restarting esbuild's service if it died on the way and
 * trying once more. Undefined when the service died both times: the program is the cause.
 */
export async function withCompiler<T>(compile: () => Promise<T>, owner?: string): Promise<{ value: T } | undefined> {
  for (let attempt = 1; ; attempt++) {
    const started = generation;
    try {
      return { value: await service.runExclusive(compile, attempt === 1 ? 1 : ALONE) };
    } catch (e) {
      if (!serviceDied(e)) throw e;
      // Another compile may have started a fresh service already: that one is not stopped.
      if (generation === started) {
        generation++;
        await esbuild.stop();
      }
      if (attempt >= 2) {
        if (owner !== undefined) stoppedBy.set(owner, Date.now() + COMPILER_COOL_DOWN_MS);
        return undefined;
      }
    }
  }
}
