import type { WebSocket } from "ws";

// tRPC sockets (the pages' subscriptions) by the API key they signed in with. A socket's
// caller is read once, when it opens, so a revoked key kept its socket, and new subscriptions
// on it (a job's live snapshot) went on streaming. Revoking the key closes them; volunteer
// sockets have their own list in the coordinator's edge.

const byKey = new Map<string, Set<WebSocket>>();

/** Remembers a tRPC socket opened with this key until it closes. */
export function holdKeySocket(keyId: string, ws: WebSocket) {
  let set = byKey.get(keyId);
  if (!set) byKey.set(keyId, (set = new Set()));
  set.add(ws);
  ws.once("close", () => {
    set.delete(ws);
    if (set.size === 0 && byKey.get(keyId) === set) byKey.delete(keyId);
  });
}

/** Closes the tRPC sockets opened with this key (it was just revoked); how many. */
export function closeKeySockets(keyId: string, reason: string): number {
  const set = byKey.get(keyId);
  if (!set) return 0;
  byKey.delete(keyId);
  for (const ws of set) ws.close(1008, reason);
  return set.size;
}
