// Validates a FHIR R4 resource (a circle's exported Bundle) against HL7's published FHIR R4
// JSON Schema, through ajv: a checker written independently of Cercle's exporter.
// Usage: node fhir-validate.js FILE. Prints {"valid": bool, "errors": [...]} and exits 0
// when valid, 1 when not, 2 when the file cannot be read.
"use strict";
const fs = require("fs");
const Validator = require("@asymmetrik/fhir-json-schema-validator");

let resource;
try {
  resource = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
} catch (e) {
  console.log(JSON.stringify({ valid: false, errors: [`cannot read ${process.argv[2]}: ${e.message}`] }));
  process.exit(2);
}
const validator = new Validator();
// The whole bundle first (every entry's resource is checked against its own definition)...
const errors = validator.validate(resource, true);
// ...then each entry on its own, for an error message that names the resource.
const byEntry = [];
for (const entry of resource.entry || []) {
  const e = validator.validate(entry.resource);
  if (e.length) byEntry.push({ fullUrl: entry.fullUrl, type: entry.resource.resourceType, errors: e });
}
const valid = errors.length === 0 && byEntry.length === 0;
console.log(JSON.stringify({ valid, errors: valid ? [] : byEntry.length ? byEntry : errors.slice(0, 20) }));
process.exit(valid ? 0 : 1);
