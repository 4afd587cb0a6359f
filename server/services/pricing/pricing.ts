import { z } from "zod";
import type { AppDeps } from "../deps";
import type { Db } from "../../store/prisma";

/** Setting row: credits per reference CPU-second (RCS), a JSON number. See docs/pricing.md. */
export const PRICE_SETTING = "pricePerCpuSecond";

export const priceSchema = z.number().positive("The price must be positive.").max(1e6, "At most 1,000,000 credits per reference CPU-second.");

// Read on every estimate and submit, so kept in memory per database (a test process runs
// several servers); setPrice refreshes it. Only this module writes the row.
const cache = new WeakMap<Db, number>();

/** Credits per reference CPU-second: the admin's setting, else env PRICE_PER_CPU_SECOND. */
export async function pricePerCpuSecond(deps: Pick<AppDeps, "db" | "env">): Promise<number> {
  const hit = cache.get(deps.db);
  if (hit !== undefined) return hit;
  const row = await deps.db.setting.findUnique({ where: { key: PRICE_SETTING }, select: { value: true } });
  const parsed = row ? priceSchema.safeParse(JSON.parse(row.value)) : undefined;
  const price = parsed?.success ? parsed.data : deps.env.PRICE_PER_CPU_SECOND;
  cache.set(deps.db, price);
  return price;
}

export async function getPricing(deps: Pick<AppDeps, "db" | "env">) {
  const row = await deps.db.setting.findUnique({ where: { key: PRICE_SETTING }, select: { updatedAt: true } });
  return {
    pricePerCpuSecond: await pricePerCpuSecond(deps),
    /** The env default, used while no admin has set a price. */
    defaultPrice: deps.env.PRICE_PER_CPU_SECOND,
    updatedAt: row?.updatedAt ?? null,
  };
}

export async function setPrice(deps: Pick<AppDeps, "db" | "env">, price: number) {
  const value = JSON.stringify(priceSchema.parse(price));
  await deps.db.setting.upsert({ where: { key: PRICE_SETTING }, create: { key: PRICE_SETTING, value }, update: { value }, select: { key: true } });
  cache.set(deps.db, price);
  return getPricing(deps);
}
