// A thread that reads large results frames a second time, beside the event loop: each
// result's canonical JSON and digest (digest.ts), the costliest part of taking a large result
// in (~10–25 ms of the loop for 2 MB). The loop parses the frame itself (it needs the values)
// and takes these texts instead of computing them (outputDigests.ts).
import { parentPort } from "node:worker_threads";
import { FRAME_DEPTH_OVER_OUTPUTS, JSON_MAX_DEPTH, jsonTextTooDeep } from "../../worker/protocol/jsonBounds";
import { canonicalJson, digestOf } from "./digest";

export interface DigestRequest { id: number; raw: string }
/**
 * Per result of the frame, in its order: its output's canonical text and digest, or null (no
 * output); `shallow` when the text nests no deeper than a frame may (the loop's first check).
 */
export interface DigestReply { id: number; texts: Array<{ json: string; digest: string } | null> | null; shallow: boolean }

parentPort!.on("message", ({ id, raw }: DigestRequest) => {
  let texts: DigestReply["texts"] = null;
  const shallow = !jsonTextTooDeep(raw, JSON_MAX_DEPTH + FRAME_DEPTH_OVER_OUTPUTS);
  try {
    const frame = JSON.parse(raw) as { type?: unknown; results?: unknown } | null;
    if (frame && frame.type === "results" && Array.isArray(frame.results)) {
      texts = frame.results.map((r: unknown) => {
        if (!r || typeof r !== "object" || !Object.hasOwn(r, "output")) return null;
        const json = canonicalJson((r as { output: unknown }).output);
        return typeof json === "string" ? { json, digest: digestOf(json) } : null;
      });
    }
  } catch {
    // Not JSON, or a value canonicalJson refuses: the loop finds out and says so itself.
    texts = null;
  }
  parentPort!.postMessage({ id, texts, shallow } satisfies DigestReply);
});
