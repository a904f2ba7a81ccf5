// Reads one iam-simulate Simulation per JSONL line on stdin and writes one JSON line per case:
// {"id": ..., "result": "Allowed|ImplicitlyDenied|ExplicitlyDenied"} or {"id": ..., "error": "..."}.
// The engine's module directory is argv[2] (installed at test time; AGPL, never vendored).
'use strict';
const path = require('path');
const readline = require('readline');
const sim = require(require.resolve('@cloud-copilot/iam-simulate', { paths: [path.resolve(process.argv[2])] }));

async function main() {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  const out = [];
  let n = 0;
  const started = process.hrtime.bigint();
  for await (const line of rl) {
    if (!line.trim()) continue;
    const c = JSON.parse(line);
    try {
      const r = await sim.runSimulation(c.simulation, {});
      if (r.resultType === 'error') {
        out.push(JSON.stringify({ id: c.id, error: JSON.stringify(r.errors).slice(0, 500) }));
      } else {
        out.push(JSON.stringify({ id: c.id, result: r.overallResult }));
      }
    } catch (e) {
      out.push(JSON.stringify({ id: c.id, error: String(e).slice(0, 500) }));
    }
    n++;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  out.push(JSON.stringify({ id: null, cases: n, seconds }));
  process.stdout.write(out.join('\n') + '\n');
}
main().catch((e) => { process.stderr.write(String(e) + '\n'); process.exit(1); });
