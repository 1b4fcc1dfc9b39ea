// Validates Adaptive Cards with the official parser (adaptivecards 3.0.6),
// targeting version 1.5 as Teams does. Input: a JSON file holding
// [{name, card}]. Output on stdout: [{name, version, problems: [..]}].
"use strict";
const fs = require("fs");
const AC = require("adaptivecards/dist/adaptivecards.js");

const items = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const out = items.map(({ name, card }) => {
  // The parser checks "lang" with a global (/g) regex whose lastIndex
  // survives between cards: reset it so each card is judged on its own.
  AC.CardElement.langProperty.regEx.lastIndex = 0;
  const ctx = new AC.SerializationContext(AC.Versions.v1_5);
  const parsed = new AC.AdaptiveCard();
  parsed.parse(card, ctx);
  const problems = [];
  for (let i = 0; i < ctx.eventCount; i++) {
    const e = ctx.getEventAt(i);
    problems.push(`parse: ${AC.ValidationEvent[e.event]}: ${e.message}`);
  }
  for (const e of parsed.validateProperties().validationEvents) {
    problems.push(`validate: ${AC.ValidationEvent[e.event]}: ${e.message}`);
  }
  return { name, version: parsed.version ? parsed.version.toString() : "", problems };
});
process.stdout.write(JSON.stringify(out));
