// Types of scripts/build-server.mjs for the TypeScript that imports it.
export const SERVER_BUNDLE: string;
export function buildServer(outfile?: string): Promise<string>;
export function ownServerBundle(tag: string): Promise<string>;
