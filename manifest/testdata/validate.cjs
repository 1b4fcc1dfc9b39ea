// Validates a Teams app package's manifest.json and its localization file
// offline against Microsoft's official schemas from @microsoft/app-manifest.
// Usage: node validate.cjs <dir with manifest.json and zh-cn.json>
// Prints a JSON array of problems; empty means valid.
"use strict";
const fs = require("fs");
const path = require("path");
const { ManifestUtil } = require("@microsoft/app-manifest");
const Ajv = require("ajv-draft-04");
const addFormats = require("ajv-formats");

// The localization schema's patterns (e.g. "…\\b]\\.description$") are not
// valid with the u flag that ManifestUtil's validator compiles them with, so
// that schema gets the same validator without it.
function validateLocalization(doc, schema) {
  const ajv = new Ajv({ allErrors: true, strictTypes: false, unicodeRegExp: false });
  addFormats(ajv, ["uri", "email", "regex"]);
  const validate = ajv.compile(schema);
  return validate(doc) ? [] : validate.errors.map((e) => `${e.instancePath} ${e.message || ""}. Details: ${JSON.stringify(e.params)}`);
}

(async () => {
  const dir = process.argv[2];
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  const schemas = path.join(path.dirname(require.resolve("@microsoft/app-manifest/package.json")),
    "build", "json-schemas", "teams", "v" + manifest.manifestVersion);
  const load = (name) => JSON.parse(fs.readFileSync(path.join(schemas, name), "utf8"));
  const problems = [];
  for (const e of await ManifestUtil.validateManifestAgainstSchema(manifest, load("MicrosoftTeams.schema.json"))) {
    problems.push("manifest.json: " + e);
  }
  for (const lang of manifest.localizationInfo?.additionalLanguages ?? []) {
    const loc = JSON.parse(fs.readFileSync(path.join(dir, lang.file), "utf8"));
    for (const e of validateLocalization(loc, load("MicrosoftTeams.Localization.schema.json"))) {
      problems.push(lang.file + ": " + e);
    }
  }
  process.stdout.write(JSON.stringify(problems));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
