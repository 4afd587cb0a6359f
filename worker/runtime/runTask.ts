import { getKernel } from "../kernels/index";

export interface TaskRun {
  kernel: string;
  params: unknown;
  input: unknown;
}

export interface TaskResult {
  output: unknown;
  /** Compute time in milliseconds, measured where the kernel ran. */
  ms: number;
}

/**
 * Runs one unit. Params are parsed again (a no-op for params the server already parsed) so
 * that defaults and bounds hold whoever built the task.
 */
export function runTask(t: TaskRun): TaskResult {
  const kernel = getKernel(t.kernel);
  if (!kernel) throw new Error(`Unknown kernel "${t.kernel}"`);
  const start = performance.now();
  const output = kernel.run(kernel.params.parse(t.params), t.input);
  return { output, ms: performance.now() - start };
}
