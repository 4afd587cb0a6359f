// Types of scripts/build-server.mjs for the TypeScript that imports it.
/** The entry of the default build, relative to the checkout: what `npm run serve` runs. */
export const SERVER_BUNDLE: string;
/** Builds into outDir (default dist/server); returns the entry's absolute path. */
export function buildServer(outDir?: string): Promise<string>;
/** This process's own build (dist/<tag>-<pid>/), built once; returns the entry's absolute path. */
export function ownServerBundle(tag: string): Promise<string>;
/** Environment the server's process starts with unless the caller's sets it (malloc's arenas). */
export const SERVER_PROCESS_ENV: Readonly<Record<string, string>>;
/** `env` with SERVER_PROCESS_ENV's defaults under it. */
export function serverProcessEnv<T extends Record<string, string | undefined>>(env: T): T & Record<string, string | undefined>;
