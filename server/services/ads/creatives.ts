import { z } from "zod";
import type { AppDeps } from "../deps";
import { UserError } from "../errors";
import { fromCredits } from "../credits/accounts";
import { isSha256 } from "../programs/programs";
import { isMissingBlob } from "../../store/blobs";

export const MEDIA_TYPE = /^(image\/(png|jpeg|gif|webp|svg\+xml)|video\/(mp4|webm|ogg))$/;

const common = {
  name: z.string().trim().min(1, "Give the creative a name.").max(100),
  clickUrl: z.string().trim().url("The click URL must be a full URL.").max(2000).nullable().optional(),
  durationSeconds: z.number().int().min(1, "At least 1 second.").max(600, "At most 600 seconds."),
  rewardCredits: z.number().min(0).max(1000),
  active: z.boolean().default(true),
};

export const creativeInput = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("image"), mediaHash: z.string().refine(isSha256, "Upload the media first."), mimeType: z.string().regex(/^image\//, "An image creative needs an image."), ...common }),
  z.object({ kind: z.literal("video"), mediaHash: z.string().refine(isSha256, "Upload the media first."), mimeType: z.string().regex(/^video\//, "A video creative needs a video."), ...common }),
  z.object({ kind: z.literal("vast"), vastUrl: z.string().trim().url("The VAST tag must be a full http(s) URL.").regex(/^https?:\/\//i, "The VAST tag must be http(s)."), ...common }),
]);
export type CreativeInput = z.infer<typeof creativeInput>;

export const creativeUpdate = z.object({
  id: z.string(),
  name: common.name.optional(),
  clickUrl: common.clickUrl,
  durationSeconds: common.durationSeconds.optional(),
  rewardCredits: common.rewardCredits.optional(),
  active: z.boolean().optional(),
  vastUrl: z.string().trim().url().regex(/^https?:\/\//i).optional(),
});

export async function listCreatives(deps: AppDeps) {
  return deps.db.adCreative.findMany({ orderBy: [{ createdAt: "asc" }, { id: "asc" }] });
}

export async function createCreative(deps: AppDeps, input: CreativeInput) {
  if (input.kind !== "vast") {
    if (!MEDIA_TYPE.test(input.mimeType)) throw new UserError("BAD_REQUEST", `Unsupported media type ${input.mimeType}.`);
    try {
      await deps.blobs.get(input.mediaHash);
    } catch (e) {
      if (isMissingBlob(e)) throw new UserError("BAD_REQUEST", "The uploaded media was not found; upload it again.");
      throw e;
    }
  }
  return deps.db.adCreative.create({
    data: {
      name: input.name,
      kind: input.kind,
      mediaHash: input.kind === "vast" ? null : input.mediaHash,
      mimeType: input.kind === "vast" ? null : input.mimeType,
      vastUrl: input.kind === "vast" ? input.vastUrl : null,
      clickUrl: input.clickUrl ?? null,
      durationSeconds: input.durationSeconds,
      reward: fromCredits(input.rewardCredits),
      active: input.active,
    },
  });
}

export async function updateCreative(deps: AppDeps, input: z.infer<typeof creativeUpdate>) {
  const c = await deps.db.adCreative.findUnique({ where: { id: input.id } });
  if (!c) throw new UserError("NOT_FOUND", "No such creative.");
  if (input.vastUrl && c.kind !== "vast") throw new UserError("BAD_REQUEST", "Only VAST creatives have a tag URL.");
  return deps.db.adCreative.update({
    where: { id: input.id },
    data: {
      name: input.name,
      clickUrl: input.clickUrl,
      durationSeconds: input.durationSeconds,
      reward: input.rewardCredits === undefined ? undefined : fromCredits(input.rewardCredits),
      active: input.active,
      vastUrl: input.vastUrl,
    },
  });
}

/** Deletes a creative nobody has watched yet; one with history can only be deactivated. */
export async function deleteCreative(deps: AppDeps, id: string) {
  const c = await deps.db.adCreative.findUnique({ where: { id }, include: { _count: { select: { sessions: true } } } });
  if (!c) throw new UserError("NOT_FOUND", "No such creative.");
  if (c._count.sessions > 0) {
    throw new UserError("CONFLICT", `This creative has been shown ${c._count.sessions} times and its sessions are kept for the daily caps: deactivate it instead.`);
  }
  await deps.db.adCreative.delete({ where: { id } });
  return { ok: true };
}

const DEFAULT_AD_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="640" height="360" viewBox="0 0 640 360">
<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#1e3a8a"/><stop offset="1" stop-color="#0e7490"/></linearGradient></defs>
<rect width="640" height="360" fill="url(#g)"/>
<g fill="#ffffff" fill-opacity="0.12">${Array.from({ length: 8 }, (_, i) => Array.from({ length: 4 }, (_, j) => `<rect x="${24 + i * 76}" y="${24 + j * 80}" width="64" height="64" rx="8"/>`).join("")).join("")}</g>
<text x="320" y="165" font-family="Helvetica, Arial, sans-serif" font-size="56" font-weight="700" fill="#fff" text-anchor="middle">Tabgrid</text>
<text x="320" y="215" font-family="Helvetica, Arial, sans-serif" font-size="26" fill="#e0f2fe" text-anchor="middle">volunteer your CPU: open a tab, compute for science</text>
</svg>
`;

/** A fresh install gets one house ad, so "watch an ad" works out of the box. */
export async function ensureDefaultCreative(deps: AppDeps) {
  if ((await deps.db.adCreative.count()) > 0) return null;
  const mediaHash = await deps.blobs.put(DEFAULT_AD_SVG);
  return deps.db.adCreative.create({
    data: {
      name: "Tabgrid — volunteer your CPU",
      kind: "image",
      mediaHash,
      mimeType: "image/svg+xml",
      clickUrl: null,
      durationSeconds: deps.env.ADS_DEFAULT_SECONDS,
      reward: fromCredits(deps.env.ADS_DEFAULT_REWARD_CREDITS),
      active: true,
    },
  });
}
