import { WorkerPool } from "../../worker/runtime/pool";
import { startKernelThread } from "../../worker/node/pool";
import { getKernel } from "../../worker/kernels";
import { canonicalJson, digestOf } from "./digest";

/** Longest a spot-check may take before the unit is decided without it. */
const CHECK_TIMEOUT_MS = 30_000;

/**
 * The server's own recomputation of a unit of a built-in kernel (a spot-check): the same
 * deterministic kernel code the volunteers run, on a worker thread of its own, so a check
 * never blocks the event loop. One thread: checks are a small share of the work, and the
 * coordinator must keep a core for dispatch.
 */
export class Verifier {
  private pool: WorkerPool | undefined;
  checks = 0;

  /** Whether units of this kernel can be recomputed here (built-in kernels, not consumers' programs). */
  static canCheck(kernel: string): boolean {
    return getKernel(kernel) !== undefined;
  }

  /** Starts the thread and runs one tiny unit, so the first real check does not wait for start-up. */
  async warmUp() {
    await this.run("pi", { samples: 1000, seed: 1 }, { seed: 1, samples: 1000 }).catch(() => undefined);
  }

  async recompute(kernel: string, params: unknown, input: unknown): Promise<{ output: unknown; json: string; digest: string }> {
    this.checks++;
    const { output } = await this.run(kernel, params, input);
    const json = canonicalJson(output);
    return { output, json, digest: digestOf(json) };
  }

  private run(kernel: string, params: unknown, input: unknown) {
    this.pool ??= new WorkerPool(() => startKernelThread({ maxOldGenerationSizeMb: 512 }), { threads: 1 });
    return this.pool.run({ kernel, params, input }, `check:${kernel}`, { timeoutMs: CHECK_TIMEOUT_MS });
  }

  close() {
    this.pool?.terminate();
    this.pool = undefined;
  }
}
