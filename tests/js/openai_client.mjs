// Drives `strata serve` with OpenAI's own Node client (npm "openai"):
// models, chat (plain and streamed), completions, embeddings and two error
// cases. Usage: node openai_client.mjs BASE_URL MODEL API_KEY
// Prints one JSON summary line; exits 1 with a message on any mismatch.
import OpenAI from "openai";

const [base, model, key] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base, apiKey: key, maxRetries: 0, timeout: 60000 });
const fail = (msg) => { console.error("openai_client: " + msg); process.exit(1); };

const models = await client.models.list();
const ids = [];
for await (const m of models) ids.push(m.id);
if (!ids.includes(model)) fail(`models.list: ${JSON.stringify(ids)} lacks ${model}`);

const messages = [{ role: "system", content: "You tell short stories." },
                  { role: "user", content: "Once upon a time" }];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 24, temperature: 0 });
const text = chat.choices[0].message.content;
if (typeof text !== "string" || text.length === 0) fail("chat: empty content");
if (chat.usage.completion_tokens < 1 || chat.usage.total_tokens !== chat.usage.prompt_tokens + chat.usage.completion_tokens)
  fail(`chat: bad usage ${JSON.stringify(chat.usage)}`);

const stream = await client.chat.completions.create({ model, messages, max_tokens: 24, temperature: 0, stream: true });
let streamed = "", chunks = 0, finish = null;
for await (const chunk of stream) {
  chunks++;
  const c = chunk.choices[0];
  if (c?.delta?.content) streamed += c.delta.content;
  if (c?.finish_reason) finish = c.finish_reason;
}
if (streamed !== text) fail(`stream: ${JSON.stringify(streamed)} != ${JSON.stringify(text)}`);
if (!finish) fail("stream: no finish_reason");

const comp = await client.completions.create({ model, prompt: "Lily had a", max_tokens: 16, temperature: 0 });
if (!comp.choices[0].text) fail("completions: empty text");

const emb = await client.embeddings.create({ model, input: ["a cat", "a dog"] });
if (emb.data.length !== 2) fail("embeddings: want 2 vectors");
const v = emb.data[0].embedding;
const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
if (Math.abs(norm - 1) > 1e-3) fail(`embeddings: norm ${norm}`);

let status = 0, message = "";
try {
  await client.chat.completions.create({ model, messages, temperature: 5 });
} catch (e) { status = e.status; message = e.message; }
if (status !== 400 || !/temperature/.test(message)) fail(`bad temperature: status ${status} (${message})`);
try {
  await client.chat.completions.create({ model: "no-such-model", messages });
  status = 0;
} catch (e) { status = e.status; }
if (status !== 404) fail(`unknown model: status ${status}`);

console.log(JSON.stringify({ ok: true, models: ids, chat: text, stream_chunks: chunks,
                             completion: comp.choices[0].text, embedding_dim: v.length }));
