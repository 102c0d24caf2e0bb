// duckdb_parquet_bench.mjs — the peer of `strata bench parquet`: DuckDB
// (npm @duckdb/node-api, single-threaded: SET threads=1) scans the text
// column of FILE, `SELECT sum(strlen(text)), count(*) FROM read_parquet(FILE)`,
// which decodes every string. Prints one JSON line: the median wall and CPU
// (user+system of the process) seconds of REPS runs after one warm-up, and
// the text bytes and rows it saw.
// Usage: node bench/js/duckdb_parquet_bench.mjs FILE [REPS] [COLUMN]
import { DuckDBInstance } from "@duckdb/node-api";

const file = process.argv[2];
const reps = Number(process.argv[3] ?? 5);
const column = process.argv[4] ?? "text";
if (!file) {
  console.error("usage: node duckdb_parquet_bench.mjs FILE [REPS] [COLUMN]");
  process.exit(2);
}
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const inst = await DuckDBInstance.create(":memory:", { threads: "1" });
const con = await inst.connect();
await con.run("SET threads=1");
const q = `SELECT sum(strlen("${column}"))::BIGINT AS b, count(*)::BIGINT AS n FROM read_parquet('${file.replace(/'/g, "''")}')`;
let rows = (await con.runAndReadAll(q)).getRows(); // warm-up (file cache, plan)
const secs = [], cpus = [];
for (let r = 0; r < reps; r++) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  rows = (await con.runAndReadAll(q)).getRows();
  secs.push(Number(process.hrtime.bigint() - t0) / 1e9);
  const c = process.cpuUsage(c0);
  cpus.push((c.user + c.system) / 1e6);
}
console.log(JSON.stringify({ file, seconds: median(secs), cpu_seconds: median(cpus), bytes: Number(rows[0][0]), rows: Number(rows[0][1]) }));
