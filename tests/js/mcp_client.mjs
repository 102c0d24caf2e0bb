// mcp_client.mjs — drives `strata mcp` with the Model Context Protocol's own
// TypeScript SDK client (npm @modelcontextprotocol/sdk, StdioClientTransport),
// then with raw malformed JSON-RPC on a pipe.
//
// usage: node mcp_client.mjs STRATA MODEL TOKENIZER [INDEX EXPECT_FILE QUERY]
//   INDEX given: rag_search QUERY must rank EXPECT_FILE (a base name) first,
//   and the resources must list it and read back its text.
// Prints one JSON line {"ok": true, ...} and exits 0, or exits 1 naming the fault.
import { spawn } from "node:child_process";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { LATEST_PROTOCOL_VERSION } from "@modelcontextprotocol/sdk/types.js";

const [strata, model, tokenizer, index, expectFile, query] = process.argv.slice(2);
if (!strata || !model || !tokenizer) {
  console.error("usage: node mcp_client.mjs STRATA MODEL TOKENIZER [INDEX EXPECT_FILE QUERY]");
  process.exit(2);
}
function check(cond, what) {
  if (!cond) throw new Error(what);
}
const report = { ok: false };

async function sdkSession() {
  const args = ["mcp", "--model", model, "--tokenizer", tokenizer];
  if (index) args.push("--index", index);
  const transport = new StdioClientTransport({
    command: strata,
    args,
    env: { ...process.env }, // STRATA_HOME and STRATA_THREADS reach the server
    stderr: "inherit",
  });
  const client = new Client({ name: "strata-test", version: "1.0.0" });
  await client.connect(transport);
  try {
    const info = client.getServerVersion();
    check(info && info.name === "strata", `serverInfo ${JSON.stringify(info)}`);
    check(client.getServerCapabilities()?.tools, "no tools capability");
    report.protocol = LATEST_PROTOCOL_VERSION;

    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name).sort();
    check(
      JSON.stringify(names) === JSON.stringify(["generate", "list_models", "rag_ask", "rag_search"]),
      `tools ${names}`,
    );
    for (const t of tools) check(t.inputSchema?.type === "object", `${t.name}: inputSchema`);
    report.tools = names;

    // greedy generation twice: the same text (the model runs in the server)
    const gen = async () =>
      client.callTool({
        name: "generate",
        arguments: { prompt: "Once upon a time", max_tokens: 24, temperature: 0 },
      });
    const g1 = await gen();
    const g2 = await gen();
    check(!g1.isError, `generate failed: ${JSON.stringify(g1.content)}`);
    check(g1.content[0].type === "text" && g1.content[0].text.length > 0, "generate: no text");
    check(g1.content[0].text === g2.content[0].text, "generate: greedy runs differ");
    report.generate = g1.content[0].text;

    const lm = await client.callTool({ name: "list_models", arguments: {} });
    check(!lm.isError && lm.content[0].text.includes("registry"), "list_models");

    // a tool's own errors are results with isError, not protocol errors
    const bad = await client.callTool({ name: "generate", arguments: { max_tokens: 3 } });
    check(bad.isError === true && /prompt/.test(bad.content[0].text), "generate without prompt");
    let code = null;
    try {
      await client.callTool({ name: "no_such_tool", arguments: {} });
    } catch (e) {
      code = e.code;
    }
    check(code === -32602, `unknown tool: code ${code}, want -32602`);

    if (index) {
      const r = await client.callTool({ name: "rag_search", arguments: { query, k: 3 } });
      check(!r.isError, `rag_search failed: ${JSON.stringify(r.content)}`);
      const hits = r.structuredContent?.hits;
      check(Array.isArray(hits) && hits.length > 0, "rag_search: no hits");
      check(hits[0].path.endsWith("/" + expectFile), `rag_search: first hit ${hits[0].path}, want ${expectFile}`);
      check(r.content[0].text.includes(expectFile), "rag_search: the text does not name the file");
      report.rag_search = hits.map((h) => `${h.path.split("/").pop()}:${h.line_start}-${h.line_end}`);

      const { resources } = await client.listResources();
      const res = resources.find((x) => x.uri.endsWith("/" + expectFile));
      check(res, `resources/list lacks ${expectFile}: ${resources.map((x) => x.uri)}`);
      check(res.uri.startsWith(`strata-rag://${index}/`), `resource uri ${res.uri}`);
      const read = await client.readResource({ uri: res.uri });
      check(read.contents[0].text.includes(hits[0].text.trim().slice(0, 40)), "resources/read: text lacks the hit");
      report.resources = resources.length;
      let rc = null;
      try {
        await client.readResource({ uri: `strata-rag://${index}/etc/passwd` });
      } catch (e) {
        rc = e.code;
      }
      check(rc === -32002, `unindexed resource: code ${rc}, want -32002`);
    } else {
      report.rag_search = "skipped (no index)";
    }
  } finally {
    await client.close();
  }
}

// Raw JSON-RPC on a pipe: every malformed line gets its error, notifications
// get nothing, the server keeps going and exits 0 when stdin closes.
async function rawSession() {
  const child = spawn(strata, ["mcp", "--max-message", "2048"], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = [
    "{bad json",
    "[]",
    '{"jsonrpc":"2.0","id":1,"method":"no/such/method"}',
    '{"jsonrpc":"1.0","id":2,"method":"ping"}',
    '{"jsonrpc":"2.0","method":"notifications/initialized"}',
    '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":42}}',
    '{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}',
    "x".repeat(5000),
    '[{"jsonrpc":"2.0","id":4,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/cancelled"},7]',
    '{"jsonrpc":"2.0","id":5,"method":"initialize","params":{"protocolVersion":"1999-01-01","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}',
    '{"jsonrpc":"2.0","id":6,"method":"ping"}',
  ];
  const want = [
    [null, -32700],
    [null, -32600],
    [1, -32601],
    [2, -32600],
    [3, -32602],
    [null, -32600],
    [null, -32600],
    "batch",
    [5, "initialize"],
    [6, "pong"],
  ];
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  child.stdin.end(lines.join("\n") + "\n");
  const code = await exited;
  check(code === 0, `strata mcp exited ${code}`);
  const got = out.trimEnd().split("\n").map((l) => JSON.parse(l));
  check(got.length === want.length, `raw: ${got.length} replies, want ${want.length}: ${out}`);
  got.forEach((r, i) => {
    const w = want[i];
    if (w === "batch") {
      check(Array.isArray(r) && r.length === 2, `raw batch reply ${JSON.stringify(r)}`);
      check(r[0].id === 4 && r[0].result && r[1].error?.code === -32600, `raw batch ${JSON.stringify(r)}`);
      return;
    }
    check(r.jsonrpc === "2.0" && r.id === w[0], `raw reply ${i}: ${JSON.stringify(r)}`);
    if (w[1] === "initialize") check(r.result?.protocolVersion === "2025-11-25", `raw initialize ${JSON.stringify(r)}`);
    else if (w[1] === "pong") check(r.result && Object.keys(r.result).length === 0, `raw ping ${JSON.stringify(r)}`);
    else check(r.error?.code === w[1], `raw reply ${i}: ${JSON.stringify(r)}, want code ${w[1]}`);
  });
  report.raw_replies = got.length;
}

try {
  await sdkSession();
  await rawSession();
  report.ok = true;
  console.log(JSON.stringify(report));
} catch (e) {
  console.error(`mcp_client: FAIL: ${e.stack || e}`);
  process.exit(1);
}
