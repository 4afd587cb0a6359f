// comlink ships this adapter's types as node-adapter.d.ts next to the .mjs, which TypeScript
// does not pair with an .mjs import; the declaration below is the shipped one.
declare module "comlink/dist/esm/node-adapter.mjs" {
  import type { Endpoint } from "comlink";

  export interface NodeEndpoint {
    postMessage(message: any, transfer?: any[]): void;
    on(type: string, listener: EventListenerOrEventListenerObject, options?: {}): void;
    off(type: string, listener: EventListenerOrEventListenerObject, options?: {}): void;
    start?: () => void;
  }
  export default function nodeEndpoint(nep: NodeEndpoint): Endpoint;
}
