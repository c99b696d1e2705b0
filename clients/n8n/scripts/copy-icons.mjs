// tsc copies only .ts output: put each node's SVG icon beside its compiled .node.js.
import { copyFileSync, readdirSync } from "node:fs";

for (const node of readdirSync("nodes")) {
  for (const file of readdirSync(`nodes/${node}`)) {
    if (file.endsWith(".svg")) copyFileSync(`nodes/${node}/${file}`, `dist/nodes/${node}/${file}`);
  }
}
