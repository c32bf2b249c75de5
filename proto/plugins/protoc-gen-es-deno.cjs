#!/usr/bin/env node
// protoc plugin used by buf.gen.yaml: runs the stock protoc-gen-es (same version,
// same options) and then prefixes every generated .js file that has a sibling
// .d.ts with the pragma
//
//   // @ts-self-types="./<name>.d.ts"
//
// Deno does not pick up a sibling .d.ts for a local .js module on its own; without
// the pragma it infers types from the JS (every message becomes the generic
// `Message`) and `deno test` fails type-checking. Node, Bun and tsc ignore the
// comment (tsc finds the sibling .d.ts by itself). Nothing else is changed.
//
// This file lives under proto/ only so that it ships with the schema; buf
// only compiles *.proto files and ignores it.
"use strict";

const { runNodeJs } = require("@bufbuild/protoplugin");
const { protocGenEs } = require("@bufbuild/protoc-gen-es/dist/cjs/src/protoc-gen-es-plugin.js");

runNodeJs({
  name: "protoc-gen-es-deno",
  version: protocGenEs.version,
  run(request) {
    const response = protocGenEs.run(request);
    const names = new Set(response.file.map((f) => f.name));
    for (const f of response.file) {
      if (!f.name.endsWith(".js")) continue;
      const dts = f.name.replace(/\.js$/, ".d.ts");
      if (!names.has(dts)) continue;
      const base = dts.slice(dts.lastIndexOf("/") + 1);
      f.content = `// @ts-self-types="./${base}"\n${f.content}`;
    }
    return response;
  },
});
