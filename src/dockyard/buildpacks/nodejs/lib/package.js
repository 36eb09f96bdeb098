// Questions about an app's package.json, asked by bin/compile and bin/release.
//
//   node package.js validate APP            package.json is a JSON object
//   node package.js manager APP             "npm|yarn|pnpm LOCKFILE" (LOCKFILE "-" when none)
//   node package.js engines APP NPM         engines.node checked against this node (semver)
//   node package.js scripts APP             the names of the scripts that are set, one a line
//   node package.js cache-key APP MANAGER LOCKFILE
//   node package.js release APP             bin/release's YAML
//
// Failures print lines in Heroku's " !     " shape and exit 1.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const LOCKFILES = [
  ["package-lock.json", "npm"],
  ["npm-shrinkwrap.json", "npm"],
  ["yarn.lock", "yarn"],
  ["pnpm-lock.yaml", "pnpm"],
];

function fail(...lines) {
  // stderr: callers capture stdout with $(...), and the message must still be seen.
  for (const line of lines) process.stderr.write(` !     ${line}\n`);
  process.exit(1);
}

function read(app) {
  const file = path.join(app, "package.json");
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    fail(`package.json could not be read: ${err.message}`);
  }
  let data;
  try {
    data = JSON.parse(text);
  } catch (err) {
    fail(`package.json is not valid JSON: ${err.message}`, "Fix it (`npm pkg get` shows what npm reads) and push again.");
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    fail("package.json must hold a JSON object, like {\"name\": \"my-app\", \"scripts\": {...}}.");
  }
  return data;
}

function scripts(pkg) {
  const found = pkg.scripts;
  return found && typeof found === "object" && !Array.isArray(found) ? found : {};
}

function hasScript(pkg, name) {
  const value = scripts(pkg)[name];
  return typeof value === "string" && value.trim() !== "";
}

function manager(app) {
  const pkg = read(app);
  const found = LOCKFILES.filter(([name]) => fs.existsSync(path.join(app, name)));
  const tools = [...new Set(found.map(([, tool]) => tool))];
  if (tools.length > 1) {
    fail(
      `Found lockfiles of different package managers: ${found.map(([name]) => name).join(", ")}.`,
      "Keep the one for the package manager you use, delete the others, and push again.",
    );
  }
  const [lockfile, tool] = found[0] || ["-", "npm"];
  const wanted = typeof pkg.packageManager === "string" ? pkg.packageManager.split("@")[0] : "";
  if (wanted && found.length && wanted !== tool) {
    fail(
      `package.json's packageManager asks for ${wanted}, but the lockfile is ${lockfile} (${tool}).`,
      `Use one package manager: fix packageManager or commit the right lockfile.`,
    );
  }
  if (wanted && !found.length && wanted !== "npm") {
    process.stdout.write(`${wanted} -\n`);
    return;
  }
  process.stdout.write(`${tool} ${lockfile}\n`);
}

function loadSemver(npm) {
  // npm bundles semver; where npm lives depends on how Node was installed.
  const places = [];
  if (npm) {
    try {
      places.push(path.join(path.dirname(fs.realpathSync(npm)), "..", "node_modules", "semver"));
    } catch (err) {
      // npm not at that path: fall through to the usual places.
    }
  }
  places.push(
    "/usr/lib/node_modules/npm/node_modules/semver",
    "/usr/local/lib/node_modules/npm/node_modules/semver",
    "/usr/share/nodejs/semver",
  );
  for (const place of places) {
    if (fs.existsSync(path.join(place, "package.json"))) return require(place);
  }
  fail("Could not find the semver module that npm ships with, to check engines.node.", `Looked in: ${places.join(", ")}`);
  return null;
}

