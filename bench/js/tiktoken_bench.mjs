// tiktoken_bench.mjs — the peer of `strata bench tokenizer`: encodes FILE
// with js-tiktoken's gpt2 and cl100k_base encodings (ordinary encoding, like
// strata's default) and prints one JSON line per encoding: MB/s (1e6 bytes/s
// of UTF-8 input; median of REPS runs after one warm-up) and the token count.
// Usage: node bench/js/tiktoken_bench.mjs FILE [REPS]
import { readFileSync } from "node:fs";
import { getEncoding } from "js-tiktoken";

const file = process.argv[2];
const reps = Number(process.argv[3] ?? 5);
if (!file) {
  console.error("usage: node tiktoken_bench.mjs FILE [REPS]");
  process.exit(2);
}
const buf = readFileSync(file);
const text = buf.toString("utf8");
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
for (const name of ["gpt2", "cl100k_base"]) {
  const enc = getEncoding(name);
  let tokens = enc.encode(text, [], []).length; // warm-up; no specials allowed or disallowed
  const rates = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    tokens = enc.encode(text, [], []).length;
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    rates.push(buf.length / dt / 1e6);
  }
  console.log(JSON.stringify({ impl: "js-tiktoken", encoding: name, tokens, mb_per_s: median(rates) }));
}
