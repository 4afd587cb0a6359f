/** A short reason for a failed network call: "connection refused by 127.0.0.1:4000", "no answer within 10 s". */
export function describeNetworkError(e: unknown, url: string, timeoutMs: number): string {
  const err = e as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string; name?: string } };
  let host = url;
  try {
    host = new URL(url).host;
  } catch {}
  if (err?.name === "TimeoutError" || err?.name === "AbortError" || err?.cause?.name === "TimeoutError") {
    return `no answer from ${host} within ${formatSeconds(timeoutMs)}`;
  }
  const code = err?.cause?.code ?? err?.code;
  switch (code) {
    case "ECONNREFUSED":
      return `connection refused by ${host}`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `host ${host.replace(/:\d+$/, "")} not found`;
    case "ECONNRESET":
    case "UND_ERR_SOCKET":
      return `connection to ${host} was reset`;
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return `${host} is unreachable`;
    case "UND_ERR_CONNECT_TIMEOUT":
    case "ETIMEDOUT":
      return `connecting to ${host} timed out`;
  }
  if (err?.cause?.message) return `${err.cause.message} (${host})`;
  return err?.message ?? String(e);
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
