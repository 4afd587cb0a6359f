"use client";
import { useCallback, useEffect, useRef, useState } from "react";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "../_components/trpc";
import { creditCount } from "../_components/format";

type Started = {
  sessionId: string;
  reward: number;
  requiredSeconds: number;
  creative: { kind: string; name: string; mediaUrl: string; mimeType: string; clickUrl: string | null; durationSeconds: number };
};

const isWatching = () => typeof document !== "undefined" && document.visibilityState === "visible" && document.hasFocus();

/**
 * Watch an ad for credits: the server opens a session and picks a creative; the player
 * beats every second, and time only counts (here and on the server) while the tab is
 * visible and focused; at zero the Claim button pays the reward.
 */
export function WatchAd({ compact = false }: { compact?: boolean }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [ad, setAd] = useState<Started | null>(null);
  const [remaining, setRemaining] = useState(0);
  const [visible, setVisible] = useState(true);
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);
  const session = useRef<string | null>(null);

  const start = useMutation(trpc.ads.start.mutationOptions());
  const beat = useMutation(trpc.ads.heartbeat.mutationOptions());
  const claim = useMutation(trpc.ads.claim.mutationOptions());
  const cancel = useMutation(trpc.ads.cancel.mutationOptions());

  const onStart = async () => {
    setMessage(null);
    try {
      const s = (await start.mutateAsync()) as Started;
      session.current = s.sessionId;
      setAd(s);
      setRemaining(s.requiredSeconds);
      setVisible(isWatching());
    } catch (e) {
      setMessage({ error: true, text: (e as Error).message });
    }
  };

  const heartbeat = useCallback(async () => {
    const id = session.current;
    if (!id) return;
    const v = isWatching();
    setVisible(v);
    try {
      const r = await beat.mutateAsync({ sessionId: id, visible: v });
      if (session.current === id) setRemaining(r.remainingSeconds);
    } catch (e) {
      if (session.current === id) {
        session.current = null;
        setAd(null);
        setMessage({ error: true, text: (e as Error).message });
      }
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    if (!ad) return;
    const timer = setInterval(heartbeat, 1000);
    const onChange = () => setVisible(isWatching());
    document.addEventListener("visibilitychange", onChange);
    window.addEventListener("focus", onChange);
    window.addEventListener("blur", onChange);
    return () => {
      clearInterval(timer);
      document.removeEventListener("visibilitychange", onChange);
      window.removeEventListener("focus", onChange);
      window.removeEventListener("blur", onChange);
    };
  }, [ad, heartbeat]);

  // Leaving the page closes the session, so the next start isn't refused as a second tab.
  useEffect(() => () => {
    if (session.current) cancel.mutate({ sessionId: session.current });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  const onClaim = async () => {
    if (!ad) return;
    try {
      const r = await claim.mutateAsync({ sessionId: ad.sessionId });
      session.current = null;
      setAd(null);
      setMessage({ error: false, text: `Thanks for watching: ${creditCount(r.reward)} added. Your balance is ${creditCount(r.balance)}.` });
      await queryClient.invalidateQueries({ queryKey: trpc.account.pathKey() });
    } catch (e) {
      setMessage({ error: true, text: (e as Error).message });
    }
  };

  const onClose = () => {
    if (session.current) cancel.mutate({ sessionId: session.current });
    session.current = null;
    setAd(null);
  };

  return (
    <div className={compact ? "notice stack" : "card stack"} data-testid="watch-ad">
      {!compact && <h2>Watch an ad</h2>}
      {!ad && (
        <div className="row">
          <button type="button" onClick={onStart} disabled={start.isPending}>{start.isPending ? "Loading the ad…" : "Watch an ad for credits"}</button>
          <span className="hint">Keep this tab visible and focused until the countdown ends.</span>
        </div>
      )}
      {ad && (
        <div className="stack">
          <div style={{ maxWidth: 640 }}>
            {ad.creative.mimeType.startsWith("video/") ? (
              <video src={ad.creative.mediaUrl} autoPlay muted playsInline loop style={{ width: "100%" }} data-testid="ad-media" />
            ) : (
              // eslint-disable-next-line @next/next/no-img-element
              <img src={ad.creative.mediaUrl} alt={ad.creative.name} style={{ width: "100%", height: "auto" }} data-testid="ad-media" />
            )}
          </div>
          {ad.creative.clickUrl && <a href={ad.creative.clickUrl} target="_blank" rel="noopener noreferrer sponsored">Learn more</a>}
          {remaining > 0 ? (
            <p data-testid="ad-countdown">
              {visible ? `${remaining} s remaining` : `Paused: come back to this tab (${remaining} s remaining)`}
            </p>
          ) : (
            <p data-testid="ad-countdown">Done: claim your reward.</p>
          )}
          <div className="row">
            <button type="button" onClick={onClaim} disabled={remaining > 0 || claim.isPending}>Claim {creditCount(ad.reward)}</button>
            <button type="button" className="link" onClick={onClose}>Close</button>
          </div>
        </div>
      )}
      {message && <p className={message.error ? "error" : "notice"} data-testid="ad-message">{message.text}</p>}
    </div>
  );
}
