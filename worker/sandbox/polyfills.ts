/**
 * Source text of the few non-ECMAScript globals the ABI promises (abi.ts), for the bare
 * JavaScript engines that lack them: a `node:vm` context on Node volunteers and QuickJS on
 * the server. Evaluated inside the sandbox before the program, it defines only what is
 * missing (browsers' native versions are kept), and touches no host object.
 */
export const POLYFILL_SOURCE = String.raw`(function (g) {
  "use strict";
  var def = function (name, value) {
    if (typeof g[name] === "undefined") Object.defineProperty(g, name, { value: value, writable: true, configurable: true, enumerable: false });
  };
  var noop = function () {};
  def("console", { log: noop, info: noop, warn: noop, error: noop, debug: noop, trace: noop, dir: noop, table: noop, time: noop, timeEnd: noop, assert: noop });

  function TextEncoder() {}
  Object.defineProperty(TextEncoder.prototype, "encoding", { get: function () { return "utf-8"; } });
  TextEncoder.prototype.encode = function (input) {
    var s = input === undefined ? "" : String(input);
    var out = new Uint8Array(s.length * 3);
    var o = 0;
    for (var i = 0; i < s.length; i++) {
      var c = s.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        var d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; } else c = 0xfffd;
      } else if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
      if (c < 0x80) out[o++] = c;
      else if (c < 0x800) { out[o++] = 0xc0 | (c >> 6); out[o++] = 0x80 | (c & 63); }
      else if (c < 0x10000) { out[o++] = 0xe0 | (c >> 12); out[o++] = 0x80 | ((c >> 6) & 63); out[o++] = 0x80 | (c & 63); }
      else { out[o++] = 0xf0 | (c >> 18); out[o++] = 0x80 | ((c >> 12) & 63); out[o++] = 0x80 | ((c >> 6) & 63); out[o++] = 0x80 | (c & 63); }
    }
    return out.slice(0, o);
  };
  def("TextEncoder", TextEncoder);

  function TextDecoder(label, options) {
    var l = label === undefined ? "utf-8" : String(label).trim().toLowerCase();
    if (l !== "utf-8" && l !== "utf8" && l !== "unicode-1-1-utf-8") throw new RangeError("TextDecoder: only utf-8 is available here, not " + label);
    this.fatal = !!(options && options.fatal);
    this.ignoreBOM = !!(options && options.ignoreBOM);
  }
  Object.defineProperty(TextDecoder.prototype, "encoding", { get: function () { return "utf-8"; } });
  TextDecoder.prototype.decode = function (input) {
    if (input === undefined) return "";
    var b = input instanceof Uint8Array ? input : ArrayBuffer.isView(input) ? new Uint8Array(input.buffer, input.byteOffset, input.byteLength) : new Uint8Array(input);
    var fatal = this.fatal;
    var parts = [];
    var chunk = [];
    var bad = function () { if (fatal) throw new TypeError("The encoded data was not valid utf-8"); chunk.push(0xfffd); };
    var i = !this.ignoreBOM && b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf ? 3 : 0;
    while (i < b.length) {
      var c = b[i++];
      if (c < 0x80) chunk.push(c);
      else {
        var n = c >= 0xf0 && c <= 0xf4 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : -1;
        if (n < 0 || c > 0xf4) { bad(); continue; }
        var cp = c & (n === 1 ? 0x1f : n === 2 ? 0x0f : 0x07);
        var ok = true;
        for (var k = 0; k < n; k++) {
          var x = b[i];
          var lo = 0x80, hi = 0xbf;
          if (k === 0) {
            if (c === 0xe0) lo = 0xa0; else if (c === 0xed) hi = 0x9f; else if (c === 0xf0) lo = 0x90; else if (c === 0xf4) hi = 0x8f;
          }
          if (x === undefined || x < lo || x > hi) { ok = false; break; }
          cp = (cp << 6) | (x & 63);
          i++;
        }
        if (!ok) { bad(); continue; }
        if (cp >= 0x10000) { cp -= 0x10000; chunk.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff)); } else chunk.push(cp);
      }
      if (chunk.length >= 8192) { parts.push(String.fromCharCode.apply(null, chunk)); chunk = []; }
    }
    parts.push(String.fromCharCode.apply(null, chunk));
    return parts.join("");
  };
  def("TextDecoder", TextDecoder);
})(globalThis);
`;
