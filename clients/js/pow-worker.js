// Stampede proof-of-work solver, run as a module Web Worker by stampede.js
// (new Worker(new URL("./pow-worker.js", import.meta.url), {type: "module"})).
//
// Finds the smallest decimal counter such that SHA-256("<token>:<counter>")
// starts with `difficulty` zero bits: the X-Challenge-Solution of a claim
// that was answered 403 challenge_required. A synchronous SHA-256 (below)
// hashes several times faster than awaiting crypto.subtle once per counter,
// and in a worker it cannot freeze the page.
//
// Messages in:  {token, difficulty, limit?}
// Messages out: {progress: tried} every 65536 counters, then
//               {solution: "<counter>", tried, ms} or {error: "..."}.
// Also importable as a module: `import { solve, sha256 } from "./pow-worker.js"`.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const W = new Uint32Array(64);
const H = new Uint32Array(8);

function compress(block, offset) {
  for (let i = 0; i < 16; i++) {
    const j = offset + i * 4;
    W[i] = (block[j] << 24) | (block[j + 1] << 16) | (block[j + 2] << 8) | block[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15], b = W[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
}

const IV = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                            0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
let buffer = new Uint8Array(128);

/** SHA-256 of a message whose first `done` bytes (whole blocks) left the state `state`
 *  and whose rest is `tail[0..length)`: the eight words of the digest (a shared array). */
function digestWords(tail, length, state = IV, done = 0) {
  const blocks = ((length + 8) >>> 6) + 1;
  if (buffer.length < blocks * 64) buffer = new Uint8Array(blocks * 64);
  buffer.set(tail.subarray(0, length));
  buffer.fill(0, length, blocks * 64);
  buffer[length] = 0x80;
  const bits = (done + length) * 8;
  const end = blocks * 64;
  buffer[end - 4] = bits >>> 24; buffer[end - 3] = bits >>> 16;
  buffer[end - 2] = bits >>> 8; buffer[end - 1] = bits;
  H.set(state);
  for (let i = 0; i < blocks; i++) compress(buffer, i * 64);
  return H;
}

/** The state after the whole 64-byte blocks of `bytes` (the prefix every counter shares). */
function midstate(bytes) {
  H.set(IV);
  const whole = bytes.length - (bytes.length % 64);
  for (let i = 0; i < whole; i += 64) compress(bytes, i);
  return { state: new Uint32Array(H), done: whole, rest: bytes.subarray(whole) };
}

/** SHA-256 of a string, as lowercase hex (for tests and callers that want it). */
export function sha256(text) {
  const bytes = new TextEncoder().encode(text);
  return Array.from(digestWords(bytes, bytes.length),
    (w) => (w >>> 0).toString(16).padStart(8, "0")).join("");
}

function leadingZeroBits(words) {
  let bits = 0;
  for (let i = 0; i < 8; i++) {
    if (words[i] === 0) { bits += 32; continue; }
    return bits + Math.clz32(words[i]);
  }
  return bits;
}

/** The challenge's solution (smallest counter), calling onProgress(tried) now and then. */
export function solve(token, difficulty, { limit = 2 ** 32, onProgress } = {}) {
  const { state, done, rest } = midstate(new TextEncoder().encode(`${token}:`));
  const tail = new Uint8Array(rest.length + 16);
  tail.set(rest);
  let digits = 1, next = 10;
  for (let counter = 0; counter < limit; counter++) {
    if (counter === next) { digits++; next *= 10; }
    // The counter's decimal digits after the prefix, without allocating a string.
    for (let i = digits - 1, n = counter; i >= 0; i--, n = (n - (n % 10)) / 10) {
      tail[rest.length + i] = 48 + (n % 10);
    }
    if (leadingZeroBits(digestWords(tail, rest.length + digits, state, done)) >= difficulty) {
      return String(counter);
    }
    if (onProgress && (counter & 0xffff) === 0xffff) onProgress(counter + 1);
  }
  throw new Error(`no solution below ${limit}`);
}

if (typeof WorkerGlobalScope !== "undefined" && globalThis instanceof WorkerGlobalScope) {
  globalThis.onmessage = (event) => {
    const { token, difficulty, limit } = event.data;
    const started = performance.now();
    let tried = 0;
    try {
      const solution = solve(token, difficulty, {
        limit, onProgress: (n) => { tried = n; globalThis.postMessage({ progress: n }); },
      });
      tried = Number(solution) + 1;
      globalThis.postMessage({ solution, tried, ms: performance.now() - started });
    } catch (err) {
      globalThis.postMessage({ error: String(err && err.message || err), tried });
    }
  };
}
