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

  // structuredClone, as browsers have it: plain data, Date, RegExp, Map, Set, ArrayBuffer and
  // views (a buffer shared by several views stays shared), errors and primitive wrappers, with
  // cycles; functions, symbols and other host things throw a DataCloneError. No transfer list.
  // Everything it makes is made here, in the sandbox, so it counts against the task's memory.
  function DataCloneError(message) {
    var e = new Error(message);
    Object.defineProperty(e, "name", { value: "DataCloneError", writable: true, configurable: true, enumerable: false });
    return e;
  }
  var slot = function (getter) { return function (x) { try { getter.call(x); return true; } catch (_) { return false; } }; };
  var protoGetter = function (proto, key) { var d = Object.getOwnPropertyDescriptor(proto, key); return d && d.get; };
  var isArrayBuffer = slot(protoGetter(ArrayBuffer.prototype, "byteLength"));
  var isMap = slot(protoGetter(Map.prototype, "size"));
  var isSet = slot(protoGetter(Set.prototype, "size"));
  var isDate = slot(Date.prototype.getTime);
  var isRegExp = slot(protoGetter(RegExp.prototype, "source"));
  var typedTag = protoGetter(Object.getPrototypeOf(Uint8Array.prototype), Symbol.toStringTag);
  var wrappers = [[Boolean, Boolean.prototype.valueOf], [Number, Number.prototype.valueOf], [String, String.prototype.valueOf]];
  if (typeof BigInt === "function") wrappers.push([BigInt, BigInt.prototype.valueOf]);
  var errorCtors = { Error: Error, EvalError: EvalError, RangeError: RangeError, ReferenceError: ReferenceError, SyntaxError: SyntaxError, TypeError: TypeError, URIError: URIError };
  var tagOf = function (x) { return Object.prototype.toString.call(x); };
  // An own data property even for a key such as "__proto__".
  var put = function (o, k, v) { Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true }); };
  function structuredClone(value, options) {
    if (options !== undefined && options !== null && options.transfer !== undefined && options.transfer.length > 0) {
      throw DataCloneError("structuredClone: a transfer list is not supported here");
    }
    var seen = new Map();
    var copyBuffer = function (b) {
      var out = b.resizable ? new ArrayBuffer(b.byteLength, { maxByteLength: b.maxByteLength }) : new ArrayBuffer(b.byteLength);
      new Uint8Array(out).set(new Uint8Array(b));
      return out;
    };
    var clone = function (v) {
      var t = typeof v;
      if (t === "symbol") throw DataCloneError("structuredClone: " + String(v) + " could not be cloned");
      if (t === "function") throw DataCloneError("structuredClone: a function could not be cloned");
      if (v === null || t !== "object") return v;
      if (seen.has(v)) return seen.get(v);
      var out, i, keys;
      if (Array.isArray(v)) {
        out = new Array(v.length);
        seen.set(v, out);
        keys = Object.keys(v);
        for (i = 0; i < keys.length; i++) put(out, keys[i], clone(v[keys[i]]));
        return out;
      }
      if (isArrayBuffer(v)) { out = copyBuffer(v); seen.set(v, out); return out; }
      if (ArrayBuffer.isView(v)) {
        var buffer = clone(v.buffer);
        var name = typedTag.call(v);
        out = name ? new g[name](buffer, v.byteOffset, v.length) : new DataView(buffer, v.byteOffset, v.byteLength);
        seen.set(v, out);
        return out;
      }
      if (isDate(v)) { out = new Date(v.getTime()); seen.set(v, out); return out; }
      if (isRegExp(v)) { out = new RegExp(v.source, v.flags); seen.set(v, out); return out; }
      if (isMap(v)) {
        out = new Map();
        seen.set(v, out);
        var entries = [];
        v.forEach(function (val, key) { entries.push([key, val]); });
        for (i = 0; i < entries.length; i++) out.set(clone(entries[i][0]), clone(entries[i][1]));
        return out;
      }
      if (isSet(v)) {
        out = new Set();
        seen.set(v, out);
        var items = [];
        v.forEach(function (val) { items.push(val); });
        for (i = 0; i < items.length; i++) out.add(clone(items[i]));
        return out;
      }
      for (i = 0; i < wrappers.length; i++) {
        if (slot(wrappers[i][1])(v)) { out = Object(wrappers[i][1].call(v)); seen.set(v, out); return out; }
      }
      var tag = tagOf(v);
      if (tag === "[object Error]") {
        var ctor = errorCtors[v.name] || Error;
        out = new ctor(v.message === undefined ? undefined : String(v.message));
        seen.set(v, out);
        if (typeof v.stack === "string") Object.defineProperty(out, "stack", { value: v.stack, writable: true, configurable: true, enumerable: false });
        return out;
      }
      if (tag !== "[object Object]" && tag !== "[object Arguments]") throw DataCloneError("structuredClone: " + tag + " could not be cloned");
      out = {};
      seen.set(v, out);
      keys = Object.keys(v);
      for (i = 0; i < keys.length; i++) put(out, keys[i], clone(v[keys[i]]));
      return out;
    };
    if (arguments.length === 0) throw new TypeError("structuredClone: 1 argument required, but only 0 present");
    return clone(value);
  }
  def("structuredClone", structuredClone);
})(globalThis);
`;
