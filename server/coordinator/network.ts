import net from "node:net";

/**
 * The network a client connects from, for spreading a unit's replicas: an IPv4 /24 or an IPv6
 * /48, roughly one household, campus or hosting customer. Undefined when the address is unknown.
 */
export function networkOf(address: string | undefined): string | undefined {
  if (!address) return undefined;
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  if (net.isIPv4(a)) return `${a.split(".").slice(0, 3).join(".")}.0/24`;
  if (net.isIPv6(a)) {
    const [head = "", tail = ""] = a.split("::");
    const left = head ? head.split(":") : [];
    const right = tail ? tail.split(":") : [];
    const groups = a.includes("::") ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right] : left;
    return `${groups.slice(0, 3).map((g) => parseInt(g || "0", 16).toString(16)).join(":")}::/48`;
  }
  return undefined;
}
