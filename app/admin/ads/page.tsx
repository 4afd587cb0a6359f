"use client";
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../../_components/trpc";
import { credits } from "../../_components/format";

export default function AdminAdsPage() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const list = useQuery({ ...trpc.ads.creatives.list.queryOptions(), refetchInterval: 5000 });
  const refresh = () => queryClient.invalidateQueries({ queryKey: trpc.ads.creatives.list.queryKey() });
  const create = useMutation(trpc.ads.creatives.create.mutationOptions({ onSuccess: refresh }));
  const update = useMutation(trpc.ads.creatives.update.mutationOptions({ onSuccess: refresh }));
  const remove = useMutation(trpc.ads.creatives.delete.mutationOptions({ onSuccess: refresh }));
  const [source, setSource] = useState<"upload" | "vast">("upload");
  const [name, setName] = useState("");
  const [file, setFile] = useState<File | null>(null);
  const [vastUrl, setVastUrl] = useState("");
  const [clickUrl, setClickUrl] = useState("");
  const [seconds, setSeconds] = useState(15);
  const [reward, setReward] = useState(1);
  const [error, setError] = useState<string | null>(null);

  async function onCreate(e: FormEvent) {
    e.preventDefault();
    setError(null);
    const common = { name, clickUrl: clickUrl || null, durationSeconds: seconds, rewardCredits: reward, active: true };
    try {
      if (source === "vast") {
        await create.mutateAsync({ kind: "vast", vastUrl, ...common });
      } else {
        if (!file) throw new Error("Choose an image or a video to upload.");
        const res = await fetch("/api/ads/media", { method: "POST", headers: { "content-type": file.type }, body: file });
        const body = (await res.json()) as { mediaHash?: string; mimeType?: string; error?: string };
        if (!res.ok) throw new Error(body.error ?? `Upload failed (HTTP ${res.status})`);
        const kind = body.mimeType!.startsWith("video/") ? "video" : "image";
        await create.mutateAsync({ kind, mediaHash: body.mediaHash!, mimeType: body.mimeType!, ...common });
      }
      setName("");
      setFile(null);
      setVastUrl("");
    } catch (err) {
      setError((err as Error).message);
    }
  }

  return (
    <div className="stack">
      <div className="card">
        <h2>Ad creatives</h2>
        {list.error && <p className="error">{list.error.message}</p>}
        {list.data?.length ? (
          <table data-testid="ad-creatives">
            <thead><tr><th>Name</th><th>Kind</th><th>Source</th><th className="num">Seconds</th><th className="num">Reward</th><th className="num">Views</th><th className="num">Claims</th><th>Active</th><th /></tr></thead>
            <tbody>
              {list.data.map((c) => (
                <tr key={c.id}>
                  <td>{c.name}</td>
                  <td>{c.kind}</td>
                  <td>{c.kind === "vast" ? <code>{c.vastUrl}</code> : c.mediaHash ? <a href={`/api/ads/media/${c.mediaHash}`} target="_blank" rel="noreferrer">{c.mimeType}</a> : ""}</td>
                  <td className="num">{c.kind === "vast" ? "from VAST" : c.durationSeconds}</td>
                  <td className="num">{credits(c.reward)}</td>
                  <td className="num">{c.views}</td>
                  <td className="num">{c.claims}</td>
                  <td>
                    <input type="checkbox" aria-label={`active ${c.name}`} checked={c.active} onChange={(e) => update.mutate({ id: c.id, active: e.target.checked })} />
                  </td>
                  <td><button className="link" onClick={() => remove.mutate({ id: c.id })}>Delete</button></td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p className="hint">No creatives.</p>
        )}
        {(update.error || remove.error) && <p className="error">{(update.error ?? remove.error)!.message}</p>}
      </div>
      <form className="card stack" onSubmit={onCreate}>
        <h2>New creative</h2>
        <label>Name <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={100} /></label>
        <label>
          Source{" "}
          <select value={source} onChange={(e) => setSource(e.target.value as "upload" | "vast")}>
            <option value="upload">House ad: upload an image or a short video</option>
            <option value="vast">VAST tag URL (an ad server)</option>
          </select>
        </label>
        {source === "upload" ? (
          <label>Media <input type="file" accept="image/png,image/jpeg,image/gif,image/webp,image/svg+xml,video/mp4,video/webm,video/ogg" onChange={(e) => setFile(e.target.files?.[0] ?? null)} /></label>
        ) : (
          <label>VAST tag URL <input type="url" value={vastUrl} onChange={(e) => setVastUrl(e.target.value)} required /></label>
        )}
        <label>Click-through URL (optional) <input type="url" value={clickUrl} onChange={(e) => setClickUrl(e.target.value)} /></label>
        <label>Seconds to watch <input type="number" min={1} max={600} value={seconds} onChange={(e) => setSeconds(Number(e.target.value))} /></label>
        <label>Reward (credits) <input type="number" min={0} step={0.001} value={reward} onChange={(e) => setReward(Number(e.target.value))} /></label>
        {error && <p className="error">{error}</p>}
        <button type="submit" className="primary" disabled={create.isPending}>Create creative</button>
      </form>
    </div>
  );
}
