// The build step: uses a devDependency (kleur), so it proves they are there while building.
const fs = require("fs");
const path = require("path");
const kleur = require("kleur");

const out = path.join(__dirname, "..", "build");
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(
  path.join(out, "info.json"),
  JSON.stringify({ node: process.version, env: process.env.NODE_ENV }) + "\n",
);
kleur.enabled = false;
console.log(kleur.green(`build wrote build/info.json (NODE_ENV=${process.env.NODE_ENV})`));
