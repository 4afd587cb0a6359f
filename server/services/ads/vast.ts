export interface VastMedia {
  mediaUrl: string;
  mimeType: string;
  durationSeconds: number;
  clickUrl: string | null;
}

/** Media the player can show: progressive video the browser plays, or an image. */
const PLAYABLE = /^(video\/(mp4|webm|ogg)|image\/(png|jpeg|gif|webp|svg\+xml))$/i;

/**
 * vast-client's own URL handler throws from a timer on timeout (an uncaught exception in
 * Node), so fetching is ours: a bounded fetch, then xmldom (vast-client's own parser) for the DOM.
 */
function urlHandler(timeoutMs: number) {
  return {
    async get(url: string) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: "follow" });
        if (!res.ok) return { error: new Error(`VAST tag answered HTTP ${res.status}`), statusCode: res.status };
        const text = await res.text();
        if (text.length > 1024 * 1024) return { error: new Error("VAST document too large"), statusCode: res.status };
        const { DOMParser } = await import("@xmldom/xmldom");
        const xml = new DOMParser().parseFromString(text, "text/xml");
        return { xml, details: { byteLength: text.length, statusCode: res.status, rawXml: text } };
      } catch (error) {
        return { error, statusCode: (error as Error).name === "TimeoutError" ? 408 : null };
      }
    },
  };
}

/**
 * Fetches a VAST tag (following wrappers) with @dailymotion/vast-client and returns the first
 * linear creative's playable media file, its duration and click-through URL.
 */
export async function resolveVast(vastUrl: string, timeoutMs = 5000): Promise<VastMedia> {
  // Loaded with the first VAST tag, not with the server.
  const { VASTClient } = await import("@dailymotion/vast-client");
  const client = new VASTClient(0, 0);
  const response = await client.get(vastUrl, { timeout: timeoutMs, urlHandler: urlHandler(timeoutMs), wrapperLimit: 5 } as never);
  for (const ad of response.ads ?? []) {
    for (const creative of ad.creatives ?? []) {
      if (creative.type !== "linear") continue;
      const linear = creative as unknown as {
        duration: number;
        mediaFiles: { fileURL: string | null; mimeType: string | null; deliveryType?: string }[];
        videoClickThroughURLTemplate?: { url?: string } | string | null;
      };
      const file = linear.mediaFiles.find((m) => m.fileURL && m.mimeType && PLAYABLE.test(m.mimeType) && m.deliveryType !== "streaming");
      if (!file) continue;
      const click = linear.videoClickThroughURLTemplate;
      return {
        mediaUrl: file.fileURL!.trim(),
        mimeType: file.mimeType!,
        durationSeconds: Math.max(1, Math.round(linear.duration > 0 ? linear.duration : 15)),
        clickUrl: (typeof click === "string" ? click : click?.url)?.trim() || null,
      };
    }
  }
  throw new Error("the VAST response has no linear ad with a playable media file");
}