function engines(app, npm) {
  const pkg = read(app);
  const wanted = pkg.engines && typeof pkg.engines === "object" ? pkg.engines : {};
  const installed = process.version.replace(/^v/, "");
  const out = (line) => process.stdout.write(`       ${line}\n`);
  out(`engines.node (package.json):  ${wanted.node === undefined ? "unspecified" : wanted.node}`);
  out(`engines.npm (package.json):   ${wanted.npm === undefined ? "unspecified (use default)" : wanted.npm}`);
  out("");
  if (wanted.node === undefined) {
    out(`Using Node.js ${installed}, the version installed on this server (${process.execPath})`);
    return;
  }
  const semver = loadSemver(npm);
  const range = String(wanted.node);
  if (typeof wanted.node !== "string" || semver.validRange(range) === null) {
    fail(
      `engines.node in package.json is ${JSON.stringify(wanted.node)}, which is not a semver range.`,
      'Use a range such as "20.x" or ">=18".',
    );
  }
  if (!semver.satisfies(installed, range)) {
    fail(
      `package.json asks for Node.js ${range} (engines.node), but this server has Node.js ${installed} (${process.execPath}).`,
      `Change engines.node to a range that includes ${installed}, such as "${semver.major(installed)}.x", or install a matching Node.js on the server.`,
    );
  }
  out(`Resolving node version ${range}...`);
  out(`Using Node.js ${installed}, the version installed on this server (${process.execPath})`);
  const npmVersion = npm ? installedNpm(npm) : null;
  if (typeof wanted.npm === "string" && npmVersion && semver.validRange(wanted.npm) !== null) {
    if (!semver.satisfies(npmVersion, wanted.npm)) {
      out(`Warning: engines.npm asks for ${wanted.npm}; building with npm ${npmVersion}, the one on this server`);
    }
  }
}

function installedNpm(npm) {
  try {
    const file = path.join(path.dirname(fs.realpathSync(npm)), "..", "package.json");
    return JSON.parse(fs.readFileSync(file, "utf8")).version || null;
  } catch (err) {
    return null;
  }
}

function cacheKey(app, tool, lockfile) {
  // Everything that decides what the install puts in node_modules.
  const pkg = read(app);
  const hash = crypto.createHash("sha256");
  hash.update(`${process.version} ${process.arch} ${process.platform} ${tool}\n`);
  for (const field of [
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
    "bundleDependencies",
    "overrides",
    "resolutions",
    "pnpm",
    "workspaces",
    "packageManager",
  ]) {
    hash.update(`${field}=${JSON.stringify(pkg[field] === undefined ? null : pkg[field])}\n`);
  }
  for (const name of [lockfile, ".npmrc", ".yarnrc", ".yarnrc.yml", "pnpm-workspace.yaml"]) {
    const file = path.join(app, name);
    if (name !== "-" && fs.existsSync(file)) {
      hash.update(`${name}\n`);
      hash.update(fs.readFileSync(file));
    }
  }
  process.stdout.write(`${hash.digest("hex")}\n`);
}

function release(app) {
  let web = null;
  const file = path.join(app, "package.json");
  if (fs.existsSync(file)) {
    let pkg = {};
    try {
      pkg = JSON.parse(fs.readFileSync(file, "utf8")) || {};
    } catch (err) {
      pkg = {};
    }
    if (hasScript(pkg, "start") || fs.existsSync(path.join(app, "server.js"))) web = "npm start";
  }
  process.stdout.write(web ? `---\ndefault_process_types:\n  web: ${web}\n` : "--- {}\n");
}

const [command, app, ...rest] = process.argv.slice(2);
switch (command) {
  case "validate":
    read(app);
    break;
  case "manager":
    manager(app);
    break;
  case "engines":
    engines(app, rest[0]);
    break;
  case "scripts": {
    const pkg = read(app);
    for (const name of Object.keys(scripts(pkg))) {
      if (hasScript(pkg, name)) process.stdout.write(`${name}\n`);
    }
    break;
  }
  case "cache-key":
    cacheKey(app, rest[0], rest[1]);
    break;
  case "release":
    release(app);
    break;
  default:
    fail(`package.js: unknown command ${command}`);
}
