// Stampede proof-of-work solver for front-ends (browser or Node 18+).
//
// When a claim answers 403 challenge_required, the body carries
// {error: {code: "challenge_required", challenge: {token, difficulty, expires_at}}}.
// Solve it and send the claim again with headers X-Challenge-Token: <token>
// and X-Challenge-Solution: <solution>. Each solution is good for one claim.
// Served at GET /v1/pow-solver.js.
//
//   const solution = await solveChallenge(token, difficulty);
//
// It finds the smallest counter such that SHA-256("<token>:<counter>") starts
// with `difficulty` zero bits, yielding to the event loop now and then.

function leadingZeroBits(bytes) {
  let bits = 0;
  for (const b of bytes) {
    if (b === 0) { bits += 8; continue; }
    return bits + Math.clz32(b) - 24;
  }
  return bits;
}

async function solveChallenge(token, difficulty, limit = 1 << 28) {
  const subtle = globalThis.crypto.subtle;
  const encoder = new TextEncoder();
  for (let counter = 0; counter < limit; counter++) {
    const digest = new Uint8Array(await subtle.digest("SHA-256", encoder.encode(`${token}:${counter}`)));
    if (leadingZeroBits(digest) >= difficulty) return String(counter);
    if (counter % 4096 === 4095) await new Promise((r) => setTimeout(r, 0));
  }
  throw new Error("no solution within limit");
}

if (typeof module !== "undefined") module.exports = { solveChallenge, leadingZeroBits };
