// llamacpp_run.mjs — llama.cpp (through node-llama-cpp's prebuilt binaries)
// on a GGUF file: greedy generation from a prompt, and prefill/decode
// timings. Used by tests/cli_convert.sh-style interop checks and by
// `strata bench llamacpp` (bench/llamacpp.c), which runs it side by side
// with Strata on the same file.
// usage: node llamacpp_run.mjs MODEL.gguf PROMPT N_NEW [THREADS] [PREFILL_TOKENS]
// prints one JSON line: {"ids": [...], "text": "...", "prompt_ids": [...],
//   "prefill_tokens", "prefill_s", "decode_tokens", "decode_s"}
import {getLlama} from "node-llama-cpp";

const [modelPath, prompt = "", nNewArg = "32", threadsArg = "2", prefillArg = "0"] = process.argv.slice(2);
const nNew = parseInt(nNewArg, 10), threads = parseInt(threadsArg, 10), nPrefill = parseInt(prefillArg, 10);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const ctxSize = Math.max(256, nPrefill + nNew + 8);
const context = await model.createContext({contextSize: ctxSize, threads, batchSize: Math.max(512, nPrefill + 8)});
const seq = context.getSequence();
let promptIds = [model.tokens.bos, ...model.tokenize(prompt)];
if (nPrefill > 0) { // a synthetic prompt of nPrefill tokens for the prefill timing
  promptIds = [model.tokens.bos];
  for (let i = 1; i < nPrefill; i++) promptIds.push(3 + (i * 7919) % 200);
}
const ids = [];
let t0 = performance.now(), tFirst = 0;
for await (const tok of seq.evaluate(promptIds, {temperature: 0})) {
  if (ids.length === 0) tFirst = performance.now();
  ids.push(tok);
  if (ids.length >= nNew) break;
  if (model.tokens.eos === tok) break;
}
const t1 = performance.now();
const text = model.detokenize(ids);
console.log(JSON.stringify({
  prompt_ids: promptIds.slice(0, 64), ids, text,
  prefill_tokens: promptIds.length, prefill_s: (tFirst - t0) / 1e3,
  decode_tokens: ids.length - 1, decode_s: (t1 - tFirst) / 1e3,
}));
await context.dispose();
await model.dispose();
