// Drives Microsoft's M365 Agents Playground (a local Teams client) in
// headless Chromium: types each message into the personal chat and prints,
// as JSON, the text of the bot's cards and messages after each.
// Usage: node playground.cjs <playground url> <message>...
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
    for (const m of messages) {
      const before = await page.locator(".fai-OutputCard").count();
      await box.click();
      await box.type(m);
      await page.keyboard.press("Enter");
      await page.locator(".fai-OutputCard").nth(before).waitFor({ timeout: 20000 });
      out.push(await page.locator(".fai-OutputCard").nth(before).innerText());
    }
    process.stdout.write(JSON.stringify(out));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
