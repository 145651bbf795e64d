// Parses PromQL expressions with the Prometheus project's Lezer grammar (the one its web UI
// uses) and reports any that do not parse. stdin: a JSON array of {where, expr}; exit 1 and
// one line per bad expression on stderr when any fails.
import { parser } from "@prometheus-io/lezer-promql";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const bad = [];
for (const { where, expr } of JSON.parse(input)) {
  const tree = parser.parse(expr);
  let error = null;
  tree.iterate({
    enter(node) {
      if (error === null && node.type.isError) error = node.from;
    },
  });
  if (error !== null)
    bad.push(`${where}: PromQL does not parse at offset ${error} ("${expr.slice(error, error + 30)}"): ${expr}`);
}
for (const line of bad) console.error(line);
console.log(`promql: ${JSON.parse(input).length} expressions checked, ${bad.length} bad`);
process.exit(bad.length ? 1 : 0);
