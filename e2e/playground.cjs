// Drives Microsoft's M365 Agents Playground (a local Teams client) in
// headless Chromium, in the personal chat. Each step is a message to type,
// or "click:<button>" to press that button on the bot's last card; after
// each it prints, as part of a JSON array, the text of the bot's answer
// (for a click: the card as it was replaced).
// Usage: node playground.cjs <playground url> <step>...
"use strict";
const { chromium } = require("playwright-core");

(async () => {
  const [url, ...messages] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    // Only loopback: fonts and icons from a CDN are not needed.
    await page.route("**/*", (r) => {
      const host = new URL(r.request().url()).hostname;
      return host === "127.0.0.1" || host === "localhost" ? r.continue() : r.abort();
    });
    await page.goto(url);
    const box = page.locator('[data-lexical-editor="true"][contenteditable="true"]');
    await box.waitFor({ timeout: 30000 });
    const out = [];
    const cards = page.locator(".fai-OutputCard");
    for (const m of messages) {
      if (m.startsWith("click:")) {
        const label = m.slice("click:".length);
        const card = cards.last();
        const button = card.locator(`button[aria-label="${label}"]`);
        await button.click();
        await button.waitFor({ state: "detached", timeout: 30000 });
        out.push(await card.innerText());
        continue;
      }
      const before = await cards.count();
      await box.click();
      await box.type(m);
      await page.keyboard.press("Enter");
      await cards.nth(before).waitFor({ timeout: 20000 });
      out.push(await cards.nth(before).innerText());
    }
    process.stdout.write(JSON.stringify(out));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
